"""seqlab surprise: per-byte surprisal that adds up to eval, anomalies found and fixed, its three outputs."""

import json

import numpy as np
import pytest
import torch

from seqlab.__main__ import main
from seqlab.evaluate import evaluate
from seqlab.models.lstm import LSTM, LSTMConfig
from seqlab.run import load
from seqlab.surprise import find_spans, line_column, surprise
from seqlab.surprise.render import anomaly_table, html_report, terminal_text
from seqlab.surprise.score import BLOCK, WARMUP, score_tokens
from seqlab.train import train

from conftest import brute_force_bits, structured_text, tiny_config


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory):
    """Tiny runs of the two reference architectures (only these: training is the slow part)."""
    corpus = tmp_path_factory.mktemp("corpus") / "grammar.txt"
    corpus.write_text(structured_text())
    return {arch: train(tiny_config(corpus, arch, steps=400), tmp_path_factory.mktemp(f"run-{arch}"),
                        log=lambda *a: None) for arch in ("transformer", "lstm")}


@pytest.fixture(scope="module")
def runs(run_dirs):
    return {arch: load(path) for arch, path in run_dirs.items()}


@pytest.fixture
def grammar_file(tmp_path):
    path = tmp_path / "clean.txt"
    path.write_text(structured_text(60, seed=11))
    return path


def _corrupt(text: str) -> tuple[bytes, int]:
    """Delete the final '.' of line 30 (a closing mark): (bytes, offset of the deletion)."""
    lines = text.splitlines(keepends=True)
    offset = sum(len(line) for line in lines[:29]) + len(lines[29]) - 2
    data = text.encode()
    assert data[offset : offset + 1] == b"."
    return data[:offset] + data[offset + 1 :], offset


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
def test_summed_surprisal_equals_eval_total_bits(runs, grammar_file, arch):
    from seqlab.compress import Header, compress_bytes

    run, data = runs[arch], grammar_file.read_bytes()
    mixed = surprise(run, data, top=3, fixes=False, mixed=True)
    network = surprise(run, data, top=3, fixes=False, mixed=False)
    result = evaluate(run, [str(grammar_file)])
    assert len(mixed.bits) == len(network.bits) == result["bytes"]
    assert mixed.total_bits == pytest.approx(result["bpb"] * result["bytes"], rel=1e-6)
    assert network.total_bits == pytest.approx(result["bpb_network"] * result["bytes"], rel=1e-4)
    assert np.all(network.entropy >= 0)
    # independent references: the network read plainly, and the mixed bits as compress codes them, one step at a time
    plain = brute_force_bits(run.model, [run.tokenizer.bos_id, *data], 1)
    np.testing.assert_allclose(network.bits[:BLOCK], plain[:BLOCK], atol=1e-4)  # later blocks: a shorter warm-up
    assert network.total_bits == pytest.approx(plain.sum(), rel=1e-4)
    blob = compress_bytes(run, data)
    coded = 8 * (len(blob) - Header.unpack(blob, "x")[1])
    # + one block's framing (its token and word counts and its span, varints) and the range coder's last 32-bit words
    assert mixed.total_bits * 0.999 < coded < mixed.total_bits * 1.001 + 96


def _random_lstm(**config) -> LSTM:
    torch.manual_seed(0)
    model = LSTM(LSTMConfig(vocab_size=40, dropout=0.0, **config)).eval()
    for p in model.parameters():
        p.data.normal_(0, 0.3)  # well away from zero, so a wrong gate order or bias shows
    return model


@pytest.mark.parametrize("config", [{"n_layer": 1, "n_hidden": 24}, {"n_layer": 2, "n_hidden": 16, "n_embd": 12}])
def test_lstm_scoring_fast_path_equals_features(config):
    model = _random_lstm(**config)
    idx = torch.randint(0, 40, (3, 50), generator=torch.Generator().manual_seed(1))
    state = tuple(torch.randn(config["n_layer"], 3, config["n_hidden"]) for _ in range(2))
    with torch.inference_mode():
        expected, (h, c) = model.features(idx, state)
        fast, (fast_h, fast_c) = model.scoring_features(idx, state)
    for a, b in ((fast, expected), (fast_h, h), (fast_c, c)):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5)


