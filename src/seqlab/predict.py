"""`seqlab predict RUN FILE -o OUT.csv`: per-step event probabilities of a series run for new rows.

    seqlab predict runs/latest new.csv -o new.probabilities.csv   # + new.probabilities.png

The CSV holds the time column and one probability column per event; the PNG shows each event's column
over time with its events marked (where the file's later rows tell) and the probability below it.
The work is series/predict.py's predict_file, which is also the Python API.
"""

from pathlib import Path

from .errors import SeqlabError
from .options import corpus_path, device, output_file, run_dir


def default_out(files: list[str]) -> Path:
    return Path(f"{Path(files[0]).name.split('.')[0] or 'series'}.probabilities.csv")


def add_cli(sub) -> None:
    p = sub.add_parser("predict", help="per-step event probabilities of a series run (seqlab train --series) "
                                       "for new rows")
    p.add_argument("run", type=run_dir)
    p.add_argument("files", nargs="+", metavar="FILE", type=corpus_path,
                   help="CSV, .csv.gz or Parquet with the run's channels, or a directory of them")
    p.add_argument("-o", "--out", type=output_file,
                   help="the CSV to write (default: FILE's name + .probabilities.csv); the PNG goes beside it")
    p.add_argument("--no-plot", action="store_true", help="write the CSV only")
    p.add_argument("--device", type=device, default="cpu", help="cpu (default), cuda, auto")
    p.set_defaults(func=cli)


def cli(args) -> None:
    from .series.predict import predict_file

    out = Path(args.out) if args.out else default_out(args.files)
    if out.suffix.lower() == ".png":
        raise SeqlabError(f"-o {out}: give the CSV's name; the PNG is written beside it")
    predict_file(args.run, args.files, out, device=args.device, plot=not args.no_plot)
