"""`seqlab index RUN PATHS... --out IDX`: a nearest-neighbour index of a corpus's passages (FAISS).

    seqlab index runs/latest notes/ --out idx/                 # paragraphs of every file under notes/
    seqlab index runs/latest more.txt --out idx/ --add          # new files, appended without a rebuild
    seqlab search idx/ "where is the common room"

The index keeps the run's path and fingerprint: search embeds queries with that run and refuses one whose
weights changed. See vectors/index.py for the structure (exact below 3,000 passages, a calibrated IVF above).
"""

import json
from pathlib import Path

from .embed import set_threads
from .errors import SeqlabError
from .options import corpus_path, device, integer, output_dir, run_dir
from .vectors import load_forward
from .vectors.embed import DEFAULT_POOLING, POOLINGS, check_pooling, new_output_dir
from .vectors.index import CALIBRATION, EXACT_BELOW, PassageIndex
from .vectors.passages import PASSAGE_UNITS, check_unit, corpus_files


def index(run_dir, paths, out, unit: str = "paragraph", pooling: str = DEFAULT_POOLING, add: bool = False,
          exact_below: int = EXACT_BELOW, device: str = "cpu", show_progress: bool = True) -> dict:
    """Build (or, with add, extend) the index at `out`; returns its index.json content."""
    check_unit(unit, PASSAGE_UNITS)
    check_pooling(pooling)
    files = corpus_files(paths)
    if add:
        existing = PassageIndex.load(out, mmap=True)
        run = load_forward(run_dir, "index", device)
        existing.add(run, files, show_progress)
        return existing.info
    new_output_dir(out)
    run = load_forward(run_dir, "index", device)
    return PassageIndex.build(run, files, out, unit, pooling, exact_below, show_progress).info


def add_cli(sub) -> None:
    p = sub.add_parser("index", help="build a nearest-neighbour index of a corpus's passages",
                       description="Embed every passage of PATHS with RUN and index the vectors (FAISS; the words "
                                   "pooling's sparse vectors are kept as they are and searched exactly).")
    p.add_argument("run", type=run_dir)
    p.add_argument("paths", nargs="+", type=corpus_path, help="files, directories (recursive) or globs")
    p.add_argument("--out", required=True, type=output_dir,
                   help="index directory (new or empty; an existing index with --add)")
    p.add_argument("--unit", choices=PASSAGE_UNITS, default="paragraph", help="what one result is (paragraph)")
    p.add_argument("--pooling", choices=POOLINGS, default=DEFAULT_POOLING,
                   help=f"passage vectors (default {DEFAULT_POOLING}; words finds related passages best: sparse, "
                        "searched exactly, for up to some 100,000 passages: docs/vectors.md)")
    p.add_argument("--add", action="store_true", help="add new files to the existing index at --out")
    p.add_argument("--device", default="cpu", type=device)
    p.add_argument("--threads", type=integer(min=1), help="torch threads (default: torch's)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cli)


def cli(args) -> None:
    if args.add and not Path(args.out).exists():
        raise SeqlabError(f"--add extends an index, but {args.out} does not exist; leave out --add to build it")
    set_threads(args)
    info = index(args.run, args.paths, args.out, args.unit, args.pooling, args.add, device=args.device,
                 show_progress=not args.json)
    if args.json:
        print(json.dumps(info))
        return
    print(f"{info['count']:,} {info['unit']} passages of {len(info['files'])} file(s) in {args.out} "
          f"({info['structure']}, {info['dim']} dims, {info['pooling']} pooling, {info['library']})")
    if "probes" in info:
        print(f"a query reads {info['probes']} cells: recall@10 {info['calibrated_recall']:.3f} against exact search "
              f"on {min(info['count'], CALIBRATION)} of the passages (cells learnt on {info['learnt_on']:,})")
