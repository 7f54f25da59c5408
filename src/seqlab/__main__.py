"""The command line: `seqlab VERB ...`, one module per verb."""

import argparse
import importlib
import sys

from .errors import SeqlabError

# Module names: the package's own `seqlab.train` etc. are the API functions.
VERBS = ["train", "generate", "evaluate", "info", "novelty", "neurons", "compare", "export", "surprise", "compress",
         "serve", "styles", "embed", "similar", "index", "search", "tune"]


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and exit 2, not usage + message
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="seqlab", description="Train sequence models on your own data and put them to work.")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=Parser)
    sub.required = True
    for verb in VERBS:
        importlib.import_module(f"seqlab.{verb}").add_cli(sub)
    return parser


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # argparse has printed its one-line error (or the help)
        return e.code
    try:
        args.func(args)
    except SeqlabError as e:
        print(f"seqlab {args.verb}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"seqlab {args.verb}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
