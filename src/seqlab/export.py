"""`seqlab export`: a run as a Hugging Face GPT-2 folder, or as ONNX (optionally a Triton model repository).

    seqlab export runs/latest --format hf hf-model/          # AutoModelForCausalLM.from_pretrained("hf-model")
    seqlab export runs/latest --format onnx model.onnx       # onnxruntime; dynamic batch and sequence axes
    seqlab export runs/latest --format onnx repo/ --triton   # repo/<name>/1/model.onnx + config.pbtxt

ONNX graph: input_ids (batch, sequence) int64 -> logits (batch, sequence, vocab) float32.
A model that carries state (the LSTM) also takes state_0.. and returns next_state_0..,
batch first, so a client carries it from call to call (and Triton can batch them).
"""

import json
import warnings
from pathlib import Path

import torch
from torch import nn

from .errors import SeqlabError
from .options import integer, one_of, output_path, plain_name, run_dir
from .progress import bar

FORMATS = ("hf", "onnx")
OPSET = 17


def export(run, out, fmt: str = "onnx", triton: bool = False, name: str | None = None,
           max_batch_size: int = 32, queue_delay_us: int = 2000, queue_timeout_us: int = 1_000_000) -> Path:
    """Write `run` (a seqlab.load()ed run) to `out`; returns the main file or folder written."""
    out = Path(out)
    if fmt not in FORMATS:
        raise SeqlabError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if fmt == "hf":
        if triton:
            raise SeqlabError("--triton serves ONNX; use it with --format onnx")
        return export_hf(run, out)
    if not triton:
        return export_onnx(run, out)
    name = name or run.path.resolve().name
    model_dir = out / name
    export_onnx(run, model_dir / "1" / "model.onnx")
    text = triton_config(run, name, max_batch_size, queue_delay_us, queue_timeout_us)
    (model_dir / "config.pbtxt").write_text(text)
    return model_dir


# ---- Hugging Face -----------------------------------------------------------------------------------------------

