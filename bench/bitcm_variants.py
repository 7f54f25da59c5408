"""Variants of the bitwise model (countmodel/bit*.py) on a tuning run's held-out slice, each paired with the tree's.

    python bench/bitcm_variants.py TUNING_RUN [--variants NAME,...] [--block 4096] [--cache DIR]

TUNING_RUN: a run trained on the first 90% of a corpus's training split (bench/adapt.py's tuning corpus), so its
held-out bytes are training data. The bitwise model reads the run's training bytes, then scores the slice with eval's
mix (without the bitwise model: bitcm_gain.mix_and_network) as its given distribution, as `counts.bitcm` does. A variant
is the tree's model changed in one way (VARIANTS): an edit of its source text (applied to a copy, as bitcm_versus.py
loads a revision; an edit that no longer matches the tree stops the run), a change to its weights once the training
bytes are read, a schedule of the mixers' rate while scoring, or the network's distribution left out. Each is scored
from scratch; printed: its bits per byte, its difference from the tree's model on the same bytes with a 95%
block-bootstrap interval, and the CPU-seconds of its scoring. The variants are 2026-12-07 (evening)'s (docs/quality.md,
"Mixer 3's weight sets by the given's confidence" and "A mixer by the partial byte and the given's confidence"): the
parts kept, each undone, and the changes tried and not kept, re-expressed as edits of the tree with them. Their
tables were measured with this file at 95ba885-2693325 (variants then edits of the tree of the time); earlier days'
variants are in this file at their commits.
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
CHUNK = 256  # bytes scored between two changes of the mixers' rate (a schedule's step)
CONFIDENCE = "    confidence = 0 if given == 0.0 else 1 if abs(given) < 2.0 else 2 if abs(given) < 4.0 else 3"
RATES = "MIXER_RATES = (1.0, 0.5, 1.0, 1.0)"
FINAL = "    e = (y - _squash(out[OUT_ST])) * lr * FINAL_RATE"  # the final mixer's step
MIXER_1, MIXER_2 = "    out[OUT_SET] = c0", "    out[OUT_SET + 1] = MIXER_FROM[1] + bucket * (N_CTX + 1) + seen"
MIXER_3 = "    out[OUT_SET + 2] = MIXER_FROM[2] + bctx[2] + 100 * confidence"
MIXER_4 = "    out[OUT_SET + 3] = MIXER_FROM[3] + c0 + 256 * confidence"
SETS = "MIXER_SETS = (256, MATCH_SETS, 100 * GIVEN_BUCKETS, 256 * GIVEN_BUCKETS)"
NO_MIXER_4 = [(KERNEL, SETS, "MIXER_SETS = (256, MATCH_SETS, 100 * GIVEN_BUCKETS)"),
              (KERNEL, RATES, "MIXER_RATES = (1.0, 0.5, 1.0)"), (KERNEL, "\n" + MIXER_4, ""),
              (KERNEL, "BY_CONFIDENCE = (2, 3) ", "BY_CONFIDENCE = (2,) ")]  # 95ba885's model
MIXER_3_PLAIN = [(KERNEL, MIXER_3, MIXER_3.replace(" + 100 * confidence", ""))]


@dataclass
class Variant:
    edits: list = field(default_factory=list)  # (file, old text, new text)
    after_reading: object = None  # fn(model, kernel module): a change once the training bytes are read
    rate: object = None  # fn(bytes scored) -> the mixers' rate as a multiple of the model's
    network: bool = True  # the network's distribution given beside the mix's (as counts.bitcm gives it)


def buckets(a: float, b: float) -> list:
    """Mixer 3's confidence buckets at a and b (the tree's: 2 and 4)."""
    return [(KERNEL, CONFIDENCE, f"    confidence = 0 if given == 0.0 else 1 if abs(given) < {a} else 2 if abs(given) "
                                 f"< {b} else 3")]


def rates(*r: float) -> list:
    return [(KERNEL, RATES, f"MIXER_RATES = {r}")]


def also_by_confidence(mixers: tuple) -> Variant:
    """Mixers 1 and/or 2 (0, 1) selecting their weight sets by the given's confidence too, started as the learnt."""
    sizes = {0: "256", 1: "MATCH_SETS"}
    sets = ", ".join(f"{sizes[m]} * GIVEN_BUCKETS" if m in mixers else sizes[m] for m in (0, 1))
    edits = [(KERNEL, SETS, f"MIXER_SETS = ({sets}, 100 * GIVEN_BUCKETS, 256 * GIVEN_BUCKETS)"),
             (KERNEL, CONFIDENCE + "\n", ""),
             (KERNEL, MIXER_1 + "\n", CONFIDENCE + "\n" + MIXER_1 + "\n")]  # the confidence first
    edits += [(KERNEL, line, f"{line} + {sizes[m]} * confidence") for m, line in ((0, MIXER_1), (1, MIXER_2))
              if m in mixers]
    return Variant(edits, after_reading=copied_sets(*mixers))


def copied_sets(*mixers: int, buckets: int | None = None):
    """after_reading: the mixers' weight sets for each confidence of the given (`buckets`, by default GIVEN_BUCKETS)
    start as those learnt without it (BitCM.spread_sets, as meet_the_given does for BY_CONFIDENCE)."""
    return lambda model, kernel: model.spread_sets(mixers, buckets or kernel.GIVEN_BUCKETS)


