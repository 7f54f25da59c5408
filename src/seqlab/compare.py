"""`seqlab compare`: several architectures, one corpus, one wall-clock budget, one table.

    seqlab compare books/ --archs lstm,transformer --budget 5m --out runs/cmp

Each architecture trains with `seqlab.train` into DIR/<arch>/, one after the
other, with the same threads, seed and training settings. The table holds the
full held-out bits per byte (the run's final evaluation), parameters, training
tokens/s (tokens over wall-clock seconds, periodic evaluations included),
generation tokens/s (one stream, one token at a time), and as yardsticks the
classical compressors' conditional bits per byte of the same held-out bytes.
Saved as DIR/compare.md and DIR/curves.png.
"""

import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .config import RunConfig, apply_override, option_for
from .errors import SeqlabError
from .models import ARCHS, model_config
from .options import budget, corpus_path, integer, key_value, names, output_dir
from .progress import bar, write
from .run import CONFIG_FILE, load, read_metrics

GEN_TOKENS = 200


@dataclass
class Row:
    name: str
    bpb: float
    bpb_network: float | None = None  # the network alone, without the count model mixed in
    params: int | None = None
    train_tokens_per_s: float | None = None
    gen_tokens_per_s: float | None = None
    steps: int | None = None
    seconds: float | None = None


def compare(base: RunConfig, archs: list[str], out, models: dict | None = None, log=write) -> list[Row]:
    """Train every arch in `archs` with `base`'s data and training settings; returns the table rows.

    models: {arch: model config values} (defaults where not given).
    """
    from .train import train

    out, models = Path(out), models or {}
    for arch in archs:
        model_config(arch, models.get(arch, {}))  # bad names or keys fail before anything trains
        if (out / arch / CONFIG_FILE).exists():
            raise SeqlabError(f"{out / arch} already holds a run; pick another --out")
    base = copy.deepcopy(base)
    base.train.threads = base.train.threads or torch.get_num_threads()  # the same for every arch
    rows = []
    with bar(total=len(archs), desc="compare", unit="arch") as progress:  # each run's training line shows below
        for arch in archs:
            cfg = copy.deepcopy(base)
            cfg.arch, cfg.model = arch, dict(models.get(arch, {}))
            log(f"── {arch} ──")
            run_dir = train(cfg, out / arch, log=lambda msg: None)
            rows.append(run_row(arch, run_dir))
            log(f"{arch}: {rows[-1].bpb:.4f} bits per byte held out")
            progress.update()
    rows += compressor_rows(base)
    write_report(out, base, rows)
    return rows


def run_row(arch: str, run_dir: Path) -> Row:
    records = read_metrics(run_dir)
    start = next(r for r in records if r.get("event") == "start")
    final = [r for r in records if r.get("event") == "final"][-1]
    return Row(arch, final["val_bpb"], final.get("val_bpb_network"), start["params"],
               final["tokens"] / max(final["elapsed"], 1e-9),
               generation_speed(load(run_dir)), final["step"], final["elapsed"])


@torch.no_grad()
def generation_speed(run, n_tokens: int = GEN_TOKENS, seed: int = 0) -> float:
    """Tokens/s of one sampled stream, one step per token (after a short warm-up)."""
    model, device = run.model, run.device
    generator = torch.Generator().manual_seed(seed)

    def sample(n: int) -> None:
        logits, state = model(torch.tensor([[run.tokenizer.bos_id]], device=device), model.init_state(1, device))
        logits = logits[:, -1]
        for _ in range(n):
            probs = torch.softmax(logits.float(), dim=-1).cpu()
            nxt = torch.multinomial(probs, 1, generator=generator)[:, 0].to(device)
            logits, state = model.step(nxt, state)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    sample(5)
    t0 = time.perf_counter()
    sample(n_tokens)
    return n_tokens / (time.perf_counter() - t0)


def corpus_bytes(data_cfg) -> tuple[bytes, bytes]:
    """The training and held-out bytes of a corpus, split as training splits it."""
    from .compress.classical import held_out_bytes
    from .data.corpus import default_corpus_path, read_documents
    from .data.tasks import task_documents

    task = task_documents(data_cfg)
    if task:
        return b"".join(d.data for d in task[0]), b"".join(d.data for d in task[1])
    docs = read_documents(data_cfg.paths or [default_corpus_path()], data_cfg.text_field)
    if data_cfg.val_paths:
        val = read_documents(data_cfg.val_paths, data_cfg.text_field)
        return b"".join(d.data for d in docs), b"".join(d.data for d in val)
    return held_out_bytes(docs, data_cfg.val_fraction)


def compressor_rows(cfg: RunConfig) -> list[Row]:
    from .compress.classical import conditional_bpb

    train_bytes, val_bytes = corpus_bytes(cfg.data)
    return [Row(f"{name} (conditional)", bpb) for name, bpb in conditional_bpb(train_bytes, val_bytes).items()]


