"""Word vectors from a run's token embedding table (bench/vectors_words.py --rows): each word's rows, averaged
over its occurrences. Kept in bench/ while it does not reach gensim on SimLex-999 (docs/vectors.md, 2026-12-06).

A word-level language model whose output layer is tied to its embedding (`--softmax full`) learns rows that
stand for what can follow a context: two words that fit the same slots get near rows (Press & Wolf 2017), which
is similarity (SimLex-999) rather than relatedness. With a large BPE vocabulary most words are one token (their
leading space included), so the row is the word's own vector.

A word's vector is the mean, over its occurrences in the texts, of the mean of the rows of the tokens that spell
it there (the tokens after its `before` position up to its `after`, as seqlab/vectors/words.py finds them): a word
that is one token gets its row (" The" and " the" are two tokens: their rows are weighted by how often each is read);
a word split into pieces gets the mean of its pieces' rows. No network is run: only the tokenizer and the table.
"""

import numpy as np

from seqlab.vectors.words import Accumulator, find_words, occurrence_positions


def embedding_table(run) -> np.ndarray:
    """The run's token embedding rows (V, E) as float64."""
    return run.model.input_embedding().weight.detach().double().cpu().numpy()


def word_row_sums(run, table: np.ndarray, data: bytes, starts, ends, ids: np.ndarray, n_words: int) -> np.ndarray:
    """(n_words, E) sums over the occurrences (word ids `ids`) of the mean row of the tokens spelling each."""
    tokens, before, after = occurrence_positions(run, data, starts, ends)
    cum = np.concatenate([np.zeros((1, table.shape[1])), np.cumsum(table[tokens], axis=0)])
    width = np.maximum(after - before, 1)
    means = (cum[after + 1] - cum[before + 1]) / width[:, None]  # rows of tokens before+1 .. after
    sums = np.zeros((n_words, table.shape[1]))
    np.add.at(sums, ids, means)
    return sums


def row_sums(run, texts, progress=None) -> Accumulator:
    """Each word's sums of its spelled rows over its occurrences in `texts` (an iterable of bytes)."""
    acc, table = Accumulator(), embedding_table(run)
    for data in texts:
        words, starts, ends = find_words(data)
        if words:
            ids = acc.word_ids(words)
            acc.add(0, word_row_sums(run, table, data, starts, ends, ids, len(acc.ids)))
        if progress is not None:
            progress.update(len(data))
    return acc


def whole_token_words(run, words: list[str]) -> set[str]:
    """The words that the run's tokenizer reads as one token after a space (" word")."""
    tok = run.tokenizer
    return {w for w in words if len(tok.encode((" " + w).encode("utf-8"))) == 1}
