"""Fitting the event model on one fold, and reading probabilities out of it.

Windows: the model reads 2 x lookback rows and is scored on the second half, so every scored row has at
least `lookback` rows before it, in training as in prediction (`predict_rows` tiles the series the same
way, each row scored once). Rows a window reads outside the fold's training rows give no loss: the trunks
are causal, so a scored row's prediction never reads a later row. The loss is the mean binary
cross-entropy over known labels; the optimizer and schedule are the text loop's (seqlab.optim). Every
`eval_every` steps the loss on the validation block is measured; the fit stops after `patience` of them
without improvement, or at its budget, and keeps the best weights.
"""

import copy
import time

import numpy as np
import torch
import torch.nn.functional as F

from ..models.events import event_model
from ..optim import lr_at, make_optimizer
from ..progress import bar

PREDICT_BATCH = 256  # windows per forward pass when predicting
MIN_EVAL_EVERY = 20  # steps: validation losses no closer than this, however few the training rows


def build(cfg, n_inputs: int, n_events: int):
    s = cfg.series
    return event_model(cfg.arch, cfg.model, n_inputs, n_events, s.activation, context=2 * s.lookback)


def predict_rows(model, x: torch.Tensor, a: int, b: int, lookback: int) -> np.ndarray:
    """Probabilities (b - a, K) of rows a..b-1 of x (T, D), each read with lookback..2*lookback-1 rows before
    it (zeros, the training mean, before the first row). The tiles start at multiples of lookback, so a row's
    probability is the same whichever range it is asked for in."""
    L, device = lookback, x.device
    first = a - a % L
    starts = torch.arange(first, b, L, device=device)
    padded = torch.cat([x.new_zeros(L, x.shape[1]), x, x.new_zeros(L, x.shape[1])])  # padded row r+L = row r
    offsets = torch.arange(2 * L, device=device)
    was_training = model.training
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(starts), PREDICT_BATCH):
            windows = padded[starts[i:i + PREDICT_BATCH, None] + offsets]  # (B, 2L, D): rows c-L .. c+L-1
            logits, _ = model(windows)
            out.append(torch.sigmoid(logits[:, L:].float()).reshape(-1, logits.shape[-1]))
    model.train(was_training)
    return torch.cat(out)[a - first: b - first].cpu().numpy().astype(np.float64)


def bce(y: np.ndarray, p: np.ndarray) -> float:
    known = ~np.isnan(y)
    p = np.clip(p[known], 1e-7, 1 - 1e-7)
    y = y[known]
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


class Fit:
    """One fold's model: fit(), then the best weights stay in .model."""

    def __init__(self, cfg, x: np.ndarray, y: np.ndarray, device, seed: int, budget_s: float, log=print,
                 show: bool = True):
        self.cfg, self.device, self.log, self.show = cfg, device, log, show
        self.x = torch.from_numpy(x).to(device)
        self.y = y
        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.model = build(cfg, x.shape[1], y.shape[1]).to(device)
        self.budget_s = budget_s

    def window_starts(self, rows: np.ndarray) -> np.ndarray:
        """Window starts s whose scored half [s+L, s+2L) holds a training row with a known label."""
        L, T = self.cfg.series.lookback, len(self.y)
        usable = np.zeros(T + 1, bool)
        usable[rows] = ~np.isnan(self.y[rows]).all(axis=1)
        counts = np.r_[0, np.cumsum(usable[:T])]
        s = np.arange(0, T - 2 * L + 1)
        return s[counts[s + 2 * L] - counts[s + L] > 0]

    def batch(self, starts: np.ndarray, mask: np.ndarray):
        L, B = self.cfg.series.lookback, self.cfg.train.batch_size
        s = self.rng.choice(starts, size=B)
        rows = s[:, None] + np.arange(2 * L)[None, :]  # (B, 2L)
        scored = rows[:, L:]
        y = self.y[scored]  # (B, L, K)
        m = mask[scored][:, :, None] & ~np.isnan(y)
        x = self.x[torch.from_numpy(rows).to(self.device)]
        to = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(self.device)
        return x, to(np.nan_to_num(y)), to(m)

    def fit(self, train: np.ndarray, val: np.ndarray) -> dict:
        s, tc = self.cfg.series, self.cfg.train
        mask = np.zeros(len(self.y), bool)
        mask[train] = True
        starts = self.window_starts(train)
        assert len(starts), "walk_forward's min_train leaves every fold windows to train on"
        every = s.eval_every or max(MIN_EVAL_EVERY, -(-len(train) // (tc.batch_size * s.lookback)))  # a pass
        optimizer = make_optimizer(self.model, tc)
        best = (float("inf"), 0, copy.deepcopy(self.model.state_dict()))
        step, evals_since_best, t0, scored = 0, 0, time.monotonic(), 0
        progress = lambda: max(step / tc.max_steps if tc.max_steps else 0.0,
                               (time.monotonic() - t0) / self.budget_s if self.budget_s else 0.0)
        self.model.train()
        with bar(total=tc.max_steps or None, desc="steps", unit="step", enabled=self.show) as shown:
            while progress() < 1 and evals_since_best < s.patience:
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(progress(), tc)
                x, y, m = self.batch(starts, mask)
                logits, _ = self.model(x)
                loss = (F.binary_cross_entropy_with_logits(logits[:, s.lookback:].float(), y, reduction="none")
                        * m).sum() / m.sum().clamp(min=1)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if tc.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
                optimizer.step()
                step += 1
                scored += int((m.sum(-1) > 0).sum().item())  # rows with a loss
                shown.update(1)
                if step % every == 0 or progress() >= 1:
                    val_loss = self.validation_loss(val)
                    if val_loss < best[0]:
                        best, evals_since_best = (val_loss, step, copy.deepcopy(self.model.state_dict())), 0
                    else:
                        evals_since_best += 1
        seconds = time.monotonic() - t0
        self.model.load_state_dict(best[2])
        self.model.eval()
        return {"steps": step, "best_step": best[1], "val_loss": best[0], "seconds": round(seconds, 2),
                "rows_per_s": round(scored / max(seconds, 1e-9)),
                "stopped": "early" if evals_since_best >= s.patience else "budget"}

    def validation_loss(self, val: np.ndarray) -> float:
        a, b = int(val.min()), int(val.max()) + 1
        p = predict_rows(self.model, self.x, a, b, self.cfg.series.lookback)
        self.model.train()
        y = np.full_like(self.y[a:b], np.nan)
        y[val - a] = self.y[val]
        return bce(y, p)

    def predict(self, a: int, b: int) -> np.ndarray:
        return predict_rows(self.model, self.x, a, b, self.cfg.series.lookback)
