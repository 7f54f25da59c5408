"""Learning-curve PNGs: held-out and training bits per byte against wall-clock seconds."""

from pathlib import Path

from ..run import read_metrics


def plot_curve(run_dir: Path, out: Path | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evals = [r for r in read_metrics(run_dir) if r.get("event") == "eval"]
    out = Path(out or Path(run_dir) / "curve.png")
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    if evals:
        t = [r["elapsed"] for r in evals]
        ax.plot(t, [r["train_bpb"] for r in evals], label="training (recent batches)", color="#999999")
        ax.plot(t, [r["val_bpb"] for r in evals], label="held-out (fixed subset)", color="#c0392b", marker=".")
    ax.set_xlabel("wall-clock seconds")
    ax.set_ylabel("bits per byte")
    ax.set_title(Path(run_dir).name)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
