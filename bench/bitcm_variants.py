"""Variants of the bitwise model (countmodel/bit*.py) on a tuning run's held-out slice, each paired with the tree's.

    python bench/bitcm_variants.py TUNING_RUN [--variants NAME,...] [--block 4096] [--cache DIR]

TUNING_RUN: a run trained on the first 90% of a corpus's training split (bench/adapt.py's tuning corpus), so its
held-out bytes are training data. The bitwise model reads the run's training bytes, then scores the slice with eval's
mix (without the bitwise model: bitcm_gain.mix_and_network) as its given distribution, as `counts.bitcm` does. A variant
is the tree's model changed in one way (VARIANTS): an edit of its source text (applied to a copy, as bitcm_versus.py
loads a revision; an edit that no longer matches the tree stops the run), a change to its weights once the training
bytes are read, a schedule of the mixers' rate while scoring, or the network's distribution left out. Each is scored
from scratch; printed: its bits per byte, its difference from the tree's model on the same bytes with a 95%
block-bootstrap interval, and the CPU-seconds of its scoring. The variants are 2026-12-07's (docs/quality.md, "Tried
on the tuning slice"): the parts kept that day, each undone, and the changes tried and not kept. The day's table
was measured against the model before (this file at d74f6e9, whose variants were edits of that model).
"""

import argparse
import importlib
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from common import print_table, seqlab

import numpy as np  # noqa: E402

from bitcm_gain import mix_and_network  # noqa: E402
from bitcm_versus import held_out_items, load_version, package_of  # noqa: E402
from mixer_gains import paired, shown  # noqa: E402
from seqlab.countmodel import HISTORY_FILE  # noqa: E402
from seqlab.countmodel.bitrows import byte_rows  # noqa: E402

SOURCE = Path(__file__).resolve().parents[1] / "src/seqlab/countmodel"
KERNEL, MODEL = "bitkernel.py", "bitcm.py"
APM = "APM_WEIGHTS = (0.1, 0.4, 0.2)"
CHUNK = 256  # bytes scored between two changes of the mixers' rate (a schedule's step)

# mixer 3's weight sets (the last two bytes' classes) times 4 buckets of the given's stretch at the node (none, < 1,
# < 3, more)
BY_GIVEN = [
    (KERNEL, "MIXER_SETS = (256, MATCH_SETS, 100)", "MIXER_SETS = (256, MATCH_SETS, 400)"),
    (KERNEL, "def _mixer_rows(c0, seen, length, bctx, out):", "def _mixer_rows(c0, seen, length, bctx, out, given):"),
    (KERNEL, "    out[OUT_SET + 2] = MIXER_FROM[2] + bctx[2]",
     "    bucket = 0 if given == 0.0 else 1 if abs(given) < 1.0 else 2 if abs(given) < 3.0 else 3\n"
     "    out[OUT_SET + 2] = MIXER_FROM[2] + bctx[2] + 100 * bucket"),
    (KERNEL, "    _mixer_rows(c0, seen, length, bctx, out)", "    _mixer_rows(c0, seen, length, bctx, out, given)"),
]


@dataclass
class Variant:
    edits: list = field(default_factory=list)  # (file, old text, new text)
    after_reading: object = None  # fn(model, kernel module): a change once the training bytes are read
    rate: object = None  # fn(bytes scored) -> the mixers' rate as a multiple of the model's
    network: bool = True  # the network's distribution given beside the mix's (as counts.bitcm gives it)


def unshrunk(model, kernel):
    """The model before 2026-12-07's meet_the_given: the weights learnt without a given kept as they are at the first
    given, the given's prior 0.6."""
    model.given_yet = True
    model.w[:, kernel.GIVEN_IN] = 0.6


def sets_copied(model, kernel):
    """BY_GIVEN's new weight sets start as copies of the ones the training bytes taught (bucket 0: no given)."""
    first = kernel.MIXER_FROM[2]
    for k in (1, 2, 3):
        model.w[first + 100 * k : first + 100 * (k + 1)] = model.w[first : first + 100]


