"""The count experts and their online mix with the network.

blend_counts turns the counts that followed each context (tables.py) into a few
Witten-Bell blends (and the match expert), kept sparse as Experts; OnlineMixer
mixes them with the network's log-probabilities geometrically, one weight row per
confidence bucket, and learns the weights from each scored chunk.
"""

from dataclasses import dataclass

import numpy as np
import torch

from ..config import MIXER_SELECTORS, CountModelConfig
from .selectors import SEEN_LEVELS, SLOT_BITS, WARMTH_COLUMN, WARMTH_LEVELS, WARMTH_PRIOR, small_contexts
from .tables import CountTable, _kept, _merged, _run_starts, _summed
from .words import WORD_ORDERS


@dataclass
class Experts:
    """The count experts' log-probabilities for n positions, kept sparse: a long context has seen one or
    two next tokens, so each expert's distribution is a share every token gets plus a few seen tokens'
    counts. log p_e(v) = base[:, e] + the bonus of entry (row, v) where there is one, base[:, e] elsewhere.
    """

    base: np.ndarray  # (n, E): log-probability of a token with no entry
    row: np.ndarray  # (m,) entries, each (row, token) once
    token: np.ndarray  # (m,)
    bonus: np.ndarray  # (m, E): log p_e(token) - base[row, e]
    bucket: np.ndarray  # (n,): the longest order that had seen the context, the mixer's weight row
    small: np.ndarray  # (n, len(MIXER_SELECTORS)): each small context's slot (small_contexts), selecting more weights

    def dense(self, vocab: int) -> np.ndarray:
        """The log-probabilities (n, E, V) in full."""
        out = np.repeat(self.base[:, :, None], vocab, axis=2)
        out[self.row, :, self.token] += self.bonus
        return out

    def select(self, keep: np.ndarray) -> "Experts":
        """The positions where `keep` (bool (n,)) is true."""
        if keep.all():
            return self
        renumbered, kept = np.cumsum(keep) - 1, keep[self.row]
        return Experts(self.base[keep], renumbered[self.row[kept]], self.token[kept], self.bonus[kept],
                       self.bucket[keep], self.small[keep])

    @staticmethod
    def concat(parts: list["Experts"]) -> "Experts":
        offsets = np.cumsum([0] + [len(p.base) for p in parts[:-1]])
        return Experts(np.concatenate([p.base for p in parts]),
                       np.concatenate([p.row + o for p, o in zip(parts, offsets)]),
                       np.concatenate([p.token for p in parts]), np.concatenate([p.bonus for p in parts]),
                       np.concatenate([p.bucket for p in parts]), np.concatenate([p.small for p in parts]))


