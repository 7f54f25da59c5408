"""The word objective: word vectors trained skip-gram style, starting from what the run's states know.

    seqlab tune runs/books books/ --objective words --out runs/books-words
    seqlab similar runs/books-words password             # uses the run's word rows

    rows, losses = rows_from_sums(word_sums(run, texts()), texts(), WordsConfig())
    rows.vectors(means, words)                            # (V, dim) unit length, means: (V, D) average states

A word's states averaged over its occurrences (vectors/words.py) say what surrounds it and what kind of word it
is, but ranked by cosine they find related words more than similar ones (SimLex-999, docs/vectors.md). Word2vec's
skip-gram with negative sampling (Mikolov et al. 2013) trains each word's vector to predict the words within a
small window of it against words drawn at random: for every (word, neighbour within `window`) pair of the corpus,
log sigmoid(v_w . u_c) + sum over `negatives` words n drawn from the unigram distribution ** 0.75 of
log sigmoid(-v_w . u_n), with word2vec's random reduced window and its down-sampling of frequent words.

Two forms of the input vectors v_w:
- `rows` (the default): word2vec's free rows, one per word seen min_count times, each *started* from its word's
  top principal coordinates of its standardised average states (at length `start`, in place of word2vec's noise)
  and trained as word2vec trains them, pairs in the text's order. Over five seeds they pass gensim's skip-gram on
  the same corpus on WordSim-353, SimLex-999 and analogies (docs/vectors.md). Words outside the rows (rarer ones,
  other texts' words) get the least-squares linear map from the states to the rows.
- `head`: v_w = W (m_w - mean) / scale, a linear map of the word's average state m_w; only W and the output
  vectors train. Any word gets a vector the same way; below the rows on word similarity.
By default the network's weights stay as they are, so training reads the corpus through the network once (the
sums `seqlab similar` caches) and the rows or head train on them in minutes (`network_steps` or
`network_seconds` first moves the network with the objective: vectors/joint.py). They are saved beside the
run's weights (word_rows.* or word_head.*) and `similar` and `embed --unit word` apply them to the averages
they compute.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import SeqlabError
from ..scoring import TorchThreads
from .embed import unit_rows
from .words import check_states, find_words, save_arrays, state_parts

HEAD_FILE, HEAD_JSON = "word_head.safetensors", "word_head.json"
ROWS_FILE, ROWS_JSON = "word_rows.safetensors", "word_rows.json"
FORMS = ("rows", "head")
# what each form was measured best with (docs/vectors.md): word2vec's window and order for the rows; the head's dense
# map, in order, does not learn the tests' small corpus, and a small window favours similar words over related ones
FORM_DEFAULTS = {"rows": {"window": 5, "shuffle": False}, "head": {"window": 2, "shuffle": True}}


@dataclass
class WordsConfig:
    form: str = "rows"  # rows: free word rows started from the states; head: a linear map of the states
    states: str = "before+inside"  # the states averaged per word that start the rows, or that the head reads
    dim: int = 100  # gensim Word2Vec's default size
    window: int | None = None  # neighbours each side a word predicts (None: the form's, FORM_DEFAULTS)
    start: float = 0.3  # rows: each row's length at the start (0: word2vec's noise instead of the states)
    negatives: int = 5
    epochs: int = 5
    batch_size: int = 256  # (word, neighbour) pairs per step
    lr: float = 0.025  # word2vec's: plain SGD of the word rows on the summed loss, decayed linearly to min_lr
    min_lr: float = 1e-4
    map_lr: float = 2e-3  # Adam's rate for a dense map (the head's W), decayed linearly to a hundredth of it
    sample: float = 1e-3  # word2vec's down-sampling threshold for frequent words
    min_count: int = 5  # the words trained on: seen at least this often
    seed: int = 0
    # an epoch's pairs shuffled, or in the text's order as word2vec takes them (None: the form's, FORM_DEFAULTS); in
    # order free word rows come out about 0.01 higher on SimLex-999 (docs/vectors.md)
    shuffle: bool | None = None
    # the network's weights move with the objective first (vectors/joint.py) for this many steps or seconds
    network_steps: int = 0
    network_seconds: float = 0.0
    network_lr: float = 3e-4  # Adam's rate for the network's weights (the head's is lr)
    lm_weight: float = 1.0  # the next-token loss's weight beside the skip-gram loss: the run stays a language model

    def __post_init__(self):
        if self.form not in FORMS:
            raise SeqlabError(f"the word vectors' form must be one of {', '.join(FORMS)}, got {self.form!r}")
        for name, value in FORM_DEFAULTS[self.form].items():
            if getattr(self, name) is None:
                setattr(self, name, value)


@dataclass
class WordHead:
    form = "head"
    proj: np.ndarray  # (dim, D)
    mean: np.ndarray  # (D,) the vocabulary's mean average state
    scale: np.ndarray  # (D,) and its spread per dimension
    states: str

    def vectors(self, means: np.ndarray, words=None) -> np.ndarray:
        """Average states (V, D) -> word vectors (V, dim), unit length (any words: the map reads the states alone)."""
        return unit_rows(((np.asarray(means, np.float64) - self.mean) / self.scale) @ self.proj.T)

    def save(self, run_dir, record: dict) -> None:
        save_arrays(Path(run_dir) / HEAD_FILE, {"proj": self.proj.astype(np.float32),
                                                "mean": self.mean.astype(np.float32),
                                                "scale": self.scale.astype(np.float32)})
        (Path(run_dir) / HEAD_JSON).write_text(json.dumps({"states": self.states, **record}, indent=2) + "\n")

    @classmethod
    def of(cls, run_dir) -> "WordHead | None":
        """The run's word head (`seqlab tune --objective words`), or None for a run without one."""
        if not (Path(run_dir) / HEAD_JSON).exists():
            return None
        from safetensors.numpy import load_file

        t = load_file(str(Path(run_dir) / HEAD_FILE))
        states = json.loads((Path(run_dir) / HEAD_JSON).read_text())["states"]
        return cls(t["proj"].astype(np.float64), t["mean"].astype(np.float64), t["scale"].astype(np.float64), states)


