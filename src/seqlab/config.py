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
from .options import (Kind, Numeric, PathKind, budget, corpus_path, device, integer, number, one_of, seed, text,
                      tokenizer)

FORMAT_VERSION = 1  # bump when a run directory written by older code can no longer be read
STYLE_BY = ("file", "dir")  # what counts as one source for style vectors (models/style.py)
SOFTMAXES = ("full", "adaptive", "sampled")  # the output layer (models/heads.py)
PRECISIONS = ("auto", "fp32", "bf16")  # train.precision (train/speed.py)
TRACKERS = ("tensorboard",)  # what --log writes besides metrics.jsonl (tracking.py)
ARCH_NAMES = ("transformer", "lstm", "qrnn", "conv", "stack")  # models.ARCHS, named here for RunConfig.arch


def setting(default=dataclasses.MISSING, kind: Kind | None = None, *, flag: str | None = None, factory=None):
    """A config field that says what it accepts: `batch_size: int = setting(32, integer(min=1), flag="--batch-size")`.

    `kind` (seqlab.options) checks the value, or each item of a list; `flag` is the command-line option that sets
    it, named in errors beside the key. A field whose kind is a path kind is checked by `check_paths`, not when a
    config is read (a run stays readable after its corpus moved).
    """
    metadata = {"kind": kind, "flag": flag}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


positive = integer(min=1)
non_negative = integer(min=0)
weight = number(min=0)  # a non-negative finite number (a weight, a rate, seconds)
fraction = number(min=0, max=1, min_open=True, max_open=True)
dropout_rate = number(min=0, max=1, max_open=True)


@dataclass
class DataConfig:
    paths: list[str] = setting(kind=corpus_path, flag="CORPUS", factory=list)  # files, dirs or globs; [] = bundled
    val_paths: list[str] = setting(kind=corpus_path, flag="--val", factory=list)  # held-out files (else split)
    val_fraction: float = setting(0.1, fraction, flag="--val-fraction")  # held-out = last fraction of each document
    tokenizer: str = setting("byte", tokenizer, flag="--tokenizer")  # "byte" or "bpe:VOCAB"
    backward: bool = False  # model the text right to left (a second opinion for `seqlab surprise --backward`)
    text_field: str = setting("", text, flag="--text-field")  # JSONL/CSV/Parquet: a record's field is a document


@dataclass
class TrainConfig:
    budget_seconds: float = setting(0.0, weight)  # wall-clock budget (--budget); 0 = use max_steps
    max_steps: int = setting(0, non_negative)  # --max-steps; 0 = use the budget
    batch_size: int = setting(32, positive, flag="--batch-size")
    seq_len: int = setting(128, positive, flag="--seq-len")  # tokens per training window (BPTT length)
    lr: float = setting(3e-3, number(min=0, min_open=True), flag="--lr")
    min_lr_ratio: float = setting(0.05, number(min=0, max=1))  # the schedule decays to lr * min_lr_ratio
    warmup_fraction: float = setting(0.03, number(min=0, max=1, max_open=True))
    weight_decay: float = setting(0.1, weight)
    grad_clip: float = setting(1.0, weight)  # 0 = no clipping
    seed: int = setting(1337, seed, flag="--seed")
    eval_every_seconds: float = setting(30.0, weight)  # 0 = after every step
    eval_every_steps: int = setting(0, non_negative)  # used instead of seconds when > 0 (deterministic runs)
    eval_tokens: int = setting(32768, positive)  # fixed held-out subset used during training
    checkpoint_every_seconds: float = setting(60.0, weight)  # 0 = after every step
    device: str = setting("auto", device, flag="--device")
    threads: int = setting(0, non_negative, flag="--threads")  # 0 = every core
    log: str = setting("", one_of("", *TRACKERS), flag="--log")  # "tensorboard": the curves as TensorBoard scalars
    precision: str = setting("auto", one_of(*PRECISIONS))  # auto: bf16 autocast where the device computes bf16 natively
    compile: bool = False  # torch.compile the training step (pays for budgets of hours; see train/speed.py)


MIXER_SELECTORS = ("order1", "order2", "seen", "warmth")  # the small contexts that can select mixing weights


