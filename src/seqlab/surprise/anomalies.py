"""`seqlab surprise`: where in a file the model is surprised, and what it expected instead.

Every token is scored once with full context (score.py): by default
through eval's own path, the run's count model mixed in, so the per-byte surprisal
sums to eval's total bits; with --network-alone by the network alone, in short
parallel blocks (faster, when the scoring and not the fixes is the cost).
A BPE token's surprisal and entropy are spread evenly over its bytes; its top-5
predictions belong to its first byte.

Anomalies are spans of bytes whose excess surprisal (surprisal minus the
model's own predictive entropy there: how much worse than it expected) stands
out, above mean + 2 std of the file's excess, merged when at most GAP bytes
apart. Why excess and not surprisal: a rare name is surprising where the model
knew it could not guess (high entropy), an error is surprising where it was
sure (low entropy). The spans of most excess get a suggested fix (fix.py:
judged by the same model that scored the bytes, count model included when mixed,
counting the rest of the file too) and are ranked by the bits their fix saves,
the noisy channel's evidence of an error: a typo (surprising and fixable)
outranks a rare name (surprising, not fixable), and a large excess alone does
not make an error. The places where the same edit is suggested share its
evidence: a file that indents by one space where the training text used two,
or declares `foo2(` beside `foo(`, gets the same "fix" at every instance, its
convention and not an error. Spans that suggest the very same fix are listed
once. A fix that changes whitespace only mends the layout, not the content: it
is shown, but its span ranks with those no edit explains, so a line wrapped or
joined unlike the training text does not outrank a lost bracket. Excess breaks
ties and orders the spans no content edit explains.

With --backward, a run trained on the text reversed reads the file right to
left as a second opinion: it proposes fixes for its own spans, and every fix is
judged both ways (see `bidirectional`).
"""

import json
import sys
from collections import Counter
import multiprocessing as mp
from dataclasses import dataclass, field, replace
from functools import partial

import numpy as np
import torch

from ..errors import SeqlabError
from ..options import device, input_file, integer, output_file, run_dir
from ..progress import bar, quiet
from ..scoring import TorchThreads, mixing_session
from .fix import FileCounts, Fix, changes_only_layout, channel_bits, edit_gain, suggest_fixes as suggest_together
from .render import anomaly_table, html_report, terminal_text, to_json
from .score import describe_scoring, score_tokens

GAP = 3  # spikes at most this many bytes apart join one span
MAX_SPAN = 24  # bytes
# Spans given a fix and ranked: top * CANDIDATES_PER_TOP, at least MIN_CANDIDATES. Fixes cost model
# calls, but an injected error is among the 24 spans of most excess 85% of the time, the 48 92%, the 96 97%
# (every span of most 2 KB windows of C headers).
CANDIDATES_PER_TOP = 3
MIN_CANDIDATES = 96
CHUNKS_PER_WORKER = 3  # the spans are judged a chunk at a time (fix.suggest_fixes), this many for each worker
EXCESS_WEIGHT = 0.01  # ranking: a fix's gain first, excess breaks ties and orders the spans no content edit explains


@dataclass
class Anomaly:
    offset: int
    length: int
    line: int
    column: int
    bits: float  # total surprisal of the span
    peak_bits: float
    score: float  # ranking: bits saved by a content fix / fix_repeats + EXCESS_WEIGHT * excess surprisal
    text: str
    expected: str  # greedy continuation from just before the span
    fix: Fix | None = None
    fix_repeats: int = 0  # places where this same edit is suggested (this one included)


@dataclass
class Report:
    name: str
    data: bytes
    bits: np.ndarray  # (n_bytes,) surprisal per byte
    entropy: np.ndarray  # (n_bytes,) predictive entropy per byte
    token_of_byte: np.ndarray  # (n_bytes,) index of the scored token covering the byte
    top_ids: np.ndarray  # (n_tokens, 5)
    top_probs: np.ndarray  # (n_tokens, 5)
    context: str
    anomalies: list[Anomaly] = field(default_factory=list)
    candidates: list[tuple[int, int]] = field(default_factory=list)  # every span given a fix, either reading

    @property
    def total_bits(self) -> float:
        return float(self.bits.sum())


def score_bytes(run, tokens: np.ndarray, mixed: bool = False, session=None) -> tuple:
    """Per-byte bits and entropy, token index per byte, and top-5 (ids, probs) per token, of a file's
    tokens (BOS first)."""
    tok = run.tokenizer
    s = score_tokens(run, tokens, mixed, session)
    lengths = np.array([len(tok.token_bytes[t]) for t in tokens[1:]], dtype=np.int64)
    token_of_byte = np.repeat(np.arange(len(lengths)), lengths)
    per_byte = np.maximum(lengths, 1)
    return (np.repeat(s.bits / per_byte, lengths), np.repeat(s.entropy / per_byte, lengths), token_of_byte,
            s.top_ids, s.top_probs)


