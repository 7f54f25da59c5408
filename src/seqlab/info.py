"""`seqlab info`: what a run is, from its own files."""

import json
import sys

from .checkpoint import checkpoint_metadata
from .errors import SeqlabError
from .options import run_dir
from .progress import clock
from .run import load, read_metrics


def info(run_dir) -> dict:
    run = load(run_dir)
    records = read_metrics(run_dir)
    start = next((r for r in records if r.get("event") == "start"), {})
    evals = [r for r in records if r.get("event") == "eval"]
    final = next((r for r in reversed(records) if r.get("event") == "final"), None)
    try:
        trainer = json.loads(checkpoint_metadata(run_dir).get("trainer", "{}"))
    except (ValueError, SeqlabError):
        trainer = {}
    cfg = run.config
    return {
        "run": str(run.path),
        "corpus": cfg.data.paths or ["(bundled tinyshakespeare)"],
        "files": start.get("files"),
        "train_bytes": start.get("train_bytes"),
        "val_bytes": start.get("val_bytes"),
        "tokenizer": cfg.data.tokenizer,
        "reads": "right to left" if cfg.data.backward else "left to right",
        "vocab_size": run.tokenizer.vocab_size,
        "arch": cfg.arch,
        "model": cfg.model,
        "params": run.model.num_params(),
        "details": run.model.describe(),
        "steps": trainer.get("step"),
        "tokens_seen": trainer.get("tokens"),
        "wall_seconds": trainer.get("elapsed"),
        "finished": bool(trainer.get("done")),
        "held_out_bpb": final["val_bpb"] if final else None,
        "held_out_bpb_interval": [final["val_bpb_low"], final["val_bpb_high"]] if final and "val_bpb_low" in final
        else None,  # 95%, block bootstrap (runs trained before intervals have none)
        "best_subset_bpb": min((r["val_bpb"] for r in evals), default=None),
        "tuned": json.loads((run.path / "tune.json").read_text()) if (run.path / "tune.json").exists() else None,
    }


def tuned_line(t: dict) -> str:
    """What `seqlab tune` did to make the run (its tune.json)."""
    if t["objective"] == "words":
        what = (f"word {t.get('form', 'head')} ({t['words']:,} words x {t['dim']}, {t['states']} states, "
                f"{t['steps']:,} steps)" + (f", network moved {t['network_steps_done']:,} steps"
                                            if t.get("network_steps_done") else ""))
    else:
        what = f"contrastive, {t['pooling']} pooling, {t['steps']:,} steps on {t['paragraphs']:,} paragraphs"
    return f"tuned:      from {t['from']}: {what}"


def format_info(d: dict) -> str:
    size = f"{d['params'] / 1e6:.2f}M" if d["params"] >= 1e5 else f"{d['params']:,}"
    model = ", ".join(f"{k}={v}" for k, v in d["model"].items() if k != "vocab_size")
    lines = [
        f"run:        {d['run']}",
        f"corpus:     {', '.join(d['corpus'])}"
        + (f" ({d['files']} files, {d['train_bytes']:,} train + {d['val_bytes']:,} held-out bytes)"
           if d["files"] is not None else ""),
        f"tokenizer:  {d['tokenizer']} ({d['vocab_size']} tokens), reads {d['reads']}",
        f"arch:       {d['arch']} ({model})",
        f"params:     {size}" + "".join(f"; {k}: {v}" for k, v in d["details"].items()),
    ]
    if d["steps"] is not None:
        state = "finished" if d["finished"] else "not finished (resume with seqlab train --resume)"
        lines.append(f"trained:    {d['steps']:,} steps, {d['tokens_seen']:,} tokens, "
                     f"{clock(d['wall_seconds'])} wall, {state}")
    if d["held_out_bpb"] is not None:
        interval = d["held_out_bpb_interval"]
        lines.append(f"held-out:   {d['held_out_bpb']:.4f} bits per byte (full split"
                     + (f"; 95% interval {interval[0]:.4f}-{interval[1]:.4f})" if interval else ")"))
    if d["best_subset_bpb"] is not None:
        lines.append(f"best eval:  {d['best_subset_bpb']:.4f} bits per byte (fixed subset during training)")
    if d["tuned"] is not None:
        lines.append(tuned_line(d["tuned"]))
    return "\n".join(lines)


def add_cli(sub) -> None:
    p = sub.add_parser("info", help="describe a run")
    p.add_argument("run", type=run_dir)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cli)


def cli(args) -> None:
    d = info(args.run)
    print(json.dumps(d, indent=2) if args.json else format_info(d), file=sys.stdout)
