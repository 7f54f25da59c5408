"""`seqlab export`: Hugging Face and ONNX (Triton) copies of a run give the run's own logits."""

import numpy as np
import pytest
import torch

from seqlab.run import load

from conftest import structured_text, tiny_config

TEXT = "anna sees a red box.\n\n  bob likes it.\r\ncarl\rtakes 42 héllos  \n   x\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory, corpus_file) -> dict:
    """Briefly trained runs: parity of logits needs no good model, and this keeps the file fast.

    With dropout, so an export that left the model in training mode would show.
    """
    from seqlab.train import train

    runs = {}
    for arch in ("transformer", "lstm"):
        cfg = tiny_config(corpus_file, arch, steps=20)
        cfg.model["dropout"] = 0.1
        runs[arch] = train(cfg, tmp_path_factory.mktemp(f"export-{arch}"), log=lambda *a: None)
    return runs


def test_hf_export_loads_in_transformers_with_the_same_logits_and_tokens(runs, tmp_path):
    transformers = pytest.importorskip("transformers")
    from seqlab.export import export

    run = load(runs["transformer"])
    assert run.model.config.bias is False  # the missing biases are exported as zeros
    out = export(run, tmp_path / "hf", "hf")
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    assert type(hf).__name__ == "GPT2LMHeadModel"
    idx = torch.randint(0, run.tokenizer.vocab_size, (2, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(hf(idx).logits, run.model(idx)[0], atol=1e-5)
    tok = transformers.AutoTokenizer.from_pretrained(out)
    assert tok(TEXT)["input_ids"] == list(run.tokenizer.encode(TEXT.encode()))
    assert tok.eos_token_id == run.tokenizer.bos_id


def test_bpe_tokenizer_is_expressed_exactly_for_hugging_face():
    pytest.importorskip("tokenizers")
    from seqlab.data.tokenizer import BPETokenizer
    from seqlab.export import hf_tokenizer

    ours = BPETokenizer.train([structured_text(300).encode()], 320)
    theirs = hf_tokenizer(ours)
    for text in (TEXT, structured_text(40, seed=4), "\n\n\n  a\r\n\r\n\t b"):
        assert theirs.encode(text).ids == list(ours.encode(text.encode())), text
    assert theirs.token_to_id("<|endoftext|>") == ours.bos_id


def test_hf_export_refuses_a_non_transformer_run_in_one_line(runs, tmp_path, capsys):
    from seqlab.__main__ import main

    code = main(["export", str(runs["lstm"]), str(tmp_path / "x"), "--format", "hf"])
    err = capsys.readouterr().err
    assert code == 2 and "--format onnx" in err and len(err.strip().splitlines()) == 1
    code = main(["export", str(runs["lstm"]), str(tmp_path / "x"), "--format", "tflite"])
    assert code == 2 and "hf, onnx" in capsys.readouterr().err


def _onnx_session(path):
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
def test_onnx_logits_match_pytorch_for_any_batch_and_length(runs, tmp_path, arch):
    pytest.importorskip("onnx")
    from seqlab.__main__ import main

    run = load(runs[arch])
    assert main(["export", str(run.path), str(tmp_path / "m.onnx")]) == 0
    session = _onnx_session(tmp_path / "m.onnx")
    from seqlab.export import export

    export(run, tmp_path / "again.onnx")
    assert not run.model.training  # exporting leaves the run as it was
    for batch, length in [(1, 5), (3, 32)]:  # neither is the shape the graph was traced with
        idx = torch.randint(0, run.tokenizer.vocab_size, (batch, length), generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            expected, state = run.model(idx, run.model.init_state(batch, "cpu") if arch == "lstm" else None)
        feed = {"input_ids": idx.numpy()}
        if arch == "lstm":
            zeros = [s.transpose(0, 1).numpy() for s in run.model.init_state(batch, "cpu")]  # batch first
            feed.update(state_0=zeros[0], state_1=zeros[1])
        got = session.run(None, feed)
        np.testing.assert_allclose(got[0], expected.numpy(), atol=1e-4, rtol=1e-4)
        if arch == "lstm":  # the state out, h and c, each batch first
            np.testing.assert_allclose(got[1], state[0].transpose(0, 1).numpy(), atol=1e-5)
            np.testing.assert_allclose(got[2], state[1].transpose(0, 1).numpy(), atol=1e-5)


def test_onnx_lstm_state_carries_from_call_to_call(runs, tmp_path):
    pytest.importorskip("onnx")
    from seqlab.export import export

    run = load(runs["lstm"])
    session = _onnx_session(export(run, tmp_path / "lstm.onnx"))
    idx = torch.randint(0, 257, (2, 40), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        whole, _ = run.model(idx)
    state = [s.transpose(0, 1).numpy() for s in run.model.init_state(2, "cpu")]
    pieces = []
    for chunk in (idx[:, :15], idx[:, 15:]):
        logits, *state = session.run(None, {"input_ids": chunk.numpy(), "state_0": state[0], "state_1": state[1]})
        pieces.append(logits)
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), whole.numpy(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
def test_triton_repository_layout(runs, tmp_path, arch):
    pytest.importorskip("onnx")
    from seqlab.__main__ import main

    repo = tmp_path / "model_repository"
    assert main(["export", str(runs[arch]), str(repo), "--triton", "--name", f"seq-{arch}",
                 "--queue-timeout-us", "500000"]) == 0
    config = (repo / f"seq-{arch}" / "config.pbtxt").read_text()
    for needle in (f'name: "seq-{arch}"', 'backend: "onnxruntime"', "max_batch_size: 32", "dynamic_batching {",
                   "max_queue_delay_microseconds: 2000", "timeout_action: REJECT",
                   "default_timeout_microseconds: 500000"):
        assert needle in config, needle
    assert config.count("{") == config.count("}") and config.count("[") == config.count("]")
    session = _onnx_session(repo / f"seq-{arch}" / "1" / "model.onnx")
    for io in session.get_inputs() + session.get_outputs():  # every tensor declared, batch dim left to Triton
        assert f'name: "{io.name}"' in config
        dims = ", ".join(str(d if isinstance(d, int) else -1) for d in io.shape[1:])
        assert f'name: "{io.name}" data_type: TYPE_' in config and f"dims: [ {dims} ]" in config, (io.name, dims)
