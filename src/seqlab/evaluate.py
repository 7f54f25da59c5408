"""`seqlab eval`: bits per byte over the whole held-out split or given files.

Every byte is scored exactly once (see scoring.py for the context method,
which the report states). Bits per byte = total surprisal / bytes scored, with a
95% block-bootstrap interval over the scored bytes (intervals.py says how the
blocks are cut; the output names the method). `--against RUN_B` scores both runs
on the same bytes and gives A - B with a paired interval and a verdict.
"""

import json
import math
import sys
import time

import numpy as np

from .data.corpus import TokenData, cache_root, encode_corpus, read_documents, split_document
from .data.tasks import format_accuracy, task_accuracy, task_documents, task_name
from .errors import SeqlabError
from .intervals import AUTO, bpb_interval, byte_bits, block_kind, paired
from .models.style import for_document
from .adapt import Adapter, add_adapt_options, adapt_options
from .options import corpus_path, device, run_dir, run_or_file
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


def _score_items(run, items, per_byte: list | None = None, adapter=None) -> tuple[list[dict], dict]:
    """items: (name, tokens, n_context, n_bytes) -> per-item rows and the total, scored in order as one stream.

    per_byte: when given, gets the bits of every scored byte of each item (intervals.byte_bits).
    adapter: an adapt.Adapter when the network learns from each chunk once scored (dynamic evaluation).
    """
    rows, totals = [], np.zeros(4)
    session = mixing_session(run)
    n_scored = sum(len(tokens) - n_context for _, tokens, n_context, _ in items)
    with bar(total=n_scored, desc="eval, adapting" if adapter else "eval", unit="tok") as progress:
        for name, tokens, n_context, n_bytes in items:
            with for_document(run.model, name):  # a styled run reads each document in its own source's style
                bits, network = run_token_bits(run, tokens, n_context, session, progress, adapter)
            if per_byte is not None:
                per_byte.append(byte_bits(run.tokenizer, tokens[n_context:], bits))
            n_tokens = len(tokens) - n_context
            rows.append(_summary(name, float(bits.sum()), float(network.sum()), n_bytes, n_tokens))
            totals += (bits.sum(), network.sum(), n_bytes, n_tokens)
    return rows, _summary("total", totals[0], totals[1], int(totals[2]), int(totals[3]))


def _scored(run, name: str, items) -> tuple[dict, list[np.ndarray]]:
    per_byte: list[np.ndarray] = []
    rows, total = _score_items(run, items, per_byte)
    return {**total, "name": name, "files": rows, "context": describe_run_context(run)}, per_byte


def _adapted(run, items, adapt) -> dict:
    """The same items scored again, the network learning from each chunk once scored."""

    t0 = time.perf_counter()
    with Adapter(run.model, run.device, adapt) as adapter:
        rows, total = _score_items(run, items, adapter=adapter)
        how = adapter.describe()
    return {**total, "files": rows, "how": how, "lr": adapt.lr, "chunk": adapter.chunk, "threads": adapter.threads,
            "seconds": round(time.perf_counter() - t0, 2)}


def _held_out_items(data: TokenData) -> list:
    return [(h.name, h.tokens, h.n_context, h.n_bytes) for h in data.held_out if len(h.scored)]


def evaluate_held_out(run, data: TokenData, block=AUTO) -> dict:
    result, per_byte = _scored(run, "held-out", _held_out_items(data))
    return {**result, **bpb_interval(per_byte, block)}


def _documents(cfg) -> tuple[list, list]:
    """(documents, held-out documents) of a run's data config."""
    from .data.corpus import default_corpus_path

    return task_documents(cfg) or (  # "task:NAME": generated examples, own held-out set
        read_documents(cfg.paths or [default_corpus_path()], cfg.text_field),
        read_documents(cfg.val_paths, cfg.text_field) if cfg.val_paths else [])


def held_out_data(run) -> TokenData:
    """The run's held-out split, encoded with its own tokenizer."""
    docs, val_docs = _documents(run.config.data)
    return encode_corpus(docs, val_docs, run.tokenizer, run.config.data.val_fraction, cache_root())


def _items(run, files: list[str] | None) -> tuple[str, list]:
    """What eval scores: the files given, else the held-out split, as (name, items)."""
    if files:
        docs = read_documents(files, run.config.data.text_field)
        bos = run.tokenizer.bos_id
        items = [(d.name, np.concatenate([[bos], run.tokenizer.encode(d.data)]), 1, len(d.data))
                 for d in docs if d.data]
        return "files", items
    return "held-out", _held_out_items(held_out_data(run))


def scored_bytes(run, files: list[str] | None = None) -> tuple[dict, list[np.ndarray]]:
    """The eval of the held-out split (default) or the files, without its interval, and the bits of every
    scored byte, document by document (for intervals and paired comparisons)."""
    return _scored(run, *_items(run, files))


def evaluate(run, files: list[str] | None = None, block=AUTO, adapt=None) -> dict:
    """Score the run's held-out split (default) or the given files; returns bpb with its interval and friends.

    block: how the bootstrap cuts the bytes: "auto", "document" or a length in bytes (see intervals.py).
    adapt: adapt.AdaptOptions to score them a second time with the network adapting as it reads
    (dynamic evaluation); its figures are under "adapted".
    """
    name, items = _items(run, files)
    result, per_byte = _scored(run, name, items)
    result.update(bpb_interval(per_byte, block))
    if adapt is not None:
        result["adapted"] = _adapted(run, items, adapt)
    if not files and task_name(run.config.data.paths):
        result["task"] = task_accuracy(run.model, run.tokenizer, task_name(run.config.data.paths), run.device)
    return result


