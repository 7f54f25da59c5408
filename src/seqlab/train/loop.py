"""`seqlab train`: one training loop for every architecture.

The learning-rate schedule runs on *progress*, the fraction of the budget spent:
wall-clock seconds for --budget, steps for --max-steps. So a 10-minute run warms
up, decays and ends annealed exactly when the 10 minutes are up.
"""

import math
import signal
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import checkpoint as ckpt
from .. import countmodel
from ..config import RunConfig, check_paths, validate
from ..curriculum import Curriculum
from ..data.batches import make_batcher
from ..data.corpus import CONTEXT_TOKENS, TokenData, cache_root, default_corpus_path, encode_corpus, read_documents
from ..data.tasks import task_documents
from ..data.tokenizer import build_tokenizer, load_tokenizer, reading, save_tokenizer
from ..errors import SeqlabError
from ..models import build_model, map_state, model_config
from ..models.base import state_batch_dims
from ..models.heads import AdaptiveHead, SampledHead
from .. import optim
from ..optim import lr_at  # noqa: F401 (lr_at: the schedule's home for callers)
from ..models.style import attach_styles, conditioned, for_document, style_sources, token_sources, train_bytes_by_source
from ..run import CONFIG_FILE, METRICS_FILE, read_config, resolve_device
from ..scoring import describe_context, token_bits
from .. import tracking
from . import distributed
from .speed import CompiledStep, autocast, fused_adamw_supported, uses_bf16
from ..progress import Progress

LN2 = math.log(2)


def make_optimizer(model, cfg) -> torch.optim.AdamW:
    """optim.make_optimizer, with a fused AdamW (one kernel for all updates) where the device has it."""
    return optim.make_optimizer(model, cfg, fused=fused_adamw_supported(next(model.parameters()).device))


def eval_subset(data: TokenData, n_tokens: int, n_segments: int = 8) -> list[tuple[np.ndarray, int, str]]:
    """A fixed, evenly spread sample of the held-out split: (tokens, n_context, document name)."""
    total = data.val_tokens
    if total <= n_tokens:
        return [(h.tokens, h.n_context, h.name) for h in data.held_out if len(h.scored)]
    seg = n_tokens // n_segments
    wanted = [int(i * (total - seg) / max(1, n_segments - 1)) for i in range(n_segments)]
    segments, offset = [], 0
    for h in data.held_out:
        n = len(h.scored)
        for w in wanted:
            if offset <= w < offset + n:
                a = h.n_context + (w - offset)
                b = min(a + seg, len(h.tokens))
                lo = max(0, a - CONTEXT_TOKENS)
                segments.append((h.tokens[lo:b], a - lo, h.name))
        offset += n
    return segments


def held_out_bpb(model, segments, token_lengths: np.ndarray, device) -> float:
    model.eval()
    bits = n_bytes = 0.0
    for tokens, n_context, name in segments:
        with for_document(model, name):  # a styled model reads each document in its own source's style
            bits += float(token_bits(model, tokens, n_context, device).sum())
        n_bytes += float(token_lengths[tokens[n_context:]].sum())
    model.train()
    return bits / max(n_bytes, 1.0)


class Metrics:
    def __init__(self, path: Path, enabled: bool = True, tracker=None):
        self.path, self.enabled, self.tracker = path, enabled, tracker  # tracker: --log (tracking.py)

    def write(self, **record) -> None:
        if self.enabled:
            import json

            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")
            if self.tracker:
                self.tracker.record(record)

    def step(self, step: int, loss: float) -> None:
        if self.tracker:
            self.tracker.step(step, loss)

    def close(self) -> None:
        if self.tracker:
            self.tracker.close()


def _rng_state(device) -> dict:
    state = {"cpu": torch.get_rng_state().tolist()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device).tolist()
    return state


def _set_rng_state(state: dict, device) -> None:
    torch.set_rng_state(torch.tensor(state["cpu"], dtype=torch.uint8))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(torch.tensor(state["cuda"], dtype=torch.uint8), device)


