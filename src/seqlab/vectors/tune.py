"""Contrastive fine-tuning: two crops of one paragraph should embed close, other paragraphs far.

Each step samples `batch_size` paragraphs of the corpus's training split (the run's own held-out fraction
is left out, so a benchmark can test on it), cuts two random crops of each (each 30-70% of the
paragraph, anywhere in it; `crops="halves"`: its two halves, cut at the sentence end nearest its middle),
pools them as `seqlab embed --pooling` does (mean or surprisal) and minimises the
symmetric InfoNCE loss of the crops' cosine similarities at `temperature` (the other paragraphs of the
batch are the negatives, as in SimCSE/CLIP). The usual next-token loss on the same crops is added with
weight `lm_weight`, so the tuned run still generates and scores. The result is an ordinary run: config,
tokenizer, count-model history and a checkpoint of the new weights, plus tune.json saying how it was made.

`holdout` > 0 leaves that share of the training paragraphs out of tuning (chosen by a digest of their bytes,
`is_validation`), so settings can be compared on paragraphs of the training split that neither the
benchmark nor the tune used (bench/vectors_retrieval.py --split validation). `hard_negatives`: half of each
batch is sampled, the other half is each sampled paragraph's nearest other paragraph by TF-IDF cosine (a
negative that shares its rare words, which the in-batch negatives seldom do).
"""

import hashlib

import json
import math
import random
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..checkpoint import atomic_write_text, save_checkpoint
from ..errors import SeqlabError
from ..models.heads import AdaptiveHead
from ..progress import bar
from .embed import POOLINGS, RECURRENT_PIECE, fingerprint, pool_pieces
from .passages import passages

MIN_PARAGRAPH_BYTES = 40
CROPS = ("random", "halves")
SENTENCE_END = re.compile(rb"(?<=[.!?])[\"')\]]*\s+")


@dataclass
class TuneConfig:
    max_steps: int = 200
    budget_seconds: float = 0.0  # > 0: stop after this many seconds instead
    batch_size: int = 32
    lr: float = 3e-4
    temperature: float = 0.05
    lm_weight: float = 0.5
    max_crop_tokens: int = 256
    seed: int = 0
    pooling: str = "mean"
    crops: str = "random"
    holdout: float = 0.0
    hard_negatives: bool = False


def training_paragraphs(files, val_fraction: float) -> list[bytes]:
    """Paragraphs of each file's training part (its last val_fraction is held out, as the run splits it)."""
    out = []
    for f in files:
        size = f.stat().st_size
        cut = size - math.ceil(size * val_fraction)
        out += [p.data for p in passages([f], "paragraph") if p.offset + len(p.data) <= cut]
    return [p for p in out if len(p) >= MIN_PARAGRAPH_BYTES]


def tuning_paragraphs(files, val_fraction: float, holdout: float) -> list[bytes]:
    """The training paragraphs a tune reads: those of the training part outside the `holdout` share."""
    return [p for p in training_paragraphs(files, val_fraction) if not is_validation(p, holdout)]


def is_validation(paragraph: bytes, holdout: float) -> bool:
    """Whether a paragraph is in the `holdout` share kept out of tuning: a digest of its stripped bytes, so the
    tune and the benchmark pick the same paragraphs however each cuts the files into them."""
    digest = hashlib.blake2b(paragraph.strip(), digest_size=8).digest()
    return int.from_bytes(digest, "little") < holdout * 2**64


class Neighbours:
    """Each paragraph's nearest other paragraphs by TF-IDF cosine (scikit-learn), for hard negatives."""

    def __init__(self, paragraphs: list[bytes]):
        from sklearn.feature_extraction.text import TfidfVectorizer

        texts = [p.decode("utf-8", errors="replace") for p in paragraphs]
        self.x = TfidfVectorizer(sublinear_tf=True).fit_transform(texts).tocsr()

    def nearest(self, i: int, taken: set[int]) -> int | None:
        scores = (self.x[i] @ self.x.T).toarray()[0]
        scores[i] = -1.0
        for j in np.argsort(-scores)[: len(taken) + 2]:
            if int(j) not in taken and scores[j] > 0:
                return int(j)
        return None


