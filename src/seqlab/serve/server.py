"""The HTTP layer: an app factory and thin routes over the worker (worker.py) and api.py.

    app = create_app(lambda: seqlab.load("runs/latest"), ServeConfig())
    uvicorn.run(app, host="127.0.0.1", port=8000)

Handlers validate (schemas.py, api.py), submit a job, and await its events;
the model runs only in the worker thread, so the event loop stays free for
/health, streaming and new arrivals however busy the model is.
"""

import asyncio
import collections
import contextlib
import json
import time
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from .api import ApiError, Collector, plan_completion, score_reply, score_tokens
from .metrics import Metrics
from .middleware import BearerAuth, BodyLimit, RequestLog, error_body
from .vectors import add_vector_routes
from .schemas import (CompletionRequest, CompletionResponse, ErrorResponse, ModelList, ScoreRequest, ScoreResponse,
                      Status)
from .worker import Job, Rejected, ServeConfig, Worker

WEB = Path(__file__).parent / "web"
ERRORS = {s: {"model": ErrorResponse} for s in (400, 401, 413, 429, 500, 503)}
RETRY_AFTER_S = 1


class ClientGone(Exception):
    pass


class LRU:
    """A bounded map of deterministic answers; the oldest-used entry goes first."""

    def __init__(self, size: int, metrics: Metrics):
        self.size, self.metrics, self.items = size, metrics, collections.OrderedDict()

    def get(self, key):
        if key is None or not self.size:
            return None
        if key in self.items:
            self.items.move_to_end(key)
            self.metrics.cache_hits.inc()
            return self.items[key]
        self.metrics.cache_misses.inc()
        return None

    def put(self, key, value) -> None:
        if key is None or not self.size:
            return
        self.items[key] = value
        self.items.move_to_end(key)
        while len(self.items) > self.size:
            self.items.popitem(last=False)
        self.metrics.cache_entries.set(len(self.items))


