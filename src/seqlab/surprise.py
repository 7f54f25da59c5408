"""`seqlab surprise`: where in a file the model is surprised, and what it expected instead.

Every token is scored once with full context (scoring.score_run, as `seqlab
eval`, count model included when the run has one), so the per-byte surprisal
sums to eval's total bits. A BPE token's
surprisal and entropy are spread evenly over its bytes; its top-5 predictions
belong to its first byte.

Anomalies are spans: bytes above mean + 2 std of the file's own surprisal,
merged when at most GAP bytes apart. For each span the model proposes a fix:
from a few anchors just before the span it generates greedily what it expected
and tries small edits (insert the expected bytes, replace 1-2 bytes with them,
delete, swap two bytes); the edit that makes the text through FOLLOW bytes
after it least surprising is kept when it saves at least MIN_GAIN bits, net of
NOISE_BITS per removed byte (else deleting any text would look like a fix).
Spans are ranked by their excess surprisal plus the bits their fix saves, so a
typo (surprising and fixable) outranks a rare name (surprising, not fixable).
"""

import copy
import json
import sys
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .compress import TorchThreads
from .errors import SeqlabError
from .scoring import describe_run_context, score_run

GAP = 3  # spikes at most this many bytes apart join one span
MAX_SPAN = 24  # bytes
BACK = 3  # anchors tried before a span's first byte
EXPECT_TOKENS = 8  # greedy continuation length
EXPECT_BYTES = 12  # ... at most
FOLLOW = 16  # bytes after an edit that must become less surprising
MIN_GAIN = 2.0  # bits an edit must save to be suggested
NOISE_BITS = 8.0  # cost of each byte a fix removes (deleting text always saves its own bits)
CANDIDATES_PER_TOP = 3  # spans considered for ranking: top * this (fixes cost model calls)
LN2 = float(np.log(2))


@dataclass
class Fix:
    offset: int  # byte offset where the edit applies
    remove: int  # bytes removed there
    insert: str  # text inserted there
    kind: str  # "insert", "replace", "delete" or "swap"
    gain_bits: float  # bits saved through FOLLOW bytes after the edit, net of NOISE_BITS per removed byte

    def apply(self, data: bytes) -> bytes:
        return data[: self.offset] + self.insert.encode("utf-8", "surrogateescape") + data[self.offset + self.remove :]


@dataclass
class Anomaly:
    offset: int
    length: int
    line: int
    column: int
    bits: float  # total surprisal of the span
    peak_bits: float
    score: float  # ranking: excess surprisal + bits saved by the fix
    text: str
    expected: str  # greedy continuation from just before the span
    fix: Fix | None = None


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

    @property
    def total_bits(self) -> float:
        return float(self.bits.sum())


# ---------------------------------------------------------------- scoring


def score_bytes(run, data: bytes) -> tuple:
    """Per-byte bits and entropy, token index per byte, and top-5 (ids, probs) per token."""
    tok = run.tokenizer
    tokens = np.concatenate([[tok.bos_id], tok.encode(data)]).astype(np.int64)
    parts = [_token_stats(logp, targets) for _, logp, targets, _ in score_run(run, tokens, 1)]
    if not parts:
        return np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros((0, 5), np.int64), np.zeros((0, 5))
    bits, ent, top_ids, top_p = (np.concatenate(x) for x in zip(*parts))
    lengths = np.array([len(tok.token_bytes[t]) for t in tokens[1:]])
    token_of_byte = np.repeat(np.arange(len(lengths)), lengths)
    return (np.repeat(bits / lengths, lengths), np.repeat(ent / lengths, lengths), token_of_byte, top_ids, top_p)


def _token_stats(logp: torch.Tensor, targets: torch.Tensor) -> tuple:
    bits = -logp.gather(1, targets[:, None])[:, 0] / LN2  # (n,)
    entropy = -(logp.exp() * logp).sum(dim=1) / LN2
    top_logp, top_ids = logp.topk(min(5, logp.shape[1]), dim=1)
    return bits.cpu().numpy(), entropy.cpu().numpy(), top_ids.cpu().numpy(), top_logp.exp().cpu().numpy()