def blend_counts(model, recent: list[CountTable], contexts: np.ndarray, pending: tuple | None = None,
                 words: tuple | None = None, less: tuple | None = None,
                 positions: np.ndarray | None = None) -> Experts:
    """The count experts for n positions, from their context ids (n, orders): the blends of the training
    counts (CountModel `model`'s) and `recent` (the text's own counts, a list of tables) together, the match
    expert, then the blends of `recent` alone. The bucket is the longest order whose counts, training or recent, had
    seen the context (0 for none, counting the blended orders, then the match orders). pending: (PendingCounts,
    limit (n,)), text read since `recent` that counts as recent, position i's up to its limit (_slots).
    words: (word contexts (n, WORD_ORDERS), their tables (the training split's, then the text's own), pending or
    None), where config.words: the word model's blend, the last expert.
    less: (tables of negative counts, owner (n,)): row i's counts less those of tables[owner[i]] (where
    owner[i] >= 0), as if that table were the last of `recent` for row i alone: positions whose `recent`
    differs by such a table (several texts' judges, surprise/fix.py) blended in one call.
    positions (n,): each position's place in its text (the tokens before it, BOS included: what the network has
    read of it), for the warmth selector; None for a network with a long context behind every position.
    """
    c, vocab = model.config, model.vocab
    n, n_orders = contexts.shape
    n_blended = len(c.orders)
    # the text's own counts alone, as well: its own style, which the training split's many more counts outweigh
    own_experts, tables = _own_experts(c), [model.table] + recent
    (types, total, row, order, tokens, counts), *own = _slots(contexts[:, :n_blended], tables,
                                                              *([recent] if own_experts else []), pending=pending,
                                                              less=less)
    types, total = (np.concatenate([a, np.zeros((n, n_orders - n_blended), a.dtype)], axis=1) for a in (types, total))
    # a context never seen at the longest blended order was never seen at a longer one either (it ends
    # every longer one): the match orders are looked up only where it was (rarely, in fresh text)
    rows = np.flatnonzero(total[:, n_blended - 1] > 0) if c.match_orders else []
    if len(rows):
        (m_types, m_total, m_row, m_order, m_tokens, m_counts), = _slots(
            contexts[rows, n_blended:], tables, pending=pending and (pending[0], pending[1][rows]),
            less=less and (less[0], less[1][rows]))
        types[rows, n_blended:], total[rows, n_blended:] = m_types, m_total
        row, order = np.concatenate([row, rows[m_row]]), np.concatenate([order, m_order + n_blended])
        tokens, counts = np.concatenate([tokens, m_tokens]), np.concatenate([counts, m_counts])
    seen = total > 0
    longest = n_orders - 1 - seen[:, ::-1].argmax(1)  # the longest order that saw the context
    bucket = np.where(seen.any(1), longest + 1, 0)
    # the experts' entries: each (position, token) that any order saw, once
    key = row * vocab + tokens
    if words is not None:
        word_contexts, word_tables, word_pending = words
        own.append(_slots(word_contexts, word_tables, pending=word_pending)[0])
    own_keys = [o_row * vocab + o_tokens for _, _, o_row, _, o_tokens, _ in own]
    mark = np.zeros(n * vocab, dtype=bool)
    for k in [key] + own_keys:
        mark[k] = True
    distinct = np.flatnonzero(mark)
    slot_of = np.empty(n * vocab, dtype=np.int64)
    slot_of[distinct] = np.arange(len(distinct))
    erow, etoken = np.divmod(distinct, vocab)
    base, bonus = _blends(c.orders, c.experts, vocab, total, _escape(c, types), erow, row, order, slot_of[key], counts)
    bases, bonuses = [base], [bonus]  # every expert's columns, stacked once at the end
    if c.match_orders:
        usual = (order == longest[row]) & (bucket[row] > len(c.orders))
        predicted = _most_counted(n, row[usual], tokens[usual], counts[usual])
        mbase, mbonus = _match_expert(predicted, slot_of, vocab, c.match_confidence, len(distinct))
        bases.append(mbase)
        bonuses.append(mbonus)
    blended = [(c.orders, own_experts)] * len(own_experts) + ([(WORD_LEVELS, WORD_LEVELS[-1:])] if words else [])
    for (o_types, o_total, o_row, o_order, _, o_counts), o_key, (levels, top) in zip(own, own_keys, blended):
        obase, obonus = _blends(levels, top, vocab, o_total, _escape(c, o_types), erow, o_row, o_order,
                                slot_of[o_key], o_counts)
        bases.append(obase)
        bonuses.append(obonus)
    return Experts(np.column_stack(bases).astype(np.float32), erow, etoken, np.column_stack(bonuses).astype(np.float32),
                   bucket, small_contexts(contexts, bucket, types, total, longest, positions))


WORD_LEVELS = list(range(1, WORD_ORDERS + 1))  # the word model's contexts, blended as orders 1, 2
WORD_PRIOR = 0.1  # the word model's prior weight

# the selected weight sets' steps (_evidence_step): a multiple of the bucket weights' learning rate, and the
# positions a row must have seen in a chunk to take half a full step; both chosen on the tuning slices
# (bench/mixer_gains.py; docs/quality.md)
SET_LR, SET_PSEUDO = 3.0, 4.0
def _own_experts(c: CountModelConfig) -> list[int]:
    """The orders of the blends of the text's own counts alone."""
    return [max(c.experts)] if c.recent_expert else []


def _escape(c: CountModelConfig, types: np.ndarray) -> np.ndarray:
    return c.escape_per_type * types + c.escape_base


