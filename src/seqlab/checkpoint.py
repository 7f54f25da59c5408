"""Checkpoints: one safetensors file per run, replaced atomically.

The file holds the weights (`model.*`), and, for resuming, the optimizer state
(`optim.*`), any state the model carries between windows (`carry.*`) and the
trainer's position as JSON metadata. One file means weights and trainer state
can never disagree; temp file + fsync + rename means a kill at any moment
leaves the previous checkpoint whole. Tensors are saved from the CPU, so a run
trained on a GPU loads on a CPU and the reverse. Nothing is ever unpickled.
"""

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes

from .config import FORMAT_VERSION
from .errors import SeqlabError

CHECKPOINT_FILE = "checkpoint.safetensors"


def before_rename(tmp: Path, path: Path) -> None:
    """Runs between the temp file's fsync and its rename over `path`; nothing here. A test replaces it to kill
    the process at that moment and show that the previous file is still whole."""


class atomic_file:  # noqa: N801 - used as `with atomic_file(path) as f:`, like open()
    """A file written beside `path` (fsync'd) and renamed onto it when the block ends without an error, else
    removed: a reader never sees half of it. A device or pipe (-o /dev/null) is written to, never replaced."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.direct = self.path.exists() and not self.path.is_file()
        self.tmp = self.path if self.direct else self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")

    def __enter__(self):
        self.file = open(self.tmp, "wb")
        return self.file

    def __exit__(self, kind, *rest):
        if self.direct:
            self.file.close()
            return
        if kind is not None:
            self.file.close()
            self.tmp.unlink(missing_ok=True)
            return
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        before_rename(self.tmp, self.path)
        os.replace(self.tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_file(path) as f:
        f.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def _unique_weights(model: torch.nn.Module) -> tuple[dict, dict]:
    """Weights without tied duplicates, and the names that alias another."""
    tensors, aliases, seen = {}, {}, {}
    for name, t in model.state_dict().items():
        key = (t.data_ptr(), t.shape) if t.numel() else None
        if key in seen:
            aliases[name] = seen[key]
            continue
        if key is not None:
            seen[key] = name
        tensors[name] = t.detach().cpu().contiguous()
    return tensors, aliases


def save_checkpoint(run_dir: Path, model, optimizer=None, trainer: dict | None = None, carry=None) -> None:
    weights, aliases = _unique_weights(model)
    tensors = {f"model.{k}": v for k, v in weights.items()}
    metadata = {"format_version": str(FORMAT_VERSION), "aliases": json.dumps(aliases)}
    if optimizer is not None:
        opt = optimizer.state_dict()
        for i, slots in opt["state"].items():
            for k, v in slots.items():
                tensors[f"optim.{i}.{k}"] = v.detach().cpu().contiguous()
        metadata["optim_groups"] = json.dumps(opt["param_groups"])
    for i, t in enumerate(carry or ()):
        tensors[f"carry.{i}"] = t.detach().cpu().contiguous()
    if trainer is not None:
        metadata["trainer"] = json.dumps(trainer)
    atomic_write_bytes(Path(run_dir) / CHECKPOINT_FILE, safetensors_bytes(tensors, metadata=metadata))


def _open(run_dir: Path):
    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.exists():
        raise SeqlabError(f"{run_dir} has no checkpoint yet ({CHECKPOINT_FILE}); train it first")
    try:
        return safe_open(str(path), framework="pt", device="cpu")
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise SeqlabError(f"cannot read checkpoint {path}: {e}") from None


def load_weights(run_dir: Path, model: torch.nn.Module) -> dict:
    """Load the weights into `model` (on whatever device it is); returns the file's metadata."""
    with _open(run_dir) as f:
        meta = f.metadata() or {}
        if meta.get("format_version") != str(FORMAT_VERSION):
            raise SeqlabError(
                f"checkpoint in {run_dir} has format {meta.get('format_version')!r}; this seqlab reads "
                f"format {FORMAT_VERSION}: retrain the run with this version"
            )
        state = {k[6:]: f.get_tensor(k) for k in f.keys() if k.startswith("model.")}
    for alias, target in json.loads(meta.get("aliases", "{}")).items():
        state[alias] = state[target]
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise SeqlabError(f"checkpoint in {run_dir} does not fit its config: {first}") from None
    return meta


def load_trainer_state(run_dir: Path, optimizer, device) -> tuple[dict, list]:
    """Restore the optimizer; return (trainer position, carried state tensors)."""
    with _open(run_dir) as f:
        meta = f.metadata() or {}
        if "trainer" not in meta:
            raise SeqlabError(f"checkpoint in {run_dir} has no trainer state to resume from")
        keys = list(f.keys())
        slots: dict[int, dict] = {}
        for k in keys:
            if k.startswith("optim."):
                _, i, name = k.split(".", 2)
                slots.setdefault(int(i), {})[name] = f.get_tensor(k)
        carry = [f.get_tensor(f"carry.{i}").to(device) for i in range(sum(k.startswith("carry.") for k in keys))]
    optimizer.load_state_dict({"state": slots, "param_groups": json.loads(meta["optim_groups"])})
    return json.loads(meta["trainer"]), carry


def checkpoint_metadata(run_dir: Path) -> dict:
    with _open(run_dir) as f:
        return f.metadata() or {}
