"""Word similarity and analogies: seqlab's word vectors against gensim Word2Vec (skip-gram), same corpus,
same words, same vocabulary, evaluated by the same code; gensim is retrained in the same run.

    python bench/prose_corpus.py                                   # the corpus (Debian packages)
    seqlab train ~/.cache/seqlab/corpora/prose-en --arch lstm --tokenizer bpe:2048 --out runs/prose-fwd ...
    seqlab train ~/.cache/seqlab/corpora/prose-en ... --backward --out runs/prose-bwd
    python bench/vectors_words.py runs/prose-fwd --backward runs/prose-bwd [--min-count 5]

Words are find_words' (runs of letters, lowercased) over the run's training split; Word2Vec is trained on
the same words, one sentence per line, with the same min_count, so both have the same vocabulary. Test data
ship with gensim (gensim.test.utils.datapath): WordSim-353 and SimLex-999 give Spearman's rho over the pairs
whose words are both in the vocabulary (the out-of-vocabulary share is shown; 95% bootstrap interval over
pairs), questions-words.txt the analogy accuracy (gensim's evaluate_word_analogies: 3CosAdd over the 300,000
most frequent words, case-insensitive; Wilson interval over the questions it could ask). `- gensim` columns:
seqlab's rho less gensim's with a paired bootstrap interval (the same resampled pairs for both). `A`/`B`: rho
on two fixed random halves of each test's pairs (seed 26): a variant chosen on A is judged on B.

Each run is read once; every state (before, after, inside) of every word is summed in that reading
(vectors/words.py word_state_sums), then each variant is post-processed as `seqlab similar` does
(Accumulator.vectors: word-mean centring, `components` top principal directions removed, unit length; with
a backward run the directions apart, then joined). `--components` lists the removals measured: `auto` is
round(dims / 100), seqlab's default. The goal row is seqlab's default (`seqlab similar RUN --backward BWD`).

The word objective (`seqlab tune RUN CORPUS --objective words`, vectors/skipgram.py) is measured on the same sums:
its word rows, each started from its word's top principal coordinates of the standardised forward `before+inside`
averages at length 0.3 and trained as word2vec trains its rows, pairs in the text's order (the goal row:
`tune`'s defaults), then the same words through the rows' least-squares map from the states (what a word
without a row gets: a rarer word, another text's word), in sample, and out of sample: a fifth of the words (seed 26)
through a map fitted on the other rows alone, the rest their rows, so only pairs with one of that fifth differ from
the goal row. Beside them the control that tells what the states add:
the same rows started from word2vec's noise (word2vec itself in seqlab's trainer). `--starts 0.1,1` adds rows
started at other lengths; `--heads before+inside` a word head on those forward states (`tune --form head`);
`--order text|shuffled` gives every row or head its pairs in the text's order or shuffled instead of its form's
own. Rows `words: ...` give the training CPU time (time.thread_time). `--gensim-windows 5,2` also trains gensim
with a window of 2 as a second reference (the `- gensim` column stays window 5's). A run tuned with `--objective
words` adds a row of its own rows or head, as `seqlab similar RUN` gives them.

`--rows` adds the run's token embedding table (vectors/rows.py: each word the mean over its occurrences of the rows
of the tokens spelling it; no network run), for a word-level run (a large BPE vocabulary, `--softmax full`: the
table is also the output layer). Rows `rows: whole-token pairs` score only the pairs whose two words are each one
token after a space, for the table and for gensim on those same pairs (their share of the in-vocabulary pairs is
printed), so the rule for words split into pieces (the mean of their rows) is measured apart from the rows.
"""

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import print_table  # noqa: E402

from seqlab.run import load  # noqa: E402
from seqlab.progress import bar  # noqa: E402
from seqlab.stats import bootstrap_statistic, wilson  # noqa: E402
from seqlab.vectors.embed import unit_rows  # noqa: E402
from word_rows import row_sums, whole_token_words  # noqa: E402
from seqlab.vectors.skipgram import (  # noqa: E402
    WordsConfig, fitted_map, head_from_sums, rows_from_sums, standardised, vocabulary_of, word_model_of)
