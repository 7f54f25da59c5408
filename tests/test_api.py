"""The top-level Python API, as the README shows it, in a fresh interpreter: seqlab.load, generate, evaluate."""

import re
import subprocess
import sys

from seqlab.run import read_metrics

README_EXAMPLE = """
import seqlab

run = seqlab.load("runs/latest")
print(seqlab.generate(run, "anna", max_tokens=200, seed=1)[0].text)
print(seqlab.evaluate(run)["bpb"])
"""


def test_the_readme_python_example_runs_on_runs_latest(trained_runs, tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "latest").symlink_to(trained_runs["transformer"])
    done = subprocess.run([sys.executable, "-c", README_EXAMPLE], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    *text, bpb = done.stdout.rstrip("\n").split("\n")
    final = [r for r in read_metrics(trained_runs["transformer"]) if r["event"] == "final"][-1]
    assert float(bpb) == final["val_bpb"]  # the held-out split's figure, the one training reported
    lines = ("anna" + "\n".join(text)).split("\n")
    assert len(lines) > 5  # 200 sampled tokens: several lines of the grammar, most of them well formed
    grammatical = [re.fullmatch(r"(anna|bob|carl) (sees|takes|likes) (the cat|a red box|it)\.", line)
                   for line in lines[:-1]]
    assert sum(map(bool, grammatical)) >= 0.8 * len(grammatical), text