def export_hf(run, out_dir: Path) -> Path:
    from safetensors.torch import save_file

    from .pretrained import to_gpt2_state

    if run.config.arch != "transformer":
        raise SeqlabError(f"--format hf writes a GPT-2 model; this run is a {run.config.arch} "
                          f"(use --format onnx for it)")
    if run.model.config.softmax != "full":
        raise SeqlabError("--format hf writes GPT-2, whose output layer is a full softmax; this run was trained "
                          "with --softmax adaptive (use --format onnx for it)")
    if run.config.style.by:
        raise SeqlabError("--format hf writes GPT-2, which has no style input; this run was trained with "
                          "--style-by (use --format onnx, which keeps the mean style)")
    c = run.model.config
    out_dir.mkdir(parents=True, exist_ok=True)
    bos = run.tokenizer.bos_id
    config = {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": c.vocab_size,
        "n_positions": c.block_size, "n_embd": c.n_embd, "n_layer": c.n_layer, "n_head": c.n_head, "n_inner": None,
        "activation_function": {"gelu": "gelu_new", "gelu_exact": "gelu"}[c.activation],
        "layer_norm_epsilon": c.layer_norm_eps, "resid_pdrop": c.dropout, "embd_pdrop": c.dropout,
        "attn_pdrop": c.dropout, "scale_attn_weights": True, "tie_word_embeddings": True, "use_cache": True,
        "bos_token_id": bos, "eos_token_id": bos, "initializer_range": 0.02, "torch_dtype": "float32",
    }
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file(to_gpt2_state(run.model), str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    write_hf_tokenizer(run.tokenizer, out_dir, c.block_size)
    return out_dir


def hf_tokenizer(tokenizer):
    """The run's tokenizer as a `tokenizers.Tokenizer` that reads raw text; BOS is <|endoftext|>.

    Exact for any valid UTF-8 text: byte-level pieces, our split rules, and the
    line-by-line encoding of seqlab's BPE expressed as pre-tokenizers.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

    from .data.byte_chars import BYTE_TO_CHAR
    from .data.tokenizer import _split_pattern

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    if tokenizer.kind == "hf":
        return tokenizer.hf
    if tokenizer.kind == "byte":
        tok = Tokenizer(models.BPE(vocab={BYTE_TO_CHAR[b]: b for b in range(256)}, merges=[]))
        tok.pre_tokenizer = byte_level
    else:
        tok = Tokenizer.from_str(tokenizer.hf.to_str())
        newline, cr = BYTE_TO_CHAR[10], BYTE_TO_CHAR[13]
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            byte_level,  # bytes -> GPT-2's printable characters, which our rules are written over
            pre_tokenizers.Split(Regex(f"{newline}|{cr}(?!{newline})"), behavior="merged_with_previous"),  # lines
            pre_tokenizers.Split(Regex(_split_pattern()), behavior="isolated"),
        ])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken("<|endoftext|>", special=True)])
    assert tok.token_to_id("<|endoftext|>") == tokenizer.bos_id
    return tok


def write_hf_tokenizer(tokenizer, out_dir: Path, max_length: int) -> None:
    hf_tokenizer(tokenizer).save(str(out_dir / "tokenizer.json"))
    special = "<|endoftext|>"
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": special, "eos_token": special,
              "unk_token": None, "model_max_length": max_length, "add_prefix_space": False}
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


# ---- ONNX -------------------------------------------------------------------------------------------------------

class _Logits(nn.Module):
    """input_ids -> logits, for models that need no state between calls."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, idx):
        return self.model(idx)[0]


class _Stateful(nn.Module):
    """(input_ids, state batch-first...) -> (logits, next state batch-first...)."""

    def __init__(self, model, batch_dims: list[int]):
        super().__init__()
        self.model, self.batch_dims = model, batch_dims

    def forward(self, idx, *state):
        state = tuple(s.movedim(0, d) for s, d in zip(state, self.batch_dims))
        logits, new = self.model(idx, state)
        return (logits, *(s.movedim(d, 0) for s, d in zip(new, self.batch_dims)))


def onnx_signature(model) -> tuple[nn.Module, list[str], list[str], list[int]]:
    """(module to export, input names, output names, batch dim of each state tensor in the model's layout)."""
    if not model.carries_state:
        return _Logits(model).eval(), ["input_ids"], ["logits"], []  # eval: the exporter restores this mode
    from .models.base import state_batch_dims

    dims = state_batch_dims(model)
    names = [f"state_{i}" for i in range(len(dims))]
    return _Stateful(model, dims).eval(), ["input_ids", *names], ["logits", *[f"next_{n}" for n in names]], dims


def example_inputs(model, batch: int = 2, length: int = 8) -> tuple:
    idx = torch.randint(0, model.config.vocab_size, (batch, length), generator=torch.Generator().manual_seed(0))
    if not model.carries_state:
        return (idx,)
    _, _, _, dims = onnx_signature(model)
    state = model.init_state(batch, "cpu")
    return (idx, *(s.movedim(d, 0) for s, d in zip(state, dims)))  # a fresh state: valid for every model


def export_onnx(run, path: Path) -> Path:
    model = run.model.float().cpu().eval()
    module, inputs, outputs, _ = onnx_signature(model)
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "logits": {0: "batch", 1: "sequence"}}
    axes.update({n: {0: "batch"} for n in inputs[1:] + outputs[1:]})
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import onnx  # noqa: F401  (the exporter needs it)
    except ImportError:
        raise SeqlabError("ONNX export needs the onnx package: pip install 'seqlab[interop]'") from None
    progress = bar(total=2, desc="export: tracing to ONNX", unit="step", bar_format="{desc} {n}/{total} {elapsed}")
    with progress, torch.no_grad(), warnings.catch_warnings():
        # The trace keeps the shape checks as constants, and our state *is* an input: both warnings are moot.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size other than 1")
        try:
            torch.onnx.export(module, example_inputs(model), str(path), input_names=inputs, output_names=outputs,
                              dynamic_axes=axes, opset_version=OPSET, dynamo=False)
        except Exception as e:  # an op the exporter cannot express (e.g. a custom autograd Function)
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise SeqlabError(f"cannot export this {run.config.arch} model to ONNX: {first}") from None
        progress.set_description("export: checking with onnxruntime")
        progress.update()
        error = verify_onnx(model, path)
    if error:
        path.unlink()
        raise SeqlabError(f"the {run.config.arch} model does not export to ONNX faithfully ({error}); "
                          f"transformer, lstm and conv runs do")
    return path


