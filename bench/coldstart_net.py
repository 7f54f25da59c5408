"""What the network alone pays for a segment's cold start, by what the segment is read after.

    python bench/coldstart_net.py RUN --file F [--bytes 300000] [--segment-tokens 2048] [--context 32]
                                  [--positions 64]

Cuts the last --bytes of F as compress does at line starts (compress/seams.py) and, for every segment after the
first, adds the network's cost (fp32, no count model) of its first --positions tokens in bands, read after:
the newline alone (what compress reads), the --context tokens truly before the segment (what eval's window has:
the most any first context could give), and --context tokens of the run's training text ending at a line start,
taken at a few places (a primer both sides know without reading the file: docs/compress.md "The cold starts").
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from seqlab.compress import codec, lockstep  # noqa: E402
from seqlab.countmodel import HISTORY_FILE  # noqa: E402
from seqlab.run import load  # noqa: E402

BANDS = [(0, 1), (1, 3), (3, 16), (16, 32), (32, 64)]


@torch.no_grad()
def costs(model, contexts: np.ndarray, tokens: np.ndarray, starts: np.ndarray, n: int) -> np.ndarray:
    """Bytes the network pays for each of the first n tokens of the segments at `starts`, every segment read after
    its row of `contexts` (S, K), summed over the segments."""
    state = model.init_state(len(starts), lockstep.CPU)
    x, state = model.features(torch.from_numpy(contexts), state)
    out = np.zeros(n)
    for i in range(n):
        logp = F.log_softmax(model.output_layer()(x[:, -1]).float(), dim=-1)
        next_tokens = torch.from_numpy(tokens[starts + i])
        out[i] = -logp[torch.arange(len(starts)), next_tokens].sum().item() / np.log(2) / 8
        x, state = model.features(next_tokens[:, None], state)
    return out


def primers(run, k: int, newline: int) -> dict[str, np.ndarray]:
    """k tokens of the training text ending at a newline: at its last one, the fifth and fiftieth from the end, and
    its last blank line (two newlines)."""
    tail = np.asarray(np.load(Path(run.path) / HISTORY_FILE, mmap_mode="r")[-200_000:]).astype(np.int64)
    ends = np.flatnonzero(tail == newline)
    blank = ends[1:][np.diff(ends) == 1]
    places = {"last line end": ends[-1], "5th line end from the end": ends[-5], "50th": ends[-50],
              "last blank line": blank[-1]}
    return {f"training text, {name}": tail[end - k + 1 : end + 1] for name, end in places.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--file", required=True)
    ap.add_argument("--bytes", type=int, default=300_000)
    ap.add_argument("--segment-tokens", type=int, default=2048)
    ap.add_argument("--context", type=int, default=32)
    ap.add_argument("--positions", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(1)
    lockstep.SEGMENT_TOKENS = args.segment_tokens
    run = load(args.run)
    data = Path(args.file).read_bytes()[-args.bytes :]
    tokens = np.asarray(run.tokenizer.encode(data), dtype=np.int64)
    layout, _ = codec.block_layout(run, tokens, True)
    starts = layout.starts()[1:]
    if len(starts) == 0 or layout.first[1] == run.tokenizer.bos_id:
        sys.exit("no segments at line starts in these bytes: try other --bytes or --segment-tokens")
    newline, k, n = int(layout.first[1]), args.context, args.positions
    firsts = {"the newline alone (compress)": np.full((len(starts), 1), newline),
              f"the {k} tokens truly before it": np.stack([tokens[s - k : s] for s in starts])}
    firsts |= {name: np.tile(p, (len(starts), 1)) for name, p in primers(run, k, newline).items()}
    print(f"{len(data):,} bytes of {args.file}; {len(starts)} segments after the first; the network's bytes "
          f"(fp32) for their first {n} tokens, by band\n")
    print("| read after | " + " | ".join(f"{lo}-{hi - 1}" if hi > lo + 1 else f"{lo}" for lo, hi in BANDS) + " | all |")
    print("|---|" + "---:|" * (len(BANDS) + 1))
    for name, contexts in firsts.items():
        c = costs(run.model, contexts.astype(np.int64), tokens, starts, n)
        print(f"| {name} | " + " | ".join(f"{c[lo:hi].sum():,.0f}" for lo, hi in BANDS) + f" | {c.sum():,.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
