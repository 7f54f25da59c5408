"""`seqlab compare`: several architectures, one corpus, one wall-clock budget, one table.

    seqlab compare books/ --archs lstm,transformer --budget 5m --out runs/cmp

Each architecture trains with `seqlab.train` into DIR/<arch>/, one after the
other, with the same threads, seed and training settings. The table holds the
full held-out bits per byte (the run's final evaluation), parameters, training
tokens/s (tokens over wall-clock seconds, periodic evaluations included),
generation tokens/s (one stream, one token at a time), and as yardsticks the
classical compressors' conditional bits per byte of the same held-out bytes.
Saved as DIR/compare.md and DIR/curves.png.

Every model row carries its 95% block-bootstrap interval over the held-out bytes
and its difference from the best row on the same bytes with a paired interval;
a row whose paired interval holds 0 is marked tied with the best. With --seeds N
each architecture trains N seeds (DIR/<arch>/seed-SEED): the row gives the mean
over seeds, its bootstrap interval (of the seeds' mean), and beside it the spread
between seeds (training randomness, a different uncertainty; see seeds.py).
"""

import copy
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .config import RunConfig, apply_override, option_for
from .errors import SeqlabError
from .intervals import bpb_interval, mean_over_runs, paired
from .models import ARCHS, model_config
from .options import budget, corpus_path, integer, key_value, names, output_dir
from .progress import bar, write
from .run import load, read_metrics
from .seeds import check_free, seed_dir, seeded
from .stats import seed_spread

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
    low: float | None = None  # 95% block bootstrap over the held-out bytes
    high: float | None = None
    vs_best: dict | None = None  # this row minus the best row on the same bytes: difference, low, high, verdict
    seeds: dict | None = None  # the spread between seeds (stats.seed_spread) when trained with several
    runs: list[Path] = field(default_factory=list)


def compare(base: RunConfig, archs: list[str], out, models: dict | None = None, log=write,
            seeds: int = 1) -> list[Row]:
    """Train every arch in `archs` with `base`'s data and training settings; returns the table rows.

    models: {arch: model config values} (defaults where not given). seeds: runs per arch, seeds
    base.train.seed, +1, ... (with more than one, into DIR/<arch>/seed-SEED).
    """
    from .train import train

    out, models = Path(out), models or {}
    dirs = {arch: [out / arch] if seeds == 1 else [seed_dir(out / arch, base.train.seed + i) for i in range(seeds)]
            for arch in archs}
    for arch in archs:
        model_config(arch, models.get(arch, {}))  # bad names or keys fail before anything trains
        check_free(dirs[arch])
    base = copy.deepcopy(base)
    base.train.threads = base.train.threads or torch.get_num_threads()  # the same for every arch
    rows, per_byte = [], {}
    with bar(total=len(archs) * seeds, desc="compare", unit="run") as progress:  # each run's training line below
        for arch in archs:
            cfg = copy.deepcopy(base)
            cfg.arch, cfg.model = arch, dict(models.get(arch, {}))
            log(f"── {arch} ──")
            for c, run_dir in zip(seeded(cfg, seeds), dirs[arch]):
                train(c, run_dir, log=lambda msg: None)
                progress.update()
            rows.append(run_row(arch, dirs[arch]))
            per_byte[arch] = held_out_bits(dirs[arch])
            log(f"{arch}: {rows[-1].bpb:.4f} bits per byte held out")
    add_intervals(rows, per_byte)
    rows += compressor_rows(base)
    write_report(out, base, rows)
    return rows


def run_row(arch: str, run_dirs: list[Path]) -> Row:
    """One arch's row: the mean over its runs (seeds) of each figure; generation speed of the first run."""
    records = read_metrics(run_dirs[0])
    start = next(r for r in records if r.get("event") == "start")
    finals = [[r for r in read_metrics(d) if r.get("event") == "final"][-1] for d in run_dirs]

    def mean(key):
        values = [f.get(key) for f in finals]
        return None if None in values else sum(values) / len(values)

    return Row(arch, mean("val_bpb"), mean("val_bpb_network"), start["params"],
               sum(f["tokens"] / max(f["elapsed"], 1e-9) for f in finals) / len(finals),
               generation_speed(load(run_dirs[0])), round(mean("step")), mean("elapsed"),
               seeds=seed_spread([f["val_bpb"] for f in finals]) if len(finals) > 1 else None, runs=list(run_dirs))


def held_out_bits(run_dirs: list[Path]) -> list:
    """The bits of every held-out byte, averaged over the runs (the same bytes for every seed)."""
    from .evaluate import scored_bytes

    return mean_over_runs([scored_bytes(load(d))[1] for d in run_dirs])


def add_intervals(rows: list[Row], per_byte: dict) -> None:
    """Each row's bootstrap interval, and its paired difference from the best row on the same bytes."""
    best = min(rows, key=lambda r: r.bpb)
    for r in rows:
        interval = bpb_interval(per_byte[r.name])
        r.low, r.high = interval["bpb_low"], interval["bpb_high"]
        r.vs_best = paired(per_byte[r.name], per_byte[best.name]) if r is not best else None


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