@dataclass
class CountModelConfig:
    """The long-range count model mixed with the network when scoring (see countmodel/)."""

    enabled: bool = True
    orders: list[int] = setting(kind=positive, factory=lambda: [1, 2, 3, 4, 5, 6, 8, 12, 16, 24])
    experts: list[int] = setting(kind=positive, factory=lambda: [2, 4, 24])  # the blends (orders up to k) weighed
    match_orders: list[int] = setting(kind=positive, factory=lambda: [32, 64, 128, 256, 512, 1024])  # match expert
    match_confidence: float = setting(0.99, fraction)  # its probability of the longest seen context's usual next
    w_match: float = setting(0.5, weight)  # its prior weight where a match order was seen
    recent_expert: bool = True  # one more blend, up to the longest expert order, of the text's own counts alone
    w_recent: float = setting(0.1, weight)  # its prior weight
    escape_per_type: float = setting(8.0, weight)  # Witten-Bell escape weight per distinct continuation seen
    escape_base: float = setting(2.0, number(min=0, min_open=True))
    w_network: float = setting(1.0, weight)  # prior mixing weights, adapted online to each text:
    w_counts: float = setting(0.35, weight)  # the counts' weight where only short contexts were seen before,
    w_counts_longest: float = setting(1.0, weight)  # rising to this where the longest order was seen
    learning_rate: float = setting(0.02, weight)
    chunk: int = setting(256, positive)  # tokens scored between count and weight updates
    # more weight sets, added to the bucket's, selected by small contexts (countmodel/mixer.py MIXER_SELECTORS)
    select: list[str] = setting(kind=one_of(*MIXER_SELECTORS), factory=lambda: ["order1", "warmth"])
    sse: float = setting(0.25, number(min=0, max=1))  # the SSE stage's share of the top token's probability (0: off)
    sse_context: str = setting("seen", one_of(*MIXER_SELECTORS))  # the small context that selects its cells
    words: bool = True  # a word model: counts after the current partial word, and after the previous word and it
    # a bitwise context-mixing model (countmodel/bitcm.py) over the mix, byte-level runs only; eval and compress
    # (formats 135-138, 143-146) run it: 0.08-0.17 fewer bits a byte, mixed scoring at 0.7x the speed (docs/quality.md)
    bitcm: bool = True
    bitcm_history: int = setting(16 << 20, positive)  # training bytes it reads first (the most recent)
    max_history: int = setting(8_000_000, positive)  # training tokens kept (the most recent)
    # a stored table up to this size is memory-mapped (fastest, its pages count in RSS); a larger one is read
    # through disktable.py (RSS bounded whatever its size)
    map_up_to_gib: float = setting(4.0, number(min=0))
    max_vocab: int = setting(4096, positive)  # larger vocabularies score with the network alone


@dataclass
class StyleConfig:
    """Style vectors: one learned vector per source conditions the model (see models/style.py)."""

    by: str = setting("", one_of("", *STYLE_BY), flag="--style-by")  # "" (no styles), "file" or "dir"
    dim: int = setting(16, positive, flag="--style-dim")
    sources: list[str] = field(default_factory=list)  # resolved from the corpus when training starts


@dataclass
class CurriculumConfig:
    """A curriculum on the built-in tasks (seqlab train task:NAME --curriculum): see curriculum.py."""

    enabled: bool = setting(False, flag="--curriculum")
    # lengthen once the training error (1 - exact match) at the current lengths is below it
    threshold: float = setting(0.1, number(min=0, max=1, min_open=True))
    check_every_steps: int = setting(50, positive)
    examples: int = setting(64, positive)  # training examples of the current lengths answered greedily at each check