from seqlab.vectors.words import (  # noqa: E402
    DEFAULT_STATES, Accumulator, WordVectors, cached_sums, find_words, training_texts, word_state_sums, word_tokens)

PARTS = ("before", "after", "inside")


def keyed(wv: WordVectors):
    from gensim.models import KeyedVectors

    kv = KeyedVectors(wv.vectors.shape[1])
    kv.add_vectors(wv.words, wv.vectors)
    return kv


def test_pairs(name: str) -> tuple[list[tuple[str, str, float]], np.ndarray]:
    """(word a, word b, human score) of every pair of a test, and its half (0: A, 1: B), fixed by seed 26."""
    from gensim.test.utils import datapath

    pairs = []
    for line in open(datapath(name), encoding="utf-8"):
        if line.startswith("#") or not line.strip():
            continue
        a, b, score = line.lower().split("\t")[:3]
        pairs.append((a, b, float(score)))
    return pairs, np.random.default_rng(26).permutation(len(pairs)) % 2


def cosines(kv, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(human scores, cosines, halves) of the in-vocabulary pairs, and the out-of-vocabulary share."""
    pairs, halves = test_pairs(name)
    keep = [i for i, (a, b, _) in enumerate(pairs) if a in kv.key_to_index and b in kv.key_to_index]
    human = np.array([pairs[i][2] for i in keep])
    model = np.array([float(kv.similarity(pairs[i][0], pairs[i][1])) for i in keep])
    return human, model, halves[keep], 1 - len(keep) / len(pairs)


def rho(human, model) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(human, model).statistic) if len(human) >= 3 else float("nan")


def pair_scores(kv, name: str, reference=None) -> list[str]:
    """rho [interval], OOV share, rho on halves A and B, and rho less the reference's [paired interval]."""
    human, model, halves, oov = cosines(kv, name)
    if len(human) < 3:
        return ["n/a", f"{oov:.0%}", "", "", ""]
    lo, hi = bootstrap_statistic(lambda i: rho(human[i], model[i]), len(human), 1, n_boot=500)
    out = [f"{rho(human, model):.3f} [{lo:.3f}, {hi:.3f}]", f"{oov:.0%}",
           f"{rho(human[halves == 0], model[halves == 0]):.3f} / {rho(human[halves == 1], model[halves == 1]):.3f}"]
    if reference is None:
        return out + [""]
    ref_human, ref_model, _, _ = cosines(reference, name)
    assert np.array_equal(ref_human, human), "the same vocabulary gives the same pairs"
    lo, hi = bootstrap_statistic(lambda i: rho(human[i], model[i]) - rho(human[i], ref_model[i]), len(human), 1,
                                 n_boot=500)
    return out + [f"{rho(human, model) - rho(human, ref_model):+.3f} [{lo:+.3f}, {hi:+.3f}]"]


def analogies(kv) -> str:
    from gensim.test.utils import datapath

    _, sections = kv.evaluate_word_analogies(datapath("questions-words.txt"))
    total = next(s for s in sections if s["section"] == "Total accuracy")
    right, n = len(total["correct"]), len(total["correct"]) + len(total["incorrect"])
    if not n:
        return "n/a (0 questions)"
    lo, hi = wilson(right, n)
    return f"{right / n:.3f} [{lo:.3f}, {hi:.3f}] of {n}"


def evaluate(name: str, wv: WordVectors, reference=None) -> list:
    kv = keyed(wv)
    ws = pair_scores(kv, "wordsim353.tsv", reference)
    sl = pair_scores(kv, "simlex999.txt", reference)
    return [name, wv.vectors.shape[1], f"{len(wv):,}", *ws[:3], ws[3], *sl[:3], sl[3], analogies(kv)]


def figures(wv: WordVectors) -> np.ndarray:
    """(WordSim-353 rho, SimLex-999 rho, analogy accuracy) as numbers, for the seeds' table."""
    from gensim.test.utils import datapath

    kv = keyed(wv)
    out = [rho(*cosines(kv, name)[:2]) for name in ("wordsim353.tsv", "simlex999.txt")]
    return np.array(out + [kv.evaluate_word_analogies(datapath("questions-words.txt"))[0]])


def seed_rows(args, texts, sums, cfg: WordsConfig, words: list[str]) -> list:
    """gensim (seeds 1..n) and the word objective's rows from noise and from the states (seeds 0..n-1): each
    test's mean over the seeds (lowest to highest), and the rows less gensim seed by seed (seed k against k + 1)."""
    runs = {"gensim Word2Vec skip-gram": [], "rows from word2vec's noise (control)": [],
            f"rows started from fwd-{cfg.states} at {cfg.start:g} (goal)": []}
    for k in range(args.seeds):
        reference = gensim_vectors(texts(), args.min_count, args.dim, seed=k + 1, workers=args.workers)
        reference = WordVectors(words, reference.counts, reference.vectors[[reference.ids[w] for w in words]])
        control = rows_vectors(sums["fwd"], replace(cfg, start=0.0, seed=k), texts, words)[0]
        started = rows_vectors(sums["fwd"], replace(cfg, seed=k), texts, words)[0]
        for name, wv in zip(runs, (reference, control, started)):
            runs[name].append(figures(wv))
        print(f"seed {k}:", {name: np.round(f[-1], 3).tolist() for name, f in runs.items()}, flush=True)
    gensim, out = np.array(runs.pop("gensim Word2Vec skip-gram")), []
    for name, f in [("gensim Word2Vec skip-gram", gensim)] + [(n, np.array(f)) for n, f in runs.items()]:
        row = [f"{m:.3f} ({lo:.3f}-{hi:.3f})" for m, lo, hi in zip(f.mean(0), f.min(0), f.max(0))]
        d = f - gensim
        less = [f"{m:+.3f} ({lo:+.3f} to {hi:+.3f})" for m, lo, hi in zip(d.mean(0), d.min(0), d.max(0))]
        out.append([name, *row, *(less if f is not gensim else [""] * 3)])
    return out


def gensim_vectors(texts, min_count: int, dim: int, seed: int = 1, window: int = 5, workers: int = 2) -> WordVectors:
    from gensim.models import Word2Vec

    sentences = [word_tokens(line) for data in texts for line in data.splitlines()]
    sentences = [s for s in sentences if s]
    model = Word2Vec(sentences, vector_size=dim, sg=1, window=window, min_count=min_count, workers=workers, seed=seed,
                     epochs=5)
    words = list(model.wv.index_to_key)
    counts = np.array([model.wv.get_vecattr(w, "count") for w in words])
    vectors = model.wv.vectors / np.linalg.norm(model.wv.vectors, axis=1, keepdims=True)
    return WordVectors(words, counts, vectors.astype(np.float32))


def read_sums(run, texts, total: int, keep_in: Path | None = None) -> dict[str, Accumulator]:
    """One reading of the training split: each word's sums of its before, after and inside states (kept in and
    read back from `keep_in/<run's name>` when given, to measure other rows without reading the run again)."""
    kept = keep_in / Path(run.path).name if keep_in else None
    if kept and (kept / "sums.safetensors").exists():
        return split_parts(Accumulator.load(kept))
    acc = Accumulator()
    with bar(total=total, desc=f"states of {Path(run.path).name}") as b:
        for data in texts():
            words, starts, ends = find_words(data)
            if words:
                ids = acc.word_ids(words)
                for direction, sums in enumerate(word_state_sums(run, data, starts, ends, ids, len(acc.ids),
                                                                 list(PARTS))):
                    acc.add(direction, sums)
            b.update(len(data))
    if kept:
        acc.save(kept)
    return split_parts(acc)


def tuned_sums(run) -> tuple:
    """A run tuned with `seqlab tune --objective words`: its word rows or head and the sums of its states that the
    tune read and left in the cache (what `seqlab similar RUN` uses), so the run is measured without reading it
    again; or None."""
    tuned = word_model_of(run.path)
    acc = cached_sums(run.path, tuned.states) if tuned is not None else None
    return (tuned, acc) if acc is not None else None


def split_parts(acc: Accumulator, parts_read=PARTS) -> dict[str, Accumulator]:
    parts = {}
    for direction, part in enumerate(parts_read):  # each state on its own, as `seqlab similar --states` gives it
        parts[part] = Accumulator()
        parts[part].ids, parts[part].counts, parts[part].sums = acc.ids, acc.counts, [acc.sums[direction]]
    return parts


def variant(parts: list[tuple[dict, str]], components, words: list[str], min_count: int) -> WordVectors:
    """Each part (a run's sums, a state) post-processed as `seqlab similar` does over the words seen at least
    min_count times, joined, in the order of `words`."""
    rows = []
    for accs, part in parts:
        wv = accs[part].vectors(components, min_count)
        rows.append(wv.vectors[[wv.ids[w] for w in words]])
        counts = wv.counts[[wv.ids[w] for w in words]]
    return WordVectors(words, counts, unit_rows(np.concatenate(rows, axis=1)))


def head_vectors(parts: dict, states: str, cfg: WordsConfig, texts, words: list[str]) -> tuple[WordVectors, float]:
    """The word objective's head on the forward run's `states` sums: (vectors of `words`, CPU seconds to train)."""
    acc = joined(parts, states)
    t0 = time.thread_time()
    head, _ = head_from_sums(acc, texts(), WordsConfig(**{**cfg.__dict__, "states": states}))
    seconds = time.thread_time() - t0
    keep, means = vocabulary_of(acc, cfg)
    at = {w: i for i, w in enumerate(np.array(list(acc.ids))[keep])}
    rows = [at[w] for w in words]
    return WordVectors(words, acc.counts[keep][rows], head.vectors(means[rows])), seconds


def rows_vectors(parts: dict, cfg: WordsConfig, texts, words: list[str]) -> tuple[WordVectors, WordVectors,
                                                                                   WordVectors, float]:
    """The word objective's rows (skipgram.rows_from_sums) on the forward run's cfg.states sums: (the rows of
    `words`; the same words through the rows' map from the states; the rows with a fifth of the words (seed 26)
    through a map fitted on the other rows alone, the map out of sample; the CPU seconds to train)."""
    acc = joined(parts, cfg.states)
    t0 = time.thread_time()
    table, _ = rows_from_sums(acc, texts(), cfg)
    seconds = time.thread_time() - t0
    _, means = vocabulary_of(acc, cfg)  # in the rows' order
    features = standardised(means)[0]
    held = np.random.default_rng(26).random(len(table.words)) < 0.2
    unseen = table.rows.copy()
    unseen[held] = unit_rows(features[held] @ fitted_map(features[~held], table.rows[~held].astype(np.float64)).T)
    at = [table.ids[w] for w in words]
    counts = table.counts[at]
    return (WordVectors(words, counts, table.rows[at]), WordVectors(words, counts, table.fit.vectors(means[at])),
            WordVectors(words, counts, unseen[at]), seconds)


def row_rows(run, texts, total: int, reference: WordVectors, ref_kv, components, min_count: int) -> list:
    """The table's rows of the reference's words, as they are (unit length, not centred) and post-processed as the
    states are, each on all words and on the whole-token pairs only (gensim restricted to the same words beside
    them)."""
    with bar(total=total, desc=f"rows of {Path(run.path).name}") as b:
        acc = row_sums(run, texts(), progress=b)
    words = reference.words
    whole = whole_token_words(run, words)
    keep = [i for i, w in enumerate(words) if w in whole]
    sub_ref = WordVectors([words[i] for i in keep], reference.counts[keep], reference.vectors[keep])
    sub_kv = keyed(sub_ref)
    rows = [evaluate(f"gensim on whole-token pairs ({len(whole):,} of the words are one token)", sub_ref)]
    for name in ("wordsim353.tsv", "simlex999.txt"):
        print(f"{name}: {len(cosines(sub_kv, name)[0])} of {len(cosines(ref_kv, name)[0])} in-vocabulary pairs are "
              f"whole tokens", flush=True)
    raw = WordVectors(words, reference.counts, unit_rows(np.stack([acc.sums[0][acc.ids[w]] / acc.counts[acc.ids[w]]
                                                                   for w in words])))
    for c, wv in [("raw", raw)] + [(c, variant([({"rows": acc}, "rows")], c, words, min_count)) for c in components]:
        removed = "not centred" if c == "raw" else f"{'auto' if c is None else c} removed"
        rows.append(evaluate(f"rows: mean of spelled rows, {removed}", wv, ref_kv))
        rows.append(evaluate(f"rows: whole-token pairs, {removed}",
                             WordVectors(sub_ref.words, sub_ref.counts, wv.vectors[keep]), sub_kv))
        print(*rows[-2:], sep="\n", flush=True)
    return rows


def joined(parts: dict, states: str) -> Accumulator:
    """One accumulator with the sums of each `+`-joined state, in order (as word_sums(states=...) reads them)."""
    acc = Accumulator()
    first = parts[PARTS[0]]
    acc.ids, acc.counts, acc.sums = first.ids, first.counts, [parts[p].sums[0] for p in states.split("+")]
    return acc


def reads_states(args) -> bool:
    """Whether any row asked for needs the run's states (a reading of the split through the network)."""
    return bool(args.states or args.heads or args.backward or not args.no_objective or word_model_of(args.run))


def report(args, rows: list, gensim_seconds: float) -> None:
    print()
    print_table(f"word vectors on {Path(args.run).name}'s training split, words seen >= {args.min_count} times "
                f"(95% intervals; gensim trained in {gensim_seconds:.0f} s)",
                ["vectors", "dims", "vocabulary", "WordSim-353 rho", "OOV", "A / B", "- gensim", "SimLex-999 rho",
                 "OOV", "A / B", "- gensim", "analogies (accuracy of n)"], rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--backward", help="a backward run of the same corpus (seqlab train --backward)")
    ap.add_argument("--corpus", nargs="+", help="the run's corpus, if not where it was trained")
    ap.add_argument("--min-count", type=int, default=5)
    ap.add_argument("--states", default=",".join(PARTS), help="which states to measure (before, after, inside)")
    ap.add_argument("--components", default="0,auto", help="top components removed: numbers or auto (dims/100)")
    ap.add_argument("--joins", default="after+after,inside+inside",
                    help="forward+backward states joined besides the same state of both (needs --backward)")
    ap.add_argument("--dim", type=int, default=100, help="Word2Vec's vector size (gensim's default 100)")
    ap.add_argument("--heads", default="",
                    help="forward states a word head reads (tune --form head), one row each, e.g. before+inside")
    ap.add_argument("--epochs", type=int, default=WordsConfig.epochs, help="the word objective's epochs")
    ap.add_argument("--window", type=int, help="the word objective's window (default: each form's own)")
    ap.add_argument("--order", choices=("form", "text", "shuffled"), default="form",
                    help="each epoch's skip-gram pairs in the text's order (as word2vec takes them), shuffled, or "
                         "each form's own (rows in order, a head shuffled)")
    ap.add_argument("--gensim-windows", default="5", help="gensim's windows: the first is the reference")
    ap.add_argument("--workers", type=int, default=2, help="gensim's threads (1 on a shared machine)")
    ap.add_argument("--sums", type=Path, help="keep each run's per-word sums here and reuse them")
    ap.add_argument("--no-objective", action="store_true", help="leave out the word objective's rows")
    ap.add_argument("--seeds", type=int, default=1,
                    help="also train gensim and the objective's two rows with this many seeds each: their means")
    ap.add_argument("--no-control", action="store_true", help="leave out the rows started from noise")
    ap.add_argument("--starts", default="", help="other lengths of the rows' start from the states, one row each "
                    f"(the goal row's is {WordsConfig.start})")
    ap.add_argument("--rows", action="store_true", help="add the run's embedding rows (a word-level run)")
    args = ap.parse_args()
    run = load(args.run)
    paths, texts = training_texts(run.config, args.corpus)
    total = sum(p.stat().st_size for p in paths)
    t0 = time.perf_counter()
    reference = gensim_vectors(texts(), args.min_count, args.dim, workers=args.workers)
    gensim_seconds = time.perf_counter() - t0
    ref_kv = keyed(reference)
    rows = [evaluate(f"gensim Word2Vec skip-gram ({args.dim}d)", reference)]
    print(rows[-1], flush=True)
    for window in [int(w) for w in args.gensim_windows.split(",")[1:]]:
        rows.append(evaluate(f"gensim Word2Vec skip-gram ({args.dim}d), window {window}",
                             gensim_vectors(texts(), args.min_count, args.dim, window=window, workers=args.workers),
                             ref_kv))
        print(rows[-1], flush=True)
    components = [None if c == "auto" else int(c) for c in args.components.split(",")]
    if args.rows:
        rows += row_rows(run, texts, total, reference, ref_kv, components, args.min_count)
    if not reads_states(args):
        report(args, rows, gensim_seconds)
        return
    tuned = tuned_sums(run)
    sums = {"fwd": split_parts(tuned[1], tuned[0].states.split("+")) if tuned else read_sums(run, texts, total,
                                                                                              args.sums)}
    if args.backward:
        sums["bwd"] = read_sums(load(args.backward), texts, total, args.sums)
    words = reference.words
    assert all(w in sums["fwd"]["before"].ids for w in words), "the same words are counted by both"
    states = [s for s in args.states.split(",") if s]
    variants = [([("fwd", s)], c) for s in states for c in components]
    if args.backward:
        joins = [s + "+" + s for s in states] + [j for j in args.joins.split(",") if j]
        variants += [([("fwd", a), ("bwd", b)], c) for j in dict.fromkeys(joins) for a, b in [j.split("+")]
                     for c in components]
    goal = ([("fwd", DEFAULT_STATES)] + ([("bwd", DEFAULT_STATES)] if args.backward else []), None)
    for parts, c in variants:
        name = "+".join(f"{r}-{s}" for r, s in parts) + f", {'auto' if c is None else c} removed"
        wv = variant([(sums[r], s) for r, s in parts], c, words, args.min_count)
        rows.append(evaluate(name + (" (default: goal row)" if (parts, c) == goal else ""), wv, ref_kv))
        print(rows[-1], flush=True)
    shuffle = {"form": None, "text": False, "shuffled": True}[args.order]
    cfg = WordsConfig(dim=args.dim, min_count=args.min_count, epochs=args.epochs, window=args.window, shuffle=shuffle)
    starts = ([0.0] if not args.no_control else []) + [cfg.start] + [float(r) for r in args.starts.split(",") if r]
    starts = [] if args.no_objective else starts
    for start in dict.fromkeys(starts):
        table, mapped, unseen, seconds = rows_vectors(sums["fwd"], replace(cfg, start=start), texts, words)
        if start == 0:
            name = f"words: rows from word2vec's noise, window {cfg.window} (control: no states, {seconds:.0f} s)"
        else:
            name = (f"words: rows started from fwd-{cfg.states} at {start:g}, window {cfg.window} ({seconds:.0f} s)"
                    + (" (tune --objective words: goal row)" if start == WordsConfig.start else ""))
        rows.append(evaluate(name, table, ref_kv))
        print(rows[-1], flush=True)
        if start == WordsConfig.start:
            rows.append(evaluate("words: their map from the states (a word without a row; in sample)", mapped,
                                 ref_kv))
            rows.append(evaluate("words: the rows, a fifth of the words mapped by a map fitted without them",
                                 unseen, ref_kv))
            print(*rows[-2:], sep="\n", flush=True)
    seeds = seed_rows(args, texts, sums, cfg, words) if args.seeds > 1 and not args.no_objective else []
    if tuned:
        wv = tuned[1].vectors(min_count=args.min_count, tuned=tuned[0])
        rows.append(evaluate(f"words: the run's own {tuned[0].form} on fwd-{tuned[0].states} (seqlab similar RUN)",
                             wv, ref_kv))
        print(rows[-1], flush=True)
    head = WordsConfig(form="head", dim=args.dim, min_count=args.min_count, epochs=args.epochs, window=args.window,
                       shuffle=shuffle)
    for states in [h for h in args.heads.split(",") if h]:
        wv, seconds = head_vectors(sums["fwd"], states, head, texts, words)
        rows.append(evaluate(f"words: head on fwd-{states}, window {head.window} ({seconds:.0f} s)", wv, ref_kv))
        print(rows[-1], flush=True)
    report(args, rows, gensim_seconds)
    if seeds:
        print_table(f"the word objective over {args.seeds} seeds: mean (lowest-highest); less gensim seed by seed",
                    ["vectors", "WordSim-353 rho", "SimLex-999 rho", "analogies", "- gensim: WordSim",
                     "SimLex", "analogies"], seeds)


if __name__ == "__main__":
    main()
