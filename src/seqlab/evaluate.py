"""`seqlab eval`: bits per byte over the whole held-out split or given files.

Every byte is scored exactly once (see scoring.py for the context method,
which the report states). Bits per byte = total surprisal / bytes scored.
"""

import json
import math
import sys

import numpy as np

from .data.corpus import TokenData, cache_root, encode_corpus, read_documents
from .data.tasks import format_accuracy, task_accuracy, task_documents, task_name
from .errors import SeqlabError
from .models.style import for_document
from .adapt import add_adapt_options, adapt_options
from .options import corpus_path, device, run_dir
from .progress import bar, quiet
from .scoring import describe_run_context, mixing_session, run_token_bits


def _summary(name: str, bits: float, network_bits: float, n_bytes: int, n_tokens: int) -> dict:
    per_token = bits / max(n_tokens, 1)
    return {
        "name": name,
        "bytes": n_bytes,
        "tokens": n_tokens,
        "bpb": bits / max(n_bytes, 1),
        "bits_per_token": per_token,
        "perplexity": 2.0**per_token,
        "bpb_network": network_bits / max(n_bytes, 1),  # the network alone, without the count model
    }


def _score_items(run, items, adapter=None) -> tuple[list[dict], dict]:
    """items: (name, tokens, n_context, n_bytes) -> per-item rows and the total, scored in order as one stream."""
    rows, totals = [], np.zeros(4)
    session = mixing_session(run)
    n_scored = sum(len(tokens) - n_context for _, tokens, n_context, _ in items)
    with bar(total=n_scored, desc="eval, adapting" if adapter else "eval", unit="tok") as progress:
        for name, tokens, n_context, n_bytes in items:
            with for_document(run.model, name):  # a styled run reads each document in its own source's style
                bits, network = run_token_bits(run, tokens, n_context, session, progress, adapter)
            n_tokens = len(tokens) - n_context
            rows.append(_summary(name, float(bits.sum()), float(network.sum()), n_bytes, n_tokens))
            totals += (bits.sum(), network.sum(), n_bytes, n_tokens)
    return rows, _summary("total", totals[0], totals[1], int(totals[2]), int(totals[3]))


def _report(run, items, name: str, adapt=None) -> dict:
    rows, total = _score_items(run, items)
    result = {**total, "name": name, "files": rows, "context": describe_run_context(run)}
    if adapt is not None:  # the same items again, the network learning from each chunk once scored
        result["adapted"] = _adapted(run, items, adapt)
    return result


def _adapted(run, items, adapt) -> dict:
    import time

    from .adapt import Adapter

    t0 = time.perf_counter()
    with Adapter(run.model, run.device, adapt) as adapter:
        rows, total = _score_items(run, items, adapter)
        how = adapter.describe()
    return {**total, "files": rows, "how": how, "lr": adapt.lr, "chunk": adapter.chunk, "threads": adapter.threads,
            "seconds": round(time.perf_counter() - t0, 2)}


def evaluate_held_out(run, data: TokenData, adapt=None) -> dict:
    items = [(h.name, h.tokens, h.n_context, h.n_bytes) for h in data.held_out if len(h.scored)]
    return _report(run, items, "held-out", adapt)


def evaluate(run, files: list[str] | None = None, adapt=None) -> dict:
    """Score the run's held-out split (default) or the given files; returns bpb and friends.

    adapt: adapt.AdaptOptions to score them a second time with the network adapting as it reads
    (dynamic evaluation); its figures are under "adapted".
    """
    if files:
        docs = read_documents(files, run.config.data.text_field)
        bos = run.tokenizer.bos_id
        items = [(d.name, np.concatenate([[bos], run.tokenizer.encode(d.data)]), 1, len(d.data))
                 for d in docs if d.data]
        return _report(run, items, "files", adapt)
    result = evaluate_held_out(run, held_out_data(run), adapt)
    if task_name(run.config.data.paths):
        result["task"] = task_accuracy(run.model, run.tokenizer, task_name(run.config.data.paths), run.device)
    return result


def held_out_data(run) -> TokenData:
    """The run's corpus tokenised as its training split it (the held-out split is `.held_out`)."""
    from .data.corpus import default_corpus_path

    cfg = run.config.data
    docs, val_docs = task_documents(cfg) or (  # "task:NAME": generated examples, own held-out set
        read_documents(cfg.paths or [default_corpus_path()], cfg.text_field),
        read_documents(cfg.val_paths, cfg.text_field) if cfg.val_paths else [])
    return encode_corpus(docs, val_docs, run.tokenizer, cfg.val_fraction, cache_root())


MAX_ROWS = 50  # per-source rows shown in the table (all are in --json)


def format_table(result: dict) -> str:
    header = f"{'source':<40} {'bytes':>11} {'tokens':>11} {'bits/byte':>10} {'bits/token':>11} {'perplexity':>11}"
    lines = [header, "-" * len(header)]
    rows = result["files"] if 1 < len(result["files"]) <= MAX_ROWS else []  # thousands of rows say nothing
    for r in rows + [result]:
        name = r["name"] if len(r["name"]) <= 40 else "…" + r["name"][-39:]
        lines.append(f"{name:<40} {r['bytes']:>11,} {r['tokens']:>11,} {r['bpb']:>10.4f} "
                     f"{r['bits_per_token']:>11.4f} {r['perplexity']:>11.3f}")
    if result["bpb_network"] != result["bpb"]:
        lines.append(f"the network alone: {result['bpb_network']:.4f} bits per byte")
    lines.append(f"context: {result['context']}")
    if "task" in result:
        lines.append(format_accuracy(result["task"]))
    if "adapted" in result:
        lines.append(format_adapted(result))
    return "\n".join(lines)


def format_adapted(result: dict) -> str:
    a = result["adapted"]
    network = f" (the network alone: {a['bpb_network']:.4f})" if a["bpb_network"] != a["bpb"] else ""
    return (f"adapted while scoring ({a['how']}, {a['threads']} thread{'s' * (a['threads'] > 1)}): "
            f"{a['bpb']:.4f} bits per byte{network}, against {result['bpb']:.4f} frozen; {a['seconds']:.1f}s")


def add_cli(sub) -> None:
    p = sub.add_parser("eval", help="bits per byte on the held-out split or on files")
    p.add_argument("run", type=run_dir)
    p.add_argument("files", nargs="*", type=corpus_path,
                   help="files to score instead of the held-out split")
    p.add_argument("--json", action="store_true", help="print JSON (the figure is under 'bpb')")
    p.add_argument("--device", default="auto", type=device, help="default auto: a GPU when there is one")
    add_adapt_options(p, "also score with the network learning from each chunk once scored (dynamic evaluation; "
                         "slower, see docs/adapt.md): prints the frozen and the adapted figures")
    p.set_defaults(func=cli)


def cli(args) -> None:
    from .run import load
    from .series.evaluate import is_series_run, series_cli

    if is_series_run(args.run):  # a numeric series run: its model against the baselines (series/evaluate.py)
        return series_cli(args)
    run = load(args.run, device=args.device)
    with quiet(args.json):
        result = evaluate(run, args.files or None, adapt_options(args))
    if not math.isfinite(result["bpb"]):
        raise SeqlabError("the model produced non-finite scores; the checkpoint may be damaged")
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(format_table(result))
