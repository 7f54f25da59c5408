"""Word similarity and analogies: seqlab's word vectors against gensim Word2Vec (skip-gram), same corpus,
same words, same vocabulary, evaluated by the same code.

    python bench/prose_corpus.py                                   # the corpus (Debian packages)
    seqlab train ~/.cache/seqlab/corpora/prose-en --arch lstm --tokenizer bpe:2048 --out runs/prose-fwd ...
    seqlab train ~/.cache/seqlab/corpora/prose-en ... --backward --out runs/prose-bwd
    python bench/vectors_words.py runs/prose-fwd --backward runs/prose-bwd [--min-count 5]
    python bench/vectors_words.py runs/prose-fwd --backward runs/prose-bwd --states "" \
        --joins fwd-after+bwd-before,fwd-after+bwd-after        # ELMo-style: each run's own states

Words are find_words' (runs of letters, lowercased) over the run's training split; Word2Vec is trained on
the same words, one sentence per line, with the same min_count, so both have the same vocabulary. Test data
ship with gensim (gensim.test.utils.datapath): WordSim-353 and SimLex-999 give Spearman's rho over the pairs
whose words are both in the vocabulary (the out-of-vocabulary share is shown; 95% bootstrap interval over
pairs), questions-words.txt the analogy accuracy (gensim's evaluate_word_analogies: 3CosAdd over the 300,000
most frequent words, case-insensitive; Wilson interval over the questions it could ask).

`--joins` measures joins of each run's own states (`fwd-after+bwd-before`: the forward run's state after
the word with the backward run's state before it, the issue's ELMo-like suggestion), each part unit length
before they are concatenated, as `seqlab similar --backward` joins them.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import print_table  # noqa: E402

from seqlab.run import load  # noqa: E402
from seqlab.stats import bootstrap_statistic, wilson  # noqa: E402
from seqlab.vectors.embed import unit_rows  # noqa: E402
from seqlab.vectors.words import STATES, WordVectors, training_texts, training_word_vectors, word_tokens  # noqa: E402


def keyed(wv: WordVectors):
    from gensim.models import KeyedVectors

    kv = KeyedVectors(wv.vectors.shape[1])
    kv.add_vectors(wv.words, wv.vectors)
    return kv


def pair_scores(kv, name: str) -> tuple[str, float]:
    """Spearman's rho [interval] over in-vocabulary pairs, and the out-of-vocabulary share."""
    from gensim.test.utils import datapath
    from scipy.stats import spearmanr

    human, model, total = [], [], 0
    for line in open(datapath(name), encoding="utf-8"):
        if line.startswith("#") or not line.strip():
            continue
        a, b, score = line.lower().split("\t")[:3]
        total += 1
        if a in kv.key_to_index and b in kv.key_to_index:
            human.append(float(score))
            model.append(float(kv.similarity(a, b)))
    human, model = np.array(human), np.array(model)
    if len(human) < 3:
        return "n/a", 1 - len(human) / total
    rho = spearmanr(human, model).statistic
    lo, hi = bootstrap_statistic(lambda i: spearmanr(human[i], model[i]).statistic, len(human), 1, n_boot=500)
    return f"{rho:.3f} [{lo:.3f}, {hi:.3f}]", 1 - len(human) / total


def analogies(kv) -> str:
    from gensim.test.utils import datapath

    _, sections = kv.evaluate_word_analogies(datapath("questions-words.txt"))
    total = next(s for s in sections if s["section"] == "Total accuracy")
    right, n = len(total["correct"]), len(total["correct"]) + len(total["incorrect"])
    if not n:
        return "n/a (0 questions)"
    lo, hi = wilson(right, n)
    return f"{right / n:.3f} [{lo:.3f}, {hi:.3f}] of {n}"