def prepare_data(cfg: RunConfig, run_dir: Path, resume: bool, log=print):
    docs, val_docs = task_documents(cfg.data) or (  # "task:NAME": generated examples, own held-out set
        read_documents(cfg.data.paths or [default_corpus_path()], cfg.data.text_field),
        read_documents(cfg.data.val_paths, cfg.data.text_field) if cfg.data.val_paths else [])
    if not val_docs and not (0 < cfg.data.val_fraction < 1):
        raise SeqlabError(f"--val-fraction must be in (0, 1), got {cfg.data.val_fraction}; or give --val FILE")
    if resume:
        tokenizer = load_tokenizer(run_dir)
    else:
        from ..data.corpus import split_document

        frac, step = 0.0 if val_docs else cfg.data.val_fraction, -1 if cfg.data.backward else 1
        tokenizer = build_tokenizer(cfg.data.tokenizer,
                                    lambda: (split_document(d.data, frac)[0][::step] for d in docs))
        tokenizer = distributed.agree_tokenizer(tokenizer)  # every rank takes rank 0's
    tokenizer = reading(tokenizer, cfg.data.backward)
    data = encode_corpus(docs, val_docs, tokenizer, cfg.data.val_fraction, cache_root())
    if data.val_tokens == 0:
        raise SeqlabError("the held-out split is empty: the corpus is too small; add data or give --val FILE")
    log(f"corpus: {len(docs)} document(s), {data.train_bytes:,} training bytes ({len(data.train):,} tokens), "
        f"{data.val_bytes:,} held-out bytes ({data.val_tokens:,} tokens)")
    if countmodel.usable(cfg.counts, tokenizer.vocab_size):  # refused now, not after the budget is spent
        countmodel.check_fits(min(len(data.train), cfg.counts.max_history), directory=run_dir)
    return docs, tokenizer, data