# ---------------------------------------------------------------- spans


def spike_threshold(bits: np.ndarray) -> float:
    """A spike: above the file's mean + 2 std, and 1 bit at least."""
    return max(bits.mean() + 2 * bits.std(), 1.0) if len(bits) else 1.0


def find_spans(bits: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) byte ranges of neighbouring spikes."""
    spikes = np.flatnonzero(bits > spike_threshold(bits))
    spans: list[list[int]] = []
    for i in spikes:
        if spans and i - spans[-1][1] < GAP and i + 1 - spans[-1][0] <= MAX_SPAN:
            spans[-1][1] = i + 1
        else:
            spans.append([i, i + 1])
    return [(int(a), int(b)) for a, b in spans]


def line_column(data: bytes, offset: int) -> tuple[int, int]:
    """1-based line and character column of a byte offset."""
    start = data.rfind(b"\n", 0, offset) + 1
    return data.count(b"\n", 0, offset) + 1, len(data[start:offset].decode("utf-8", "replace")) + 1


@dataclass
class Reading:
    """One direction's pass over a text: what scoring and the fixes need again."""

    excess: np.ndarray  # (n_bytes,) surprisal minus entropy, in this reading's byte order
    spans: list[tuple[int, int]]  # the candidates, in this reading's byte order
    suggested: list[tuple[str, Fix | None]]  # (expected, fix) per span
    session: object  # the mixed scoring pass's, or None
    file_counts: FileCounts | None


def read(run, data: bytes, top: int, fixes: bool, mixed: bool) -> tuple[tuple, Reading]:
    """Score `data` with `run` and suggest a fix for each candidate span: (score_bytes' arrays, the Reading)."""
    session = mixing_session(run) if mixed else None  # kept: the fixes are judged as the bytes were scored
    tokens = np.concatenate([[run.tokenizer.bos_id], run.tokenizer.encode(data)]).astype(np.int64)
    scores = score_bytes(run, tokens, mixed, session)
    if session is not None:
        session.release_bitwise()  # the fixes are judged by the mix: its forked judges need not inherit the state
    bits, entropy, token_of_byte = scores[:3]
    excess = bits - entropy
    file_counts = FileCounts(tokens, token_of_byte + 1, run.count_model.orders, session.recent.levels) \
        if session is not None and fixes else None
    spans = candidate_spans(excess, top)
    suggested = suggest_fixes(run, data, spans, excess, session, file_counts) if fixes else [("", None)] * len(spans)
    return scores, Reading(excess, spans, suggested, session, file_counts)


def suggest_fixes(run, data: bytes, spans: list[tuple[int, int]], excess: np.ndarray, session,
                  file_counts: FileCounts | None) -> list[tuple[str, Fix | None]]:
    """suggest_fix for each span, tried at its spikes too: as many spans side by side as torch has threads.

    Fixes run small steps, where a thread's share of one matrix product costs more synchronisation than it
    saves, and much of their time is numpy and Python on small arrays, which hold the GIL: so spans are
    judged on one torch thread, in forked worker processes (forked_map) rather than threads, a few at a
    time (fix.suggest_fixes: their greedy steps share network and blend calls). Each worker takes a few
    chunks, each of every n-th span (the spans come most excess first, and cost more with more spikes), so
    that the chunks cost about the same and the workers finish together; one worker takes them all at once.
    """
    spikes = excess > spike_threshold(excess)
    at = [(a, a + np.flatnonzero(spikes[a:b])) for a, b in spans]
    workers = min(torch.get_num_threads(), len(spans)) if run.device.type == "cpu" else 1  # a fork cannot use CUDA
    n = min(len(at), workers * CHUNKS_PER_WORKER) if workers > 1 else min(len(at), 1)
    chunks = [list(range(j, len(at), n)) for j in range(n)]
    suggested = [None] * len(at)
    with bar(total=len(spans), desc="fixes", unit="span") as progress:
        judged = forked_map(partial(suggest_together, run, data, session=session, file_counts=file_counts),
                            [[at[i] for i in chunk] for chunk in chunks], workers)
        for chunk, some in zip(chunks, judged):
            for i, one in zip(chunk, some):
                suggested[i] = one
            progress.update(len(some))
    return suggested


_job = None  # what a forked worker of forked_map applies: inherited from the parent, set by _take_job


def _take_job(fn) -> None:
    global _job
    _job = fn
    torch.set_num_threads(1)


def _do_job(item):
    return _job(item)


