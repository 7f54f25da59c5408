"""Word vectors from a run's states: each word's states averaged over its occurrences.

    wv = word_vectors(run, texts, backward=backward_run)        # WordVectors
    wv.most_similar(["king", "woman"], ["man"], topn=5)           # [(word, cosine), ...]
    wv.save_word2vec_format("words.txt"); wv.save_projector("projector/")

A word is a maximal run of letters, lowercased. Around each occurrence the model has two states:
`before` it has read the word (its context so far: what a forward model expects there) and `after` (the
state once the word is read, Flair's choice for character models). A backward run (`seqlab train
--backward`) reads the text right to left, so its `before` state holds the context on the word's right.
`states` picks which are averaged: before, after or both (concatenated). With a backward run the two
directions are concatenated, each scaled to unit length first so both weigh the same. The default is the
choice measured best on WordSim-353/SimLex-999 (bench/vectors_words.py, docs/vectors.md).
"""

import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import SeqlabError
from .embed import states_at, unit_rows

STATES = ("before", "after", "both")
DEFAULT_STATES = "before"
ASCII_WORD = re.compile(rb"[A-Za-z]+")
WORD = re.compile(r"[^\W\d_]+")


def find_words(data: bytes) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(lowercased words, byte starts, byte ends) of every word in data."""
    if data.isascii():
        found = [(m.group().lower().decode(), m.start(), m.end()) for m in ASCII_WORD.finditer(data)]
    else:
        text = data.decode("utf-8", errors="replace")
        widths = np.fromiter((len(c.encode("utf-8", errors="replace")) for c in text), np.int64, len(text))
        at = np.concatenate([[0], np.cumsum(widths)])  # byte offset of each character
        found = [(m.group().lower(), int(at[m.start()]), int(at[m.end()])) for m in WORD.finditer(text)]
    if not found:
        return [], np.zeros(0, np.int64), np.zeros(0, np.int64)
    words, starts, ends = zip(*found)
    return list(words), np.array(starts, np.int64), np.array(ends, np.int64)


def word_tokens(data: bytes) -> list[str]:
    """The words of a text as find_words sees them (what gensim is given in the benchmark)."""
    return find_words(data)[0]


def occurrence_positions(run, data: bytes, starts, ends, which: str) -> tuple[np.ndarray, np.ndarray]:
    """(tokens as the run reads data, BOS first; the token position of each occurrence's `which` state)."""
    tok = run.tokenizer
    tokens = np.concatenate([[tok.bos_id], tok.encode(data)]).astype(np.int64)
    lengths = np.array([len(b) for b in tok.token_bytes], np.int64)[tokens]
    done = np.cumsum(lengths)  # bytes read after each token (BOS: 0)
    if run.config.data.backward:  # it reads data[::-1]: the word [a, b) is [n - b, n - a) there
        n = len(data)
        starts, ends = n - np.asarray(ends), n - np.asarray(starts)
    if which == "before":  # the last token that ends at or before the word's first byte
        return tokens, np.searchsorted(done, starts, side="right") - 1
    return tokens, np.searchsorted(done, ends, side="left")  # the first token that completes the word


@dataclass
class WordVectors:
    words: list[str]
    counts: np.ndarray  # occurrences of each word
    vectors: np.ndarray  # (V, D) unit length

    def __post_init__(self):
        self.ids = {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def restrict(self, min_count: int) -> "WordVectors":
        keep = np.flatnonzero(self.counts >= min_count)
        return WordVectors([self.words[i] for i in keep], self.counts[keep], self.vectors[keep])

    def check(self, word: str, where: str) -> int:
        if word not in self.ids:
            close = difflib.get_close_matches(word, self.words, n=5, cutoff=0.6)
            hint = f"; nearest spellings: {', '.join(close)}" if close else ""
            raise SeqlabError(f"{word!r} is not among the {len(self.words):,} words of {where}{hint}")
        return self.ids[word]

    def most_similar(self, positive: list[str], negative: list[str] = (), topn: int = 10,
                     where: str = "the vocabulary") -> list[tuple[str, float]]:
        """Words nearest by cosine to sum(positive) - sum(negative) (unit vectors), the query words left out;
        king - man + woman is most_similar(["king", "woman"], ["man"]) as in gensim."""
        pos = [self.check(w.lower(), where) for w in positive]
        neg = [self.check(w.lower(), where) for w in negative]
        query = self.vectors[pos].sum(0) - (self.vectors[neg].sum(0) if neg else 0)
        scores = self.vectors @ (query / max(float(np.linalg.norm(query)), 1e-12))
        scores[pos + neg] = -np.inf
        top = np.argsort(-scores, kind="stable")[: min(topn, max(len(self.words) - len(pos) - len(neg), 0))]
        return [(self.words[i], float(scores[i])) for i in top]

    def save_word2vec_format(self, path) -> None:
        """The word2vec text format: a header `V D`, then one `word x1 x2 ...` line per word."""
        with open(path, "w", encoding="utf-8") as f:
            f.write(f"{len(self.words)} {self.vectors.shape[1]}\n")
            for w, v in zip(self.words, self.vectors):
                f.write(w + " " + " ".join(f"{x:.6g}" for x in v) + "\n")

    def save_projector(self, out) -> tuple[Path, Path]:
        """TensorBoard projector files: vectors.tsv (one row per word) and metadata.tsv (word, count)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        np.savetxt(out / "vectors.tsv", self.vectors, delimiter="\t", fmt="%.6g")
        with open(out / "metadata.tsv", "w", encoding="utf-8") as f:
            f.write("word\tcount\n")
            for w, c in zip(self.words, self.counts):
                f.write(f"{w}\t{int(c)}\n")
        return out / "vectors.tsv", out / "metadata.tsv"

    def save(self, out) -> None:
        from safetensors.numpy import save_file

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        save_file({"vectors": self.vectors, "counts": self.counts.astype(np.int64)}, str(out / "words.safetensors"))
        (out / "words.json").write_text(json.dumps(self.words, ensure_ascii=False))

    @classmethod
    def load(cls, out) -> "WordVectors":
        from safetensors.numpy import load_file

        tensors = load_file(str(Path(out) / "words.safetensors"))
        words = json.loads((Path(out) / "words.json").read_text())
        return cls(words, tensors["counts"], tensors["vectors"])


class Accumulator:
    """Sums of state vectors per word, grown as new words appear; also each word's first occurrence."""

    def __init__(self):
        self.ids: dict[str, int] = {}
        self.first: list[tuple] = []  # (where, line, byte offset) of each word's first occurrence
        self.counts = np.zeros(0, np.int64)
        self.sums: list[np.ndarray | None] = []  # per direction: (capacity, D)

    def word_ids(self, words: list[str]) -> np.ndarray:
        out = np.empty(len(words), np.int64)
        for j, w in enumerate(words):
            i = self.ids.get(w)
            if i is None:
                i = self.ids[w] = len(self.ids)
            out[j] = i
        if len(self.ids) > len(self.counts):
            self.counts = np.concatenate([self.counts, np.zeros(len(self.ids) - len(self.counts), np.int64)])
        np.add.at(self.counts, out, 1)
        return out

    def add(self, direction: int, ids: np.ndarray, states: np.ndarray) -> None:
        while len(self.sums) <= direction:
            self.sums.append(None)
        sums = self.sums[direction]
        if sums is None or len(sums) < len(self.ids):
            grown = np.zeros((max(2 * len(self.ids), 1024), states.shape[1]), np.float64)
            if sums is not None:
                grown[: len(sums)] = sums
            self.sums[direction] = sums = grown
        torch.from_numpy(sums).index_add_(0, torch.from_numpy(ids), torch.from_numpy(states).double())

    def vectors(self) -> WordVectors:
        words = list(self.ids)
        n = len(words)
        # every state shares a large common part (the model's average state), which would make all cosines ~1:
        # each direction's means are centred on the mean state over all occurrences before scaling
        parts = [unit_rows(s[:n] / np.maximum(self.counts[:, None], 1) - s[:n].sum(0) / max(self.counts.sum(), 1))
                 for s in self.sums]
        vectors = unit_rows(np.concatenate(parts, axis=1)) if parts else np.zeros((n, 0), np.float32)
        return WordVectors(words, self.counts.copy(), vectors)


def accumulate_text(acc: Accumulator, runs: list, data: bytes, states: str, where: tuple = ()) -> int:
    """Add one text's occurrences to acc; returns the number of words found."""
    words, starts, ends = find_words(data)
    if not words:
        return 0
    known = len(acc.ids)
    ids = acc.word_ids(words)
    new_ids, first = np.unique(ids[ids >= known], return_index=True)  # ids are numbered in order of appearance
    if len(new_ids):
        at = starts[ids >= known][first]
        lines = np.searchsorted(np.flatnonzero(np.frombuffer(data, np.uint8) == 10), at) + 1
        acc.first += [(where, int(n), int(a)) for n, a in zip(lines, at)]
    which = ["before", "after"] if states == "both" else [states]
    direction = 0
    for run in runs:  # one reading of the text per run gives every state asked for
        found = [occurrence_positions(run, data, starts, ends, w) for w in which]
        states = states_at(run.model, found[0][0], np.concatenate([p for _, p in found]), run.device)
        for part in np.split(states, len(which)):
            acc.add(direction, ids, part)
            direction += 1
    return len(words)


def check_states(states: str) -> str:
    if states not in STATES:
        raise SeqlabError(f"unknown --states {states!r}; choose one of: {', '.join(STATES)}")
    return states


def word_vectors(run, texts, backward=None, states: str = DEFAULT_STATES, progress=None) -> WordVectors:
    """Word vectors of the words in `texts` (an iterable of bytes), from run (and a backward run)."""
    acc = Accumulator()
    runs = [run] + ([backward] if backward is not None else [])
    for data in texts:
        accumulate_text(acc, runs, data, check_states(states))
        if progress is not None:
            progress.update(len(data))
    return acc.vectors()


# ---- the training split's words, cached ------------------------------------------------------------------

CACHE_VERSION = 2


def training_texts(config, corpus: list[str] | None = None):
    """(paths, a function yielding each training document's training part): the run's own split."""
    from ..data.corpus import default_corpus_path, resolve_paths, split_document

    if any(p.startswith("task:") for p in config.data.paths):
        raise SeqlabError("the run was trained on a generated task, which has no words; give --corpus FILES")
    patterns = corpus or config.data.paths or [default_corpus_path()]
    try:
        paths = resolve_paths(patterns)
    except SeqlabError as e:
        raise SeqlabError(f"{e}: the run's corpus is not found from here; run from where it was trained, "
                          f"or give --corpus FILES") from None
    fraction = 0.0 if config.data.val_paths else config.data.val_fraction

    def texts():
        for path in paths:
            yield split_document(path.read_bytes(), fraction)[0]

    return paths, texts


def vectors_cache_dir(key: str) -> Path:
    from ..data.corpus import cache_root

    return cache_root().parent / "vectors" / key


def training_word_vectors(run, backward=None, states: str = DEFAULT_STATES, corpus=None,
                          show_progress: bool = True) -> WordVectors:
    """Word vectors over the run's training split, computed once per (run, backward run, states, corpus) and
    kept in seqlab's cache (SEQLAB_CACHE or ~/.cache/seqlab/vectors)."""
    import hashlib

    from ..checkpoint import atomic_write_text
    from ..progress import bar
    from .embed import fingerprint

    check_states(states)
    paths, texts = training_texts(run.config, corpus)
    h = hashlib.blake2b(digest_size=16)
    signature = [CACHE_VERSION, fingerprint(run.path), fingerprint(backward.path) if backward else None, states,
                 [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in paths]]
    h.update(json.dumps(signature).encode())
    cache = vectors_cache_dir(h.hexdigest())
    if (cache / "done").exists():
        return WordVectors.load(cache)
    total = sum(p.stat().st_size for p in paths)
    with bar(total=total, desc="word vectors", enabled=None if show_progress else False) as b:
        wv = word_vectors(run, texts(), backward, states, progress=b)
    wv.save(cache)
    atomic_write_text(cache / "done", json.dumps(signature))
    return wv
