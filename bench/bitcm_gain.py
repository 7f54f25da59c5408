"""What a bitwise context-mixing expert (countmodel/bitcm.py) adds to eval's mix, measured before it is integrated.

    python bench/bitcm_gain.py TUNING_RUN RUN [--bytes N] [--block 4096] [--zpaq]

TUNING_RUN is a run trained on the first 90% of a corpus's training split (bench/adapt.py makes one), so its
held-out bytes are training data: every constant is chosen there. RUN is the run trained on the whole training
split; its held-out split is only reported. For each: (a) eval's mix today (session.mix, as mixer_gains.py runs it,
without the bitwise model), (b) the bitwise model alone (it reads the run's history.npy, its last --history bytes,
then scores the held-out bytes causally), (c) (a) and (b) mixed by a second layer (mix_two below: geometric, weights
selected by both experts' confidence, stepped after each token), each with the paired difference against (a) and its
95% block-bootstrap interval (seqlab.stats.paired_difference). Today's mix is cached under --cache (it does not
depend on the bitwise model). --zpaq measures zpaq -m5 on the same bytes (size(train + held-out) less size(train)).
"""

import dataclasses
import hashlib
import math
import platform
import shutil
import tempfile
import time
from pathlib import Path

from common import print_table, seqlab, zpaq

import numpy as np  # noqa: E402
from numba import njit  # noqa: E402
import torch  # noqa: E402

from mixer_gains import held_out, paired, shown, tuning_arguments  # noqa: E402
from seqlab.countmodel import HISTORY_FILE, CountModel  # noqa: E402
from seqlab.countmodel.bitcm import BitCM  # noqa: E402
from seqlab.countmodel.bitrows import byte_rows  # noqa: E402

CONFIDENCE_BUCKETS = 8


def mix_alone(model: CountModel) -> CountModel:
    """The run's count model without its bitwise model (counts.bitcm, on by default since 2026-12-07): eval's mix that
    the bitwise model is given."""
    config = dataclasses.replace(model.config, bitcm=False)
    return CountModel(None, model.vocab, config, model.table, model.digest, model.words)


