"""`seqlab compare`: every arch trained into DIR/<arch>, a table of measured figures, Markdown + plot."""

import json
import math

import pytest

from seqlab.__main__ import main
from seqlab.compare import compare, format_table
from seqlab.errors import SeqlabError
from seqlab.models import ARCHS
from seqlab.run import load, read_metrics

from conftest import TINY, structured_text, tiny_config

ARCHS_TESTED = ["lstm", "transformer"]


@pytest.fixture(scope="module")
def compared(tmp_path_factory, corpus_file):
    out = tmp_path_factory.mktemp("compare")
    base = tiny_config(corpus_file, "lstm", steps=20)
    base.train.eval_every_steps = 10
    rows = compare(base, ARCHS_TESTED, out, models=TINY, log=lambda *a: None)
    return out, rows


def test_each_arch_trains_into_its_own_run(compared):
    out, rows = compared
    for arch in ARCHS_TESTED:
        config = json.loads((out / arch / "config.json").read_text())
        assert config["arch"] == arch and config["train"]["max_steps"] == 20
        assert config["train"]["threads"] == 1


def test_model_rows_hold_each_runs_own_figures(compared):
    out, rows = compared
    by_name = {r.name: r for r in rows}
    for arch in ARCHS_TESTED:
        final = [r for r in read_metrics(out / arch) if r["event"] == "final"][-1]
        row = by_name[arch]
        assert row.bpb == final["val_bpb"] and row.steps == 20
        assert row.params == load(out / arch).model.num_params()
        assert row.train_tokens_per_s == pytest.approx(final["tokens"] / final["elapsed"])
        assert row.gen_tokens_per_s > 0


def test_compressor_rows_measure_the_same_held_out_bytes(compared, corpus_file):
    """Each compressor run here by hand on the file's last 10% given the rest: size(all) - size(training part)."""
    import bz2
    import gzip
    import lzma

    import zstandard

    _, rows = compared
    corpus = corpus_file.read_bytes()
    split = len(corpus) - math.ceil(0.1 * len(corpus))
    zstd = zstandard.ZstdCompressor(compression_params=zstandard.ZstdCompressionParameters.from_level(
        22, window_log=27, enable_ldm=True))
    by_hand = {"gzip -9": lambda b: gzip.compress(b, 9, mtime=0), "bzip2 -9": lambda b: bz2.compress(b, 9),
               "xz -9e": lambda b: lzma.compress(b, preset=9 | lzma.PRESET_EXTREME),
               "zstd --ultra -22 --long": zstd.compress}
    expected = {f"{name} (conditional)": 8 * (len(pack(corpus)) - len(pack(corpus[:split]))) / (len(corpus) - split)
                for name, pack in by_hand.items()}
    assert {r.name: r.bpb for r in rows if r.params is None} == pytest.approx(expected, rel=1e-12)


def test_report_files(compared):
    out, rows = compared
    md = (out / "compare.md").read_text()
    assert format_table(rows) in md
    for r in rows:
        assert f"| {r.name} | {r.bpb:.4f} |" in md
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_existing_runs_are_not_overwritten(compared):
    out, _ = compared
    with pytest.raises(SeqlabError, match="already holds a run"):
        compare(tiny_config(out / "x", "lstm", 5), ["lstm"], out, models=TINY)


def test_unknown_arch_is_a_one_line_error(capsys, corpus_file):
    assert main(["compare", str(corpus_file), "--archs", "lstm,gru", "--max-steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "'gru'" in err and ", ".join(ARCHS) in err


def test_cli_runs_every_registered_arch(tmp_path, capsys):
    """Every name in ARCHS, at its default size, through the CLI: 3 steps each on a small corpus."""
    corpus, out = tmp_path / "small.txt", tmp_path / "cmp"
    corpus.write_text(structured_text(n_lines=80))
    args = ["compare", str(corpus), "--archs", ",".join(ARCHS), "--max-steps", "3", "--out", str(out),
            "--threads", "1", "--set", "train.batch_size=4", "--set", "train.seq_len=32",
            "--set", "train.eval_tokens=512", "--set", "lstm.n_hidden=24"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    for arch in ARCHS:
        assert f"| {arch} |" in printed
        assert (out / arch / "config.json").exists()
    assert json.loads((out / "lstm" / "config.json").read_text())["model"]["n_hidden"] == 24
    assert (out / "compare.md").exists() and (out / "curves.png").exists()


def test_bad_set_key_is_a_one_line_error(capsys, corpus_file):
    assert main(["compare", str(corpus_file), "--archs", "lstm", "--set", "lstm.n_hiden=3"]) == 2
    assert "n_hiden" in capsys.readouterr().err
