"""Two versions of the bitwise model (countmodel/bitcm.py) on the same bytes: what a change to it gains, and costs.

    python bench/bitcm_versus.py TUNING_RUN RUN --base REV [--head REV] [--tuning-only] [--fresh] [--zpaq]
        [--base-table-bits B] [--head-table-bits H]

Each version's files of the bitwise model (src/seqlab/countmodel/bit*.py) come from git (`git show REV:...`;
--head defaults to the working tree's) as a package of their own, and it runs as `counts.bitcm` runs it: it reads the
run's training bytes (its history.npy, the last --history bytes), then scores the held-out bytes causally, eval's mix
today one more input of its mixers (bitcm_gain.todays_mix, cached; its own bits per byte are printed too, and
with --zpaq zpaq -m5's). TUNING_RUN's held-out bytes are a slice of the training split (bench/adapt.py makes
such a run): a change is kept when the tuning slice's 95% interval of head less base lies below zero. RUN's
held-out split is only reported (--tuning-only leaves it out). Also printed: each version's scoring speed in KB
per CPU-second of scoring (time.thread_time, the training bytes' read apart). A version's bits are cached under
--cache by its file's hash, so a base is scored once (--fresh: both scored again, side by side in this run).
--base-table-bits/--head-table-bits: that version's slot table of 2^B slots (default: its own TABLE_BITS), so one
revision can be compared with itself at two table sizes.
"""

import hashlib
import importlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import print_table, seqlab

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bitcm_gain import todays_mix, zpaq_bpb  # noqa: E402
from mixer_gains import paired, shown, tuning_arguments  # noqa: E402
from seqlab.countmodel import HISTORY_FILE  # noqa: E402
from seqlab.countmodel.bitrows import byte_rows  # noqa: E402
from seqlab.data.corpus import cache_root, encode_corpus, read_documents  # noqa: E402
from seqlab.scoring import score_logits  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SOURCE = "src/seqlab/countmodel"


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout


def version_package(rev: str | None, cache: Path) -> Path:
    """The bitwise model's files (bit*.py: bitcm.py, bitkernel.py, bitcontexts.py, bitrows.py, bitstate.py) at git
    revision rev (None: the working tree's), as a package of their own under cache, named by their hash (numba
    caches compiled code by path)."""
    if rev is None:
        texts = {p.name: p.read_text() for p in sorted((ROOT / SOURCE).glob("bit*.py"))}
    else:
        names = [Path(n).name for n in git("ls-tree", "--name-only", f"{rev}:{SOURCE}").split()]
        texts = {n: git("show", f"{rev}:{SOURCE}/{n}") for n in names if n.startswith("bit") and n.endswith(".py")}
    return package_of(texts, cache)


def package_of(texts: dict[str, str], cache: Path) -> Path:
    """The files `texts` (name -> text) as a package of their own under cache, named by their hash."""
    digest = hashlib.sha1("".join(f"{n}\0{t}\0" for n, t in sorted(texts.items())).encode()).hexdigest()[:12]
    package = cache / f"bitcm_{digest}"
    if not package.exists():
        package.mkdir(parents=True)
        for name, text in texts.items():
            (package / name).write_text(text)
        (package / "__init__.py").write_text("")
    return package


def load_version(package: Path):
    if str(package.parent) not in sys.path:
        sys.path.insert(0, str(package.parent))
    return importlib.import_module(f"{package.name}.bitcm")


def version_bits(module, run, items, mixed: np.ndarray, targets: np.ndarray, history_bytes: int,
                 table_bits: int | None = None):
    """(bits per token of the held-out tokens, CPU-seconds reading the history, CPU-seconds scoring); table_bits: its
    slot table's (None: the version's default)."""
    warm = module.BitCM(table_bits=10, match_bits=8)  # compile first: its seconds are not the model's
    warm.learn(b"warm up")
    warm.score(b"ab", np.full((2, 256), -np.log(256)))
    history = np.load(run.path / HISTORY_FILE, mmap_mode="r")
    model = module.BitCM() if table_bits is None else module.BitCM(table_bits=table_bits)
    t0 = time.thread_time()
    model.learn(np.asarray(history[history < 256])[-history_bytes:])
    learn_s, score_s, rows, at = time.thread_time() - t0, 0.0, [], 0
    for tokens, n_context, _ in items:
        context, scored = np.asarray(tokens[:n_context]), np.asarray(tokens[n_context:])
        context = context[context < 256]
        if not model.ends_with(context):
            model.learn(context)
        is_byte = scored < 256
        t0 = time.thread_time()
        logp = model.score(scored[is_byte], mixed[at : at + len(scored)][is_byte, :256])
        score_s += time.thread_time() - t0
        rows.append(byte_rows(logp, is_byte, run.tokenizer.vocab_size))
        at += len(scored)
    rows = np.concatenate(rows)
    return -rows[np.arange(len(targets)), targets] / np.log(2), learn_s, score_s