def _slots(contexts: np.ndarray, *groups: list[CountTable], pending: tuple | None = None,
           less: tuple | None = None) -> list[tuple]:
    """What followed each context of contexts (n, k), summed over each group of tables: distinct next
    tokens (n, k), total counts (n, k), and the entries (row, column, token, count) of every (row, column),
    each (row, column)'s by token. A table in several groups is looked up once. pending: (PendingCounts,
    limit (n,)), the text's tokens read since its tables, added to every group, row i's up to limit[i].
    less: (tables of negative counts, owner (n,)), taken from every group, row i's from tables[owner[i]]."""
    n, k = contexts.shape
    unique, inverse = np.unique(contexts.ravel(), return_inverse=True)  # short contexts recur: look each up once
    tables = {id(t): t for group in groups for t in group}
    found = {key: t.lookup(unique) for key, t in tables.items()}
    fresh = pending[0].lookup(contexts.ravel(), np.repeat(pending[1], k)) if pending else None
    taken = _taken(contexts, *less) if less is not None else None
    return [_spread(n, k, *summed, inverse, fresh, taken) for summed in _group_sums(groups, found, len(unique))]


def _taken(contexts: np.ndarray, tables: list[CountTable], owner: np.ndarray) -> tuple:
    """(flat query, token, count) of tables[owner[i]]'s entries for each context of row i of contexts (n, k),
    by query then token (_slots' `less`)."""
    n, k = contexts.shape
    parts = []
    for u in np.unique(owner[owner >= 0]):
        rows = np.flatnonzero(owner == u)
        query, tokens, counts = tables[u].lookup(contexts[rows].ravel())
        parts.append((rows[query // k] * k + query % k, tokens, counts))
    if not parts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    query, tokens, counts = (np.concatenate(part) for part in zip(*parts))
    order = np.argsort(query, kind="stable")  # a query's entries come from one table, by token
    return query[order], tokens[order], counts[order]


def _group_sums(groups: tuple, found: dict, n: int) -> list[tuple]:
    """tables._summed of each group's lookups (`found`, by table id). Where the second group is the first's
    tables after its first (blend_counts': the training table, then the text's own), those are merged once."""
    if len(groups) == 2 and len(groups[1]) > 1 and list(map(id, groups[0][1:])) == list(map(id, groups[1])):
        own = _merged([found[id(t)] for t in groups[1]])
        return [_kept(_merged([found[id(groups[0][0])], own]), n), _kept(own, n)]
    return [_summed([found[id(t)] for t in group], n) for group in groups]


def _spread(n: int, k: int, types, tokens, counts, inverse, fresh, taken=None) -> tuple:
    """_slots' answer for one group: its tables' continuations of each unique context (types, tokens, counts)
    given to every (row, column) that has it, plus the pending counts `fresh` (flat query, token, count), less
    the counts `taken` (the same, negative): an entry left with none is dropped, as _kept drops it."""
    from .kernels import spread  # here: numba's import, which a verb without a count model need not pay

    types, total, query, tokens, counts = spread(types, tokens, counts, inverse)
    if fresh is not None and len(fresh[0]):
        fresh_query, fresh_tokens, fresh_counts = fresh
        at, known = _find((query << 16) | tokens, (fresh_query << 16) | fresh_tokens)
        counts[at[known]] += fresh_counts[known]
        at, new = at[~known], ~known
        query, tokens = np.insert(query, at, fresh_query[new]), np.insert(tokens, at, fresh_tokens[new])
        counts = np.insert(counts, at, fresh_counts[new])
        types = types + np.bincount(fresh_query[new], minlength=n * k)
        total = total + np.bincount(fresh_query, weights=fresh_counts, minlength=n * k)  # whole counts: exact
    if taken is not None and len(taken[0]):
        at, known = _find((query << 16) | tokens, (taken[0] << 16) | taken[1])
        counts = counts.copy()
        counts[at[known]] += taken[2][known]  # distinct (query, token) pairs: no two add to one entry
        kept = counts > 0
        query, tokens, counts = query[kept], tokens[kept], counts[kept]
        types = np.bincount(query, minlength=n * k)
        total = np.bincount(query, weights=counts, minlength=n * k)
    row, column = np.divmod(query, k)
    return types.reshape(n, k), total.reshape(n, k), row, column, tokens, counts


def _find(keys: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each of `wanted` (sorted) goes among `keys` (sorted), and whether it is there: merged, not sorted
    again (a sort of both cost twice as much)."""
    at = np.searchsorted(keys, wanted)
    known = keys[np.minimum(at, len(keys) - 1)] == wanted if len(keys) else np.zeros(len(at), dtype=bool)
    return at, known


def _blends(orders: list[int], experts: list[int], vocab: int, total, escape, erow, row, order, slot, counts):
    """(base (n, E), bonus (m, E)) of the Witten-Bell blends up to each order in `experts`:
    blend_k = (counts_k + escape_k blend_{k-1}) / (total_k + escape_k), from the uniform distribution up.

    Written blend_k = a_k counts_k + b_k blend_{k-1}, a blend is a share for every token (the uniform
    distribution scaled by the b's) plus each (row, order, token, count) entry scaled by its order's a
    and the b's of the orders above it: each entry is added once, to its experts' entry `slot`
    (kernels.blend_shares: one compiled pass where numpy took some thirty calls, the same floats).
    """
    from .kernels import blend_shares  # here: numba's import, which a verb without a count model need not pay

    blocks, lo = [], 0  # expert e's blend puts orders lo..hi-1 on top of the blend so far
    for k in sorted(experts):
        blocks.append((lo, orders.index(k) + 1))
        lo = blocks[-1][1]
    block_of = np.full(total.shape[1], -1)  # orders above the last expert's (the match orders') are not blended
    for i, (lo, hi) in enumerate(blocks):
        block_of[lo:hi] = i
    shares, ratios = blend_shares(np.array(blocks, dtype=np.int64), 1.0 / vocab, np.ascontiguousarray(total),
                                  np.ascontiguousarray(escape), erow, row, order, block_of, slot, counts)
    return (np.stack([np.log(share) for share in shares], axis=1),
            np.stack([_log1p(ratio) for ratio in ratios], axis=1))


def _log1p(ratio: np.ndarray) -> np.ndarray:
    """log(1 + ratio) in float32 (its logs are twice as fast), in float64 where the ratio is past float32's range:
    a long history's large counts can make a blend's share of every token smaller than 1e-38."""
    huge = ratio > 1e30
    out = np.log1p(np.where(huge, 0, ratio).astype(np.float32))
    if huge.any():
        out[huge] = np.log1p(ratio[huge])
    return out


def _most_counted(n: int, row: np.ndarray, tokens: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per row 0..n-1, the token with the highest count among its entries (the lowest such token on a
    tie, as argmax), -1 where the row has none."""
    order = np.lexsort((tokens, -counts, row))
    row, tokens = row[order], tokens[order]
    first = _run_starts(row)
    out = np.full(n, -1, dtype=np.int64)
    out[row[first]] = tokens[first]
    return out


def _match_expert(predicted: np.ndarray, slot_of: np.ndarray, vocab: int, confidence: float, m: int):
    """(base (n,), bonus (m,)): `confidence` on the predicted token, the rest spread evenly; uniform
    where nothing is predicted (-1). Under geometric mixing a uniform expert changes nothing."""
    rows = np.flatnonzero(predicted >= 0)
    base = np.where(predicted >= 0, np.log((1 - confidence) / (vocab - 1)), -np.log(vocab))
    bonus = np.zeros(m)
    bonus[slot_of[rows * vocab + predicted[rows]]] = np.log(confidence) - base[rows]
    return base, bonus


class OnlineMixer:
    """Geometric mixing: log p = w_0 * log p_net + sum_e w_e * log p_expert_e - log Z, one weight row per bucket,
    plus a row of each weight set that config.select names (selected by a small context, small_contexts),
    then an SSE stage (config.sse) that corrects the probability of the mix's most likely token.

    The weights start at priors (the network at w_network, the longest-order expert rising from
    w_counts to w_counts_longest with the bucket, the shorter experts at 0, the match expert at
    w_match where a match order was seen, the text's own blends at w_recent; the selected sets at 0)
    and follow the gradient of the log loss of each chunk once it has been scored.
    """

    def __init__(self, config: CountModelConfig, device):
        n_blended, n_match = len(config.orders) + 1, len(config.match_orders)
        longest, match = len(config.experts), len(config.experts) + 1  # their columns (the network's is 0)
        n_own = len(_own_experts(config))
        n_words = 1 if config.words else 0
        n_experts = len(config.experts) + (1 if n_match else 0) + n_own + n_words
        weights = torch.zeros(n_blended + n_match, 1 + n_experts)
        weights[:, 0] = config.w_network
        weights[:n_blended, longest] = torch.linspace(config.w_counts, config.w_counts_longest, n_blended)
        weights[n_blended:, longest] = config.w_counts_longest
        if n_match:
            weights[n_blended:, match] = config.w_match
        weights[:, 1 + n_experts - n_own - n_words : 1 + n_experts - n_words] = config.w_recent
        if n_words:
            weights[:, -1] = WORD_PRIOR
        self.weights = weights.to(device)
        self.lr = config.learning_rate
        # RMSprop: the experts' log-probabilities differ in scale (a sharp match expert's by ~10 nats),
        # so each weight's step is scaled by its own recent gradient size
        self.mean_square = torch.zeros_like(self.weights)
        # the selected weight sets, each a table of rows added to the bucket's: (small_contexts' column, rows)
        rows = {"order1": 1 << SLOT_BITS, "order2": 1 << SLOT_BITS, "seen": len(weights) * SEEN_LEVELS,
                "warmth": WARMTH_LEVELS}
        self.sets = [(MIXER_SELECTORS.index(name), self._set_prior(name, rows[name], weights).to(device),
                      torch.zeros(1 + n_experts, device=device)) for name in config.select]
        self.sse = SSE(config.sse, rows[config.sse_context], device) if config.sse > 0 else None
        self.sse_column = MIXER_SELECTORS.index(config.sse_context)

    @staticmethod
    def _set_prior(name: str, rows: int, weights: torch.Tensor) -> torch.Tensor:
        """A weight set's rows as they start: 0 (the buckets' weights alone), but for the warmth set, whose cold rows
        scale the mix down (its prior weights, averaged over the buckets, times WARMTH_PRIOR[level] - 1): a text's
        first tokens are learnt from too few times for its rows to move far from where they start."""
        table = torch.zeros(rows, weights.shape[1])
        if name == "warmth":
            scale = torch.tensor([WARMTH_PRIOR[min(level, len(WARMTH_PRIOR) - 1)] for level in range(rows)])
            table += (scale - 1)[:, None] * weights.mean(0)
        return table

    # mix keeps no state: surprise's judge calls it from several threads at once
    def mix(self, net_logp: torch.Tensor, experts: Experts) -> torch.Tensor:
        """Mixed log-probabilities (n, V)."""
        return self.refine(self.premix(net_logp, experts), experts)

    def refine(self, before: torch.Tensor, experts: Experts, kept: tuple | None = None) -> torch.Tensor:
        """The mix after the SSE stage, from the mix before it (premix's); kept: sse_inputs' of the same rows."""
        if self.sse is None:
            return before
        context, cells = kept or self.sse_inputs(before, experts)
        return self.sse.refine(before, context, cells)

    def sse_inputs(self, before: torch.Tensor, experts: Experts) -> tuple | None:
        """What the SSE stage reads of the mix before it, for refine and learn: (each row's context, SSE.cells), None
        without an SSE stage. Kept from refine for learn (compress keeps a step's with its mix): one computation."""
        return None if self.sse is None else (self._sse_context(experts, before), self.sse.cells(before))

    def mix_and_update(self, net_logp: torch.Tensor, experts: Experts, targets: torch.Tensor) -> torch.Tensor:
        """mix, then learn on the same chunk (eval's), the mix before the SSE stage and its inputs computed once."""
        before = self.premix(net_logp, experts)
        kept = self.sse_inputs(before, experts)
        after = self.refine(before, experts, kept)
        self.learn(before, net_logp, experts, targets, kept)
        return after

    def premix(self, net_logp: torch.Tensor, experts: Experts) -> torch.Tensor:
        """The mix before the SSE stage, which the weights learn from (learn). The experts' bases are constant along
        each row, which the softmax takes out: only the network and the entries' bonuses are weighed."""
        w = self.weights[torch.from_numpy(experts.bucket).to(net_logp.device)]  # (n, 1 + E)
        small = self._small(experts, net_logp) if self.sets else None
        for column, table, _ in self.sets:
            w = w + table[small[:, column]]
        row, flat, bonus = self._entries(experts, net_logp)
        logits = net_logp * w[:, :1]
        logits.view(-1)[flat] += (bonus * w[row, 1:]).sum(1)  # each (row, token) is one entry
        return torch.log_softmax(logits, dim=-1)

    def learn(self, before: torch.Tensor, net_logp: torch.Tensor, experts: Experts, targets: torch.Tensor,
              kept: tuple | None = None) -> None:
        """One gradient step on the chunk's log loss (the chunk is already scored: causal), from the mix before the
        SSE stage (premix's: compress keeps it from its mix, not mixed again) and the SSE stage's inputs (kept:
        sse_inputs' of the same rows, or computed here).

        The gradient of a weight is its feature's expected value under the mix less its value at the
        target; an expert's base cancels out of that, leaving the bonuses. The weights learn from the
        mix before the SSE stage; the SSE stage from its own input and the targets.
        """
        if self.sse is not None:
            context, cells = kept or self.sse_inputs(before, experts)
            self.sse.learn(before, context, targets, cells)
        self._learn(before, net_logp, experts, targets)

    def _learn(self, logp: torch.Tensor, net_logp: torch.Tensor, experts: Experts, targets: torch.Tensor) -> None:
        """learn's step of the weights, from the mix before the SSE stage."""
        n, V = logp.shape
        row, flat, bonus = self._entries(experts, logp)
        bucket = torch.from_numpy(experts.bucket).to(logp.device)
        p = logp.exp()
        # each position's gradient (n, 1 + E), summed into the rows that weighed it
        grad = torch.zeros(n, self.weights.shape[1], dtype=p.dtype, device=p.device)
        grad[:, 0] = (p * net_logp).sum(1) - net_logp.gather(1, targets[:, None])[:, 0]
        at_target = (flat == row * V + targets[row]).to(p.dtype)
        grad[:, 1:].index_add_(0, row, (p.view(-1)[flat] - at_target)[:, None] * bonus)
        _rmsprop(self.weights, self.mean_square, bucket, grad, self.lr)
        small = self._small(experts, logp) if self.sets else None
        for column, table, mean_square in self.sets:
            index, rows = small[:, column], grad
            if column == WARMTH_COLUMN:  # warm positions add no row: the warmth sets weigh only a text's start
                cold = torch.nonzero(index < WARMTH_LEVELS - 1)[:, 0]
                if not len(cold):
                    continue
                index, rows = index[cold], grad[cold]
            _evidence_step(table, mean_square, index, rows, self.lr * SET_LR)

    @staticmethod
    def _small(experts: Experts, like: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(experts.small).to(like.device)

    def _sse_context(self, experts: Experts, like: torch.Tensor) -> torch.Tensor:
        return self._small(experts, like)[:, self.sse_column]

    @staticmethod
    def _entries(experts: Experts, like: torch.Tensor):
        """The experts' entries as tensors beside `like` (n, V): rows, flat indices into it, bonuses (m, E)."""
        row = torch.from_numpy(experts.row).to(like.device)
        flat = row * like.shape[1] + torch.from_numpy(experts.token).to(like.device)
        return row, flat, torch.from_numpy(experts.bonus).to(like.device)


def _rmsprop(weights: torch.Tensor, mean_square: torch.Tensor, index: torch.Tensor, grad: torch.Tensor,
             lr: float) -> None:
    """An RMSprop step of every weight row, from each position's gradient (n, k) averaged over the positions that
    row `index` (n,) selected."""
    summed = torch.zeros_like(weights).index_add_(0, index, grad)
    summed /= torch.bincount(index, minlength=len(weights)).clamp_min(1).to(grad.dtype)[:, None]
    mean_square.mul_(0.9).add_(0.1 * summed * summed)
    weights -= lr * summed / (mean_square.sqrt() + 1e-3)


def _evidence_step(weights: torch.Tensor, mean_square: torch.Tensor, index: torch.Tensor, grad: torch.Tensor,
                   lr: float) -> None:
    """A step of the rows `index` (n,) selected, of a table too large for each row to keep its own gradient size:
    each row's averaged gradient is shrunk by its evidence (c / (c + SET_PSEUDO) for c positions), and every row
    is scaled by the table's gradient size per column (`mean_square` (k,), a moving average over positions)."""
    rows, inverse = torch.unique(index, return_inverse=True)
    counts = torch.bincount(inverse, minlength=len(rows)).to(grad.dtype)[:, None]
    summed = torch.zeros(len(rows), grad.shape[1], dtype=grad.dtype, device=grad.device).index_add_(0, inverse, grad)
    mean_square.mul_(0.9).add_(0.1 * (grad * grad).mean(0))
    weights[rows] -= lr * summed / (counts + SET_PSEUDO) / (mean_square.sqrt() + 1e-3)


class SSE:
    """Secondary estimation of the mix's most likely token, as paq's APM does for a bit: a table per small context
    of what the top token's probability turned out to be, at 33 points of its stretch ln(p / (1 - p)) in
    [-8, 8], read by linear interpolation. The corrected probability is (1 - share) p + share table(p); the
    other tokens keep their ratios. Each cell learns the rate at which its top tokens were right (an average
    over its first hits, then a moving one)."""

    POINTS, LIMIT = 33, 255.0

    def __init__(self, share: float, contexts: int, device):
        self.share = share
        centres = torch.linspace(-8, 8, self.POINTS, device=device)
        self.table = torch.sigmoid(centres).repeat(contexts, 1)  # starts as the identity
        self.hits = torch.zeros(contexts, self.POINTS, device=device)

    def cells(self, logp: torch.Tensor) -> tuple:
        """Where each row's top token falls among the points: what refine and learn read (pass it to both to
        compute it once)."""
        top_logp, top = logp.max(1)
        rest = torch.log(-torch.expm1(top_logp))  # log(1 - p_top); summed from the others where it is tiny:
        sure = torch.nonzero(top_logp > -1e-4)[:, 0]
        if len(sure):
            others = logp[sure].scatter(1, top[sure, None], float("-inf"))
            rest[sure] = torch.logsumexp(others, dim=1)
        at = ((top_logp - rest).clamp(-8, 8) + 8) * (self.POINTS - 1) / 16
        lo = at.floor().long().clamp(max=self.POINTS - 2)
        frac = at - lo
        return top, top_logp, rest, lo, frac

    def refine(self, logp: torch.Tensor, context: torch.Tensor, cells: tuple | None = None) -> torch.Tensor:
        top, top_logp, rest, lo, frac = cells or self.cells(logp)
        cells = self.table[context]
        sse = (1 - frac) * cells.gather(1, lo[:, None])[:, 0] + frac * cells.gather(1, lo[:, None] + 1)[:, 0]
        p = ((1 - self.share) * top_logp.exp() + self.share * sse).clamp(1e-6, 1 - 1e-6)
        out = logp + (torch.log1p(-p) - rest)[:, None]  # the others: scaled to share 1 - p
        return out.scatter_(1, top[:, None], p.log()[:, None])

    def learn(self, logp: torch.Tensor, context: torch.Tensor, targets: torch.Tensor,
              cells: tuple | None = None) -> None:
        top, _, _, lo, frac = cells or self.cells(logp)
        right = (top == targets).to(logp.dtype)
        flat = torch.cat([context * self.POINTS + lo, context * self.POINTS + lo + 1])
        weight = torch.cat([1 - frac, frac])
        table, hits = self.table.view(-1), self.hits.view(-1)
        touched, inverse = torch.unique(flat, return_inverse=True)
        error = torch.zeros(len(touched), dtype=table.dtype, device=table.device)
        error.index_add_(0, inverse, weight * (torch.cat([right, right]) - table[flat]))
        mass = torch.zeros_like(error).index_add_(0, inverse, weight)
        table[touched] += error / (hits[touched] + mass + 1.5)
        hits[touched] = (hits[touched] + mass).clamp(max=self.LIMIT)
