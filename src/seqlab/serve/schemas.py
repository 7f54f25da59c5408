"""Request and reply bodies. Requests are strict: wrong types and unknown fields are 400 errors naming the field.

The completion fields follow OpenAI's legacy /v1/completions so existing clients
work; `top_k` and `repetition_penalty` are seqlab's additions. Limits that
depend on the server's flags (max_tokens, n, prompt length, stop strings) are
checked in api.py, also before any model work. The ranges shared with `seqlab generate`'s flags are
declared once, in config.py (SamplingConfig, MAX_TOKENS, SAMPLES) and options.py (seed).
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..config import MAX_TOKENS, SAMPLES, SamplingConfig, kind_of
from ..options import seed as SEED


def bounds(kind) -> dict:
    """pydantic's ge/gt/le/lt for a declared kind."""
    return kind.range.pydantic()


def sampling(name: str) -> dict:
    return bounds(kind_of(SamplingConfig, name))


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class StreamOptions(Strict):
    include_usage: bool = False


class CompletionRequest(Strict):
    model: str | None = Field(None, max_length=256, description="accepted for compatibility; one model is served")
    prompt: str | list[str] = Field(..., description="text to continue, or a list of texts (one reply choice each)")
    max_tokens: int = Field(16, **bounds(MAX_TOKENS))
    temperature: float = Field(1.0, **sampling("temperature"), description="0 = greedy")
    top_p: float = Field(1.0, **sampling("top_p"))
    top_k: int = Field(0, **sampling("top_k"), description="0 = no limit (seqlab extension)")
    repetition_penalty: float = Field(1.0, **sampling("repetition_penalty"), description="seqlab extension; 1 = off")
    n: int = Field(1, **bounds(SAMPLES))
    stop: str | list[str] | None = None
    seed: int | None = Field(None, **bounds(SEED))
    logprobs: int | None = Field(None, ge=0, le=5)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(None, max_length=256, description="accepted for compatibility; not used")


class ScoreRequest(Strict):
    model: str | None = Field(None, max_length=256)
    text: str = Field(..., description="the text to score (UTF-8); every token is scored given the ones before it")
    top: int = Field(10, ge=0, le=100, description="how many of the most surprising tokens to list")


class Logprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]] | None
    text_offset: list[int]


class Choice(BaseModel):
    text: str
    index: int
    logprobs: Logprobs | None = None
    finish_reason: Literal["stop", "length"] | None = None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage | None = None


class ScoredToken(BaseModel):
    text: str = Field(..., description="the text this token completes (empty while a character is unfinished)")
    start: int = Field(..., description="byte offset of the token in the UTF-8 text")
    end: int
    bits: float = Field(..., description="surprisal: -log2 p(token | everything before it)")


class Surprising(ScoredToken):
    index: int


class Anomaly(BaseModel):
    start: int = Field(..., description="byte offset where the span starts")
    end: int
    line: int
    column: int
    text: str
    bits: float
    peak_bits: float
    excess_bits: float = Field(..., description="surprisal above the text's mean; the ranking")


class ScoreResponse(BaseModel):
    object: Literal["score"] = "score"
    model: str
    tokens: list[ScoredToken]
    total_bits: float
    bytes: int
    bits_per_byte: float = Field(..., description="as `seqlab eval` reports it: the network mixed with the run's "
                                                 "count model when it has one")
    bits_per_byte_network: float = Field(..., description="the network alone")
    bits_per_token: float
    most_surprising: list[Surprising]
    anomalies: list[Anomaly] | None = Field(None, description="surprising spans as `seqlab surprise` finds them")
    usage: Usage


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class Status(BaseModel):
    status: str
    model: str | None = None
    batching: str | None = None
    detail: str | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "seqlab"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
