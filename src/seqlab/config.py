"""Typed configuration: dataclasses, overrides from the command line, JSON in and out.

A run's config.json is the full resolved RunConfig, so a run rebuilds itself.
Unknown keys and values of the wrong type are errors, never silently ignored.
"""

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path

from .errors import SeqlabError

FORMAT_VERSION = 1  # bump when a run directory written by older code can no longer be read


@dataclass
class DataConfig:
    paths: list[str] = field(default_factory=list)  # files, directories or globs; [] = bundled corpus
    val_paths: list[str] = field(default_factory=list)  # explicit held-out files (else split)
    val_fraction: float = 0.1  # held-out = last fraction of each document
    tokenizer: str = "byte"  # "byte" or "bpe:VOCAB"
    backward: bool = False  # model the text right to left (a second opinion for `seqlab surprise --backward`)


@dataclass
class TrainConfig:
    budget_seconds: float = 0.0  # wall-clock budget; 0 = use max_steps
    max_steps: int = 0
    batch_size: int = 32
    seq_len: int = 128  # tokens per training window (BPTT length for recurrent models)
    lr: float = 3e-3
    min_lr_ratio: float = 0.05  # the schedule decays to lr * min_lr_ratio
    warmup_fraction: float = 0.03
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 1337
    eval_every_seconds: float = 30.0
    eval_every_steps: int = 0  # used instead of seconds when > 0 (deterministic runs)
    eval_tokens: int = 32768  # fixed held-out subset used during training
    checkpoint_every_seconds: float = 60.0
    device: str = "auto"
    threads: int = 0  # 0 = every core
    precision: str = "auto"  # auto (bf16 autocast where the device computes bf16 natively), fp32 or bf16
    compile: bool = False  # torch.compile the training step (pays for budgets of hours; see train/speed.py)


@dataclass
class CountModelConfig:
    """The long-range count model mixed with the network when scoring (see countmodel/)."""

    enabled: bool = True
    orders: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5, 6, 8, 12, 16, 24])
    experts: list[int] = field(default_factory=lambda: [2, 4, 24])  # the blends (orders up to k) the mixer weighs
    match_orders: list[int] = field(default_factory=lambda: [32, 64, 128, 256, 512, 1024])  # the match expert's
    match_confidence: float = 0.99  # its probability of the longest seen context's usual next token
    w_match: float = 0.5  # its prior weight where a match order was seen
    recent_expert: bool = True  # one more blend, up to the longest expert order, of the text's own counts alone
    w_recent: float = 0.1  # its prior weight
    escape_per_type: float = 8.0  # Witten-Bell escape weight per distinct continuation seen
    escape_base: float = 2.0
    w_network: float = 1.0  # prior mixing weights, adapted online to each text:
    w_counts: float = 0.35  # the counts' weight where only short contexts were seen before,
    w_counts_longest: float = 1.0  # rising to this where the longest order was seen
    learning_rate: float = 0.02
    chunk: int = 256  # tokens scored between count and weight updates
    max_history: int = 8_000_000  # training tokens kept (the most recent)
    max_vocab: int = 4096  # larger vocabularies score with the network alone


@dataclass
class StyleConfig:
    """Style vectors: one learned vector per source conditions the model (see models/style.py)."""

    by: str = ""  # "" (no styles), "file" or "dir": what counts as one source
    dim: int = 16
    sources: list[str] = field(default_factory=list)  # resolved from the corpus when training starts


@dataclass
class RunConfig:
    arch: str = "transformer"
    model: dict = field(default_factory=dict)  # the architecture's own config, resolved
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    counts: CountModelConfig = field(default_factory=CountModelConfig)
    style: StyleConfig = field(default_factory=StyleConfig)
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def from_dict(cls, data: dict, where: str = ""):
    """Build dataclass `cls` from a dict, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise SeqlabError(f"config{where}: expected an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise SeqlabError(
            f"unknown config key{where}.{unknown[0]}; valid keys: {', '.join(sorted(names))}"
        )
    values = {}
    for name, value in data.items():
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            values[name] = from_dict(kind, value, f"{where}.{name}")
        else:
            values[name] = check_type(value, kind, f"{where}.{name}".lstrip("."))
    return cls(**values)


def check_type(value, kind, name: str):
    origin = typing.get_origin(kind) or kind
    if origin is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if origin is list:
        (item,) = typing.get_args(kind) or (object,)
        if not isinstance(value, list):
            raise SeqlabError(f"config {name}: expected a list, got {value!r}")
        return [check_type(v, item, name) for v in value]
    if origin is object or (isinstance(value, origin) and not (origin is int and isinstance(value, bool))):
        return value
    raise SeqlabError(f"config {name}: expected {origin.__name__}, got {value!r}")


def parse_value(text: str, kind):
    """Turn a command-line string into a value of the field's type."""
    origin = typing.get_origin(kind) or kind
    try:
        if origin is bool:
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return text.lower() in ("true", "1", "yes")
        if origin is int:
            return int(text)
        if origin is float:
            return float(text)
        if origin is list:  # "1,2,3" -> items of the list's own type
            (item,) = typing.get_args(kind) or (str,)
            return [parse_value(s, item) for s in text.split(",") if s]
    except ValueError:
        raise SeqlabError(f"cannot read {text!r} as {origin.__name__}") from None
    return text


def apply_override(obj, dotted: str, text: str):
    """Set `a.b=c` on nested dataclasses, converting the text to the field's type."""
    head, _, rest = dotted.partition(".")
    names = {f.name for f in dataclasses.fields(obj)}
    if head not in names:
        raise SeqlabError(f"unknown config key {head!r}; valid keys: {', '.join(sorted(names))}")
    if rest:
        apply_override(getattr(obj, head), rest, text)
    else:
        setattr(obj, head, parse_value(text, typing.get_type_hints(type(obj))[head]))


def load_config_file(path: str) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SeqlabError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SeqlabError(f"cannot read config file {path}: {e}") from None
    except json.JSONDecodeError as e:
        raise SeqlabError(f"config file {path} is not valid JSON: {e}") from None


def parse_duration(text: str) -> float:
    """'90s', '10m', '1.5h', or plain seconds -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    t = text.strip().lower()
    try:
        seconds = float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        raise SeqlabError(f"cannot read duration {text!r}; use e.g. 90s, 10m or 1.5h") from None
    if seconds <= 0:
        raise SeqlabError(f"duration must be positive, got {text!r}")
    return seconds
