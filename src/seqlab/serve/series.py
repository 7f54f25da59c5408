"""`seqlab serve RUN` for a series run: POST rows, get per-step event probabilities.

    curl -s localhost:8000/v1/series/predict -H 'content-type: application/json' \
         -d '{"rows": [{"Date": "2022-12-27", "SP500": 3829.3, ...}, ...]}'
    -> {"model": ..., "events": [...], "time": [...], "probabilities": {EVENT: [p, ...]}}

The rows are a table in time order, read with the same rules as a file (series/table.py) and the run's own
transform; each row's probability reads the rows before it in the request, as `seqlab predict` reads a
file. The model work is series/predict.py's; the route only checks and converts. Predictions take
milliseconds, so they run in FastAPI's thread pool, one at a time, without the text server's worker.
"""

import threading
from typing import Union

from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field

from ..errors import SeqlabError
from .api import ApiError
from .metrics import Metrics
from .middleware import BearerAuth, BodyLimit, RequestLog
from .schemas import ErrorResponse, Status
from .server import _clean_openapi, _errors
from .worker import ServeConfig

ERRORS = {s: {"model": ErrorResponse} for s in (400, 401, 413, 500)}


class SeriesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rows: list[dict[str, Union[float, int, str, None]]] = Field(
        min_length=1, description="the table's rows in time order: the time column and every channel the run "
                                  "was trained on (null = missing, carried forward)")


class SeriesResponse(BaseModel):
    model: str
    events: list[str]
    time: list[str]
    probabilities: dict[str, list[float]]


def create_series_app(run_dir, config: ServeConfig | None = None) -> FastAPI:
    import pyarrow as pa

    from ..series.predict import load_series, predict_table, prepare_table
    from ..series.table import from_arrow

    cfg = config or ServeConfig()
    run = load_series(run_dir, cfg.device)
    lock, metrics = threading.Lock(), Metrics()
    app = FastAPI(title="seqlab serve (series)", version="1",
                  description="Per-step event probabilities from a seqlab series run.")
    _errors(app)
    _clean_openapi(app)

    @app.get("/health", response_model=Status)
    async def health():
        return {"status": "ok"}

    @app.get("/ready", response_model=Status)
    async def ready():
        return {"status": "ready", "model": run.path.name}

    @app.post("/v1/series/predict", response_model=SeriesResponse, responses=ERRORS)
    def predict(req: SeriesRequest, request: Request):
        """Probabilities of every event at every posted row."""
        try:
            table = prepare_table(run, from_arrow(pa.Table.from_pylist(req.rows), run.config.series.time,
                                                  run.config.series.drop, "the posted rows"))
            with lock:
                probs = predict_table(run, table)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise ApiError(f"rows: {str(e).splitlines()[0]}", "rows", "invalid_rows") from None
        except SeqlabError as e:
            raise ApiError(f"rows: {e}", "rows", "invalid_rows") from None
        request.state.log.update(rows=len(table))
        return {"model": run.path.name, "events": run.names, "time": table.time_text(),
                "probabilities": {name: probs[:, k].tolist() for k, name in enumerate(run.names)}}

    app.add_middleware(BodyLimit, max_bytes=cfg.max_body_bytes)
    app.add_middleware(BearerAuth, token=cfg.token)
    app.add_middleware(RequestLog, metrics=metrics)
    return app
