"""Option values checked where the command line is read: one declaration gives the range, the help and the error.

    p.add_argument("--max-steps", type=integer(min=1))
    p.add_argument("--temperature", type=number(min=0, max=2), default=0.8)

A bad value ends the command before any work with one line that names the option, e.g.
`seqlab train: error: argument --max-steps: must be >= 1, got 0 (see seqlab train -h)`, and exit status 2
(argparse turns the ArgumentTypeError raised here into the parser's error).
"""

import argparse
import math


class Range:
    """A closed or open numeric range and how to say it."""

    def __init__(self, min=None, max=None, min_open=False, max_open=False):
        self.min, self.max, self.min_open, self.max_open = min, max, min_open, max_open

    def contains(self, value) -> bool:
        if self.min is not None and (value <= self.min if self.min_open else value < self.min):
            return False
        if self.max is not None and (value >= self.max if self.max_open else value > self.max):
            return False
        return True

    def describe(self) -> str:
        low = None if self.min is None else f"{'>' if self.min_open else '>='} {self.min:g}"
        high = None if self.max is None else f"{'<' if self.max_open else '<='} {self.max:g}"
        if low and high:
            return f"in {'(' if self.min_open else '['}{self.min:g}, {self.max:g}{')' if self.max_open else ']'}"
        return low or high or "any finite number"


class _Checked:
    """An argparse `type=`: parses the text, then checks the range."""

    kind = "value"

    def __init__(self, **bounds):
        self.range = Range(**bounds)
        self.__name__ = self.kind  # argparse names the type in its own messages

    def parse(self, text: str):
        raise NotImplementedError

    def __call__(self, text: str):
        try:
            value = self.parse(text.strip())
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"expected {self.kind_phrase()}, got {text!r}") from None
        if not self.range.contains(value):
            raise argparse.ArgumentTypeError(f"must be {self.range.describe()}, got {text}")
        return value

    def kind_phrase(self) -> str:
        return f"an {self.kind}" if self.kind[0] in "aeiou" else f"a {self.kind}"


class integer(_Checked):  # noqa: N801 - reads as a type in add_argument(type=integer(min=1))
    kind = "integer"

    def parse(self, text: str) -> int:
        return int(text)


class number(_Checked):  # noqa: N801
    kind = "number"

    def parse(self, text: str) -> float:
        value = float(text)
        if not math.isfinite(value):  # nan and inf are never a setting
            raise ValueError
        return value


def port(text: str) -> int:
    """A TCP port: 0 (any free port) to 65535."""
    return integer(min=0, max=65535)(text)


port.__name__ = "port"