# ---------------------------------------------------------------- spans


def find_spans(bits: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) byte ranges of neighbouring spikes above the file's mean + 2 std."""
    if len(bits) == 0:
        return []
    threshold = max(bits.mean() + 2 * bits.std(), 1.0)
    spikes = np.flatnonzero(bits > threshold)
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


# ---------------------------------------------------------------- fixes


def _repeat_state(model, state, n: int):
    """The batch-1 state repeated n times along its batch dimension (found by comparing init shapes)."""
    template = model.init_state(2, torch.device("cpu"))

    def walk(s, t):
        if isinstance(s, torch.Tensor):
            dim = next(d for d in range(s.dim()) if s.shape[d] == 1 and t.shape[d] == 2)
            return s.repeat_interleave(n, dim=dim)
        if isinstance(s, (tuple, list)):
            return type(s)(walk(a, b) for a, b in zip(s, t))
        if hasattr(s, "__dict__"):
            out = copy.copy(s)
            for k, v in vars(s).items():
                setattr(out, k, walk(v, getattr(t, k)))
            return out
        return s

    return walk(state, template)


def _prefix_ids(run, data: bytes, anchor: int, room: int) -> list[int]:
    """The tokens before `anchor`, leaving `room` in the context for what follows (half at least)."""
    tok = run.tokenizer
    context = run.model.max_context or 256  # recurrent: enough to settle the state
    limit = max(context - room, context // 2)
    start = max(0, anchor - 4 * limit)
    ids = [int(i) for i in tok.encode(data[start:anchor])][-limit:]
    return ([tok.bos_id] + ids)[-limit:] if start == 0 else ids


@torch.no_grad()
def _greedy(run, state, logits, n: int) -> bytes:
    out = []
    for _ in range(n):
        nxt = logits.argmax(dim=-1)
        if int(nxt[0]) == run.tokenizer.bos_id:
            break
        out.append(run.tokenizer.token_bytes[int(nxt[0])])
        logits, state = run.model.step(nxt, state)
    return b"".join(out)


def _edits(data: bytes, anchor: int, expected: bytes) -> list[tuple[int, bytes, str]]:
    """(bytes removed at anchor, bytes inserted, kind) candidates; (0, b'', 'none') first."""
    edits = [(0, b"", "none")]
    edits += [(0, expected[:k], "insert") for k in range(1, len(expected) + 1)]
    for m in (1, 2):
        if anchor + m <= len(data):
            edits.append((m, b"", "delete"))
            edits += [(m, expected[:k], "replace") for k in range(1, len(expected) + 1)]
    if anchor + 2 <= len(data) and data[anchor] != data[anchor + 1]:
        edits.append((2, data[anchor + 1 : anchor + 2] + data[anchor : anchor + 1], "swap"))
    return edits


@torch.no_grad()
def _edit_bits(run, state, last_logits: torch.Tensor, tails: list[np.ndarray]) -> np.ndarray:
    """Total bits of each tail (token array) after the prefix whose state and last logits are given."""
    model = run.model
    first = torch.log_softmax(last_logits.float(), dim=-1)  # (V,)
    length = max(len(t) for t in tails)
    batch = np.zeros((len(tails), length), dtype=np.int64)
    for i, t in enumerate(tails):
        batch[i, : len(t)] = t
    y = torch.from_numpy(batch).to(run.device)
    total = -first[y[:, 0]]
    if length > 1:
        logits, _ = model(y[:, :-1], _repeat_state(model, state, len(tails)))
        logp = torch.log_softmax(logits.float(), dim=-1).gather(2, y[:, 1:, None])[..., 0]  # (C, L-1)
        mask = torch.tensor([[j + 1 < len(t) for j in range(length - 1)] for t in tails], device=run.device)
        total = total - (logp * mask).sum(dim=1)
    return (total / LN2).cpu().numpy()


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


def _anchor_states(run, data: bytes, first: int, stop: int):
    """Yield (anchor, logits (1, T, V), state) for anchors first..stop-1: the model having read data[:anchor].

    Byte tokens: read the prefix once and step one byte per anchor. BPE: re-read per anchor
    (token boundaries move with the anchor).
    """
    model, room = run.model, EXPECT_BYTES + FOLLOW + 2
    if getattr(run.tokenizer, "kind", "") != "byte":
        for anchor in range(first, stop):
            prefix = torch.tensor([_prefix_ids(run, data, anchor, room)], device=run.device)
            yield (anchor, *model(prefix, model.init_state(1, run.device)))
        return
    prefix = torch.tensor([_prefix_ids(run, data, first, room + (stop - first))], device=run.device)
    logits, state = model(prefix, model.init_state(1, run.device))
    for anchor in range(first, stop):
        yield anchor, logits, state
        if anchor < len(data) and anchor + 1 < stop:
            step, state = model.step(torch.tensor([data[anchor]], device=run.device), state)
            logits = step[:, None]


@torch.no_grad()
def suggest_fix(run, data: bytes, start: int) -> tuple[str, Fix | None]:
    """What the model expected at `start`, and the best small edit near it (None if none helps)."""
    tok, model, best, expected_here = run.tokenizer, run.model, None, b""
    for anchor, logits, state in _anchor_states(run, data, max(0, start - BACK), start + 1):
        # The network alone proposes and judges edits (a run's count model only sharpens scores).
        expected = _greedy(run, _repeat_state(model, state, 1), logits[:, -1], EXPECT_TOKENS)[:EXPECT_BYTES]
        if anchor == start:
            expected_here = expected
        end = min(len(data), anchor + 2 + FOLLOW)
        edits = _edits(data, anchor, expected)
        tails = [tok.encode(ins + data[anchor + m : end]) for m, ins, _ in edits]
        keep = [i for i, t in enumerate(tails) if len(t)]
        if len(keep) < 2 or keep[0] != 0:
            continue
        bits = _edit_bits(run, state, logits[0, -1], [tails[i] for i in keep])
        for i, b in zip(keep[1:], bits[1:]):
            m, ins, kind = edits[i]
            fix = _minimal_fix(data, anchor, m, ins, kind, float(bits[0] - b))
            # Noisy channel: junk bytes a fix removes must have come from somewhere, ~8 bits each.
            fix.gain_bits -= NOISE_BITS * fix.remove if fix.kind != "swap" else 0.0
            if fix.gain_bits >= MIN_GAIN and (best is None or fix.gain_bits > best.gain_bits):
                best = fix
    return expected_here.decode("utf-8", "replace"), best


# ---------------------------------------------------------------- the report


def surprise(run, data: bytes, top: int = 10, name: str = "input", fixes: bool = True) -> Report:
    """Score `data`, find its `top` most surprising spans and suggest a fix for each."""
    if top < 0:
        raise SeqlabError(f"--top must be >= 0, got {top}")
    bits, entropy, token_of_byte, top_ids, top_probs = score_bytes(run, data)
    report = Report(name, data, bits, entropy, token_of_byte, top_ids, top_probs, describe_run_context(run))
    spans = find_spans(bits)
    mean = float(bits.mean()) if len(bits) else 0.0
    spans.sort(key=lambda s: -float((bits[s[0] : s[1]] - mean).sum()))
    with TorchThreads(1):  # fixes run small sequential steps: threads only add synchronisation
        anomalies = [_anomaly(run, data, bits, a, b, mean, fixes) for a, b in spans[: top * CANDIDATES_PER_TOP]]
    anomalies.sort(key=lambda a: -a.score)
    report.anomalies = anomalies[:top]
    return report


def _anomaly(run, data: bytes, bits: np.ndarray, a: int, b: int, mean: float, fixes: bool) -> Anomaly:
    line, column = line_column(data, a)
    expected, fix = suggest_fix(run, data, a) if fixes else ("", None)
    excess = float((bits[a:b] - mean).sum())
    return Anomaly(a, b - a, line, column, float(bits[a:b].sum()), float(bits[a:b].max()),
                   excess + (fix.gain_bits if fix else 0.0), data[a:b].decode("utf-8", "replace"), expected, fix)


def to_json(report: Report) -> dict:
    n = len(report.data)
    return {
        "file": report.name,
        "bytes": n,
        "tokens": len(report.top_ids),
        "bits": report.total_bits,
        "bpb": report.total_bits / max(n, 1),
        "context": report.context,
        "anomalies": [_anomaly_json(a) for a in report.anomalies],
        "surprisal": [round(float(b), 3) for b in report.bits],
        "entropy": [round(float(e), 3) for e in report.entropy],
    }


def _anomaly_json(a: Anomaly) -> dict:
    d = asdict(a)
    d["improves"] = a.fix is not None
    return d


# ---------------------------------------------------------------- CLI


def add_cli(sub) -> None:
    p = sub.add_parser("surprise", help="per-byte surprisal of a file, its anomalies and suggested fixes")
    p.add_argument("run")
    p.add_argument("file")
    p.add_argument("--top", type=int, default=10, help="anomalies to list (default 10)")
    p.add_argument("--html", metavar="OUT.html", help="write a self-contained HTML heat map")
    p.add_argument("--json", action="store_true", help="print JSON instead of the coloured text")
    p.add_argument("--no-color", action="store_true", help="plain text; anomalies marked with ^ lines")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cli)


