"""Vectors from a run: passages and words embedded by the network that read the text, and a
nearest-neighbour index over a corpus's passages.

    passages.py  files -> units (line, paragraph, document) with file, line and byte offset
    embed.py     token states -> pooled passage vectors; the streamed writer; a run's fingerprint
    words.py     word vectors from the states around each occurrence; most_similar, exports
    index.py     FAISS index of passages: build, load (memory-mapped), add, search
    tune.py      contrastive fine-tuning that saves an ordinary run
    maps.py      2-D maps (PCA, t-SNE) as PNG and HTML

The verbs (seqlab embed, similar, index, search, tune) are thin layers over these; see docs/vectors.md.
"""

from ..errors import SeqlabError


def load_forward(run_dir, verb: str, device: str = "cpu"):
    """A run that reads left to right (a backward run's states do not line up with the text)."""
    from ..run import load, read_config, require_forward

    require_forward(run_dir, read_config(run_dir), verb)
    return load(run_dir, device=device)


def load_backward(run_dir, device: str = "cpu"):
    """The run given as --backward: it must read right to left."""
    from ..run import load, read_config

    if not read_config(run_dir).data.backward:
        raise SeqlabError(f"--backward {run_dir} reads text left to right; give a run trained with "
                          f"`seqlab train --backward` (or leave --backward out)")
    return load(run_dir, device=device)
