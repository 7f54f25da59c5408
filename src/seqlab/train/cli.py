"""`seqlab train`'s command line: flags and --config -> RunConfig, --resume, --nproc, runs/latest.

The training itself is loop.py's train(), which is also the Python API.
"""

import copy
import os
import time
from dataclasses import asdict
from pathlib import Path

from ..config import SOFTMAXES, STYLE_BY, RunConfig, check_paths, option_for, validate
from ..data.corpus import default_corpus_path
from ..errors import SeqlabError
from ..models import model_config
from ..options import budget, corpus_path, hf_checkpoint, input_file, integer, key_value, new_run, run_dir, text
from ..run import CONFIG_FILE, read_config
from ..series.labels import EVENT
from ..series.settings import is_series, series_config
from ..series.train import train_series
from . import distributed
from .loop import train


def default_run_dir(arch: str) -> Path:
    """runs/DATE-TIME-ARCH, with -2, -3 ... when a run started in the same second already has the name."""
    base = Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{arch}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def link_latest(run_dir: Path) -> None:
    """Point runs/latest (beside the run) at this run."""
    link = run_dir.parent / "latest"
    tmp = run_dir.parent / f".latest.tmp{os.getpid()}"
    try:
        if tmp.is_symlink():
            tmp.unlink()
        tmp.symlink_to(run_dir.name)
        os.replace(tmp, link)
    except OSError:
        pass  # a filesystem without symlinks: the run itself is fine


DEFAULT_BUDGET_SECONDS = 600.0


def add_cli(sub) -> None:
    p = sub.add_parser("train", help="train a model on your files (default: the bundled corpus)",
                       description="Train a model. CORPUS: files, directories (recursive) or globs.")
    p.add_argument("corpus", nargs="*", type=corpus_path,
                   help="training data (default: bundled tinyshakespeare); runs inside a folder are skipped")
    p.add_argument("--arch", type=option_for("arch"), help="default: chosen for the budget and corpus")
    clock_group = p.add_mutually_exclusive_group()
    clock_group.add_argument("--budget", type=budget, help="wall-clock training time (default 10m)")
    clock_group.add_argument("--max-steps", type=integer(min=1), help="train for exactly N optimizer steps")
    p.add_argument("--tokenizer", type=option_for("data.tokenizer"), help="default byte")
    p.add_argument("--softmax", choices=SOFTMAXES,
                   help="output layer: full (default); adaptive, faster for large BPE vocabularies "
                        "(clusters: --set model.cutoffs=A,B); sampled: the tied table by negative sampling")
    p.add_argument("--out", type=new_run, help="run directory (default runs/DATE-ARCH; runs/latest points at it)")
    p.add_argument("--config", type=input_file, help="JSON file with config values (see config.json of any run)")
    p.add_argument("--resume", metavar="RUN", type=run_dir, help="continue a run from its last checkpoint")
    p.add_argument("--val", action="append", default=[], metavar="FILE", type=corpus_path,
                   help="held-out file(s) instead of a split")
    p.add_argument("--val-fraction", type=option_for("data.val_fraction"),
                   help="held-out fraction of each document (default 0.1)")
    p.add_argument("--text-field", metavar="NAME", type=option_for("data.text_field"),
                   help="JSONL, CSV or Parquet files: read each record's NAME field as one document")
    p.add_argument("--batch-size", type=option_for("train.batch_size"))
    p.add_argument("--seq-len", type=option_for("train.seq_len"), help="tokens per training window")
    p.add_argument("--lr", type=option_for("train.lr"))
    p.add_argument("--seed", type=option_for("train.seed"))
    p.add_argument("--device", type=option_for("train.device"), help="default auto")
    p.add_argument("--threads", type=option_for("train.threads"), help="CPU threads (default 0: every core)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", type=key_value,
                   help="any config value, e.g. --set model.n_layer=6 --set train.weight_decay=0.05")
    p.add_argument("--backward", action="store_true",
                   help="model the text right to left: a second opinion for `seqlab surprise --backward`")
    p.add_argument("--init", metavar="DIR", type=hf_checkpoint,
                   help="fine-tune a local Hugging Face GPT-2 checkpoint (its tokenizer too)")
    p.add_argument("--nproc", type=integer(min=1),
                   help="train with N processes (DistributedDataParallel); or use torchrun")
    p.add_argument("--style-by", choices=STYLE_BY,
                   help="learn a style vector per source file or directory (seqlab generate --style, seqlab styles)")
    p.add_argument("--style-dim", type=option_for("style.dim"), help="size of each style vector (default 16)")
    p.add_argument("--log", type=option_for("train.log"),
                   help="also write the training and held-out curves for TensorBoard (RUN/tensorboard/)")
    p.add_argument("--curriculum", action="store_true",
                   help="task:NAME only: start on the shortest examples and let longer ones in as the training "
                        "error falls below curriculum.threshold (--set curriculum.threshold=0.05)")
    p.add_argument("--seeds", type=integer(min=1), metavar="N",
                   help="train N seeds (--seed, --seed + 1, ...) into OUT/seed-SEED and report the spread between "
                        "them next to each run's bootstrap interval")
    p.add_argument("--series", action="store_true",
                   help="CORPUS is a numeric table (CSV, .csv.gz, Parquet, or a directory of them): learn per-step "
                        "event probabilities, walk-forward (docs/series.md)")
    p.add_argument("--event", action="append", metavar="SPEC", type=EVENT,
                   help='with --series: what to predict, e.g. "SPX:up=1%%,down=0.5%%,within=5" or "COL:label" '
                        "(repeatable: one head per event)")
    p.add_argument("--time", type=text, help="with --series: the time column (default: found by name, else the first)")
    p.set_defaults(func=cli)


