"""The one exception type for problems with what the user gave us.

The CLI prints a SeqlabError as a single line and exits with status 2; anything
else escaping is a bug in seqlab and keeps its traceback.
"""


class SeqlabError(Exception):
    """Bad input: a missing path, a wrong flag, a run that is not a run."""
