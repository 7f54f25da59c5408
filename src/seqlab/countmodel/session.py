"""A run's count model and one scoring pass with it: load and save, sessions, readers.

CountModel holds the training split's counts; a CountSession carries the text's own
counts and the mixing weights across the texts of one pass; CountReader (eval's, a
piece of COUNT_EVERY tokens at a time, a chunk of pieces blended at once) reads one text;
lockstep.py's LockstepReader reads many a token at a time (compress's).
"""

import copy
import dataclasses
from collections import deque
from dataclasses import dataclass
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ..config import CountModelConfig
from ..errors import SeqlabError
from .mixer import Experts, OnlineMixer, blend_counts
from . import store
from .tables import CountTable, PendingCounts, RecentCounts, _history_table, context_hashes
from .words import WORD_ORDERS, word_classes, word_contexts

HISTORY_FILE = "history.npy"
# The text's own counts take in what was read every COUNT_EVERY tokens (eval) or steps (compress's lockstep
# rows): a line repeated a few tokens later is already counted. The mixing weights still step once a chunk.
COUNT_EVERY = 16
# a text's first bytes after BOS cost what the mix gave them, the bitwise model reading them all the same: it goes on
# from the last bytes it read, and cost a 48-byte text's first byte 22.3 bits where the mix gave 4.9 (docs/quality.md,
# "Text starts"); compress's rows read from BOS code them so too
MIX_FIRST = 2


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


@dataclass
class WordModel:
    """The word model's token classes (words.word_classes) and its table of the training split's counts."""

    letter: np.ndarray
    folded: np.ndarray
    table: CountTable

    @classmethod
    def build(cls, history: np.ndarray, token_bytes: list[bytes]) -> "WordModel":
        letter, folded = word_classes(token_bytes)
        history = np.asarray(history)
        return cls(letter, folded, CountTable.build(word_contexts(history, letter, folded).ravel(),
                                                    np.repeat(history, WORD_ORDERS)))

    def contexts(self, tokens: np.ndarray) -> np.ndarray:
        return word_contexts(tokens, self.letter, self.folded)


class CountModel:
    def __init__(self, history: np.ndarray | None, vocab_size: int, config: CountModelConfig,
                 table: CountTable | None = None, digest: str | None = None, words: WordModel | None = None,
                 history_bytes: np.ndarray | None = None, bitcm_dir=None):
        """The counts of `history` (its last config.max_history tokens), or the `table` already built from them
        (store.open_table's: a CountTable or a DiskTable); `digest` names the history (compress's fingerprint);
        words: the word model's (config.words; without it, the model has none); history_bytes: the training bytes
        the bitwise model reads first (config.bitcm, a byte tokenizer's run; without them, it has none); bitcm_dir:
        where its state after reading them is kept (bitstate.py; None: read in memory by every session)."""
        check(config)
        if config.words and words is None:  # no word model without the tokens' bytes (a model made from ids alone)
            config = dataclasses.replace(config, words=False)
        if config.bitcm and history_bytes is None:  # no bitwise model without the training bytes (a byte run's)
            config = dataclasses.replace(config, bitcm=False)
        self.config = config
        self.vocab = vocab_size
        self.orders = list(config.orders) + list(config.match_orders)  # every order that keeps counts
        if table is None:
            history = np.asarray(history)[-self.config.max_history :]
            table, digest = _history_table(history, self.orders), digest or store.history_digest(history)
        self.table, self.digest = table, digest
        self.words = words if config.words else None
        self.history_bytes = history_bytes if config.bitcm else None  # the bitwise model's (bitcm.py)
        self.bitcm_dir = bitcm_dir
        self.bitcm_reads = 0  # sessions that read the bitwise model's state (bitwise_model)
        self.bitcm_kept = None  # and its copy kept in memory from the second on

    def session(self, device) -> "CountSession":
        return CountSession(self, device)

    def bitwise_model(self):
        """The bitwise model after reading the training bytes, for a new session (which learns into it as it scores):
        read from the run's kept state. A process that opens a second session (serve, a request each) keeps one copy in
        memory from then on and hands each session a copy of it: 0.07 s for tinyshakespeare's 420 MB, where reading
        the kept state takes 0.3-1.2 s; a verb that scores once holds no second copy."""
        from .bitstate import open_model  # here: importing numba costs ~0.3 s, paid only by verbs that score

        if self.bitcm_kept is not None:
            return copy.deepcopy(self.bitcm_kept)
        model = open_model(self.bitcm_dir, self.history_bytes, self.bitcm_identity())
        self.bitcm_reads += 1
        if self.bitcm_reads >= 2:
            self.bitcm_kept = copy.deepcopy(model)
        return model

    def bitcm_identity(self) -> dict:
        """What names the bitwise model's reading besides the bytes read (bitstate.fingerprint's identity)."""
        return {"history": self.digest, "bitcm_history": self.config.bitcm_history}

    def without_words(self) -> "CountModel":
        """The same count model without its word model (a file compressed before it, or by a run without one)."""
        if self.words is None:
            return self
        return CountModel(None, self.vocab, dataclasses.replace(self.config, words=False), self.table, self.digest,
                          history_bytes=self.history_bytes, bitcm_dir=self.bitcm_dir)

    def with_warmth(self, warmth: bool) -> "CountModel":
        """The same count model with or without the mixer's weight sets selected by warmth (a compressed file's
        format says which it was coded with; a run trained before them has them by default now)."""
        if ("warmth" in self.config.select) == warmth:
            return self
        select = [name for name in self.config.select if name != "warmth"] + (["warmth"] if warmth else [])
        config = dataclasses.replace(self.config, select=select)
        return CountModel(None, self.vocab, config, self.table, self.digest, self.words, self.history_bytes,
                          self.bitcm_dir)