def cli(args) -> None:
    from .run import load

    try:
        data = open(args.file, "rb").read()
    except OSError as e:
        raise SeqlabError(f"cannot read {args.file}: {e.strerror}") from None
    if not data:
        raise SeqlabError(f"{args.file} is empty; there is nothing to score")
    run = load(args.run, device=args.device)
    report = surprise(run, data, args.top, name=args.file)
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


# ---------------------------------------------------------------- views


def _chars(data: bytes) -> tuple[list[str], np.ndarray]:
    """The text as characters (undecodable bytes as U+FFFD, one per byte) and each char's first byte."""
    text = data.decode("utf-8", "surrogateescape")
    sizes = [1 if "\udc80" <= c <= "\udcff" else len(c.encode("utf-8")) for c in text]
    chars = ["\ufffd" if "\udc80" <= c <= "\udcff" else c for c in text]
    return chars, np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


RAMP = [(2, None), (4, 230), (6, 229), (8, 222), (10, 215), (13, 209), (16, 203), (float("inf"), 196)]


def _ansi(bits: float) -> str | None:
    return next(colour for limit, colour in RAMP if bits < limit)


def terminal_text(report: Report, color: bool) -> str:
    """The text coloured by surprisal (ANSI 256 backgrounds), or plain with ^ lines under anomalies."""
    chars, starts = _chars(report.data)
    char_bits = np.add.reduceat(report.bits, starts[:-1]) if len(chars) else np.zeros(0)
    marks = np.zeros(len(report.data) + 1, dtype=np.int64)  # anomaly rank per byte (0 = none)
    for rank, a in reversed(list(enumerate(report.anomalies, 1))):
        marks[a.offset : a.offset + a.length] = rank
    out, line, marker, ranks, current = [], [], [], [], None
    for i, ch in enumerate(chars):
        if ch == "\n":
            out.append(_end_line(line, marker, ranks, color and current is not None))
            line, marker, ranks, current = [], [], [], None
            continue
        rank = int(marks[starts[i]])
        marker.append("\t" if ch == "\t" else "^" if rank else " ")
        if rank and rank not in ranks:
            ranks.append(rank)
        colour = _ansi(float(char_bits[i])) if color else None
        if colour != current:
            line.append("\x1b[0m" if colour is None else f"\x1b[48;5;{colour}m\x1b[38;5;16m")
            current = colour
        line.append(ch)
    if line or (color and current is not None):
        out.append(_end_line(line, marker, ranks, color and current is not None))
    return "".join(out)


