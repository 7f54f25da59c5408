"""`seqlab search IDX "QUERY" [--k 10] [--json]`: the passages of an index nearest to a query.

    seqlab search idx/ "where is the common room" --k 5
    0.912  notes/ch3.txt:120  The common room was up the stairs ...

The query is embedded with the run the index was built from (its path is in IDX/index.json; --run gives
another place for the same run); a run whose weights changed since is refused.
"""

import json
from pathlib import Path

from .embed import set_threads
from .errors import SeqlabError
from .options import device, index_dir, integer, run_dir, text
from .vectors import load_forward
from .vectors.index import PassageIndex


def open_index(index_dir, run_dir=None, device: str = "cpu"):
    """(index loaded memory-mapped, its run), checked to match."""
    idx = PassageIndex.load(index_dir)
    if run_dir is None and not Path(idx.info["run"]).exists():
        raise SeqlabError(f"{index_dir} was built from {idx.info['run']}, which is not there any more; give the "
                          f"run's new place with --run RUN")
    run = load_forward(run_dir or idx.info["run"], "search", device)
    idx.check_run(run)
    return idx, run


def search(index_dir, query: str, k: int = 10, run_dir=None, device: str = "cpu", opened=None,
           probes: int | None = None) -> dict:
    """{"query", "results": [{"text", "file", "line", "offset", "bytes", "score"}...]}, best first. probes: the
    index's cells read for this search (default: those stored with the index)."""
    if not query or not query.strip():
        raise SeqlabError("the query is empty; give some text to search for")
    idx, run = opened or open_index(index_dir, run_dir, device)
    idx.read_cells(probes)
    return {"query": query, "results": idx.search_text(run, query, k)}


def add_cli(sub) -> None:
    p = sub.add_parser("search", help="passages of an index nearest to a query (seqlab index builds one)")
    p.add_argument("index", type=index_dir, help="an index directory (seqlab index RUN PATHS --out IDX)")
    p.add_argument("query", type=text)
    p.add_argument("--k", type=integer(min=1), default=10, help="how many passages (default 10)")
    p.add_argument("--probes", type=integer(min=1),
                   help="cells of an IVF index read per query: more recall, slower (default: the number stored "
                        "with it, calibrated for recall@10 >= 0.96 when it was built)")
    p.add_argument("--run", type=run_dir, help="the run the index was built from, if it has moved")
    p.add_argument("--device", default="cpu", type=device)
    p.add_argument("--threads", type=integer(min=1), default=1,
                   help="torch threads (default 1: a query's forward is a few small steps that more threads "
                        "only wait on; see docs/vectors.md)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cli)


def cli(args) -> None:
    set_threads(args)
    result = search(args.index, args.query, args.k, args.run, args.device, probes=args.probes)
    if args.json:
        print(json.dumps(result))
        return
    for r in result["results"]:
        first = r["text"].strip().splitlines()[0] if r["text"].strip() else ""
        print(f"{r['score']:.3f}  {r['file']}:{r['line']}  {first[:100]}")
