"""Does seqlab work on a 100 MB corpus? Start-up, count-model build and load, memory, eval and surprise speed.

    python bench/scale.py [--mb 100] [--budget 10m] [--out ~/.cache/seqlab/scale] [--history 100000000]
                          [--val-fraction 0.01] [--eval-bytes 200000] [--reuse [--keep-table]]
                          [--before SRC] [--repeats 1]

The corpus is assembled reproducibly from Debian packages' docs and sources (PACKAGES:
`apt-get download` + `dpkg-deb -x`, no root; text files only, sorted paths, capped at
--mb), as bench/debian_corpora.py does. Each stage runs as its own process, timed, with
its peak resident memory (the process's ru_maxrss, from wait4) and the peak of its
anonymous part (RssAnon, sampled): the peak RSS of a scoring process counts the pages of
the memory-mapped table it read, which are the page cache's (shared, dropped under
pressure); the anonymous part is what the process holds itself.

  tokenise + cache   encode_corpus from scratch, then again (its cache)
  train              `seqlab train CORPUS --budget B --set counts.max_history=H`: at its end
                     the count model's table is built into RUN/counts/ (store.py), then the
                     final eval scores the whole held-out split (--val-fraction of every file)
  build              the table alone, built again from RUN/history.npy into RUN/counts/ (store.build)
  load               seqlab.load(RUN) and its count model, opened from RUN/counts/ (disktable.py)
  eval               `seqlab eval RUN HELD_OUT` on --eval-bytes of the held-out split
  surprise           `seqlab surprise RUN FILE --top 3` (fixes, one reading) on 2,000 bytes of it

--reuse keeps OUT/run from an earlier call and measures from the build on.

--before SRC (a seqlab source tree, e.g. a `git archive` of main) runs eval and surprise
with it too, in turn with this tree's, --repeats times each, and says whether both printed
the same JSON; --keep-table (with --reuse) skips the build.

Goals (issue 29): the count model of a 100M-token history loads in <= 10 s, and scoring stays
under 6 GB resident; a history too large for the free memory or disk is refused in one line.
Measured 2026-12-05 (docs/countmodel.md has the whole tables): `--mb 100 --budget 1m --val-fraction
0.002` (96.2M history tokens): build 307 s at 0.98 GB peak RSS, a 10.54 GiB table. Mapped (main then),
eval 3,157 bytes/s at 10.89 GB peak RSS of which 0.32 GB anonymous (the rest the mapped table's pages).
Read through countmodel/disktable.py instead, `... --reuse --keep-table --before MAIN --repeats 3` at
15:00 UTC, load average 1.6-3.2: load 1.5 s; eval 9,707 bytes/s (median of 3) at 1.19 GB peak RSS
against main's 11,436 at 10.48 GB; surprise (2,000 bytes, fixes) 13.8 s at 1.13 GB against 11.4 s at
4.10 GB; the same output from both.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[0]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402
from debian_corpora import unpack  # noqa: E402
from trees import seqlab_src  # noqa: E402

# (package, root inside it): text-heavy Debian packages, about 130 MB of text together
PACKAGES = [("python3.11-doc", "usr/share/doc/python3.11"), ("python3-django", "usr/lib/python3/dist-packages"),
            ("perl-doc", "usr/share/perl"), ("linux-libc-dev", "usr/include"), ("fortunes", "usr/share/games")]


def is_text(path: Path) -> bool:
    if not path.is_file() or path.is_symlink():
        return False
    with open(path, "rb") as f:
        return b"\0" not in f.read(8192)


def assemble(out: Path, max_bytes: int) -> Path:
    """One file per source file, under out/corpus, until max_bytes (deterministic: sorted paths)."""
    target = out / "corpus"
    if target.exists():
        return target
    tmp = out / "corpus.tmp"
    total = 0
    for package, inner in PACKAGES:
        source = unpack(package, out) / inner
        for path in sorted(source.rglob("*")):
            if total >= max_bytes:
                break
            if is_text(path):
                dest = tmp / package / path.relative_to(source)
                dest.parent.mkdir(parents=True, exist_ok=True)
                data = path.read_bytes()[: max_bytes - total]
                dest.write_bytes(data)
                total += len(data)
    tmp.rename(target)
    return target


def measure(argv: list[str], env=None) -> tuple[float, float, str, float]:
    """(wall seconds, peak resident GB, stdout + stderr, peak anonymous resident GB) of a process.

    The peak resident set (ru_maxrss, from wait4) counts the pages of the memory-mapped count table a lookup read,
    which are the page cache's to drop; the anonymous part (RssAnon, sampled every 0.1 s) is what the process
    itself holds."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, **(env or {})})
        anon = 0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            anon = max(anon, _anonymous(proc.pid))
            time.sleep(0.1)
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        out = log.read()
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(argv)}\n{out[-3000:]}")
    return seconds, usage.ru_maxrss / 2**20, out, anon / 2**20


