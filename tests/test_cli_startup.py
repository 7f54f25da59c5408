"""A command builds its own verb's parser alone (importing every verb's module costs a quarter of a second of
start-up); usage, and a verb named unlike its module, still see every verb."""

import subprocess
import sys

from seqlab.__main__ import main


def _seqlab_modules_after(argv: list[str]) -> set[str]:
    """The seqlab modules a fresh process has imported after main(argv)."""
    code = ("import sys; from seqlab.__main__ import main; main(%r); "
            "print(' '.join(m for m in sys.modules if m.startswith('seqlab')), file=sys.stderr)" % argv)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(done.stderr.split())


def test_a_command_imports_no_other_verb():
    loaded = _seqlab_modules_after(["surprise", "--help"])
    assert "seqlab.surprise.anomalies" in loaded
    assert not {m for m in loaded if m.startswith(("seqlab.compress", "seqlab.vectors", "seqlab.serve"))}


def test_usage_and_a_verb_named_unlike_its_module_see_every_verb(capsys):
    assert main(["eval", "--help"]) == 0  # the verb eval lives in seqlab.evaluate
    assert "usage: seqlab eval" in capsys.readouterr().out
    assert main(["evaluate"]) == 2  # a module's name that is no verb: the usual error, naming every verb
    err = capsys.readouterr().err
    assert "invalid choice: 'evaluate'" in err and all(verb in err for verb in ("'eval'", "'surprise'", "'tune'"))
