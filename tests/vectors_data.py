"""Generated corpora and tiny runs shared by the tests of seqlab's vectors (tests/test_vectors_*.py)."""

import random
from pathlib import Path

from conftest import tiny_config


def analogy_text(n_lines: int = 3000, seed: int = 0) -> str:
    """Sentences where cat and dog always share their contexts, and king - man + woman = queen is built in:
    he/she give the gender, common/royal the rank, each word seen after both of its own."""
    rng = random.Random(seed)
    templates = [
        "the {pet} sat on the mat.", "a {pet} ran to the barn.", "my {pet} eats fish.",
        "he is a {he}.", "she is a {she}.", "a common {common} came.", "a royal {royal} came.",
        "we read a long book.", "the sun is hot today.", "an old tree fell.",
    ]
    lines = []
    for i in range(n_lines):
        pet, he, she = rng.choice(["cat", "dog"]), rng.choice(["man", "king"]), rng.choice(["woman", "queen"])
        lines.append(rng.choice(templates).format(pet=pet, he=he, she=she, common=rng.choice(["man", "woman"]),
                                                  royal=rng.choice(["king", "queen"])))
        if i % 4 == 3:
            lines.append("")  # paragraphs of four lines
    return "\n".join(lines) + "\n"


# ordinary text for the tiny runs (trained on conftest.structured_text: anna sees the cat.), each line unlike the others
FILLERS = [b"anna sees the cat. bob takes it.", b"carl likes a red box. anna takes the cat.",
           b"bob sees it. carl takes a red box.", b"anna likes it. bob likes the cat.",
           b"carl sees the cat. anna takes it."]


def rare_word_pairs(rare: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """(queries, passages): query i shares rare[i] with passage i and all its ordinary text with passage i-1."""
    n = len(rare)
    return ([FILLERS[i] + b" " + rare[i] for i in range(n)], [FILLERS[(i + 1) % n] + b" " + rare[i] for i in range(n)])


def write_corpus(directory: Path, n_files: int = 2, n_lines: int = 1500) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n_files):
        path = directory / f"part{i}.txt"
        path.write_text(analogy_text(n_lines, seed=i))
        paths.append(path)
    return paths


def train_tiny(corpus, out: Path, arch: str = "lstm", steps: int = 150, backward: bool = False) -> Path:
    from seqlab.train import train

    cfg = tiny_config(Path(corpus), arch, steps=steps)
    cfg.train.eval_every_steps = steps
    cfg.data.backward = backward
    cfg.counts.enabled = False
    return train(cfg, out, log=lambda *a: None)
