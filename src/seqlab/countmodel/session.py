"""A run's count model and one scoring pass with it: load and save, sessions, readers.

CountModel holds the training split's counts; a CountSession carries the text's own
counts and the mixing weights across the texts of one pass; CountReader (a chunk at
a time, eval's) and StepReader (a token at a time, compress's) read one text.
"""

import numpy as np
import torch

from ..config import CountModelConfig
from ..errors import SeqlabError
from .mixer import Experts, OnlineMixer, blend_counts
from .tables import RecentCounts, _history_table, context_hashes, context_hashes_at

HISTORY_FILE = "history.npy"


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
        self.orders = list(config.orders) + list(config.match_orders)  # every order that keeps counts
        self.table = _history_table(np.asarray(history)[-self.config.max_history :], self.orders)

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
        experts = reader.distributions(first, stop)
        logp = self.mixer.mix(net_logp, experts)
        self.mixer.update(logp, net_logp, experts, targets)
        reader.advance(stop)
        return first, logp, targets, net_logp


class CountReader:
    """Reads one text left to right: distributions for the next chunk, then `advance` past it."""

    def __init__(self, session: CountSession, tokens: np.ndarray, n_context: int):
        self.session, self.tokens = session, tokens
        self.contexts = context_hashes(tokens, session.model.orders)  # (n, orders)
        self.seen = n_context  # tokens before this are context only (already in the training counts)

    def distributions(self, start: int, stop: int) -> "Experts":
        """The count experts for positions start..stop-1.

        The orders are blended by interpolation, shortest first; expert e is the blend up to
        order `config.experts[e]`. The bucket is how many orders had seen the context.
        """
        return blend_counts(self.session.model, self.session.recent.levels, self.contexts[start:stop])

    def advance(self, stop: int) -> None:
        """Count tokens up to `stop` as seen text."""
        if stop > self.seen:
            new = slice(self.seen, stop)
            self.session.count(np.arange(self.seen, stop), self.contexts[new], self.tokens[new])
        self.seen = max(self.seen, stop)


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

    def distributions(self, rows: np.ndarray) -> "Experts":
        """The count experts for the next token of texts `rows`."""
        model = self.session.model
        self.contexts = context_hashes_at(self.before[rows], model.orders)
        self.rows = rows
        return blend_counts(model, self.session.recent.levels, self.contexts)

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


def describe(config: CountModelConfig) -> str:
    match = f", matches of {config.match_orders[0]}-{config.match_orders[-1]}" if config.match_orders else ""
    own = ", and over that text alone" if config.recent_expert else ""
    return (f"mixed with a count model (orders {','.join(map(str, config.orders))}{match}) over the training split "
            f"and the text before each token{own}, weights adapted online")


def usable(config: CountModelConfig, vocab_size: int) -> bool:
    return config.enabled and vocab_size <= config.max_vocab


def save_history(run_dir, train_tokens: np.ndarray, config: CountModelConfig) -> None:
    """Keep the training tokens the count model needs, so the run stands alone."""
    from ..checkpoint import atomic_write_bytes
    import io

    buf = io.BytesIO()
    np.save(buf, np.asarray(train_tokens[-config.max_history :]), allow_pickle=False)
    atomic_write_bytes(run_dir / HISTORY_FILE, buf.getvalue())


def load_count_model(run_dir, vocab_size: int, config: CountModelConfig) -> "CountModel | None":
    path = run_dir / HISTORY_FILE
    if not usable(config, vocab_size) or not path.exists():
        return None
    return CountModel(np.load(path, allow_pickle=False), vocab_size, config)
