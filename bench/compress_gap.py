"""Where `seqlab compress`'s bits differ from `seqlab eval`'s: each token's cost by its position in its segment.

    python bench/compress_gap.py RUN --file F [--bytes 400000] [--threads 1] [--segment-tokens 4096] [--nominal]
                                 [--fp32] [--eval-bf16]

Codes the last --bytes of F (one block, at most codec.BLOCK_BYTES) as compress does (lockstep.code_block,
the same segments, session and mixer) but without the range coder: each token's cost is -log2 of the
probability compress would code it with. Scores the same bytes with eval (per byte: a byte-level run's
tokens) and prints both summed over bands of positions within a segment (0-15, 16-31, ...): a segment
starts cold (no network context, the text before it not read yet), so the bands show what the cuts cost.
Segments start where compress starts them: at line starts (compress/seams.py) when the run writes formats
15-18, at the nominal cuts from BOS with --nominal (or for a run that does not). The network steps in bf16 where
compress does (lockstep.step_in_bf16), in fp32 with --fp32; eval scores in fp32, in bf16 too with --eval-bf16 (what
bf16 costs eval's bits on the same bytes).
"""

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from seqlab.compress import codec, lockstep  # noqa: E402
from seqlab.evaluate import scored_bytes  # noqa: E402
from seqlab.run import load  # noqa: E402
from seqlab.train.speed import autocast  # noqa: E402

BANDS = [(0, 1), (1, 3), (3, 16), (16, 32), (32, 64), (64, 256), (256, 1024), (1024, None)]


def compress_bits(run, tokens: np.ndarray, threads: int, lines: bool, bf16: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """Each token's cost in bits as compress codes it (one block), in the order of the text; the segments'
    lengths; the bytes that say where they start."""
    layout, moves = codec.block_layout(run, tokens, lines)
    rows = layout.rows(tokens)
    bits = np.zeros(rows.shape)
    session = run.count_model.session(torch.device("cpu")) if run.count_model is not None else None

    def pick(j, active, logp):
        p = codec._probabilities(logp, active)
        bits[active, j] = -np.log2(p[np.arange(len(p)), rows[active, j]])
        return rows[:, j].copy()

    lockstep.code_block(run, session, len(tokens), threads, pick, layout=layout, bf16=bf16)
    return layout.text(bits), layout.lengths, len(moves)


def in_bf16(model) -> None:
    """Eval's windows scored under bf16 autocast (in the thread that scores them: autocast's state is per thread)."""
    features = model.window_features

    def window_features(idx, last):
        with autocast(lockstep.CPU, True):
            return features(idx, last).float()

    model.window_features = window_features


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--file", required=True)
    ap.add_argument("--bytes", type=int, default=400_000, help="bytes taken from the end of the file")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--segment-tokens", type=int, default=lockstep.SEGMENT_TOKENS)
    ap.add_argument("--nominal", action="store_true", help="segments at the nominal cuts, from BOS (format 14's)")
    ap.add_argument("--fp32", action="store_true", help="compress's network step in fp32 where it would be bf16")
    ap.add_argument("--eval-bf16", action="store_true", help="eval's network under bf16 autocast too")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lockstep.SEGMENT_TOKENS = args.segment_tokens
    data = Path(args.file).read_bytes()[-args.bytes :][: codec.BLOCK_BYTES]
    run = load(args.run)
    tokens = np.asarray(run.tokenizer.encode(data), dtype=np.int64)
    lines = codec.with_warmth(run) and codec.LINE_STARTS and not args.nominal
    bf16 = lines and lockstep.step_in_bf16(run) and not args.fp32  # as codec._header decides
    ours, lengths, framing = compress_bits(run, tokens, args.threads, lines, bf16)
    if args.eval_bf16:
        in_bf16(run.model)
    with tempfile.NamedTemporaryFile(suffix=".txt") as f:
        f.write(data)
        f.flush()
        theirs = np.concatenate(scored_bytes(run, [f.name])[1])
    if len(theirs) != len(ours):
        sys.exit(f"eval scored {len(theirs)} bytes for {len(ours)} tokens: this table needs a byte-level run")
    position = np.concatenate([np.arange(n) for n in lengths])
    print(f"{len(data):,} bytes of {args.file}; run {args.run}; {len(lengths)} segments of up to "
          f"{lengths.max():,} tokens, {'at line starts' if lines else 'at the nominal cuts'}"
          f" ({framing} bytes of framing for them, not in the table); compress's network in "
          f"{'bf16' if bf16 else 'fp32'}, eval's in {'bf16' if args.eval_bf16 else 'fp32'}\n")
    print("| positions in a segment | tokens  | compress bytes | eval bytes | compress - eval (% of eval) |")
    print("|------------------------|--------:|---------------:|-----------:|-----------------------------|")
    for lo, hi in BANDS + [(0, None)]:
        k = (position >= lo) & (position < (hi or position.max() + 1))
        if not k.any():
            continue
        name = "all" if (lo, hi) == (0, None) else f"{lo}" if hi == lo + 1 else f"{lo}-{hi - 1}" if hi else f"{lo}-"
        a, b = ours[k].sum() / 8, theirs[k].sum() / 8
        share = (a - b) / (theirs.sum() / 8)
        print(f"| {name:<22} | {k.sum():>7,} | {a:>14,.0f} | {b:>10,.0f} | {a - b:>+9,.0f} ({share:+.2%}) |")


if __name__ == "__main__":
    main()
