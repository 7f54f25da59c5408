"""Bits per byte with its interval (`seqlab eval`), and two runs compared on the same bytes (`--against`)."""

import json

import numpy as np
import pytest

from seqlab.__main__ import main
from seqlab.data.tokenizer import Backward, ByteTokenizer
from seqlab.errors import SeqlabError
from seqlab.evaluate import evaluate, evaluate_against, scored_bytes
from seqlab.intervals import auto_length, byte_bits, make_blocks, paired
from seqlab.run import load
from seqlab.stats import spread_evenly, verdict

from conftest import structured_text, tiny_config


def test_spread_evenly_keeps_every_bit_and_gives_each_byte_its_tokens_share():
    out = spread_evenly([3.0, 1.0, 2.0, 4.0], [3, 0, 1, 2])
    assert out.tolist() == [1.0, 1.0, 1.0, 3.0, 2.0, 2.0]  # the empty token's bit joins the next byte
    assert out.sum() == pytest.approx(10.0)
    assert spread_evenly([1.0, 5.0], [2, 0]).tolist() == [0.5, 5.5]  # ... or the last one at the end


def test_byte_bits_of_a_backward_run_are_in_the_texts_order():
    tok = ByteTokenizer()
    bits = np.array([1.0, 2.0, 3.0])
    assert byte_bits(tok, tok.encode(b"abc"), bits).tolist() == [1.0, 2.0, 3.0]
    assert byte_bits(Backward(tok), tok.encode(b"cba"), bits).tolist() == [3.0, 2.0, 1.0]


def test_blocks_by_document_or_length_and_auto():
    docs = [np.full(n, 2.0) for n in (100, 300, 50)]
    by_doc = make_blocks(docs, "document")
    assert by_doc.bytes.tolist() == [100, 300, 50] and by_doc.bits.tolist() == [200, 600, 100]
    by_len = make_blocks(docs, 128)  # one stream, as scored: blocks span documents
    assert by_len.bytes.tolist() == [128, 128, 128, 66] and "blocks of 128 bytes" in by_len.method
    assert make_blocks([np.ones(500)] * 10).method.startswith("by document")
    assert make_blocks([np.ones(500)] * 9).method.startswith("blocks of")
    assert auto_length(111_000) == 1024 and auto_length(10_000_000) == 65536 and auto_length(3000) == 256
    with pytest.raises(SeqlabError, match="at least 2 documents"):
        make_blocks(docs[:1], "document")
    with pytest.raises(SeqlabError, match="one block"):
        make_blocks(docs, 10_000)


def test_verdict():
    assert [verdict(-2, -1), verdict(1, 2), verdict(-1, 1), verdict(0, 0)] == ["better", "worse", "tied", "tied"]


def test_eval_interval_contains_the_figure_and_shrinks_as_the_data_grows(trained_runs, tmp_path):
    run = load(trained_runs["lstm"])
    widths = []
    for n_lines in (40, 1000):
        f = tmp_path / f"t{n_lines}.txt"
        f.write_text(structured_text(n_lines, seed=7))
        result = evaluate(run, [str(f)])
        assert result["bpb_low"] < result["bpb"] < result["bpb_high"]
        assert "block bootstrap" in result["interval_method"]
        widths.append(result["bpb_high"] - result["bpb_low"])
    assert widths[1] < widths[0] / 2  # 25x the bytes: ~5x narrower


def test_eval_json_and_table_carry_the_interval_and_its_method(trained_runs, capsys):
    assert main(["eval", str(trained_runs["lstm"]), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["bpb_low"] < out["bpb"] < out["bpb_high"]
    assert "blocks of" in out["interval_method"] and "bytes" in out["interval_method"]
    assert main(["eval", str(trained_runs["lstm"]), "--block", "512"]) == 0
    table = capsys.readouterr().out
    assert "95% interval: [" in table and "blocks of 512 bytes" in table


def test_a_run_against_itself_is_zero_and_tied(trained_runs, capsys):
    run = str(trained_runs["lstm"])
    assert main(["eval", run, "--against", run, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["difference"], out["low"], out["high"], out["verdict"]) == (0.0, 0.0, 0.0, "tied")
    assert main(["eval", run, "--against", run]) == 0
    assert capsys.readouterr().out.strip().endswith("no difference at 95%")


def test_runs_with_different_tokenizers_compare_byte_for_byte(trained_runs, corpus_file, tmp_path, capsys):
    cfg = tiny_config(corpus_file, "lstm", steps=30)
    cfg.data.tokenizer = "bpe:300"
    from seqlab.train import train

    bpe = load(train(cfg, tmp_path / "bpe", log=lambda *a: None))
    byte_run = load(trained_runs["lstm"])
    assert bpe.tokenizer.kind != byte_run.tokenizer.kind
    (a, bits_a), (b, bits_b) = scored_bytes(byte_run), scored_bytes(bpe)
    assert [len(x) for x in bits_a] == [len(x) for x in bits_b]  # the same bytes, one entry each
    assert sum(x.sum() for x in bits_b) / b["bytes"] == pytest.approx(b["bpb"])
    out = evaluate_against(byte_run, bpe)
    assert out["difference"] == pytest.approx(a["bpb"] - b["bpb"])
    assert out["low"] <= out["difference"] <= out["high"]
    assert out["verdict"] == verdict(out["low"], out["high"])
    f = tmp_path / "x.txt"  # FILES may follow RUN_B
    f.write_text(structured_text(200, seed=3))
    assert main(["eval", str(trained_runs["lstm"]), "--against", str(tmp_path / "bpe"), str(f), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["bytes"] == f.stat().st_size


def test_a_planted_gap_is_found_on_the_same_bytes():
    rng = np.random.default_rng(0)
    docs = [rng.gamma(2.0, 1.0, rng.integers(200, 2000)) for _ in range(60)]  # blocks differ in difficulty
    worse = [d * 1.03 for d in docs]
    out = paired(docs, worse, "document")
    assert out["verdict"] == "better" and out["high"] < 0
    assert paired(worse, docs, 4096)["verdict"] == "worse"


def test_paired_eval_of_runs_with_other_held_out_bytes_is_a_one_line_error(trained_runs, tmp_path, capsys):
    other = tmp_path / "other.txt"
    other.write_text(structured_text(300, seed=9))
    from seqlab.train import train

    run = train(tiny_config(other, "lstm", steps=5), tmp_path / "other", log=lambda *a: None)
    capsys.readouterr()
    assert main(["eval", str(trained_runs["lstm"]), "--against", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "hold out different bytes" in err and "FILES" in err
    assert main(["eval", str(trained_runs["lstm"]), "--against", str(run), str(other)]) == 0  # files given: fine


@pytest.mark.parametrize("order", ["series first", "series against"])
def test_a_series_run_is_not_paired_with_against(trained_runs, tmp_path, capsys, order):
    import json
    import shutil

    series = tmp_path / "series"
    shutil.copytree(trained_runs["lstm"], series)
    config = json.loads((series / "config.json").read_text())
    config.setdefault("series", {})["events"] = ["close:label"]  # what makes it a series run to eval
    (series / "config.json").write_text(json.dumps(config))
    text_run = str(trained_runs["lstm"])
    runs = [str(series), text_run] if order == "series first" else [text_run, str(series)]
    capsys.readouterr()
    assert main(["eval", runs[0], "--against", runs[1]]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--against pairs two text runs" in err


@pytest.mark.parametrize("value", ["0", "-3", "docs", "1.5"])
def test_bad_block_is_a_one_line_error(trained_runs, capsys, value):
    assert main(["eval", str(trained_runs["lstm"]), "--block", value]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--block" in err