class CountSession:
    """One scoring pass over a sequence of texts, in order.

    What was scored (its counts) and the mixing weights carry from one text to the next, as a
    compressor's state carries through a file: a corpus of many small files is scored as one stream.
    """

    def __init__(self, model: CountModel, device):
        self.model = model
        self.recent = RecentCounts()  # every order's, as the model's table
        self.recent_words = RecentCounts()  # the word model's
        self.mixer = OnlineMixer(model.config, device)
        self.count_every = COUNT_EVERY
        self.bitcm = None
        self.from_mix = 0  # the text's next bytes that cost what the mix gave them (MIX_FIRST)
        if model.history_bytes is not None:  # after the training bytes: the run's kept state, or read here once
            self.bitcm = model.bitwise_model()

    def release_bitwise(self) -> None:
        """Let the bitwise model's state go (420 MB for a 1 MB history) once the session scores no more: what it
        mixes from then on (OnlineMixer.mix, as surprise's judges do) is the mix before it."""
        self.bitcm = None

    def count(self, positions: np.ndarray, contexts: np.ndarray, tokens: np.ndarray,
              words: np.ndarray | None = None) -> None:
        """Count tokens at `positions` of a text after their contexts (n, orders), and their word contexts (n,
        WORD_ORDERS) where the model has a word model, as seen text."""
        keep = self.counted(positions)
        if keep.any():
            self.recent.add(contexts[keep], np.broadcast_to(tokens[:, None], keep.shape)[keep])
        if words is not None and len(tokens):
            self.recent_words.add(words.ravel(), np.repeat(tokens, WORD_ORDERS))

    def words(self, contexts: np.ndarray, pending: tuple | None = None) -> tuple | None:
        """blend_counts' `words` for positions of these word contexts (n, WORD_ORDERS), or None without a word model."""
        if self.model.words is None:
            return None
        return contexts, [self.model.words.table] + self.recent_words.levels, pending

    def counted(self, positions: np.ndarray) -> np.ndarray:
        """(n, orders): which of the contexts at `positions` of a text count (those that run off its start don't)."""
        return positions[:, None] >= np.asarray(self.model.orders)

    def reader(self, tokens: np.ndarray, n_context: int) -> "CountReader":
        return CountReader(self, tokens, n_context)

    def mix(self, scored, tokens: np.ndarray, n_context: int, costs: bool = False):
        """Wrap scoring.score_logits' stream for one text: yield (first, mixed log_probs, targets, network log_probs);
        costs: each target's mixed log-probability (n,) in place of the mixed rows (eval's: the bitwise model then
        evaluates only the byte's path, a sixth of a row's nodes).

        The network's windows are regrouped into chunks of `config.chunk` tokens: the text is counted every
        COUNT_EVERY tokens and the mixing weights take a step after each chunk, whatever the window size.
        The count experts of a window's next chunk are read in a thread while this one is mixed (they depend
        on the text alone, and the reads stay in order): numpy's work beside torch's on two cores.
        """
        chunk = self.model.config.chunk
        reader = self.reader(tokens, n_context)
        if self.bitcm is not None:
            context = np.asarray(tokens[:n_context])
            self.from_mix = _first_from_the_mix(context)
            context = context[context < 256]
            if not self.bitcm.ends_with(context):  # a text whose context is not the bytes last read
                self.bitcm.learn(context)
        pending: list = []
        with ThreadPoolExecutor(1) as counting:
            for first, net_logp, targets in scored:
                chunks = []
                for offset in range(0, len(targets), chunk):
                    pending.append((first + offset, net_logp[offset : offset + chunk],
                                    targets[offset : offset + chunk]))
                    if sum(len(t) for _, _, t in pending) >= chunk:
                        chunks.append(pending)
                        pending = []
                yield from self._mix_chunks(reader, chunks, counting, costs)
            yield from self._mix_chunks(reader, [pending] if pending else [], counting, costs)

    def _mix_chunks(self, reader: "CountReader", chunks: list[list], counting: ThreadPoolExecutor, costs: bool,
                    ahead: int = 2):
        """Mix each chunk (a list of (first, network log_probs, targets)) in turn, its count experts read by
        `counting` up to `ahead` chunks before."""
        reads: deque = deque()
        for i, pending in enumerate(chunks):
            for later in chunks[i + len(reads) : i + ahead]:
                first = later[0][0]
                stop = first + sum(len(t) for _, _, t in later)
                reads.append(counting.submit(reader.read, first, stop, self.count_every))
            yield self._mix_chunk(pending, reads.popleft().result(), costs)

    def _mix_chunk(self, pending: list, experts: "Experts", costs: bool):
        """Mix one chunk with its count experts (its text counted every COUNT_EVERY tokens: the weights are fixed
        within a chunk), then the weights take one step on the whole chunk; costs: its targets' log-probabilities
        only."""
        first = pending[0][0]
        net_logp = torch.cat([p[1] for p in pending])
        targets = torch.cat([p[2] for p in pending])
        logp = self.mixer.mix_and_update(net_logp, experts, targets)
        if self.bitcm is not None:
            logp = self._bitwise(logp, targets, costs, net_logp)
        elif costs:
            logp = logp.gather(1, targets[:, None])[:, 0]
        return first, logp, targets, net_logp

    def _bitwise(self, logp: torch.Tensor, targets: torch.Tensor, costs: bool, net_logp: torch.Tensor) -> torch.Tensor:
        """The bitwise model's distributions over the chunk's bytes, or with costs its targets' log-probabilities,
        the mix and the network's own distribution inputs at each bit (it scores the bytes in order: each from the
        bytes before it and the two rows)."""
        from .bitrows import byte_rows, bytes_share

        tokens = targets.cpu().numpy()
        is_byte = tokens < 256
        mixed, network = logp.double().cpu().numpy(), net_logp.double().cpu().numpy()
        first = np.flatnonzero(is_byte)[: self.from_mix]  # a text's first bytes: the mix's (MIX_FIRST)
        self.from_mix -= len(first)
        if costs:
            out = mixed[np.arange(len(tokens)), tokens]  # a non-byte token (BOS): the mix's
            out[is_byte] = self.bitcm.costs(tokens[is_byte], mixed[is_byte, :256], network[is_byte, :256]) + \
                bytes_share(logp.shape[1])
            out[first] = mixed[first, tokens[first]]
            return torch.from_numpy(out).to(logp)
        rows = byte_rows(self.bitcm.score(tokens[is_byte], mixed[is_byte, :256], network[is_byte, :256]), is_byte,
                         logp.shape[1])
        rows[~is_byte] = mixed[~is_byte]  # a non-byte token (BOS): the mix's row
        rows[first] = mixed[first]
        return torch.from_numpy(rows).to(logp)


