"""`seqlab train --init DIR`: start from a Hugging Face GPT-2 checkpoint (a tiny random one made here)."""

import json

import numpy as np
import pytest
import torch

from conftest import structured_text, tiny_config

transformers = pytest.importorskip("transformers", reason="the [hf] extra (transformers) is part of [test]")


def make_tiny_gpt2(out_dir, safetensors: bool = True):
    """A randomly initialised GPT-2 (2 layers, 32 wide) with a byte-level BPE trained on the grammar."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([structured_text(200, seed=5)], trainer=trainer)
    eot = tok.token_to_id("<|endoftext|>")
    config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, n_positions=64, vocab_size=tok.get_vocab_size(),
                                     bos_token_id=eot, eos_token_id=eot)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config).eval()
    model.save_pretrained(out_dir)
    if not safetensors:  # an older checkpoint: a torch.save'd state dict (transformers 5 writes only safetensors)
        torch.save(model.state_dict(), out_dir / "pytorch_model.bin")
        (out_dir / "model.safetensors").unlink()
    tok.save(str(out_dir / "tokenizer.json"))
    return model, tok


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny-gpt2")
    model, tok = make_tiny_gpt2(out)
    return out, model, tok


def our_model(path):
    from seqlab.models import build_model
    from seqlab.pretrained import load_gpt2_weights, model_values

    model = build_model("transformer", {**model_values(path), "dropout": 0.0})
    load_gpt2_weights(model, path)
    return model.eval()


def test_logits_equal_hugging_face_after_init(gpt2):
    path, hf_model, _ = gpt2
    idx = torch.randint(0, hf_model.config.vocab_size, (3, 64), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, _ = our_model(path)(idx)
        theirs = hf_model(idx).logits
    assert torch.allclose(ours, theirs, atol=1e-5), (ours - theirs).abs().max()


def test_pytorch_model_bin_is_read_with_the_safe_loader(tmp_path, gpt2):
    hf_model, _ = make_tiny_gpt2(tmp_path, safetensors=False)
    assert (tmp_path / "pytorch_model.bin").exists() and not (tmp_path / "model.safetensors").exists()
    from seqlab.pretrained import read_weights

    _, source = read_weights(tmp_path)
    assert "weights_only=True" in source
    idx = torch.arange(40)[None] % hf_model.config.vocab_size
    with torch.no_grad():
        assert torch.allclose(our_model(tmp_path)(idx)[0], hf_model(idx).logits, atol=1e-5)


def test_checkpoint_tokenizer_matches_hugging_face_and_keeps_any_bytes(gpt2, tmp_path):
    from seqlab.data.tokenizer import load_tokenizer, save_tokenizer
    from seqlab.pretrained import checkpoint_tokenizer

    path, _, hf_tok = gpt2
    ours = checkpoint_tokenizer(path)
    text = structured_text(30, seed=9) + "  bob's   box\n\n  carl: 42 héllo\r\n\n"
    assert list(ours.encode(text.encode())) == hf_tok.encode(text).ids  # the tokens the model was trained on
    assert ours.bos_id == hf_tok.token_to_id("<|endoftext|>") and ours.token_bytes[ours.bos_id] == b""
    weird = b"\xff\xfe anna <|endoftext|> \x80\n\xc3(" + bytes(range(256))
    ids = ours.encode(weird)
    assert ours.decode(ids) == weird and ours.bos_id not in ids  # text never produces BOS
    save_tokenizer(ours, tmp_path)
    again = load_tokenizer(tmp_path)
    assert list(again.encode(weird)) == list(ids) and again.vocab_size == ours.vocab_size


def test_vocab_and_merges_files_work_too(gpt2, tmp_path):
    import shutil

    from seqlab.pretrained import checkpoint_tokenizer

    path, _, hf_tok = gpt2
    for name in ("config.json", "model.safetensors"):
        shutil.copy(path / name, tmp_path / name)
    hf_tok.model.save(str(tmp_path))  # vocab.json + merges.txt, as older GPT-2 checkpoints ship
    ours = checkpoint_tokenizer(tmp_path)
    text = structured_text(20, seed=3)
    assert list(ours.encode(text.encode())) == hf_tok.encode(text).ids


def test_fine_tuning_lowers_held_out_bpb_and_the_run_works_like_any_other(gpt2, corpus_file, tmp_path, capsys):
    from seqlab.__main__ import main
    from seqlab.generate import generate
    from seqlab.pretrained import load_gpt2_weights
    from seqlab.run import load
    from seqlab.train import train

    path, _, _ = gpt2
    cfg = tiny_config(corpus_file, "transformer", steps=60)
    run_dir = train(cfg, tmp_path / "ft", log=lambda *a: None, init=path)
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"]["n_layer"] == 2 and config["model"]["bias"] is True
    assert config["data"]["tokenizer"] == f"hf:{path.resolve()}"

    assert main(["eval", str(run_dir), "--json"]) == 0
    after = json.loads(capsys.readouterr().out)
    run = load(run_dir)
    load_gpt2_weights(run.model, path)  # the same run, put back to the checkpoint's weights
    from seqlab.evaluate import evaluate

    before = evaluate(run)
    # what fine-tuning changes is the network: its bits alone must fall. On this 2 KB grammar the count model
    # predicts most bytes, so the mixed figure moves by a few thousandths either way (0.3067 -> 0.3062 without
    # the word model, 0.3037 -> 0.3085 with it): it is checked only to gain from the mix.
    network = "bpb_network" if "bpb_network" in after else "bpb"  # the network alone, when a count model mixes in
    assert after[network] < 0.7 * before[network], (before[network], after[network])
    assert after["bpb"] <= after[network], (after["bpb"], after[network])
    run = load(run_dir)
    sample = generate(run, "anna", max_tokens=30, seed=1)[0]
    assert sample.tokens > 0 and isinstance(sample.text, str)

    from seqlab.export import export  # and back out to Hugging Face, fine-tuned

    out = export(run, tmp_path / "hf", "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    idx = torch.from_numpy(run.tokenizer.encode(b"bob takes the cat.\ncarl sees it.\n"))[None]
    with torch.no_grad():
        assert torch.allclose(hf(idx).logits, run.model(idx)[0], atol=1e-5)


def test_init_errors_are_one_line(tmp_path, corpus_file, capsys, gpt2):
    from seqlab.__main__ import main

    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["--init", str(empty)], "no config.json"),
        (["--init", str(tmp_path / "missing")], "no such directory"),
        (["--init", str(gpt2[0]), "--arch", "lstm"], "--arch lstm"),
        (["--init", str(gpt2[0]), "--tokenizer", "bpe:300"], "own tokenizer"),
    ]
    for extra, message in cases:
        code = main(["train", str(corpus_file), "--max-steps", "1", "--out", str(tmp_path / "r"), *extra])
        err = capsys.readouterr().err
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not np.any([(tmp_path / "r" / "config.json").exists()])
