"""`seqlab train --series`'s flags -> RunConfig, and the checks on its values.

Defaults for a series run (any of them changes with --set): the lstm trunk; trunks sized for thousands of
rows rather than millions of tokens (SERIES_MODELS); fits of at most DEFAULT_MAX_STEPS steps that usually
stop early. --budget is the wall-clock time of all the model's fits together, shared evenly between them;
--max-steps caps every fit.
"""

from dataclasses import asdict

from ..config import RunConfig, apply_override, from_dict, load_config_file, parse_duration
from ..errors import SeqlabError
from ..models.events import SERIES_ARCHS, check_series_arch, event_config

DEFAULT_ARCH = "lstm"
DEFAULT_MAX_STEPS = 2000
SERIES_MODELS = {  # per trunk: what --series builds unless --set model.X says otherwise
    "lstm": {"n_layer": 2, "n_hidden": 64, "dropout": 0.3},
    "qrnn": {"n_layer": 2, "n_hidden": 64, "window": 2, "dropout": 0.3},
    "conv": {"n_layer": 6, "n_channels": 32, "kernel_size": 2, "cycle": 0, "dropout": 0.3},  # sees 64 steps
    "transformer": {"n_layer": 2, "n_head": 4, "n_embd": 64, "dropout": 0.3},
}
# A noisy series is memorised long before its causes are found: heavy dropout and weight decay. One fit of the
# default lstm on 6,000 planted rows (seqlab.series.synthetic: lag 30, 8 noise channels) reached a test ROC AUC
# of 0.97 with them and 0.76 with dropout 0.1 and weight decay 0.01 (both with models/events.remember_over).
SERIES_TRAIN = {"batch_size": 32, "lr": 3e-3, "warmup_fraction": 0.02, "min_lr_ratio": 0.1, "weight_decay": 0.1,
                "max_steps": DEFAULT_MAX_STEPS, "budget_seconds": 0.0}
TEXT_ONLY = ("tokenizer", "softmax", "val_fraction", "seq_len", "init", "nproc", "style_by", "style_dim", "resume")
FLAGS = {"batch_size": "train.batch_size", "lr": "train.lr", "seed": "train.seed", "device": "train.device",
         "threads": "train.threads", "max_steps": "train.max_steps", "time": "series.time"}


def series_config(args) -> RunConfig:
    """The RunConfig of `seqlab train FILE --series --event ...` (args: train's parsed flags)."""
    given = [f"--{k.replace('_', '-')}" for k in TEXT_ONLY if getattr(args, k, None) is not None]
    given += ["--val"] * bool(args.val) + ["--backward"] * bool(args.backward)
    if given:
        raise SeqlabError(f"{given[0]} is for text runs; a --series run takes --event, --time, --arch, --budget, "
                          f"--max-steps, --out, --set, --config, --batch-size, --lr, --seed, --device, --threads")
    if not args.corpus:
        raise SeqlabError("--series needs a table: seqlab train prices.csv --series --event \"COL:up=1%,within=5\"")
    cfg = from_dict(RunConfig, load_config_file(args.config)) if args.config else RunConfig(arch=DEFAULT_ARCH)
    if not args.config:
        for key, value in SERIES_TRAIN.items():
            setattr(cfg.train, key, value)
    cfg.arch = args.arch or cfg.arch
    cfg.data.paths = list(args.corpus)
    cfg.series.events = list(args.event or cfg.series.events)
    for flag, key in FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            apply_override(cfg, key, str(value))
    if args.budget:
        cfg.train.budget_seconds, cfg.train.max_steps = parse_duration(args.budget), 0
    model_sets = []
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise SeqlabError(f"--set expects KEY=VALUE, got {item!r}")
        if key.startswith("model."):
            model_sets.append((key[len("model."):], value))
        else:
            apply_override(cfg, key, value)
    check_series_arch(cfg.arch, cfg.series.activation)
    context = 2 * cfg.series.lookback
    base = cfg.model if args.config and cfg.model else SERIES_MODELS[cfg.arch]
    model_cfg = event_config(cfg.arch, base, context)
    for key, value in model_sets:
        apply_override(model_cfg, key, value)
    cfg.model = asdict(event_config(cfg.arch, asdict(model_cfg), context))
    check_settings(cfg)
    return cfg


def make_config(paths: list[str], events: list[str], arch: str = DEFAULT_ARCH, model: dict | None = None,
                train: dict | None = None, **series) -> RunConfig:
    """The RunConfig of a series run from Python (what series_config builds from flags), e.g.
    make_config(["prices.csv"], ["SPX:up=1%,down=0.5%,within=5"], "qrnn", train={"max_steps": 500}, folds=3)."""
    cfg = RunConfig(arch=arch)
    cfg.data.paths = [str(p) for p in paths]
    cfg.series.events = list(events)
    for key, value in {**SERIES_TRAIN, **(train or {})}.items():
        setattr(cfg.train, key, value)
    for key, value in series.items():
        setattr(cfg.series, key, value)
    check_series_arch(arch, cfg.series.activation)
    cfg.model = asdict(event_config(arch, model if model is not None else SERIES_MODELS[arch],
                                    2 * cfg.series.lookback))
    check_settings(cfg)
    return cfg


def check_settings(cfg: RunConfig) -> None:
    s, tc = cfg.series, cfg.train
    check_series_arch(cfg.arch, s.activation)
    bounds = [("series.lookback", s.lookback, 1), ("series.folds", s.folds, 1), ("series.eval_every", s.eval_every, 0),
              ("series.patience", s.patience, 1), ("series.lags", s.lags, 1), ("series.embargo", s.embargo, 0),
              ("series.block", s.block, 0), ("series.n_boot", s.n_boot, 10), ("train.batch_size", tc.batch_size, 1),
              ("train.max_steps", tc.max_steps, 0)]
    for name, value, low in bounds:
        if value < low:
            raise SeqlabError(f"{name} must be >= {low}, got {value}")
    for name, value in (("series.holdout_fraction", s.holdout_fraction), ("series.val_fraction", s.val_fraction)):
        if not 0 < value <= 0.5:
            raise SeqlabError(f"{name} must be in (0, 0.5], got {value}")
    if s.clip <= 0 or tc.lr <= 0:
        raise SeqlabError(f"series.clip and train.lr must be > 0, got {s.clip} and {tc.lr}")
    if not s.windows or min(s.windows) < 2:
        raise SeqlabError(f"series.windows are rolling windows of >= 2 rows, got {s.windows}")
    if tc.budget_seconds <= 0 and tc.max_steps <= 0:
        raise SeqlabError("give each fit a limit: --max-steps N or --budget (e.g. 5m)")


def is_series(cfg: RunConfig) -> bool:
    return bool(cfg.series.events)


__all__ = ["series_config", "make_config", "check_settings", "is_series", "SERIES_ARCHS"]