def evaluate(name: str, wv: WordVectors, seconds: float) -> list:
    kv = keyed(wv)
    ws, ws_oov = pair_scores(kv, "wordsim353.tsv")
    sl, sl_oov = pair_scores(kv, "simlex999.txt")
    return [name, wv.vectors.shape[1], f"{len(wv):,}", ws, f"{ws_oov:.0%}", sl, f"{sl_oov:.0%}", analogies(kv),
            f"{seconds:.0f}"]


def gensim_vectors(texts, min_count: int, dim: int, seed: int = 1) -> WordVectors:
    from gensim.models import Word2Vec

    sentences = [word_tokens(line) for data in texts for line in data.splitlines()]
    sentences = [s for s in sentences if s]
    model = Word2Vec(sentences, vector_size=dim, sg=1, window=5, min_count=min_count, workers=2, seed=seed,
                     epochs=5)
    words = list(model.wv.index_to_key)
    counts = np.array([model.wv.get_vecattr(w, "count") for w in words])
    vectors = model.wv.vectors / np.linalg.norm(model.wv.vectors, axis=1, keepdims=True)
    return WordVectors(words, counts, vectors.astype(np.float32))


def joined(parts: list[WordVectors], words: list[str]) -> WordVectors:
    """The parts' vectors of `words`, concatenated and scaled to unit length (each part is unit length)."""
    rows = [np.stack([p.vectors[p.ids[w]] for w in words]) for p in parts]
    counts = np.array([parts[0].counts[parts[0].ids[w]] for w in words])
    return WordVectors(words, counts, unit_rows(np.concatenate(rows, axis=1)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--backward", help="a backward run of the same corpus (seqlab train --backward)")
    ap.add_argument("--corpus", nargs="+", help="the run's corpus, if not where it was trained")
    ap.add_argument("--min-count", type=int, default=5)
    ap.add_argument("--states", default=",".join(STATES), help="which seqlab variants to measure")
    ap.add_argument("--joins", default="", help="e.g. fwd-after+bwd-before,fwd-after+bwd-after (needs --backward)")
    ap.add_argument("--dim", type=int, default=100, help="Word2Vec's vector size (gensim's default 100)")
    args = ap.parse_args()
    run = load(args.run)
    rows = []
    t0 = time.perf_counter()
    _, texts = training_texts(run.config, args.corpus)
    reference = gensim_vectors(texts(), args.min_count, args.dim)
    rows.append(evaluate(f"gensim Word2Vec skip-gram ({args.dim}d)", reference, time.perf_counter() - t0))
    vocab = set(reference.words)
    print(rows[-1], flush=True)
    variants = [(s, None) for s in args.states.split(",") if s]
    if args.backward:
        variants += [(s, args.backward) for s in args.states.split(",") if s]
    for states, backward in variants:
        t0 = time.perf_counter()
        back = load(args.backward) if backward else None
        wv = training_word_vectors(run, back, states, args.corpus).restrict(args.min_count)
        same = set(wv.words) == vocab
        name = f"seqlab {states}" + (" + backward" if backward else "") + ("" if same else " (other vocabulary!)")
        rows.append(evaluate(name, wv, time.perf_counter() - t0))
        print(rows[-1], flush=True)
    runs = {"fwd": run, "bwd": load(args.backward) if args.backward else None}
    for join in filter(None, args.joins.split(",")):
        t0 = time.perf_counter()
        which = [p.split("-") for p in join.split("+")]
        parts = [training_word_vectors(runs[r], None, s, args.corpus) for r, s in which]
        rows.append(evaluate(f"seqlab {join}", joined(parts, reference.words), time.perf_counter() - t0))
        print(rows[-1], flush=True)
    print()
    print_table(f"word vectors on {Path(args.run).name}'s training split, words seen >= {args.min_count} times "
                f"(95% intervals)", ["vectors", "dims", "vocabulary", "WordSim-353 rho", "OOV", "SimLex-999 rho",
                                     "OOV", "analogies (accuracy of n)", "seconds"], rows)


if __name__ == "__main__":
    main()
