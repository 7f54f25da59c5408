"""How `seqlab surprise` shows a report: coloured terminal text, the anomaly table, JSON, an HTML heat map."""

import json
from dataclasses import asdict

import numpy as np


def to_json(report) -> dict:
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


def _anomaly_json(a) -> dict:
    d = asdict(a)
    d["improves"] = a.fix is not None
    return d


def _chars(data: bytes) -> tuple[list[str], np.ndarray]:
    """The text as characters (undecodable bytes as U+FFFD, one per byte) and each char's first byte."""
    text = data.decode("utf-8", "surrogateescape")
    sizes = [1 if "\udc80" <= c <= "\udcff" else len(c.encode("utf-8")) for c in text]
    chars = ["\ufffd" if "\udc80" <= c <= "\udcff" else c for c in text]
    return chars, np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


RAMP = [(2, None), (4, 230), (6, 229), (8, 222), (10, 215), (13, 209), (16, 203), (float("inf"), 196)]


def _ansi(bits: float) -> str | None:
    return next(colour for limit, colour in RAMP if bits < limit)


def terminal_text(report, color: bool) -> str:
    """The text coloured by surprisal (ANSI 256 backgrounds), or plain with ^ lines under anomalies."""
    chars, starts = _chars(report.data)
    char_bits = np.add.reduceat(report.bits, starts[:-1]) if len(chars) else np.zeros(0)
    marks = np.zeros(len(report.data) + 1, dtype=np.int64)  # anomaly rank per byte (0 = none)
    for rank, a in reversed(list(enumerate(report.anomalies, 1))):
        marks[a.offset : a.offset + a.length] = rank
    out, line, marker, ranks, current = [], [], [], [], None
    for i, ch in enumerate(chars):
        rank = int(marks[starts[i]])
        marker.append("\t" if ch == "\t" else "^" if rank else " ")  # a line end's: just past its last character
        if rank and rank not in ranks:
            ranks.append(rank)
        if ch == "\n":
            out.append(_end_line(line, marker, ranks, color and current is not None))
            line, marker, ranks, current = [], [], [], None
            continue
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


def describe_fix(fix) -> str:
    if fix is None:
        return "no edit helps"
    what = {"insert": f"insert {_show(fix.insert)}", "delete": f"delete {fix.remove} byte(s)",
            "swap": "swap the two bytes", "replace": f"replace {fix.remove} byte(s) with {_show(fix.insert)}"}
    return f"{what[fix.kind]} at byte {fix.offset} (saves {fix.gain_bits:.1f} bits)"


def anomaly_table(report) -> str:
    n = len(report.data)
    lines = [f"\n{report.name}: {n:,} bytes, {report.total_bits / max(n, 1):.4f} bits/byte ({report.context})"]
    if not report.anomalies:
        return "\n".join(lines + ["no anomalies: nothing stands out from the file's own surprisal\n"])
    lines.append(f"{'#':>3}  {'line:col':<10} {'bits':>6} {'peak':>6}  {'text':<24}  {'expected':<24}  suggested fix")
    for i, a in enumerate(report.anomalies, 1):
        lines.append(f"{i:>3}  {f'{a.line}:{a.column}':<10} {a.bits:>6.1f} {a.peak_bits:>6.1f}  {_show(a.text):<24}  "
                     f"{_show(a.expected):<24}  {fix_summary(a)}")
    return "\n".join(lines) + "\n"


def fix_summary(anomaly) -> str:
    """The suggested fix, and at how many places the same edit fits: a file's convention fits many."""
    repeats = f"; the same edit fits {anomaly.fix_repeats} places" if anomaly.fix_repeats > 1 else ""
    return describe_fix(anomaly.fix) + repeats


def _token_label(b: bytes) -> str:
    text = b.decode("utf-8", "replace")
    return text.replace("\n", "↵").replace(" ", "␣").replace("\t", "⇥") or "⟨end⟩"


def html_payload(report, tokenizer) -> dict:
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
                 char_of_byte[a.offset]) or 1, fix_text=fix_summary(a))
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


def html_report(report, tokenizer) -> str:
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
