"""Dynamic evaluation: the network learns from each chunk once it has scored it (adapt.py)."""

import json

import numpy as np
import pytest
import torch

from seqlab.adapt import AdaptOptions, Adapter
from seqlab.models import build_model
from seqlab.run import load
from seqlab.scoring import token_bits

from conftest import TINY, structured_text


def tiny_model(arch: str, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(arch, {**TINY[arch], "vocab_size": 50}).eval()


def adapted_bits(model, tokens, n_context=1, **options) -> np.ndarray:
    with Adapter(model, "cpu", AdaptOptions(**options)) as adapter:
        out = [(-logp.gather(1, t[:, None])[:, 0]).numpy() for _, logp, t in adapter.stream(tokens, n_context)]
    return np.concatenate(out) / np.log(2)


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
def test_a_tiny_learning_rate_scores_as_the_frozen_network_and_the_weights_come_back(arch):
    model = tiny_model(arch)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tokens = np.random.default_rng(0).integers(0, 50, 700)
    frozen = token_bits(model, tokens, 5, "cpu")
    adapted = adapted_bits(model, tokens, 5, lr=1e-12, chunk=64)
    assert len(adapted) == len(frozen) == 695
    np.testing.assert_allclose(adapted, frozen, rtol=1e-4, atol=1e-5)  # the same windows, the same context
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
def test_adaptation_learns_a_repeat_beyond_the_window(arch):
    """A random passage repeated: the frozen network cannot know the second copy (it is beyond a window model's
    context); adapted, it has learnt the first copy by the time it reads the second."""
    model = tiny_model(arch)
    passage = np.random.default_rng(1).integers(0, 50, 100)
    tokens = np.concatenate([passage] * 8)
    frozen = token_bits(model, tokens, 1, "cpu")
    adapted = adapted_bits(model, tokens, 1, lr=1e-2, chunk=32)
    last = slice(-100, None)
    assert adapted[last].mean() < 0.8 * frozen[last].mean(), (adapted[last].mean(), frozen[last].mean())


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
def test_adapted_scores_are_causal_repeatable_and_a_decoder_can_drive_them_chunk_by_chunk(arch):
    tokens = np.random.default_rng(2).integers(0, 50, 500)
    options = AdaptOptions(lr=1e-2, chunk=64)
    first = adapted_bits(tiny_model(arch), tokens, 3, lr=1e-2, chunk=64)
    assert np.array_equal(first, adapted_bits(tiny_model(arch), tokens, 3, lr=1e-2, chunk=64))  # bit for bit
    changed = tokens.copy()
    changed[300] = (changed[300] + 1) % 50
    other = adapted_bits(tiny_model(arch), changed, 3, lr=1e-2, chunk=64)
    assert np.array_equal(first[: 300 - 3], other[: 300 - 3]) and not np.array_equal(first, other)
    # a decoder knows a chunk's tokens only once it has decoded them: the same steps, the same weights
    model = tiny_model(arch)
    with Adapter(model, "cpu", options) as adapter:
        text = adapter.text(3)
        seen = []
        for a, b in text.chunks(len(tokens)):
            logp = text.learn(tokens[:b].copy(), a, b)
            seen.append((-logp.gather(1, torch.from_numpy(tokens[a:b])[:, None])[:, 0]).numpy() / np.log(2))
    assert np.array_equal(np.concatenate(seen), first)


def test_eval_prints_the_frozen_and_the_adapted_figures(trained_runs, capsys):
    from seqlab.__main__ import main

    run_dir = str(trained_runs["transformer"])
    assert main(["eval", run_dir, "--adapt", "--adapt-lr", "1e-3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    adapted = out["adapted"]
    assert adapted["lr"] == 1e-3 and adapted["bytes"] == out["bytes"] and adapted["threads"] >= 1
    assert 0 < adapted["bpb"] < 8 and adapted["bpb"] != out["bpb"]
    assert main(["eval", run_dir, "--adapt"]) == 0
    table = capsys.readouterr().out
    assert "adapted while scoring (Adam lr" in table and "frozen" in table
    assert main(["eval", run_dir]) == 0 and "adapted while" not in capsys.readouterr().out  # opt-in
    assert main(["eval", run_dir, "--adapt", "--adapt-lr", "0"]) == 2
    assert "--adapt-lr" in capsys.readouterr().err
    assert load(run_dir).model is not None
    other = str(trained_runs["lstm"])
    capsys.readouterr()  # the fixture's training lines
    assert main(["eval", run_dir, "--adapt", "--against", other]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--adapt" in err and "--against" in err


@pytest.mark.parametrize("arch", ["lstm", "transformer"])
def test_compress_adapt_round_trips_bit_for_bit_from_the_header_alone(trained_runs, monkeypatch, arch):
    """compress --adapt: the header records lr and chunk, decompress repeats the same steps; the weights come back."""
    from seqlab.compress import Header, compress_bytes, decompress_bytes, lockstep

    monkeypatch.setattr(lockstep, "SEGMENT_TOKENS", 300)  # several segments side by side, an uneven last one
    run = load(trained_runs[arch])
    before = {k: v.clone() for k, v in run.model.state_dict().items()}
    data = structured_text(120, seed=5).encode()[:1700]
    options = AdaptOptions(lr=1e-2, chunk=64)
    blob = compress_bytes(run, data, adapt=options)
    header = Header.unpack(blob, "x")[0]
    assert (header.adapt_lr, header.adapt_chunk, header.threads) == (1e-2, 64, 1)
    assert blob != compress_bytes(run, data)  # the adapted network codes the text differently
    assert decompress_bytes(run, blob) == data
    assert all(torch.equal(before[k], v) for k, v in run.model.state_dict().items())
