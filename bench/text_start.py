"""What a text scored from its beginning (after BOS) costs, its first bytes apart: the bitwise model's text start.

    python bench/text_start.py RUN [RUN ...] [--file F] [--mix-first K] [--prime-nul]

Scores a 48-byte line, --file (e.g. the README tour's scene) and two 2,000-byte slices of the bundled
tinyshakespeare's held-out split, each as a text of its own ([BOS] + its bytes, a fresh session: serve's scorer,
whose bits are eval's), and prints bits a byte and the first byte's bits, run by run. Compare a run with
counts.bitcm on and a copy with it off. --mix-first K: a text's first K bytes cost what the mix gave them
(countmodel.session.MIX_FIRST, set for this run; 0: the bitwise model's from the first byte, as before the rule).
--prime-nul (tried here, not in seqlab): the bitwise model reads one NUL byte before each text.
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from common import print_table

from seqlab.countmodel import session as count_session
from seqlab.data.corpus import default_corpus_path, split_document
from seqlab.run import load
from seqlab.serve.scorer import _network_streams

LINE = b"ROMEO:\nWhat light through yonder window breaks?\n"


def texts(extra: str | None) -> dict[str, bytes]:
    _, held_out = split_document(Path(default_corpus_path()).read_bytes(), 0.1)
    out = {"a 48-byte line": LINE}
    if extra:
        out[Path(extra).name] = Path(extra).read_bytes()
    out.update({"held-out 0-2,000": held_out[:2000], "held-out 40,000-42,000": held_out[40000:42000]})
    return out


def text_bits(run, text: bytes, prime_nul: bool = False) -> np.ndarray:
    """Bits of each byte of `text` scored from BOS in a fresh session, as /v1/score and eval score it."""
    tokens = np.concatenate([[run.tokenizer.bos_id], run.tokenizer.encode(text)]).astype(np.int64)
    session = run.count_model.session(run.device)
    if prime_nul and session.bitcm is not None:
        session.bitcm.learn(np.zeros(1, dtype=np.int64))
    with torch.no_grad():
        stream = _network_streams(run.model, [tokens], run.device, 32768)[0]
        mixed = list(session.mix(iter(stream), tokens, 1, costs=True))
    return -np.concatenate([m[1].numpy() for m in mixed]) / np.log(2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--file", help="one more text, scored whole")
    ap.add_argument("--mix-first", type=int, default=count_session.MIX_FIRST)
    ap.add_argument("--prime-nul", action="store_true")
    args = ap.parse_args()
    count_session.MIX_FIRST = args.mix_first  # read at each text's start (session._first_from_the_mix)
    rows = []
    for path in args.runs:
        run = load(path)
        for name, text in texts(args.file).items():
            bits = text_bits(run, text, args.prime_nul)
            rows.append([path, name, f"{len(text):,}", f"{bits.sum() / len(text):.3f}", f"{bits[0]:.1f}"])
    how = f", the first {args.mix_first} bytes from the mix" + (", one NUL read first" if args.prime_nul else "")
    print_table("texts scored from BOS" + how,
                ["run", "text", "bytes", "bits a byte", "first byte, bits"], rows)


if __name__ == "__main__":
    main()
