"""Generation speed of an LSTM run with one-step calls on PyTorch's native kernel (what seqlab does,
models/lstm.py `run_layer`) against oneDNN's (PyTorch's CPU default), alternating, in one process.

    python bench/lstm_step_kernel.py RUN [--tokens 300] [--repeats 2] [--threads 1]
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

import seqlab.models.lstm as lstm  # noqa: E402
from seqlab.generate import stream  # noqa: E402
from seqlab.run import load  # noqa: E402


def onednn_always(layer, x, h, c):
    return layer(x, (h, c))


def tokens_per_second(run, n_tokens: int) -> float:
    start = time.perf_counter()
    produced = sum(1 for _, text in stream(run, max_tokens=n_tokens, seed=1) if text is not None)
    assert produced, "the run produced nothing"
    return n_tokens / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--tokens", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    run = load(args.run)
    kernels = {"native, one step (seqlab)": lstm.run_layer, "oneDNN": onednn_always}
    print("| kernel for one-step calls | tokens/s |\n| --- | ---: |")
    for _ in range(args.repeats):
        for name, run_layer in kernels.items():
            lstm.run_layer = run_layer
            print(f"| {name} | {tokens_per_second(run, args.tokens):,.0f} |", flush=True)


if __name__ == "__main__":
    main()
