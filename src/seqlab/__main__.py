"""The command line: `seqlab VERB ...`, one module per verb."""

import argparse
import copy
import gc
import importlib
import sys

from .errors import SeqlabError

# Module names: the package's own `seqlab.train` etc. are the API functions.
VERBS = ["train", "generate", "evaluate", "info", "novelty", "neurons", "compare", "export", "surprise", "compress",
         "serve", "styles", "predict", "embed", "similar", "index", "search", "tune"]


class HelpFormatter(argparse.HelpFormatter):
    """Each option's help ends with what it accepts, from the same declaration that checks it (options.py)."""

    def _format_action(self, action):
        accepts = getattr(action.type, "describe", lambda: "")().replace("%", "%%")
        if accepts:
            action = copy.copy(action)
            action.help = f"{action.help} ({accepts})" if action.help else accepts
        return super()._format_action(action)


class Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):  # one line and exit 2, not usage + message
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """Every verb's parser; given the verb a command names first, that verb's alone when its module has its name
    (a command needs no other verb's module, and importing them all costs a quarter of a second)."""
    from . import __version__

    parser = Parser(prog="seqlab", description="Train sequence models on your own data and put them to work.")
    parser.add_argument("--version", action="version", version=f"seqlab {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=Parser)
    sub.required = True
    alone = [verb] if verb in VERBS else []
    for module in alone or VERBS:
        importlib.import_module(f"seqlab.{module}").add_cli(sub)
    if alone and verb not in sub.choices:  # a module named unlike its verb (evaluate: eval): usage needs them all
        return build_parser()
    add_completion(parser, sub.choices.values())
    return parser


PATH_OPTIONS = {"out", "output", "html", "config", "resume", "val", "corpus", "init", "backward", "prompt_file"}


def add_completion(parser, verbs) -> None:
    """`seqlab --print-completion bash|zsh|tcsh` prints a completion script made from this parser (shtab):
    verbs, options and their choices, files where a path goes. Static, so a TAB never starts Python."""
    import shtab

    for verb in verbs:  # paths complete as files and folders
        for action in verb._actions:
            if not action.option_strings or action.dest in PATH_OPTIONS:
                action.complete = shtab.FILE
    shtab.add_argument_to(parser, ["--print-completion"],
                          help="print a shell completion script: eval \"$(seqlab --print-completion bash)\"")


def main(argv=None) -> int:
    """The command line; argv None: this process is the command (sys.argv)."""
    program, argv = argv is None, sys.argv[1:] if argv is None else argv
    try:
        args = build_parser(argv[0] if argv else None).parse_args(argv)
    except SystemExit as e:  # argparse has printed its one-line error (or the help)
        return e.code
    if program:
        # what the imports made lives as long as the process: the collector need not walk it again, in the
        # work nor at exit, where walking torch's modules cost 0.3-0.4 s of every command (and forked
        # workers do not copy the pages it would touch)
        gc.freeze()
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