def _end_line(line: list[str], marker: list[str], ranks: list[int], reset: bool) -> str:
    text = "".join(line) + ("\x1b[0m" if reset else "") + "\n"
    if ranks and not any(s.startswith("\x1b") for s in line):
        text += "".join(marker).rstrip() + "  <- " + ", ".join(f"#{r}" for r in ranks) + "\n"
    return text


def _show(text: str, width: int = 24) -> str:
    s = json.dumps(text, ensure_ascii=False)
    return s if len(s) <= width else s[: width - 2] + "…\""


def describe_fix(fix: Fix | None) -> str:
    if fix is None:
        return "no edit helps"
    what = {"insert": f"insert {_show(fix.insert)}", "delete": f"delete {fix.remove} byte(s)",
            "swap": "swap the two bytes", "replace": f"replace {fix.remove} byte(s) with {_show(fix.insert)}"}
    return f"{what[fix.kind]} at byte {fix.offset} (saves {fix.gain_bits:.1f} bits)"


def anomaly_table(report: Report) -> str:
    n = len(report.data)
    lines = [f"\n{report.name}: {n:,} bytes, {report.total_bits / max(n, 1):.4f} bits/byte ({report.context})"]
    if not report.anomalies:
        return "\n".join(lines + ["no anomalies: nothing stands out from the file's own surprisal\n"])
    lines.append(f"{'#':>3}  {'line:col':<10} {'bits':>6} {'peak':>6}  {'text':<24}  {'expected':<24}  suggested fix")
    for i, a in enumerate(report.anomalies, 1):
        lines.append(f"{i:>3}  {f'{a.line}:{a.column}':<10} {a.bits:>6.1f} {a.peak_bits:>6.1f}  {_show(a.text):<24}  "
                     f"{_show(a.expected):<24}  {describe_fix(a.fix)}")
    return "\n".join(lines) + "\n"


