"""`seqlab train`'s command line: flags and --config -> RunConfig, --resume, --nproc, runs/latest.

The training itself is loop.py's train(), which is also the Python API.
"""

import os
import time
from dataclasses import asdict
from pathlib import Path

from ..config import RunConfig
from ..data.corpus import default_corpus_path
from ..errors import SeqlabError
from ..models import model_config
from ..models.heads import SOFTMAXES
from ..models.style import STYLE_BY
from ..run import CONFIG_FILE, read_config
from . import distributed
from .loop import train


def default_run_dir(arch: str) -> Path:
    return Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{arch}"


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
    p.add_argument("corpus", nargs="*", help="training data (default: bundled tinyshakespeare)")
    p.add_argument("--arch", help="transformer, lstm, qrnn, conv or stack (default: chosen for the budget and corpus)")
    clock_group = p.add_mutually_exclusive_group()
    clock_group.add_argument("--budget", help="wall-clock training time, e.g. 90s, 10m, 1h (default 10m)")
    clock_group.add_argument("--max-steps", type=int, help="train for exactly N optimizer steps")
    p.add_argument("--tokenizer", help="byte (default) or bpe:VOCAB")
    p.add_argument("--softmax", choices=SOFTMAXES,
                   help="output layer: full (default) or adaptive, faster for large BPE vocabularies "
                        "(clusters: --set model.cutoffs=A,B)")
    p.add_argument("--out", help="run directory (default runs/DATE-ARCH; runs/latest points at it)")
    p.add_argument("--config", help="JSON file with config values (see config.json of any run)")
    p.add_argument("--resume", metavar="RUN", help="continue a run from its last checkpoint")
    p.add_argument("--val", action="append", default=[], metavar="FILE", help="held-out file(s) instead of a split")
    p.add_argument("--val-fraction", type=float, help="held-out fraction of each document (default 0.1)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seq-len", type=int, help="tokens per training window")
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto (default), cpu, cuda")
    p.add_argument("--threads", type=int, help="CPU threads (default: every core)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any config value, e.g. --set model.n_layer=6 --set train.weight_decay=0.05")
    p.add_argument("--backward", action="store_true",
                   help="model the text right to left: a second opinion for `seqlab surprise --backward`")
    p.add_argument("--init", metavar="DIR", help="fine-tune a local Hugging Face GPT-2 checkpoint (its tokenizer too)")
    p.add_argument("--nproc", type=int, help="train with N processes (DistributedDataParallel); or use torchrun")
    p.add_argument("--style-by", choices=STYLE_BY,
                   help="learn a style vector per source file or directory (seqlab generate --style, seqlab styles)")
    p.add_argument("--style-dim", type=int, help="size of each style vector (default 16)")
    p.set_defaults(func=cli)


FLAG_TO_KEY = {
    "tokenizer": "data.tokenizer", "val_fraction": "data.val_fraction", "batch_size": "train.batch_size",
    "seq_len": "train.seq_len", "lr": "train.lr", "seed": "train.seed", "device": "train.device",
    "threads": "train.threads", "max_steps": "train.max_steps", "style_by": "style.by", "style_dim": "style.dim",
}


def config_from_args(args) -> RunConfig:
    from ..config import apply_override, from_dict, load_config_file, parse_duration

    cfg = from_dict(RunConfig, load_config_file(args.config)) if args.config else RunConfig()
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
    for flag, key in FLAG_TO_KEY.items():
        value = getattr(args, flag)
        if value is not None:
            apply_override(cfg, key, str(value))
    if args.budget:
        cfg.train.budget_seconds, cfg.train.max_steps = parse_duration(args.budget), 0
    elif args.max_steps is not None:
        cfg.train.budget_seconds = 0.0
    if cfg.train.budget_seconds <= 0 and cfg.train.max_steps <= 0:
        cfg.train.budget_seconds = DEFAULT_BUDGET_SECONDS
    if not (args.arch or args.config or args.init or any(p.startswith("task:") for p in cfg.data.paths)):
        model_cfg = _auto_choice(cfg, args)
    if args.softmax:
        model_cfg.softmax = args.softmax
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise SeqlabError(f"--set expects KEY=VALUE, got {item!r}")
        if key.startswith("model."):
            apply_override(model_cfg, key[len("model."):], value)
        else:
            apply_override(cfg, key, value)
    cfg.model = asdict(model_cfg)
    return cfg


def _auto_choice(cfg: RunConfig, args):
    """No --arch: pick the architecture and size for the budget and corpus, from rates measured here, and say why."""
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
    print(choice.reason, flush=True)
    cfg.arch = choice.arch
    for key, value in choice.train.items():
        if getattr(args, key, None) is None:
            setattr(cfg.train, key, value)
    if not cfg.train.threads and device.type == "cpu" and measured.threads:
        cfg.train.threads = measured.threads[choice.model["n_embd"]]
    return model_config(cfg.arch, choice.model)


def resume_config(args) -> RunConfig:
    from ..config import parse_duration

    given = [f"--{k.replace('_', '-')}" for k in ("arch", "tokenizer", "out", "config", "val_fraction",
                                                   "batch_size", "seq_len", "lr", "seed", "init", "softmax",
                                                   "style_by", "style_dim")
             if getattr(args, k) is not None] + (["CORPUS"] if args.corpus else []) + \
        (["--val"] if args.val else []) + (["--set"] if args.set else []) + \
        (["--backward"] if args.backward else [])
    if given:
        raise SeqlabError(f"--resume continues a run as it was configured; it cannot be combined with "
                          f"{', '.join(given)} (only --budget, --max-steps, --device and --threads)")
    cfg = read_config(Path(args.resume))
    if args.budget:
        cfg.train.budget_seconds, cfg.train.max_steps = parse_duration(args.budget), 0
    elif args.max_steps is not None:
        cfg.train.budget_seconds, cfg.train.max_steps = 0.0, args.max_steps
    if args.device:
        cfg.train.device = args.device
    if args.threads is not None:
        cfg.train.threads = args.threads
    return cfg


def cli(args) -> None:
    if args.resume:
        run_dir = Path(args.resume).resolve()
        cfg = resume_config(args)
        if not distributed.train_processes(train, cfg, run_dir, resume=True, nproc=args.nproc):
            train(cfg, run_dir, resume=True)
        return
    cfg = config_from_args(args)
    run_dir = Path(args.out) if args.out else default_run_dir(cfg.arch)
    if (run_dir / CONFIG_FILE).exists():
        raise SeqlabError(f"{run_dir} already holds a run; continue it with --resume {run_dir} or pick another --out")
    if not distributed.train_processes(train, cfg, run_dir, init=args.init, nproc=args.nproc):
        train(cfg, run_dir, init=args.init)
    if distributed.is_rank_zero():
        link_latest(run_dir)
