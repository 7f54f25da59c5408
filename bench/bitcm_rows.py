"""What reading segments side by side costs the bitwise model (countmodel/bitcm.py) alone, on one file.

    python bench/bitcm_rows.py [--file F] [--bytes 111540] [--history 1000000] [--rows 4 8 27] [--private-bits 0 12]
        [--per-segment]

The last --bytes of the file are scored after the --history bytes before them were read (as eval reads the
training split), with no given distribution (a uniform one: the bitwise model's own bits): as one stream
(eval's `BitCM.score`), as `--rows` segments read one after another (each a cold start, the tables shared:
`BitRows` stepped one row at a time), and as the same segments read in lockstep (compress's order: every
row scored, then every row's byte learnt, in row order), once per --private-bits (each row's cache of its recent
state: 2^bits slots; 0: none, the rows' recent state shared). Prints the bytes each reading costs and its CPU
seconds (this thread's); with --per-segment, each lockstep reading's segments apart too, each against what the one
stream paid for the same bytes (a later segment read in lockstep has not read the segments before it).
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from seqlab.compress.lockstep import segment_lengths  # noqa: E402
from seqlab.countmodel.bitcm import BitCM  # noqa: E402
from seqlab.countmodel.bitrows import PRIVATE_BITS, BitRows  # noqa: E402
from seqlab.data.corpus import default_corpus_path  # noqa: E402


def lockstep_bytes(history: np.ndarray, text: np.ndarray, n_rows: int, interleaved: bool,
                   private_bits: int = PRIVATE_BITS) -> np.ndarray:
    """The bits of each byte of text read as n_rows segments by BitRows: in lockstep, or one segment after
    another."""
    model = BitCM()
    model.learn(history)
    lengths = segment_lengths(len(text), n_rows)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    rows = BitRows(model, np.full(n_rows, 256), int(lengths.max()), private_bits)
    uniform, bits = np.full((n_rows, 256), -np.log(256)), np.zeros(len(text))
    order = [None] if interleaved else range(n_rows)
    for only in order:
        for j in range(int(lengths.max() if only is None else lengths[only])):
            active = lengths > j
            if only is not None:
                active = np.arange(n_rows) == only
            tokens = np.where(active, text[np.minimum(starts + j, len(text) - 1)], 0)
            logp = rows.score(uniform, active)
            bits[(starts + j)[active]] = -logp[active, tokens[active]] / np.log(2)
            rows.learn(tokens, active)
    return bits


def print_segments(per_byte: np.ndarray, stream_bits: np.ndarray, lengths: np.ndarray) -> None:
    for k, (start, n) in enumerate(zip(np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)):
        mine, stream = per_byte[start : start + n].sum() / 8, stream_bits[start : start + n].sum() / 8
        print(f"|   its segment {k + 1} ({n:,} bytes) | {mine:,.0f} | {100 * (mine / stream - 1):+.2f}% "
              f"(the stream: {stream:,.0f}) | |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--file", default=str(default_corpus_path()))
    p.add_argument("--bytes", type=int, default=111540)
    p.add_argument("--history", type=int, default=1_000_000)
    p.add_argument("--rows", type=int, nargs="+", default=[4, 8, 27])
    p.add_argument("--private-bits", type=int, nargs="+", default=[0, PRIVATE_BITS])
    p.add_argument("--per-segment", action="store_true", help="each lockstep reading's segments apart too")
    args = p.parse_args()
    data = Path(args.file).read_bytes()
    text = np.frombuffer(data[-args.bytes :], dtype=np.uint8).astype(np.int64)
    history = np.frombuffer(data[-args.bytes - args.history : -args.bytes], dtype=np.uint8).astype(np.int64)
    model = BitCM()
    model.learn(history)
    t0 = time.thread_time()
    logp = model.score(text, np.full((len(text), 256), -np.log(256)))
    stream_bits = -logp[np.arange(len(text)), text] / np.log(2)
    stream = stream_bits.sum() / 8
    print(f"{len(text):,} bytes of {args.file} after {len(history):,} bytes read first\n")
    print("| reading | bytes | vs one stream | CPU seconds |\n|---|---:|---:|---:|")
    print(f"| one stream (eval's) | {stream:,.0f} | - | {time.thread_time() - t0:.1f} |", flush=True)
    for n_rows in args.rows:
        for interleaved, bits in [(False, PRIVATE_BITS)] + [(True, b) for b in args.private_bits]:
            t0 = time.thread_time()
            per_byte = lockstep_bytes(history, text, n_rows, interleaved, bits)
            cost = per_byte.sum() / 8
            how = f"in lockstep, row caches of 2^{bits}" if interleaved and bits else \
                "in lockstep, no row caches" if interleaved else "one after another"
            print(f"| {n_rows} segments {how} | {cost:,.0f} | {100 * (cost / stream - 1):+.2f}% | "
                  f"{time.thread_time() - t0:.1f} |", flush=True)
            if interleaved and args.per_segment:
                print_segments(per_byte, stream_bits, segment_lengths(len(text), n_rows))


if __name__ == "__main__":
    main()