def train(cfg: RunConfig, run_dir, resume: bool = False, log=print, rank: int = 0, world: int = 1,
          init=None) -> Path:
    """Train (or resume) the run in `run_dir`; returns the run directory.

    init: a Hugging Face GPT-2 checkpoint directory to start from (its weights and tokenizer).
    """
    run_dir = Path(run_dir)
    validate(cfg)
    check_paths(cfg)
    if cfg.train.budget_seconds <= 0 and cfg.train.max_steps <= 0:
        raise SeqlabError("give a training budget: --budget (e.g. 10m) or --max-steps N")
    distributed.check_batch(cfg.train.batch_size, world)
    countmodel.check(cfg.counts)
    Curriculum.check(cfg, world)
    tracking.check(cfg.train.log)
    if init and cfg.data.backward:
        raise SeqlabError("--init loads a checkpoint that reads left to right; it cannot train --backward")
    if init and not resume:
        from ..pretrained import apply_init

        if cfg.model.get("softmax", "full") != "full":
            raise SeqlabError("--init loads GPT-2's output layer, a full softmax; leave out --softmax adaptive")
        apply_init(cfg, init)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    device = resolve_device(cfg.train.device)
    torch.manual_seed(cfg.train.seed)

    docs, tokenizer, data = prepare_data(cfg, run_dir, resume, log)
    if cfg.style.by and not (resume and cfg.style.sources):  # a resumed run keeps its own list
        cfg.style.sources = style_sources([d.name for d in docs], cfg.style.by, cfg.style.dim)
    cfg.model = asdict(model_config(cfg.arch, {**cfg.model, "vocab_size": tokenizer.vocab_size}))
    model = build_model(cfg.arch, cfg.model)
    if init and not resume:
        from ..pretrained import load_gpt2_weights

        log(f"initialised from {init}: {load_gpt2_weights(model, init)}")
    attach_styles(model, cfg.style)
    order_output_layer(model, data, tokenizer, log)
    model = model.to(device)
    optimizer = make_optimizer(model, cfg.train)
    batcher_for = lambda tokens: make_batcher(  # noqa: E731 - a curriculum makes a new one as it lets in lengths
        model.carries_state, tokens, cfg.train.batch_size, cfg.train.seq_len, cfg.train.seed, shard=(rank, world),
        sources=token_sources(cfg.style, docs, data.doc_tokens), tokenizer=tokenizer)
    curriculum = Curriculum.for_run(cfg, data, batcher_for) if cfg.curriculum.enabled else None
    batcher = curriculum.batcher() if curriculum else batcher_for(data.train)
    run_dir.mkdir(parents=True, exist_ok=True)  # only now: a corpus or config refused above leaves nothing behind
    if not resume and rank == 0:
        save_tokenizer(tokenizer, run_dir)
        ckpt.atomic_write_text(run_dir / CONFIG_FILE, cfg.describe())
    log(f"config:\n{cfg.describe()}")
    log(f"model: {cfg.arch}, {model.num_params():,} parameters; held-out context: {describe_context(model)}")

    metrics = Metrics(run_dir / METRICS_FILE, enabled=rank == 0,
                      tracker=tracking.open_tracker(cfg.train.log, run_dir, cfg.describe()) if rank == 0 else None)
    pos = {"step": 0, "elapsed": 0.0, "tokens": 0, "done": False}
    carry = None
    if resume:
        ckpt.load_weights(run_dir, model)
        pos, carry_tensors = ckpt.load_trainer_state(run_dir, optimizer, device)
        if curriculum:
            curriculum.load_state_dict(pos["curriculum"])
            batcher = curriculum.batcher()
        batcher.load_state_dict(pos["batcher"])
        _set_rng_state(pos["rng"], device)
        carry = distributed.shard_carry(model, carry_tensors, rank, world)
        log(f"resuming at step {pos['step']} ({pos['elapsed']:.0f}s trained)")
    else:
        metrics.write(event="start", arch=cfg.arch, params=model.num_params(), files=len(docs),
                      train_bytes=data.train_bytes, val_bytes=data.val_bytes, tokenizer=cfg.data.tokenizer,
                      context=describe_context(model))
        if cfg.style.by:
            metrics.write(event="styles", train_bytes=train_bytes_by_source(cfg.style, docs, data.doc_bytes))

    loop = TrainLoop(cfg, run_dir, model, optimizer, batcher, data, tokenizer, metrics, device, pos, carry, log,
                     curriculum)
    loop.run()
    if rank == 0:
        finish(run_dir, model, data, tokenizer, metrics, device, loop, log)
    metrics.close()
    return run_dir


def order_output_layer(model, data: TokenData, tokenizer, log) -> None:
    """An adaptive softmax's clusters are ranges of training-split frequency, a sampled head's noise distribution is
    its unigram distribution ** 0.75 (models/heads.py).

    On resume the checkpoint's own order or noise, loaded next, replaces this identical one.
    """
    head = model.output_layer()
    if isinstance(head, SampledHead):
        head.set_noise(np.bincount(data.train, minlength=tokenizer.vocab_size))
    if not isinstance(head, AdaptiveHead):
        return
    if tokenizer.kind == "byte":
        log("note: --softmax adaptive saves little on the 257-token byte vocabulary; it pays off from bpe:4096 up")
    head.order_by_frequency(np.bincount(data.train, minlength=tokenizer.vocab_size))


