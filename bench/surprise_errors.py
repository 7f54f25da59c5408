"""Does `seqlab surprise` find single injected errors in well-formed structured text?

    python bench/surprise_errors.py [--budget 10m | --run RUN] [--corpus '/usr/include/**/*.h'] [--trials 60]
                                    [--network-alone] [--bidirectional | --backward RUN]

Files of a structured corpus (default: the C headers under /usr/include, from
Debian packages) are split by file into training and held-out sets. A run is
trained on the training files for --budget (or --run is taken as given). Each
trial takes a held-out file, cuts a --window of bytes out of it, injects one
error (delete a closing bracket/brace/paren/quote or tag, swap two neighbouring
characters, or delete one character) and runs surprise on the window (as `seqlab
surprise` does by default: the count model mixed in; or --network-alone; with
--bidirectional, a forward and a backward run trained for half the budget each,
as `seqlab surprise RUN FILE --backward BACKWARD_RUN`). Reported:
top-1 (the first anomaly lies within 10 bytes of the injection), top-3 (one of
the first three does), and fix (the first anomaly's suggested edit restores the
original bytes exactly), per error kind, with the chance level of top-1 for a
random span of the same window as a baseline, and how often the error is near
any of the spans given a fix (what ranking them can reach at best). Every rate
carries its 95% Wilson interval. --trial-seed 0,1,2,3 runs several sets of trials
in one call: a row per set (the spread between sets) and the sets pooled.
"""

import argparse
import glob
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from seqlab.run import load  # noqa: E402
from seqlab.stats import wilson  # noqa: E402
from seqlab.surprise import surprise  # noqa: E402

CLOSERS = b")]}\">"
NEAR = 10
TOP = 3  # anomalies listed per trial: top-1 and top-3 are read from them


def split_files(pattern: str, held_out: int, seed: int, max_train_bytes: int) -> tuple[list[Path], list[Path]]:
    files = sorted(p for p in map(Path, glob.glob(pattern, recursive=True)) if p.is_file()
                   and 1500 <= p.stat().st_size <= 200_000)
    if len(files) < held_out + 10:
        sys.exit(f"only {len(files)} files match {pattern!r}; give another --corpus")
    random.Random(seed).shuffle(files)
    train_files, total = [], 0
    for p in files[held_out:]:
        if total >= max_train_bytes:
            break
        train_files.append(p)
        total += p.stat().st_size
    return train_files, files[:held_out]


