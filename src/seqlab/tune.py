"""`seqlab tune RUN CORPUS... --out NEW_RUN`: contrastive fine-tuning for better passage vectors.

    seqlab tune runs/latest notes/ --out runs/tuned --max-steps 300
    seqlab index runs/tuned notes/ --out idx/

Two crops of one paragraph are pulled together, other paragraphs pushed apart (vectors/tune.py); the next-
token loss is kept alongside, and NEW_RUN is an ordinary run (generate, eval, serve all take it).
"""

import sys

from .embed import set_threads
from .options import budget, corpus_path, device, integer, new_run, number, run_dir, seed
from .vectors import load_forward
from .vectors.embed import POOLINGS, new_output_dir
from .vectors.passages import corpus_files
from .vectors.tune import CROPS, TuneConfig
from .vectors.tune import tune as tune_run


def tune(run_dir, corpus, out, config: TuneConfig | None = None, device: str = "cpu", log=print,
         show_progress: bool = True):
    """Fine-tune run_dir on the paragraphs of corpus; returns the new run's directory."""
    files = corpus_files(corpus)
    new_output_dir(out)
    run = load_forward(run_dir, "tune", device)
    return tune_run(run, files, out, config, log, show_progress)


def add_cli(sub) -> None:
    p = sub.add_parser("tune", help="fine-tune a run so its passage vectors find related text (contrastive)")
    p.add_argument("run", type=run_dir)
    p.add_argument("corpus", nargs="+", type=corpus_path, help="files, directories or globs whose paragraphs are used")
    p.add_argument("--out", required=True, type=new_run, help="the new run's directory")
    clock = p.add_mutually_exclusive_group()
    clock.add_argument("--max-steps", type=integer(min=1), default=200)
    clock.add_argument("--budget", type=budget, help="wall-clock time instead of steps, e.g. 90s, 5m")
    p.add_argument("--batch-size", type=integer(min=2), default=32, help="paragraphs per step (the negatives)")
    p.add_argument("--lr", type=number(min=0, min_open=True), default=3e-4)
    p.add_argument("--temperature", type=number(min=0, min_open=True), default=0.05)
    p.add_argument("--lm-weight", type=number(min=0), default=0.5, help="weight of the next-token loss kept")
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
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--device", default="cpu", type=device)
    p.add_argument("--threads", type=integer(min=1))
    p.set_defaults(func=cli)


def cli(args) -> None:
    cfg = TuneConfig(max_steps=args.max_steps, budget_seconds=args.budget or 0.0, batch_size=args.batch_size,
                     lr=args.lr, temperature=args.temperature, lm_weight=args.lm_weight,
                     max_crop_tokens=args.max_crop_tokens, seed=args.seed, pooling=args.pooling, crops=args.crops,
                     holdout=args.holdout, hard_negatives=args.hard_negatives)
    set_threads(args)
    tune(args.run, args.corpus, args.out, cfg, args.device, log=lambda m: print(m, file=sys.stdout))