@dataclass
class SeriesConfig:
    """Numeric series: a table of channels in, per-step event probabilities out (see series/ and docs/series.md).

    Empty `events` = a text run. The rows are split walk-forward: `folds` test blocks, then a final hold-out.
    """

    events: list[str] = field(default_factory=list)  # "COLUMN:up=1%,down=0.5%,within=5", "COLUMN:label", ...
    time: str = ""  # the time column; "" = found (a column named like date/time, else the first column)
    drop: list[str] = field(default_factory=list)  # columns left out of the inputs
    transforms: list[str] = field(default_factory=list)  # "COLUMN:return|log_level|level", overriding the rule
    clip: float = 5.0  # standardised inputs are clipped to +-clip (a crash day stays large, not huge)
    lookback: int = 64  # every scored step reads at least this many steps before it (windows of 2 x lookback)
    folds: int = 4  # walk-forward test blocks
    holdout_fraction: float = 0.15  # the last rows, scored once at the end
    val_fraction: float = 0.2  # the end of each fold's training rows: early stopping (purged)
    embargo: int = 0  # rows excluded after a test block; 0 = horizon + 2 x lookback
    activation: str = "gelu"  # after the linear embedding of each step's vector: gelu, tanh or relu
    eval_every: int = 0  # optimizer steps between validation losses; 0 = one pass over the fold's training rows
    patience: int = 10  # validation losses without improvement before a fit stops
    lags: int = 10  # the baselines' lag window (rows t-lags+1 .. t)
    windows: list[int] = field(default_factory=lambda: [5, 20])  # LightGBM's rolling means and volatilities
    block: int = 0  # rows per bootstrap block; 0 = max(2 x horizon, rows ** (1/3))
    n_boot: int = 1000  # bootstrap draws per interval