class CountReader:
    """Reads one text left to right: distributions for the next chunk, then `advance` past it."""

    def __init__(self, session: CountSession, tokens: np.ndarray, n_context: int):
        self.session, self.tokens = session, tokens
        self.contexts = context_hashes(tokens, session.model.orders)  # (n, orders)
        words = session.model.words
        self.words = words.contexts(tokens) if words is not None else None  # (n, WORD_ORDERS)
        self.seen = n_context  # tokens before this are context only (already in the training counts)

    def distributions(self, start: int, stop: int) -> "Experts":
        """The count experts for positions start..stop-1.

        The orders are blended by interpolation, shortest first; expert e is the blend up to
        order `config.experts[e]`. The bucket is how many orders had seen the context.
        """
        return blend_counts(self.session.model, self.session.recent.levels, self.contexts[start:stop],
                            words=self._words(start, stop), positions=np.arange(start, stop))

    def _words(self, start: int, stop: int, pending: tuple | None = None) -> tuple | None:
        return None if self.words is None else self.session.words(self.words[start:stop], pending)

    def read(self, start: int, stop: int, every: int) -> "Experts":
        """The count experts for positions start..stop-1 read `every` tokens at a time, each piece counted as seen
        text once read (what distributions, then advance, piece by piece give), then advance(stop). One blend:
        the training split's counts are looked up once, the chunk's own tokens by PendingCounts."""
        assert start <= self.seen, "chunks in order, none skipped"
        first = max(self.seen, start)  # the chunk's tokens counted as they are read (those before are counted)
        keep = self.session.counted(np.arange(first, stop))
        pending = PendingCounts(self.contexts[first:stop], self.tokens[first:stop], keep)
        piece_start = start + (np.arange(start, stop) - start) // every * every
        limit = np.maximum(piece_start - first, 0)
        words = None
        if self.words is not None:
            word_pending = PendingCounts(self.words[first:stop], self.tokens[first:stop],
                                         np.ones((stop - first, WORD_ORDERS), dtype=bool))
            words = self._words(start, stop, (word_pending, limit))
        experts = blend_counts(self.session.model, self.session.recent.levels, self.contexts[start:stop],
                               (pending, limit), words, positions=np.arange(start, stop))
        if keep.any():  # what advance(stop) would count, already sorted
            self.session.recent.add_table(pending.table(), int(keep.sum()))
        if words is not None and stop > first:
            self.session.recent_words.add_table(word_pending.table(), stop - first)
        self.seen = max(self.seen, stop)
        return experts

    def advance(self, stop: int) -> None:
        """Count tokens up to `stop` as seen text."""
        if stop > self.seen:
            new = slice(self.seen, stop)
            self.session.count(np.arange(self.seen, stop), self.contexts[new], self.tokens[new],
                               None if self.words is None else self.words[new])
        self.seen = max(self.seen, stop)


