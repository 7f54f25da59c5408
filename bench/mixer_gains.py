"""The count model's mixer, one addition at a time: each kept only if it pays on a slice of the training split.

    python bench/mixer_gains.py TUNING_RUN RUN [--bytes N] [--block 4096]

TUNING_RUN is a run trained on the first part of a corpus's *training* split (bench/adapt.py makes one: the
training split split 90/10 again), so its held-out bytes are a slice of the real training split: the tuning
slice. RUN is the run of the same corpus trained on the whole training split; its held-out split is the
benchmark's and is only reported, never used to choose. No network is retrained: each run's network is scored
once over its held-out bytes and its log-probabilities kept; every row re-runs only the count model and its
online mixer (the path `seqlab eval` takes, session.mix) over them.

The rows are cumulative: each adds one technique (counts.* settings) to the last *kept* row, and is kept when it
pays on the tuning slice: the 95% interval of its paired difference there lies below zero. The held-out column
is the same configuration on RUN's held-out split, with the paired difference against the last kept row and its
95% block-bootstrap interval (blocks of --block tokens, seqlab.stats.paired_difference).
"""

import argparse
import dataclasses
import platform

from common import print_table, seqlab

import numpy as np  # noqa: E402
import torch  # noqa: E402

from seqlab.countmodel import HISTORY_FILE, CountModel  # noqa: E402
from seqlab.countmodel.session import WordModel  # noqa: E402
from seqlab.data.corpus import cache_root, encode_corpus, read_documents  # noqa: E402
from seqlab.scoring import score_logits  # noqa: E402
from seqlab.stats import block_sums, paired_difference  # noqa: E402

# (name, counts.* settings added to the last kept row), cheapest first. The first row is the mixer kept by the rows
# measured before (docs/quality.md's tables: the order-1 weight sets, the SSE stage, the word model; their lists are in
# git, 88f1918 and the commit before this row)
ADDITIONS = [
    ("kept before: order-1 weight sets, SSE (cells: bucket and count), the word model",
     {"select": ["order1"], "sse": 0.25, "sse_context": "seen", "words": True}),
    ("+ weight sets selected by warmth (1, 2-3, ..., 32-63 tokens of the text read; the first token's mix x0.3)",
     {"select": ["warmth"]}),
]


def held_out(run, limit: int):
    """[(tokens, n_context, the network's scored stream)] of the run's held-out texts, up to `limit` scored tokens."""
    cfg = run.config.data
    data = encode_corpus(read_documents(cfg.paths), [], run.tokenizer, cfg.val_fraction, cache_root())
    items, left = [], limit
    for h in data.held_out:
        if left <= 0:
            break
        tokens = np.asarray(h.tokens)[: h.n_context + left]
        if len(tokens) <= h.n_context:
            continue
        items.append((tokens, h.n_context, list(score_logits(run.model, tokens, h.n_context, run.device))))
        left -= len(tokens) - h.n_context
    return items


def mixed_bits(run, items, settings: dict) -> tuple[np.ndarray, np.ndarray]:
    """(bits per token, bytes per token) of the count model with `settings` over the items as one stream."""
    base = run.count_model
    config = dataclasses.replace(run.config.counts, **settings)
    words = word_model(run) if config.words else None
    session = CountModel(None, base.vocab, config, base.table, base.digest, words).session(run.device)
    lengths = np.array([len(b) for b in run.tokenizer.token_bytes])
    bits, n_bytes = [], []
    for tokens, n_context, stream in items:
        for _, logp, targets, _ in session.mix(iter(stream), tokens, n_context):
            bits.append((-logp.gather(1, targets[:, None])[:, 0] / np.log(2)).numpy())
            n_bytes.append(lengths[targets.numpy()])
    return np.concatenate(bits), np.concatenate(n_bytes)


WORD_MODELS: dict = {}


def word_model(run) -> WordModel:
    """The run's word model, built once from its history."""
    if run.path not in WORD_MODELS:
        history = np.load(run.path / HISTORY_FILE, mmap_mode="r")[-run.config.counts.max_history :]
        WORD_MODELS[run.path] = WordModel.build(history, run.tokenizer.token_bytes)
    return WORD_MODELS[run.path]


def paired(a, b, lengths, block: int) -> tuple[float, float, float]:
    """Bits per byte of a less b over the same tokens, with its 95% interval (blocks of `block` tokens)."""
    return paired_difference(*(block_sums(x, block) for x in (a, b, lengths)))


def shown(difference: tuple[float, float, float] | None) -> str:
    return "" if difference is None else "{:+.4f} [{:+.4f}, {:+.4f}]".format(*difference)


def tuning_arguments(doc: str) -> argparse.ArgumentParser:
    """The arguments of a benchmark over a tuning run and a run: the runs, --bytes, --block, --threads."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tuning_run")
    p.add_argument("run")
    p.add_argument("--bytes", type=int, default=0, help="score at most this many tokens of each (0: all)")
    p.add_argument("--block", type=int, default=4096, help="tokens per bootstrap block")
    p.add_argument("--threads", type=int, default=2)
    return p


def main() -> None:
    args = tuning_arguments(__doc__).parse_args()
    torch.set_num_threads(args.threads)
    limit = args.bytes or 1 << 62
    runs = [seqlab.load(args.tuning_run), seqlab.load(args.run)]
    items = [held_out(r, limit) for r in runs]
    rows, kept_settings, kept_bits = [], {}, None
    for name, added in ADDITIONS:
        settings = dict(kept_settings)
        for key, value in added.items():
            settings[key] = settings.get(key, []) + value if isinstance(value, list) else value
        (tune, tune_len), (held, held_len) = (mixed_bits(r, i, settings) for r, i in zip(runs, items))
        tune_bpb, held_bpb = tune.sum() / tune_len.sum(), held.sum() / held_len.sum()
        tune_vs = None if kept_bits is None else paired(tune, kept_bits[0], tune_len, args.block)
        held_vs = None if kept_bits is None else paired(held, kept_bits[1], held_len, args.block)
        keep = tune_vs is None or tune_vs[2] < 0  # the tuning slice's interval lies below zero
        rows.append([name, f"{tune_bpb:.4f}", shown(tune_vs), f"{held_bpb:.4f}", shown(held_vs),
                     "yes" if keep else "no"])
        if keep:
            kept_settings, kept_bits = settings, (tune, held)
        print(" | ".join(rows[-1]), flush=True)
    machine = f"{platform.node()}, {torch.get_num_threads()} threads"
    print()
    print_table(f"mixer additions ({items[0] and sum(len(t) - c for t, c, _ in items[0]):,} tuning tokens, "
                f"{sum(len(t) - c for t, c, _ in items[1]):,} held-out tokens; {machine})",
                ["addition", "tuning bpb", "vs kept (tuning)", "held-out bpb", "vs kept (held-out), 95%", "kept"], rows)
    print(f"\nkept: {kept_settings}")


if __name__ == "__main__":
    main()