FLAG_TO_KEY = {
    "tokenizer": "data.tokenizer", "val_fraction": "data.val_fraction", "batch_size": "train.batch_size",
    "seq_len": "train.seq_len", "lr": "train.lr", "seed": "train.seed", "device": "train.device",
    "threads": "train.threads", "max_steps": "train.max_steps", "style_by": "style.by", "style_dim": "style.dim",
    "log": "train.log", "text_field": "data.text_field",
}


def read_config_file(path: str) -> RunConfig:
    """A --config file as a RunConfig; a value it holds is refused in the words the flag would use."""
    from ..config import from_dict, load_config_file

    try:
        return from_dict(RunConfig, load_config_file(path))
    except SeqlabError as e:
        message = str(e)
        raise SeqlabError(message if path in message else f"config file {path}: {message}") from None


def config_from_args(args) -> RunConfig:
    from ..config import apply_override

    cfg = read_config_file(args.config) if args.config else RunConfig()
    if args.init and not args.config:
        from ..pretrained import FINETUNE_LR

        cfg.train.lr = FINETUNE_LR  # a pretrained model wants a gentler rate than one trained from scratch
    if args.arch:
        cfg.arch = args.arch
    model_cfg = model_config(cfg.arch, cfg.model)
    if args.corpus:
        cfg.data.paths = list(args.corpus)
    if args.val:
        cfg.data.val_paths = list(args.val)
    if args.backward:
        cfg.data.backward = True
    if args.curriculum:
        cfg.curriculum.enabled = True
    for flag, key in FLAG_TO_KEY.items():
        value = getattr(args, flag)
        if value is not None:
            apply_override(cfg, key, str(value))
    if args.budget:
        cfg.train.budget_seconds, cfg.train.max_steps = args.budget, 0
    elif args.max_steps is not None:
        cfg.train.budget_seconds = 0.0
    if cfg.train.budget_seconds <= 0 and cfg.train.max_steps <= 0:
        cfg.train.budget_seconds = DEFAULT_BUDGET_SECONDS
    reason = None
    if not (args.arch or args.config or args.init or any(p.startswith("task:") for p in cfg.data.paths)):
        _apply_sets(copy.deepcopy(cfg), copy.deepcopy(model_cfg), args.set)  # a bad value fails before the probe
        model_cfg, reason = _auto_choice(cfg, args)
    if args.softmax:
        model_cfg.softmax = args.softmax
    _apply_sets(cfg, model_cfg, args.set)
    validate(model_cfg, "model")  # what one field cannot say alone (e.g. n_embd a multiple of n_head)
    cfg.model = asdict(model_cfg)
    if reason:
        print(reason, flush=True)  # once the config is known to be valid: an error is the only line
    return cfg


def _apply_sets(cfg: RunConfig, model_cfg, sets: list[str]) -> None:
    """--set KEY=VALUE items: `model.*` on the model's config, the rest on the run's."""
    from ..config import apply_override

    for item in sets:
        key, _, value = item.partition("=")
        if key.startswith("model."):
            apply_override(model_cfg, key[len("model."):], value, "model")
        else:
            apply_override(cfg, key, value)


