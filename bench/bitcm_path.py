"""The bitwise model along the coded byte's path (eval's BitCM.costs) against its full rows, and what it costs.

    python bench/bitcm_path.py bits RUN --file TEXT [--bytes 100000]
    python bench/bitcm_path.py micro RUN --file TEXT [--bytes 20000] [--rounds 2] [--table-bits N]
    python bench/bitcm_path.py build RUN
    python bench/bitcm_path.py save RUN --file TEXT [--bytes 100000] --out BITS.npy
    python bench/bitcm_path.py paired BITS_A.npy --against BITS_B.npy

RUN is a byte-level run with counts.bitcm on and its kept state (countmodel/bitstate.py).
- bits: eval's bits of TEXT's last --bytes (scoring.run_token_bits: the bitwise model's path) against the rows
  through the same session (scoring.score_run: the rows pruned at BitCM.prune), in one process, paired by byte.
- micro: thread CPU microseconds a byte of the model alone, from a fresh load of the kept state each time: learning
  only (BitCM.learn), the path (BitCM.costs) with a random given distribution and without one ("costs0": the
  given's part is the difference), and the rows (BitCM.score). --table-bits N: the model reads only the first 2^N
  of its slots (hashes folded there: a table that stays in the CPU's cache; the same work otherwise), so that the
  difference to the real table is what its memory costs.
- build: what the end of training pays once: the model reading the training bytes and keeping its state (into an
  empty folder), thread CPU and wall, its size on disk, the process's peak RSS.
- save: eval's bits of each token of TEXT's last --bytes (as bits reads them) into --out, so that two versions of
  the model (two trees, each run with its own PYTHONPATH and its own copy of RUN) are compared by byte: paired prints
  A's mean minus B's with its paired 95% interval (seqlab.intervals.paired).
Give the load average with every timing (the machine is shared).
"""

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from seqlab.countmodel import bitstate  # noqa: E402
from seqlab.countmodel.store import BITCM_DIR, TABLES_DIR  # noqa: E402
from seqlab.intervals import paired  # noqa: E402
from seqlab.run import load  # noqa: E402
from seqlab.scoring import run_token_bits, score_run  # noqa: E402


def tail(path: str, n: int) -> bytes:
    return Path(path).read_bytes()[-n:]


def path_bits(run, args) -> tuple[np.ndarray, np.ndarray]:
    """The tokens of --file's last --bytes (from BOS) and eval's bits of each: the bitwise model's path."""
    text = tail(args.file, args.bytes)
    tokens = np.concatenate([[run.tokenizer.bos_id], run.tokenizer.encode(text)]).astype(np.int64)
    return tokens, run_token_bits(run, tokens, 1)[0]


def bits(args) -> None:
    run = load(args.run)
    tokens, path = path_bits(run, args)
    rows = np.concatenate([(-logp.gather(1, t[:, None])[:, 0] / np.log(2)).numpy()
                           for _, logp, t, _ in score_run(run, tokens, 1)])
    print(f"eval (the path) {path.mean():.6f}, the rows {rows.mean():.6f} bits per token; "
          f"{int(np.sum(path != rows)):,} of {len(path):,} not identical")
    d = paired([path], [rows])
    print(f"path minus rows, paired by token: {d['difference']:+.6f} [{d['low']:+.6f}, {d['high']:+.6f}] "
          f"({d['interval_method']})")


def save(args) -> None:
    _, path = path_bits(load(args.run), args)
    np.save(args.out, path)
    print(f"{len(path):,} tokens, {path.mean():.6f} bits a token: {args.out}")


def compare(args) -> None:
    a, b = np.load(args.run), np.load(args.against)
    d = paired([a], [b])
    print(f"A {a.mean():.6f}, B {b.mean():.6f} bits a token; A - B {d['difference']:+.6f} [{d['low']:+.6f}, "
          f"{d['high']:+.6f}] ({d['interval_method']}, {d['verdict']})")


def micro(args) -> None:
    state = Path(args.run) / TABLES_DIR / BITCM_DIR
    expected = json.loads((state / bitstate.MANIFEST).read_text())["fingerprint"]
    data = np.frombuffer(tail(args.file, args.bytes), dtype=np.uint8)
    z = np.random.default_rng(0).normal(size=(len(data), 256)) * 2.0
    given = z - np.log(np.exp(z).sum(1, keepdims=True))
    for _ in range(args.rounds):
        for what in ("learn", "costs", "costs0", "score"):
            model, why = bitstate.load(state, expected)
            if model is None:
                sys.exit(f"{state}: {why}")
            model.bits = args.table_bits or model.bits
            start = time.thread_time()
            if what in ("learn", "costs0"):
                model.learn(data) if what == "learn" else model.costs(data)
            else:
                getattr(model, what)(data, given)
            print(f"{what:<6} {(time.thread_time() - start) / len(data) * 1e6:6.2f} us a byte", flush=True)


def build(args) -> None:
    counts = load(args.run).count_model
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / BITCM_DIR
        cpu, wall = time.thread_time(), time.perf_counter()
        bitstate.open_model(folder, counts.history_bytes, counts.bitcm_identity())
        cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
        size = sum(f.stat().st_size for f in folder.iterdir())
    print(f"{len(counts.history_bytes):,} training bytes read and kept: {cpu:.2f} CPU-s, {wall:.2f} s wall; "
          f"{size / 1e6:.1f} MB on disk; peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["bits", "micro", "build", "save", "paired"])
    ap.add_argument("run", help="a byte-level run with counts.bitcm on (paired: A's saved bits)")
    ap.add_argument("--file", help="the text whose last --bytes are read (bits, micro, save)")
    ap.add_argument("--bytes", type=int, help="bytes of --file's tail (default: 20000 for micro, else 100000)")
    ap.add_argument("--rounds", type=int, default=2, help="micro: rounds of the four readings")
    ap.add_argument("--table-bits", type=int, help="micro: read only the first 2^N slots (a cache-resident table)")
    ap.add_argument("--out", help="save: where the bits go (.npy)")
    ap.add_argument("--against", help="paired: B's saved bits")
    args = ap.parse_args()
    if args.what in ("bits", "micro", "save") and not args.file or args.what == "save" and not args.out \
            or args.what == "paired" and not args.against:
        sys.exit(f"{args.what} needs --file (bits, micro, save), --out (save), --against (paired)")
    args.bytes = args.bytes or (20_000 if args.what == "micro" else 100_000)
    {"bits": bits, "micro": micro, "build": build, "save": save, "paired": compare}[args.what](args)


if __name__ == "__main__":
    main()