def _token_label(b: bytes) -> str:
    text = b.decode("utf-8", "replace")
    return text.replace("\n", "↵").replace(" ", "␣").replace("\t", "⇥") or "⟨end⟩"


def html_payload(report: Report, tokenizer) -> dict:
    chars, starts = _chars(report.data)
    first = starts[:-1]
    char_bits = np.add.reduceat(report.bits, first) if chars else np.zeros(0)
    char_ent = np.add.reduceat(report.entropy, first) if chars else np.zeros(0)
    vocab = {int(i): _token_label(tokenizer.token_bytes[int(i)]) for i in np.unique(report.top_ids)}
    char_of_byte = np.searchsorted(starts, np.arange(len(report.data) + 1), side="right") - 1
    anomalies = []
    for rank, a in enumerate(report.anomalies, 1):
        d = _anomaly_json(a)
        d.update(rank=rank, char=int(char_of_byte[a.offset]), chars=int(char_of_byte[a.offset + a.length] -
                 char_of_byte[a.offset]) or 1, fix_text=describe_fix(a.fix))
        anomalies.append(d)
    n = len(report.data)
    return {
        "name": report.name, "bytes": n, "bpb": report.total_bits / max(n, 1), "context": report.context,
        "text": "".join(chars),
        "bits": [round(float(b), 2) for b in char_bits],
        "ent": [round(float(e), 2) for e in char_ent],
        "tok": [int(report.token_of_byte[i]) for i in first],
        "top": report.top_ids.tolist(),
        "prob": np.round(report.top_probs, 4).tolist(),
        "vocab": vocab,
        "anomalies": anomalies,
    }


def html_report(report: Report, tokenizer) -> str:
    """One self-contained HTML file: heat map, hover details with top-5 predictions, anomaly list."""
    import html

    payload = json.dumps(html_payload(report, tokenizer), ensure_ascii=True)
    payload = payload.replace("</", "<\\/").replace("<!--", "<\\!--")  # cannot end the <script> element
    return HTML_TEMPLATE.replace("%TITLE%", html.escape(f"seqlab surprise: {report.name}")).replace("%DATA%", payload)


