"""A run directory is the unit users hold; `load` rebuilds everything from it.

    runs/NAME/
      config.json              full resolved config (RunConfig)
      tokenizer.json           the tokenizer (Hugging Face format for BPE)
      checkpoint.safetensors   weights + trainer state (see checkpoint.py)
      metrics.jsonl            one JSON object per evaluation / event
      history.npy              training tokens for the count model mixed in when scoring
      curve.png  samples.txt   learning curve, samples at the end of training
"""

import dataclasses
import functools
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint import load_weights
from .config import FORMAT_VERSION, RunConfig, from_dict
from .data.tokenizer import load_tokenizer, reading
from .errors import SeqlabError
from .models import SeqModel, build_model
from .models.style import attach_styles

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
# Keys a run's config.json gained after runs were saved without them, with the value those runs had: a default that
# changed later must not change a saved run (its eval figure, and the files it compressed, which decompress would
# refuse). counts.bitcm came in off.
BEFORE_THE_KEY = {"counts": {"bitcm": False}}


@dataclass
class Run:
    path: Path
    config: RunConfig
    tokenizer: object
    model: SeqModel
    device: torch.device

    @functools.cached_property
    def count_model(self):
        """The long-range count model mixed in when scoring, or None (see countmodel/)."""
        from .countmodel import load_count_model

        return load_count_model(self.path, self.tokenizer.vocab_size, self.config.counts, self.tokenizer.token_bytes)

    @functools.cached_property
    def in_reading_order(self) -> "Run":
        """This run for text already in the order it reads (a backward run fed reversed bytes): the tokenizer
        without its reversal; the same model and count model, loaded once."""
        view = dataclasses.replace(self, tokenizer=getattr(self.tokenizer, "inner", self.tokenizer))
        view.__dict__["count_model"] = self.count_model  # cached_property's slot: shared, not loaded again
        return view


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SeqlabError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SeqlabError("--device cuda was asked for, but no CUDA GPU is available; use --device cpu")
    return device


def read_config(run_dir: Path) -> RunConfig:
    run_dir = Path(run_dir)
    path = run_dir / CONFIG_FILE
    if not run_dir.exists():
        raise SeqlabError(f"no such run directory: {run_dir}")
    if not path.exists():
        raise SeqlabError(f"{run_dir} is not a seqlab run (no {CONFIG_FILE}); create one with `seqlab train`")
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SeqlabError(f"cannot read {path}: {e}") from None
    version = raw.get("format_version") if isinstance(raw, dict) else None
    if version != FORMAT_VERSION:
        raise SeqlabError(
            f"{run_dir} was written with run format {version!r}; this seqlab reads format "
            f"{FORMAT_VERSION}: retrain it with this version"
        )
    return from_dict(RunConfig, _with_keys_it_predates(raw))


def _with_keys_it_predates(raw: dict) -> dict:
    """A saved config with each key of BEFORE_THE_KEY it lacks at the value it had then (from_dict would give today's
    default)."""
    for section, keys in BEFORE_THE_KEY.items():
        saved = raw.setdefault(section, {})
        if isinstance(saved, dict):  # anything else: from_dict refuses it in one line
            for key, value in keys.items():
                saved.setdefault(key, value)
    return raw


def load(run_dir, device: str = "cpu") -> Run:
    """Rebuild a trained run: config, tokenizer and model (in eval mode) on `device`."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    if config.series.events:
        raise SeqlabError(f"{run_dir} is a numeric series run (train --series): use seqlab eval, predict or serve "
                          f"with it")
    tokenizer = reading(load_tokenizer(run_dir), config.data.backward)
    dev = resolve_device(device)
    model = build_model(config.arch, config.model)
    attach_styles(model, config.style)
    load_weights(run_dir, model)
    return Run(run_dir, config, tokenizer, model.to(dev).eval(), dev)


def require_forward(run_dir, config: RunConfig, verb: str) -> None:
    """Refuse a backward run where text must come out, or line up with the input, left to right."""
    if config.data.backward:
        raise SeqlabError(f"{run_dir} reads text right to left (trained with --backward): {verb} needs a "
                          f"forward run; a backward run serves `seqlab surprise RUN FILE --backward {run_dir}`, "
                          f"eval and compress")


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
    return records