def write_corpus(train_files: list[Path], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    corpus = out / "train.txt"
    corpus.write_bytes(b"".join(p.read_bytes() for p in train_files))
    return corpus


def train_run(corpus: Path, budget: str, out: Path, arch: str, model: list[str], backward: bool = False) -> Path:
    """Train through the CLI, so `--arch auto` gets exactly what `seqlab train` picks with no --arch."""
    from seqlab.__main__ import main as seqlab_main

    run_dir = out / ("backward" if backward else "run")
    argv = ["train", str(corpus), "--budget", budget, "--out", str(run_dir), "--val-fraction", "0.02"]
    argv += [] if arch == "auto" else ["--arch", arch]
    argv += [x for item in model for x in ("--set", f"model.{item}")]
    argv += ["--backward"] if backward else []
    if seqlab_main(argv) != 0:
        sys.exit("training failed")
    return run_dir


def half(budget: str) -> str:
    from seqlab.config import parse_duration

    return f"{parse_duration(budget) / 2:g}s"


def inject(data: bytes, kind: str, rng: random.Random) -> tuple[bytes, int] | None:
    """(corrupted bytes, offset of the error) or None when the window has no place for this kind."""
    if kind == "delete closer":
        spots = [i for i in range(len(data)) if data[i] in CLOSERS]
        if not spots:
            return None
        i = rng.choice(spots)
        return data[:i] + data[i + 1 :], i
    if kind == "swap":
        spots = [i for i in range(len(data) - 1)
                 if data[i] != data[i + 1] and data[i : i + 2].strip() == data[i : i + 2]]
        i = rng.choice(spots)
        return data[:i] + data[i + 1 : i + 2] + data[i : i + 1] + data[i + 2 :], i
    spots = [i for i in range(len(data)) if data[i : i + 1].strip()]
    i = rng.choice(spots)
    return data[:i] + data[i + 1 :], i


def near(anomaly, offset: int) -> bool:
    return near_span(anomaly.offset, anomaly.offset + anomaly.length, offset)


def near_span(start: int, stop: int, offset: int) -> bool:
    return start - NEAR <= offset <= stop + NEAR


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", default="10m", help="training time when no --run is given")
    ap.add_argument("--run", help="use this trained run instead of training one")
    ap.add_argument("--corpus", default="/usr/include/**/*.h")
    ap.add_argument("--arch", default="auto", help="auto (default: what `seqlab train` picks) or an architecture")
    ap.add_argument("--model", action="append", default=[], metavar="KEY=VALUE", help="model size, e.g. n_hidden=256")
    ap.add_argument("--out", default="/tmp/seqlab-surprise-bench")
    ap.add_argument("--held-out", type=int, default=40, help="files kept out of training")
    ap.add_argument("--max-train-mb", type=float, default=20)
    ap.add_argument("--trials", type=int, default=60)
    ap.add_argument("--window", type=int, default=2000, help="bytes of a held-out file per trial")
    ap.add_argument("--seed", type=int, default=0,
                    help="picks the held-out files (a given --run was trained on the rest)")
    ap.add_argument("--trial-seed", help="picks the windows and errors (default: --seed); another set of trials for "
                                         "the same run. Several, comma-separated (0,1,2,3): a row per set, then pooled")
    ap.add_argument("--network-alone", action="store_true", help="score as surprise --network-alone")
    ap.add_argument("--bidirectional", action="store_true",
                    help="train a forward and a backward run for half the budget each and score as surprise "
                         "--backward (with --run: give the backward run as --backward)")
    ap.add_argument("--backward", metavar="RUN", help="a backward run for the given --run (surprise --backward)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads while scoring (1: least contention)")
    args = ap.parse_args()

    train_files, held = split_files(args.corpus, args.held_out, args.seed, int(args.max_train_mb * 1e6))
    if args.bidirectional and args.run or args.backward and not args.run:
        sys.exit("--bidirectional trains both runs; with --run, give the backward run as --backward")
    t0 = time.perf_counter()
    budget, out = half(args.budget) if args.bidirectional else args.budget, Path(args.out)
    corpus = None if args.run else write_corpus(train_files, out)
    run_dir = args.run or train_run(corpus, budget, out, args.arch, args.model)
    backward_dir = args.backward or (train_run(corpus, budget, out, args.arch, args.model, backward=True)
                                     if args.bidirectional else None)
    trained = f"given run {args.run}" if args.run else \
        f"trained {budget}{' each way' if args.bidirectional else ''} on {len(train_files)} files"
    run = load(run_dir)
    backward = load(backward_dir) if backward_dir else None
    torch.set_num_threads(args.threads)
    print(f"{trained} ({time.perf_counter() - t0:.0f}s); held-out: {len(held)} files of {args.corpus}")

    seeds = [args.seed] if args.trial_seed is None else [int(x) for x in args.trial_seed.split(",")]
    sets = {seed: run_trials(run, backward, held, seed, args) for seed in seeds}
    pooled = {kind: [sum(s[kind][i] for s, _, _ in sets.values()) for i in range(6)] for kind in KINDS}
    print(f"\n{len(seeds)} set(s) of up to {args.trials} trials (trial seeds {', '.join(map(str, seeds))}); "
          f"95% Wilson intervals")
    print_rates("all sets pooled, by kind" if len(seeds) > 1 else "by kind", list(pooled.items()) +
                [("all", totals(pooled))])
    if len(seeds) > 1:
        print_rates("each set (the spread between sets of the same run)",
                    [(f"set {seed}", totals(stats)) for seed, (stats, _, _) in sets.items()])
    speeds = [n / seconds for _, n, seconds in sets.values()]
    spread = f" (sets: {', '.join(f'{v:,.0f}' for v in speeds)})" if len(speeds) > 1 else ""
    print(f"\nwindows of {args.window} bytes; within {NEAR} bytes counts as found; "
          f"{sum(n for _, n, _ in sets.values()) / sum(t for _, _, t in sets.values()):,.0f} bytes/s through "
          f"surprise (scoring + fixes){spread}")


KINDS = ["delete closer", "swap", "delete char"]


def run_trials(run, backward, held: list[Path], trial_seed: int, args) -> tuple[dict, int, float]:
    """One set of trials: ({kind: [trials, top1, top3, fix, chance, in a candidate]}, bytes scored, seconds)."""
    rng = random.Random(trial_seed + 1)
    stats = {k: [0, 0, 0, 0, 0.0, 0] for k in KINDS}
    t0, scored = time.perf_counter(), 0
    for trial in range(args.trials):
        kind = KINDS[trial % len(KINDS)]
        text = rng.choice(held).read_bytes()
        start = rng.randrange(0, max(1, len(text) - args.window))
        window = text[start : start + args.window]
        made = inject(window, kind, rng)
        if made is None:
            continue
        bad, offset = made
        report = surprise(run, bad, top=TOP, name=f"trial{trial}", mixed=not args.network_alone, backward=backward)
        scored += len(bad)
        top = report.anomalies
        s = stats[kind]
        s[0] += 1
        s[1] += bool(top) and near(top[0], offset)
        s[2] += any(near(a, offset) for a in top)
        s[3] += bool(top) and top[0].fix is not None and top[0].fix.apply(bad) == window
        s[4] += min(1.0, (2 * NEAR + 1) / len(bad))
        s[5] += any(near_span(a, b, offset) for a, b in report.candidates)
    return stats, scored, time.perf_counter() - t0


def totals(stats: dict) -> list:
    return [sum(s[i] for s in stats.values()) for i in range(6)]


def rate(hits: int, n: int) -> str:
    low, high = wilson(hits, n)
    return f"{hits / max(n, 1):.0%} [{low:.0%}, {high:.0%}]"


def print_rates(title: str, rows: list) -> None:
    print(f"\n{title}\n")
    print(f"| {'error':<14} | {'trials':>6} | {'top-1':>16} | {'top-3':>16} | {'fix restores':>16} | "
          f"{'top-1 by chance':>15} | {'in a candidate':>16} |")
    print(f"|{'-' * 16}|{'-' * 8}|{'-' * 18}|{'-' * 18}|{'-' * 18}|{'-' * 17}|{'-' * 18}|")
    for name, s in rows:
        n = max(s[0], 1)
        print(f"| {name:<14} | {s[0]:>6} | {rate(s[1], n):>16} | {rate(s[2], n):>16} | {rate(s[3], n):>16} "
              f"| {s[4] / n:>15.1%} | {rate(s[5], n):>16} |")


if __name__ == "__main__":
    main()
