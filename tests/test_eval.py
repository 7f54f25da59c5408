import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from seqlab.evaluate import evaluate
from seqlab.models import build_model
from seqlab.run import load
from seqlab.scoring import RNN_BLOCK, plan_windows, token_bits

from conftest import TINY


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
@pytest.mark.parametrize("n_total,n_context", [(2, 1), (100, 1), (1000, 37), (9000, 1), (RNN_BLOCK * 2 + 5, 300)])
def test_windows_score_every_position_once(arch, n_total, n_context):
    model = build_model(arch, {**TINY[arch], "vocab_size": 50})
    windows = plan_windows(model, n_total, n_context)
    scored = [p for w in windows for p in range(w.first, w.stop)]
    assert scored == list(range(n_context, n_total))
    for w in windows:
        assert 0 <= w.start < w.first  # at least one token of context, never the target itself
        if model.max_context:
            assert w.stop - 1 - w.start <= model.max_context


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
def test_summed_surprisal_equals_loss_times_tokens(arch):
    torch.manual_seed(0)
    model = build_model(arch, {**TINY[arch], "vocab_size": 50}).eval()
    tokens = np.random.default_rng(0).integers(0, 50, 30)
    bits = token_bits(model, tokens, 1, "cpu")
    logits, _ = model(torch.from_numpy(tokens[None, :-1]))
    loss = F.cross_entropy(logits[0], torch.from_numpy(tokens[1:]))
    assert bits.sum() == pytest.approx(loss.item() * 29 / math.log(2), rel=1e-5)


def test_eval_of_held_out_matches_training_report(trained_runs):
    from seqlab.run import read_metrics

    run = load(trained_runs["lstm"])
    result = evaluate(run)
    final = [r for r in read_metrics(trained_runs["lstm"]) if r["event"] == "final"][-1]
    assert result["bpb"] == pytest.approx(final["val_bpb"], rel=1e-6)
    assert result["bytes"] == read_metrics(trained_runs["lstm"])[0]["val_bytes"]
    assert "carried state" in result["context"]


def test_eval_files_json(trained_runs, tmp_path, capsys):
    from seqlab.__main__ import main

    f = tmp_path / "x.txt"
    f.write_text("anna sees the cat.\n" * 5)
    assert main(["eval", str(trained_runs["transformer"]), str(f), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["bytes"] == 95 and 0 < out["bpb"] < 3 and "sliding window" in out["context"]
    assert out["perplexity"] == pytest.approx(2 ** out["bits_per_token"])


def test_eval_table(trained_runs, capsys):
    from seqlab.__main__ import main

    assert main(["eval", str(trained_runs["lstm"])]) == 0
    out = capsys.readouterr().out
    assert "bits/byte" in out and "context: carried state" in out
