"""What checking every option costs a command's start: parse time with the declared kinds vs without them.

    python bench/option_checks.py [--repeats 200]

For a few typical command lines, the same parser is timed twice, interleaved: as seqlab builds it (every value
checked for its kind and range, every path for what it must be: a few stats and a small JSON read) and with
every `type=` and `choices=` taken away (argparse keeps the text; the baseline). Printed: the median time of
each and the median of the paired differences with its 95% interval (a moving-block bootstrap over the
repeats, seqlab.stats.bootstrap_statistic: a shared machine's load drifts). Parsing is the whole of it: no
model is built in either case.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from seqlab.__main__ import build_parser  # noqa: E402
import numpy as np  # noqa: E402

from seqlab.stats import bootstrap_statistic  # noqa: E402


def unchecked(parser):
    """The same parser with no kinds: every value stays the text typed."""
    for action in parser._actions:
        if isinstance(action.choices, dict):  # the verbs' own parsers
            for sub in action.choices.values():
                unchecked(sub)
        else:
            action.type, action.choices = None, None
    return parser


def workspace(root: Path) -> dict:
    corpus = root / "corpus.txt"
    corpus.write_text("some text to train on\n" * 500)
    folder = root / "books"
    for i in range(200):
        (folder / f"part{i // 50}").mkdir(parents=True, exist_ok=True)
        (folder / f"part{i // 50}" / f"book{i}.txt").write_text("a page\n" * 20)
    run = root / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"arch": "lstm", "format_version": 1}))
    return {"corpus": str(corpus), "folder": str(folder), "run": str(run)}


def commands(w: dict) -> dict[str, list[str]]:
    return {
        "train FILE --max-steps --batch-size --lr --set": ["train", w["corpus"], "--max-steps", "100",
                                                           "--batch-size", "16", "--lr", "0.001", "--set",
                                                           "train.weight_decay=0.05"],
        "train FOLDER (200 files) --budget": ["train", w["folder"], "--budget", "10m"],
        "generate RUN --temperature --top-p --seed": ["generate", w["run"], "--temperature", "0.7", "--top-p",
                                                      "0.9", "--seed", "1"],
        "compress RUN FILE -o OUT": ["compress", w["run"], w["corpus"], "-o", str(Path(w["corpus"]).parent / "o")],
        "serve RUN --port --max-batch": ["serve", w["run"], "--port", "8080", "--max-batch", "16"],
    }


def time_parse(parser, argv: list[str]) -> float:
    t0 = time.perf_counter()
    parser.parse_args(argv)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=200)
    args = ap.parse_args()
    checked, plain = build_parser(), unchecked(build_parser())
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for name, argv in commands(workspace(Path(tmp))).items():
            for parser in (checked, plain):  # warm-up (lazy imports, file-system caches)
                time_parse(parser, argv)
            a, b = [], []
            for _ in range(args.repeats):
                a.append(time_parse(checked, argv))
                b.append(time_parse(plain, argv))
            d = np.array(a) - np.array(b)  # each pair ran back to back: load on the machine hits both
            low, high = bootstrap_statistic(lambda i, d=d: float(np.median(d[i])), len(d), block_len=10)
            rows.append((name, statistics.median(a), statistics.median(b), float(np.median(d)), low, high))
    print(f"{'command':<48} {'checked':>10} {'unchecked':>10}   {'added, 95% interval':<24}")
    for name, a, b, diff, low, high in rows:
        us = lambda t: f"{t * 1e6:.0f}us"  # noqa: E731
        print(f"{name:<48} {us(a):>10} {us(b):>10}   {us(diff)} [{us(low)}, {us(high)}]")
    print(f"medians of {args.repeats} interleaved parses each; a start-up of `seqlab` (importing torch) takes "
          f"seconds, for scale")


if __name__ == "__main__":
    main()