def held_out_items(run, limit: int):
    """[(tokens, n_context, the network's scored stream)] of the run's held-out texts, as mixer_gains.held_out, the
    network's stream left lazy (todays_mix reads it only when its mix is not cached)."""
    cfg = run.config.data
    data = encode_corpus(read_documents(cfg.paths), [], run.tokenizer, cfg.val_fraction, cache_root())
    items, left = [], limit
    for h in data.held_out:
        tokens = np.asarray(h.tokens)[: h.n_context + left]
        if left > 0 and len(tokens) > h.n_context:
            items.append((tokens, h.n_context, score_logits(run.model, tokens, h.n_context, run.device)))
            left -= len(tokens) - h.n_context
    return items


def cached_bits(path: Path, run, items, mixed, targets, history_bytes: int, cache: Path, fresh: bool,
                table_bits: int | None = None):
    key = f"{path.name}:{run.path.resolve()}:{len(targets)}:{history_bytes}" + (f":{table_bits}" if table_bits else "")
    key = hashlib.sha1(key.encode()).hexdigest()[:16]
    saved = cache / f"bits-{key}.npz"
    if saved.exists() and not fresh:
        s = np.load(saved)
        return s["bits"], float(s["learn_s"]), float(s["score_s"])
    bits, learn_s, score_s = version_bits(load_version(path), run, items, mixed, targets, history_bytes, table_bits)
    np.savez(saved, bits=bits, learn_s=learn_s, score_s=score_s)
    return bits, learn_s, score_s


def main() -> None:
    p = tuning_arguments(__doc__)
    p.add_argument("--base", required=True, help="git revision of the version compared against")
    p.add_argument("--head", help="git revision of the version measured (default: the working tree's)")
    p.add_argument("--tuning-only", action="store_true", help="leave RUN's held-out split out")
    p.add_argument("--fresh", action="store_true", help="score both versions again (no cached bits)")
    p.add_argument("--zpaq", action="store_true", help="zpaq -m5 on the same bytes too (size(all) - size(train))")
    p.add_argument("--history", type=int, default=16 << 20, help="training bytes the bitwise model reads (the last)")
    p.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "bitcm-gain"))
    p.add_argument("--base-table-bits", type=int, help="the base's slot table: 2^N slots (default: its own)")
    p.add_argument("--head-table-bits", type=int, help="the head's slot table: 2^N slots (default: its own)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cache, limit = Path(args.cache), args.bytes or 1 << 62
    base, head = version_package(args.base, cache), version_package(args.head, cache)
    rows = []
    splits = [("tuning slice", args.tuning_run)] + ([] if args.tuning_only else [("held-out (report only)", args.run)])
    for label, path in splits:
        run = seqlab.load(path)
        items = held_out_items(run, limit)
        mixed, targets = todays_mix(run, items, cache)
        mixed = mixed.astype(np.float64)
        lengths = np.array([len(b) for b in run.tokenizer.token_bytes])[targets]
        (b, _, b_s), (h, learn_s, h_s) = (cached_bits(v, run, items, mixed, targets, args.history, cache, args.fresh,
                                                      bits)
                                          for v, bits in ((base, args.base_table_bits), (head, args.head_table_bits)))
        n, today = lengths.sum(), -mixed[np.arange(len(targets)), targets] / np.log(2)
        rows.append([label, f"{n:,}", f"{today.sum() / n:.4f}", f"{b.sum() / n:.4f}", f"{h.sum() / n:.4f}",
                     shown(paired(h, b, lengths, args.block)), f"{n / b_s / 1e3:.1f}", f"{n / h_s / 1e3:.1f}",
                     f"{zpaq_bpb(run, items):.4f}" if args.zpaq else ""])
        print(" | ".join(rows[-1]), f"(head read the history in {learn_s:.1f} CPU-s)", flush=True)
    print()
    print_table(f"bitcm.py {args.head or 'working tree'} against {args.base} (given eval's mix)",
                ["split", "bytes", "eval's mix today", "base bpb", "head bpb", "head - base, 95%", "base KB/CPU-s",
                 "head KB/CPU-s", "zpaq -m5"],
                rows)


if __name__ == "__main__":
    main()
