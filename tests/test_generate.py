import re

import pytest
import torch

from seqlab.generate import generate, stream
from seqlab.run import load
from seqlab.sampling import Sampler, SamplingConfig, StopMatcher


@pytest.fixture(scope="module", params=["transformer", "lstm"])
def run(request, trained_runs):
    return load(trained_runs[request.param])


def test_same_seed_same_text(run):
    a = generate(run, "anna", max_tokens=40, seed=7)[0].text
    b = generate(run, "anna", max_tokens=40, seed=7)[0].text
    assert a == b


def test_samples_in_a_batch_match_samples_alone(run):
    batch = generate(run, "bob", n=3, max_tokens=30, seed=5)
    alone = generate(run, "bob", n=1, max_tokens=30, seed=6)[0]
    assert batch[1].text == alone.text  # sample i uses seed + i, whatever else is in the batch


def test_greedy_learned_the_grammar(run):
    text = generate(run, "anna sees", max_tokens=30, seed=0, sampling=SamplingConfig(temperature=0))[0].text
    assert text.split("\n")[0].rstrip(".") in {" the cat", " a red box", " it"}


def test_stops_exactly_before_stop_string(run):
    sample = generate(run, "anna", max_tokens=200, seed=1, stop=["."])[0]
    assert "." not in sample.text and sample.finish_reason == "stop"


@torch.no_grad()
def greedy_by_hand(model, ids: list[int], n: int, bos: int) -> list[int]:
    """n greedy tokens, each from one forward pass from a fresh state over what the model may see: all of the text
    for a recurrent model; for a context of L, what its cache holds (when it fills, the last L/2 tokens, again
    from position 0)."""
    ids, seen, out = list(ids), len(ids), []
    while len(out) < n:
        window = ids[-seen:] if model.max_context else ids
        logits, _ = model(torch.tensor([window]), None if model.max_context else model.init_state(1, "cpu"))
        token = int(logits[0, -1].argmax())
        out.append(token)
        if token == bos:
            break
        ids.append(token)
        seen = seen + 1 if not model.max_context or seen < model.max_context else model.max_context // 2
    return out


def test_long_generation_beyond_context(run):
    """Three contexts' worth of tokens, token for token what a plain forward pass over the visible text picks."""
    n = 3 * 32  # the tiny transformer's context is 32 tokens
    sample = generate(run, "anna", max_tokens=n, seed=2, sampling=SamplingConfig(temperature=0))[0]
    expected = greedy_by_hand(run.model, [run.tokenizer.bos_id, *b"anna"], n, run.tokenizer.bos_id)
    assert sample.tokens == len(expected) == n and sample.finish_reason == "length"
    assert sample.text.encode() == bytes(expected)
    for line in ("anna" + sample.text).split("\n")[:-1]:  # every whole line, past the context too, is grammatical
        assert re.fullmatch(r"(anna|bob|carl) (sees|takes|likes) (the cat|a red box|it)\.", line), sample.text


def test_stream_yields_chunks_then_end(run):
    events = []
    gen = stream(run, "carl", max_tokens=20, seed=3)
    for _row, text in gen:
        events.append(text)
    assert events[-1] is None and "".join(e for e in events if e) != ""


def test_top_k_beyond_the_vocabulary_is_no_limit():
    """Even one too large for int64 (the API accepts any integer >= 0): it samples as top_k=0."""
    logits = torch.randn(2, 50, generator=torch.Generator().manual_seed(0))
    picks = [Sampler([SamplingConfig(top_k=k)] * 2, [1, 2], 50, "cpu")(logits.clone())
             for k in (0, 50, 10**40)]
    assert torch.equal(picks[0], picks[1]) and torch.equal(picks[0], picks[2])


def test_stop_matcher_holds_back_partial_matches():
    m = StopMatcher([b"END"])
    assert m.feed(b"abcE") == b"ab"  # "cE" could still become "END"
    assert m.feed(b"N") == b"c"
    assert m.feed(b"D tail") == b""
    assert m.stopped and m.flush() == b""


def test_stop_matcher_across_chunks():
    m = StopMatcher([b"</p>"])
    out = b"".join(m.feed(bytes([c])) for c in b"hello</p>world")
    assert out == b"hello" and m.stopped


def test_incomplete_utf8_never_crashes(trained_runs):
    run = load(trained_runs["lstm"])
    sample = generate(run, "caf\xc3".encode("latin-1"), max_tokens=20, seed=4)[0]
    assert isinstance(sample.text, str)


def test_cli_streams(trained_runs, capsys):
    from seqlab.__main__ import main

    assert main(["generate", str(trained_runs["lstm"]), "--prompt", "anna", "--max-tokens", "20",
                 "--seed", "1"]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("anna") and "tokens/s" in out.err
