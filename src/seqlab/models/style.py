"""Style vectors: one learned vector per source (a file or a directory) that conditions any architecture.

Each source owns a row of `vectors` (S, D). A linear map, initialised to zero, takes a vector to the
model's input width, and the result is added to the token embedding at every position (a forward hook
on `model.input_embedding()`), so the architectures need no other change. The zero start means an
untrained style changes nothing: a styled model begins exactly where the unstyled one does.

Which style applies is set for the length of a `with conditioned(model, style):` block:

    ids (B, T)      the source of every input token (training: a window may cross documents)
    ids (B,)        one source per row (held-out scoring: each document's own source)
    vectors (B, D)  any point of the style space per row (generation: a name, a mix, a random draw)

Outside such a block the mean of the learned vectors applies: the "average source", used for text
whose source the run never saw.
"""

import math
import os
from contextlib import contextmanager

import torch
from torch import nn

from ..data.batches import TokenSources
from ..config import STYLE_BY
from ..errors import SeqlabError



def source_key(doc_name: str, by: str) -> str:
    """The source a document belongs to: its own path, or its directory."""
    path = os.path.normpath(doc_name)
    return path if by == "file" else os.path.dirname(path) or "."


def style_sources(doc_names: list[str], by: str, dim: int) -> list[str]:
    """The distinct sources of the training documents, in corpus order."""
    if by not in STYLE_BY:
        raise SeqlabError(f"--style-by {by!r} is not known; choose one of: {', '.join(STYLE_BY)}")
    if dim < 1:
        raise SeqlabError(f"--style-dim must be at least 1, got {dim}")
    return list(dict.fromkeys(source_key(name, by) for name in doc_names))


def short_names(sources: list[str]) -> list[str]:
    """Names to type: each source relative to what all share (corpus/a.txt, corpus/b.txt -> a.txt, b.txt)."""
    try:
        root = os.path.commonpath(sources)
    except ValueError:  # absolute and relative paths together: keep them whole
        return list(sources)
    names = [os.path.relpath(s, root) if s != root else os.path.basename(s) or s for s in sources]
    return names if len(set(names)) == len(names) else list(sources)


class StyleTable(nn.Module):
    def __init__(self, sources: list[str], by: str, dim: int, width: int):
        super().__init__()
        self.sources, self.by, self.names = list(sources), by, short_names(sources)
        self.vectors = nn.Embedding(len(sources), dim)  # (S, D)
        nn.init.normal_(self.vectors.weight, std=dim**-0.5)  # about unit length, whatever the dim
        self.to_input = nn.Linear(dim, width, bias=False)
        nn.init.zeros_(self.to_input.weight)  # an untrained style adds nothing
        self.current = None  # the style of the call in progress (see `conditioned`); None = the mean

    def add_style(self, module, args, embedded):
        """Forward hook on the token embedding: embedded (B, T, E) + the projected style."""
        style = self.current
        if style is None:
            v = self.vectors.weight.mean(0)  # (D,)
        elif style.is_floating_point():
            v = style  # (B, D)
        else:
            v = self.vectors(style)  # (B, T, D) or (B, D)
        if v.dim() == 2:
            v = v[:, None]  # one style for every position of a row
        return embedded + self.to_input(v).to(embedded.dtype)

    def index_of(self, doc_name: str) -> int | None:
        """The document's source; else the source whose name its own source path ends with (the longest).

        The second rule lets held-out files laid out beside the training ones (--val val/ for a corpus
        train/, with val/poems/x.txt for train/poems/) read in their source's style, not the mean.
        """
        key = source_key(doc_name, self.by)
        if key in self.sources:
            return self.sources.index(key)
        ends = [(len(name), i) for i, name in enumerate(self.names) if key == name or key.endswith(os.sep + name)]
        return max(ends)[1] if ends else None

    def index_by_name(self, name: str) -> int:
        if name not in self.names:
            raise SeqlabError(f"unknown style {name!r}; this run's styles: {', '.join(self.names)} (or random)")
        return self.names.index(name)


def attach_styles(model, cfg) -> None:
    """Give `model` a style table from a StyleConfig (nothing when cfg.by is empty); before loading weights."""
    if not cfg.by:
        return
    assert cfg.sources, "style sources are resolved from the corpus before the model is built"
    embedding = model.input_embedding()
    model.style = StyleTable(cfg.sources, cfg.by, cfg.dim, embedding.embedding_dim)
    embedding.register_forward_hook(model.style.add_style)


