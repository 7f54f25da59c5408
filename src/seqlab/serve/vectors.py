"""Vector routes: OpenAI-compatible POST /v1/embeddings, and passage search over an index given at start-up.

    seqlab serve runs/latest --index idx/
    curl -s localhost:8000/v1/embeddings -d '{"input": ["first text", "second"]}'
    curl -s localhost:8000/v1/search -d '{"query": "where is the common room", "k": 5}'

The routes sit behind the same middleware as every other (bearer token, body limit, request log) and
answer errors in the same envelope. Inputs are checked before any model work (count <= --max-rows, bytes
<= --max-score-bytes, no empty text); at most --max-queue requests are in flight (more get 429). Their
forward passes run in one thread of their own beside the model worker's, reading the same weights
(inference only: eval mode, no gradients), so generation and scoring keep their own queue.
"""

import asyncio
import base64
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numpy as np
from fastapi import FastAPI, Request
from pydantic import BaseModel, Field

from .api import ApiError, utf8
from .schemas import ErrorResponse, Strict, Usage
from .worker import Rejected

ERRORS = {s: {"model": ErrorResponse} for s in (400, 401, 404, 413, 429, 500, 503)}
MAX_K = 100


class EmbeddingRequest(Strict):
    input: str | list[str] = Field(..., description="a text, or a list of texts (one vector each)")
    model: str | None = Field(None, max_length=256, description="accepted for compatibility; one model is served")
    encoding_format: Literal["float", "base64"] = Field("float", description="base64: little-endian float32 bytes")
    dimensions: int | None = Field(None, ge=1, description="must be the model's own size if given")
    user: str | None = Field(None, max_length=256)


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


class SearchRequest(Strict):
    query: str = Field(..., description="text to find passages like")
    k: int = Field(10, ge=1, le=MAX_K)


class SearchHit(BaseModel):
    text: str
    file: str
    line: int
    offset: int
    bytes: int
    score: float = Field(..., description="cosine similarity to the query")


class SearchResponse(BaseModel):
    object: Literal["search"] = "search"
    query: str
    results: list[SearchHit]


class IndexInfo(BaseModel):
    count: int
    unit: str
    pooling: str
    dim: int
    structure: str
    files: int


def add_vector_routes(app: FastAPI, worker, cfg, ready_run) -> None:
    """Register the routes on app; cfg.index names the index searched (None: search answers 404)."""
    from ..vectors.index import PassageIndex

    index = PassageIndex.load(cfg.index) if cfg.index else None  # memory-mapped: quick
    pool = ThreadPoolExecutor(1, thread_name_prefix="seqlab-vectors")
    in_flight, checked = {"n": 0}, []
    lock = threading.Lock()

    async def run_in_pool(fn, *args):
        with lock:
            if in_flight["n"] >= cfg.max_queue:
                raise Rejected(429, f"too many vector requests in flight ({cfg.max_queue}); retry shortly",
                               "rate_limit_exceeded", "queue_full")
            in_flight["n"] += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
        finally:
            with lock:
                in_flight["n"] -= 1

    def model_name(run) -> str:
        return run.path.name

    @app.post("/v1/embeddings", response_model=EmbeddingResponse, responses=ERRORS)
    async def embeddings(req: EmbeddingRequest, request: Request):
        """A vector per input text (OpenAI's embeddings API): the run's token states, mean-pooled, unit length."""
        run = ready_run(worker)
        texts = [req.input] if isinstance(req.input, str) else req.input
        data = check_texts(texts, cfg)
        from ..vectors.embed import DEFAULT_POOLING, embed_texts

        vectors = await run_in_pool(embed_texts, run, data, DEFAULT_POOLING)
        if req.dimensions is not None and req.dimensions != vectors.shape[1]:
            raise ApiError(f"dimensions is {req.dimensions}; this model's vectors have {vectors.shape[1]} (leave "
                           "dimensions out)", "dimensions")
        tokens = sum(len(run.tokenizer.encode(d)) for d in data)
        request.state.log.update(inputs=len(data), prompt_tokens=tokens)
        rows = [{"object": "embedding", "index": i, "embedding": _encode(v, req.encoding_format)}
                for i, v in enumerate(vectors)]
        return {"object": "list", "data": rows, "model": model_name(run),
                "usage": {"prompt_tokens": tokens, "completion_tokens": 0, "total_tokens": tokens}}

    def need_index():
        if index is None:
            raise ApiError("this server has no index; start it with `seqlab serve RUN --index IDX` (seqlab index "
                           "builds one)", None, "no_index", status=404, type_="not_found")
        return index

    @app.get("/v1/index", response_model=IndexInfo, responses=ERRORS)
    async def index_info():
        """What the search route searches: the index given with --index."""
        info = need_index().info
        return {"count": info["count"], "unit": info["unit"], "pooling": info["pooling"], "dim": info["dim"],
                "structure": info["structure"], "files": len(info["files"])}

    @app.post("/v1/search", response_model=SearchResponse, responses=ERRORS)
    async def search(req: SearchRequest, request: Request):
        """The k passages of the index nearest to the query (cosine), best first, with file:line."""
        idx = need_index()
        run = ready_run(worker)
        if not checked:  # once: an index of another run is refused (seqlab serve also checks at start-up)
            try:
                idx.check_run(run)
            except Exception as e:
                raise ApiError(str(e), None, "index_run_mismatch", status=503, type_="server_error") from None
            checked.append(True)
        (data,) = check_texts([req.query], cfg, "query")
        key = json.dumps(["search", req.query, req.k])
        cached = app.state.cache.get(key)
        if cached is not None:
            request.state.log["cache"] = "hit"
            return cached
        results = await run_in_pool(idx.search_text, run, data.decode("utf-8"), req.k)
        reply = {"object": "search", "query": req.query, "results": results}
        app.state.cache.put(key, reply)
        return reply


def check_texts(texts: list[str], cfg, param: str = "input") -> list[bytes]:
    if not texts:
        raise ApiError(f"{param} is an empty list; give a string or a list of 1 or more strings", param)
    if len(texts) > cfg.max_rows:
        raise ApiError(f"{len(texts)} inputs given; this server embeds at most {cfg.max_rows} per request "
                       "(--max-rows)", param)
    out = []
    for text in texts:
        data = utf8(text, param)
        if not data.strip():
            raise ApiError(f"{param} holds an empty text; every text needs at least one non-blank character",
                           param, "empty_input")
        if len(data) > cfg.max_score_bytes:
            raise ApiError(f"a text of {len(data)} bytes was given; at most {cfg.max_score_bytes} are allowed "
                           "(--max-score-bytes)", param, "text_too_long")
        out.append(data)
    return out


def _encode(vector: np.ndarray, fmt: str):
    if fmt == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode()
    return vector.astype(float).tolist()
