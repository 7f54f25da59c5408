"""The optimizer and learning-rate schedule every training loop uses (text: train/loop.py; series: series/fit.py)."""

import math

import torch


def lr_at(progress: float, cfg) -> float:
    """Linear warm-up, then cosine decay to lr * min_lr_ratio at progress 1."""
    if progress < cfg.warmup_fraction:
        return cfg.lr * (progress + 1e-3) / (cfg.warmup_fraction + 1e-3)
    t = min(1.0, (progress - cfg.warmup_fraction) / max(1e-9, 1 - cfg.warmup_fraction))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def make_optimizer(model, cfg, fused: bool = False) -> torch.optim.AdamW:
    # Decay matrices and embeddings; leave biases and norm gains alone (as nanoGPT).
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.99), fused=fused)
