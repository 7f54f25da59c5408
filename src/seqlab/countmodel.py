"""A long-range count model mixed with the network's prediction.

Why: a network sees a bounded context (a window, or what fits in its state),
while text repeats itself far beyond it — names, boilerplate, whole lines.
Compressors (xz, PPM) win there by remembering everything. This module keeps
hashed n-gram counts (orders 1..24) of the run's training split plus the text
scored so far, blends the orders by Witten-Bell-style interpolation (short
orders first), and mixes a few of these blends (up to orders 2, 4 and 24 by
default) with the network's distribution geometrically. A match expert adds
what xz's long matches give: the usual continuation of the longest context seen
before among orders 32..1024, which on boilerplate-heavy text (HTML, source) is
right more than 99% of the time once the match is a few hundred tokens long.
The mixing weights adapt online to the text being scored: one set per
confidence bucket (the longest order that has seen the context), updated after
every chunk of 256 tokens from the chunk's own log loss. One session carries
counts and weights across the texts it scores, so a held-out set of many files
reads as one stream.

Everything is causal: the prediction for a token uses only the training split
and the tokens before it, so bits per byte stay an honest compression measure.
"""

import functools

import numpy as np
import torch

from .config import CountModelConfig
from .errors import SeqlabError

_MUL = np.uint64(0x9E3779B97F4A7C15)
HISTORY_FILE = "history.npy"


_INV = np.uint64(pow(int(_MUL), -1, 1 << 64))


@functools.lru_cache(maxsize=4)
def _powers(base: int, n: int) -> np.ndarray:
    """base**0 .. base**n modulo 2**64."""
    out = np.full(n + 1, base, dtype=np.uint64)
    out[0] = 1
    with np.errstate(over="ignore"):
        return np.cumprod(out, dtype=np.uint64)