HTML_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>%TITLE%</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
:root { --bg:#fbfaf7; --fg:#1d232b; --muted:#6b7480; --card:#fff; --line:#e6e2da; --accent:#c2410c; }
* { box-sizing:border-box; }
body { margin:0; font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif; background:var(--bg); color:var(--fg); }
header { padding:18px 28px; border-bottom:1px solid var(--line); background:var(--card);
  position:sticky; top:0; z-index:2; }
header h1 { font-size:18px; margin:0 0 4px; font-weight:600; }
header .stats { color:var(--muted); font-size:13px; display:flex; gap:18px; flex-wrap:wrap; align-items:center; }
.legend { display:inline-flex; align-items:center; gap:6px; }
.legend i { display:inline-block; width:110px; height:10px; border-radius:5px;
  background:linear-gradient(90deg,hsla(50,95%,55%,0),hsla(40,95%,55%,.5),hsla(20,95%,55%,.75),hsla(0,90%,50%,.9)); }
main { display:grid; grid-template-columns:minmax(0,1fr) 380px; gap:24px; padding:24px 28px; }
#text { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:18px 20px; margin:0;
  font:13.5px/1.65 ui-monospace,"SF Mono",Menlo,Consolas,monospace; white-space:pre-wrap; word-break:break-all; }
#text span { border-radius:2px; cursor:default; }
#text span.anom { outline:1.5px solid var(--accent); outline-offset:1px; }
#text span.flash { animation:flash 1.6s ease-out; }
@keyframes flash { 0%,40% { box-shadow:0 0 0 4px rgba(194,65,12,.45); } 100% { box-shadow:0 0 0 0 rgba(194,65,12,0); } }
aside h2 { font-size:14px; text-transform:uppercase; letter-spacing:.06em; color:var(--muted); margin:0 0 10px; }
aside { position:sticky; top:96px; align-self:start; max-height:calc(100vh - 120px); overflow:auto; }
.anomaly { display:block; background:var(--card); border:1px solid var(--line); border-radius:10px; padding:10px 12px;
  margin-bottom:10px; color:inherit; text-decoration:none; transition:border-color .15s, transform .15s; }
.anomaly:hover { border-color:var(--accent); transform:translateX(-2px); }
.anomaly .top { display:flex; justify-content:space-between; font-size:13px; color:var(--muted); }
.anomaly .rank { font-weight:700; color:var(--accent); }
.anomaly code { font:12.5px ui-monospace,Menlo,Consolas,monospace; background:#f3efe8; padding:1px 5px;
  border-radius:4px; white-space:pre-wrap; }
.anomaly .row { margin-top:4px; font-size:13px; }
.fix { color:#15803d; } .nofix { color:var(--muted); }
#tip { position:fixed; pointer-events:none; z-index:5; background:#1d232b; color:#f5f5f4; border-radius:8px;
  padding:10px 12px;
  font-size:12.5px; min-width:210px; box-shadow:0 8px 24px rgba(0,0,0,.25); display:none; }
#tip .ch { font:600 15px ui-monospace,Menlo,monospace; }
#tip table { border-collapse:collapse; margin-top:6px; width:100%; }
#tip td { padding:1px 4px; font-family:ui-monospace,Menlo,monospace; white-space:pre; }
#tip .bar { height:6px; background:#fb923c; border-radius:3px; }
@media (max-width:900px) { main { grid-template-columns:1fr; } aside { position:static; max-height:none; } }
</style></head>
<body>
<header><h1 id="title"></h1><div class="stats" id="stats"></div></header>
<main><pre id="text"></pre><aside><h2>Most surprising spans</h2><div id="list"></div></aside></main>
<div id="tip"></div>
<script id="payload" type="application/json">%DATA%</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("payload").textContent);
const chars = Array.from(D.text);
const el = (tag, cls, text) => { const e = document.createElement(tag); if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text; return e; };
const show = s => s.replace(/\\n/g, "\\u21b5").replace(/\\t/g, "\\u21e5");
function colour(bits) { const t = Math.min(bits / 14, 1);
  if (t < 0.12) return "";
  return `hsla(${Math.round(52 - 52 * t)},95%,${Math.round(58 - 10 * t)}%,${(0.15 + 0.8 * t).toFixed(2)})`; }