def styles_of(model) -> StyleTable | None:
    return getattr(model, "style", None)


@contextmanager
def conditioned(model, style: torch.Tensor | None):
    """Within the block `style` (ids or vectors, see the module docstring) conditions the model."""
    table = styles_of(model)
    if table is None or style is None:
        yield
        return
    previous, table.current = table.current, style.to(table.vectors.weight.device)
    try:
        yield
    finally:
        table.current = previous


def for_document(model, doc_name: str):
    """Condition on the document's own source; the mean style when the run never saw that source."""
    table = styles_of(model)
    index = table.index_of(doc_name) if table is not None else None
    return conditioned(model, None if index is None else torch.tensor([index]))


def token_sources(cfg, docs, doc_tokens: list[int]) -> TokenSources | None:
    """The style id of every training token (documents lie end to end), or None for an unstyled run."""
    if not cfg.by:
        return None
    index = {key: i for i, key in enumerate(cfg.sources)}
    try:
        return TokenSources(doc_tokens, [index[source_key(d.name, cfg.by)] for d in docs])
    except KeyError as e:
        raise SeqlabError(f"the corpus has a source the run was not trained with: {e.args[0]}; "
                          f"resume with the corpus the run was started on") from None


def train_bytes_by_source(cfg, docs, train_sizes: list[int]) -> dict[str, int]:
    """{style name: training bytes} for `seqlab styles`; train_sizes are the documents' training bytes."""
    names = short_names(cfg.sources)
    totals = dict.fromkeys(names, 0)
    for doc, size in zip(docs, train_sizes):
        totals[names[cfg.sources.index(source_key(doc.name, cfg.by))]] += size
    return totals


def parse_mix(spec: str, names: list[str]) -> list[tuple[str, float]]:
    """'A' -> [(A, 1)]; 'A:0.7,B:0.3' -> [(A, 0.7), (B, 0.3)]; weights are used as given."""
    how = "write NAME or NAME:WEIGHT,NAME:WEIGHT, e.g. --style " + ",".join(f"{n}:0.5" for n in names[:2])
    items = [item.strip() for item in spec.split(",")]
    if len(items) == 1 and ":" not in items[0]:  # one name, weight 1
        return [(items[0], 1.0)]
    mix = []
    for item in items:
        name, sep, weight = item.rpartition(":")
        if not item or not sep or not name:
            raise SeqlabError(f"cannot read {item!r} in --style {spec!r}: {how}")
        try:
            value = float(weight)
        except ValueError:
            raise SeqlabError(f"weight {weight!r} of {name!r} in --style {spec!r} is not a number: {how}") from None
        if not math.isfinite(value):
            raise SeqlabError(f"weight {weight!r} of {name!r} in --style {spec!r} must be a finite number")
        mix.append((name, value))
    repeated = {n for n, _ in mix if [m for m, _ in mix].count(n) > 1}
    if repeated:
        raise SeqlabError(f"style {sorted(repeated)[0]!r} appears twice in --style {spec!r}")
    return mix


def random_styles(vectors: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """n draws (n, D) from the Gaussian fitted to the learned vectors (S, D): their mean and covariance."""
    mean = vectors.mean(0)
    if len(vectors) < 2:  # one source: no spread to fit
        return mean.expand(n, -1).clone()
    z = torch.randn(n, len(vectors), generator=torch.Generator().manual_seed(seed)).to(vectors)  # (n, S)
    # mean + z (V - mean) / sqrt(S - 1) has covariance (V - mean)^T (V - mean) / (S - 1), no factorisation needed
    return mean + z @ (vectors - mean) / math.sqrt(len(vectors) - 1)


def resolve_style(run, spec: str | None, n: int, seed: int | None) -> torch.Tensor | None:
    """--style NAME, 'A:0.7,B:0.3' or random -> one vector per row (n, D); None -> None (the mean style).

    random draws with `seed`, or the run's own training seed when None.
    """
    if spec is None:
        return None
    table = styles_of(run.model)
    if table is None:
        raise SeqlabError(f"--style {spec!r}: this run was trained without styles; "
                          f"train with --style-by file or --style-by dir to use --style")
    vectors = table.vectors.weight.detach()  # (S, D)
    if spec.strip() == "random":
        return random_styles(vectors, n, run.config.train.seed if seed is None else seed)
    mix = sum(weight * vectors[table.index_by_name(name)] for name, weight in parse_mix(spec, table.names))
    return mix.expand(n, -1)
