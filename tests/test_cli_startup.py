"""A command builds its own verb's parser alone (importing every verb's module costs a quarter of a second of
start-up); usage, and a verb named unlike its module, still see every verb."""

import os
import subprocess
import sys

import pytest

import seqlab
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


def _frozen_after(code: str) -> int:
    """gc.get_freeze_count() of a fresh process after `code`."""
    code = f"import gc, sys\n{code}\nprint(gc.get_freeze_count(), file=sys.stderr)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(done.stderr.split()[-1])


def test_the_program_leaves_what_its_imports_made_to_the_exit(trained_runs):
    """Run as the program (argv from sys.argv), main freezes what the imports made (gc.freeze: the collector
    no longer walks torch's modules, at exit 0.3-0.4 s); called with argv, as a library or a test calls it,
    it leaves the collector alone."""
    run = str(trained_runs["lstm"])
    as_program = f"from seqlab.__main__ import main\nsys.argv = ['seqlab', 'info', {run!r}]\nassert main() == 0"
    assert _frozen_after(as_program) > 10_000
    assert _frozen_after(f"from seqlab.__main__ import main\nassert main(['info', {run!r}]) == 0") == 0


@pytest.mark.parametrize("collecting", [True, False])
def test_importing_seqlab_leaves_the_collector_as_it_was(collecting):
    """seqlab's imports run with the collector off (torch's objects are no garbage), and turn it back on
    only where it was on."""
    code = f"import gc\nif not {collecting}: gc.disable()\nimport seqlab\nassert gc.isenabled() is {collecting}"
    subprocess.run([sys.executable, "-c", code], check=True)


def _spin_when_torch_loads(env_extra: dict) -> str:
    """GOMP_SPINCOUNT as the first import of torch sees it, after `import seqlab` in a fresh process."""
    code = ("import os, sys\n"
            "seen = {}\n"
            "class Watch:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'torch':\n"
            "            seen.setdefault('spin', os.environ.get('GOMP_SPINCOUNT', 'unset'))\n"
            "sys.meta_path.insert(0, Watch())\n"
            "import seqlab\n"
            "print(seen['spin'])")
    env = {k: v for k, v in os.environ.items() if k not in seqlab.OPENMP_WAIT_VARIABLES} | env_extra
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return done.stdout.split()[-1]


def test_openmps_spin_is_short_before_torch_loads_and_a_users_own_setting_wins():
    """libgomp reads its wait policy once, when torch loads it: seqlab shortens the spin before that import
    (bench/omp_wait.py: training beside busy processes), and leaves either variable alone when the user set one."""
    assert _spin_when_torch_loads({}) == seqlab.OPENMP_SPIN
    assert _spin_when_torch_loads({"GOMP_SPINCOUNT": "5"}) == "5"
    assert _spin_when_torch_loads({"OMP_WAIT_POLICY": "PASSIVE"}) == "unset"