@dataclass
class WordRows:
    """Free word rows (word2vec's input vectors, started from the states), and for every other word the
    least-squares map `fit` from its average states to the rows."""
    form = "rows"
    words: list[str]
    rows: np.ndarray  # (V, dim) unit length
    counts: np.ndarray  # (V,) occurrences in the texts the rows were trained on
    fit: WordHead

    def __post_init__(self):
        self.ids = {w: i for i, w in enumerate(self.words)}

    @property
    def states(self) -> str:
        return self.fit.states

    def vectors(self, means: np.ndarray, words: list[str]) -> np.ndarray:
        """Each word's row; a word without one, the map of its average states (means: (len(words), D))."""
        out = self.fit.vectors(means)
        mine = [(j, self.ids[w]) for j, w in enumerate(words) if w in self.ids]
        if mine:
            at, row = np.array(mine).T
            out[at] = self.rows[row]
        return out

    def save(self, run_dir, record: dict) -> None:
        tensors = {"rows": self.rows, "proj": self.fit.proj, "mean": self.fit.mean, "scale": self.fit.scale}
        save_arrays(Path(run_dir) / ROWS_FILE, {k: v.astype(np.float32) for k, v in tensors.items()}
                    | {"counts": self.counts.astype(np.int64)})
        (Path(run_dir) / ROWS_JSON).write_text(json.dumps({"states": self.states, **record, "words": self.words},
                                                          ensure_ascii=False) + "\n")

    @classmethod
    def of(cls, run_dir) -> "WordRows | None":
        """The run's word rows (`seqlab tune --objective words`), or None for a run without them."""
        if not (Path(run_dir) / ROWS_JSON).exists():
            return None
        from safetensors.numpy import load_file

        t = load_file(str(Path(run_dir) / ROWS_FILE))
        meta = json.loads((Path(run_dir) / ROWS_JSON).read_text())
        fit = WordHead(*(t[k].astype(np.float64) for k in ("proj", "mean", "scale")), meta["states"])
        return cls(meta["words"], t["rows"], t["counts"], fit)


