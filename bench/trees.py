"""Where a `--before SRC` tree's seqlab package is, for the benchmarks that time this tree against another."""

import sys
from pathlib import Path


def seqlab_src(before: str) -> str:
    """The folder to import seqlab from, for SRC a checkout (e.g. a `git archive` of a commit) or its src/; exits
    with one line where neither holds a seqlab package (Python would import the installed one instead)."""
    src = Path(before) / "src" if (Path(before) / "src" / "seqlab").is_dir() else Path(before)
    if not (src / "seqlab").is_dir():
        sys.exit(f"--before {before}: no seqlab package there or in its src/")
    return str(src)
