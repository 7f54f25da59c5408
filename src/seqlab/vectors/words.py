"""Word vectors from a run's states: each word's states averaged over its occurrences.

    wv = word_sums(run, texts, backward=backward_run).vectors()  # WordVectors
    wv.most_similar(["king", "woman"], ["man"], topn=5)           # [(word, cosine), ...]
    wv.save_word2vec_format("words.txt"); wv.save_projector("projector/")

A word is a maximal run of letters, lowercased. Around each occurrence the model has two states:
`before` it has read the word (its context so far: what a forward model expects there) and `after` (the
state once the word is read, Flair's choice for character models). A backward run (`seqlab train
--backward`) reads the text right to left, so its `before` state holds the context on the word's right.
`inside` is the mean of the states of the word's own tokens (every token that holds a byte of it; the
last of them is `after`). `states` picks which are averaged over the occurrences: before, after, inside or
both (before and after concatenated). Each word's average is post-processed over the vocabulary (the words
seen at least --min-count times; `postprocess`): the mean over those words is subtracted (each counts once,
so frequent words do not set the centre) and the projections on the top round(dims / 100) principal
components are removed ("all-but-the-top", Mu & Viswanath 2018, with their default, fixed before
measuring); then it is scaled to unit length. With a
backward run the two directions are post-processed apart and concatenated, each unit length first so both
weigh the same. Measured against the alternatives on WordSim-353/SimLex-999 in bench/vectors_words.py
(docs/vectors.md). A run tuned with `seqlab tune --objective words` has word rows (or a word head) of its own
(vectors/skipgram.py) that replace the post-processing: made from the averages of its own states (e.g.
`before+inside`), its words get their rows, other words the rows' map from those averages.
"""

import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import SeqlabError
from .embed import token_states, unit_rows

STATES = ("before", "after", "inside", "both")
DEFAULT_STATES = "before"
DEFAULT_COMPONENTS = None  # top principal components removed: None is ABTT's default, round(dims / 100)
FIT_COUNT = 5  # `embed --unit word` (every word kept) learns the post-processing on words seen this often
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