def _anonymous(pid: int) -> int:
    """The process's RssAnon in KiB (0 once it has gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def python(code: str, *args) -> list[str]:
    return [sys.executable, "-c", "import sys; sys.path.insert(0, %r)\n" % str(Path(__file__).resolve().parents[1]
                                                                            / "src") + code, *map(str, args)]


TOKENISE = """
from seqlab.data.corpus import cache_root, encode_corpus, read_documents
from seqlab.data.tokenizer import ByteTokenizer
data = encode_corpus(read_documents([sys.argv[1]]), [], ByteTokenizer(), float(sys.argv[2]), cache_root())
print(len(data.train), "training tokens")
"""
BUILD = """
import shutil
import numpy as np
from pathlib import Path
from seqlab.countmodel import store
from seqlab.run import read_config
run = Path(sys.argv[1]); c = read_config(run).counts
shutil.rmtree(run / "counts")  # built again in its place: two tables at once would take twice the disk
store.build(np.load(run / "history.npy", mmap_mode="r"), list(c.orders) + list(c.match_orders), run / "counts")
"""
LOAD = """
import time
from seqlab.run import load
t0 = time.perf_counter(); run = load(sys.argv[1]); model = run.count_model
print(f"{time.perf_counter() - t0:.2f} s to load; {len(model.table):,} entries")
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=100)
    ap.add_argument("--budget", default="10m")
    ap.add_argument("--history", type=int, default=100_000_000, help="counts.max_history")
    ap.add_argument("--eval-bytes", type=int, default=200_000)
    ap.add_argument("--val-fraction", type=float, default=0.01,
                    help="the run's held-out share (train's final eval scores all of it)")
    ap.add_argument("--out", type=Path, default=Path.home() / ".cache" / "seqlab" / "scale")
    ap.add_argument("--reuse", action="store_true", help="keep OUT/run when it exists: measure from the build on")
    ap.add_argument("--keep-table", action="store_true", help="with --reuse: do not build the table again")
    ap.add_argument("--before", metavar="SRC", help="a seqlab source tree (a checkout or its src/): eval and "
                    "surprise with it too, in turn with this tree's")
    ap.add_argument("--repeats", type=int, default=1, help="readings of eval and surprise per tree")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    corpus = assemble(args.out, int(args.mb * 1e6))
    n_bytes = sum(p.stat().st_size for p in corpus.rglob("*") if p.is_file())
    cache = {"SEQLAB_CACHE": str(args.out / "cache")}
    rows = []
    run = args.out / "run"
    if not (args.reuse and (run / "config.json").exists()):
        shutil.rmtree(run, ignore_errors=True)
        for label in ("tokenise + cache (first)", "tokenise (cached)"):
            seconds, rss, _, anon = measure(python(TOKENISE, corpus, args.val_fraction), cache)
            rows.append((label, seconds, rss, anon, ""))
        seconds, rss, out, anon = measure([sys.executable, "-m", "seqlab", "train", str(corpus), "--budget",
                                           args.budget, "--val-fraction", str(args.val_fraction),
                                           "--set", f"counts.max_history={args.history}", "--out", str(run)],
                                          {**cache, "PYTHONPATH": str(Path(__file__).parents[1] / "src")})
        rows.append(("train (budget + final eval)", seconds, rss, anon, f"{args.budget} budget"))
    if not (args.keep_table and args.reuse and (run / "counts" / "meta.json").exists()):
        seconds, rss, _, anon = measure(python(BUILD, run))
        rows.append(("count model: build table", seconds, rss, anon, _size(run)))
    seconds, rss, out, anon = measure(python(LOAD, run))
    rows.append(("count model: load", seconds, rss, anon, out.strip().splitlines()[-1]))
    held = args.out / "held_out.txt"
    tail = b"".join(p.read_bytes()[-max(1, int(p.stat().st_size * args.val_fraction)) :]
                    for p in sorted(corpus.rglob("*")) if p.is_file())  # the end of every file: the held-out split
    held.write_bytes(tail[: args.eval_bytes])
    small = args.out / "surprise.txt"
    small.write_bytes(tail[:2000])
    rows += scoring_rows(args, run, held, small)
    print(f"corpus {corpus}: {n_bytes:,} bytes; counts.max_history {args.history:,}\n")
    print(f"| {'stage':<30} | {'seconds':>8} | {'peak RSS GB':>11} | {'of it anon GB':>13} | note")
    print(f"|{'-' * 32}|{'-' * 10}|{'-' * 13}|{'-' * 15}|{'-' * 30}")
    for label, seconds, rss, anon, note in rows:
        print(f"| {label:<30} | {seconds:>8.1f} | {rss:>11.2f} | {anon:>13.2f} | {note}")


def scoring_rows(args, run: Path, held: Path, small: Path) -> list[tuple]:
    """The eval and surprise rows: with --before, this tree's and SRC's in turn, --repeats times, and whether the
    two print the same figures (eval's --json, surprise's anomalies and fixes)."""
    trees = [("", str(Path(__file__).parents[1] / "src"))] + ([(" before", seqlab_src(args.before))]
                                                              if args.before else [])
    commands = [("eval", ["eval", str(run), str(held), "--json"], len(held.read_bytes())),
                ("surprise, 2,000 bytes, fixes", ["surprise", str(run), str(small), "--top", "3", "--json"], 2000)]
    found, printed = {}, {}
    for _ in range(args.repeats):
        for label, argv, _ in commands:
            for name, src in trees:
                seconds, rss, out, anon = measure([sys.executable, "-m", "seqlab", *argv], {"PYTHONPATH": src})
                found.setdefault((label, name), []).append((seconds, rss, anon))
                printed.setdefault(label, set()).add(out[out.index("{"):])  # the JSON, without any warnings
    rows = []
    for (label, name), each in found.items():
        n = next(n for lab, _, n in commands if lab == label)
        note = "bytes/s " + ", ".join(f"{n / seconds:,.0f}" for seconds, _, _ in each)
        if args.before:
            note += "; same output before and after: " + str(len(printed[label]) == 1)
        rows.append((f"{label}{name}", float(np.median([e[0] for e in each])), max(e[1] for e in each),
                     max(e[2] for e in each), note))
    return rows


def _size(run: Path) -> str:
    total = sum(p.stat().st_size for p in (run / "counts").iterdir())
    return f"table on disk {total / 2**30:.2f} GiB"


if __name__ == "__main__":
    main()
