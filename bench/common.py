"""Shared pieces of the benchmarks: train for a budget, measure generation, compare with compressors."""

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

import seqlab  # noqa: E402
from seqlab.compress.classical import available, conditional_bpb, held_out_bytes  # noqa: E402
from seqlab.config import RunConfig  # noqa: E402
from seqlab.data.corpus import read_documents  # noqa: E402
from seqlab.generate import generate  # noqa: E402
from seqlab.models import build_model  # noqa: E402
from seqlab.run import Run, read_metrics  # noqa: E402

from zpaq_model import one_model_zpaq  # noqa: E402


def final_record(run_dir) -> dict:
    return [r for r in read_metrics(run_dir) if r.get("event") == "final"][-1]


def compressor_rows(corpus: list[str], val_fraction: float = 0.1) -> dict[str, float]:
    train, val = held_out_bytes(read_documents(corpus), val_fraction)
    return conditional_bpb(train, val)


def ppmd(data: bytes) -> bytes:
    import pyppmd

    return pyppmd.compress(data, max_order=6, mem_size=256 << 20)


def _command(output: str, *argv: str):
    """A compressor run as a command on the file `f` in a temporary directory: the bytes it wrote to `output`."""
    def compress(data: bytes) -> bytes:
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "f").write_bytes(data)
            subprocess.run([*argv], cwd=tmp, check=True, capture_output=True)
            return (Path(tmp) / output).read_bytes()
    return compress


zpaq = _command("f.zpaq", "zpaq", "a", "f.zpaq", "f", "-m5", "-t1")
bzip3 = _command("f.bz3", "bzip3", "-e", "-k", "f")


def yardsticks() -> dict:
    """The classical compressors seqlab is measured against: gzip, bzip2, xz, zstd, and PPMd (pyppmd), zpaq -m5
    and bzip3 where installed (pip install pyppmd; apt-get install zpaq bzip3)."""
    found = dict(available())
    try:
        import pyppmd  # noqa: F401
        found["PPMd (order 6)"] = ppmd
    except ImportError:
        print("(no PPMd row: pip install pyppmd)")
    for name, fn, command in ("bzip3", bzip3, "bzip3"), ("zpaq -m5", zpaq, "zpaq"):
        if shutil.which(command):
            found[name] = fn
        else:
            print(f"(no {name} row: apt-get install {command})")
    return found


def compressor_blocks(corpus: list[str], val_fraction: float = 0.1, blocks: int = 16) -> dict[str, tuple]:
    """{compressor: (bits, bytes) per block of the held-out bytes}: each block's cost given the training bytes and
    the blocks before it, size(train + val[:end]) - size(train + val[:start]), ready for seqlab.stats.bootstrap_ratio.
    The sum is size(all) - size(train); a negative block says the compressor chose another model for the longer
    input (zpaq -m5 does: bench/zpaq_blocks.py), which the interval then shows. So zpaq -m5 has a second row, every
    prefix coded with the model -m5 picks for train + val (bench/zpaq_model.py): what it pays as an online coder."""
    import numpy as np

    train, val = held_out_bytes(read_documents(corpus), val_fraction)
    ends = np.unique(np.linspace(0, len(val), blocks + 1).astype(int))
    compressors = yardsticks()
    if "zpaq -m5" in compressors:
        one_model = one_model_zpaq(train + val)
        if one_model is not None:
            compressors[ONE_MODEL] = one_model
    return {name: (8.0 * block_costs(fn, train, val, ends), np.diff(ends).astype(float))
            for name, fn in compressors.items()}


ONE_MODEL = "zpaq -m5, one model (an online coder's cost: bench/zpaq_model.py)"


def block_costs(compress, train: bytes, val: bytes, ends):
    """Bytes each block of `val` adds to compress(train + val[:end]): the block between each pair of `ends`
    (held-out offsets, the first 0, the last len(val))."""
    import numpy as np

    return np.diff([len(compress(train + val[:end])) for end in ends])


def generation_speed(run: Run, tokens: int = 500, repeats: int = 2) -> float:
    """Tokens/s of one stream of `tokens` tokens (best of `repeats`, after a warm-up)."""
    generate(run, "", max_tokens=20, seed=0)
    best = 0.0
    for i in range(repeats):
        t0 = time.perf_counter()
        sample = generate(run, "", max_tokens=tokens, seed=i, stop=None)[0]
        best = max(best, sample.tokens / (time.perf_counter() - t0))
    return best


def held_out_bits(run, block_tokens: int = 4096):
    """The run's held-out split scored as `seqlab eval` scores it (one stream, the count model mixed in), summed
    over blocks of `block_tokens` consecutive tokens: (bits, the network's bits alone, bytes), one entry per block,
    ready for seqlab.stats.bootstrap_ratio and paired_difference (the same blocks for runs of one corpus)."""
    import numpy as np

    from seqlab.evaluate import held_out_data
    from seqlab.models.style import for_document
    from seqlab.scoring import mixing_session, run_token_bits
    from seqlab.stats import block_sums

    lengths = np.array([len(b) for b in run.tokenizer.token_bytes])
    session, parts = mixing_session(run), []
    for h in held_out_data(run).held_out:
        with for_document(run.model, h.name):
            bits, network = run_token_bits(run, h.tokens, h.n_context, session)
        parts.append((bits, network, lengths[h.scored]))
    return tuple(block_sums(np.concatenate(column), block_tokens) for column in zip(*parts))


def untrained_run(arch: str, model: dict | None = None) -> Run:
    """A default-size model with random weights: generation speed does not depend on training."""
    from seqlab.data.tokenizer import ByteTokenizer

    tok = ByteTokenizer()
    cfg = RunConfig(arch=arch, model=dict(model or {}))
    net = build_model(arch, {**cfg.model, "vocab_size": tok.vocab_size}).eval()
    return Run(Path("."), cfg, tok, net, torch.device("cpu"))


def print_table(title: str, header: list[str], rows: list[list]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = [f"## {title}", "", "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(str(x).ljust(w) for x, w in zip(row, widths)) + " |" for row in rows]
    text = "\n".join(lines)
    print(text, flush=True)
    return text


__all__ = ["seqlab", "final_record", "compressor_rows", "compressor_blocks", "block_costs", "yardsticks",
           "generation_speed", "held_out_bits", "untrained_run", "print_table"]
