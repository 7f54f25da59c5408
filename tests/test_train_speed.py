"""Speed settings of training (train/speed.py) leave what it learns the same."""

import pytest
import torch
import torch.nn.functional as F

from seqlab.errors import SeqlabError
from seqlab.models import build_model
from seqlab.train import speed
from seqlab.train.speed import CompiledStep, autocast, uses_bf16

from conftest import TINY, tiny_config

CPU = torch.device("cpu")


def batch(seed: int = 0, vocab: int = 50):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocab, (4, 33), generator=g)
    return tokens[:, :-1], tokens[:, 1:]


def loss_and_grads(model, step_fn=None, bf16=False):
    x, y = batch()
    model.zero_grad(set_to_none=True)
    with autocast(CPU, bf16):
        loss, _ = (step_fn or model.loss)(x, y)
    loss.backward()
    return loss.item(), torch.cat([p.grad.flatten() for p in model.parameters()])


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
def test_bf16_autocast_gives_the_fp32_loss_and_gradients_within_bf16_rounding(arch):
    torch.manual_seed(0)
    model = build_model(arch, {**TINY[arch], "vocab_size": 50}).train()
    loss32, grad32 = loss_and_grads(model)
    loss16, grad16 = loss_and_grads(model, bf16=True)
    assert loss16 == pytest.approx(loss32, rel=1e-2)
    assert F.cosine_similarity(grad16, grad32, dim=0) > 0.99


def test_attention_stays_fp32_under_the_cpus_bf16_autocast(monkeypatch):
    seen = []
    real = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention",
                        lambda q, k, v, **kw: seen.append(q.dtype) or real(q, k, v, **kw))
    model = build_model("transformer", {**TINY["transformer"], "vocab_size": 50})
    with autocast(CPU, True):
        logits, _ = model(batch()[0])
    assert seen and set(seen) == {torch.float32} and logits.dtype == torch.bfloat16  # the products are bf16
    seen.clear()
    model(batch()[0])
    assert set(seen) == {torch.float32}


@pytest.mark.slow
def test_a_compiled_model_gives_the_eager_loss_and_gradients():
    torch.manual_seed(0)
    model = build_model("transformer", {**TINY["transformer"], "vocab_size": 50}).train()
    eager_loss, eager_grads = loss_and_grads(model)
    compiled_loss, compiled_grads = loss_and_grads(model, torch.compile(model.loss))
    assert compiled_loss == pytest.approx(eager_loss, rel=1e-5)
    torch.testing.assert_close(compiled_grads, eager_grads, rtol=1e-4, atol=1e-6)


def test_a_failing_compile_falls_back_to_eager_from_the_same_step(monkeypatch):
    def broken(net):
        def run(*args):
            raise RuntimeError("inductor: no C++ compiler\nlong trace")
        return run

    monkeypatch.setattr(torch, "compile", broken)
    model = build_model("transformer", {**TINY["transformer"], "vocab_size": 50})
    lines, cleared = [], []
    step = CompiledStep(model.loss, True, lambda: cleared.append(1), lines.append)
    x, y = batch()
    loss, _ = step(lambda net, a, b: net(a, b), x, y)
    assert torch.isfinite(loss) and cleared == [1]
    assert lines == ["torch.compile failed (RuntimeError: inductor: no C++ compiler); training goes on without it"]
    step(lambda net, a, b: net(a, b), x, y)
    assert len(lines) == 1 and step.compiled is None


def test_auto_precision_is_bf16_only_where_the_device_has_it_and_for_the_architectures_measured(monkeypatch):
    monkeypatch.setattr(speed, "native_bf16", lambda device: True)
    assert uses_bf16(CPU, "auto", "transformer") and uses_bf16(CPU, "auto", "lstm")
    assert not uses_bf16(CPU, "auto", "qrnn") and uses_bf16(CPU, "bf16", "qrnn")
    assert not uses_bf16(CPU, "fp32", "transformer")
    monkeypatch.setattr(speed, "native_bf16", lambda device: False)
    assert not uses_bf16(CPU, "auto", "transformer")


def test_an_unknown_precision_is_one_line_before_any_work(corpus_file, tmp_path):
    from seqlab.train import train

    cfg = tiny_config(corpus_file, "transformer", steps=2)
    cfg.train.precision = "fp8"
    with pytest.raises(SeqlabError, match="train.precision.*'fp8' is not one of: auto, fp32, bf16"):
        train(cfg, tmp_path / "r", log=lambda *a: None)
    assert not (tmp_path / "r").exists()