def _vs_best(r: Row) -> str:
    if r.low is None:
        return "–"
    if r.vs_best is None:
        return "best"
    v = r.vs_best
    return f"{v['difference']:+.4f} ({v['low']:+.4f} to {v['high']:+.4f}){' tied' if v['verdict'] == 'tied' else ''}"


def _seeds(r: Row) -> str:
    return "–" if r.seeds is None else f"{r.seeds['sd']:.4f} ({r.seeds['seeds']} seeds)"


def format_table(rows: list[Row]) -> str:
    with_seeds = any(r.seeds for r in rows)
    seeds_head, seeds_rule = (" between seeds, sd |", " ---: |") if with_seeds else ("", "")
    lines = [f"| model | held-out bits/byte | bootstrap 95% | vs best, paired 95% |{seeds_head} network alone "
             "| parameters | train tokens/s | generation tokens/s | steps | seconds |",
             f"| --- | ---: | :---: | :---: |{seeds_rule} ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        interval = "–" if r.low is None else f"{r.low:.4f}-{r.high:.4f}"
        seeds = f" {_seeds(r)} |" if with_seeds else ""
        lines.append(f"| {r.name} | {r.bpb:.4f} | {interval} | {_vs_best(r)} |{seeds} {_cell(r.bpb_network, '.4f')} | "
                     f"{_cell(r.params, ',')} | {_cell(r.train_tokens_per_s, ',.0f')} | "
                     f"{_cell(r.gen_tokens_per_s, ',.0f')} | {_cell(r.steps, ',')} | {_cell(r.seconds, '.0f')} |")
    return "\n".join(lines)


def write_report(out: Path, cfg: RunConfig, rows: list[Row]) -> None:
    clock = f"{cfg.train.budget_seconds:g}s budget" if cfg.train.budget_seconds > 0 else \
        f"{cfg.train.max_steps} steps"
    head = (f"# seqlab compare\n\ncorpus: {', '.join(cfg.data.paths) or '(bundled tinyshakespeare)'}; "
            f"{clock} each, {cfg.train.threads} thread(s), device {cfg.train.device}, seed {cfg.train.seed}.\n"
            f"Held-out bits/byte: the full held-out split, every byte scored once. Training tokens/s include the "
            f"periodic evaluations. Generation: one stream of {GEN_TOKENS} sampled tokens. Compressors: "
            f"size(train + held-out) − size(train) of the same bytes.\n"
            f"Bootstrap 95%: the uncertainty from which bytes were held out ({interval_method(rows)}). "
            f"vs best: the row minus the best row on the same bytes, paired; tied: its interval holds 0. "
            f"Between seeds: the sd of the seeds' figures (training randomness; the row is their mean, "
            f"its bootstrap interval that of the mean).\n\n")
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.md").write_text(head + format_table(rows) + "\n")
    plot_curves(out, [r.name for r in rows if r.params is not None], rows)


def interval_method(rows: list[Row]) -> str:
    runs = [r for r in rows if r.runs]
    if not runs:
        return "block bootstrap"
    return [r for r in read_metrics(runs[0].runs[0]) if r.get("event") == "final"][-1].get("interval_method",
                                                                                            "block bootstrap")


def plot_curves(out: Path, archs: list[str], rows: list[Row]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=110)
    by_name = {r.name: r for r in rows}
    for arch in archs:
        row = by_name[arch]
        color = None
        for i, run_dir in enumerate(row.runs or [out / arch]):  # one curve per seed
            evals = [r for r in read_metrics(run_dir) if r.get("event") == "eval"]
            line, = ax.plot([r["elapsed"] for r in evals], [r["val_bpb"] for r in evals], marker=".", color=color,
                            lw=1.5 if i == 0 else 0.8, alpha=1.0 if i == 0 else 0.5, label=None if i else arch)
            color = line.get_color()
        if row.low is not None:  # the full held-out figure at the end, with its 95% bootstrap interval
            ax.errorbar([row.seconds], [row.bpb], yerr=[[row.bpb - row.low], [row.high - row.bpb]], fmt="s",
                        color=color, capsize=4, ms=4)
    for r in rows:
        if r.params is None:
            ax.axhline(r.bpb, ls="--", lw=0.8, color="#888888")
            ax.annotate(r.name.replace(" (conditional)", ""), (0, r.bpb), fontsize=7, color="#666666",
                        xycoords=("axes fraction", "data"), va="bottom")
    ax.set_xlabel("wall-clock seconds")
    ax.set_ylabel("held-out bits per byte (eval subset)")
    ax.set_title("seqlab compare (dashed: compressors; bars: full held-out, 95% bootstrap)")
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
    p.add_argument("--seeds", type=integer(min=1), default=1, metavar="N",
                   help="train each architecture with N seeds (DIR/ARCH/seed-SEED); rows give the mean, its "
                        "bootstrap interval and the spread between seeds")
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
    rows = compare(base, archs, out, models, seeds=args.seeds)
    print(format_table(rows))
    print(f"saved {out / 'compare.md'} and {out / 'curves.png'}")
