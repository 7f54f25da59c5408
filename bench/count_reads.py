"""The count experts' reads alone: thread CPU-seconds of CountReader.read over a text, several runs in turn.

    python bench/count_reads.py RUN [RUN2 ...] --file TEXT [--bytes 100000] [--rounds 3]

Each run's count model reads TEXT's last --bytes as eval's mixed scoring reads them (chunks of the run's
counts.chunk tokens, counted every COUNT_EVERY), with no network and no mix: one untimed pass per run first (numba
compiled, tables paged in), then --rounds rounds of every run in turn (ABAB...) in one process, so that a load that
changes over minutes reaches each run alike. Prints each run's readings and their median. The runs are copies with
other `counts` settings (mixed_profile.py gives the bits and every part's CPU, one reading each).
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from seqlab.countmodel.session import COUNT_EVERY  # noqa: E402
from seqlab.run import load  # noqa: E402


def reads_cpu(model, tokens: np.ndarray) -> float:
    """Thread CPU-seconds of one pass of CountReader.read over tokens, in a fresh session."""
    reader, chunk = model.session("cpu").reader(tokens, 1), model.config.chunk
    start = time.thread_time()
    for first in range(1, len(tokens), chunk):
        reader.read(first, min(first + chunk, len(tokens)), COUNT_EVERY)
    return time.thread_time() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+")
    p.add_argument("--file", required=True)
    p.add_argument("--bytes", type=int, default=100_000)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    data = Path(args.file).read_bytes()[-args.bytes :]
    models = {}
    for name in args.runs:
        run = load(name)
        tokens = np.concatenate([[run.tokenizer.bos_id], run.tokenizer.encode(data)]).astype(np.int64)
        models[name] = (run.count_model, tokens)
        reads_cpu(*models[name])
    cpu = {name: [] for name in args.runs}
    for _ in range(args.rounds):
        for name in args.runs:
            cpu[name].append(reads_cpu(*models[name]))
    for name, readings in cpu.items():
        print(f"{name}: median {statistics.median(readings):.2f} thread CPU-s of reads "
              f"({', '.join(f'{c:.2f}' for c in readings)})")


if __name__ == "__main__":
    main()