def batch_indices(n: int, size: int, rng: random.Random, neighbours: Neighbours | None) -> list[int]:
    """`size` distinct paragraph indices: a random sample, or half of one and each one's nearest neighbour."""
    if neighbours is None:
        return rng.sample(range(n), size)
    chosen = rng.sample(range(n), (size + 1) // 2)
    taken = set(chosen)
    for i in list(chosen):
        j = neighbours.nearest(i, taken) if len(taken) < size else None
        if j is not None:
            taken.add(j)
            chosen.append(j)
    rest = [i for i in rng.sample(range(n), min(n, 2 * size)) if i not in taken]
    return chosen + rest[: size - len(chosen)]


def crop(data: bytes, rng: random.Random) -> bytes:
    n = len(data)
    length = max(1, int(n * rng.uniform(0.3, 0.7)))
    start = rng.randrange(0, n - length + 1)
    return data[start : start + length]


def halves(paragraph: bytes, min_bytes: int = 30) -> tuple[bytes, bytes] | None:
    """The paragraph cut at the sentence end nearest its middle, or None where either half would be shorter
    than min_bytes (bench/vectors_retrieval.py asks each first half to find its second)."""
    cuts = [m.end() for m in SENTENCE_END.finditer(paragraph) if 0 < m.end() < len(paragraph.rstrip())]
    if not cuts:
        return None
    cut = min(cuts, key=lambda c: abs(c - len(paragraph) / 2))
    first, second = paragraph[:cut].strip(), paragraph[cut:].strip()
    return (first, second) if len(first) >= min_bytes and len(second) >= min_bytes else None


def two_views(data: bytes, how: str, rng: random.Random) -> tuple[bytes, bytes]:
    """Two views of one paragraph: random crops, or its halves (random crops where it has no sentence end)."""
    return (how == "halves" and halves(data, 1)) or (crop(data, rng), crop(data, rng))


def tune(run, files, out, cfg: TuneConfig | None = None, log=print, show_progress: bool = True) -> Path:
    """Fine-tune `run` (loaded) on the paragraphs of `files`; write the new run to `out`."""
    cfg = cfg or TuneConfig()
    if cfg.pooling not in POOLINGS or cfg.crops not in CROPS:
        raise SeqlabError(f"pooling {cfg.pooling!r}, crops {cfg.crops!r}: choose a pooling of {', '.join(POOLINGS)} "
                          f"and crops of {', '.join(CROPS)}")
    out = Path(out)
    paragraphs = tuning_paragraphs(files, 0.0 if run.config.data.val_paths else run.config.data.val_fraction,
                                   cfg.holdout)
    if len(paragraphs) < 2:
        raise SeqlabError(f"the corpus has {len(paragraphs)} paragraph(s) of at least {MIN_PARAGRAPH_BYTES} bytes "
                          f"in its training part; contrastive tuning needs 2 or more (blank lines separate them)")
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    model, tok = run.model, run.tokenizer
    head = model.output_layer()
    if cfg.lm_weight and isinstance(head, AdaptiveHead):
        log("note: the run has an adaptive softmax; tuning without the next-token loss (--lm-weight 0)")
    limit = min(cfg.max_crop_tokens, (model.max_context or RECURRENT_PIECE) - 1)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=0.0)
    batch = min(cfg.batch_size, len(paragraphs))
    neighbours = Neighbours(paragraphs) if cfg.hard_negatives else None
    model.train()
    t0, history, step = time.monotonic(), [], 0
    total = None if cfg.budget_seconds else cfg.max_steps
    with bar(total=total, desc="tune", unit="step", enabled=None if show_progress else False) as b:
        while (time.monotonic() - t0 < cfg.budget_seconds) if cfg.budget_seconds else step < cfg.max_steps:
            views = [two_views(paragraphs[i], cfg.crops, rng)
                     for i in batch_indices(len(paragraphs), batch, rng, neighbours)]
            # rows i and batch + i: two views of paragraph i
            pieces = [(i, 0, np.concatenate([[tok.bos_id], tok.encode(v)[:limit]]).astype(np.int64))
                      for i, v in enumerate([v[0] for v in views] + [v[1] for v in views])]
            z = F.normalize(pool_pieces(run, pieces, 2 * batch, cfg.pooling, grad=True), dim=-1)  # (2B, C)
            logits = z[:batch] @ z[batch:].T / cfg.temperature  # (B, B)
            target = torch.arange(batch, device=logits.device)
            contrastive = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
            loss = contrastive
            if cfg.lm_weight and not isinstance(head, AdaptiveHead):
                loss = loss + cfg.lm_weight * next_token_loss(model, pieces, run.device)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            history.append(contrastive.item())
            b.update(1)
            b.set_postfix(contrastive=f"{np.mean(history[-20:]):.3f}")
    model.eval()
    record = {"event": "tune", "objective": "contrastive", "steps": step, "paragraphs": len(paragraphs),
              "contrastive_first": float(np.mean(history[:10])), "contrastive_last": float(np.mean(history[-10:])),
              **cfg.__dict__}
    save_tuned(run, out, model, record)
    log(f"tuned {step} steps in {time.monotonic() - t0:.0f}s: contrastive loss {np.mean(history[:10]):.3f} -> "
        f"{np.mean(history[-10:]):.3f}; run saved in {out}")
    return out


def next_token_loss(model, pieces, device):
    width = max(len(p[2]) for p in pieces)
    x = torch.zeros(len(pieces), width, dtype=torch.long)
    y = torch.full((len(pieces), width), -100, dtype=torch.long)
    for row, (_, _, ids) in enumerate(pieces):
        x[row, : len(ids)] = torch.from_numpy(ids)
        y[row, : len(ids) - 1] = torch.from_numpy(ids[1:])
    logits, _ = model(x[:, :-1].to(device))
    return F.cross_entropy(logits.float().flatten(0, 1), y[:, :-1].flatten().to(device), ignore_index=-100)


def save_tuned(run, out: Path, model, record: dict, write_extra=None) -> None:
    """The tuned run: the run's config, tokenizer and count-model history, `model`'s weights, tune.json (`record`
    and where the run came from) and whatever write_extra(directory) adds (a word head), then renamed into place."""
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in ("config.json", "tokenizer.json", "history.npy"):
        if (run.path / name).exists():
            shutil.copyfile(run.path / name, tmp / name)
    save_checkpoint(tmp, model)
    record = {"from": str(Path(run.path).resolve()), "from_fingerprint": fingerprint(run.path), **record}
    if write_extra is not None:
        write_extra(tmp)
    atomic_write_text(tmp / "tune.json", json.dumps(record, indent=2) + "\n")
    (tmp / "metrics.jsonl").write_text(json.dumps(record) + "\n")
    if out.exists():
        out.rmdir()  # checked empty before the work
    tmp.rename(out)
