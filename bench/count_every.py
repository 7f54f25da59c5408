"""eval's bits per byte when the text's own counts are taken in every G tokens, paired byte by byte.

    python bench/count_every.py RUN FILE [--bytes 100000] [--every 256,16] [--threads 2]

Scores the last --bytes of FILE with RUN (the network mixed with its count model) once per G in --every
(countmodel/session.py's COUNT_EVERY), and prints each figure with its speed and its difference from the
first G's, with a 95% paired block-bootstrap interval (intervals.paired).
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import seqlab.countmodel.session as session  # noqa: E402
from seqlab.evaluate import scored_bytes  # noqa: E402
from seqlab.intervals import AUTO, paired  # noqa: E402
from seqlab.run import load  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("file")
    ap.add_argument("--bytes", type=int, default=100_000, help="bytes taken from the end of the file")
    ap.add_argument("--every", default="256,16", help="counting steps G in tokens, comma-separated")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = Path(args.file).read_bytes()[-args.bytes :]
    run = load(args.run)
    assert run.count_model is not None, f"{args.run} has no count model"
    first = None
    with tempfile.NamedTemporaryFile(suffix=".txt") as f:
        f.write(data)
        f.flush()
        for every in (int(g) for g in args.every.split(",")):
            session.COUNT_EVERY = every
            t0 = time.perf_counter()
            result, per_byte = scored_bytes(run, [f.name])
            seconds = time.perf_counter() - t0
            line = f"G={every:<4} {result['bpb']:.4f} bits/byte  {len(data) / 1000 / seconds:.2f} KB/s"
            if first is None:
                first = (every, per_byte)
            else:
                d = paired(per_byte, first[1], AUTO)
                line += (f"  minus G={first[0]}: {d['difference']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}] "
                         f"({d['interval_method']})")
            print(line, flush=True)


if __name__ == "__main__":
    main()