def context_hashes(tokens: np.ndarray, orders) -> np.ndarray:
    """(n, len(orders)): column j holds the 48-bit id of tokens[i-k:i], k = orders[j], for every position i
    (short contexts at the start hash what exists).

    The hash of the k tokens before i is sum_j (tokens[i-j] + 1) * MUL**(k-j), j = 1..k, modulo 2**64:
    a difference of prefix sums, so any order costs O(n) however long. The id tags it with k's place
    in `orders` (see _context_id).
    """
    n = len(tokens)
    t = tokens.astype(np.uint64) + np.uint64(1)
    mul, inv = _powers(int(_MUL), n + max(orders)), _powers(int(_INV), n)
    prefix = np.zeros(n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        np.cumsum(t * mul[:n], out=prefix[1:])
        positions = np.arange(n)
        columns = []
        for index, k in enumerate(orders):
            window = prefix[:n] - prefix[np.maximum(positions - k, 0)]  # sum of t[m] * MUL**m, m in [i-k, i)
            scale = np.where(positions <= k, mul[np.maximum(k - positions, 0)], inv[np.maximum(positions - k, 0)])
            columns.append(_context_id(_finalise(window * scale), np.uint64(index), len(orders)))
    return np.stack(columns, axis=1)


def context_hashes_at(before: np.ndarray, orders) -> np.ndarray:
    """context_hashes' rows (n, len(orders)) for n positions, from the tokens before each alone.

    before (n, max(orders)): before[:, j] is the token j + 1 places back, -1 where the text has none.
    """
    t = (before.astype(np.int64) + 1).astype(np.uint64)  # -1 (no token) becomes 0, as context_hashes pads
    width = t.shape[1]
    mul, inv = _powers(int(_MUL), width), _powers(int(_INV), width)
    with np.errstate(over="ignore"):
        sums = np.cumsum(t * inv[1:], axis=1, dtype=np.uint64)  # sum_j t[j] * MUL**-j
        lengths = np.asarray(orders)
        return _context_id(_finalise(sums[:, lengths - 1] * mul[lengths]), np.arange(len(orders), dtype=np.uint64),
                           len(orders))


def _context_id(z: np.ndarray, index, n_orders: int) -> np.ndarray:
    """48 bits (the low 16 of a key hold the next token): the order's index on top, so the orders can share
    one table and no two orders' contexts ever meet, then as many high bits of the hash as fit."""
    bits = np.uint64(max(n_orders - 1, 1).bit_length())
    return (index << (np.uint64(48) - bits)) | (z >> (np.uint64(16) + bits))


def _finalise(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every input bit reaches the high bits we keep."""
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


class CountTable:
    """Sorted (context, next token) keys with counts: n-gram statistics, of every order at once."""

    def __init__(self, keys: np.ndarray, counts: np.ndarray):
        self.keys, self.counts = keys, counts

    @classmethod
    def build(cls, context: np.ndarray, nxt: np.ndarray) -> "CountTable":
        keys, counts = np.unique((context << np.uint64(16)) | nxt.astype(np.uint64), return_counts=True)
        return cls(keys, counts.astype(np.float32))

    @classmethod
    def merge(cls, a: "CountTable", b: "CountTable") -> "CountTable":
        keys = np.concatenate([a.keys, b.keys])
        counts = np.concatenate([a.counts, b.counts])
        order = np.argsort(keys, kind="stable")
        keys, counts = keys[order], counts[order]
        starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
        return cls(keys[starts], np.add.reduceat(counts, starts))

    def lookup(self, context: np.ndarray):
        """(rows, next tokens, counts) of every entry whose context is one of the queries."""
        base = context << np.uint64(16)
        lo = np.searchsorted(self.keys, base, "left")
        hi = np.searchsorted(self.keys, base | np.uint64(0xFFFF), "right")
        span = hi - lo
        rows = np.repeat(np.arange(len(context)), span)
        idx = np.arange(int(span.sum())) - np.repeat(np.cumsum(span) - span, span) + np.repeat(lo, span)
        return rows, (self.keys[idx] & np.uint64(0xFFFF)).astype(np.int64), self.counts[idx]


def dense_counts(tables: list[CountTable], context: np.ndarray, vocab: int) -> np.ndarray:
    """Counts (*context.shape, vocab) of what followed each query context, summed over tables."""
    shape = context.shape
    unique, inverse = np.unique(context.ravel(), return_inverse=True)  # short contexts recur: look each up once
    found = [t.lookup(unique) for t in tables]
    rows = np.concatenate([f[0] for f in found])
    tokens = np.concatenate([f[1] for f in found])
    weights = np.concatenate([f[2] for f in found])
    flat = np.bincount(rows * vocab + tokens, weights=weights, minlength=len(unique) * vocab)
    return flat.astype(np.float32).reshape(len(unique), vocab)[inverse].reshape(*shape, vocab)


class RecentCounts:
    """Counts of the text scored so far, as log-structured levels: adding a chunk costs O(log n) merges."""

    def __init__(self):
        self.levels: list[CountTable] = []
        self.sizes: list[int] = []

    def add(self, context: np.ndarray, nxt: np.ndarray) -> None:
        self.levels.append(CountTable.build(context, nxt))
        self.sizes.append(len(nxt))
        while len(self.sizes) > 1 and self.sizes[-2] <= self.sizes[-1]:
            top, size = self.levels.pop(), self.sizes.pop()
            self.levels[-1] = CountTable.merge(self.levels[-1], top)
            self.sizes[-1] += size


def check(config: CountModelConfig) -> None:
    """Refuse a count-model config the blend and buckets cannot work with, in one line."""
    orders, match = list(config.orders), list(config.match_orders)
    if not orders or orders != sorted(set(orders)) or orders[0] < 1:
        raise SeqlabError(f"counts.orders must be distinct positive numbers in increasing order, got {orders}")
    if not config.experts or not set(config.experts) <= set(orders):
        raise SeqlabError(f"counts.experts must be some of counts.orders {orders}, got {config.experts}")
    if match != sorted(set(match)) or (match and match[0] <= orders[-1]):
        raise SeqlabError(f"counts.match_orders must increase and exceed the longest order {orders[-1]}, got {match}")
    if not 0 < config.match_confidence < 1:
        raise SeqlabError(f"counts.match_confidence must lie strictly between 0 and 1, got {config.match_confidence}")


class CountModel:
    def __init__(self, history: np.ndarray, vocab_size: int, config: CountModelConfig):
        check(config)
        self.config = config
        self.vocab = vocab_size
        history = np.asarray(history)[-self.config.max_history :].astype(np.int64)
        self.orders = list(config.orders) + list(config.match_orders)  # every order that keeps counts
        hashes = context_hashes(history, self.orders)
        per_order = [CountTable.build(hashes[k:, i], history[k:]) for i, k in enumerate(self.orders)]
        # an order's index tops its keys, so the orders' tables laid end to end are one sorted table:
        # a query of every order then costs one lookup
        self.table = CountTable(np.concatenate([t.keys for t in per_order]),
                                np.concatenate([t.counts for t in per_order]))

    def session(self, device) -> "CountSession":
        return CountSession(self, device)


class CountSession:
    """One scoring pass over a sequence of texts, in order.

    What was scored (its counts) and the mixing weights carry from one text to the next, as a
    compressor's state carries through a file: a corpus of many small files is scored as one stream.
    """

    def __init__(self, model: CountModel, device):
        self.model = model
        self.recent = RecentCounts()  # every order's, as the model's table
        self.mixer = OnlineMixer(model.config, device)

    def tables(self) -> list[CountTable]:
        """The training counts, then the levels of what was scored so far."""
        return [self.model.table] + self.recent.levels

    def count(self, positions: np.ndarray, contexts: np.ndarray, tokens: np.ndarray) -> None:
        """Count tokens at `positions` of a text after their contexts (n, orders) as seen text."""
        keep = positions[:, None] >= np.asarray(self.model.orders)  # contexts that run off the text's start don't count
        if keep.any():
            self.recent.add(contexts[keep], np.broadcast_to(tokens[:, None], keep.shape)[keep])

    def reader(self, tokens: np.ndarray, n_context: int) -> "CountReader":
        return CountReader(self, tokens, n_context)

    def mix(self, scored, tokens: np.ndarray, n_context: int):
        """Wrap scoring.score_logits' stream for one text: yield (first, mixed log_probs, targets, network log_probs).

        The network's windows are regrouped into chunks of `config.chunk` tokens: counts and mixing
        weights are updated after each chunk, whatever the architecture's window size.
        """
        chunk = self.model.config.chunk
        reader = self.reader(tokens, n_context)
        pending: list = []
        for first, net_logp, targets in scored:
            for offset in range(0, len(targets), chunk):
                pending.append((first + offset, net_logp[offset : offset + chunk], targets[offset : offset + chunk]))
                if sum(len(t) for _, _, t in pending) >= chunk:
                    yield self._mix_chunk(reader, pending)
                    pending = []
        if pending:
            yield self._mix_chunk(reader, pending)

    def _mix_chunk(self, reader: "CountReader", pending: list):
        first = pending[0][0]
        net_logp = torch.cat([p[1] for p in pending])
        targets = torch.cat([p[2] for p in pending])
        stop = first + len(targets)
        experts, bucket = reader.distributions(first, stop)
        logp, feats, b = self.mixer.mix(net_logp, experts, bucket)
        self.mixer.update(logp, feats, b, targets)
        reader.advance(stop)
        return first, logp, targets, net_logp


class CountReader:
    """Reads one text left to right: distributions for the next chunk, then `advance` past it."""

    def __init__(self, session: CountSession, tokens: np.ndarray, n_context: int):
        self.session, self.tokens = session, tokens
        self.contexts = context_hashes(tokens, session.model.orders)  # (n, orders)
        self.seen = n_context  # tokens before this are context only (already in the training counts)

    def distributions(self, start: int, stop: int):
        """(log-probabilities (n, E, V) of each count expert, confidence bucket (n,)) for positions start..stop-1.

        The orders are blended by interpolation, shortest first; expert e is the blend up to
        order `config.experts[e]`. The bucket is how many orders had seen the context.
        """
        return blend_counts(self.session.model, self.session.tables(), self.contexts[start:stop])

    def advance(self, stop: int) -> None:
        """Count tokens up to `stop` as seen text."""
        if stop > self.seen:
            new = slice(self.seen, stop)
            self.session.count(np.arange(self.seen, stop), self.contexts[new], self.tokens[new])
        self.seen = max(self.seen, stop)


def blend_counts(model: CountModel, tables: list[CountTable], contexts: np.ndarray):
    """(expert log-probabilities (n, E, V), bucket (n,)) for n positions, from their context ids
    (n, orders) and the count tables.

    The blends come first, then the match expert; the bucket is the longest order that had seen the
    context (0 for none, counting the blended orders, then the match orders).
    """
    c = model.config
    n, n_blended = len(contexts), len(c.orders)
    counts = dense_counts(tables, contexts, model.vocab)  # (n, orders, V)
    total = counts.sum(2, keepdims=True)  # (n, orders, 1)
    escape = np.float32(c.escape_per_type) * (counts > 0).sum(2, keepdims=True, dtype=np.float32) \
        + np.float32(c.escape_base)
    seen = total[:, :, 0] > 0
    longest = len(model.orders) - 1 - seen[:, ::-1].argmax(1)  # the longest order that saw the context
    bucket = np.where(seen.any(1), longest + 1, 0)
    p = np.full((n, model.vocab), 1.0 / model.vocab, dtype=np.float32)
    experts = []
    for i, k in enumerate(c.orders):
        p = (counts[:, i] + escape[:, i] * p) / (total[:, i] + escape[:, i])
        if k in c.experts:
            experts.append(np.log(np.maximum(p, 1e-12)))
    if c.match_orders:
        predicted = np.where(bucket > n_blended, counts[np.arange(n), longest].argmax(1), -1)
        experts.append(_match_expert(predicted, model.vocab, c.match_confidence))
    return np.stack(experts, axis=1), bucket


def _match_expert(predicted: np.ndarray, vocab: int, confidence: float) -> np.ndarray:
    """Log-probabilities (n, V): `confidence` on the predicted token, the rest spread evenly; uniform
    where nothing is predicted (-1). Under geometric mixing a uniform expert changes nothing."""
    out = np.full((len(predicted), vocab), np.log((1 - confidence) / (vocab - 1)), dtype=np.float32)
    rows = np.flatnonzero(predicted >= 0)
    out[rows, predicted[rows]] = np.log(confidence)
    out[predicted < 0] = -np.log(vocab)
    return out


class StepReader:
    """CountReader's incremental twin: n texts learnt one token at a time (a decoder's view of them).

    Each text starts from `context` (tokens already in the training counts, as CountReader's
    n_context). `distributions(rows)` blends the counts for the next position of the given texts,
    hashing its contexts from the last max(orders) tokens (context_hashes' very values, so the counts
    are eval's); `append(tokens)` learns those positions' tokens; `advance(row)` counts what a text
    appended since its last advance as seen text, as CountReader.advance does.
    """

    def __init__(self, session: CountSession, n_texts: int, context: np.ndarray):
        self.session, orders = session, session.model.orders
        self.before = np.full((n_texts, max(orders)), -1, dtype=np.int64)  # (n, K): most recent token first
        for token in context:
            self._shift_in(np.arange(n_texts), np.full(n_texts, token))
        self.position = np.full(n_texts, len(context))  # index of each text's next token
        self.rows = np.zeros(0, dtype=np.int64)  # the texts last given to `distributions`
        self.contexts = np.zeros((0, len(orders)), dtype=np.uint64)  # and their next positions' context ids
        self.unseen = [[] for _ in range(n_texts)]  # per text: (position, context ids (orders,), token) not yet counted

    def _shift_in(self, rows: np.ndarray, tokens: np.ndarray) -> None:
        self.before[rows, 1:] = self.before[rows, :-1]
        self.before[rows, 0] = tokens

    def distributions(self, rows: np.ndarray):
        """(log-probabilities (n, E, V) of each count expert, bucket (n,)) for the next token of texts `rows`."""
        model = self.session.model
        self.contexts = context_hashes_at(self.before[rows], model.orders)
        self.rows = rows
        return blend_counts(model, self.session.tables(), self.contexts)

    def append(self, tokens: np.ndarray) -> None:
        """Learn the next token of the texts last given to `distributions`."""
        for i, row in enumerate(self.rows):
            self.unseen[row].append((int(self.position[row]), self.contexts[i], int(tokens[i])))
        self._shift_in(self.rows, tokens)
        self.position[self.rows] += 1

    def advance(self, row: int) -> None:
        """Count the tokens text `row` appended since its last advance as seen text."""
        if not self.unseen[row]:
            return
        positions, contexts, tokens = zip(*self.unseen[row])
        self.session.count(np.array(positions), np.stack(contexts), np.array(tokens, dtype=np.int64))
        self.unseen[row] = []


class OnlineMixer:
    """Geometric mixing: log p = w_0 * log p_net + sum_e w_e * log p_expert_e - log Z, one weight row per bucket.

    The weights start at priors (the network at w_network, the longest-order expert rising from
    w_counts to w_counts_longest with the bucket, the shorter experts at 0) and follow the gradient
    of the log loss of each chunk once it has been scored.
    """

    def __init__(self, config: CountModelConfig, device):
        n_blended, n_match = len(config.orders) + 1, len(config.match_orders)
        n_experts = len(config.experts) + (1 if n_match else 0)
        weights = torch.zeros(n_blended + n_match, 1 + n_experts)
        weights[:, 0] = config.w_network
        weights[:n_blended, len(config.experts)] = torch.linspace(config.w_counts, config.w_counts_longest, n_blended)
        weights[n_blended:, len(config.experts)] = config.w_counts_longest
        weights[n_blended:, -1] = config.w_match
        self.weights = weights.to(device)
        self.lr = config.learning_rate
        # RMSprop: the experts' log-probabilities differ in scale (a sharp match expert's by ~10 nats),
        # so each weight's step is scaled by its own recent gradient size
        self.mean_square = torch.zeros_like(self.weights)

    def mix(self, net_logp: torch.Tensor, experts: np.ndarray, bucket: np.ndarray):
        count_logp = torch.from_numpy(experts).to(net_logp.device)
        feats = torch.cat([net_logp[:, None, :], count_logp], dim=1)  # (n, 1 + E, V)
        b = torch.from_numpy(bucket).to(net_logp.device)
        w = self.weights[b]  # (n, 1 + E)
        return torch.log_softmax(torch.einsum("nev,ne->nv", feats, w), dim=-1), feats, b

    def update(self, logp: torch.Tensor, feats: torch.Tensor, bucket: torch.Tensor, targets: torch.Tensor):
        """One gradient step on the chunk's log loss (the chunk is already scored: causal)."""
        expected = torch.einsum("nv,nev->ne", logp.exp(), feats)
        observed = feats[torch.arange(len(targets)), :, targets]  # (n, 1 + E)
        grad = torch.zeros_like(self.weights).index_add_(0, bucket, expected - observed)
        count = torch.bincount(bucket, minlength=len(self.weights)).clamp_min(1).to(grad.dtype)
        grad /= count[:, None]
        self.mean_square.mul_(0.9).add_(0.1 * grad * grad)
        self.weights -= self.lr * grad / (self.mean_square.sqrt() + 1e-3)


def describe(config: CountModelConfig) -> str:
    match = f", matches of {config.match_orders[0]}-{config.match_orders[-1]}" if config.match_orders else ""
    return (f"mixed with a count model (orders {','.join(map(str, config.orders))}{match}) over the training split "
            "and the text before each token, weights adapted online")


def usable(config: CountModelConfig, vocab_size: int) -> bool:
    return config.enabled and vocab_size <= config.max_vocab


def save_history(run_dir, train_tokens: np.ndarray, config: CountModelConfig) -> None:
    """Keep the training tokens the count model needs, so the run stands alone."""
    from .checkpoint import atomic_write_bytes
    import io

    buf = io.BytesIO()
    np.save(buf, np.asarray(train_tokens[-config.max_history :]), allow_pickle=False)
    atomic_write_bytes(run_dir / HISTORY_FILE, buf.getvalue())


def load_count_model(run_dir, vocab_size: int, config: CountModelConfig) -> "CountModel | None":
    path = run_dir / HISTORY_FILE
    if not usable(config, vocab_size) or not path.exists():
        return None
    return CountModel(np.load(path, allow_pickle=False), vocab_size, config)
