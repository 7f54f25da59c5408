"""`seqlab neurons`: which hidden units track a feature of the text (Karpathy-style).

Every unit of every layer is recorded over the whole file: a recurrent model
carries its state through chunks, so each byte is read after all the text before
it; an attention model reads windows of its context with stride half a window, so
each byte has at least half a window before it (as `seqlab eval` does). Each
unit's activations are correlated (Pearson, over bytes) with a per-byte feature;
with BPE, every byte gets its token's activation.

Features describe the text *after reading each byte*, which is what a causal
model can know:
  quote      1 from an opening " up to, not including, its closing " (\\" escapes, inside quotes)
  depth      nesting depth: (), [], {} plus open <tag>...</tag> (void and self-closing tags don't nest)
  line-pos   bytes read so far on the current line (0 right after a newline)
  regex:P    1 on the bytes inside matches of the regular expression P

Chance level is measured, not assumed: the best |r| of the same units with the
feature circularly shifted by half the file (same autocorrelation, no alignment).

    r = neurons(seqlab.load("runs/latest"), open("f.c", "rb").read(), "depth")
    r["top"][0]  # {"layer": 1, "unit": 137, "r": 0.91}
"""

import json
import re
import sys
from pathlib import Path

import numpy as np
import torch

from .errors import SeqlabError
from .options import device, input_file, integer, output_file, pattern, run_dir

FEATURES = ["quote", "depth", "line-pos", "regex:PATTERN"]
LSTM_CHUNK = 2048  # tokens per forward call; the state is carried between chunks
VOID_TAGS = {b"area", b"base", b"br", b"col", b"embed", b"hr", b"img", b"input", b"link", b"meta", b"source",
             b"track", b"wbr"}
TAG = re.compile(rb"<(/?)([A-Za-z][\w:.-]*)(?:[^<>\"']|\"[^\"]*\"|'[^']*')*?(/?)>")


# ---- features: one value per byte --------------------------------------------------------

def quote_feature(data: bytes) -> np.ndarray:
    out = np.zeros(len(data), dtype=np.float64)
    inside = escaped = False
    for i, b in enumerate(data):
        if escaped:
            escaped = False
        elif inside and b == 0x5C:  # backslash: the next byte cannot close the string
            escaped = True
        elif b == 0x22:
            inside = not inside
        out[i] = inside
    return out


def depth_feature(data: bytes) -> np.ndarray:
    buf = np.frombuffer(data, dtype=np.uint8)
    delta = np.zeros(len(buf), dtype=np.int64)
    for ch in b"([{":
        delta[buf == ch] += 1
    for ch in b")]}":
        delta[buf == ch] -= 1
    for m in TAG.finditer(data):
        closing, name, self_closing = m.groups()
        if not self_closing and name.lower() not in VOID_TAGS:
            delta[m.end() - 1] += -1 if closing else 1  # the tag takes effect at its '>'
    total = np.cumsum(delta)
    # Running sum floored at zero (a stray closer does not make depth negative): subtract the lowest dip so far.
    return (total - np.minimum(np.minimum.accumulate(total), 0)).astype(np.float64)


def line_pos_feature(data: bytes) -> np.ndarray:
    buf = np.frombuffer(data, dtype=np.uint8)
    at = np.arange(len(buf))
    last_newline = np.maximum.accumulate(np.where(buf == 10, at, -1))
    return (at - last_newline).astype(np.float64)  # before any newline, last_newline = -1


def regex_feature(data: bytes, pattern: str) -> np.ndarray:
    try:
        rx = re.compile(pattern.encode("utf-8"))
    except re.error as e:
        raise SeqlabError(f"--feature regex:{pattern}: not a valid regular expression ({e})") from None
    out = np.zeros(len(data), dtype=np.float64)
    for m in rx.finditer(data):
        out[m.start() : m.end()] = 1.0
    return out


def feature_values(data: bytes, feature: str) -> np.ndarray:
    """The named feature's value at every byte of data."""
    if feature.startswith("regex:"):
        return regex_feature(data, feature[len("regex:"):])
    named = {"quote": quote_feature, "depth": depth_feature, "line-pos": line_pos_feature}
    if feature not in named:
        raise SeqlabError(f"unknown --feature {feature!r}; choose one of: {', '.join(FEATURES)}")
    return named[feature](data)


# ---- activations ---------------------------------------------------------------------------

def supporting_archs() -> list[str]:
    from .models import ARCHS

    return [name for name, (_, cls) in ARCHS.items() if hasattr(cls, "hidden_states")]