# 2026-12-07 (evening)'s: the three parts kept that day undone, and the changes tried and not kept (docs/quality.md);
# earlier days' variants are in this file at their commits
VARIANTS = {
    "the mixer by the partial byte and the given's confidence left out": Variant(NO_MIXER_4),
    "mixer 3's sets not by the given's confidence": Variant(MIXER_3_PLAIN),
    "mixer 2's rate as the others' (x0.5)": Variant(rates(1.0, 1.0, 1.0, 1.0)),
    "all three undone (the model before, f50017d)": Variant(
        [NO_MIXER_4[0], NO_MIXER_4[2], NO_MIXER_4[3], (KERNEL, RATES, "MIXER_RATES = (1.0, 1.0, 1.0)")]
        + MIXER_3_PLAIN),
    "confidence buckets at 1, 3 (2, 4)": Variant(buckets(1.0, 3.0)),
    "confidence buckets at 0.5, 2": Variant(buckets(0.5, 2.0)),
    "confidence buckets at 3, 6": Variant(buckets(3.0, 6.0)),
    "eight confidence buckets (0.5, 1, 2, 3, 4, 6)": Variant([
        (KERNEL, "GIVEN_BUCKETS = 4 ", "GIVEN_BUCKETS = 8 "),
        (KERNEL, CONFIDENCE, "    confidence = 0 if given == 0.0 else 1 if abs(given) < 0.5 else 2 if abs(given) < 1.0 "
                             "else 3 if abs(given) < 2.0 else 4 if abs(given) < 3.0 else 5 if abs(given) < 4.0 else 6 "
                             "if abs(given) < 6.0 else 7")]),
    "mixer 1 by the given's confidence too": also_by_confidence((0,)),
    "mixer 2 by the given's confidence too": also_by_confidence((1,)),
    "mixers 1 and 2 by the given's confidence too": also_by_confidence((0, 1)),
    "mixer 2's rate x0.25": Variant(rates(1.0, 0.25, 1.0, 1.0)),
    "mixer 2's rate x0.125": Variant(rates(1.0, 0.125, 1.0, 1.0)),
    "mixer 1's rate x0.5 too": Variant(rates(0.5, 0.5, 1.0, 1.0)),
    "mixer 3's rate x0.5 too": Variant(rates(1.0, 0.5, 0.5, 1.0)),
    "every mixer's rate x0.5": Variant(rates(0.5, 0.5, 0.5, 0.5)),
    "the mixers' rate x0.5 while scoring only": Variant(rate=lambda n: 0.5),
    "the final mixer's rate x0.5": Variant([(KERNEL, FINAL, FINAL.replace("FINAL_RATE", "FINAL_RATE * 0.5"))]),
    "the final mixer's rate x2": Variant([(KERNEL, FINAL, FINAL.replace("FINAL_RATE", "FINAL_RATE * 2.0"))]),
    "the given's prior 0.3 (0.4)": Variant([(MODEL, "GIVEN_PRIOR = 0.4 ", "GIVEN_PRIOR = 0.3 ")]),
    "the given's prior 0.5": Variant([(MODEL, "GIVEN_PRIOR = 0.4 ", "GIVEN_PRIOR = 0.5 ")]),
    "the shrink at the given 0.65 (0.8)": Variant([(MODEL, "SHRINK_AT_THE_GIVEN = 0.8\n",
                                                     "SHRINK_AT_THE_GIVEN = 0.65\n")]),
    "the shrink at the given 0.9": Variant([(MODEL, "SHRINK_AT_THE_GIVEN = 0.8\n", "SHRINK_AT_THE_GIVEN = 0.9\n")]),
    "the network's prior 0.1 (0)": Variant(after_reading=lambda model, kernel: model.w.__setitem__(
        (slice(None), kernel.NETWORK_IN), 0.1)),
    "without the network's input": Variant(network=False),
    "mixer 1 by the given's confidence, sure or not (|stretch| 4)": Variant(
        [(KERNEL, SETS, "MIXER_SETS = (512, MATCH_SETS, 100 * GIVEN_BUCKETS, 256 * GIVEN_BUCKETS)"),
         (KERNEL, CONFIDENCE + "\n", ""),
         (KERNEL, MIXER_1 + "\n", CONFIDENCE + "\n" + MIXER_1 + " + (256 if confidence == 3 else 0)\n")],
        after_reading=copied_sets(0, buckets=2)),
    "the final mixer's weights by the given's confidence too": Variant(
        [(KERNEL, f"{op}w3[c0, k]", f"{op}w3[c0 + 256 * ((int(out[OUT_SET + 2]) - MIXER_FROM[2]) // 100), k]")
         for op in ("st += ", "        ")] + [
         (MODEL, "self.w3 = np.full((256, N_MIXERS)", "self.w3 = np.full((256 * GIVEN_BUCKETS, N_MIXERS)")],
        after_reading=lambda model, kernel: model.w3.__setitem__(slice(256, None), np.tile(model.w3[:256], (3, 1)))),
    "mixer 3's buckets by the network's confidence (the given's)": Variant([
        (KERNEL, "    _mixer_rows(c0, seen, length, bctx, given, out)",
         "    _mixer_rows(c0, seen, length, bctx, network, out)")]),
    "mixer 3's buckets x2 where the network and the given disagree": Variant([
        (KERNEL, "GIVEN_BUCKETS = 4 ", "GIVEN_BUCKETS = 8 "),
        (KERNEL, "def _mixer_rows(c0, seen, length, bctx, given, out):",
         "def _mixer_rows(c0, seen, length, bctx, given, network, out):"),
        (KERNEL, "    _mixer_rows(c0, seen, length, bctx, given, out)",
         "    _mixer_rows(c0, seen, length, bctx, given, network, out)"),
        (KERNEL, CONFIDENCE, CONFIDENCE + "\n    confidence += 4 if given * network < 0.0 else 0")]),
    "slot table 2^23 (2^22)": Variant([(MODEL, "TABLE_BITS = 22 ", "TABLE_BITS = 23 ")]),
    "slot table 2^24": Variant([(MODEL, "TABLE_BITS = 22 ", "TABLE_BITS = 24 ")]),
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
