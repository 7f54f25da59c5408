"""A word-level objective for word vectors: a head on the run's states, trained as skip-gram.

    seqlab tune runs/books books/ --objective words --out runs/books-words
    seqlab similar runs/books-words password             # uses the head

    head, losses = head_from_sums(word_sums(run, texts()), texts(), WordsConfig())
    vectors = head.vectors(means)                         # (V, dim) unit length, means: (V, D) average states

A word's states averaged over its occurrences (vectors/words.py) say what surrounds it and what kind of word it
is, but ranked by cosine they find related words more than similar ones (SimLex-999, docs/vectors.md). Word2vec's
skip-gram with negative sampling (Mikolov et al. 2013) trains each word's vector to predict the words within a
small window of it against words drawn at random; a small window favours words that stand in each other's
place. Here a word's input vector is not a free parameter but a linear map of its average state,
v_w = W (m_w - mean) / scale, and only W and the output vectors u_c are trained: for every (word, neighbour
within `window`) pair of the corpus, log sigmoid(v_w . u_c) + sum over `negatives` words n drawn from the
unigram distribution ** 0.75 of log sigmoid(-v_w . u_n), as word2vec does (with its random reduced window and
its down-sampling of frequent words). By default the network's weights stay as they are, so training reads the
corpus through the network once (the sums `seqlab similar` caches) and the head trains on them in seconds to minutes
(`network_steps` or `network_seconds` first moves the network with the objective: vectors/joint.py);
the head is saved beside the run's weights (word_head.safetensors + .json) and `similar` and `embed --unit
word` apply it to the averages they compute, for any word, rare ones included.
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
from .words import check_states, find_words, state_parts

HEAD_FILE, HEAD_JSON = "word_head.safetensors", "word_head.json"


@dataclass
class WordsConfig:
    states: str = "before+inside"  # the states averaged per word that the head reads
    dim: int = 100  # gensim Word2Vec's default size
    window: int = 2
    negatives: int = 5
    epochs: int = 5
    batch_size: int = 256  # (word, neighbour) pairs per step
    lr: float = 0.025  # word2vec's: plain SGD of the word rows on the summed loss, decayed linearly to min_lr
    min_lr: float = 1e-4
    map_lr: float = 2e-3  # Adam's rate for a dense map (the head's W), decayed linearly to a hundredth of it
    sample: float = 1e-3  # word2vec's down-sampling threshold for frequent words
    min_count: int = 5  # the words trained on: seen at least this often
    seed: int = 0
    # an epoch's pairs shuffled, or in the text's order as word2vec takes them: free word rows then come out about 0.01
    # higher on SimLex-999 (docs/vectors.md); the head's dense map, in order, does not learn the tests' small corpus
    shuffle: bool = True
    # the network's weights move with the objective first (vectors/joint.py) for this many steps or seconds
    network_steps: int = 0
    network_seconds: float = 0.0
    network_lr: float = 3e-4  # Adam's rate for the network's weights (the head's is lr)
    lm_weight: float = 1.0  # the next-token loss's weight beside the skip-gram loss: the run stays a language model


@dataclass
class WordHead:
    proj: np.ndarray  # (dim, D)
    mean: np.ndarray  # (D,) the vocabulary's mean average state
    scale: np.ndarray  # (D,) and its spread per dimension
    states: str

    def vectors(self, means: np.ndarray) -> np.ndarray:
        """Average states (V, D) -> word vectors (V, dim), unit length."""
        return unit_rows(((np.asarray(means, np.float64) - self.mean) / self.scale) @ self.proj.T)

    def save(self, run_dir, record: dict) -> None:
        from safetensors.numpy import save_file

        save_file({"proj": self.proj.astype(np.float32), "mean": self.mean.astype(np.float32),
                   "scale": self.scale.astype(np.float32)}, str(Path(run_dir) / HEAD_FILE))
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


class StateEncoder(torch.nn.Module):
    """A word's input vector from its average state: W (m_w - mean) / scale."""

    def __init__(self, means: np.ndarray, dim: int, seed: int = 0):
        super().__init__()
        self.mean, self.scale = means.mean(0), means.std(0) + 1e-6  # over the vocabulary, each word once
        self.register_buffer("features", torch.from_numpy((means - self.mean) / self.scale).float(), persistent=False)
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
    keep = keep_probabilities(counts, cfg.sample)
    words = np.concatenate(sequences or [np.zeros(0, np.int64)])
    sentence = np.repeat(np.arange(len(sequences)), [len(s) for s in sequences])
    optimizers = optimizers_for([encoder, outputs], cfg)
    losses = []
    for epoch in range(cfg.epochs):
        centres, contexts = epoch_pairs(words, sentence, keep, cfg.window, rng, cfg.shuffle)
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


def head_for(run_dir, backward=None, states: str | None = None) -> WordHead | None:
    """The run's word head, if it has one, checked against the options it replaces (it reads its own states)."""
    head = WordHead.of(run_dir)
    if head is not None and backward is not None:
        raise SeqlabError(f"{run_dir} has a word head (seqlab tune --objective words) that reads its forward "
                          f"states alone; leave --backward out")
    if head is not None and states not in (None, head.states):
        raise SeqlabError(f"{run_dir}'s word head reads the {head.states} states; leave --states out")
    return head
