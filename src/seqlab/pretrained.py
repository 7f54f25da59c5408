"""Hugging Face GPT-2 checkpoints in and out: `seqlab train --init DIR` and `seqlab export --format hf`.

Our transformer is GPT-2's architecture (learned positions, pre-norm LayerNorm,
tanh GELU, tied embeddings), so weights map one to one: names lose or gain the
`transformer.` prefix, and GPT-2's Conv1D weights, stored (in, out), are the
transpose of nn.Linear's (out, in). Weights are read from model.safetensors, or
else from pytorch_model.bin with torch.load(weights_only=True), PyTorch's safe
loader that accepts only tensors and plain containers; nothing is unpickled freely.
"""

import json
import re
from pathlib import Path

import torch

from .errors import SeqlabError
from .options import HF_HOW_TO

CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
BUFFERS = re.compile(r"h\.\d+\.attn\.(bias|masked_bias)")  # causal-mask buffers older GPT-2 files carry
ACTIVATIONS = {"gelu_new": "gelu", "gelu_pytorch_tanh": "gelu", "gelu_fast": "gelu", "gelu": "gelu_exact"}
FINETUNE_LR = 1e-4  # default --lr with --init (from scratch it is 3e-3)
HOW_TO = HF_HOW_TO


def read_gpt2_config(path) -> dict:
    """config.json of a GPT-2-family checkpoint, checked for what our transformer can express."""
    path = Path(path)
    if not path.is_dir():
        raise SeqlabError(f"--init {path}: no such directory; give {HOW_TO}")
    try:
        hf = json.loads((path / "config.json").read_text())
    except FileNotFoundError:
        raise SeqlabError(f"--init {path}: not a Hugging Face checkpoint (no config.json); give {HOW_TO}") from None
    except (OSError, json.JSONDecodeError) as e:
        raise SeqlabError(f"--init {path}: cannot read config.json: {e}") from None
    if hf.get("model_type") != "gpt2":
        raise SeqlabError(f"--init {path}: model_type is {hf.get('model_type')!r}; only GPT-2-family "
                          f"checkpoints (model_type 'gpt2': gpt2, distilgpt2, gpt2-medium, ...) are supported")
    unsupported = {
        "activation_function": hf.get("activation_function", "gelu_new") not in ACTIVATIONS,
        "n_inner": hf.get("n_inner") not in (None, 4 * hf.get("n_embd", 0)),
        "scale_attn_by_inverse_layer_idx": hf.get("scale_attn_by_inverse_layer_idx", False),
        "scale_attn_weights": not hf.get("scale_attn_weights", True),
        "tie_word_embeddings": not hf.get("tie_word_embeddings", True),
        "add_cross_attention": hf.get("add_cross_attention", False),
    }
    bad = [k for k, v in unsupported.items() if v]
    if bad:
        raise SeqlabError(f"--init {path}: config.json sets {bad[0]}={hf.get(bad[0])!r}, which seqlab's "
                          f"transformer cannot express; use a standard GPT-2 checkpoint")
    return hf


def model_values(path) -> dict:
    """The TransformerConfig fields a checkpoint fixes (dropout stays the run's own choice)."""
    hf = read_gpt2_config(path)
    return {"vocab_size": hf["vocab_size"], "n_layer": hf["n_layer"], "n_head": hf["n_head"],
            "n_embd": hf["n_embd"], "block_size": hf["n_positions"], "bias": True,
            "layer_norm_eps": hf.get("layer_norm_epsilon", 1e-5),
            "activation": ACTIVATIONS[hf.get("activation_function", "gelu_new")]}


def apply_init(cfg, path) -> None:
    """Point a RunConfig at a checkpoint: transformer shaped like it, the checkpoint's tokenizer."""
    path = Path(path).resolve()
    values = model_values(path)
    spec = f"hf:{path}"
    if cfg.arch != "transformer":
        raise SeqlabError(f"--init loads a GPT-2 checkpoint into the transformer; --arch {cfg.arch} cannot take it")
    if cfg.data.tokenizer not in ("byte", spec):  # "byte" is the default, so it reads as "not chosen"
        raise SeqlabError(f"--init uses the checkpoint's own tokenizer; leave out --tokenizer "
                          f"(got {cfg.data.tokenizer!r})")
    cfg.data.tokenizer = spec
    cfg.model = {**cfg.model, **values}


def checkpoint_tokenizer(path):
    """The checkpoint's own tokenizer, sized to its model, BOS = its end-of-text token."""
    from .data.hf_tokenizer import HFTokenizer

    hf = read_gpt2_config(path)
    return HFTokenizer.from_pretrained(path, hf["vocab_size"], hf.get("eos_token_id", hf.get("bos_token_id")))


def read_weights(path) -> tuple[dict, str]:
    """(GPT-2 state dict, the file(s) it came from), without unpickling anything."""
    from safetensors.torch import load_file

    path = Path(path)
    if (path / "model.safetensors").exists():
        return load_file(str(path / "model.safetensors")), "model.safetensors"
    index = path / "model.safetensors.index.json"
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        state = {}
        for shard in shards:
            state.update(load_file(str(path / shard)))
        return state, f"{len(shards)} safetensors shards"
    if (path / "pytorch_model.bin").exists():
        try:
            state = torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
        except Exception as e:  # the safe loader refuses files that need arbitrary code
            raise SeqlabError(f"--init {path}: pytorch_model.bin cannot be read safely ({type(e).__name__}); "
                              f"convert it to model.safetensors") from None
        return state, "pytorch_model.bin (read with torch.load(weights_only=True), the safe loader)"
    raise SeqlabError(f"--init {path}: no weights (model.safetensors or pytorch_model.bin); give {HOW_TO}")


def from_gpt2_state(hf_state: dict) -> dict:
    """GPT-2 names and layouts -> ours (lm_head is tied to wte, so it is left out)."""
    state = {}
    for name, t in hf_state.items():
        name = name.removeprefix("transformer.")
        if name == "lm_head.weight" or BUFFERS.fullmatch(name):
            continue
        state[name] = t.t().contiguous() if name.endswith(CONV1D) else t
    return state


def to_gpt2_state(model) -> dict:
    """Ours -> GPT-2's GPT2LMHeadModel names and layouts. Missing biases (bias=False) are zeros: exact."""
    state = {}
    for name, t in model.state_dict().items():
        if name == "lm_head.weight":
            continue  # tied to wte; transformers re-ties it on load
        t = t.detach().float().cpu()
        state[f"transformer.{name}"] = t.t().contiguous() if name.endswith(CONV1D) else t.contiguous()
    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.LayerNorm)) and name != "lm_head":
            key = f"transformer.{name}.bias"
            if key not in state:
                state[key] = torch.zeros(module.weight.shape[0])
    return state


def load_gpt2_weights(model, path) -> str:
    """Copy a checkpoint's weights into our transformer (built with model_values(path)); returns the source."""
    hf_state, source = read_weights(path)
    state = {k: v.float() for k, v in from_gpt2_state(hf_state).items()}
    if "wte.weight" in state:
        state["lm_head.weight"] = state["wte.weight"]
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        detail = " ".join(str(e).split())[:300]
        raise SeqlabError(f"--init {path}: the weights do not fit config.json: {detail}") from None
    return source
