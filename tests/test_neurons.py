"""`seqlab neurons`: feature extractors, exact correlations, and a trained LSTM that grows a quote unit."""

import json
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import tiny_config
from seqlab.__main__ import main
from seqlab.data.tokenizer import BPETokenizer, ByteTokenizer
from seqlab.errors import SeqlabError
from seqlab.models.lstm import LSTM, LSTMConfig
from seqlab.models.transformer import Transformer, TransformerConfig
from seqlab import neurons as nr


def quoted_text(n_lines: int, seed: int) -> str:
    """Words, some in quoted spans written in capitals: predicting the case needs the quote state."""
    rng = random.Random(seed)
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "then", "ran", "off"]
    lines = []
    for _ in range(n_lines):
        parts = []
        for _ in range(rng.randint(3, 8)):
            if rng.random() < 0.3:
                parts.append('"' + " ".join(rng.choice(words).upper() for _ in range(rng.randint(1, 6))) + '"')
            else:
                parts.append(rng.choice(words))
        lines.append(" ".join(parts))
    return "\n".join(lines) + "\n"


# ---- features on hand examples -----------------------------------------------------------

def test_quote_feature_handles_escapes():
    data = b'a "b\\"c" d "e'
    #        a   " b \ " c " _ d _ " e
    want = [0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1]
    assert nr.quote_feature(data).tolist() == want


def test_depth_feature_brackets_and_tags():
    assert nr.depth_feature(b"(a[b]{c})").tolist() == [1, 1, 2, 2, 1, 2, 2, 1, 0]
    assert nr.depth_feature(b"))(").tolist() == [0, 0, 1]  # stray closers do not go below zero
    html = b"<p>x<br>y<b/></p>"
    depth = nr.depth_feature(html).tolist()
    assert depth[:3] == [0, 0, 1]  # <p> counts from its '>'
    assert depth[html.index(b"y")] == 1  # <br> (void) and <b/> (self-closing) do not nest
    assert depth[-1] == 0 and depth[-2] == 1  # </p> closes at its '>'


def test_line_pos_and_regex_features():
    assert nr.line_pos_feature(b"ab\ncd\n\ne").tolist() == [1, 2, 0, 1, 2, 0, 0, 1]
    assert nr.regex_feature(b"x=12; y=345", r"\d+").tolist() == [0, 0, 1, 1, 0, 0, 0, 0, 1, 1, 1]
    assert nr.feature_values(b"ab1", "regex:[0-9]").tolist() == [0, 0, 1]
    with pytest.raises(SeqlabError, match="not a valid regular expression"):
        nr.feature_values(b"x", "regex:(")
    with pytest.raises(SeqlabError, match="quote, depth, line-pos"):
        nr.feature_values(b"x", "colour")


# ---- activations and correlations --------------------------------------------------------

def _bytewise_r(model, tokenizer, data: bytes, values: np.ndarray) -> np.ndarray:
    """Reference: every unit's activation expanded to bytes, then numpy's Pearson r."""
    ids = tokenizer.encode(data)
    tokens = np.concatenate([[tokenizer.bos_id], ids])
    chunks = [np.concatenate(layers, axis=1) for _, layers in nr.activations(model, tokens)]
    acts = np.concatenate(chunks)[1:]  # drop BOS
    lengths = [len(tokenizer.token_bytes[i]) for i in ids]
    per_byte = np.repeat(acts, lengths, axis=0)
    return np.array([np.corrcoef(per_byte[:, j], values)[0, 1] for j in range(per_byte.shape[1])])


@pytest.mark.parametrize("tokenizer_kind", ["byte", "bpe"])
def test_streamed_correlation_equals_numpy_on_bytes(tokenizer_kind, monkeypatch):
    monkeypatch.setattr(nr, "LSTM_CHUNK", 50)  # several chunks with the state carried between them
    data = quoted_text(40, 3).encode()
    tok = ByteTokenizer() if tokenizer_kind == "byte" else BPETokenizer.train([data], 300)
    torch.manual_seed(0)
    model = LSTM(LSTMConfig(vocab_size=tok.vocab_size, n_layer=2, n_hidden=8, dropout=0.0)).eval()
    values = nr.quote_feature(data)
    res = nr.correlate(model, tok, data, values, keep_bytes=100)
    np.testing.assert_allclose(res["r"], _bytewise_r(model, tok, data, values), atol=1e-6)
    assert res["layer_sizes"] == [8, 8] and res["kept"].shape[1] == 16