def verify_onnx(model, path: Path, tolerance: float = 1e-3) -> str | None:
    """Run the graph under onnxruntime on a shape it was not traced with; None when it matches PyTorch."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None  # nothing to check with; the export itself succeeded
    length = min(model.max_context or 40, 40)
    inputs = example_inputs(model, batch=3, length=length)
    _, names, _, _ = onnx_signature(model)
    module = onnx_signature(model)[0]
    with torch.no_grad():
        expected = module(*inputs)
    expected = expected if isinstance(expected, tuple) else (expected,)
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = session.run(None, {n: t.numpy() for n, t in zip(names, inputs)})
    except Exception as e:
        return f"onnxruntime: {(str(e).strip().splitlines() or [type(e).__name__])[0][:200]}"
    for g, e in zip(got, expected):
        if tuple(g.shape) != tuple(e.shape):  # e.g. a Python loop over time steps, unrolled by the trace
            return f"output shape {tuple(g.shape)} where PyTorch gives {tuple(e.shape)}"
    worst = max(float((torch.from_numpy(g) - e).abs().max()) for g, e in zip(got, expected))
    return None if worst <= tolerance else f"logits differ by up to {worst:.3g}"


def triton_config(run, name: str, max_batch_size: int, queue_delay_us: int, queue_timeout_us: int) -> str:
    """config.pbtxt for Triton's onnxruntime backend: dims leave out the batch, which Triton adds."""
    model = run.model
    _, inputs, outputs, dims = onnx_signature(model)
    shapes = [list(s.shape) for s in model.init_state(1, "cpu")] if dims else []
    state_dims = [[n for i, n in enumerate(shape) if i != d] for shape, d in zip(shapes, dims)]

    def tensor(n, dtype, shape):
        return f'  {{ name: "{n}" data_type: {dtype} dims: [ {", ".join(str(s) for s in shape)} ] }}'

    ins = [tensor("input_ids", "TYPE_INT64", [-1])] + [tensor(n, "TYPE_FP32", s) for n, s in zip(inputs[1:],
                                                                                              state_dims)]
    outs = [tensor("logits", "TYPE_FP32", [-1, model.config.vocab_size])] + \
        [tensor(n, "TYPE_FP32", s) for n, s in zip(outputs[1:], state_dims)]
    sep = ",\n"
    return f"""name: "{name}"
backend: "onnxruntime"
max_batch_size: {max_batch_size}
input [
{sep.join(ins)}
]
output [
{sep.join(outs)}
]
dynamic_batching {{
  max_queue_delay_microseconds: {queue_delay_us}
  default_queue_policy {{
    timeout_action: REJECT
    default_timeout_microseconds: {queue_timeout_us}
    allow_timeout_override: true
  }}
}}
instance_group [ {{ kind: KIND_AUTO count: 1 }} ]
"""


# ---- CLI --------------------------------------------------------------------------------------------------------

def add_cli(sub) -> None:
    p = sub.add_parser("export", help="write a run as a Hugging Face model or ONNX (optionally for Triton)")
    p.add_argument("run", type=run_dir)
    p.add_argument("out", type=output_path, help="output folder (hf, --triton) or .onnx file")
    p.add_argument("--format", default="onnx", type=one_of(*FORMATS), help="hf: transformer runs; default onnx")
    p.add_argument("--triton", action="store_true", help="write a Triton model repository: OUT/NAME/1/model.onnx")
    p.add_argument("--name", type=plain_name, help="Triton model name (default: the run folder's name)")
    p.add_argument("--max-batch-size", type=integer(min=1), default=32, help="Triton: largest dynamic batch")
    p.add_argument("--queue-delay-us", type=integer(min=0), default=2000, help="Triton: wait this long to fill a batch")
    p.add_argument("--queue-timeout-us", type=integer(min=1), default=1_000_000,
                   help="Triton: reject a request that waited this long in the queue")
    p.set_defaults(func=cli)


def cli(args) -> None:
    from .run import load, require_forward

    run = load(args.run, device="cpu")
    require_forward(run.path, run.config, "export")
    out = export(run, args.out, args.format, args.triton, args.name, args.max_batch_size, args.queue_delay_us,
                 args.queue_timeout_us)
    print(f"wrote {out}")