def describe(config: CountModelConfig) -> str:
    """What the count model mixes in, from its effective config (CountModel.config: words only where it has them)."""
    match = f", matches of {config.match_orders[0]}-{config.match_orders[-1]}" if config.match_orders else ""
    own = ", and over that text alone" if config.recent_expert else ""
    return (f"mixed with a count model (orders {','.join(map(str, config.orders))}{match}) over the training split "
            f"and the text before each token{own}, weights adapted online{_mixer_extras(config)}")


def _mixer_extras(config: CountModelConfig) -> str:
    sets = f" (per bucket and {', '.join(config.select)} context)" if config.select else ""
    return (sets + (", an SSE stage" if config.sse > 0 else "") + (", a word model" if config.words else "")
            + (", then a bitwise context-mixing model over the mix" if config.bitcm else ""))


def usable(config: CountModelConfig, vocab_size: int) -> bool:
    return config.enabled and vocab_size <= config.max_vocab


def save_history(run_dir, train_tokens: np.ndarray, config: CountModelConfig,
                 token_bytes: list[bytes] | None = None) -> None:
    """Keep the training tokens the count model needs, so the run stands alone, and build their table once
    (store.py) so that every load reads it from there, not rebuilt; and, with config.words and the tokens' bytes,
    the word model's table (counts/words/): a run has a word model when it has that table."""
    from ..checkpoint import atomic_write_bytes
    import io

    history = np.asarray(train_tokens[-config.max_history :])
    store.check_fits(len(history))
    buf = io.BytesIO()
    np.save(buf, history, allow_pickle=False)
    atomic_write_bytes(run_dir / HISTORY_FILE, buf.getvalue())
    store.build(history, list(config.orders) + list(config.match_orders), run_dir / store.TABLES_DIR)
    if config.words and token_bytes is not None:
        store.build(history, store.WORD_TABLE, _words_dir(run_dir), word_classes(token_bytes))


