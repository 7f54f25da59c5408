"""`seqlab similar RUN WORD [--plus W ...] [--minus W ...]`: nearest words by cosine, and analogies.

    seqlab similar runs/latest password
    seqlab similar runs/latest king --minus man --plus woman --json
    seqlab similar runs/latest --word2vec words.txt --projector proj/ --map words.png

The vocabulary is the run's training split (its own corpus and held-out fraction): words seen at least
--min-count times. Vectors are computed once per run and cached (vectors/words.py explains them).
"""

import json
from pathlib import Path

from .embed import set_threads
from .errors import SeqlabError
from .options import corpus_path, device, integer, output_dir, output_file, run_dir, text
from .vectors import load_backward, load_forward
from .vectors.skipgram import tuned_words
from .vectors.words import DEFAULT_COMPONENTS, DEFAULT_STATES, STATES, check_states, training_word_vectors


def word_vectors_of(run_dir, min_count: int = 5, backward=None, states: str | None = None, corpus=None,
                    device: str = "cpu", show_progress: bool = True, components: int | None = DEFAULT_COMPONENTS):
    """The run's training-split word vectors, words seen at least min_count times (components: top principal
    directions removed, None for round(dims / 100); vectors/words.py postprocess). A run tuned with
    `--objective words` has word rows (or a head) of its own, made from its own states (vectors/skipgram.py)."""
    check_states(states or DEFAULT_STATES)
    run = load_forward(run_dir, "similar", device)
    tuned = tuned_words(run_dir, backward, states)
    back = load_backward(backward, device) if backward is not None else None
    return training_word_vectors(run, back, states or DEFAULT_STATES, corpus, show_progress, components, min_count,
                                 tuned)


def similar(run_dir, word: str, plus=(), minus=(), k: int = 10, min_count: int = 5, backward=None,
            states: str | None = None, corpus=None, device: str = "cpu", show_progress: bool = True,
            vectors=None) -> dict:
    """{"word", "plus", "minus", "neighbours": [{"word", "score"}...], "vocabulary"}."""
    if not word or not word.strip():
        raise SeqlabError("the word is empty; give a word to look up")
    wv = vectors or word_vectors_of(run_dir, min_count, backward, states, corpus, device, show_progress)
    where = f"{run_dir}'s training split seen at least {min_count} times (--min-count)"
    found = wv.most_similar([word, *plus], list(minus), topn=k, where=where)
    return {"word": word.lower(), "plus": [w.lower() for w in plus], "minus": [w.lower() for w in minus],
            "neighbours": [{"word": w, "score": s} for w, s in found], "vocabulary": len(wv)}


def export(wv, word2vec=None, projector=None, map_png=None, map_words: int = 500, title: str = "") -> dict:
    written = {}
    if word2vec:
        wv.save_word2vec_format(word2vec)
        written["word2vec"] = str(word2vec)
    if projector:
        written["projector"] = [str(p) for p in wv.save_projector(projector)]
    if map_png:
        from .vectors.maps import draw_map

        png, page = draw_map(wv, map_png, top=map_words, title=title)
        written["map"] = [str(png), str(page)]
    return written


def add_cli(sub) -> None:
    p = sub.add_parser("similar", help="nearest words and analogies from a run's word vectors; exports",
                       description="Most similar words by cosine over the run's training split; king - man + "
                                   "woman is `similar RUN king --minus man --plus woman`.")
    p.add_argument("run", type=run_dir)
    p.add_argument("word", nargs="?", type=text, help="the word to look up (optional with an export)")
    p.add_argument("--plus", action="append", default=[], metavar="W", type=text, help="add this word's vector")
    p.add_argument("--minus", action="append", default=[], metavar="W", type=text, help="subtract this word's vector")
    p.add_argument("--k", type=integer(min=1), default=10, help="how many neighbours (default 10)")
    p.add_argument("--min-count", type=integer(min=1), default=5, help="vocabulary: words seen this often (5)")
    p.add_argument("--backward", metavar="RUN", type=run_dir,
                   help="a backward run whose states are joined (context on the right)")
    p.add_argument("--states", choices=STATES,
                   help=f"states around each occurrence that are averaged (default {DEFAULT_STATES}; a run "
                        f"tuned with --objective words: its own)")
    p.add_argument("--components", type=integer(min=0), default=DEFAULT_COMPONENTS,
                   help="top principal directions removed from the word averages (default: dims / 100)")
    p.add_argument("--corpus", nargs="+", metavar="PATH", type=corpus_path,
                   help="the run's corpus, if not where it was trained")
    p.add_argument("--word2vec", metavar="FILE", type=output_file, help="write the vectors in word2vec text format")
    p.add_argument("--projector", metavar="DIR", type=output_dir,
                   help="write TensorBoard projector files (vectors.tsv, metadata.tsv)")
    p.add_argument("--map", metavar="FILE.png", type=output_file,
                   help="draw a 2-D map (PCA, t-SNE); also FILE.html with hover labels")
    p.add_argument("--map-words", type=integer(min=4), default=500, help="most frequent words on the map (500)")
    p.add_argument("--device", default="cpu", type=device)
    p.add_argument("--threads", type=integer(min=1), help="torch threads (default: torch's)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cli)


def cli(args) -> None:
    exports = args.word2vec or args.projector or args.map
    if args.word is None and not exports:
        raise SeqlabError("give a WORD to look up, or an export (--word2vec, --projector, --map)")
    if args.map and Path(args.map).suffix.lower() != ".png":
        raise SeqlabError(f"--map takes a .png file name (the .html is written beside it), got {args.map}")
    set_threads(args)
    wv = word_vectors_of(args.run, args.min_count, args.backward, args.states, args.corpus, args.device,
                         show_progress=not args.json, components=args.components)
    result = {}
    if args.word is not None:
        result = similar(args.run, args.word, args.plus, args.minus, args.k, args.min_count, vectors=wv)
    if exports:
        result["written"] = export(wv, args.word2vec, args.projector, args.map, args.map_words,
                                   title=f"word vectors of {args.run}")
    if args.json:
        print(json.dumps(result))
        return
    if args.word is not None:
        query = " ".join([result["word"]] + [f"+ {w}" for w in result["plus"]] + [f"- {w}" for w in result["minus"]])
        print(f"nearest to {query} (cosine; {result['vocabulary']:,} words seen >= {args.min_count} times):")
        for n in result["neighbours"]:
            print(f"  {n['word']:<20} {n['score']:.3f}")
    for kind, where in result.get("written", {}).items():
        print(f"{kind}: {', '.join(where) if isinstance(where, list) else where}")
