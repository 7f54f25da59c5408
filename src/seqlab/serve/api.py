"""From a validated request to a worker job, and from worker events to a reply. No HTTP, no model calls.

Everything here runs before the model sees anything: limits that depend on the
server's flags and the model (prompt bytes, context, n, stop strings) are
checked, and the prompt is tokenized, so a bad request never reaches the worker.
"""

import codecs
import json
import os
from dataclasses import dataclass

import numpy as np

from ..sampling import SamplingConfig
from .schemas import CompletionRequest, ScoreRequest
from .worker import ServeConfig


class ApiError(Exception):
    """A client error: always 400 with the one error envelope (the field in `param`)."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None,
                 status: int = 400, type_: str = "invalid_request_error"):
        super().__init__(message)
        self.message, self.param, self.code, self.status, self.type = message, param, code, status, type_


def utf8(text: str, param: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(f"{param} is not valid Unicode (it holds a lone surrogate escape)", param,
                       "invalid_unicode") from None


@dataclass
class CompletionPlan:
    prompt_texts: list[str]
    rows: list[list[int]]  # token ids per reply choice (BOS first); choice j*n + i is prompt j, sample i
    seeds: list[int]
    sampling: SamplingConfig
    stops: list[bytes]
    prompt_tokens: int
    cache_key: str | None  # set when the answer is a pure function of the request


def plan_completion(req: CompletionRequest, run, cfg: ServeConfig, context: int | None) -> CompletionPlan:
    """Check the request against the server's limits and the model's hard context; tokenize its prompts."""
    prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
    if not prompts:
        raise ApiError("prompt is an empty list; give a string or a list of 1 or more strings", "prompt")
    limit = min(cfg.max_rows, cfg.max_batch)
    if len(prompts) * req.n > limit:
        raise ApiError(f"{len(prompts)} prompt(s) x n={req.n} asks for {len(prompts) * req.n} completions; "
                       f"this server allows at most {limit} per request (--max-rows / --max-batch)", "n")
    if req.max_tokens > cfg.max_tokens:
        raise ApiError(f"max_tokens is {req.max_tokens}; this server allows at most {cfg.max_tokens} (--max-tokens)",
                       "max_tokens")
    stops = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
    if len(stops) > cfg.max_stops:
        raise ApiError(f"{len(stops)} stop strings given; at most {cfg.max_stops} are allowed", "stop")
    for s in stops:
        if not 1 <= len(s) <= cfg.max_stop_chars:
            raise ApiError(f"stop strings must be 1 to {cfg.max_stop_chars} characters; got one of {len(s)}", "stop")
    tok = run.tokenizer
    encoded = []
    for text in prompts:
        data = utf8(text, "prompt")
        if len(data) > cfg.max_prompt_bytes:
            raise ApiError(f"the prompt is {len(data)} bytes; at most {cfg.max_prompt_bytes} are allowed "
                           "(--max-prompt-bytes)", "prompt", "prompt_too_long")
        ids = [tok.bos_id] + tok.encode(data).tolist()
        if context and len(ids) - 1 + req.max_tokens > context:
            raise ApiError(
                f"the model's context is {context} tokens; the prompt has {len(ids) - 1} and max_tokens is "
                f"{req.max_tokens}: shorten the prompt or lower max_tokens to {max(0, context - len(ids) + 1)}",
                "prompt" if len(ids) - 1 >= context else "max_tokens", "context_length_exceeded")
        encoded.append(ids)
    base = req.seed if req.seed is not None else int.from_bytes(os.urandom(4), "little")
    deterministic = req.temperature == 0 or req.seed is not None
    key = json.dumps([prompts, req.max_tokens, req.temperature, req.top_p, req.top_k, req.repetition_penalty, req.n,
                      stops, req.seed if req.temperature else None, req.logprobs]) if deterministic else None
    return CompletionPlan(
        prompt_texts=prompts,
        rows=[ids for ids in encoded for _ in range(req.n)],
        seeds=[base + i for _ in encoded for i in range(req.n)],  # as seqlab.generate(prompt, n, seed)
        sampling=SamplingConfig(req.temperature, req.top_k, req.top_p, req.repetition_penalty).validate(),
        stops=[utf8(s, "stop") for s in stops],
        prompt_tokens=sum(len(ids) - 1 for ids in encoded),
        cache_key=key,
    )


class Collector:
    """Gathers one request's token events into choices (texts, finish reasons, logprobs)."""

    def __init__(self, plan: CompletionPlan, n: int, want_logprobs: bool):
        rows = len(plan.rows)
        self.n, self.plan, self.want_logprobs = n, plan, want_logprobs
        self.texts = [[] for _ in range(rows)]
        self.finish: list[str | None] = [None] * rows
        self.tokens = [0] * rows
        self.lp = [{"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []} for _ in range(rows)]
        self.chars = [len(plan.prompt_texts[i // n]) for i in range(rows)]

    @property
    def done(self) -> bool:
        return all(f is not None for f in self.finish)

    def token(self, index: int, text: str, lp: dict | None) -> dict | None:
        """Record a token; returns its logprobs piece (for a stream chunk) when they were asked for."""
        piece = None
        if self.want_logprobs and lp is not None:
            piece = {"tokens": [lp["token"]], "token_logprobs": [lp["logprob"]],
                     "top_logprobs": [lp["top"]] if lp["top"] is not None else None,
                     "text_offset": [self.chars[index]]}
            d = self.lp[index]
            d["tokens"].append(lp["token"])
            d["token_logprobs"].append(lp["logprob"])
            d["top_logprobs"].append(lp["top"])
            d["text_offset"].append(self.chars[index])
        self.texts[index].append(text)
        self.chars[index] += len(text)
        return piece

    def end(self, index: int, reason: str, tokens: int) -> None:
        self.finish[index], self.tokens[index] = reason, tokens

    def choices(self) -> list[dict]:
        out = []
        for i, parts in enumerate(self.texts):
            lp = None
            if self.want_logprobs:
                lp = dict(self.lp[i])
                if all(t is None for t in lp["top_logprobs"]):
                    lp["top_logprobs"] = None
            out.append({"text": "".join(parts), "index": i, "logprobs": lp, "finish_reason": self.finish[i]})
        return out

    def usage(self) -> dict:
        done = sum(self.tokens)
        return {"prompt_tokens": self.plan.prompt_tokens, "completion_tokens": done,
                "total_tokens": self.plan.prompt_tokens + done}


def score_tokens(req: ScoreRequest, run, cfg: ServeConfig) -> np.ndarray:
    data = utf8(req.text, "text")
    if not data:
        raise ApiError("text is empty; give at least one character to score", "text")
    if len(data) > cfg.max_score_bytes:
        raise ApiError(f"the text is {len(data)} bytes; at most {cfg.max_score_bytes} are allowed (--max-score-bytes)",
                       "text", "text_too_long")
    tok = run.tokenizer
    return np.concatenate([[tok.bos_id], tok.encode(data)]).astype(np.int64)


def score_reply(tokens: np.ndarray, bits: np.ndarray, network_bits: np.ndarray, run, model_name: str,
                top: int) -> dict:
    """Per-token surprisal with byte offsets, totals, and the most surprising tokens.

    `bits` are the run's (the network mixed with its count model when it has one, as `seqlab eval`
    reports); `network_bits` the network's alone."""
    tb = run.tokenizer.token_bytes
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    rows, offset = [], 0
    for i, (t, b) in enumerate(zip(tokens[1:].tolist(), bits.tolist())):
        piece = tb[t]
        final = i == len(bits) - 1
        rows.append({"text": decoder.decode(piece, final=final), "start": offset, "end": offset + len(piece),
                     "bits": b})
        offset += len(piece)
    total = float(bits.sum())
    ranked = sorted(range(len(rows)), key=lambda i: -rows[i]["bits"])[:top]
    lengths = np.array([r["end"] - r["start"] for r in rows])
    return {
        "object": "score", "model": model_name, "tokens": rows, "total_bits": total, "bytes": offset,
        "bits_per_byte": total / offset, "bits_per_byte_network": float(network_bits.sum()) / offset,
        "bits_per_token": total / len(rows),
        "most_surprising": [{"index": i, **rows[i]} for i in ranked],
        "anomalies": anomalies(b"".join(tb[t] for t in tokens[1:].tolist()), bits, lengths, top),
        "usage": {"prompt_tokens": len(rows), "completion_tokens": 0, "total_tokens": len(rows)},
    }


def anomalies(data: bytes, bits: np.ndarray, lengths: np.ndarray, top: int) -> list[dict] | None:
    """The `top` most surprising spans as `seqlab surprise` finds them (without its suggested fixes).

    A token's bits are spread evenly over its bytes; spans of spikes are ranked
    by their surprisal above the text's mean. None if seqlab.surprise is absent.
    """
    try:
        from ..surprise import find_spans, line_column
    except ImportError:
        return None
    keep = lengths > 0
    per_byte = np.repeat(bits[keep] / lengths[keep], lengths[keep])
    mean = float(per_byte.mean()) if len(per_byte) else 0.0
    spans = sorted(find_spans(per_byte), key=lambda s: -float((per_byte[s[0] : s[1]] - mean).sum()))[:top]
    out = []
    for a, b in spans:
        line, column = line_column(data, a)
        out.append({"start": int(a), "end": int(b), "line": line, "column": column,
                    "text": data[a:b].decode("utf-8", errors="replace"), "bits": float(per_byte[a:b].sum()),
                    "peak_bits": float(per_byte[a:b].max()), "excess_bits": float((per_byte[a:b] - mean).sum())})
    return out