def add_word_table(run) -> None:
    """Build the word model's table of a run (seqlab.run.load's) trained before there was one, into its counts/words/:
    its later loads mix the word model in (its figures change: eval it again). Refused for a run without a count model
    or with counts.words=false."""
    config = run.config.counts
    path = run.path / HISTORY_FILE
    if not usable(config, run.tokenizer.vocab_size) or not path.exists() or not config.words:
        raise SeqlabError(f"{run.path} has no count model to add a word model to (no {HISTORY_FILE}, "
                          f"counts.enabled=false, or counts.words=false); train a run with the count model")
    everything = np.load(path, mmap_mode="r", allow_pickle=False)
    history = everything[-config.max_history :]
    store.build(history, store.WORD_TABLE, _words_dir(run.path), word_classes(run.tokenizer.token_bytes))
    run.__dict__.pop("count_model", None)  # loaded again, with it, when next asked


def _words_dir(run_dir):
    return run_dir / store.TABLES_DIR / store.WORDS_DIR


def load_count_model(run_dir, vocab_size: int, config: CountModelConfig,
                     token_bytes: list[bytes] | None = None) -> "CountModel | None":
    """The run's count model: its table read from counts/ (store.open_table), or built from history.npy (and kept in
    counts/ for the next load, when the run directory is writable) for a run trained before the table was."""
    path = run_dir / HISTORY_FILE
    if not usable(config, vocab_size) or not path.exists():
        return None
    everything = np.load(path, mmap_mode="r", allow_pickle=False)
    history = everything[-config.max_history :]
    orders = list(config.orders) + list(config.match_orders)
    check(config)
    digest = store.history_digest(history)
    tables = run_dir / store.TABLES_DIR
    table = store.open_table(tables, orders, digest, _mapped(tables, config))
    if table is None:
        store.check_fits(len(history))
        try:
            store.build(history, orders, tables)
            table = store.open_table(tables, orders, mapped=_mapped(tables, config))
        except OSError:  # a read-only run: build it in memory, as before the tables were kept
            table = None
    has_words = config.words and token_bytes is not None and (_words_dir(run_dir) / "meta.json").exists()
    words = _word_model(run_dir, history, digest, token_bytes, config) if has_words else None
    bitwise = _history_bytes(everything, config, token_bytes)
    return CountModel(history, vocab_size, config, table, digest, words, bitwise, tables / store.BITCM_DIR)


def _first_from_the_mix(context: np.ndarray) -> int:
    """How many of a text's next bytes cost what the mix gave them: MIX_FIRST less the bytes its context holds after
    its BOS (none without one: a text read on from its context)."""
    starts = np.flatnonzero(context >= 256)
    return max(0, MIX_FIRST - (len(context) - 1 - starts[-1])) if len(starts) else 0


def _history_bytes(history: np.ndarray, config: CountModelConfig, token_bytes: list[bytes] | None) -> np.ndarray | None:
    """The training bytes the bitwise model reads first (the last config.bitcm_history of the whole history.npy, not
    only its last max_history tokens): a byte tokenizer's run with config.bitcm only."""
    byte_level = token_bytes is not None and len(token_bytes) == 257 and all(
        token_bytes[i] == bytes([i]) for i in range(256))
    if not (config.bitcm and byte_level):
        return None
    return np.asarray(history[history < 256])[-config.bitcm_history :]


def _word_model(run_dir, history: np.ndarray, digest: str, token_bytes: list[bytes],
                config: CountModelConfig) -> WordModel:
    """The run's word model: its table read from counts/words/ as the count table is (mapped up to
    counts.map_up_to_gib, else a DiskTable); built again there when it is not the history's (in memory when the run
    directory is read-only). A run trained before the word model has no such table, and no word model: it scores
    as it did (add_word_table adds one)."""
    directory = _words_dir(run_dir)
    table = store.open_table(directory, store.WORD_TABLE, digest, _mapped(directory, config))
    if table is None:
        try:
            store.build(history, store.WORD_TABLE, directory, word_classes(token_bytes))
            table = store.open_table(directory, store.WORD_TABLE, mapped=_mapped(directory, config))
        except OSError:
            return WordModel.build(history, token_bytes)
    return WordModel(*word_classes(token_bytes), table)


def _mapped(tables, config: CountModelConfig) -> bool:
    """Whether the stored table is small enough to map (counts.map_up_to_gib): a load then costs nothing."""
    return store.table_bytes(tables) <= config.map_up_to_gib * (1 << 30)