document.getElementById("title").textContent = "Surprise map \\u2014 " + D.name;
const stats = document.getElementById("stats");
for (const s of [`${D.bytes.toLocaleString()} bytes`, `${D.bpb.toFixed(3)} bits/byte`,
                 `${D.anomalies.length} anomalies`, D.context])
  stats.appendChild(el("span", "", s));
const legend = el("span", "legend"); legend.append("0 bits", el("i"), "14+ bits"); stats.appendChild(legend);
const anomOf = new Map();
for (const a of D.anomalies) for (let i = a.char; i < a.char + a.chars; i++) if (!anomOf.has(i)) anomOf.set(i, a);
const text = document.getElementById("text"), frag = document.createDocumentFragment();
chars.forEach((c, i) => { const s = el("span", anomOf.has(i) ? "anom" : "", c); s.dataset.i = i;
  const bg = colour(D.bits[i]); if (bg) s.style.background = bg; frag.appendChild(s); });
text.appendChild(frag);
for (const a of D.anomalies) text.children[a.char].id = "pos-" + a.offset;
const list = document.getElementById("list");
if (!D.anomalies.length) list.appendChild(el("p", "nofix", "Nothing stands out from the file's own surprisal."));
for (const a of D.anomalies) {
  const card = el("a", "anomaly"); card.href = "#pos-" + a.offset;
  const top = el("div", "top");
  top.append(el("span", "rank", "#" + a.rank), el("span", "", `line ${a.line}, col ${a.column}`),
    el("span", "", `${a.bits.toFixed(1)} bits (peak ${a.peak_bits.toFixed(1)})`));
  const r1 = el("div", "row"); r1.append("text ", el("code", "", show(a.text)));
  const r2 = el("div", "row"); r2.append("expected ", el("code", "", show(a.expected)));
  const r3 = el("div", "row " + (a.fix ? "fix" : "nofix"), a.fix_text);
  card.append(top, r1, r2, r3);
  card.addEventListener("click", ev => { ev.preventDefault(); const t = text.children[a.char];
    t.scrollIntoView({behavior: "smooth", block: "center"});
    for (let i = a.char; i < a.char + a.chars; i++) { const s = text.children[i]; s.classList.remove("flash");
      void s.offsetWidth; s.classList.add("flash"); } history.replaceState(null, "", "#pos-" + a.offset); });
  list.appendChild(card);
}
const tip = document.getElementById("tip");
text.addEventListener("mousemove", ev => {
  const s = ev.target.closest("span"); if (!s) { tip.style.display = "none"; return; }
  const i = +s.dataset.i, t = D.tok[i]; tip.replaceChildren();
  tip.appendChild(el("div", "ch", show(chars[i]) === " " ? "\\u2423" : show(chars[i])));
  tip.appendChild(el("div", "", `surprisal ${D.bits[i].toFixed(2)} bits \\u00b7 entropy ${D.ent[i].toFixed(2)} bits`));
  const table = el("table");
  D.top[t].forEach((id, k) => { const tr = el("tr");
    const p = D.prob[t][k], bar = el("div", "bar"); bar.style.width = Math.max(2, Math.round(p * 90)) + "px";
    const b = el("td"); b.appendChild(bar);
    tr.append(el("td", "", D.vocab[id]), el("td", "", (100 * p).toFixed(1) + "%"), b); table.appendChild(tr); });
  tip.appendChild(el("div", "", "model's top 5 here:")); tip.appendChild(table);
  const a = anomOf.get(i); if (a) tip.appendChild(el("div", "fix", `anomaly #${a.rank}: ${a.fix_text}`));
  tip.style.display = "block";
  const x = Math.min(ev.clientX + 14, innerWidth - tip.offsetWidth - 8), y = ev.clientY + 18;
  tip.style.left = x + "px";
  tip.style.top = (y + tip.offsetHeight > innerHeight ? ev.clientY - tip.offsetHeight - 10 : y) + "px";
});
text.addEventListener("mouseleave", () => { tip.style.display = "none"; });
</script></body></html>
"""