class Objective(nn.Module):
    """model.loss as a module's forward: DDP averages gradients only for what runs through forward."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, idx, targets, state):
        return self.model.loss(idx, targets, state)


class TrainLoop:
    def __init__(self, cfg, run_dir, model, optimizer, batcher, data, tokenizer, metrics, device, pos, carry, log,
                 curriculum=None):
        self.cfg, self.tc = cfg, cfg.train
        self.tokenizer, self.curriculum = tokenizer, curriculum
        self.run_dir, self.model, self.optimizer, self.batcher = run_dir, model, optimizer, batcher
        self.metrics, self.device, self.pos, self.carry, self.log = metrics, device, pos, carry, log
        self.token_lengths = np.array([len(b) for b in tokenizer.token_bytes])
        self.bytes_per_token = data.train_bytes / max(1, len(data.train))
        self.segments = eval_subset(data, self.tc.eval_tokens)
        self.bf16 = uses_bf16(device, self.tc.precision, cfg.arch)
        self.best = pos.get("best_val_bpb")
        self.is_writer = metrics.enabled
        net = distributed.wrap(Objective(model), device)  # DDP across processes, else the objective itself
        self.step_with = CompiledStep(net, self.tc.compile, lambda: optimizer.zero_grad(set_to_none=True), log)
        self.state_dims = state_batch_dims(model) if model.carries_state else []

    def progress(self) -> float:
        if self.tc.budget_seconds > 0:
            return self.pos["elapsed"] / self.tc.budget_seconds
        return self.pos["step"] / self.tc.max_steps

    def train_step(self) -> float:
        x, y, styles, new_epoch = self.batcher.next()
        x, y = x.to(self.device), y.to(self.device)
        if new_epoch or not self.model.carries_state:
            self.carry = None
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.progress(), self.tc)
        self.optimizer.zero_grad(set_to_none=True)
        loss, state = self.step_with(self.forward_backward, x, y, styles)
        if self.tc.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.tc.grad_clip)
        self.optimizer.step()
        if self.model.carries_state:
            self.carry = self.streams_only(map_state(lambda t: t.detach(), state))
        self.pos["step"] += 1
        self.pos["tokens"] += round(x.numel() * distributed.world_size() / self.batcher.row_share)  # every rank's
        return loss.item()

    def forward_backward(self, net, x, y, styles):
        with autocast(self.device, self.bf16), conditioned(self.model, styles):
            loss, state = net(x, y, self.with_fresh_rows(self.carry))
        (loss * self.batcher.row_share).backward()  # DDP averages the ranks' gradients: weigh them by rows
        return loss, state

    def with_fresh_rows(self, carry):
        """The carried state of the streams, then a fresh one for the batch's rows that start documents."""
        if carry is None:
            return None
        fresh = self.model.init_state(self.batcher.fresh, self.device)
        return tuple(torch.cat([c, f], dim=d) for c, f, d in zip(carry, fresh, self.state_dims))

    def streams_only(self, state):
        """The state of the streams' rows: the rows that started documents carry nothing into the next window."""
        n = len(self.batcher.streams)
        return tuple(t.narrow(d, 0, n) for t, d in zip(state, self.state_dims))

    def save(self, synced: bool = True) -> None:
        carry = distributed.gather_carry(self.model, self.carry, synced)  # all ranks' streams
        if not self.is_writer:
            return
        trainer = {**self.pos, "batcher": self.batcher.state_dict(), "rng": _rng_state(self.device),
                   "best_val_bpb": self.best}
        if self.curriculum:
            trainer["curriculum"] = self.curriculum.state_dict()
        ckpt.save_checkpoint(self.run_dir, self.model, self.optimizer, trainer, carry)

    def evaluate(self, train_loss: float) -> float:
        if not self.is_writer:  # only rank 0 reports; the others go on to the next step
            return float("nan")
        bpb = held_out_bpb(self.model, self.segments, self.token_lengths, self.device)
        self.best = bpb if self.best is None else min(self.best, bpb)
        self.metrics.write(event="eval", step=self.pos["step"], elapsed=round(self.pos["elapsed"], 2),
                           tokens=self.pos["tokens"], train_loss=train_loss,
                           train_bpb=train_loss / LN2 / self.bytes_per_token, val_bpb=bpb,
                           lr=self.optimizer.param_groups[0]["lr"])
        return bpb

    def lengthen(self) -> None:
        """Let the curriculum's next length in once the training error allows (curriculum.py)."""
        error = self.curriculum.training_error(self.model, self.tokenizer, self.device, self.pos["step"])
        if self.curriculum.update(error):
            self.batcher, self.carry = self.curriculum.batcher(), None
            self.metrics.write(event="curriculum", step=self.pos["step"], elapsed=round(self.pos["elapsed"], 2),
                               training_error=error, max_length=self.curriculum.max_length)

    def run(self) -> None:
        tc = self.tc
        if self.progress() >= 1:
            self.log("the run has already used its budget; give a larger --budget or --max-steps to go on")
            return
        self.model.train()
        display = Progress(tc.budget_seconds or None, tc.max_steps or None, enabled=self.is_writer, pos=self.pos)
        start = time.monotonic() - self.pos["elapsed"]
        last_eval = last_ckpt = self.pos["elapsed"]
        losses, val_bpb = [], None
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            while self.progress() < 1:
                losses.append(self.train_step())
                if self.curriculum and self.curriculum.due(self.pos["step"]):
                    self.lengthen()
                self.metrics.step(self.pos['step'], losses[-1])
                self.pos["elapsed"] = distributed.agree_clock(time.monotonic() - start)  # rank 0's clock
                due = (self.pos["step"] % tc.eval_every_steps == 0) if tc.eval_every_steps else \
                    self.pos["elapsed"] - last_eval >= tc.eval_every_seconds
                if due or self.progress() >= 1:
                    val_bpb = self.evaluate(float(np.mean(losses)))
                    losses, last_eval = [], self.pos["elapsed"]
                if self.pos["elapsed"] - last_ckpt >= tc.checkpoint_every_seconds:
                    self.save()
                    last_ckpt = self.pos["elapsed"]
                display.update(self.pos, losses[-1] if losses else None, self.bytes_per_token, val_bpb)
            self.pos["done"] = True
        except KeyboardInterrupt:
            display.close()
            self.save(synced=False)  # ranks stop at different points: no collective here
            raise SeqlabError(
                f"interrupted at step {self.pos['step']}; checkpoint saved. Resume with: "
                f"seqlab train --resume {self.run_dir}"
            ) from None
        finally:
            signal.signal(signal.SIGTERM, previous)
        display.close()
        self.save()


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def finish(run_dir: Path, model, data: TokenData, tokenizer, metrics: Metrics, device, loop: TrainLoop, log) -> None:
    """Keep the count model's history, evaluate the full held-out split, write samples and the curve."""
    from ..evaluate import evaluate_held_out
    from ..generate import generate
    from .curve import plot_curve
    from ..run import Run

    model.eval()
    config = read_config(run_dir)
    if countmodel.usable(config.counts, tokenizer.vocab_size):
        countmodel.save_history(run_dir, data.train, config.counts, tokenizer.token_bytes)
    run = Run(run_dir, config, tokenizer, model, device)
    result = evaluate_held_out(run, data)
    metrics.write(event="final", step=loop.pos["step"], elapsed=round(loop.pos["elapsed"], 2),
                  tokens=loop.pos["tokens"], val_bpb=result["bpb"], val_bpb_network=result["bpb_network"],
                  bits_per_token=result["bits_per_token"], perplexity=result["perplexity"],
                  context=result["context"], val_bpb_low=result["bpb_low"], val_bpb_high=result["bpb_high"],
                  interval_method=result["interval_method"])
    samples = [s.text for s in generate(run, "", n=2, max_tokens=400, seed=1)]
    if config.data.backward:  # generated right to left, shown left to right (a character of several bytes
        samples = [s[::-1] for s in samples]  # came out in reverse order and shows as U+FFFD)
    text = "\n\n".join(f"──── sample {i + 1} ────\n{s}" for i, s in enumerate(samples))
    ckpt.atomic_write_text(run_dir / "samples.txt", text + "\n")
    plot_curve(run_dir)
    log(f"\n{text}\n")
    network = f" (the network alone: {result['bpb_network']:.4f})" if result["bpb_network"] != result["bpb"] else ""
    log(f"held-out: {result['bpb']:.4f} bits per byte [95%: {result['bpb_low']:.4f}-{result['bpb_high']:.4f}] "
        f"over {result['bytes']:,} bytes{network} "
        f"({loop.pos['step']} steps, {loop.pos['elapsed']:.0f}s) — run saved in {run_dir}")