VARIANTS = {
    # the parts kept on 2026-12-07, each undone (the tree's model has them all)
    "without the network's input": Variant(network=False),
    "fast rate's limit 4 (16)": Variant([(MODEL, "FAST_LIMIT = 16 ", "FAST_LIMIT = 4 ")]),
    "slow rate's limit 127 (255)": Variant([(MODEL, "LIMIT = 255 ", "LIMIT = 127 ")]),
    "APM weights 0.2, 0.4, 0.2 (0.1, 0.4, 0.2)": Variant([(KERNEL, APM, "APM_WEIGHTS = (0.2, 0.4, 0.2)")]),
    "the weights not shrunk at the first given, the given's 0.6 (0.8, 0.4)": Variant(after_reading=unshrunk),
    "all five undone (the model before)": Variant(
        [(MODEL, "FAST_LIMIT = 16 ", "FAST_LIMIT = 4 "), (MODEL, "LIMIT = 255 ", "LIMIT = 127 "),
         (KERNEL, APM, "APM_WEIGHTS = (0.2, 0.4, 0.2)")], after_reading=unshrunk, network=False),
    # tried and not kept
    "the mixers' rate x(1 + 65536 / (65536 + bytes scored))": Variant(rate=lambda n: 1 + 65536 / (65536 + n)),
    "the mixers' rate x2": Variant(rate=lambda n: 2.0),
    "mixer 3's sets by the given's stretch (4 buckets)": Variant(BY_GIVEN),
    "the same, its new sets copied from the learnt ones": Variant(BY_GIVEN, after_reading=sets_copied),
    "fast rate's limit 8": Variant([(MODEL, "FAST_LIMIT = 16 ", "FAST_LIMIT = 8 ")]),
    "APM weights 0.15, 0.3, 0.3": Variant([(KERNEL, APM, "APM_WEIGHTS = (0.15, 0.3, 0.3)")]),
    "APM rate 0.01 (0.02)": Variant([(KERNEL, "out[OUT_ST], y, 0.02)", "out[OUT_ST], y, 0.01)")]),
    "APM rate 0.03": Variant([(KERNEL, "out[OUT_ST], y, 0.02)", "out[OUT_ST], y, 0.03)")]),
    "bit histories of 7 bits (6)": Variant([(KERNEL, "HISTORY_BITS = 6 ", "HISTORY_BITS = 7 ")]),
    "mixers' rate 0.002 (0.0015)": Variant([(MODEL, "learning_rate: float = 0.0015",
                                             "learning_rate: float = 0.002")]),
    "slow probabilities x n / (n + 1), n the entry's count": Variant([
        (KERNEL, "            x[PER_CTX * i] = STRETCH[slots[s, j] >> 4]",
         "            x[PER_CTX * i] = STRETCH[slots[s, j] >> 4] * (slots[s, CH + j] & 255) / "
         "((slots[s, CH + j] & 255) + 1.0)")]),
    "mixer 2's 'seen' counting orders 3 and up only": Variant([(KERNEL, "            seen += 1\n",
                                                                "            seen += 1 if i >= 3 else 0\n")]),
}


def package(variant: Variant, cache: Path) -> Path:
    """The tree's bit*.py with the variant's edits, as a package of their own named by their hash (numba caches
    compiled code by path)."""
    texts = {p.name: p.read_text() for p in sorted(SOURCE.glob("bit*.py"))}
    for name, old, new in variant.edits:
        if texts[name].count(old) != 1:
            raise SystemExit(f"an edit no longer matches {name}: {old!r}")
        texts[name] = texts[name].replace(old, new)
    return package_of(texts, cache)


def score(variant: Variant, cache: Path, run, items, mixed, network, targets, history_bytes: int):
    """(bits of each held-out token, CPU-seconds scoring) of the variant."""
    module = load_version(package(variant, cache))
    kernel = importlib.import_module(module.__name__.rsplit(".", 1)[0] + ".bitkernel")
    history = np.load(run.path / HISTORY_FILE, mmap_mode="r")
    model = module.BitCM()
    model.learn(np.asarray(history[history < 256])[-history_bytes:])
    if variant.after_reading:
        variant.after_reading(model, kernel)
    rate, rows, at, t0 = model.lr, [], 0, time.thread_time()
    for tokens, n_context, _ in items:
        context, scored = np.asarray(tokens[:n_context]), np.asarray(tokens[n_context:])
        context = context[context < 256]
        if not model.ends_with(context):
            model.learn(context)
        for start in range(0, len(scored), CHUNK if variant.rate else len(scored)):
            part = scored[start : start + (CHUNK if variant.rate else len(scored))]
            is_byte, span = part < 256, slice(at + start, at + start + len(part))
            if variant.rate:
                model.lr = rate * variant.rate(at + start)
            given, net = mixed[span][is_byte, :256], network[span][is_byte, :256] if variant.network else None
            rows.append(byte_rows(model.score(part[is_byte], given, net), is_byte, run.tokenizer.vocab_size))
        at += len(scored)
    rows = np.concatenate(rows)
    return -rows[np.arange(len(targets)), targets] / np.log(2), time.thread_time() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tuning_run")
    p.add_argument("--variants", help="comma-separated names' first words to run (default: all); --list names them")
    p.add_argument("--list", action="store_true")
    p.add_argument("--block", type=int, default=4096, help="tokens per bootstrap block")
    p.add_argument("--history", type=int, default=16 << 20, help="training bytes the bitwise model reads (the last)")
    p.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "bitcm-gain"))
    args = p.parse_args()
    if args.list:
        print("\n".join(VARIANTS))
        return
    chosen = [n for n in VARIANTS if not args.variants or any(n.startswith(w) for w in args.variants.split(","))]
    cache, run = Path(args.cache), seqlab.load(args.tuning_run)
    items = held_out_items(run, 1 << 62)
    mixed, network, targets = mix_and_network(run, items, cache)
    mixed = mixed.astype(np.float64)
    lengths = np.array([len(b) for b in run.tokenizer.token_bytes])[targets]
    n = lengths.sum()
    tree, tree_s = score(Variant(), cache, run, items, mixed, network, targets, args.history)
    rows = [["the tree's model", f"{tree.sum() / n:.4f}", "", f"{tree_s:.1f}"]]
    print(" | ".join(rows[-1]), flush=True)
    for name in chosen:
        bits, seconds = score(VARIANTS[name], cache, run, items, mixed, network, targets, args.history)
        rows.append([name, f"{bits.sum() / n:.4f}", shown(paired(bits, tree, lengths, args.block)), f"{seconds:.1f}"])
        print(" | ".join(rows[-1]), flush=True)
    print()
    print_table(f"variants of the bitwise model on {run.path}'s held-out slice ({n:,} bytes; given eval's mix)",
                ["variant", "bits per byte", "variant - tree, 95%", "CPU-s scoring"], rows)


if __name__ == "__main__":
    sys.exit(main())