def occurrence_positions(run, data: bytes, starts, ends) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tokens as the run reads data, BOS first; the token positions of each occurrence's `before` and `after`
    states): before is the last token that ends at or before the word's first byte, after the first token that
    completes the word."""
    tok = run.tokenizer
    tokens = np.concatenate([[tok.bos_id], tok.encode(data)]).astype(np.int64)
    lengths = np.array([len(b) for b in tok.token_bytes], np.int64)[tokens]
    done = np.cumsum(lengths)  # bytes read after each token (BOS: 0)
    if run.config.data.backward:  # it reads data[::-1]: the word [a, b) is [n - b, n - a) there
        n = len(data)
        starts, ends = n - np.asarray(ends), n - np.asarray(starts)
    return tokens, np.searchsorted(done, starts, side="right") - 1, np.searchsorted(done, ends, side="left")


def postprocess(means: np.ndarray, components: int | None = DEFAULT_COMPONENTS, fit=None) -> np.ndarray:
    """Word averages (V, D) -> unit vectors: the mean over the words subtracted, the projections on the top
    `components` principal directions removed (all-but-the-top; None: round(D / 100), its authors' rule),
    then unit length. Without the centring every average shares a large common part and all cosines sit
    near 1; the top directions left hold mostly how frequent a word is. `fit` (a boolean mask): the rows the
    centre and the directions are learnt on (default all); every row is transformed the same way."""
    x = np.asarray(means, np.float64)
    fit = np.ones(len(x), bool) if fit is None or not np.any(fit) else np.asarray(fit, bool)
    x = x - x[fit].mean(0) if len(x) else x
    components = round(x.shape[1] / 100) if components is None else components
    if components and fit.sum() > 1:
        top = np.linalg.svd(x[fit], full_matrices=False)[2][:components]
        x = x - (x @ top.T) @ top
    return unit_rows(x)


def save_arrays(path, arrays: dict) -> None:
    """Numpy arrays to a safetensors file, each laid out in C order first: safetensors' save_file writes an
    array's buffer as it lies, so a transposed (Fortran-order) array would come back scrambled."""
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(path))


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
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        save_arrays(out / "words.safetensors", {"vectors": self.vectors, "counts": self.counts.astype(np.int64)})
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

    def add(self, direction: int, sums: np.ndarray) -> None:
        """Add (n, D) sums for the first n words (n <= len(self.ids))."""
        while len(self.sums) <= direction:
            self.sums.append(None)
        held = self.sums[direction]
        if held is None or len(held) < len(sums):
            grown = np.zeros((max(2 * len(self.ids), 1024), sums.shape[1]), np.float64)
            if held is not None:
                grown[: len(held)] = held
            self.sums[direction] = held = grown
        held[: len(sums)] += sums

    def save(self, out) -> None:
        """Words, counts and each direction's raw sums (safetensors + JSON): post-processing is applied on load."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        n = len(self.ids)
        save_arrays(out / "sums.safetensors", {"counts": self.counts[:n].astype(np.int64)}
                    | {f"sums.{i}": s[:n] for i, s in enumerate(self.sums)})
        (out / "words.json").write_text(json.dumps(list(self.ids), ensure_ascii=False))

    @classmethod
    def load(cls, out) -> "Accumulator":
        from safetensors.numpy import load_file

        tensors = load_file(str(Path(out) / "sums.safetensors"))
        acc = cls()
        acc.ids = {w: i for i, w in enumerate(json.loads((Path(out) / "words.json").read_text()))}
        acc.counts = tensors["counts"]
        acc.sums = [tensors[f"sums.{i}"] for i in range(len(tensors) - 1)]
        return acc

    def vectors(self, components: int | None = DEFAULT_COMPONENTS, min_count: int = 1,
                fit_count: int = 1, tuned=None) -> WordVectors:
        """The words seen at least min_count times, each direction's averages post-processed apart
        (`postprocess`), learnt on the words seen at least max(min_count, fit_count) times (the vocabulary's
        own centre and directions, not those of the noisy averages of rare words), then joined and scaled to
        unit length. With a run's `tuned` word rows or head (vectors/skipgram.py) the words and their joined averages go
        through them instead."""
        keep = np.flatnonzero(self.counts[: len(self.ids)] >= min_count)
        names = list(self.ids)
        words = [names[i] for i in keep]
        counts = self.counts[keep]
        fit = counts >= fit_count
        averages = [s[keep] / np.maximum(counts[:, None], 1) for s in self.sums]
        if tuned is not None:
            vectors = tuned.vectors(np.concatenate(averages, axis=1), words)
        elif averages:
            vectors = unit_rows(np.concatenate([postprocess(a, components, fit) for a in averages], axis=1))
        else:
            vectors = np.zeros((len(keep), 0), np.float32)
        return WordVectors(words, counts.copy(), vectors)


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
    which = state_parts(states)
    direction = 0
    for run in runs:  # one reading of the text per run gives every state asked for
        for sums in word_state_sums(run, data, starts, ends, ids, len(acc.ids), which):
            acc.add(direction, sums)
            direction += 1
    return len(words)


def word_state_sums(run, data: bytes, starts, ends, ids: np.ndarray, n_words: int, which: list[str]) -> list:
    """For each of `which`: (n_words, C) sums over the occurrences (word ids `ids`) of their state, in one
    streamed reading of data (memory bounded by the vocabulary, not the text). `inside` adds each occurrence's
    mean over the states of its own tokens, the tokens after `before` up to `after`."""
    tokens, before, after = occurrence_positions(run, data, starts, ends)
    width = np.maximum(after - before, 1)
    order = np.argsort(after, kind="stable")
    ends_sorted = after[order]
    by_start = np.argsort(before, kind="stable")
    by = {"before": (by_start, before[by_start], before), "after": (order, ends_sorted, after)}
    longest = int(width.max())
    sums = {w: None for w in which}
    ids_t = torch.from_numpy(ids)
    for start, states in token_states(run.model, tokens, run.device):
        stop = start + len(states)
        x = torch.from_numpy(states).double()
        for w in which:
            if sums[w] is None:
                sums[w] = torch.zeros(n_words, x.shape[1], dtype=torch.float64)
            if w == "inside":  # occurrences whose tokens overlap [start, stop): their share of this block
                k = order[np.searchsorted(ends_sorted, start) : np.searchsorted(ends_sorted, stop + longest)]
                lo, hi = np.maximum(before[k] + 1, start), np.minimum(after[k], stop - 1)
                k, lo, hi = k[lo <= hi], lo[lo <= hi] - start, hi[lo <= hi] - start
                cum = torch.cat([torch.zeros(1, x.shape[1], dtype=x.dtype), x.cumsum(0)])
                part = (cum[torch.from_numpy(hi + 1)] - cum[torch.from_numpy(lo)]) / torch.from_numpy(width[k])[:, None]
            else:
                rows, at, position = by[w]
                k = rows[np.searchsorted(at, start) : np.searchsorted(at, stop)]
                part = x[torch.from_numpy(position[k] - start)]
            sums[w].index_add_(0, ids_t[torch.from_numpy(k)], part)
    return [sums[w].numpy() if sums[w] is not None else np.zeros((n_words, 0)) for w in which]


def state_parts(states: str) -> list[str]:
    """The states summed per word, in order: `both` is before and after; `before+inside` (a word head's) the two."""
    return ["before", "after"] if states == "both" else states.split("+")


def states_problem(states: str) -> str | None:
    """What is wrong with a --states value (one of STATES, or distinct parts joined by +), or None."""
    parts = state_parts(states)
    if states in STATES or (set(parts) <= set(STATES[:3]) and len(set(parts)) == len(parts)):
        return None
    return f"unknown --states {states!r}; choose one of: {', '.join(STATES)}, or parts joined by + (before+inside)"


def check_states(states: str) -> str:
    problem = states_problem(states)
    if problem:
        raise SeqlabError(problem)
    return states


def word_sums(run, texts, backward=None, states: str = DEFAULT_STATES, progress=None) -> Accumulator:
    """Each word's sums of states over its occurrences in `texts` (an iterable of bytes), from run (and a
    backward run); `.vectors()` turns them into word vectors."""
    acc = Accumulator()
    runs = [run] + ([backward] if backward is not None else [])
    for data in texts:
        accumulate_text(acc, runs, data, check_states(states))
        if progress is not None:
            progress.update(len(data))
    return acc


# ---- the training split's words, cached ------------------------------------------------------------------

CACHE_VERSION = 3  # 3: each direction's raw sums are kept; post-processed on load


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


def sums_cache(run_dir, backward_dir, states: str, paths) -> tuple[Path, list]:
    """(the cache folder of a run's per-word sums of `states` over `paths`, the signature that names it)."""
    import hashlib

    from .embed import fingerprint

    signature = [CACHE_VERSION, fingerprint(run_dir), fingerprint(backward_dir) if backward_dir else None, states,
                 [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in paths]]
    return vectors_cache_dir(hashlib.blake2b(json.dumps(signature).encode(), digest_size=16).hexdigest()), signature


def keep_sums(acc: Accumulator, cache: Path, signature: list) -> None:
    from ..checkpoint import atomic_write_text

    acc.save(cache)
    atomic_write_text(cache / "done", json.dumps(signature))


def cached_sums(run_dir, states: str, corpus=None) -> Accumulator | None:
    """The run's cached per-word sums of `states` over its training split, if `similar` or `tune` left them."""
    from ..run import read_config

    cache, _ = sums_cache(run_dir, None, states, training_texts(read_config(Path(run_dir)), corpus)[0])
    return Accumulator.load(cache) if (cache / "done").exists() else None


def training_word_vectors(run, backward=None, states: str = DEFAULT_STATES, corpus=None,
                          show_progress: bool = True, components: int | None = DEFAULT_COMPONENTS,
                          min_count: int = 1, tuned=None) -> WordVectors:
    """Vectors of the words seen at least min_count times in the run's training split. The raw sums are
    computed once per (run, backward run, states, corpus) and kept in seqlab's cache (SEQLAB_CACHE or
    ~/.cache/seqlab/vectors); post-processing (`components`, over those words, or the run's `tuned` word rows or
    head, which read their own states) is applied on load."""
    from ..progress import bar

    states = tuned.states if tuned is not None else states
    check_states(states)
    paths, texts = training_texts(run.config, corpus)
    cache, signature = sums_cache(run.path, backward.path if backward else None, states, paths)
    if (cache / "done").exists():
        return Accumulator.load(cache).vectors(components, min_count, tuned=tuned)
    total = sum(p.stat().st_size for p in paths)
    with bar(total=total, desc="word vectors", enabled=None if show_progress else False) as b:
        acc = word_sums(run, texts(), backward, states, progress=b)
    keep_sums(acc, cache, signature)
    return acc.vectors(components, min_count, tuned=tuned)