def same_held_out(run_a, run_b) -> None:
    """Refuse to pair two runs whose held-out splits are not the same bytes."""
    def held_out_bytes(cfg) -> list[bytes]:
        docs, val_docs = _documents(cfg)
        return [d.data for d in val_docs] or [split_document(d.data, cfg.val_fraction)[1] for d in docs]

    if held_out_bytes(run_a.config.data) != held_out_bytes(run_b.config.data):
        raise SeqlabError(f"{run_a.path} and {run_b.path} hold out different bytes (other corpora or "
                          f"--val-fraction): give FILES to compare both on the same bytes")


def evaluate_against(run_a, run_b, files: list[str] | None = None, block=AUTO) -> dict:
    """A minus B in bits per byte on the same bytes, with a paired block-bootstrap interval and a verdict
    ("better": A's bits per byte are lower). Runs with different tokenizers are compared byte for byte."""
    if not files:
        same_held_out(run_a, run_b)
    (a, bytes_a), (b, bytes_b) = scored_bytes(run_a, files), scored_bytes(run_b, files)
    out = paired(bytes_a, bytes_b, block)
    sides = {}
    for key, run, result, per_byte in ("a", run_a, a, bytes_a), ("b", run_b, b, bytes_b):
        sides[key] = {"run": str(run.path), "bpb": result["bpb"], **bpb_interval(per_byte, block)}
        del sides[key]["interval_method"]
    return {**out, **sides, "bytes": a["bytes"]}


VERDICTS = {"better": "A is better", "worse": "B is better", "tied": "no difference at 95%"}


def format_against(result: dict) -> str:
    lines = [f"{key.upper()}: {s['run']}  {s['bpb']:.4f} bits per byte [{s['bpb_low']:.4f}, {s['bpb_high']:.4f}]"
             for key, s in (("a", result["a"]), ("b", result["b"]))]
    lines.append(f"A - B: {result['difference']:+.4f} bits per byte, 95% interval [{result['low']:+.4f}, "
                 f"{result['high']:+.4f}] over the same {result['bytes']:,} bytes ({result['interval_method']})")
    lines.append(VERDICTS[result["verdict"]])
    return "\n".join(lines)


MAX_ROWS = 50  # per-source rows shown in the table (all are in --json)


def format_table(result: dict) -> str:
    header = f"{'source':<40} {'bytes':>11} {'tokens':>11} {'bits/byte':>10} {'bits/token':>11} {'perplexity':>11}"
    lines = [header, "-" * len(header)]
    rows = result["files"] if 1 < len(result["files"]) <= MAX_ROWS else []  # thousands of rows say nothing
    for r in rows + [result]:
        name = r["name"] if len(r["name"]) <= 40 else "…" + r["name"][-39:]
        lines.append(f"{name:<40} {r['bytes']:>11,} {r['tokens']:>11,} {r['bpb']:>10.4f} "
                     f"{r['bits_per_token']:>11.4f} {r['perplexity']:>11.3f}")
    if "bpb_low" in result:
        lines.append(f"95% interval: [{result['bpb_low']:.4f}, {result['bpb_high']:.4f}] bits per byte "
                     f"({result['interval_method']})")
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
    p.add_argument("--against", nargs="+", metavar=("RUN_B", "FILES"), type=run_or_file,
                   help="compare RUN with RUN_B on the same bytes (FILES may follow RUN_B): A - B in bits per byte "
                        "with a paired 95%% interval and a verdict")
    p.add_argument("--block", type=block_kind, default=AUTO,
                   help="how the bootstrap cuts the scored bytes: document, a length in bytes, or auto (default: "
                        "by document from 10 documents up, else about 1/100 of the bytes, at least 1024)")
    add_adapt_options(p, "also score with the network learning from each chunk once scored (dynamic evaluation; "
                         "slower, see docs/adapt.md): prints the frozen and the adapted figures")
    p.set_defaults(func=cli)


def cli(args) -> None:
    from .run import load
    from .series.evaluate import is_series_run, series_cli

    if args.adapt and args.against:
        raise SeqlabError("--adapt scores one run frozen and adapted; --against compares two runs frozen: "
                          "give one of them")
    if is_series_run(args.run) or (args.against and is_series_run(args.against[0])):
        if args.adapt:
            raise SeqlabError("--adapt is for text runs; a series run's eval scores its walk-forward folds")
        if args.against:
            raise SeqlabError("--against pairs two text runs on the same bytes; a series run's eval already gives "
                              "its paired AUC difference against the baselines")
        return series_cli(args)  # a numeric series run: its model against the baselines (series/evaluate.py)
    run = load(args.run, device=args.device)
    if args.against:
        run_b, *files = args.against  # `eval RUN_A --against RUN_B FILES`: the files follow RUN_B
        return _cli_against(args, run, load(run_b, device=args.device), args.files + files)
    with quiet(args.json):
        result = evaluate(run, args.files or None, args.block, adapt_options(args))
    _show(result, result["bpb"], args.json, format_table)


def _cli_against(args, run_a, run_b, files: list[str]) -> None:
    with quiet(args.json):
        result = evaluate_against(run_a, run_b, files or None, args.block)
    _show(result, result["difference"], args.json, format_against)


def _show(result: dict, figure: float, as_json: bool, table) -> None:
    if not math.isfinite(figure):
        raise SeqlabError("the model produced non-finite scores; the checkpoint may be damaged")
    if as_json:
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(table(result))