def standardised(means: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, mean, scale): each dimension of the average states centred and scaled over the vocabulary,
    each word once."""
    mean, scale = means.mean(0), means.std(0) + 1e-6
    return (means - mean) / scale, mean, scale


def principal_coordinates(x: np.ndarray, dim: int) -> np.ndarray:
    """Each row's coordinates on the top `dim` principal directions of the rows of x (centred), zero beyond
    x's rank."""
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    out = np.zeros((len(x), dim))
    out[:, : min(dim, len(s))] = u[:, :dim] * s[:dim]
    return out


def start_rows(features: np.ndarray, dim: int, length: float, seed: int) -> np.ndarray:
    """The rows' start: each word's top principal coordinates of its standardised states, at `length`; word2vec's
    noise (uniform in +-1/(2 dim)) for length 0, and in any dimension beyond the states' rank (a dimension zero in
    every row and in the outputs, which start at zero, would never move)."""
    rows = np.random.default_rng(seed).uniform(-0.5 / dim, 0.5 / dim, (len(features), dim))
    if length:
        coordinates = length * unit_rows(principal_coordinates(features, dim))
        given = np.abs(coordinates).max(0) > 0
        rows[:, given] = coordinates[:, given]
    return rows


def fitted_map(features: np.ndarray, rows: np.ndarray, ridge: float = 1e-3) -> np.ndarray:
    """The linear map (dim, D) that best gives the rows from the features, by least squares with a small ridge
    (a share of the features' mean energy) that keeps it defined when the features outnumber the words."""
    gram = features.T @ features
    gram[np.diag_indices_from(gram)] += ridge * max(np.trace(gram) / len(gram), 1e-12)
    return np.linalg.solve(gram, features.T @ rows).T


class StateEncoder(torch.nn.Module):
    """A word's input vector from its average state: W (m_w - mean) / scale."""

    def __init__(self, means: np.ndarray, dim: int, seed: int = 0):
        super().__init__()
        features, self.mean, self.scale = standardised(means)
        self.register_buffer("features", torch.from_numpy(features).float(), persistent=False)
        self.proj = torch.nn.Linear(means.shape[1], dim, bias=False)
        bound = means.shape[1] ** -0.5  # torch's own scale for a linear layer, from the seed alone
        torch.nn.init.uniform_(self.proj.weight, -bound, bound, generator=torch.Generator().manual_seed(seed))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        uniq, inverse = torch.unique(ids, return_inverse=True)  # a batch repeats its frequent words many times
        return self.proj(self.features[uniq])[inverse]

    def head(self, states: str) -> WordHead:
        return WordHead(self.proj.weight.detach().double().numpy(), self.mean, self.scale, states)


def keep_probabilities(counts: np.ndarray, sample: float) -> np.ndarray:
    """word2vec's (gensim's) down-sampling: a word seen c times of N is kept with (sqrt(c / t) + 1) t / c,
    t = sample N, at most 1: the most frequent words are mostly dropped, rare ones always kept."""
    if not sample:
        return np.ones(len(counts))
    t = sample * counts.sum()
    c = np.maximum(counts, 1)
    return np.minimum((np.sqrt(c / t) + 1) * t / c, 1.0)