def _cell(value, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def format_table(rows: list[Row]) -> str:
    lines = ["| model | held-out bits/byte | network alone | parameters | train tokens/s | generation tokens/s "
             "| steps | seconds |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r.name} | {r.bpb:.4f} | {_cell(r.bpb_network, '.4f')} | {_cell(r.params, ',')} | "
                     f"{_cell(r.train_tokens_per_s, ',.0f')} | "
                     f"{_cell(r.gen_tokens_per_s, ',.0f')} | {_cell(r.steps, ',')} | {_cell(r.seconds, '.0f')} |")
    return "\n".join(lines)


def write_report(out: Path, cfg: RunConfig, rows: list[Row]) -> None:
    clock = f"{cfg.train.budget_seconds:g}s budget" if cfg.train.budget_seconds > 0 else \
        f"{cfg.train.max_steps} steps"
    head = (f"# seqlab compare\n\ncorpus: {', '.join(cfg.data.paths) or '(bundled tinyshakespeare)'}; "
            f"{clock} each, {cfg.train.threads} thread(s), device {cfg.train.device}, seed {cfg.train.seed}.\n"
            f"Held-out bits/byte: the full held-out split, every byte scored once. Training tokens/s include the "
            f"periodic evaluations. Generation: one stream of {GEN_TOKENS} sampled tokens. Compressors: "
            f"size(train + held-out) − size(train) of the same bytes.\n\n")
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.md").write_text(head + format_table(rows) + "\n")
    plot_curves(out, [r.name for r in rows if r.params is not None], rows)


def plot_curves(out: Path, archs: list[str], rows: list[Row]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=110)
    for arch in archs:
        evals = [r for r in read_metrics(out / arch) if r.get("event") == "eval"]
        ax.plot([r["elapsed"] for r in evals], [r["val_bpb"] for r in evals], marker=".", label=arch)
    for r in rows:
        if r.params is None:
            ax.axhline(r.bpb, ls="--", lw=0.8, color="#888888")
            ax.annotate(r.name.replace(" (conditional)", ""), (0, r.bpb), fontsize=7, color="#666666",
                        xycoords=("axes fraction", "data"), va="bottom")
    ax.set_xlabel("wall-clock seconds")
    ax.set_ylabel("held-out bits per byte (eval subset)")
    ax.set_title("seqlab compare (dashed: compressors)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "curves.png")
    plt.close(fig)
    return out / "curves.png"


def add_cli(sub) -> None:
    p = sub.add_parser("compare", help="train several architectures on one corpus for one budget, then a table",
                       description="Train each architecture for the same budget, sequentially, and compare.")
    p.add_argument("corpus", nargs="*", type=corpus_path,
                   help="training data, as for `seqlab train` (default: bundled corpus)")
    p.add_argument("--archs", default=",".join(ARCHS), type=names(*ARCHS), help="default: all")
    clock_group = p.add_mutually_exclusive_group()
    clock_group.add_argument("--budget", default="5m", type=budget, help="training time per arch (default 5m)")
    clock_group.add_argument("--max-steps", type=integer(min=1), help="train each for exactly N steps instead")
    p.add_argument("--out", type=output_dir, help="directory for the runs and the report (default runs/compare-DATE)")
    p.add_argument("--threads", type=option_for("train.threads"), help="CPU threads for every run (default 0: all)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", type=key_value,
                   help="train.KEY=VALUE or data.KEY=VALUE for every run, ARCH.KEY=VALUE for one model "
                        "(e.g. --set lstm.n_hidden=256)")
    p.set_defaults(func=cli)


def config_from_args(args, archs: list[str]) -> tuple[RunConfig, dict]:
    from .config import DataConfig

    cfg, models = RunConfig(data=DataConfig(paths=list(args.corpus))), {}
    if args.max_steps is not None:
        cfg.train.max_steps = args.max_steps
    else:
        cfg.train.budget_seconds = args.budget
    if args.threads is not None:
        cfg.train.threads = args.threads
    for item in args.set:
        key, _, value = item.partition("=")
        head, _, rest = key.partition(".")
        if not rest:
            raise SeqlabError(f"--set expects KEY=VALUE with KEY like train.lr or lstm.n_hidden, got {item!r}")
        if head in ("train", "data"):
            apply_override(cfg, key, value)
        elif head in archs:
            model = model_config(head, models.get(head, {}))
            apply_override(model, rest, value, head)  # unknown keys and bad values: one-line errors
            models[head] = asdict(model)
        else:
            raise SeqlabError(f"--set {item!r}: KEY must start with train., data. or an arch of --archs "
                              f"({', '.join(archs)})")
    return cfg, models


def cli(args) -> None:
    archs = args.archs
    base, models = config_from_args(args, archs)
    out = Path(args.out) if args.out else Path("runs") / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
    rows = compare(base, archs, out, models)
    print(format_table(rows))
    print(f"saved {out / 'compare.md'} and {out / 'curves.png'}")
