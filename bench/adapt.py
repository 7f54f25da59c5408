"""Dynamic evaluation (seqlab eval --adapt): its learning rate tuned on the training split, its gain held out.

    python bench/adapt.py [CORPUS] --budget 3m --lrs 1e-5,3e-5,1e-4,3e-4 --threads 2

1. Tuning, on the *training* split only: the corpus's training split (the first 90% of each
   document, as `seqlab train` splits it) is itself split 90/10, a run of the default 4x128
   transformer trains for --budget on the first part, and the adapted figure of its last part
   (a slice of the real training split) is measured for every --lrs x --chunks. The best one
   is the tuned setting.
2. Held out: a run of the same config and budget trains on the real training split, and its
   held-out split is scored frozen and adapted (the tuned setting), token by token, so the
   gain is a paired difference over the same bytes, with a 95% block-bootstrap interval
   (blocks of --block tokens).
3. Cost: bytes/s of eval's scoring on that held-out split, frozen and adapted, both with the
   count model mixed in (as `seqlab eval` and `surprise` score); compare the 15 KB/s goal of
   bench/surprise_speed.py.

CORPUS defaults to the bundled tinyshakespeare. No held-out byte of the corpus is read before
step 2, and step 2 changes nothing that step 1 chose.
"""

import argparse
import platform
import time
from pathlib import Path

from common import print_table, seqlab

import numpy as np  # noqa: E402
import torch  # noqa: E402

from seqlab.adapt import AdaptOptions, Adapter  # noqa: E402
from seqlab.config import RunConfig, parse_duration  # noqa: E402
from seqlab.data.corpus import cache_root, default_corpus_path, encode_corpus, read_documents, split_document  # noqa: E402
from seqlab.evaluate import evaluate  # noqa: E402
from seqlab.scoring import mixing_session, run_token_bits  # noqa: E402
from seqlab.stats import block_sums, paired_difference  # noqa: E402
from seqlab.train.defaults import LADDERS, learning_rate  # noqa: E402


def default_config(corpus: list[str], budget: float, threads: int) -> RunConfig:
    """The default 4x128 transformer recipe (train/defaults.py), pinned so both runs train the same model."""
    ladder, width = LADDERS["cpu"], 128
    cfg = RunConfig(arch="transformer", model=ladder.model(width))
    cfg.data.paths = corpus
    t = cfg.train
    t.budget_seconds, t.threads, t.device = budget, threads, "cpu"
    t.batch_size, t.seq_len, t.lr = ladder.batch, ladder.context, learning_rate(width)
    t.min_lr_ratio, t.warmup_fraction, t.weight_decay = 0.1, 0.05, 0.1
    return cfg


def tuning_corpus(corpus: list[str], out: Path, val_fraction: float) -> list[str]:
    """The corpus's training split, one file per document: a tuning run's own held-out is a slice of it."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, doc in enumerate(read_documents(corpus)):
        path = out / f"{i:04d}-{Path(doc.name).name}"
        path.write_bytes(split_document(doc.data, val_fraction)[0])
        paths.append(str(path))
    return paths


def held_out_items(run):
    cfg = run.config.data
    data = encode_corpus(read_documents(cfg.paths), [], run.tokenizer, cfg.val_fraction, cache_root())
    return [(h.tokens, h.n_context) for h in data.held_out if len(h.scored)]


def token_bits_of(run, items, adapter=None) -> tuple[np.ndarray, np.ndarray, float]:
    """(mixed bits per token, the tokens' byte lengths, seconds) over the items as one stream."""
    session, bits, lengths = mixing_session(run), [], []
    token_lengths = np.array([len(b) for b in run.tokenizer.token_bytes])
    t0 = time.perf_counter()
    for tokens, n_context in items:
        bits.append(run_token_bits(run, tokens, n_context, session, adapter=adapter)[0])
        lengths.append(token_lengths[tokens[n_context:]])
    return np.concatenate(bits), np.concatenate(lengths), time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("corpus", nargs="*")
    p.add_argument("--budget", default="3m", help="training budget of each of the two runs")
    p.add_argument("--lrs", default="1e-5,3e-5,1e-4,3e-4")
    p.add_argument("--chunks", default="256")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--block", type=int, default=4096, help="tokens per bootstrap block")
    p.add_argument("--out", default="runs/bench-adapt")
    args = p.parse_args()
    corpus = args.corpus or [default_corpus_path()]
    budget = parse_duration(args.budget)
    torch.set_num_threads(args.threads)
    out = Path(f"{args.out}-{int(time.time())}")
    val_fraction = RunConfig().data.val_fraction

    tune_dir = seqlab.train(default_config(tuning_corpus(corpus, out / "tuning-corpus", val_fraction), budget,
                                           args.threads), out / "tuning-run")
    tune_run = seqlab.load(tune_dir)
    frozen = evaluate(tune_run)
    rows, best = [], None
    for chunk in map(int, args.chunks.split(",")):
        for lr in map(float, args.lrs.split(",")):
            adapted = evaluate(tune_run, adapt=AdaptOptions(lr=lr, chunk=chunk, threads=args.threads))["adapted"]
            rows.append([f"{lr:g}", chunk, f"{frozen['bpb']:.4f}", f"{adapted['bpb']:.4f}",
                         f"{adapted['bpb_network']:.4f}", f"{adapted['bpb'] - frozen['bpb']:+.4f}"])
            if best is None or adapted["bpb"] < best[0]:
                best = (adapted["bpb"], lr, chunk)
    machine = f"{platform.node()}, {torch.get_num_threads()} threads"
    print_table(f"tuning on a slice of the training split ({frozen['bytes']:,} bytes; {machine})",
                ["lr", "chunk", "frozen bpb", "adapted bpb", "adapted, network alone", "gain"], rows)

    _, lr, chunk = best
    run = seqlab.load(seqlab.train(default_config(corpus, budget, args.threads), out / "run"))
    items = held_out_items(run)
    frozen_bits, lengths, frozen_s = token_bits_of(run, items)
    with Adapter(run.model, run.device, AdaptOptions(lr=lr, chunk=chunk, threads=args.threads)) as adapter:
        adapted_bits, _, adapted_s = token_bits_of(run, items, adapter)
    a, b, n = (block_sums(x, args.block) for x in (adapted_bits, frozen_bits, lengths))
    diff, low, high = paired_difference(a, b, n)
    n_bytes = lengths.sum()
    print()
    print_table(f"held-out, tuned setting lr {lr:g}, chunk {chunk} ({n_bytes:,} bytes; {machine})",
                ["scoring", "bits per byte", "bytes/s"],
                [["frozen (count model mixed in)", f"{frozen_bits.sum() / n_bytes:.4f}", f"{n_bytes / frozen_s:,.0f}"],
                 ["adapted (count model mixed in)", f"{adapted_bits.sum() / n_bytes:.4f}",
                  f"{n_bytes / adapted_s:,.0f}"],
                 ["adapted minus frozen, 95% interval", f"{diff:+.4f} [{low:+.4f}, {high:+.4f}]", ""]])
    print(f"\nruns: {out}")


if __name__ == "__main__":
    main()
