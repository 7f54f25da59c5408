"""`seqlab serve RUN`: an HTTP server for a run: OpenAI-compatible completions, scoring, metrics, a web page.

    seqlab serve runs/latest                      # http://127.0.0.1:8000/ (the page), /docs (the API)
    seqlab serve runs/latest --token "$SECRET"    # every route but /health needs Authorization: Bearer ...

Layout: server.py (app factory, routes), worker.py (the model thread, continuous
batching), batching.py (per-architecture row batching), scorer.py (batched
scoring), api.py (limits, replies), schemas.py, metrics.py, middleware.py, web/.
FastAPI and uvicorn are imported only when the verb runs, so `seqlab -h` stays fast.
"""

import logging
import os
import sys

from ..config import MAX_TOKENS
from ..options import device, integer, number, port, run_dir, text


def serve(run_dir, config=None) -> None:
    """Load `run_dir` (in the worker thread) and serve it until interrupted."""
    import uvicorn

    from ..run import load, read_config, require_forward, resolve_device
    from .server import create_app
    from .worker import ServeConfig

    cfg = config or ServeConfig()
    if read_config(run_dir).series.events:  # a numeric series run: POST rows, get probabilities
        from .series import create_series_app

        app = create_series_app(run_dir, cfg)
    else:
        # a directory that is not a run, or a backward one, fails now, as one line, not later in the worker
        require_forward(run_dir, read_config(run_dir), "serve")
        resolve_device(cfg.device)
        app = create_app(lambda: load(run_dir, device=cfg.device), cfg)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    print(f"seqlab serve: {run_dir} on http://{cfg.host}:{cfg.port}/ (API docs at /docs; Ctrl-C stops)",
          file=sys.stderr)
    uvicorn.run(app, host=cfg.host, port=cfg.port, access_log=False, log_level="warning")


def add_cli(sub) -> None:
    p = sub.add_parser("serve", help="serve a run over HTTP (OpenAI-compatible completions, scoring, a web page)")
    positive = integer(min=1)
    p.add_argument("run", type=run_dir)
    p.add_argument("--host", default="127.0.0.1", type=text, help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=port, default=8000, help="default 8000; 0: any free port")
    p.add_argument("--token", default=os.environ.get("SEQLAB_SERVE_TOKEN"), type=text,
                   help="require 'Authorization: Bearer TOKEN' on every route but /health "
                        "(default: $SEQLAB_SERVE_TOKEN)")
    p.add_argument("--max-batch", type=positive, default=32, help="sequences generated together (1 = no batching)")
    p.add_argument("--max-queue", type=positive, default=256, help="waiting requests; more get 429")
    p.add_argument("--max-queue-ms", type=number(min=0, min_open=True), default=10_000,
                   help="a request queued longer gets 503, unrun")
    p.add_argument("--score-delay-ms", type=number(min=0), default=5, help="how long scoring waits to batch requests")
    p.add_argument("--max-score-batch", type=positive, default=16)
    p.add_argument("--cache-size", type=integer(min=0), default=256, help="deterministic answers kept (0 = no cache)")
    p.add_argument("--max-body-bytes", type=positive, default=1 << 20)
    p.add_argument("--max-prompt-bytes", type=positive, default=16_384)
    p.add_argument("--max-score-bytes", type=positive, default=65_536)
    p.add_argument("--max-tokens", type=MAX_TOKENS, default=1024, help="largest max_tokens a request may ask for")
    p.add_argument("--max-rows", type=positive, default=16, help="largest prompts x n in one request")
    p.add_argument("--log-text", action="store_true", help="include prompts and outputs in the request log")
    p.add_argument("--threads", type=integer(min=0), default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--device", default="cpu", type=device)
    p.set_defaults(func=cli)


def cli(args) -> None:
    from .worker import ServeConfig

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    cfg = ServeConfig(
        host=args.host, port=args.port, token=args.token or None, max_batch=args.max_batch, max_queue=args.max_queue,
        max_queue_ms=args.max_queue_ms, score_delay_ms=args.score_delay_ms, max_score_batch=args.max_score_batch,
        cache_size=args.cache_size, max_body_bytes=args.max_body_bytes, max_prompt_bytes=args.max_prompt_bytes,
        max_score_bytes=args.max_score_bytes, max_tokens=args.max_tokens, max_rows=args.max_rows,
        log_text=args.log_text, device=args.device,
    )
    serve(args.run, cfg)