@dataclass
class RunConfig:
    arch: str = setting("transformer", one_of(*ARCH_NAMES), flag="--arch")
    model: dict = field(default_factory=dict)  # the architecture's own config, resolved
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    counts: CountModelConfig = field(default_factory=CountModelConfig)
    style: StyleConfig = field(default_factory=StyleConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    series: SeriesConfig = field(default_factory=SeriesConfig)
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


@dataclass
class SamplingConfig:
    """How the next token is chosen; `seqlab generate`'s flags and the server's request fields share these ranges."""

    temperature: float = setting(0.8, number(min=0, max=2), flag="--temperature")  # 0 = greedy
    top_k: int = setting(0, non_negative, flag="--top-k")  # 0 = no limit
    top_p: float = setting(1.0, number(min=0, max=1, min_open=True), flag="--top-p")
    repetition_penalty: float = setting(1.0, number(min=0, max=10, min_open=True), flag="--repetition-penalty")  # > 1
    # discourages tokens already in the prompt or output

    def validate(self) -> "SamplingConfig":
        validate(self)
        return self


MAX_TOKENS = positive  # tokens one sample may generate: generate --max-tokens, the server's max_tokens
SAMPLES = positive  # samples per prompt: generate --n, the server's n


# ---- what a field accepts ---------------------------------------------------------------------------------------

def _field(cls, name: str) -> dataclasses.Field:
    return next(f for f in dataclasses.fields(cls) if f.name == name)


def kind_of(cls, name: str) -> Kind | None:
    """The kind a config field declares (its range or choices), or None."""
    return _field(cls, name).metadata.get("kind")


def option_for(key: str) -> Kind:
    """The argparse type= of the flag that sets RunConfig key `key` ("train.batch_size"): the field's own kind, so
    the flag, --set and a --config file refuse a value in the same words, naming the key."""
    cls, *parents, name = [RunConfig] + key.split(".")
    for part in parents:
        cls = typing.get_type_hints(cls)[part]
    return kind_of(cls, name).with_key(key)


def _label(f: dataclasses.Field, key: str) -> str:
    flag = f.metadata.get("flag")
    return f"{key} ({flag})" if flag else key


def check_field(cls, name: str, value, key: str, text: str | None = None, paths: bool = False) -> None:
    """Refuse a value its field's kind does not accept: one line naming the key (and its flag). Path kinds are
    checked only when `paths` is asked for (check_paths)."""
    f = _field(cls, name)
    kind = f.metadata.get("kind")
    if kind is None or isinstance(kind, PathKind) != paths:
        return
    for item in value if isinstance(value, list) else [value]:
        problem = kind.problem(item, text if not isinstance(value, list) else None)
        if problem:
            raise SeqlabError(f"{_label(f, key)}: {problem}")


def _fields(obj, prefix: str):
    """(config, field name, key, value) of every field that is not itself a config, through nested configs."""
    for f in dataclasses.fields(obj):
        key, value = f"{prefix}.{f.name}".lstrip("."), getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from _fields(value, key)
        else:
            yield obj, f.name, key, value


def validate(obj, prefix: str = "") -> None:
    """Check every field of a config (and of the configs it holds) against what it declares, then each whole."""
    for f in dataclasses.fields(obj):
        key, value = f"{prefix}.{f.name}".lstrip("."), getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            validate(value, key)
        else:
            check_field(type(obj), f.name, value, key)
    _check_whole(obj, prefix)


def _check_whole(obj, prefix: str) -> None:
    """What the fields cannot say alone: a config dataclass's own `check()`, returning a problem or None."""
    problem = obj.check() if hasattr(obj, "check") else None
    if problem:
        raise SeqlabError(f"{prefix or 'config'}: {problem}")


def check_paths(obj, prefix: str = "") -> None:
    """Check the fields that name paths (the corpus, --val files) for what they must be: before work starts."""
    for owner, name, key, value in _fields(obj, prefix):
        check_field(type(owner), name, value, key, paths=True)


# ---- building configs: from JSON, from KEY=VALUE ----------------------------------------------------------------

def from_dict(cls, data: dict, where: str = ""):
    """Build dataclass `cls` from a dict, rejecting unknown keys, wrong types and values out of range."""
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
        kind, key = hints[name], f"{where}.{name}".lstrip(".")
        if dataclasses.is_dataclass(kind):
            values[name] = from_dict(kind, value, f"{where}.{name}")
        else:
            values[name] = check_type(value, kind, _label(_field(cls, name), key))
            check_field(cls, name, values[name], key)
    obj = cls(**values)
    _check_whole(obj, where.lstrip("."))
    return obj


TYPE_PHRASES = {int: "an integer", float: "a number", str: "text", bool: "true or false", list: "a list"}


def check_type(value, kind, name: str):
    origin = typing.get_origin(kind) or kind
    if origin is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if origin is list:
        (item,) = typing.get_args(kind) or (object,)
        if not isinstance(value, list):
            raise SeqlabError(f"{name}: expected a list, got {value!r}")
        return [check_type(v, item, name) for v in value]
    if origin is object or (isinstance(value, origin) and not (origin is int and isinstance(value, bool))):
        return value
    raise SeqlabError(f"{name}: expected {TYPE_PHRASES.get(origin, origin.__name__)}, got {value!r}")


def parse_value(text: str, kind, name: str = "value", checked: Kind | None = None):
    """Turn a command-line string into a value of the field's type (parsed by its declared kind when it has one)."""
    origin = typing.get_origin(kind) or kind
    try:
        if origin is bool:
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return text.lower() in ("true", "1", "yes")
        if origin in (int, float) and isinstance(checked, Numeric):
            return checked.parse(text)
        if origin is int:
            return int(text)
        if origin is float:
            return float(text)
        if origin is list:  # "1,2,3" -> items of the list's own type
            (item,) = typing.get_args(kind) or (str,)
            return [parse_value(s, item, name, checked) for s in text.split(",") if s]
    except ValueError:
        raise SeqlabError(f"{name}: expected {TYPE_PHRASES.get(origin, origin.__name__)}, got {text!r}") from None
    return text


def apply_override(obj, dotted: str, text: str, prefix: str = ""):
    """Set `a.b=c` on nested dataclasses, converting the text to the field's type and checking it."""
    head, _, rest = dotted.partition(".")
    names = {f.name for f in dataclasses.fields(obj)}
    if head not in names:
        raise SeqlabError(f"unknown config key {head!r}; valid keys: {', '.join(sorted(names))}")
    key = f"{prefix}.{head}".lstrip(".")
    if rest:
        apply_override(getattr(obj, head), rest, text, key)
        return
    f, hint = _field(type(obj), head), typing.get_type_hints(type(obj))[head]
    if dataclasses.is_dataclass(hint) or (typing.get_origin(hint) or hint) is dict:
        raise SeqlabError(f"{key} is a section, not a value; set one of its keys, e.g. --set {key}.KEY=VALUE")
    value = parse_value(text, hint, _label(f, key), f.metadata.get("kind"))
    check_field(type(obj), head, value, key, text)
    setattr(obj, head, value)


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
    """'90s', '10m', '1.5h', or plain seconds -> seconds > 0: the --budget kind, for scripts."""
    try:
        seconds = budget.parse(text)
    except ValueError:
        raise SeqlabError(f"cannot read duration {text!r}; use e.g. 90s, 10m or 1.5h") from None
    problem = budget.problem(seconds, text)
    if problem:
        raise SeqlabError(f"duration {text!r}: {problem}")
    return seconds
