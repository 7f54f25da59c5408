"""`seqlab train --log tensorboard`: the training curves as TensorBoard scalars, beside metrics.jsonl.

metrics.jsonl stays the run's own record; a tracker receives the same records as they are written
(train.Metrics) and the training loss of every step. TensorBoard's event files go to RUN/tensorboard/:

    seqlab train books/ --log tensorboard
    tensorboard --logdir runs/            # every run side by side

Scalars, against the optimizer step: train/loss (nats per token, every step), train/bpb and held_out/bpb
(the training loss since the last evaluation and the held-out subset's bits per byte, at each evaluation),
lr, and at the end held_out/bpb_final (the whole held-out split, count model mixed in) and
held_out/bpb_network_final (the network alone). The resolved config is logged as text.
"""

from pathlib import Path

from .config import TRACKERS
from .errors import SeqlabError


def check(kind: str) -> None:
    """Fail before any work when --log names an unknown tracker or one whose package is not installed."""
    if not kind:
        return
    if kind not in TRACKERS:
        raise SeqlabError(f"--log {kind!r} is not a tracker seqlab writes; choose one of: {', '.join(TRACKERS)}")
    try:
        import tensorboard  # noqa: F401  (torch.utils.tensorboard needs it)
    except ImportError:
        raise SeqlabError("--log tensorboard needs the tensorboard package: pip install 'seqlab[tensorboard]' "
                          "(or pip install tensorboard)") from None


def open_tracker(kind: str, run_dir: Path, config_text: str = ""):
    """The tracker for `kind` ("" = none: returns None)."""
    check(kind)
    return TensorBoard(Path(run_dir) / "tensorboard", config_text) if kind else None


class TensorBoard:
    def __init__(self, log_dir: Path, config_text: str):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(log_dir))
        if config_text:
            self.writer.add_text("config", f"```\n{config_text}\n```")

    def step(self, step: int, loss: float) -> None:
        self.writer.add_scalar("train/loss", loss, step)

    def record(self, record: dict) -> None:
        """A metrics.jsonl record: eval and final records become scalars (flushed, so a live view sees them)."""
        event, step = record.get("event"), record.get("step")
        if event == "eval":
            for key, name in (("train_bpb", "train/bpb"), ("val_bpb", "held_out/bpb"), ("lr", "lr")):
                self.writer.add_scalar(name, record[key], step)
        elif event == "final":
            self.writer.add_scalar("held_out/bpb_final", record["val_bpb"], step)
            self.writer.add_scalar("held_out/bpb_network_final", record["val_bpb_network"], step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