def skipgram_pairs(seq: np.ndarray, window: int, rng: np.random.Generator,
                   sentence: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(centre, context) word ids of every pair within a random reduced window: word2vec draws each centre's
    reach b in 1..window and pairs it with the words at most b away, so nearer words count more. With `sentence`
    (a sentence id per word) a pair stays inside its sentence: word2vec's window stops at a sentence's ends."""
    n = len(seq)
    reach = rng.integers(1, window + 1, n)
    centres, contexts = [], []
    for k in range(1, min(window, n - 1) + 1):
        same = np.ones(n - k, bool) if sentence is None else sentence[: n - k] == sentence[k:]
        right = np.flatnonzero((reach[: n - k] >= k) & same)  # centre i, context i + k
        left = np.flatnonzero((reach[k:] >= k) & same) + k  # centre i, context i - k
        centres += [seq[right], seq[left]]
        contexts += [seq[right + k], seq[left - k]]
    if not centres:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(centres), np.concatenate(contexts)


def epoch_pairs(words: np.ndarray, sentence: np.ndarray, keep: np.ndarray, window: int, rng,
                shuffle: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """One epoch's pairs: the words down-sampled afresh (a dropped word closes the gap, as in word2vec), then paired
    inside their sentences; shuffled, or in the text's order, centre by centre, as word2vec takes them."""
    kept = rng.random(len(words)) < keep[words]
    seq = words[kept]
    at, near = skipgram_pairs(np.arange(len(seq)), window, rng, sentence[kept])  # positions in seq
    order = rng.permutation(len(at)) if shuffle else np.lexsort((near, at))
    return seq[at[order]], seq[near[order]]


def each_epochs_pairs(counts: np.ndarray, sequences: list[np.ndarray], cfg: WordsConfig, rng):
    """(epoch, centres, contexts) of each of cfg.epochs passes over the sequences (epoch_pairs)."""
    keep = keep_probabilities(counts, cfg.sample)
    words = np.concatenate(sequences or [np.zeros(0, np.int64)])
    sentence = np.repeat(np.arange(len(sequences)), [len(s) for s in sequences])
    for epoch in range(cfg.epochs):
        yield epoch, *epoch_pairs(words, sentence, keep, cfg.window, rng, cfg.shuffle)


def optimizers_for(modules: list[torch.nn.Module], cfg: WordsConfig) -> list[tuple[torch.optim.Optimizer, float,
                                                                                     float]]:
    """(optimizer, first rate, last rate) for the parameters of `modules`. Word rows (sparse embeddings): plain
    SGD on the summed loss at word2vec's rate, so a pair moves only its own rows and by what gensim's would; a
    dense map (the head's W, which every pair moves): Adam at cfg.map_lr, which the sum's scale does not change."""
    rows = [p for m in modules for e in m.modules() if isinstance(e, torch.nn.Embedding) and e.sparse
            for p in e.parameters()]
    maps = [p for m in modules for p in m.parameters() if all(p is not r for r in rows)]
    out = [(torch.optim.SGD(rows, lr=cfg.lr), cfg.lr, cfg.min_lr)]
    return out + ([(torch.optim.Adam(maps, lr=cfg.map_lr), cfg.map_lr, cfg.map_lr * 0.01)] if maps else [])


def train_skipgram(encoder: torch.nn.Module, counts: np.ndarray, sequences: list[np.ndarray], cfg: WordsConfig,
                   progress=None) -> list[float]:
    """Train `encoder` (word ids -> (n, dim) input vectors) and output vectors by skip-gram with negative
    sampling over `sequences` (sentences: arrays of word ids < len(counts)); returns each step's loss per pair.
    The rates fall linearly over the epochs' pairs, as word2vec's over its words."""
    rng = np.random.default_rng(cfg.seed)
    draw = torch.Generator().manual_seed(cfg.seed)
    outputs = torch.nn.Embedding(len(counts), cfg.dim, sparse=True)
    torch.nn.init.zeros_(outputs.weight)  # as word2vec: the input vectors start random, the outputs at zero
    noise = torch.from_numpy(counts.astype(np.float64) ** 0.75)
    optimizers = optimizers_for([encoder, outputs], cfg)
    losses = []
    for epoch, centres, contexts in each_epochs_pairs(counts, sequences, cfg, rng):
        with TorchThreads(1):  # small steps: more threads only wait on each other (and on a busy machine's jobs)
            for at in range(0, len(centres), cfg.batch_size):
                set_rates(optimizers, (epoch + at / len(centres)) / cfg.epochs)
                c = torch.from_numpy(centres[at : at + cfg.batch_size])
                o = torch.from_numpy(contexts[at : at + cfg.batch_size])
                losses.append(train_step(encoder(c), outputs, o, noise, draw, cfg.negatives, optimizers))
                if progress is not None:
                    progress.update(1)
    return losses


def set_rates(optimizers, done: float) -> None:
    for optimizer, first, last in optimizers:
        for group in optimizer.param_groups:
            group["lr"] = first + (last - first) * done


def train_step(v, outputs, contexts, noise, draw, negatives: int, optimizers) -> float:
    """One step on the summed loss of a batch of pairs; returns its mean per pair."""
    loss = negative_sampling_loss(v, outputs, contexts, noise, negatives, draw)
    for optimizer, _, _ in optimizers:
        optimizer.zero_grad(set_to_none=True)
    loss.sum().backward()
    for optimizer, _, _ in optimizers:
        optimizer.step()
    return loss.mean().item()


def negative_sampling_loss(v: torch.Tensor, outputs: torch.nn.Embedding, contexts: torch.Tensor, noise: torch.Tensor,
                           negatives: int, draw: torch.Generator) -> torch.Tensor:
    """Skip-gram's loss (B,) of input vectors v (B, dim) against their contexts' output vectors and `negatives`
    words each drawn from `noise` (unnormalised weights): -log sigmoid(v . u_c) - sum log sigmoid(-v . u_n)."""
    drawn = torch.multinomial(noise, len(v) * negatives, True, generator=draw).view(len(v), -1)
    positive = (v * outputs(contexts)).sum(-1)  # (B,)
    negative = torch.bmm(outputs(drawn), v[:, :, None])[..., 0]  # (B, negatives)
    return -(F.logsigmoid(positive) + F.logsigmoid(-negative).sum(-1))


def vocabulary_of(acc, cfg: WordsConfig) -> tuple[np.ndarray, np.ndarray]:
    """(the accumulator ids of the words seen at least min_count times, their average states joined (V, D))."""
    counts = acc.counts[: len(acc.ids)]
    keep = np.flatnonzero(counts >= cfg.min_count)
    if len(keep) < 2:
        raise SeqlabError(f"{len(keep)} word(s) are seen at least {cfg.min_count} times (--min-count); the word "
                          f"objective needs 2 or more: give a larger corpus or a smaller --min-count")
    means = np.concatenate([s[keep] / counts[keep, None] for s in acc.sums], axis=1)
    return keep, means


def word_sequences(acc, keep: np.ndarray, texts) -> list[np.ndarray]:
    """Each line of the texts (a sentence, as gensim is given one a line) as vocabulary indices (positions in
    `keep`), the words outside it left out as word2vec leaves out words below its min_count."""
    index = np.full(len(acc.ids), -1, np.int64)
    index[keep] = np.arange(len(keep))
    out = []
    for data in texts:
        words, starts, _ = find_words(data)
        ids = index[[acc.ids[w] for w in words]]
        line = np.searchsorted(np.flatnonzero(np.frombuffer(data, np.uint8) == ord("\n")), starts)[ids >= 0]
        ids = ids[ids >= 0]
        cuts = np.flatnonzero(np.diff(line)) + 1
        out += np.split(ids, cuts) if len(ids) else []
    return out


def head_from_sums(acc, texts, cfg: WordsConfig, progress=None) -> tuple[WordHead, list[float]]:
    """Train a word head on an accumulator's per-word sums of cfg.states (words.word_sums) and the texts they
    were read from (an iterable of bytes, read again for the word order)."""
    check_states(cfg.states)
    assert len(acc.sums) == len(state_parts(cfg.states)), "one direction of sums per state part"
    keep, means = vocabulary_of(acc, cfg)
    encoder = StateEncoder(means, cfg.dim, cfg.seed)
    losses = train_skipgram(encoder, acc.counts[keep], word_sequences(acc, keep, texts), cfg, progress)
    return encoder.head(cfg.states), losses


def rows_from_sums(acc, texts, cfg: WordsConfig, progress=None) -> tuple[WordRows, list[float]]:
    """Train word rows on an accumulator's per-word sums of cfg.states (the rows' start) and the texts they were
    read from (the word order), then fit the map from the states to the rows for the words without one."""
    check_states(cfg.states)
    assert len(acc.sums) == len(state_parts(cfg.states)), "one direction of sums per state part"
    keep, means = vocabulary_of(acc, cfg)
    features, mean, scale = standardised(means)
    rows, losses = train_rows(features, acc.counts[keep], word_sequences(acc, keep, texts), cfg, progress)
    fit = WordHead(fitted_map(features, rows.astype(np.float64)), mean, scale, cfg.states)
    words = list(acc.ids)
    return WordRows([words[i] for i in keep], rows, acc.counts[keep].copy(), fit), losses


def train_rows(features: np.ndarray, counts: np.ndarray, sequences: list[np.ndarray], cfg: WordsConfig,
               progress=None) -> tuple[np.ndarray, list[float]]:
    """(unit rows (V, dim), each step's loss per pair): free rows started from the words' features (start_rows)
    and trained on sequences of word ids < V as train_skipgram trains a sparse row table, its step compiled
    (sgns.py): cfg.epochs passes, each down-sampled afresh, the rate falling linearly from cfg.lr to
    cfg.min_lr over them."""
    from .sgns import train_steps

    rng = np.random.default_rng(cfg.seed)
    rows = start_rows(features, cfg.dim, cfg.start, cfg.seed).astype(np.float32)
    outputs = np.zeros_like(rows)  # as word2vec's
    noise = counts.astype(np.float64) ** 0.75
    cumulative = np.cumsum(noise / noise.sum())
    losses = []
    for epoch, centres, contexts in each_epochs_pairs(counts, sequences, cfg, rng):
        chunk = cfg.batch_size * 256  # steps between two updates of the progress bar
        for at in range(0, len(centres), chunk):
            stop = min(at + chunk, len(centres))
            share = (epoch + at / len(centres)) / cfg.epochs, (epoch + stop / len(centres)) / cfg.epochs
            steps = train_steps(rows, outputs, centres[at:stop], contexts[at:stop], cumulative, cfg.negatives,
                                cfg.batch_size, cfg.lr, cfg.min_lr, *share, int(rng.integers(2**31)))
            losses += steps.tolist()
            if progress is not None:
                progress.update(len(steps))
    return unit_rows(rows), losses


def word_model_of(run_dir) -> "WordRows | WordHead | None":
    """The run's word rows or word head (`seqlab tune --objective words`), or None."""
    return WordRows.of(run_dir) or WordHead.of(run_dir)


def tuned_words(run_dir, backward=None, states: str | None = None) -> "WordRows | WordHead | None":
    """The run's word rows or head, if it has them, checked against the options they replace (they read their
    own states)."""
    model = word_model_of(run_dir)
    if model is not None and backward is not None:
        raise SeqlabError(f"{run_dir} has word vectors of its own (seqlab tune --objective words) made from its "
                          f"forward states alone; leave --backward out")
    if model is not None and states not in (None, model.states):
        raise SeqlabError(f"{run_dir}'s word vectors are made from the {model.states} states; leave --states out")
    return model
