"""The word objective with the network's weights moving: skip-gram on the word states in context, beside the
next-token loss, before the word rows (or head) are trained.

    seqlab tune runs/books books/ --objective words --budget 10m --out runs/books-words
    record = move_network(run, texts(), WordsConfig(network_steps=300))   # run.model's weights move

Word rows or a head alone (vectors/skipgram.py) start from or re-weight what the run's averaged states hold. Here the
network learns as well. The training split is read as the run was trained: `batch_size` rows of the run's
`seq_len` tokens, each row reading its own share of the split in order with its state carried from one window to
the next. Each step's loss is the skip-gram loss of the words whose tokens lie inside the windows plus `lm_weight`
times the next-token loss, so the run stays a language model (`seqlab eval NEW --against RUN` says how far its
bits per byte moved). An occurrence's input vector is a linear map of its own states there (cfg.states: `before`
the state before the word, `inside` the mean over its tokens' states, `after` the state after it), so the
gradient that makes it predict the words at most `window` away (word2vec's reduced window and down-sampling,
`negatives` words drawn from the unigram distribution ** 0.75, as skipgram.py trains the head) reaches the
network through those states. That map and the output vectors are scaffolding for this phase only: afterwards
the split is read again through the moved network and the rows or head are trained on its averaged states exactly
as without this phase (skipgram.rows_from_sums, head_from_sums), so `similar` and `embed` use the run as any other.
"""

import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import SeqlabError
from ..models.base import map_state
from .skipgram import (WordsConfig, head_from_sums, keep_probabilities, negative_sampling_loss, rows_from_sums,
                       skipgram_pairs)
from .words import (Accumulator, check_states, find_words, keep_sums, occurrence_positions, state_parts, sums_cache,
                    training_texts, word_sums)


@dataclass
class Occurrences:
    """The training split as one token stream (each document BOS first) and its words seen min_count times."""

    tokens: np.ndarray  # (N,)
    before: np.ndarray  # (M,) stream position of each occurrence's `before` state, increasing
    after: np.ndarray  # (M,) and of its `after` state (its last token), increasing
    word: np.ndarray  # (M,) its vocabulary index
    counts: np.ndarray  # (V,) occurrences of each vocabulary word


def read_occurrences(run, texts, min_count: int) -> Occurrences:
    """Tokenise each text as the run reads it and place the words seen at least min_count times in the stream."""
    docs, counts = [], Counter()
    for data in texts:
        words, starts, ends = find_words(data)
        docs.append((words, *occurrence_positions(run, data, starts, ends)))
        counts.update(words)
    vocabulary = {w: i for i, w in enumerate(w for w, c in counts.items() if c >= min_count)}
    if len(vocabulary) < 2:
        raise SeqlabError(f"{len(vocabulary)} word(s) are seen at least {min_count} times (--min-count); the word "
                          f"objective needs 2 or more: give a larger corpus or a smaller --min-count")
    parts, offset = [], 0
    for words, tokens, before, after in docs:
        ids = np.array([vocabulary.get(w, -1) for w in words], np.int64)
        known = ids >= 0
        parts.append((tokens, before[known] + offset, after[known] + offset, ids[known]))
        offset += len(tokens)
    tokens, before, after, word = (np.concatenate([p[k] for p in parts]).astype(np.int64) for k in range(4))
    return Occurrences(tokens, before, after, word, np.bincount(word, minlength=len(vocabulary)))


