"""Option values checked where they are parsed (seqlab/options.py)."""

import argparse

import pytest

from seqlab.options import integer, number, port


@pytest.mark.parametrize("kind,text,message", [
    (integer(min=1), "0", "must be >= 1, got 0"),
    (integer(min=1), "-3", "must be >= 1, got -3"),
    (integer(min=1), "abc", "expected an integer, got 'abc'"),
    (integer(min=1), "1.5", "expected an integer"),
    (number(min=0, max=1, min_open=True), "0", "must be in (0, 1], got 0"),
    (number(min=0), "nan", "must be a finite number, got nan"),
    (number(min=0), "inf", "must be a finite number, got inf"),
    (number(min=0), "abc", "expected a number, got 'abc'"),
    (number(max=2), "1e30", "must be <= 2, got 1e30"),
    (port, "70000", "must be in [0, 65535]"),
])
def test_bad_values_say_what_is_allowed(kind, text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message.replace("(", r"\(").replace("[", r"\[")):
        kind(text)


def test_good_values_parse():
    assert integer(min=1)("5") == 5
    assert number(min=0, max=1, min_open=True)("0.5") == 0.5
    assert port("0") == 0


def test_the_parser_turns_a_bad_value_into_one_line_and_exit_2(capsys):
    from seqlab.__main__ import Parser

    p = Parser(prog="seqlab x")
    p.add_argument("--max-steps", type=integer(min=1))
    with pytest.raises(SystemExit) as e:
        p.parse_args(["--max-steps", "0"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--max-steps" in err and "must be >= 1" in err