@torch.no_grad()
def activations(model, tokens: np.ndarray, device="cpu"):
    """Yield (first, [per-layer (n, H) float arrays]) covering every position of tokens, in order."""
    ids = torch.from_numpy(np.asarray(tokens, dtype=np.int64))[None].to(device)  # (1, N)
    if model.max_context is None:  # recurrent: carry the state, every position sees everything before it
        state = None
        for first in range(0, ids.shape[1], LSTM_CHUNK):
            layers, state = model.hidden_states(ids[:, first : first + LSTM_CHUNK], state)
            yield first, [h[0].float().cpu().numpy() for h in layers]
        return
    window, stride = model.max_context, max(model.max_context // 2, 1)
    for first in range(0, ids.shape[1], stride):
        stop = min(first + stride, ids.shape[1])
        start = max(0, stop - window)
        layers, _ = model.hidden_states(ids[:, start:stop])
        yield first, [h[0, first - start :].float().cpu().numpy() for h in layers]


def describe_reading(model) -> str:
    if model.max_context is None:
        return f"state carried through the whole file (chunks of {LSTM_CHUNK} tokens)"
    return f"windows of {model.max_context} tokens, stride {max(model.max_context // 2, 1)}"


class _Moments:
    """Byte-weighted sums for Pearson r of every unit with a feature (and with the shifted null)."""

    def __init__(self):
        self.w = self.y = self.yy = self.y0 = self.y0y0 = 0.0
        self.x = self.xx = self.xy = self.xy0 = 0.0

    def add(self, x, w, y, y0, yy, y0y0):  # x (n, U) per token; w, y, ... (n,) sums over its bytes
        x = x.astype(np.float64)
        self.w, self.y, self.yy = self.w + w.sum(), self.y + y.sum(), self.yy + yy.sum()
        self.y0, self.y0y0 = self.y0 + y0.sum(), self.y0y0 + y0y0.sum()
        self.x, self.xx = self.x + w @ x, self.xx + w @ (x * x)
        self.xy, self.xy0 = self.xy + y @ x, self.xy0 + y0 @ x

    def r(self, null: bool = False) -> np.ndarray:
        y, yy, xy = (self.y0, self.y0y0, self.xy0) if null else (self.y, self.yy, self.xy)
        cov = xy - self.x * y / self.w
        var_x = np.maximum(self.xx - self.x**2 / self.w, 0.0)
        var_y = max(yy - y * y / self.w, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = cov / np.sqrt(var_x * var_y)
        return np.nan_to_num(np.clip(r, -1.0, 1.0))  # a unit that never changes correlates with nothing


def correlate(model, tokenizer, data: bytes, values: np.ndarray, keep_bytes: int = 0, device="cpu") -> dict:
    """Pearson r of every unit with per-byte `values`; plus all units' activations on the first keep_bytes."""
    ids = tokenizer.encode(data)
    lengths = np.array([len(tokenizer.token_bytes[i]) for i in ids], dtype=np.int64)
    assert lengths.sum() == len(data), "tokens must cover the bytes exactly"
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    null = np.roll(values, len(values) // 2)
    per_token = lambda v: np.add.reduceat(v, starts) if len(starts) else np.zeros(0)  # noqa: E731
    sums = [lengths.astype(np.float64)] + [per_token(v) for v in (values, null, values**2, null**2)]
    tokens = np.concatenate([[tokenizer.bos_id], ids])
    moments, kept, sizes = _Moments(), [], None
    n_keep = int(np.searchsorted(starts, keep_bytes, side="left")) if keep_bytes else 0
    for first, layers in activations(model, tokens, device):
        x = np.concatenate(layers, axis=1)  # (n, U): every unit of every layer
        sizes = [h.shape[1] for h in layers]
        lo = max(first, 1)  # position 0 is BOS, which no byte belongs to
        x = x[lo - first :]
        t = slice(lo - 1, lo - 1 + len(x))  # token indices in ids
        moments.add(x, *(s[t] for s in sums))
        if t.start < n_keep:
            kept.append(x[: n_keep - t.start].astype(np.float32))
    token_of_byte = np.repeat(np.arange(len(ids)), lengths)
    return {"r": moments.r(), "r_null": moments.r(null=True), "layer_sizes": sizes,
            "kept": np.concatenate(kept) if kept else np.zeros((0, sum(sizes or [0]))),
            "token_of_byte": token_of_byte, "tokens": len(ids)}


def neurons(run, data: bytes, feature: str = "quote", top: int = 10, keep_bytes: int = 2000) -> dict:
    """The `top` units most correlated (|r|) with the feature over data, with chance level and a view."""
    model = run.model
    if not hasattr(model, "hidden_states"):
        raise SeqlabError(f"seqlab neurons needs a model that exposes its hidden states; {run.config.arch!r} does "
                          f"not: it works with {', '.join(supporting_archs())}")
    if top < 1:
        raise SeqlabError(f"--top must be at least 1, got {top}")
    if not data:
        raise SeqlabError("the file is empty: neurons needs some text to read")
    values = feature_values(data, feature)
    if values.min() == values.max():
        raise SeqlabError(f"feature {feature!r} is constant ({values[0]:g}) over the whole file, so nothing can "
                          "correlate with it; pick a file where it varies or another --feature")
    res = correlate(model, run.tokenizer, data, values, keep_bytes, run.device)
    r, layer_of = res["r"], np.repeat(np.arange(len(res["layer_sizes"])), res["layer_sizes"])
    unit_of = np.concatenate([np.arange(n) for n in res["layer_sizes"]])
    order = np.argsort(-np.abs(r), kind="stable")[:top]
    n_view = min(keep_bytes, len(data))
    kept = res["kept"]
    view = [kept[res["token_of_byte"][:n_view], j].tolist() for j in order] if n_view else []
    return {
        "feature": feature, "bytes": len(data), "tokens": res["tokens"], "units": len(r),
        "layer_sizes": res["layer_sizes"], "reading": describe_reading(model),
        "feature_mean": float(values.mean()),
        "top": [{"layer": int(layer_of[j]), "unit": int(unit_of[j]), "r": float(r[j])} for j in order],
        "max_abs_r": float(np.abs(r).max()), "null_max_abs_r": float(np.abs(res["r_null"]).max()),
        "view_bytes": n_view, "view": view, "feature_view": values[:n_view].tolist(),
    }


# ---- views ---------------------------------------------------------------------------------

def _chars(data: bytes) -> tuple[list[str], list[int]]:
    """The text as characters, each with the index of its last byte (the state after reading it)."""
    chars, ends, at = [], [], 0
    for ch in data.decode("utf-8", errors="surrogateescape"):
        at += 1 if "\udc80" <= ch <= "\udcff" else len(ch.encode("utf-8"))
        chars.append("\ufffd" if "\udc80" <= ch <= "\udcff" else ch)
        ends.append(at - 1)
    return chars, ends


HTML_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>seqlab neurons: {title}</title><style>
body{font:15px/1.5 system-ui,sans-serif;margin:2em auto;max-width:72em;color:#1d2330;background:#f6f7f9}
h1{font-size:1.3em;margin-bottom:.2em} .sub{color:#667;margin-bottom:1.5em}
.unit{background:#fff;border:1px solid #dde;border-radius:8px;margin:1.2em 0;box-shadow:0 1px 2px #0001}
.unit h2{font-size:.95em;margin:0;padding:.5em 1em;border-bottom:1px solid #eef;display:flex;gap:1.5em}
.unit h2 .r{font-family:ui-monospace,monospace} .text{padding:.8em 1em;font:13px/1.7 ui-monospace,monospace;
white-space:pre-wrap;word-break:break-all;max-height:24em;overflow:auto} .text span{border-radius:2px}
.text span:hover{outline:1px solid #000} .nl{color:#99a}
.scale{display:inline-block;width:12em;height:.8em;vertical-align:middle;border-radius:3px;
background:linear-gradient(90deg,rgb(49,99,220),#fff,rgb(220,50,40))}
#tip{position:fixed;pointer-events:none;background:#1d2330;color:#fff;font:12px ui-monospace,monospace;
padding:.25em .5em;border-radius:4px;display:none}</style></head><body>
<h1>Units tracking <code>{feature}</code> in <code>{title}</code></h1>
<div class="sub">{facts}<br><span class="scale"></span> activation: blue negative, white 0, red positive
(each unit scaled to its largest |value| shown). Hover a character for its value.</div>
<div id="units"></div><div id="tip"></div>
<script>
const D = {data};
const root = document.getElementById("units"), tip = document.getElementById("tip");
function colour(v, s) {
  const a = Math.max(-1, Math.min(1, v / s)), t = Math.abs(a);
  const end = a >= 0 ? [220, 50, 40] : [49, 99, 220], mix = c => Math.round(255 + (c - 255) * t);
  return `rgb(${end.map(mix).join(",")})`;
}
function block(heading, r, values, fmt) {
  const div = document.createElement("div"); div.className = "unit";
  div.innerHTML = `<h2><span>${heading}</span><span class="r">${r}</span></h2>`;
  const text = document.createElement("div"); text.className = "text";
  const scale = Math.max(1e-9, ...D.ends.map(e => Math.abs(values[e])));
  const parts = D.chars.map((c, i) => {
    const v = values[D.ends[i]], shown = c === "\\n" ? '<span class="nl">\\u21b5</span>\\n'
      : c.replace(/&/g, "&amp;").replace(/</g, "&lt;");
    return `<span style="background:${colour(v, scale)}" data-v="${fmt(v)}">${shown}</span>`;
  });
  text.innerHTML = parts.join(""); div.appendChild(text); root.appendChild(div);
}
block(`feature: ${D.feature}`, "", D.feature_view, v => v.toFixed(0));
D.top.forEach((u, k) => block(`#${k + 1} &nbsp; layer ${u.layer} &middot; unit ${u.unit}`,
  `r = ${u.r >= 0 ? "+" : ""}${u.r.toFixed(3)}`, D.view[k], v => v.toFixed(3)));
document.addEventListener("mousemove", e => {
  const v = e.target.closest("[data-v]");
  if (!v) { tip.style.display = "none"; return; }
  tip.textContent = v.dataset.v; tip.style.display = "block";
  tip.style.left = e.clientX + 12 + "px"; tip.style.top = e.clientY + 12 + "px";
});
</script></body></html>"""


def write_html(path, title: str, data: bytes, result: dict) -> None:
    chars, ends = _chars(data[: result["view_bytes"]])
    facts = (f"{result['bytes']:,} bytes, {result['units']:,} units in {len(result['layer_sizes'])} layer(s), "
             f"read with {result['reading']}; showing the first {result['view_bytes']:,} bytes. Chance: best "
             f"|r| with the feature shifted by half the file = {result['null_max_abs_r']:.3f}")
    payload = {"chars": chars, "ends": ends, "feature": result["feature"], "top": result["top"],
               "view": [[round(v, 4) for v in vals] for vals in result["view"]],
               "feature_view": result["feature_view"]}
    esc = lambda s: s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")  # noqa: E731
    page = (HTML_PAGE.replace("{title}", esc(title)).replace("{feature}", esc(result["feature"]))
            .replace("{facts}", esc(facts)).replace("{data}", json.dumps(payload).replace("</", "<\\/")))
    Path(path).write_text(page, encoding="utf-8")


def format_table(result: dict, name: str) -> str:
    lines = [f"feature {result['feature']} over {name}: {result['bytes']:,} bytes (feature mean "
             f"{result['feature_mean']:.3g}); {result['units']:,} units in layers of {result['layer_sizes']}; "
             f"read with {result['reading']}",
             f"{'rank':>4} {'layer':>5} {'unit':>5} {'r':>8}"]
    for k, u in enumerate(result["top"], 1):
        lines.append(f"{k:>4} {u['layer']:>5} {u['unit']:>5} {u['r']:>+8.3f}")
    lines.append(f"chance: best |r| with the feature shifted by half the file = {result['null_max_abs_r']:.3f}")
    return "\n".join(lines)


def _feature_problem(name: str) -> str | None:
    try:
        feature_values(b"", name)
    except SeqlabError as e:
        return str(e)
    return None


feature = pattern("feature", _feature_problem, "quote, depth, line-pos or regex:PATTERN")


def add_cli(sub) -> None:
    p = sub.add_parser("neurons", help="find hidden units that track a feature of the text")
    p.add_argument("run", type=run_dir)
    p.add_argument("file", type=input_file)
    p.add_argument("--feature", default="quote", type=feature, help="default quote")
    p.add_argument("--top", type=integer(min=1), default=10, help="how many units to list")
    p.add_argument("--html", metavar="OUT.html", type=output_file,
                   help="write the text shaded by each top unit's activation")
    p.add_argument("--html-bytes", type=integer(min=1), default=3000, help="bytes of the file shown in the HTML view")
    p.add_argument("--json", action="store_true")
    p.add_argument("--device", default="cpu", type=device)
    p.set_defaults(func=cli)


def cli(args) -> None:
    from .run import load, require_forward

    try:
        data = Path(args.file).read_bytes()
    except OSError as e:
        raise SeqlabError(f"cannot read {args.file}: {e.strerror}") from None
    run = load(args.run, device=args.device)
    require_forward(run.path, run.config, "neurons")
    result = neurons(run, data, args.feature, args.top, args.html_bytes if args.html else 0)
    if args.html:
        write_html(args.html, args.file, data, result)
    if args.json:
        out = {k: v for k, v in result.items() if k not in ("view", "feature_view", "view_bytes")}
        json.dump({**out, "file": args.file}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(format_table(result, args.file))
        if args.html:
            print(f"wrote {args.html}")