def forked_map(fn, items: list, workers: int):
    """fn over items, in order (a generator), in `workers` forked processes of one torch thread each, which
    take items as they come free: each inherits fn and everything it reads (the run, the scoring session)
    without a copy or pickling; only the items and results travel, pickled, between this process and its
    own children. Here, on one torch thread, when one worker is asked for or a fork is not available."""
    if workers <= 1 or "fork" not in mp.get_all_start_methods():
        with TorchThreads(1):
            yield from map(fn, items)
        return
    with mp.get_context("fork").Pool(workers, initializer=_take_job, initargs=(fn,)) as pool:
        yield from pool.imap(_do_job, items)


def surprise(run, data: bytes, top: int = 10, name: str = "input", fixes: bool = True,
             mixed: bool | None = None, backward=None) -> Report:
    """Score `data`, find its `top` most surprising spans and suggest a fix for each.

    mixed: score and judge with the run's count model mixed in (None: when the run has one).
    backward: a run trained --backward, read as a second opinion (see `bidirectional`).
    """
    if top < 0:
        raise SeqlabError(f"--top must be >= 0, got {top}")
    if run.config.data.backward:
        raise SeqlabError(f"{run.path} reads text right to left: give a forward run as RUN, and this one as --backward")
    if backward is not None and not backward.config.data.backward:
        raise SeqlabError(f"--backward {backward.path} reads text left to right: train one with "
                          f"`seqlab train CORPUS --backward`")
    mixed = run.count_model is not None if mixed is None else mixed
    (bits, entropy, token_of_byte, top_ids, top_probs), forward = read(run, data, top, fixes, mixed)
    report = Report(name, data, bits, entropy, token_of_byte, top_ids, top_probs, describe_scoring(run, mixed))
    spans, suggested, excess = forward.spans, forward.suggested, forward.excess
    if backward is not None:
        spans, suggested, excess = bidirectional(run, backward, data, top, fixes, mixed, forward)
    report.candidates = spans
    repeats = places_per_edit(data, [fix for _, fix in suggested])
    anomalies = [_anomaly(data, bits, excess, a, b, expected, fix, n)
                 for (a, b), (expected, fix), n in zip(spans, suggested, repeats)]
    report.anomalies = one_per_fix(sorted(anomalies, key=lambda a: -a.score))[:top]
    return report


def bidirectional(run, backward, data: bytes, top: int, fixes: bool, mixed: bool, forward: Reading) -> tuple:
    """The candidates of both readings, each fix judged both ways: (spans, suggested, excess).

    Reading forward, an error shows only in the text after it; a lost closer spikes little there when
    that text could still sit inside the bracket, but the same text marks the loss at once read right
    to left. So the backward run suggests fixes for its own spans too, and every fix is judged both
    ways: its gain is the mean of the bits it saves reading forward (through FOLLOW bytes after it)
    and reading backward (through FOLLOW bytes before it), less the channel's cost once: the two
    readings' log-likelihood ratios averaged, as an ensemble of two models averages (their sum, or
    one reading's gain plus part of the other's, ranked the error benchmark's injected errors lower).
    The excess of a byte is the sum of both readings'. Spans and fixes come back in the forward byte
    order; a fix both readings suggest is judged once.
    """
    n = len(data)
    back_run = backward.in_reading_order  # fed reversed bytes itself
    _, back = read(back_run, data[::-1], top, fixes, mixed)
    candidates = [(span, expected, fix, True) for span, (expected, fix) in zip(forward.spans, forward.suggested)]
    candidates += [((n - b, n - a), "", fix and fix.mirrored(n), False)
                   for (a, b), (_, fix) in zip(back.spans, back.suggested)]
    spans, suggested, judged = [], [], {}
    with TorchThreads(1):
        for span, expected, fix, suggested_forward in candidates:
            if fix is not None and _fix_key(fix) not in judged:
                other = edit_gain(back_run, data[::-1], fix.mirrored(n), back.session, back.file_counts) \
                    if suggested_forward else edit_gain(run, data, fix, forward.session, forward.file_counts)
                fix.gain_bits = (fix.gain_bits + channel_bits(fix) + other) / 2 - channel_bits(fix)
                judged[_fix_key(fix)] = fix
            spans.append(span)
            suggested.append((expected, fix and judged[_fix_key(fix)]))
    return spans, suggested, forward.excess + back.excess[::-1]


def places_per_edit(data: bytes, fixes: list[Fix | None]) -> list[int]:
    """For each fix, at how many places the same edit is suggested (0 for None). A file's own convention
    is no error: the places of one edit share its evidence. Two spans that suggest the very same fix
    are one place."""
    places = Counter(_edit(data, fix) for fix in {_fix_key(f): f for f in fixes if f}.values())
    return [places[_edit(data, fix)] if fix else 0 for fix in fixes]


