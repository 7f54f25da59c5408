"""Suggested fixes for `seqlab surprise`: what the model expected, and the small edit that helps most.

From a few anchors just before a span (and just after the text before any
whitespace that leads to it) the model generates greedily what it expected and
tries small edits (insert the expected bytes or one of its top guesses, replace
1-2 bytes with them, delete, swap two bytes); at each spike inside the span,
where a lost or swapped byte shows, it tries its top guesses and the same
deletions and swaps. The edit that makes the text through FOLLOW bytes after it
least surprising is kept when it saves at least MIN_GAIN bits, net of what the
noisy channel charges for its error: NOISE_BITS per removed byte (else deleting
any text would look like a fix) and LOST_BITS per inserted byte past the first.
An edit of the content is preferred to one that changes whitespace only.

A Judge gives the next-token distributions that propose and weigh the edits:
the network alone, or, when the file was scored mixed, the network mixed with
the run's count model exactly as scoring mixed them (the weights the scoring
pass adapted to this file, frozen). The judge counts the training split and the
rest of the file (FileCounts): a name or pattern that recurs elsewhere in the
file is evidence of what was meant here, but every count that reads a byte near
the edit is left out, or the corrupted bytes would vouch for themselves.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..countmodel import CountTable, blend_counts, context_hashes, context_ids
from ..countmodel.words import REACH, WORD_ORDERS
from .tails import StepRows, _judge_stage, _repeat_state, _TailRead

BACK = 3  # anchors tried before a span's first byte
MAX_LEAD = 128  # bytes of whitespace before a span walked back over to the text they follow
EXPECT_TOKENS = 8  # greedy continuation length
EXPECT_BYTES = 12  # ... at most
TOP_GUESSES = 5  # the most likely next tokens, each tried as a one-token insert or replacement
FOLLOW = 16  # bytes after an edit that must become less surprising
MIN_GAIN = 2.0  # bits an edit must save to be suggested
NOISE_BITS = 8.0  # cost of each byte a fix removes (deleting text always saves its own bits)
LOST_BITS = 2.0  # cost of each byte a fix inserts past the first (one byte is lost more often than several)
LN2 = float(np.log(2))


@dataclass
class Fix:
    offset: int  # byte offset where the edit applies
    remove: int  # bytes removed there
    insert: str  # text inserted there
    kind: str  # "insert", "replace", "delete" or "swap"
    gain_bits: float  # bits saved through FOLLOW bytes after the edit, net of NOISE_BITS per removed byte

    @property
    def inserted(self) -> bytes:
        return self.insert.encode("utf-8", "surrogateescape")

    def apply(self, data: bytes) -> bytes:
        return data[: self.offset] + self.inserted + data[self.offset + self.remove :]

    def mirrored(self, n: int) -> "Fix":
        """The same edit of an n-byte text read right to left."""
        return Fix(n - self.offset - self.remove, self.remove, self.inserted[::-1].decode("utf-8", "surrogateescape"),
                   self.kind, self.gain_bits)


class FileCounts:
    """The file's own n-gram counts, for judging an edit by the rest of the file.

    An intended text usually recurs in its file (a name, a closing bracket's pattern) where an error
    does not; but the bytes around an edit must not vouch for themselves, so `around(lo, hi)` gives
    the counts less every one whose context or token reads a byte in lo..hi-1. The counts are the
    mixed scoring pass's (`counted`: it counted every token of the file as it went).
    """

    def __init__(self, tokens: np.ndarray, token_at_byte: np.ndarray, orders, counted: list[CountTable]):
        """tokens: the file's, BOS first; token_at_byte: the index into tokens of each byte's token."""
        self.tokens, self.token_at_byte, self.orders, self.counted = tokens, token_at_byte, np.asarray(orders), counted

    def around(self, lo: int, hi: int) -> list[CountTable]:
        """The file's counts less those that read a byte in lo..hi-1."""
        if not len(self.token_at_byte):
            return []
        return self.counted + [self.overlapping(lo, hi)]

    def overlapping(self, lo: int, hi: int) -> CountTable:
        """The counts that read a byte in lo..hi-1 (of a file with a token at least), negative: what around
        adds to the file's counts."""
        first = self.token_at_byte[min(lo, len(self.token_at_byte) - 1)]
        stop = self.token_at_byte[min(hi, len(self.token_at_byte)) - 1] + 1
        longest = int(self.orders.max())
        positions = np.arange(first, min(len(self.tokens), stop + longest))
        # the counts at these positions whose (context, token) starts before `stop`, as scoring counted them
        keep = (positions[:, None] >= self.orders) & (positions[:, None] - self.orders < stop)
        begin = max(0, first - longest)  # enough tokens before for every order's context
        contexts = context_hashes(self.tokens[begin : positions[-1] + 1], self.orders)[positions - begin]
        nxt = np.broadcast_to(self.tokens[positions][:, None], keep.shape)[keep]
        overlapping = CountTable.build(contexts[keep], nxt)
        overlapping.counts *= -1
        return overlapping


class Judge:
    """Next-token log-probabilities for texts that continue a file: the network's, or mixed with the count model."""

    def __init__(self, run, session=None, file_tables: list | None = None, less: list | None = None):
        """less: for a judge of several spans at once, each span's counts to leave out (FileCounts.overlapping),
        taken from file_tables for the positions a span owns (mixed's owner): as each span's own judge, with
        file_tables + [its table], would judge them."""
        self.run, self.session, self.file_tables, self.less = run, session, file_tables or [], less
        self.depth = max(session.model.orders) if session is not None else 0  # tokens of history the counts read

    def history(self, data: bytes, anchor: int) -> np.ndarray:
        """The tokens before byte `anchor` the count model reads (BOS first when they reach the file's start)."""
        return np.array(_ids_before(self.run.tokenizer, data, anchor, self.depth) if self.depth else [],
                        dtype=np.int64)

    def log_probs(self, net_logp: torch.Tensor, history: np.ndarray, tails: list[np.ndarray]) -> torch.Tensor:
        """Judged log-probabilities (n, V) for each position of each tail, laid end to end.

        net_logp (n, V) is the network's for the same positions; position j of a tail follows
        `history` and the tail's first j tokens.
        """
        if self.session is None:
            return net_logp
        return self.mixed(net_logp, np.concatenate([self.contexts(history, t[None])[0] for t in tails]))

    def contexts(self, history: np.ndarray, batch: np.ndarray) -> np.ndarray:
        """The count model's context ids (rows, width, orders) of each position of each row of batch
        read after `history` (countmodel.context_ids), then its word model's (words.py), if it has one."""
        ids = context_ids(history, batch, self.session.model.orders)
        words = self.session.model.words
        if words is None:
            return ids
        before = np.broadcast_to(history[-REACH:], (len(batch), min(len(history), REACH)))
        word_ids = words.contexts(np.concatenate([before, batch], axis=1))[:, before.shape[1] :]
        return np.concatenate([ids, word_ids], axis=2)

    def mixed(self, net_logp: torch.Tensor, contexts: np.ndarray, owner: np.ndarray | None = None) -> torch.Tensor:
        """Judged log-probabilities (n, V) of n positions, from the network's and their count-model context
        ids (n, orders + WORD_ORDERS where the model has a word model, as contexts() gives them): one blend of
        the counts for all of them. owner (n,): the span (index into `less`) each position is judged for."""
        if self.session is None:
            return net_logp
        model = self.session.model
        n = len(model.orders)  # the word model's contexts after the orders' read its training counts
        if contexts.shape[1] != n + (WORD_ORDERS if model.words is not None else 0):
            raise ValueError(f"context ids of {contexts.shape[1]} columns for a count model of {n} orders"
                             f"{' and a word model' if model.words is not None else ''}")
        less = (self.less, owner) if self.less is not None else None
        experts = blend_counts(model, self.file_tables, contexts[:, :n], words=self.session.words(contexts[:, n:]),
                               less=less)
        return self.session.mixer.mix(net_logp, experts)

    def next_log_probs(self, net_logp: torch.Tensor, history: np.ndarray) -> torch.Tensor:
        """Judged log-probabilities (1, V) of the token after `history`."""
        return self.log_probs(net_logp, history, [np.zeros(1, dtype=np.int64)])


def _ids_before(tok, data: bytes, anchor: int, limit: int) -> list[int]:
    """The last `limit` tokens before byte `anchor` (BOS first when they reach the file's start)."""
    start = max(0, anchor - 4 * limit)
    ids = [int(i) for i in tok.encode(data[start:anchor])][-limit:]
    return ([tok.bos_id] + ids)[-limit:] if start == 0 else ids


def _prefix_ids(run, data: bytes, anchor: int, room: int) -> list[int]:
    """The tokens before `anchor`, leaving `room` in the context for what follows (half at least)."""
    context = run.model.max_context or 256  # recurrent: enough to settle the state
    return _ids_before(run.tokenizer, data, anchor, max(context - room, context // 2))


@torch.no_grad()
def _greedy_all(judge: Judge, starts: list[tuple]) -> list[tuple[bytes, list[int]]]:
    """(the greedy continuation, the judge's TOP_GUESSES most likely first tokens) for several starts
    (state, last logits (1, V), history, length[, owner: the span it is judged for, a judge of several])
    side by side: each step's judging is one blend of the counts for all of them, and the network steps
    them all as one batch (tails.StepRows; the states given are left as they were)."""
    run = judge.run
    rows = [{"logits": lg, "history": h, "n": n, "out": [], "guesses": [], "done": n <= 0,
             "owner": owner[0] if owner else -1} for _, lg, h, n, *owner in starts]
    stepping = [k for k, start in enumerate(starts) if start[3] > 1]  # the last token's prediction is never asked for
    steps = max((starts[k][3] - 1 for k in stepping), default=0)
    network = StepRows(run.model, [starts[k][0] for k in stepping], steps) if stepping else None
    for i in range(max((start[3] for start in starts), default=0)):
        live = [r for r in rows if not r["done"] and i < r["n"]]
        if not live:
            break
        net_logp = torch.cat([torch.log_softmax(r["logits"].float(), dim=-1) for r in live])
        contexts = np.concatenate([judge.contexts(r["history"], np.zeros((1, 1), dtype=np.int64))[0] for r in live]) \
            if judge.session is not None else None
        logp = judge.mixed(net_logp, contexts, np.array([r["owner"] for r in live]))
        if i == 0:
            top = logp.topk(min(TOP_GUESSES, logp.shape[-1]), dim=-1).indices
            for r, t in zip(live, top):
                r["guesses"] = [int(x) for x in t]
        for r, nxt in zip(live, logp.argmax(dim=-1)):
            if int(nxt) == run.tokenizer.bos_id:
                r["done"] = True
                continue
            r["out"].append(run.tokenizer.token_bytes[int(nxt)])
            r["history"] = np.append(r["history"], int(nxt))
            r["next"] = int(nxt)
        if i < steps and any(not rows[k]["done"] and i + 1 < rows[k]["n"] for k in stepping):
            # rows done are stepped too (their state is dropped): a batch keeps one shape
            tokens = torch.tensor([rows[k].get("next", 0) for k in stepping], device=run.device)
            for k, logits in zip(stepping, network.step(tokens)):
                rows[k]["logits"] = logits[None]
    return [(b"".join(r["out"]), r["guesses"]) for r in rows]


def _edits(data: bytes, anchor: int, expected: bytes, guesses: list[bytes]) -> list[tuple[int, bytes, str]]:
    """(bytes removed at anchor, bytes inserted, kind) candidates; (0, b'', 'none') first."""
    inserts = [expected[:k] for k in range(1, len(expected) + 1)]
    inserts += [g for g in guesses if g and g not in inserts]
    edits = [(0, b"", "none")] + [(0, ins, "insert") for ins in inserts]
    for m in (1, 2):
        if anchor + m <= len(data):
            edits.append((m, b"", "delete"))
            edits += [(m, ins, "replace") for ins in inserts]
    if anchor + 2 <= len(data) and data[anchor] != data[anchor + 1]:
        edits.append((2, data[anchor + 1 : anchor + 2] + data[anchor : anchor + 1], "swap"))
    return edits


@torch.no_grad()
def _edit_bits(judge: Judge, state, last_logits: torch.Tensor, history: np.ndarray,
               tails: list[np.ndarray]) -> np.ndarray:
    """Total bits of each tail (token array) after the prefix whose state, last logits and history are given."""
    return _edit_bits_all(judge, [(state, last_logits, history, tails)])[0]


@torch.no_grad()
def _edit_bits_all(judge: Judge, groups: list[tuple], costs: list[np.ndarray] | None = None) -> list[np.ndarray]:
    """_edit_bits for several prefixes (state, last logits, history, tails): the network reads each group's
    tails as one batch, and the judge blends the counts for every position of a stage of every group at once.

    costs (one per group, per tail; the first tail is the text as it is): the channel's bits for each edit.
    Given them, a tail is read in stages, through PROBES[0] tokens, then PROBES[1], then to its end, and
    read on only while it could still be suggested: bits are never negative, so one whose first tokens
    already cost more than the text's total less MIN_GAIN and its channel cost never could (its total is
    given as infinity).
    """
    reads = [_TailRead(judge, *group) for group in groups]
    if costs is None:
        _judge_stage(judge, [(r, list(range(len(r.lengths))), 0, r.width) for r in reads])
        return [r.totals() for r in reads]
    _judge_stage(judge, [stage for r in reads for stage in ((r, [0], 0, r.width),
                                                            (r, list(range(1, len(r.lengths))), 0, PROBES[0]))])
    live = [list(range(1, len(r.lengths))) for r in reads]
    for lo, hi in zip(PROBES, PROBES[1:] + (None,)):
        stages = []
        for k, (r, cost) in enumerate(zip(reads, costs)):
            room = r.total([0])[0] - r.total(live[k]) - cost[live[k]]  # the most each could still save
            live[k] = [i for i, saves in zip(live[k], room) if r.lengths[i] > lo and saves >= MIN_GAIN - 1e-3]
            stages.append((r, live[k], lo, hi or r.width))
        _judge_stage(judge, [stage for stage in stages if stage[1]])
    return [r.totals() for r in reads]


PROBES = (8, 16)  # tokens of every candidate tail read before the rest (see _edit_bits_all)


def _minimal_fix(data: bytes, offset: int, remove: int, insert: bytes, kind: str, gain: float) -> Fix:
    """The same edit with what it keeps trimmed off ("e" -> "es" becomes: insert "s" after the "e")."""
    removed = data[offset : offset + remove]
    while removed and insert and removed[0] == insert[0]:
        removed, insert, offset = removed[1:], insert[1:], offset + 1
    while removed and insert and removed[-1] == insert[-1]:
        removed, insert = removed[:-1], insert[:-1]
    if kind == "replace":
        kind = "insert" if not removed else "delete" if not insert else "replace"
    return Fix(offset, len(removed), insert.decode("utf-8", "surrogateescape"), kind, gain)


def channel_bits(fix: Fix) -> float:
    """Noisy channel: how much less likely the error this fix undoes is than one lost or swapped byte.
    Junk bytes a fix removes must have come from somewhere (NOISE_BITS each); bytes it inserts were
    lost together (LOST_BITS for each past the first)."""
    if fix.kind == "swap":
        return 0.0
    return NOISE_BITS * fix.remove + LOST_BITS * max(0, len(fix.inserted) - 1)


def changes_only_layout(data: bytes, fix: Fix) -> bool:
    """Whether the fix removes and inserts whitespace only: layout, not content."""
    return (data[fix.offset : fix.offset + fix.remove] + fix.inserted).isspace()


def _preference(data: bytes, fix: Fix) -> tuple[bool, float]:
    """A content edit before a layout edit, then the bits it saves."""
    return not changes_only_layout(data, fix), fix.gain_bits


def _anchor_states(run, data: bytes, anchors: list[int]):
    """Yield (anchor, logits (1, T, V), state) for each of the ascending anchors: the model having read data[:anchor].

    Byte tokens: read the prefix once and step one byte at a time to each anchor. BPE: re-read per
    anchor (token boundaries move with the anchor).
    """
    model, room = run.model, EXPECT_BYTES + FOLLOW + 2
    if getattr(run.tokenizer, "kind", "") != "byte":
        for anchor in anchors:
            prefix = torch.tensor([_prefix_ids(run, data, anchor, room)], device=run.device)
            yield (anchor, *model(prefix, model.init_state(1, run.device)))
        return
    first, wanted = anchors[0], set(anchors)
    prefix = torch.tensor([_prefix_ids(run, data, first, room + (anchors[-1] - first))], device=run.device)
    logits, state = model(prefix, model.init_state(1, run.device))
    for position in range(first, anchors[-1] + 1):
        if position in wanted:
            yield position, logits, state
        if position < anchors[-1]:
            step, state = model.step(torch.tensor([data[position]], device=run.device), state)
            logits = step[:, None]


def fix_anchors(data: bytes, start: int, spikes: Sequence[int]) -> list[int]:
    """Where a span's edits are tried: the BACK bytes before it and its first byte (an error shows just
    after it), just after the text that whitespace separates from it (a `;` or `)` lost at a line's end
    shows at the next line's first byte), and at and just before each spike inside it (a swapped or
    lost byte mid-span)."""
    anchors = set(range(max(0, start - BACK), start + 1))
    anchors.add(_text_end_before(data, start))
    anchors.update(a for p in spikes for a in (p - 1, p) if a > start)
    return sorted(anchors)


def _text_end_before(data: bytes, start: int) -> int:
    """The offset just after the last non-whitespace byte before `start`, at most MAX_LEAD bytes back."""
    end = start
    while end > max(0, start - MAX_LEAD) and data[end - 1 : end].isspace():
        end -= 1
    return end


def _tail_end(data: bytes, anchor: int) -> int:
    """Where the text an edit at `anchor` is judged by ends: FOLLOW bytes past a removal of up to 2."""
    return min(len(data), anchor + 2 + FOLLOW)


def _judge_edits_between(run, session, file_counts: FileCounts | None, first: int, last: int) -> Judge:
    """The judge of edits at anchors first..last, the file's counts less those that read any byte an edit,
    its expectation or its tail reads."""
    tables = file_counts.around(*_read_by_edits(first, last)) if file_counts is not None else None
    return Judge(run, session, tables)


def _read_by_edits(first: int, last: int) -> tuple[int, int]:
    """The bytes lo..hi-1 that an edit at anchors first..last, its expectation or its tail reads."""
    return first, last + 2 + EXPECT_BYTES + FOLLOW


def _judges(run, session, file_counts: FileCounts | None, anchors: list[list[int]]) -> tuple[list[Judge], Judge]:
    """(each span's judge, one judge of all of them) for spans whose edits are tried at `anchors` (a list
    each): the file's counts less, for each span, those its edits read (Judge's less)."""
    if file_counts is None or not len(file_counts.token_at_byte):
        judge = _judge_edits_between(run, session, file_counts, 0, 0)
        return [judge] * len(anchors), judge
    less = [file_counts.overlapping(*_read_by_edits(at[0], at[-1])) for at in anchors]
    return ([Judge(run, session, file_counts.counted + [table]) for table in less],
            Judge(run, session, file_counts.counted, less))


@torch.no_grad()
def suggest_fix(run, data: bytes, start: int, session=None, file_counts: FileCounts | None = None,
                spikes: Sequence[int] = ()) -> tuple[str, Fix | None]:
    """What the model expected at `start`, and the best small edit near it or at one of the `spikes`
    (positions after it) (None if none helps).

    With a scoring `session` (a mixed pass's), edits are judged by the network mixed with the count model.
    """
    anchors = fix_anchors(data, start, spikes)
    judge = _judge_edits_between(run, session, file_counts, anchors[0], anchors[-1])
    starts = _starts(run, data, start, anchors, judge)
    greedy = _greedy_all(judge, [(state, logits[:, -1], history, length)
                                 for _, logits, state, history, length in starts])
    return _best_edit(run, data, start, judge, starts, greedy)


@torch.no_grad()
def suggest_fixes(run, data: bytes, spans: list[tuple], session=None,
                  file_counts: FileCounts | None = None) -> list[tuple[str, Fix | None]]:
    """suggest_fix for several spans ((start, spikes) each), the same answers: the greedy continuations of
    every anchor of every span step as one batch, judged by one blend of the counts a step (a judge of all
    the spans, each position's counts less its own span's); each span's edits are then weighed by its own
    judge, as suggest_fix weighs them. (A few spans at a time: the greedy steps are small, their network
    and blend calls cost more than their rows.)"""
    anchors = [fix_anchors(data, start, spikes) for start, spikes in spans]
    judges, together = _judges(run, session, file_counts, anchors)
    starts = [_starts(run, data, start, at, together) for (start, _), at in zip(spans, anchors)]
    rows = [(state, logits[:, -1], history, length, u)
            for u, mine in enumerate(starts) for _, logits, state, history, length in mine]
    greedy = _greedy_all(together, rows)
    out, at = [], 0
    for (start, _), judge, mine in zip(spans, judges, starts):
        out.append(_best_edit(run, data, start, judge, mine, greedy[at : at + len(mine)]))
        at += len(mine)
    return out


def _starts(run, data: bytes, start: int, anchors: list[int], judge: Judge) -> list[tuple]:
    """(anchor, logits, state, history, greedy length) of each anchor of the span at `start`."""
    starts = []
    for anchor, logits, state in _anchor_states(run, data, anchors):
        # at a spike inside the span a lost or swapped byte needs no continuation: one-token guesses suffice
        # a copy: the next anchor steps the same state on (a transformer's cache changes in place)
        starts.append((anchor, logits, _repeat_state(run.model, state, 1), judge.history(data, anchor),
                       EXPECT_TOKENS if anchor <= start else 1))
    return starts


def _best_edit(run, data: bytes, start: int, judge: Judge, starts: list[tuple],
               greedy: list[tuple]) -> tuple[str, Fix | None]:
    """suggest_fix's answer from its anchors' starts and greedy continuations: every edit weighed by `judge`."""
    tok, best, expected_here = run.tokenizer, None, b""
    groups, candidates, costs = [], [], []  # per anchor with edits to weigh: its tails, its edits, their channel bits
    for (anchor, logits, state, history, _), (expected, guesses) in zip(starts, greedy):
        expected = expected[:EXPECT_BYTES]
        if anchor == start:
            expected_here = expected
        end = _tail_end(data, anchor)
        edits = _edits(data, anchor, expected, [tok.token_bytes[g] for g in guesses if g != tok.bos_id])
        tails = [tok.encode(ins + data[anchor + m : end]) for m, ins, _ in edits]
        keep = [i for i, t in enumerate(tails) if len(t)]
        if len(keep) < 2 or keep[0] != 0:
            continue
        groups.append((state, logits[0, -1], history, [np.asarray(tails[i]) for i in keep]))
        fixes = [_minimal_fix(data, anchor, *edits[i], 0.0) for i in keep]
        candidates.append(fixes)
        costs.append(np.array([channel_bits(fix) for fix in fixes]))
    for fixes, bits in zip(candidates, _edit_bits_all(judge, groups, costs) if groups else []):
        for fix, b in zip(fixes[1:], bits[1:]):
            fix.gain_bits = float(bits[0] - b) - channel_bits(fix)
            if fix.gain_bits >= MIN_GAIN and (best is None or _preference(data, fix) > _preference(data, best)):
                best = fix
    return expected_here.decode("utf-8", "replace"), best


@torch.no_grad()
def edit_gain(run, data: bytes, fix: Fix, session=None, file_counts: FileCounts | None = None) -> float:
    """The bits `fix` saves through FOLLOW bytes after it, judged as suggest_fix judges its edits (before
    the channel's cost): a second opinion on an edit another reading suggested."""
    offset, tok = fix.offset, run.tokenizer
    judge = _judge_edits_between(run, session, file_counts, offset, offset)
    end = _tail_end(data, offset)
    edited = fix.inserted + data[offset + fix.remove : end]
    tails = [np.asarray(tok.encode(text)) for text in (data[offset:end], edited)]
    if not (len(tails[0]) and len(tails[1])):
        return 0.0
    (_, logits, state), = _anchor_states(run, data, [offset])
    bits = _edit_bits(judge, state, logits[0, -1], judge.history(data, offset), tails)
    return float(bits[0] - bits[1])
