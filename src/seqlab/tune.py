"""`seqlab tune RUN CORPUS... --out NEW_RUN [--objective contrastive|words]`: better passage or word vectors.

    seqlab tune runs/latest notes/ --out runs/tuned --max-steps 300
    seqlab index runs/tuned notes/ --out idx/
    seqlab tune runs/latest notes/ --objective words --out runs/words
    seqlab similar runs/words password

`contrastive` (the default): two crops of one paragraph are pulled together, other paragraphs pushed apart
(vectors/tune.py); the next-token loss is kept alongside. `words`: word vectors trained skip-gram style, each
word predicting its neighbours, started from the run's word states (--form rows, the default: they pass gensim's
Word2Vec on the same corpus, docs/vectors.md) or a map of them (--form head) (vectors/skipgram.py); the weights
stay as they are unless --max-steps or --budget first moves them with the same objective beside the next-token loss
(vectors/joint.py).
NEW_RUN is an ordinary run either way (generate, eval, serve all take it).
"""

import sys

from .embed import set_threads
from .errors import SeqlabError
from .options import budget, corpus_path, device, integer, new_run, number, pattern, run_dir, seed
from .vectors import load_forward
from .vectors.embed import POOLINGS, new_output_dir
from .vectors.passages import corpus_files
from .vectors.joint import tune_words
from .vectors.skipgram import FORMS, WordsConfig
from .vectors.tune import CROPS, TuneConfig
from .vectors.tune import tune as tune_run
from .vectors.words import states_problem


OBJECTIVES = ("contrastive", "words")


def tune(run_dir, corpus, out, config: TuneConfig | WordsConfig | None = None, device: str = "cpu", log=print,
         show_progress: bool = True):
    """Fine-tune run_dir on corpus (a WordsConfig: train a word head on it); returns the new run's directory."""
    files = corpus_files(corpus)
    new_output_dir(out)
    run = load_forward(run_dir, "tune", device)
    if isinstance(config, WordsConfig):
        return tune_words(run, files, out, config, log, show_progress)
    return tune_run(run, files, out, config, log, show_progress)


def add_cli(sub) -> None:
    p = sub.add_parser("tune", help="tune a run for passage vectors (contrastive) or word vectors (--objective words)")
    p.add_argument("run", type=run_dir)
    p.add_argument("corpus", nargs="+", type=corpus_path, help="files, directories or globs whose paragraphs are used")
    p.add_argument("--out", required=True, type=new_run, help="the new run's directory")
    p.add_argument("--objective", choices=OBJECTIVES, default="contrastive",
                   help="contrastive: passage vectors (the weights move); words: skip-gram word vectors started "
                        "from the word states (with --max-steps or --budget the network moves with the objective "
                        "first, not yet measured)")
    clock = p.add_mutually_exclusive_group()
    clock.add_argument("--max-steps", type=integer(min=1),
                       help="contrastive steps (200); --objective words: steps that move the network with the word "
                            "objective before the rows or head are trained (none: the network stays as it is)")
    clock.add_argument("--budget", type=budget, help="wall-clock time instead of steps, e.g. 90s, 5m")
    p.add_argument("--batch-size", type=integer(min=2),
                   help="paragraphs per step, the negatives (32); --objective words: word pairs per step (256)")
    p.add_argument("--lr", type=number(min=0, min_open=True),
                   help="Adam's rate (3e-4); --objective words: the word rows' SGD rate (0.025, word2vec's)")
    p.add_argument("--temperature", type=number(min=0, min_open=True), default=0.05)
    p.add_argument("--lm-weight", type=number(min=0),
                   help="weight of the next-token loss kept (0.5; --objective words with --max-steps or --budget: "
                        f"{WordsConfig.lm_weight})")
    p.add_argument("--max-crop-tokens", type=integer(min=2), default=256)
    p.add_argument("--pooling", choices=POOLINGS, default="mean",
                   help="the pooling trained (the one `seqlab embed/index --pooling` will use)")
    p.add_argument("--crops", choices=CROPS, default="random",
                   help="two random crops of a paragraph, or its two halves (cut at a sentence end)")
    p.add_argument("--holdout", type=number(min=0, max=1, max_open=True), default=0.0,
                   help="share of the training paragraphs left out of tuning, to validate settings on "
                        "(bench/vectors_retrieval.py --split validation)")
    p.add_argument("--hard-negatives", action="store_true",
                   help="half of each batch is the other half's nearest paragraphs by TF-IDF")
    words = p.add_argument_group("--objective words")
    words.add_argument("--form", choices=FORMS,
                       help="rows: a free row per word seen --min-count times, started from its states, other words "
                            "mapped from theirs (the default, the better on word similarity); head: every word's "
                            "vector a linear map of its states")
    words.add_argument("--states", type=pattern("states", states_problem, "before, after, inside, both, or parts "
                                                 "joined by +"),
                       help=f"the word states that start the rows or that a head reads (default {WordsConfig.states})")
    words.add_argument("--dim", type=integer(min=1), default=WordsConfig.dim, help="word vector size (100)")
    words.add_argument("--window", type=integer(min=1),
                       help="neighbours each side a word predicts (rows: 5, word2vec's; head: 2, small favours "
                            "similar over related words)")
    words.add_argument("--start", type=number(min=0),
                       help="--form rows: each row's length at the start, along its states' principal coordinates "
                            f"({WordsConfig.start}; 0: word2vec's random start)")
    words.add_argument("--negatives", type=integer(min=1), default=WordsConfig.negatives)
    words.add_argument("--epochs", type=integer(min=1), default=WordsConfig.epochs)
    words.add_argument("--min-count", type=integer(min=1), default=WordsConfig.min_count,
                       help="words trained on: seen this often (5)")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--device", default="cpu", type=device)
    p.add_argument("--threads", type=integer(min=1))
    p.set_defaults(func=cli)


def config_of(args) -> TuneConfig | WordsConfig:
    """The objective's config from the flags; a flag of the other objective is an error."""
    mine = {"batch_size": args.batch_size, "lr": args.lr, "seed": args.seed, "lm_weight": args.lm_weight}
    if args.objective == "words":
        if args.form == "head" and args.start is not None:
            raise SeqlabError("--start sets where word rows begin: it is for --form rows")
        mine |= {"form": args.form, "window": args.window, "start": args.start, "states": args.states}
        return WordsConfig(**{k: v for k, v in mine.items() if v is not None}, dim=args.dim,
                           network_steps=args.max_steps or 0, network_seconds=args.budget or 0.0,
                           negatives=args.negatives, epochs=args.epochs, min_count=args.min_count)
    given = [flag for flag, value in (("--states", args.states), ("--form", args.form), ("--window", args.window),
                                      ("--start", args.start)) if value is not None]
    if given:
        raise SeqlabError(f"{given[0]} is for --objective words (contrastive tuning has --pooling)")
    return TuneConfig(**{k: v for k, v in mine.items() if v is not None}, max_steps=args.max_steps or 200,
                      budget_seconds=args.budget or 0.0, temperature=args.temperature,
                      max_crop_tokens=args.max_crop_tokens, pooling=args.pooling, crops=args.crops,
                      holdout=args.holdout, hard_negatives=args.hard_negatives)


def cli(args) -> None:
    cfg = config_of(args)
    set_threads(args)
    tune(args.run, args.corpus, args.out, cfg, args.device, log=lambda m: print(m, file=sys.stdout))