def test_lstm_scoring_fast_path_keeps_embedding_hooks():
    """Style vectors are added by a hook on the embedding: the fast path must not skip it."""
    model = _random_lstm(n_layer=1, n_hidden=24)
    model.embed.register_forward_hook(lambda module, args, out: out + 1.0)
    idx = torch.randint(0, 40, (2, 20), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        state = model.init_state(2, "cpu")
        assert torch.allclose(model.scoring_features(idx, state)[0], model.features(idx, state)[0], atol=1e-5)


def test_surprise_scores_equal_without_the_fast_path(runs):
    """score_tokens on an LSTM run: the same bits, entropies and top-5 as with the generic features()."""
    run = runs["lstm"]
    tokens = np.concatenate([[run.tokenizer.bos_id], run.tokenizer.encode(structured_text(300, seed=7).encode())])
    assert len(tokens) > 3 * (BLOCK + WARMUP)  # several blocks, each warmed up
    fast = score_tokens(run, tokens)
    run.model.scoring_features = run.model.features  # an instance attribute shadows the method
    try:
        generic = score_tokens(run, tokens)
    finally:
        del run.model.scoring_features
    np.testing.assert_allclose(fast.bits, generic.bits, atol=1e-4)
    np.testing.assert_allclose(fast.entropy, generic.entropy, atol=1e-4)
    np.testing.assert_allclose(fast.top_probs, generic.top_probs, atol=1e-5)


def test_short_blocks_cost_little_against_eval_blocks(runs, tmp_path):
    """A file of many of surprise's blocks: the shorter warm-up changes the network's total by under 2%."""
    path = tmp_path / "long.txt"
    path.write_text(structured_text(400, seed=5))
    assert path.stat().st_size > 4 * (BLOCK + WARMUP)
    report = surprise(runs["lstm"], path.read_bytes(), top=1, fixes=False, mixed=False)
    result = evaluate(runs["lstm"], [str(path)])
    assert report.total_bits == pytest.approx(result["bpb_network"] * result["bytes"], rel=0.02)


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
def test_injected_error_ranks_first_and_fix_restores_it(runs, arch):
    text = structured_text(60, seed=11)
    data, offset = _corrupt(text)
    report = surprise(runs[arch], data, top=3)
    top = report.anomalies[0]
    assert abs(top.offset - offset) <= 10
    assert top.fix is not None and top.fix.apply(data) == text.encode()
    assert (top.line, top.column) == line_column(data, top.offset)


@pytest.fixture(scope="module")
def backward_run(run_dirs, tmp_path_factory):
    """A tiny transformer trained on the same grammar read right to left."""
    corpus = tmp_path_factory.mktemp("corpus-back") / "grammar.txt"
    corpus.write_text(structured_text())
    cfg = tiny_config(corpus, "transformer", steps=400)
    cfg.data.backward = True
    return train(cfg, tmp_path_factory.mktemp("run-back"), log=lambda *a: None)


@pytest.mark.slow
def test_a_backward_reading_judges_the_same_fix(runs, backward_run):
    """Read both ways, the lost '.' still ranks first and is mended. The backward run, fed the text
    right to left, sees the loss too (the mirrored fix saves its network bits), and the fix is judged by
    both readings, not the forward one alone."""
    from seqlab.surprise.fix import MIN_GAIN, edit_gain

    text = structured_text(60, seed=11)
    data, offset = _corrupt(text)
    forward = surprise(runs["transformer"], data, top=3)
    back = load(backward_run)
    both = surprise(runs["transformer"], data, top=3, backward=back)
    top = both.anomalies[0]
    assert abs(top.offset - offset) <= 10
    assert top.fix is not None and top.fix.apply(data) == text.encode()
    network_right_to_left = edit_gain(back.in_reading_order, data[::-1], top.fix.mirrored(len(data)))
    assert network_right_to_left > MIN_GAIN
    assert top.fix.gain_bits != pytest.approx(forward.anomalies[0].fix.gain_bits)
    assert len(both.candidates) > len(forward.candidates)


def test_a_fix_mirrors_onto_the_text_read_right_to_left():
    from seqlab.surprise.fix import Fix

    data = "caf\u00e9 (x, y;".encode()
    for fix in [Fix(len(data) - 1, 0, ")", "insert", 1.0), Fix(1, 2, "\u00e9", "replace", 1.0),
                Fix(0, 1, "", "delete", 1.0), Fix(7, 2, "x(", "swap", 1.0)]:
        mirrored = fix.mirrored(len(data))
        assert mirrored.apply(data[::-1]) == fix.apply(data)[::-1]
        assert mirrored.mirrored(len(data)) == fix


def _barely_trained_run(tmp_path, lines: list[str], **counts):
    """An LSTM run of 5 steps on these lines: its network knows nothing, its count model has every line.
    counts: counts.* settings."""
    corpus = tmp_path / "calls.txt"
    corpus.write_text("".join(lines))
    config = tiny_config(corpus, "lstm", steps=5)
    for key, value in counts.items():
        setattr(config.counts, key, value)
    return load(train(config, tmp_path / "run", log=lambda *a: None))


@pytest.fixture(scope="module")
def lost_paren(tmp_path_factory):
    """(a barely trained run, 60 of its training lines, the same with a ')' deleted, the offset of the deletion).

    Its mixer is the bucket rows alone (no weight sets selected by the order-1 context, no SSE stage): the
    premises of the tests below (which of two fixes saves more bits, that all four places of a file's own
    convention stand out) were set for that mix; the selected sets learn a file's convention faster."""
    rng = np.random.default_rng(3)
    lines = [f"call_{rng.integers(1000)}(x{rng.integers(100)}, {rng.integers(10000)});\n" for _ in range(2000)]
    run = _barely_trained_run(tmp_path_factory.mktemp("calls"), lines, select=[], sse=0.0)
    text = "".join(lines[100:160]).encode()
    offset = text.index(b")", len(text) // 2)
    return run, text, text[:offset] + text[offset + 1 :], offset


def test_surprise_judges_fixes_with_the_count_model(lost_paren):
    """A network that has barely trained cannot place or mend an error; mixed with the count model, which
    has seen these lines (surprise's default), surprise finds the deleted ')' and its fix restores it."""
    run, text, data, offset = lost_paren
    top = surprise(run, data, top=3).anomalies[0]
    assert abs(top.offset - offset) <= 10
    assert top.fix is not None and top.fix.apply(data) == text


def test_spans_judged_in_forked_workers_are_judged_as_here(lost_paren):
    """Two torch threads judge the spans in two forked worker processes: every span gets the very fix (its
    gain to the last bit) and expected text that one thread judging them all in this process gives, in order."""
    from seqlab.scoring import TorchThreads
    from seqlab.surprise.anomalies import read, suggest_fixes

    run, _, data, _ = lost_paren
    for at in (len(data) // 5, len(data) // 3, 3 * len(data) // 4):  # three more bytes lost: more spans
        data = data[:at] + data[at + 1 :]
    with TorchThreads(1):
        _, reading = read(run, data, top=10, fixes=True, mixed=True)
    assert len(reading.spans) >= 4 and any(fix for _, fix in reading.suggested)
    with TorchThreads(2):
        forked = suggest_fixes(run, data, reading.spans, reading.excess, reading.session, reading.file_counts)
    assert forked == reading.suggested


def test_forked_map_keeps_the_order_and_inherits_what_it_reads():
    """Workers are other processes, which inherit the function and what it reads (a lock, which no pickle
    could send) and take the items as they come free; the results come back in the items' order."""
    import os
    import threading

    from seqlab.surprise.anomalies import forked_map

    lock = threading.Lock()
    items = list(range(40))
    out = list(forked_map(lambda i: (i * i, os.getpid(), lock.locked()), items, 2))
    assert [square for square, *_ in out] == [i * i for i in items]
    assert os.getpid() not in {pid for _, pid, _ in out}
    assert {pid for _, pid, _ in forked_map(lambda i: (i, os.getpid(), 0), items, 1)} == {os.getpid()}


def test_edits_are_tried_at_spikes_inside_a_span(lost_paren):
    """A lost byte mid-span, further after the span's first byte than the anchors before it reach, is
    mended from the spike it leaves; without the span's spikes no anchor reaches it."""
    from seqlab.scoring import mixing_session
    from seqlab.surprise.fix import BACK, suggest_fix

    run, text, data, offset = lost_paren
    start = offset - BACK - 3  # the span begins well before the lost ')'
    _, fix = suggest_fix(run, data, start, mixing_session(run), spikes=[offset])
    assert fix is not None and fix.apply(data) == text
    _, fix = suggest_fix(run, data, start, mixing_session(run))
    assert fix is None or fix.apply(data) != text


def test_a_lost_byte_at_a_line_end_is_mended_from_past_the_next_indent(tmp_path):
    """A ';' lost at a line's end can first spike at the next line's first byte, past an indent wider
    than the anchors before a span reach: edits are tried just after the text before the indent too."""
    from seqlab.scoring import mixing_session
    from seqlab.surprise.fix import BACK, fix_anchors, suggest_fix

    rng = np.random.default_rng(5)
    indent = " " * (BACK + 5)
    run = _barely_trained_run(tmp_path, [f"{indent}call_{rng.integers(1000)}({rng.integers(100)});\n"
                                         for _ in range(2000)])
    text = f"{indent}call_7(3);\n{indent}call_8(4);\n".encode()
    offset = text.index(b";")
    data = text[:offset] + text[offset + 1 :]
    start = data.index(b"call_8")
    assert offset in fix_anchors(data, start, []) and offset < start - BACK
    _, fix = suggest_fix(run, data, start, mixing_session(run))
    assert fix is not None and fix.apply(data) == text


def test_the_noisy_channel_charges_removed_bytes_and_inserted_bytes_past_the_first():
    from seqlab.surprise.fix import LOST_BITS, NOISE_BITS, Fix, channel_bits

    assert channel_bits(Fix(0, 0, ")", "insert", 0.0)) == 0.0
    assert channel_bits(Fix(0, 0, ");\n", "insert", 0.0)) == 2 * LOST_BITS
    assert channel_bits(Fix(0, 1, "é", "replace", 0.0)) == NOISE_BITS + LOST_BITS  # two bytes of UTF-8
    assert channel_bits(Fix(0, 2, "ba", "swap", 0.0)) == 0.0


def test_spans_that_suggest_one_edit_make_one_anomaly_at_one_place():
    """The same edit at one offset, found from two spans, is one place and one anomaly (ranked as the
    better span, placed at the span nearer the edit); the same edit at two offsets is two places."""
    from seqlab.surprise.anomalies import Anomaly, one_per_fix, places_per_edit
    from seqlab.surprise.fix import Fix

    data = b"f(a)\n        g(b)  \\\nh(c) x(a)\n"
    semicolon = [Fix(4, 0, ";", "insert", 9.0), Fix(4, 0, ";", "insert", 8.0)]
    space = [Fix(14, 0, " ", "insert", 5.0), Fix(21, 0, " ", "insert", 5.0)]
    assert places_per_edit(data, semicolon + space + [None]) == [1, 1, 2, 2, 0]

    def anomaly(offset, score, fix):
        return Anomaly(offset, 1, 1, 1, 3.0, 3.0, score, "?", "", fix, 1)

    ranked = [anomaly(19, 9.0, semicolon[0]), anomaly(13, 7.0, None), anomaly(5, 8.0, semicolon[1]),
              anomaly(14, 2.5, space[0])]
    kept = one_per_fix(ranked)
    assert [(a.offset, a.score) for a in kept] == [(5, 9.0), (13, 7.0), (14, 2.5)]
    assert kept[0].fix is semicolon[0]


def test_a_convention_of_the_file_is_no_error(lost_paren):
    """Four lines name their argument y where the training lines only had x, and one line lost a ')'.
    Each of the four gets the same fix (x for y), saving more bits than the ')' does; but the places of
    one edit share its evidence, so the lost ')' ranks first."""
    run, text, _, _ = lost_paren
    lines = text.decode().splitlines(keepends=True)
    for i in (5, 15, 25, 45):
        lines[i] = lines[i].replace("(x", "(y")
    styled = "".join(lines).encode()
    offset = styled.index(b")", len(styled) // 2 + 50)
    data = styled[:offset] + styled[offset + 1 :]
    report = surprise(run, data, top=5)
    top = report.anomalies[0]
    assert abs(top.offset - offset) <= 10 and top.fix.apply(data) == styled and top.fix_repeats == 1
    styles = [a for a in report.anomalies if a.fix is not None and a.fix.insert == "x"]
    assert len(styles) == 4
    assert all(a.fix_repeats == 4 and a.fix.gain_bits > top.fix.gain_bits for a in styles)
    assert "the same edit fits 4 places" in anomaly_table(report)
    assert "the same edit fits 4 places" in html_report(report, run.tokenizer)  # the list and the hover


def test_a_layout_edit_ranks_after_an_edit_of_the_content(lost_paren):
    """Two lines run together, and one line lost the x of its argument. Mending the join saves more
    bits, but it changes whitespace only: the lost x ranks first, the join is still listed with its fix."""
    from seqlab.surprise.fix import Fix, changes_only_layout

    run, text, _, _ = lost_paren
    lines = text.decode().splitlines(keepends=True)
    lines[15] = lines[15].rstrip("\n")
    joined = "".join(lines).encode()
    offset = joined.index(b"(x", len(joined) // 2 + 50) + 1
    data = joined[:offset] + joined[offset + 1 :]
    anomalies = surprise(run, data, top=5).anomalies
    assert abs(anomalies[0].offset - offset) <= 10 and anomalies[0].fix.apply(data) == joined
    layout = [a for a in anomalies if a.fix is not None and changes_only_layout(data, a.fix)]
    assert layout and layout[0].fix.insert == "\n" and layout[0].fix.gain_bits > anomalies[0].fix.gain_bits
    assert changes_only_layout(b"a\nb", Fix(1, 1, " ", "replace", 0.0))
    assert not changes_only_layout(b"a b", Fix(1, 0, ")", "insert", 0.0))
    assert not changes_only_layout(b"a b", Fix(0, 2, " a", "swap", 0.0))


def test_fixes_are_judged_by_the_rest_of_the_file(tmp_path):
    """Names the training split never saw recur through a file, and one occurrence lost a character:
    the judge's counts of the rest of the file (less the bytes around the edit) restore it."""
    rng = np.random.default_rng(4)
    run = _barely_trained_run(tmp_path, [f"call_{rng.integers(1000)}(x{rng.integers(100)});\n" for _ in range(2000)])
    names = ["zqxvbn", "wkjhgf", "plmokn"]
    text = "".join(f"{names[i % 3]}(x{i % 4});\n" for i in range(60)).encode()
    offset = text.index(b"wkjhgf", len(text) // 2) + 3
    data = text[:offset] + text[offset + 1 :]
    top = surprise(run, data, top=3).anomalies[0]
    assert abs(top.offset - offset) <= 10
    assert top.fix is not None and top.fix.apply(data) == text


def test_file_counts_leave_out_what_overlaps_the_edit():
    """around(lo, hi): the scoring pass's counts of the file less every (context, token) that reads a
    byte in lo..hi-1."""
    from seqlab.config import CountModelConfig
    from seqlab.countmodel import CountModel, context_hashes, continuations
    from seqlab.surprise.fix import FileCounts

    config = CountModelConfig(orders=[1, 2, 3], experts=[3], match_orders=[5])
    data = b"abcabcabXabcabcab"
    model = CountModel(np.zeros(10, dtype=np.int64), 257, config)
    tokens = np.concatenate([[256], np.frombuffer(data, dtype=np.uint8)]).astype(np.int64)  # token p is byte p - 1
    session = model.session("cpu")
    session.reader(tokens, 1).advance(len(tokens))  # as scoring counts the file
    lo, hi = 8, 9  # the X
    tables = FileCounts(tokens, np.arange(1, len(tokens)), model.orders, session.recent.levels).around(lo, hi)
    for j, k in enumerate(model.orders):
        ids = context_hashes(tokens, model.orders)[:, j]
        for p in range(k, len(tokens)):
            expected = sum(1 for q in range(k, len(tokens)) if ids[q] == ids[p] and tokens[q] == tokens[p]
                           and not any(lo <= b < hi for b in range(q - k - 1, q)))  # q's bytes: q-k-1 .. q-1
            _, found, n = continuations(tables, ids[p : p + 1])
            assert dict(zip(found.tolist(), n.tolist())).get(int(tokens[p]), 0) == expected, (k, p)


def test_cli_scores_as_eval_by_default_and_the_network_alone_on_request(run_dirs, grammar_file, capsys):
    result = evaluate(load(run_dirs["transformer"]), [str(grammar_file)])
    assert result["bpb"] != pytest.approx(result["bpb_network"], rel=1e-3)
    for flags, key in (([], "bpb"), (["--network-alone"], "bpb_network")):
        assert main(["surprise", str(run_dirs["transformer"]), str(grammar_file), "--json", "--top", "0", *flags]) == 0
        assert json.loads(capsys.readouterr().out)["bpb"] == pytest.approx(result[key], rel=1e-4)


def test_spans_group_neighbouring_spikes():
    bits = np.ones(100)
    bits[[10, 12, 13, 60]] = 20.0
    assert find_spans(bits) == [(10, 14), (60, 61)]
    assert find_spans(np.zeros(0)) == []


def test_line_column_counts_characters():
    data = "ab\nçé x".encode()
    assert line_column(data, 0) == (1, 1)
    assert line_column(data, data.index(b"x")) == (2, 4)


def test_json_output_has_plain_keys(run_dirs, tmp_path, capsys):
    path = tmp_path / "bad.txt"
    path.write_bytes(_corrupt(structured_text(60, seed=11))[0])
    assert main(["surprise", str(run_dirs["lstm"]), str(path), "--json", "--top", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["bytes"] == path.stat().st_size and len(out["surprisal"]) == out["bytes"]
    assert out["bpb"] == pytest.approx(sum(out["surprisal"]) / out["bytes"], rel=1e-3)
    assert 1 <= len(out["anomalies"]) <= 2
    first = out["anomalies"][0]
    for key in ("line", "column", "offset", "length", "bits", "peak_bits", "expected", "fix", "improves", "text"):
        assert key in first
    assert set(first["fix"]) >= {"offset", "remove", "insert", "kind", "gain_bits"}


def test_html_report_carries_top5_and_escapes(runs):
    data = b"anna sees </script><b>it</b>.\nbob takes the cat.\n"
    report = surprise(runs["lstm"], data, top=2)
    page = html_report(report, runs["lstm"].tokenizer)
    assert page.startswith("<!DOCTYPE html>") and page.count("</script>") == 2  # the payload cannot close it
    payload = page.split('type="application/json">', 1)[1].split("</script>", 1)[0]
    d = json.loads(payload)
    assert d["text"] == data.decode() and len(d["bits"]) == len(d["text"])
    assert len(d["top"]) == len(report.top_ids) and all(len(row) == 5 for row in d["top"])
    assert all(0 < sum(p) <= 1.0001 for p in d["prob"]) and str(d["top"][0][0]) in d["vocab"]
    assert d["anomalies"] and {"rank", "line", "column", "expected"} <= set(d["anomalies"][0])


@pytest.mark.slow
def test_cli_writes_html_and_plain_text_has_no_escapes(run_dirs, tmp_path, capsys):
    path = tmp_path / "bad.txt"
    data, _ = _corrupt(structured_text(60, seed=11))
    path.write_bytes(data)
    html_path = tmp_path / "report.html"
    assert main(["surprise", str(run_dirs["lstm"]), str(path), "--no-color", "--html", str(html_path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "^" in out and "suggested fix" in out
    assert html_path.read_text().startswith("<!DOCTYPE html>")


def test_plain_view_marks_an_anomaly_at_a_line_end():
    """A deleted closer often leaves the newline as the surprising byte: its ^ goes just past the line."""
    from seqlab.surprise import Anomaly, Report

    data = b"abc.\nabc\nabc.\n"
    n = len(data)
    anomaly = Anomaly(offset=8, length=1, line=2, column=4, bits=9.0, peak_bits=9.0, score=9.0, text="\n",
                      expected=".")
    report = Report(name="x", data=data, bits=np.ones(n), entropy=np.ones(n), token_of_byte=np.arange(n),
                    top_ids=np.zeros((n, 5), dtype=np.int64), top_probs=np.zeros((n, 5)), context="",
                    anomalies=[anomaly])
    assert terminal_text(report, color=False).splitlines() == ["abc.", "abc", "   ^  <- #1", "abc."]


def test_colour_view_uses_ansi_and_plain_keeps_the_text(runs):
    data, _ = _corrupt(structured_text(60, seed=11))
    report = surprise(runs["lstm"], data, top=1, fixes=False)
    coloured = terminal_text(report, color=True)
    assert "\x1b[48;5;" in coloured
    plain = terminal_text(report, color=False)
    kept = [line for line in plain.splitlines() if "<- #" not in line]
    assert "\n".join(kept) + "\n" == data.decode()


@pytest.mark.parametrize("args", [["surprise", "RUN", "missing.txt"], ["surprise", "RUN", "EMPTY"],
                                  ["surprise", "nowhere", "FILE"], ["surprise", "RUN", "FILE", "--top", "-1"],
                                  ["surprise", "BACK", "FILE"], ["surprise", "RUN", "FILE", "--backward", "RUN"],
                                  ["surprise", "RUN", "FILE", "--backward", "nowhere"]])
def test_bad_input_is_one_line_exit_2(run_dirs, backward_run, tmp_path, capsys, args):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "f.txt").write_bytes(b"anna sees it.\n")
    subs = {"RUN": str(run_dirs["lstm"]), "EMPTY": str(tmp_path / "empty.txt"), "FILE": str(tmp_path / "f.txt"),
            "missing.txt": str(tmp_path / "missing.txt"), "nowhere": str(tmp_path / "nowhere"),
            "BACK": str(backward_run)}
    assert main([subs.get(a, a) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error" in err
