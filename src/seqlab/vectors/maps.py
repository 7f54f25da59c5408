"""A 2-D map of word vectors: PCA and t-SNE side by side, as a PNG and as an HTML page with hover labels.

    draw_map(word_vectors, "words.png")   # also words.html (self-contained SVG: hover a dot for its word)

The most frequent `top` words are mapped; the PNG labels the most frequent of them, the page all of them.
"""

import html
from pathlib import Path

import numpy as np

from ..styles import pca_2d

LABELLED = 60  # words named on the PNG (all are named on hover in the HTML)


def layouts(vectors: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """{"PCA": (n, 2), "t-SNE": (n, 2)}."""
    from sklearn.manifold import TSNE

    coords, _ = pca_2d(vectors.astype(np.float64))
    out = {"PCA": coords}
    if len(vectors) >= 4:
        perplexity = float(min(30, (len(vectors) - 1) / 3))
        out["t-SNE"] = TSNE(n_components=2, perplexity=perplexity, init="pca", metric="cosine",
                            random_state=seed).fit_transform(vectors.astype(np.float64))
    return out


def draw_map(wv, out, top: int = 500, title: str = "word vectors") -> tuple[Path, Path]:
    """Write out (PNG) and the same name with .html; returns both paths."""
    order = np.argsort(-wv.counts, kind="stable")[:top]
    words, counts, vectors = [wv.words[i] for i in order], wv.counts[order], wv.vectors[order]
    maps = layouts(vectors)
    png, page = Path(out), Path(out).with_suffix(".html")
    _png(words, maps, png, title)
    page.write_text(_html(words, counts, maps, title), encoding="utf-8")
    return png, page


def _png(words, maps, out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(maps), figsize=(7 * len(maps), 6.5), dpi=110, squeeze=False)
    for ax, (name, xy) in zip(axes[0], maps.items()):
        ax.scatter(xy[:, 0], xy[:, 1], s=6, color="#2c7fb8", alpha=0.6)
        for w, (x, y) in list(zip(words, xy))[:LABELLED]:
            ax.annotate(w, (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7)
        ax.set_title(f"{name}: {len(words)} most frequent words")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def _svg(words, counts, xy: np.ndarray, size: int = 560, pad: int = 20) -> str:
    lo, hi = xy.min(0), xy.max(0)
    scaled = pad + (xy - lo) / np.maximum(hi - lo, 1e-12) * (size - 2 * pad)
    dots = "\n".join(
        f'<g><circle cx="{x:.1f}" cy="{size - y:.1f}" r="4"/><title>{html.escape(w)} ({int(c)})</title>'
        f'<text x="{x + 5:.1f}" y="{size - y - 5:.1f}">{html.escape(w)}</text></g>'
        for w, c, (x, y) in zip(words, counts, scaled))
    return f'<svg viewBox="0 0 {size} {size}" width="{size}" height="{size}">{dots}</svg>'


def _html(words, counts, maps, title: str) -> str:
    panels = "\n".join(f"<figure><figcaption>{name}</figcaption>{_svg(words, counts, xy)}</figure>"
                       for name, xy in maps.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; }}
figure {{ display: inline-block; margin: 0 1rem 1rem 0; border: 1px solid #ddd; }}
figcaption {{ font-weight: 600; padding: .3rem .5rem; }}
circle {{ fill: #2c7fb8; fill-opacity: .6; }}
text {{ font-size: 11px; display: none; pointer-events: none; }}
g:hover circle {{ fill: #d7301f; fill-opacity: 1; }}
g:hover text {{ display: inline; }}
</style></head>
<body><h1>{html.escape(title)}</h1>
<p>{len(words)} most frequent words; hover a dot to see its word and count.</p>
{panels}
</body></html>
"""