class Streams:
    """`rows` readers of a stream of n tokens, each reading its own contiguous share in windows of `length`
    (inputs; the targets reach one further); when the shares are read to their end, every row starts again."""

    def __init__(self, n: int, rows: int, length: int):
        self.rows = max(min(rows, (n - 1) // (length + 1)), 1)
        self.length = min(length, n - 1)
        self.share, self.at = (n - 1) // self.rows, 0
        assert self.share >= self.length >= 1, "a stream of at least two tokens"

    def next(self) -> tuple[np.ndarray, bool]:
        """(each row's first input position, whether the rows start afresh: no state to carry)."""
        fresh = self.at == 0
        starts = np.arange(self.rows) * self.share + self.at
        self.at = self.at + self.length if self.at + 2 * self.length <= self.share else 0
        return starts, fresh


def window_pairs(occ: Occurrences, starts: np.ndarray, length: int, window: int, keep: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centre occurrences, their rows, context occurrences) of each row's window: the occurrences whose states
    all lie inside it, down-sampled, paired within word2vec's reduced window (skipgram.skipgram_pairs)."""
    centres, rows, contexts = [], [], []
    for row, s in enumerate(starts):
        inside = np.arange(np.searchsorted(occ.before, s), np.searchsorted(occ.after, s + length - 1, "right"))
        kept = inside[rng.random(len(inside)) < keep[occ.word[inside]]]
        c, o = skipgram_pairs(kept, window, rng)
        centres.append(c)
        contexts.append(o)
        rows.append(np.full(len(c), row))
    return tuple(np.concatenate(a).astype(np.int64) for a in (centres, rows, contexts))


def occurrence_features(feats: torch.Tensor, before: np.ndarray, after: np.ndarray, rows: np.ndarray,
                        states: str) -> torch.Tensor:
    """Each occurrence's states (cfg.states parts joined) from its window's states feats (B, T, C), where
    feats[r, t] is the state after the window's token t: `before`/`after` positions given within the window."""
    cum = F.pad(feats.cumsum(1), (0, 0, 1, 0))  # (B, T + 1, C): cum[:, t] sums the states before t
    r, b, a = (torch.from_numpy(x).to(feats.device) for x in (rows, before, after))
    part = {"before": lambda: feats[r, b], "after": lambda: feats[r, a],
            "inside": lambda: (cum[r, a + 1] - cum[r, b + 1]) / (a - b)[:, None].to(feats.dtype)}
    return torch.cat([part[p]() for p in state_parts(states)], dim=1)


def move_network(run, texts, cfg, progress=None) -> dict:
    """Train run.model (in place) with the skip-gram loss on its word states plus cfg.lm_weight times the
    next-token loss, for cfg.network_steps steps or cfg.network_seconds; returns what happened, for tune.json."""
    model, device = run.model, run.device
    occ = read_occurrences(run, texts, cfg.min_count)
    streams = Streams(len(occ.tokens), run.config.train.batch_size, run.config.train.seq_len)
    torch.manual_seed(cfg.seed)
    rng, draw = np.random.default_rng(cfg.seed), torch.Generator().manual_seed(cfg.seed)
    with torch.no_grad():
        width = model.features(torch.zeros(1, 1, dtype=torch.long, device=device))[0].shape[-1]
    encoder = torch.nn.Linear(width * len(state_parts(cfg.states)), cfg.dim, bias=False)
    outputs = torch.nn.Embedding(len(occ.counts), cfg.dim)
    torch.nn.init.zeros_(outputs.weight)  # as word2vec's output vectors
    encoder, outputs = encoder.to(device), outputs.to(device)
    noise = torch.from_numpy(occ.counts.astype(np.float64) ** 0.75)
    keep = keep_probabilities(occ.counts, cfg.sample)
    network = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam([{"params": network, "lr": cfg.network_lr},
                                  {"params": [*encoder.parameters(), *outputs.parameters()], "lr": cfg.map_lr}])
    rates = [g["lr"] for g in optimizer.param_groups]
    model.train()
    t0, state, step, history = time.monotonic(), None, 0, []
    while (step < cfg.network_steps) if cfg.network_steps else (time.monotonic() - t0 < cfg.network_seconds):
        done = step / cfg.network_steps if cfg.network_steps else (time.monotonic() - t0) / cfg.network_seconds
        for group, rate in zip(optimizer.param_groups, rates):
            group["lr"] = rate * max(1 - done, 0.01)  # decayed linearly, as the head's rate
        starts, fresh = streams.next()
        x = torch.from_numpy(np.stack([occ.tokens[s : s + streams.length] for s in starts])).to(device)
        y = torch.from_numpy(np.stack([occ.tokens[s + 1 : s + streams.length + 1] for s in starts])).to(device)
        feats, state = model.features(x, None if fresh else state)  # (B, T, C)
        state = map_state(lambda t: t.detach(), state)
        lm = model.features_loss(feats, y)
        centres, rows, contexts = window_pairs(occ, starts, streams.length, cfg.window, keep, rng)
        sg = torch.zeros((), device=device)
        if len(centres):
            v = encoder(occurrence_features(feats, occ.before[centres] - starts[rows],
                                            occ.after[centres] - starts[rows], rows, cfg.states))
            sg = negative_sampling_loss(v, outputs, torch.from_numpy(occ.word[contexts]).to(device), noise,
                                        cfg.negatives, draw).mean()
        optimizer.zero_grad(set_to_none=True)
        (sg + cfg.lm_weight * lm).backward()
        torch.nn.utils.clip_grad_norm_(network, 1.0)
        optimizer.step()
        history.append((sg.item(), lm.item()))
        step += 1
        if progress is not None:
            progress.update(1)
    model.eval()
    return summary(history, time.monotonic() - t0, len(occ.counts))


def summary(history: list[tuple[float, float]], seconds: float, words: int) -> dict:
    """The phase's record: steps, seconds, and the mean of each loss (nats) over its first and last 10 steps."""
    h = np.array(history, np.float64).reshape(-1, 2)
    first, last = h[:10].mean(0), h[-10:].mean(0)
    return {"network_steps_done": len(h), "network_seconds_done": round(seconds, 1), "network_words": words,
            "skipgram_first": float(first[0]), "skipgram_last": float(last[0]),
            "next_token_first": float(first[1]), "next_token_last": float(last[1])}


def tune_words(run, files, out, cfg: WordsConfig | None = None, log=print, show_progress: bool = True) -> Path:
    """Read the training parts of `files` through `run`, train word rows (or a head: cfg.form) on them, write a
    new run to `out` (the same weights, plus the rows or head)."""
    from ..data.corpus import split_document
    from ..progress import bar
    from .tune import save_tuned

    cfg = cfg or WordsConfig()
    check_states(cfg.states)
    fraction = 0.0 if run.config.data.val_paths else run.config.data.val_fraction

    def texts():
        return (split_document(f.read_bytes(), fraction)[0] for f in files)

    moved = {}
    if cfg.network_steps or cfg.network_seconds:
        with bar(total=cfg.network_steps or None, desc="network, word objective", unit="step",
                 enabled=None if show_progress else False) as b:
            moved = move_network(run, texts(), cfg, progress=b)
        log(f"network moved {moved['network_steps_done']} steps: skip-gram loss {moved['skipgram_first']:.3f} -> "
            f"{moved['skipgram_last']:.3f}, next-token {moved['next_token_first']:.3f} -> "
            f"{moved['next_token_last']:.3f} nats")
    paths = training_texts(run.config)[0] if run.config.data.paths else []
    own_split = sorted(p.resolve() for p in paths) == sorted(f.resolve() for f in files)  # what `similar` reads
    cache = sums_cache(run.path, None, cfg.states, paths) if own_split and not moved else None
    if cache is not None and (cache[0] / "done").exists():  # a tune of this run before read the split
        acc = Accumulator.load(cache[0])
    else:
        with bar(total=sum(f.stat().st_size for f in files), desc="word states",
                 enabled=None if show_progress else False) as b:
            acc = word_sums(run, texts(), states=cfg.states, progress=b)
        if cache is not None:
            keep_sums(acc, *cache)
    train = rows_from_sums if cfg.form == "rows" else head_from_sums
    with bar(desc=f"word {cfg.form}", unit="step", enabled=None if show_progress else False) as b:
        tuned, losses = train(acc, texts(), cfg, progress=b)
    record = {"event": "tune", "objective": "words", "words": int((acc.counts >= cfg.min_count).sum()),
              "steps": len(losses), "loss_first": float(np.mean(losses[:10])),
              "loss_last": float(np.mean(losses[-10:])), **moved, **asdict(cfg)}
    save_tuned(run, Path(out), run.model, record, lambda tmp: tuned.save(tmp, record))
    if own_split:
        keep_sums(acc, *sums_cache(out, None, cfg.states, paths))
    log(f"word {cfg.form} trained {len(losses)} steps on {record['words']:,} words: loss {record['loss_first']:.3f} -> "
        f"{record['loss_last']:.3f}; run saved in {out}")
    return Path(out)