def test_lstm_chunks_carry_state_exactly(monkeypatch):
    torch.manual_seed(0)
    model = LSTM(LSTMConfig(n_layer=2, n_hidden=8, dropout=0.0)).eval()
    tokens = np.frombuffer(quoted_text(20, 0).encode(), dtype=np.uint8).astype(np.int64)
    whole = np.concatenate([np.concatenate(h, 1) for _, h in nr.activations(model, tokens)])
    monkeypatch.setattr(nr, "LSTM_CHUNK", 37)
    chunked = np.concatenate([np.concatenate(h, 1) for _, h in nr.activations(model, tokens)])
    np.testing.assert_allclose(chunked, whole, atol=1e-5)


def test_transformer_hidden_states_and_windows():
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(n_layer=2, n_head=2, n_embd=16, block_size=16, dropout=0.0)).eval()
    idx = torch.randint(0, 256, (1, 16))
    layers, _ = model.hidden_states(idx)
    assert len(layers) == 2 and layers[-1].shape == (1, 16, 16)
    logits, _ = model(idx)
    torch.testing.assert_close(model.lm_head(model.ln_f(layers[-1])), logits)
    tokens = np.random.default_rng(0).integers(0, 256, 100)
    got = list(nr.activations(model, tokens))
    firsts = [f for f, _ in got]
    assert sum(len(h[0]) for _, h in got) == 100 and firsts == list(range(0, 100, 8))
    # position 50 is read in the window [40, 56): at least half a window of context
    with torch.no_grad():
        ref = model.hidden_states(torch.from_numpy(tokens[40:56])[None])[0][1][0, 10]
    at = firsts.index(48)
    np.testing.assert_allclose(got[at][1][1][2], ref.numpy(), atol=1e-5)


def test_arch_without_hidden_states_is_a_clear_error():
    run = SimpleNamespace(model=torch.nn.Linear(2, 2), config=SimpleNamespace(arch="mystery"))
    with pytest.raises(SeqlabError, match="'mystery' does not: it works with .*lstm"):
        nr.neurons(run, b"text", "line-pos")


# ---- a trained LSTM tracks quotes; the command finds the unit ----------------------------

@pytest.fixture(scope="module")
def quote_run(tmp_path_factory):
    from seqlab.train import train

    corpus = tmp_path_factory.mktemp("quotes") / "quotes.txt"
    corpus.write_text(quoted_text(600, 0))
    cfg = tiny_config(corpus, "lstm", steps=400)
    cfg.model = {"n_layer": 1, "n_hidden": 32, "dropout": 0.0}
    return train(cfg, tmp_path_factory.mktemp("run-quotes"), log=lambda *a: None)


def test_trained_lstm_has_a_quote_unit_and_the_command_finds_it(quote_run, tmp_path, capsys):
    from seqlab.run import load

    held_out = quoted_text(60, 1).encode()  # text the model never saw
    run = load(quote_run)
    result = nr.neurons(run, held_out, "quote", top=3)
    best = abs(result["top"][0]["r"])
    torch.manual_seed(0)
    untrained = LSTM(LSTMConfig(**run.config.model)).eval()
    values = nr.quote_feature(held_out)
    untrained_best = np.abs(nr.correlate(untrained, run.tokenizer, held_out, values)["r"]).max()
    # Capital letters alone give an untrained net some correlation; training adds the quote state on top.
    assert best > untrained_best + 0.15, (best, untrained_best)
    assert best > result["null_max_abs_r"] + 0.5, (best, result["null_max_abs_r"])

    path, html = tmp_path / "held_out.txt", tmp_path / "view.html"
    path.write_bytes(held_out)
    argv = ["neurons", str(quote_run), str(path), "--feature", "quote", "--top", "3", "--json", "--html", str(html)]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["top"][0] == result["top"][0]
    assert set(out) >= {"feature", "top", "max_abs_r", "null_max_abs_r", "layer_sizes", "reading", "units"}
    page = html.read_text()
    assert "layer" in page and '"feature": "quote"' in page and page.count('"r":') == 3

    assert main(["neurons", str(quote_run), str(path), "--feature", "depth"]) == 2  # no brackets in this text
    assert "constant" in capsys.readouterr().err
    assert main(["neurons", str(quote_run), str(path), "--feature", "line-pos", "--top", "2"]) == 0
    table = capsys.readouterr().out
    assert "rank" in table and "chance:" in table and len(table.strip().splitlines()) == 5


def test_bad_input_is_one_line_exit_2(tmp_path, capsys, quote_run):
    f = tmp_path / "t.txt"
    f.write_text('say "hi"\n')
    for argv, needle in [
        (["neurons", str(tmp_path), str(f)], "not a seqlab run"),
        # the first bad argument is the one named
        (["neurons", str(tmp_path), str(tmp_path / "missing.txt")], "not a seqlab run"),
        (["neurons", str(quote_run), str(f), "--feature", "regex:["], "regular expression"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], (argv, err)
