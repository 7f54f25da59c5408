"""Style vectors: per-source conditioning for every architecture, from training batches to generation."""

import random

import numpy as np
import pytest
import torch

from seqlab.__main__ import main
from seqlab.config import StyleConfig
from seqlab.data.batches import StreamBatcher, TokenSources, WindowBatcher
from seqlab.data.corpus import cache_root, encode_corpus, read_documents
from seqlab.errors import SeqlabError
from seqlab.generate import generate
from seqlab.models import ARCHS, build_model
from seqlab.models.style import StyleTable, attach_styles, conditioned, for_document, parse_mix, short_names
from seqlab.run import load, read_metrics
from seqlab.scoring import token_bits
from seqlab.styles import styles
from seqlab.train import train

from conftest import TINY, tiny_config, train_interrupted_at

DIGITS = "0123456789.,;"


def quiet(*args):
    pass


def digit_fraction(text: str) -> float:
    return sum(c in DIGITS for c in text) / max(1, len(text))


@pytest.fixture(scope="module")
def two_sources(tmp_path_factory):
    """One source of vowels and spaces, one of digits and punctuation: told apart only by style from BOS."""
    root = tmp_path_factory.mktemp("two") / "corpus"
    root.mkdir()
    rng = random.Random(0)
    (root / "vowels.txt").write_text("".join(rng.choice("aeiou  ") for _ in range(12000)))
    (root / "digits.txt").write_text("".join(rng.choice(DIGITS) for _ in range(12000)))
    return root


@pytest.fixture(scope="module")
def styled_run(two_sources, tmp_path_factory):
    out = tmp_path_factory.mktemp("styled") / "run"
    code = main(["train", str(two_sources), "--arch", "lstm", "--set", "model.n_hidden=32", "--set", "model.n_layer=1",
                 "--set", "train.eval_every_steps=50", "--max-steps", "150", "--batch-size", "8", "--seq-len", "32",
                 "--lr", "1e-2", "--threads", "1", "--device", "cpu", "--style-by", "file", "--style-dim", "8",
                 "--out", str(out)])
    assert code == 0
    return out


