"""`seqlab styles`: a styled run's sources, their training bytes, and a 2-D PCA map of their vectors."""

import sys
from pathlib import Path

import numpy as np

from .errors import SeqlabError
from .models.style import styles_of
from .options import output_file, run_dir
from .run import load, read_metrics


def pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(coordinates (S, 2) on the two main axes, fraction of the spread each axis holds)."""
    centred = vectors - vectors.mean(0)
    _, singular, axes = np.linalg.svd(centred, full_matrices=False)
    coords = np.zeros((len(vectors), 2))
    k = min(2, len(singular))
    coords[:, :k] = centred @ axes[:k].T
    spread = singular**2 / max(float((singular**2).sum()), 1e-12)
    return coords, np.pad(spread[:k], (0, 2 - k))


def styles(run_dir, out=None) -> dict:
    """List a styled run's sources and write the PCA plot (default RUN/styles.png)."""
    run = load(run_dir)
    table = styles_of(run.model)
    if table is None:
        raise SeqlabError(f"{run_dir} was trained without styles; train with --style-by file or --style-by dir")
    record = next((r for r in read_metrics(run_dir) if r.get("event") == "styles"), {})
    sizes = record.get("train_bytes", {})
    coords, spread = pca_2d(table.vectors.weight.detach().cpu().double().numpy())
    out = Path(out or Path(run_dir) / "styles.png")
    plot_styles(table.names, coords, spread, out, title=f"style vectors of {Path(run_dir).name} (by {table.by})")
    rows = [{"name": name, "train_bytes": sizes.get(name), "pc1": float(x), "pc2": float(y)}
            for name, (x, y) in zip(table.names, coords)]
    return {"run": str(run_dir), "by": table.by, "dim": table.vectors.embedding_dim, "styles": rows,
            "spread": spread.tolist(), "plot": str(out)}


def plot_styles(names: list[str], coords: np.ndarray, spread: np.ndarray, out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5), dpi=110)
    ax.scatter(coords[:, 0], coords[:, 1], color="#c0392b")
    for name, (x, y) in zip(names, coords):
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel(f"PC1 ({spread[0]:.0%} of the spread)")
    ax.set_ylabel(f"PC2 ({spread[1]:.0%} of the spread)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def format_styles(d: dict) -> str:
    width = max(len("source"), *(len(r["name"]) for r in d["styles"]))
    lines = [f"{'source':<{width}} {'train bytes':>12} {'pc1':>8} {'pc2':>8}"]
    for r in d["styles"]:
        size = f"{r['train_bytes']:,}" if r["train_bytes"] is not None else "?"
        lines.append(f"{r['name']:<{width}} {size:>12} {r['pc1']:>8.3f} {r['pc2']:>8.3f}")
    lines.append(f"{len(d['styles'])} styles of {d['dim']} numbers, one per {d['by']}; plot: {d['plot']}")
    return "\n".join(lines)


def add_cli(sub) -> None:
    p = sub.add_parser("styles", help="list a styled run's sources and plot their style vectors")
    p.add_argument("run", type=run_dir)
    p.add_argument("--out", type=output_file, help="PNG file for the 2-D PCA plot (default RUN/styles.png)")
    p.set_defaults(func=cli)


def cli(args) -> None:
    print(format_styles(styles(args.run, args.out)), file=sys.stdout)
