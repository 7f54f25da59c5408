"""A minimal client for `seqlab serve`: it builds requests and parses replies, nothing more.

No hidden retries or backoff: a 429 or 503 is raised as ServerError with the
server's `retry_after`, and what to do about it is the caller's choice.

    from seqlab.client import Client

    client = Client("http://127.0.0.1:8000", token=None)
    print(client.complete("ROMEO:", max_tokens=50, seed=1).text)
    for piece in client.stream("ROMEO:", max_tokens=50):
        print(piece.text, end="", flush=True)
    print(client.score("To be, or not to be").bits_per_byte)

One Client may be shared by threads; requests in parallel:

    from concurrent.futures import ThreadPoolExecutor

    prompts = ["ROMEO:", "JULIET:", "HAMLET:"]
    with ThreadPoolExecutor(max_workers=8) as pool:
        texts = [c.text for c in pool.map(lambda p: client.complete(p, max_tokens=50), prompts)]

The server batches concurrent requests into shared forward passes, so parallel
requests cost little more than one.
"""

import json
from dataclasses import dataclass, field

import httpx


class ServerError(Exception):
    """The server answered with an error envelope (or something that is not JSON)."""

    def __init__(self, status: int, message: str, type_: str | None = None, param: str | None = None,
                 code: str | None = None, retry_after: float | None = None):
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.retry_after = retry_after


@dataclass
class Completion:
    text: str
    finish_reason: str | None
    index: int = 0
    logprobs: dict | None = None


@dataclass
class CompletionReply:
    id: str
    choices: list[Completion]
    usage: dict = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.choices[0].text


@dataclass
class StreamPiece:
    index: int
    text: str
    finish_reason: str | None


@dataclass
class ScoreReply:
    tokens: list[dict]  # {"text", "start", "end", "bits"}
    bits_per_byte: float
    bits_per_token: float
    total_bits: float
    bytes: int
    most_surprising: list[dict]
    raw: dict = field(repr=False, default_factory=dict)


def completion_request(prompt, max_tokens: int = 16, **params) -> dict:
    """The JSON body of a /v1/completions request; params are temperature, top_p, top_k, n, stop, seed, ..."""
    return {"prompt": prompt, "max_tokens": max_tokens, **{k: v for k, v in params.items() if v is not None}}


def parse_completion(body: dict) -> CompletionReply:
    choices = [Completion(c["text"], c.get("finish_reason"), c.get("index", 0), c.get("logprobs"))
               for c in body["choices"]]
    return CompletionReply(body["id"], sorted(choices, key=lambda c: c.index), body.get("usage") or {})


def parse_sse(lines):
    """Yield the JSON object of each `data:` event until `data: [DONE]`; raise ServerError on an error event."""
    data = []
    for line in lines:
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif line == "" and data:
            payload, data = "\n".join(data), []
            if payload == "[DONE]":
                return
            event = json.loads(payload)
            if "error" in event:
                e = event["error"]
                raise ServerError(200, e.get("message", "error"), e.get("type"), e.get("param"), e.get("code"))
            yield event
    raise ServerError(200, "the event stream ended without data: [DONE]")


def parse_error(response: httpx.Response) -> ServerError:
    retry = response.headers.get("retry-after")
    try:
        e = response.json()["error"]
        return ServerError(response.status_code, e["message"], e.get("type"), e.get("param"), e.get("code"),
                           float(retry) if retry else None)
    except (ValueError, KeyError, TypeError):
        return ServerError(response.status_code, response.text[:200] or response.reason_phrase,
                           retry_after=float(retry) if retry else None)


class Client:
    def __init__(self, base_url: str = "http://127.0.0.1:8000", token: str | None = None, timeout: float = 120.0):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _post(self, path: str, body: dict) -> dict:
        response = self.http.post(path, json=body)
        if response.status_code != 200:
            raise parse_error(response)
        return response.json()

    def complete(self, prompt, max_tokens: int = 16, **params) -> CompletionReply:
        """One completion request (prompt: a string or a list of strings); see completion_request for params."""
        return parse_completion(self._post("/v1/completions", completion_request(prompt, max_tokens, **params)))

    def stream(self, prompt, max_tokens: int = 16, **params):
        """Yield StreamPiece(index, text, finish_reason) as the server sends them."""
        body = completion_request(prompt, max_tokens, stream=True, **params)
        with self.http.stream("POST", "/v1/completions", json=body) as response:
            if response.status_code != 200:
                response.read()
                raise parse_error(response)
            for event in parse_sse(response.iter_lines()):
                for c in event["choices"]:
                    yield StreamPiece(c["index"], c["text"], c.get("finish_reason"))

    def score(self, text: str, top: int = 10) -> ScoreReply:
        body = self._post("/v1/score", {"text": text, "top": top})
        return ScoreReply(body["tokens"], body["bits_per_byte"], body["bits_per_token"], body["total_bits"],
                          body["bytes"], body["most_surprising"], body)

    def health(self) -> bool:
        return self.http.get("/health").status_code == 200

    def ready(self) -> bool:
        return self.http.get("/ready").status_code == 200

    def metrics(self) -> str:
        response = self.http.get("/metrics")
        if response.status_code != 200:
            raise parse_error(response)
        return response.text