def test_training_with_style_by_file_lists_its_sources(styled_run, tmp_path, capsys):
    listing = styles(styled_run, tmp_path / "map.png")
    assert [s["name"] for s in listing["styles"]] == ["digits.txt", "vowels.txt"]
    assert [s["train_bytes"] for s in listing["styles"]] == [10800, 10800]  # 90% of each file trains
    assert listing["dim"] == 8 and (tmp_path / "map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["styles", str(styled_run)]) == 0
    assert "vowels.txt" in capsys.readouterr().out and (styled_run / "styles.png").exists()


def test_generation_follows_the_style_asked_for(styled_run):
    run = load(styled_run)
    vowels = "".join(s.text for s in generate(run, "", n=2, max_tokens=100, seed=1, style="vowels.txt"))
    digits = "".join(s.text for s in generate(run, "", n=2, max_tokens=100, seed=1, style="digits.txt"))
    assert digit_fraction(vowels) < 0.1 and digit_fraction(digits) > 0.9, (vowels, digits)
    mix = "".join(s.text for s in generate(run, "", n=2, max_tokens=100, seed=1, style="digits.txt:1,vowels.txt:0"))
    assert mix == digits  # a mix is the weighted sum of the vectors


def test_random_style_is_seeded(styled_run):
    run = load(styled_run)
    draw = [s.text for s in generate(run, "", n=3, max_tokens=40, seed=5, style="random")]
    again = [s.text for s in generate(run, "", n=3, max_tokens=40, seed=5, style="random")]
    other = [s.text for s in generate(run, "", n=3, max_tokens=40, seed=6, style="random")]
    assert draw == again and draw != other


def test_held_out_documents_are_read_in_their_own_style(styled_run, two_sources):
    run = load(styled_run)
    data = encode_corpus(read_documents([str(two_sources)]), [], run.tokenizer, 0.1, cache_root())
    for h in data.held_out:
        other = 1 - run.model.style.index_of(h.name)
        with for_document(run.model, h.name):
            own_bits = token_bits(run.model, h.tokens, h.n_context, "cpu").sum()
        with conditioned(run.model, torch.tensor([other])):
            other_bits = token_bits(run.model, h.tokens, h.n_context, "cpu").sum()
        assert own_bits < other_bits, h.name


@pytest.mark.parametrize("spec, message", [
    ("vowels.txt:x", "not a number"),
    ("vowels.txt:0.5,", "cannot read ''"),
    ("vowels.txt,digits.txt", "cannot read 'vowels.txt'"),
    ("vowels.txt:0.5,vowels.txt:0.5", "appears twice"),
    ("vowels.txt:inf", "finite"),
])
def test_mix_parsing_errors(spec, message):
    with pytest.raises(SeqlabError, match=message):
        parse_mix(spec, ["vowels.txt", "digits.txt"])


def test_mix_parsing():
    assert parse_mix("a.txt", ["a.txt"]) == [("a.txt", 1.0)]
    assert parse_mix(" a:0.7, b:0.3 ", ["a", "b"]) == [("a", 0.7), ("b", 0.3)]


def test_style_errors_are_one_line(styled_run, corpus_file, tmp_path, capsys):
    assert main(["generate", str(styled_run), "--style", "poems.txt", "--max-tokens", "5"]) == 2
    assert "unknown style 'poems.txt'; this run's styles: digits.txt, vowels.txt" in capsys.readouterr().err
    plain = train(tiny_config(corpus_file, "lstm", steps=2), tmp_path / "plain", log=quiet)
    capsys.readouterr()  # the progress line of that training
    assert main(["generate", str(plain), "--style", "random", "--max-tokens", "5"]) == 2
    err = capsys.readouterr().err
    assert "trained without styles" in err and err.count("\n") == 1
    assert main(["styles", str(plain)]) == 2


@pytest.fixture(scope="module")
def short_documents(tmp_path_factory):
    """train/SOURCE and val/SOURCE: many documents of 4 to 10 bytes, vowels or digits, as in two_sources."""
    root = tmp_path_factory.mktemp("short")
    rng = random.Random(0)
    for source, alphabet in (("vowels", "aeiou  "), ("digits", DIGITS)):
        for split, n_docs in (("train", 300), ("val", 40)):
            (root / split / source).mkdir(parents=True)
            for i in range(n_docs):
                text = "".join(rng.choice(alphabet) for _ in range(rng.randint(4, 10)))
                (root / split / source / f"{i:03d}.txt").write_text(text)
    return root


def test_styles_beat_no_styles_on_short_held_out_documents(short_documents, tmp_path):
    """Scored from its start, a short document's first bytes say little; its source's style says which alphabet."""
    def final_bpb(style_by: str) -> dict:
        cfg = tiny_config(short_documents / "train", "lstm", steps=150, seed=0)
        cfg.data.val_paths = [str(short_documents / "val")]
        cfg.style = StyleConfig(by=style_by, dim=4)
        run = train(cfg, tmp_path / (style_by or "plain"), log=quiet)
        return [r for r in read_metrics(run) if r["event"] == "final"][-1]

    plain, styled = final_bpb(""), final_bpb("dir")
    assert styled["val_bpb_network"] < plain["val_bpb_network"] - 0.05, (styled, plain)  # 0.13 to 0.21, seeds 0-2
    assert styled["val_bpb"] < plain["val_bpb"], (styled, plain)


def test_held_out_files_beside_the_training_ones_take_their_sources_style():
    table = StyleTable(["c/train/digits", "c/train/vowels", "c/train/more/vowels"], "dir", 4, 8)
    assert table.names == ["digits", "vowels", "more/vowels"]
    assert table.index_of("c/train/vowels/a.txt") == 1  # a training source itself
    assert table.index_of("c/val/digits/a.txt") == 0  # --val c/val/: the same name under another root
    assert table.index_of("c/val/more/vowels/a.txt") == 2  # the longest name that fits
    assert table.index_of("c/val/a.txt") is None and table.index_of("c/val/novowels/a.txt") is None


def test_short_names():
    assert short_names(["c/a.txt", "c/b.txt"]) == ["a.txt", "b.txt"]
    assert short_names(["c/x", "c/y/z"]) == ["x", "y/z"]
    assert short_names(["c/only.txt"]) == ["only.txt"]


def test_batches_carry_the_source_of_every_token():
    """Documents of source s hold tokens 10 + s: the style ids must follow the text across document ends."""
    lengths, doc_source = [30, 7, 50, 1, 25, 40], [0, 1, 1, 0, 2, 1]
    tokens = np.concatenate([np.full(n, 10 + s) for n, s in zip(lengths, doc_source)]).astype(np.uint16)
    sources = TokenSources(lengths, doc_source)
    for batcher in (StreamBatcher(tokens, 3, 8, 0, sources=sources), WindowBatcher(tokens, 4, 8, 0, sources=sources)):
        for _ in range(12):
            x, _, style, _ = batcher.next()
            assert torch.equal(style, x - 10)


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_every_architecture_takes_styles(arch):
    torch.manual_seed(0)
    model = build_model(arch, {**TINY[arch], "vocab_size": 50}).eval()
    x = torch.randint(0, 50, (2, 20))
    plain, _ = model(x)
    attach_styles(model, StyleConfig(by="file", dim=4, sources=["a", "b"]))
    with conditioned(model, torch.tensor([0, 1])):
        assert torch.equal(model(x)[0], plain)  # the zero start: an untrained style changes nothing
    torch.nn.init.normal_(model.style.to_input.weight)
    styled = {}
    for s in (0, 1):
        with conditioned(model, torch.tensor([s, s])):
            styled[s], _ = model(x)
        with conditioned(model, torch.full((2, 20), s)):  # one id per token means the same
            assert torch.allclose(model(x)[0], styled[s], atol=1e-5)
    assert not torch.allclose(styled[0], styled[1], atol=1e-3)
    vectors = model.style.vectors.weight.detach()[[0, 1]]  # (B, D): row 0 in style a, row 1 in style b
    with conditioned(model, vectors):
        full, _ = model(x)
        state = model.init_state(2, "cpu")
        prefix, state = model(x[:, :5], state)
        steps = [prefix]
        for t in range(5, 20):
            logits, state = model.step(x[:, t], state)
            steps.append(logits[:, None])
    assert torch.allclose(full[0], styled[0][0], atol=1e-5) and torch.allclose(full[1], styled[1][1], atol=1e-5)
    assert torch.allclose(torch.cat(steps, 1), full, atol=1e-5)


def test_resumed_styled_run_matches_uninterrupted(two_sources, tmp_path, monkeypatch):
    def config():
        cfg = tiny_config(two_sources, "lstm", steps=30)
        cfg.style = StyleConfig(by="file", dim=4)
        return cfg

    whole = train(config(), tmp_path / "whole", log=quiet)
    train_interrupted_at(15, config(), tmp_path / "split", monkeypatch)
    train(config(), tmp_path / "split", resume=True, log=quiet)
    a, b = load(whole).model.style, load(tmp_path / "split").model.style
    assert a.names == b.names == ["digits.txt", "vowels.txt"]
    assert torch.allclose(a.vectors.weight, b.vectors.weight, atol=1e-6)
    assert torch.allclose(a.to_input.weight, b.to_input.weight, atol=1e-6)
    assert a.to_input.weight.abs().sum() > 0  # the styles were trained, not left at their zero start
    final = [[r for r in read_metrics(run) if r["event"] == "final"][-1] for run in (whole, tmp_path / "split")]
    assert final[1]["val_bpb"] == pytest.approx(final[0]["val_bpb"], rel=1e-5)