def todays_mix(run, items, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """(n, vocab) log-distributions of eval's mix today over the items as one stream, and the targets; cached."""
    mix, _, targets = mix_and_network(run, items, cache)
    return mix, targets


def mix_and_network(run, items, cache: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """todays_mix's log-distributions, the network's own over the same tokens (what the mix mixed), and the targets:
    one scoring pass, cached together."""
    key = hashlib.sha1(f"{run.path.resolve()}:{[len(t) for t, _, _ in items]}".encode()).hexdigest()[:16]
    path = cache / f"mix-alone-{key}.npz"
    if path.exists():
        saved = np.load(path)
        if "network" in saved:  # a file of before the network's rows were kept with the mix is made again
            return saved["logp"], saved["network"], saved["targets"]
    session = mix_alone(run.count_model).session(run.device)
    logps, networks, targets = [], [], []
    for tokens, n_context, stream in items:
        for _, logp, target, network in session.mix(iter(stream), tokens, n_context):
            logps.append(logp.numpy().astype(np.float32))
            networks.append(network.float().log_softmax(-1).numpy())
            targets.append(target.numpy())
    logp, network, target = np.concatenate(logps), np.concatenate(networks), np.concatenate(targets)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, logp=logp, network=network, targets=target)
    return logp, network, target


def bitwise(run, items, history_bytes: int, settings: dict,
            given: np.ndarray | None = None) -> tuple[np.ndarray, float, float, int]:
    """(n, vocab) rows of the bitwise model over the items' scored tokens (given: (n, vocab) rows of another model,
    one more input of its mixers), seconds to read the history and to score, and the history's length in bytes."""
    history = np.load(run.path / HISTORY_FILE, mmap_mode="r")
    history = np.asarray(history[history < 256])[-history_bytes:]  # the bytes (BOS left out)
    model = BitCM(**settings)
    t0 = time.perf_counter()
    model.learn(history)
    learn_s, rows = time.perf_counter() - t0, []
    t0, at = time.perf_counter(), 0
    for tokens, n_context, _ in items:
        context, scored = np.asarray(tokens[:n_context]), np.asarray(tokens[n_context:])
        context = context[context < 256]
        if not model.ends_with(context):
            model.learn(context)  # a text whose context is not the history's end (training bytes all the same)
        is_byte = scored < 256
        extra = None if given is None else given[at : at + len(scored)][is_byte, :256]
        rows.append(byte_rows(model.score(scored[is_byte], extra), is_byte, run.tokenizer.vocab_size))
        at += len(scored)
    return np.concatenate(rows), learn_s, time.perf_counter() - t0, len(history)


@njit(cache=True)
def mix_two(mixed, bitwise, targets, sets, weights, lr, out):
    """A second mixer layer: out[t] = log softmax(w . (mixed[t], bitwise[t])) (geometric), w selected by sets[t],
    the weights stepping after each token on its log loss (targets[t] < 0: no step). Rows are natural-log
    distributions over the same vocabulary; causal: row t's weights saw only the tokens before it."""
    n, v = mixed.shape
    for t in range(n):
        s = sets[t]
        w0, w1 = weights[s, 0], weights[s, 1]
        top = -1e300
        for k in range(v):
            z = w0 * mixed[t, k] + w1 * bitwise[t, k]
            out[t, k] = z
            top = max(top, z)
        total = 0.0
        for k in range(v):
            total += math.exp(out[t, k] - top)
        norm = top + math.log(total)
        e0 = 0.0
        e1 = 0.0
        for k in range(v):
            out[t, k] -= norm
            p = math.exp(out[t, k])
            e0 += p * mixed[t, k]
            e1 += p * bitwise[t, k]
        y = targets[t]
        if y >= 0:  # the loss's gradient: expected less actual log-probability of each input
            weights[s, 0] = min(max(w0 + lr * (mixed[t, y] - e0), 0.0), 4.0)
            weights[s, 1] = min(max(w1 + lr * (bitwise[t, y] - e1), 0.0), 4.0)


def confidence_sets(*rows: np.ndarray) -> np.ndarray:
    """Each position's weight set: the bucket of each expert's largest probability, combined."""
    sets = np.zeros(len(rows[0]), dtype=np.int64)
    for r in rows:
        sets = sets * CONFIDENCE_BUCKETS + np.minimum((np.exp(r.max(axis=1)) * CONFIDENCE_BUCKETS).astype(np.int64),
                                                      CONFIDENCE_BUCKETS - 1)
    return sets


def second_layer(mixed: np.ndarray, bits_rows: np.ndarray, targets: np.ndarray, lr: float) -> np.ndarray:
    sets = confidence_sets(mixed, bits_rows)
    weights = np.tile([1.0, 0.3], (CONFIDENCE_BUCKETS**2, 1))
    out = np.empty_like(bits_rows)
    mix_two(mixed.astype(np.float64), bits_rows, targets.astype(np.int64), sets, weights, lr, out)
    return out


def zpaq_bpb(run, items) -> float:
    """zpaq -m5's bits per byte of the items' scored bytes given the run's history: size(all) - size(train)."""
    history = np.load(run.path / HISTORY_FILE, mmap_mode="r")
    train = np.asarray(history[history < 256], dtype=np.uint8).tobytes()
    held = b"".join(np.asarray(t[c:])[np.asarray(t[c:]) < 256].astype(np.uint8).tobytes() for t, c, _ in items)
    return 8 * (len(zpaq(train + held)) - len(zpaq(train))) / len(held)


def main() -> None:
    p = tuning_arguments(__doc__)
    p.add_argument("--history", type=int, default=16 << 20, help="training bytes the bitwise model reads (the last)")
    p.add_argument("--table-bits", type=int, default=22)
    p.add_argument("--learning-rate", type=float, default=0.0015, help="the bitwise model's mixers'")
    p.add_argument("--prune", type=float, default=1e-4, help="nodes below this path probability are not evaluated")
    p.add_argument("--mix-rate", type=float, default=0.002, help="the second layer's")
    p.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "bitcm-gain"))
    p.add_argument("--zpaq", action="store_true", help="measure zpaq -m5 too (when installed)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    limit = args.bytes or 1 << 62
    settings = {"table_bits": args.table_bits, "learning_rate": args.learning_rate, "prune": args.prune}
    rows, speeds = [], []
    for label, path in ("tuning slice", args.tuning_run), ("held-out (report only)", args.run):
        run = seqlab.load(path)
        lengths = np.array([len(b) for b in run.tokenizer.token_bytes])
        items = held_out(run, limit)
        mixed, targets = todays_mix(run, items, Path(args.cache))
        bits_rows, learn_s, score_s, n_history = bitwise(run, items, args.history, settings)
        both = second_layer(mixed, bits_rows, targets, args.mix_rate)
        inside, _, given_s, _ = bitwise(run, items, args.history, settings, mixed)
        n_bytes = lengths[targets]
        picked = [-r[np.arange(len(targets)), targets] / np.log(2) for r in (mixed, bits_rows, both, inside)]
        today = picked[0]
        for name, b in zip(["(a) eval's mix today", "(b) the bitwise model alone", "(c) (a) + (b), second layer",
                            "(d) the bitwise model given (a) as one more input"], picked):
            versus = None if b is today else paired(b, today, n_bytes, args.block)
            rows.append([label, name, f"{b.sum() / n_bytes.sum():.4f}", shown(versus)])
        if args.zpaq and shutil.which("zpaq"):
            rows.append([label, "zpaq -m5 (given the training split)", f"{zpaq_bpb(run, items):.4f}", ""])
        speeds.append(f"{label}: read {n_history:,} history bytes in {learn_s:.1f} s, scored {len(targets):,} "
                      f"tokens in {score_s:.1f} s "
                      f"({len(targets) / score_s / 1e3:.1f} KB/s; given (a): {given_s:.1f} s)")
        for r in rows[-5:]:
            print(" | ".join(r), flush=True)
    print()
    print_table(f"bitwise context mixing ({platform.node()}, {torch.get_num_threads()} threads; {settings}, "
                f"second layer rate {args.mix_rate})", ["split", "model", "bits per byte", "vs (a), 95%"], rows)
    print("\n".join(speeds))


if __name__ == "__main__":
    main()