def _auto_choice(cfg: RunConfig, args):
    """No --arch: pick the architecture and size for the budget and corpus, from rates measured here;
    returns its config and why."""
    from ..data.corpus import resolve_paths
    from ..run import resolve_device
    from .defaults import choose, ladder_for
    from .probe import PROBE_MIN_BUDGET, Measured, measure

    corpus_bytes = sum(p.stat().st_size for p in resolve_paths(cfg.data.paths or [default_corpus_path()]))
    device = resolve_device(cfg.train.device)
    ladder, budget = ladder_for(device.type), cfg.train.budget_seconds
    measured = Measured()
    if budget >= PROBE_MIN_BUDGET:  # with --max-steps the tokens are known; a tiny budget fits the smallest anyway
        cores = len(os.sched_getaffinity(0))  # what this process may use (taskset, containers), not the machine
        options = [cfg.train.threads] if cfg.train.threads or device.type != "cpu" else sorted({cores, 1}, reverse=True)
        measured = measure(ladder, budget, corpus_bytes, device, options, cfg.train.precision)
        cfg.train.budget_seconds = budget - measured.seconds  # the probe is part of the budget
    choice = choose(corpus_bytes, cfg.train.budget_seconds, measured.rates, device.type, cfg.train.max_steps,
                    measured.describe(ladder, device.type) if measured.rates else "")
    cfg.arch = choice.arch
    for key, value in choice.train.items():
        if getattr(args, key, None) is None:
            setattr(cfg.train, key, value)
    if not cfg.train.threads and device.type == "cpu" and measured.threads:
        cfg.train.threads = measured.threads[choice.model["n_embd"]]
    return model_config(cfg.arch, choice.model), choice.reason


def resume_config(args) -> RunConfig:
    given = [f"--{k.replace('_', '-')}" for k in ("arch", "tokenizer", "out", "config", "val_fraction",
                                                   "batch_size", "seq_len", "lr", "seed", "init", "softmax",
                                                   "style_by", "style_dim", "log", "text_field")
             if getattr(args, k) is not None] + (["CORPUS"] if args.corpus else []) + \
        (["--val"] if args.val else []) + (["--set"] if args.set else []) + \
        (["--backward"] if args.backward else []) + (["--curriculum"] if args.curriculum else [])
    if given:
        raise SeqlabError(f"--resume continues a run as it was configured; it cannot be combined with "
                          f"{', '.join(given)} (only --budget, --max-steps, --device and --threads)")
    cfg = read_config(Path(args.resume))
    if args.budget:
        cfg.train.budget_seconds, cfg.train.max_steps = args.budget, 0
    elif args.max_steps is not None:
        cfg.train.budget_seconds, cfg.train.max_steps = 0.0, args.max_steps
    if args.device:
        cfg.train.device = args.device
    if args.threads is not None:
        cfg.train.threads = args.threads
    return cfg


def cli(args) -> None:
    if args.resume and args.seeds:
        raise SeqlabError("--resume continues one run; resume each seed's own run, e.g. "
                          "seqlab train --resume OUT/seed-1337")
    if args.resume:
        run_dir = Path(args.resume).resolve()
        cfg = resume_config(args)
        if args.series or is_series(cfg):
            raise SeqlabError("a --series run is built in one go and cannot be resumed; train a new one")
        if not distributed.train_processes(train, cfg, run_dir, resume=True, nproc=args.nproc):
            train(cfg, run_dir, resume=True)
        return
    if (args.event or args.time) and not args.series:
        raise SeqlabError("--event and --time describe a numeric table: add --series")
    if args.seeds and args.series:
        raise SeqlabError("--seeds repeats a text run; a --series run reports its folds' spread and intervals "
                          "itself (train other seeds with --seed N --out DIR)")
    cfg = series_config(args) if args.series else config_from_args(args)
    check_paths(cfg)  # a --config or --set corpus is checked as the CORPUS argument is, before any work
    run_dir = Path(args.out) if args.out else default_run_dir(cfg.arch)
    if args.seeds:
        from ..seeds import cli_train_seeds

        return cli_train_seeds(cfg, run_dir, args.seeds, lambda c, d: train_one(c, d, args.init, args.nproc),
                               report=distributed.is_rank_zero())
    train_one(cfg, run_dir, args.init, args.nproc, series=args.series)
    if distributed.is_rank_zero():
        link_latest(run_dir)


def train_one(cfg: RunConfig, run_dir: Path, init, nproc, series: bool = False) -> None:
    if (run_dir / CONFIG_FILE).exists():
        raise SeqlabError(f"{run_dir} already holds a run; continue it with --resume {run_dir} or pick another --out")
    if series:
        train_series(cfg, run_dir)
    elif not distributed.train_processes(train, cfg, run_dir, init=init, nproc=nproc):
        train(cfg, run_dir, init=init)