def create_app(load_run, config: ServeConfig | None = None) -> FastAPI:
    """An app serving the run that load_run() returns (called in the worker thread, so startup is not blocked)."""
    cfg = config or ServeConfig()
    metrics = Metrics()
    worker = Worker(load_run, cfg, metrics)
    cache = LRU(cfg.cache_size, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        worker.start()
        yield
        await asyncio.get_running_loop().run_in_executor(None, worker.stop)

    app = FastAPI(title="seqlab serve", version="1", lifespan=lifespan,
                  description="Generation (OpenAI-compatible /v1/completions) and scoring with a seqlab run.")
    app.state.worker, app.state.cache, app.state.metrics, app.state.config = worker, cache, metrics, cfg
    _errors(app)
    _clean_openapi(app)

    def model_name() -> str:
        return worker.run.path.name if worker.run is not None else "(loading)"

    @app.get("/health", response_model=Status)
    async def health():
        """Liveness: answers as long as the process serves HTTP."""
        return {"status": "ok"}

    @app.get("/ready", response_model=Status, responses={503: {"model": Status}})
    async def ready():
        """Ready once the model is loaded and warmed; 503 before that and if the worker has died."""
        if worker.dead or not worker.ready.is_set():
            status, detail = ("dead", worker.dead) if worker.dead else ("loading", None)
            return JSONResponse({"status": status, "detail": detail}, 503, {"Retry-After": str(RETRY_AFTER_S)})
        return {"status": "ready", "model": model_name(), "batching": worker.batching_note}

    @app.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
    async def prometheus():
        return Response(metrics.exposition(), media_type=metrics.content_type)

    @app.get("/v1/models", response_model=ModelList, responses=ERRORS)
    async def models():
        return {"data": [{"id": model_name(), "created": 0}]}

    @app.post("/v1/completions", response_model=CompletionResponse, responses={
        **ERRORS, 200: {"content": {"text/event-stream": {}}, "description": "JSON, or events when stream is true"}})
    async def completions(req: CompletionRequest, request: Request):
        run = _ready_run(worker)
        plan = plan_completion(req, run, cfg, worker.context)
        t0 = time.monotonic()
        info = request.state.log
        info.update(prompt_tokens=plan.prompt_tokens, rows=len(plan.rows), max_tokens=req.max_tokens)
        if cfg.log_text:
            info["prompt"] = plan.prompt_texts
        rid = f"cmpl-{info['id']}"
        created = int(time.time())
        cached = cache.get(plan.cache_key)
        if cached is not None:
            info.update(cache="hit", completion_tokens=cached["usage"]["completion_tokens"])
            if req.stream:
                return _event_stream(_replay(rid, created, model_name(), cached, req), None, worker)
            return {"id": rid, "created": created, "model": model_name(), **cached}
        job, events = _job(worker, kind="generate", prompts=plan.rows, seeds=plan.seeds, sampling=plan.sampling,
                           max_tokens=req.max_tokens, stops=plan.stops, logprobs=req.logprobs)
        collector = Collector(plan, req.n, req.logprobs is not None)
        worker.submit(job)
        first = await _next(events, request, worker, job)  # "start" (admitted) or an error: decides the status
        _raise_if_error(first)
        info["queue_ms"] = round(first[0][1] * 1000, 2)
        ttft = [None]

        def record(choices_done: bool):
            info.update(completion_tokens=sum(collector.tokens), ttft_ms=ttft[0],
                        total_ms=round((time.monotonic() - t0) * 1000, 2))
            if cfg.log_text:
                info["text"] = ["".join(t) for t in collector.texts]
            if choices_done:
                cache.put(plan.cache_key, {"choices": collector.choices(), "usage": collector.usage()})

        def first_token():
            if ttft[0] is None:
                ttft[0] = round((time.monotonic() - t0) * 1000, 2)
                metrics.ttft_seconds.observe(time.monotonic() - t0)

        if req.stream:
            stream = _stream(rid, created, model_name(), req, collector, events, first_token, record)
            return _event_stream(stream, job, worker)
        while not collector.done:
            for event in await _next(events, request, worker, job):
                if event[0] == "token":
                    first_token()
                    collector.token(event[1], event[2], event[3])
                elif event[0] == "end":
                    collector.end(event[1], event[2], event[3])
                elif event[0] == "error":
                    raise event[1]
        record(True)
        return {"id": rid, "created": created, "model": model_name(), "choices": collector.choices(),
                "usage": collector.usage()}

    @app.post("/v1/score", response_model=ScoreResponse, responses=ERRORS)
    async def score(req: ScoreRequest, request: Request):
        """Surprisal (bits) of every token of `text` given the text before it, and bits per byte."""
        run = _ready_run(worker)
        tokens = score_tokens(req, run, cfg)
        request.state.log.update(prompt_tokens=len(tokens) - 1)
        key = json.dumps(["score", req.text, req.top])
        cached = cache.get(key)
        if cached is not None:
            request.state.log["cache"] = "hit"
            return cached
        job, events = _job(worker, kind="score", prompts=[tokens])
        worker.submit(job)
        for event in await _next(events, request, worker, job):
            _raise_if_error([event])
            reply = score_reply(tokens, event[1], event[2], run, model_name(), req.top)
            cache.put(key, reply)
            return reply

    add_vector_routes(app, worker, cfg, _ready_run)

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(WEB / "index.html")

    app.mount("/web", StaticFiles(directory=WEB), name="web")
    app.add_middleware(BodyLimit, max_bytes=cfg.max_body_bytes)
    app.add_middleware(BearerAuth, token=cfg.token)
    app.add_middleware(RequestLog, metrics=metrics)
    return app


def _ready_run(worker: Worker):
    if worker.dead:
        raise Rejected(503, f"the model worker has stopped: {worker.dead}", "server_error")
    if not worker.ready.is_set():
        raise Rejected(503, "the model is still loading; retry shortly")
    return worker.run


def _job(worker: Worker, **fields) -> tuple[Job, asyncio.Queue]:
    """A job whose events land in an asyncio queue of this event loop (put from the worker thread)."""
    job = Job(loop=asyncio.get_running_loop(), events=asyncio.Queue(), **fields)
    return job, job.events


async def _next(events: asyncio.Queue, request: Request, worker: Worker, job: Job, poll_s: float = 0.25) -> list:
    """The next batch of events; a client that disconnected meanwhile cancels the job (freeing its rows).

    Events may arrive every few milliseconds, so the connection is checked on a clock, not only when idle.
    """
    while True:
        if time.monotonic() - job.checked >= poll_s:
            job.checked = time.monotonic()
            if await request.is_disconnected():
                worker.cancel(job)
                raise ClientGone()
        try:
            return await asyncio.wait_for(events.get(), poll_s)
        except asyncio.TimeoutError:
            continue
        except asyncio.CancelledError:
            worker.cancel(job)
            raise


def _raise_if_error(batch: list) -> None:
    for event in batch:
        if event[0] == "error":
            raise event[1]


def _sse(data) -> bytes:
    return b"data: " + (data if isinstance(data, bytes) else json.dumps(data).encode()) + b"\n\n"


def _chunk(rid, created, model, index, text, finish=None, logprobs=None) -> bytes:
    return _sse({"id": rid, "object": "text_completion", "created": created, "model": model,
                 "choices": [{"text": text, "index": index, "logprobs": logprobs, "finish_reason": finish}]})


async def _stream(rid, created, model, req, collector: Collector, events, first_token, record):
    """OpenAI's framing: one `data: {json}` per token, a final chunk per choice, then `data: [DONE]`."""
    done = False
    try:
        while not collector.done:
            batches = [await events.get()]
            while not events.empty():  # a client that fell behind gets everything pending in one write
                batches.append(events.get_nowait())
            out = []
            for event in (e for batch in batches for e in batch):
                if event[0] == "token":
                    first_token()
                    piece = collector.token(event[1], event[2], event[3])
                    if event[2] or piece:
                        out.append(_chunk(rid, created, model, event[1], event[2], None, piece))
                elif event[0] == "end":
                    collector.end(event[1], event[2], event[3])
                    out.append(_chunk(rid, created, model, event[1], "", event[2]))
                elif event[0] == "error":
                    e = event[1]
                    out.append(_sse(json.loads(error_body(e.status, e.message, e.type, e.code))))
                    yield b"".join(out)
                    return
            if out:
                yield b"".join(out)
        if req.stream_options and req.stream_options.include_usage:
            yield _sse({"id": rid, "object": "text_completion", "created": created, "model": model, "choices": [],
                        "usage": collector.usage()})
        yield _sse(b"[DONE]")
        done = True
    finally:
        record(done)


async def _replay(rid, created, model, cached, req):
    for c in cached["choices"]:
        yield _chunk(rid, created, model, c["index"], c["text"], None, c["logprobs"])
        yield _chunk(rid, created, model, c["index"], "", c["finish_reason"])
    if req.stream_options and req.stream_options.include_usage:
        yield _sse({"id": rid, "object": "text_completion", "created": created, "model": model, "choices": [],
                    "usage": cached["usage"]})
    yield _sse(b"[DONE]")


class _EventStream(StreamingResponse):
    """Server-sent events whose job is cancelled however the response ends (disconnect included)."""

    def __init__(self, content, job: Job | None, worker: Worker):
        super().__init__(content, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.job, self.worker = job, worker

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self.job is not None:
                self.worker.cancel(self.job)  # no-op once the job is finished
            await self.body_iterator.aclose()


def _event_stream(content, job, worker) -> _EventStream:
    return _EventStream(content, job, worker)


def _errors(app: FastAPI) -> None:
    """Every error, ours or the framework's, leaves as {"error": {message, type, param, code}}."""

    def envelope(status, message, type_, code=None, param=None, headers=None):
        return Response(error_body(status, message, type_, code, param), status, headers,
                        media_type="application/json")

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc: RequestValidationError):
        err = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        param = loc[0] if loc else None
        where = ".".join(loc) or "body"
        return envelope(400, f"{where}: {err.get('msg', 'invalid')}", "invalid_request_error",
                        str(err.get("type", "invalid")), param)

    @app.exception_handler(ApiError)
    async def api_error(request, exc: ApiError):
        return envelope(exc.status, exc.message, exc.type, exc.code, exc.param)

    @app.exception_handler(Rejected)
    async def rejected(request, exc: Rejected):
        headers = {"Retry-After": str(RETRY_AFTER_S)} if exc.status in (429, 503) else None
        return envelope(exc.status, exc.message, exc.type, exc.code, None, headers)

    @app.exception_handler(ClientGone)
    async def gone(request, exc):
        return envelope(499, "client closed the request", "client_closed")

    @app.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException):
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "invalid_request_error")
        return envelope(exc.status_code, str(exc.detail), kind, None, None, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def bug(request, exc: Exception):
        return envelope(500, f"internal error: {type(exc).__name__}", "server_error")


def _clean_openapi(app: FastAPI) -> None:
    """Document 400 (the one validation status used) instead of FastAPI's automatic 422."""
    build = app.openapi

    def openapi():
        if app.openapi_schema is None:
            schema = build()
            for path in schema.get("paths", {}).values():
                for op in path.values():
                    op.get("responses", {}).pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