def one_per_fix(ranked: list[Anomaly]) -> list[Anomaly]:
    """The ranked anomalies with one per suggested fix: ranked as the best span that suggests it, placed
    at the span nearest the edit. (An error just before a line break can spike at both ends of the
    next line's indent, and both spans find the same fix.)"""
    by_fix: dict[tuple, list[Anomaly]] = {}
    for a in ranked:
        if a.fix is not None:
            by_fix.setdefault(_fix_key(a.fix), []).append(a)
    kept = []
    for a in ranked:
        if a.fix is None:
            kept.append(a)
        elif (spans := by_fix[_fix_key(a.fix)])[0] is a:  # the best of the spans that suggest this fix
            kept.append(replace(min(spans, key=_distance_to_fix), score=a.score, fix=a.fix))
    return kept


def _fix_key(fix: Fix) -> tuple[int, int, str]:
    """What makes two suggested fixes the very same one."""
    return fix.offset, fix.remove, fix.insert


def _distance_to_fix(a: Anomaly) -> int:
    return max(a.offset - a.fix.offset, a.fix.offset - (a.offset + a.length), 0)


def candidate_spans(excess: np.ndarray, top: int) -> list[tuple[int, int]]:
    """The spans given a fix and ranked, when `top` anomalies are asked for: those of most excess."""
    spans = sorted(find_spans(excess), key=lambda s: -_span_excess(excess, *s))
    return spans[: max(top * CANDIDATES_PER_TOP, MIN_CANDIDATES)] if top else []


def _span_excess(excess: np.ndarray, a: int, b: int) -> float:
    return float(np.maximum(excess[a:b], 0.0).sum())


def _edit(data: bytes, fix: Fix) -> tuple[bytes, str]:
    """What a fix does, wherever it applies: the bytes it removes and the text it inserts."""
    return data[fix.offset : fix.offset + fix.remove], fix.insert


def _anomaly(data: bytes, bits: np.ndarray, excess: np.ndarray, a: int, b: int, expected: str, fix: Fix | None,
             repeats: int) -> Anomaly:
    """The span a..b, with its suggested fix, whose edit is suggested at `repeats` places; a layout-only fix
    is shown but brings no evidence."""
    line, column = line_column(data, a)
    evidence = fix.gain_bits / repeats if fix and not changes_only_layout(data, fix) else 0.0
    return Anomaly(a, b - a, line, column, float(bits[a:b].sum()), float(bits[a:b].max()),
                   evidence + EXCESS_WEIGHT * _span_excess(excess, a, b),
                   data[a:b].decode("utf-8", "replace"), expected, fix, repeats)


# ---------------------------------------------------------------- CLI


def add_cli(sub) -> None:
    p = sub.add_parser("surprise", help="per-byte surprisal of a file, its anomalies and suggested fixes")
    p.add_argument("run", type=run_dir)
    p.add_argument("file", type=input_file)
    p.add_argument("--top", type=integer(min=0), default=10, help="anomalies to list (default 10)")
    p.add_argument("--html", metavar="OUT.html", type=output_file, help="write a self-contained HTML heat map")
    p.add_argument("--json", action="store_true", help="print JSON instead of the coloured text")
    p.add_argument("--no-color", action="store_true", help="plain text; anomalies marked with ^ lines")
    p.add_argument("--network-alone", action="store_true",
                   help="score and judge fixes with the network alone, without the run's count model "
                        "(scores faster, locates errors less well; default: as eval's headline figure)")
    p.add_argument("--backward", metavar="RUN", type=run_dir,
                   help="a run trained with --backward on the same kind of text: read right to left as a second "
                        "opinion, errors are placed and mended from both sides (about twice the time)")
    p.add_argument("--device", default="cpu", type=device)
    p.set_defaults(func=cli)


def cli(args) -> None:
    from ..run import load

    try:
        data = open(args.file, "rb").read()
    except OSError as e:
        raise SeqlabError(f"cannot read {args.file}: {e.strerror}") from None
    if not data:
        raise SeqlabError(f"{args.file} is empty; there is nothing to score")
    run = load(args.run, device=args.device)
    backward = load(args.backward, device=args.device) if args.backward else None
    with quiet(args.json):
        report = surprise(run, data, args.top, name=args.file, mixed=False if args.network_alone else None,
                          backward=backward)
    if args.html:
        try:
            with open(args.html, "w", encoding="utf-8") as f:
                f.write(html_report(report, run.tokenizer))
        except OSError as e:
            raise SeqlabError(f"cannot write {args.html}: {e.strerror}") from None
    if args.json:
        json.dump(to_json(report), sys.stdout)
        sys.stdout.write("\n")
        return
    color = sys.stdout.isatty() and not args.no_color
    sys.stdout.write(terminal_text(report, color))
    sys.stdout.write(anomaly_table(report))


