"""Per-token surprisal, entropy and top-5 for `seqlab surprise`, fast on a CPU.

Why not scoring.score_logits as it is: it runs a recurrent model over blocks of
4096 tokens, each warmed up on 1024, so a 200 KB file is ~50 sequences, batched
12 at a time — too narrow a batch to keep a CPU's matrix units busy, while 20%
of the work is warm-up. Here a recurrent model scores blocks of BLOCK tokens,
each warmed up on the WARMUP tokens before it, and all the blocks of a group
step through time together as one wide batch; the output layer and the
statistics run only on scored positions. An LSTM's state forgets its start
within a few hundred tokens, so the shorter warm-up costs almost nothing
(bench/surprise_speed.py measures it). An LSTM runs its `scoring_features`:
the same features, its first layer's input projection looked up in a table.
Models with a bounded context keep scoring.py's sliding windows.

mixed=True scores through scoring.score_run instead (eval's headline path: the
count model mixed in, eval's blocks), so the bits sum to eval's total exactly.
"""

from dataclasses import dataclass

import numpy as np
import torch

from ..progress import bar
from ..scoring import describe_context, describe_run_context, score_logits, score_run

BLOCK = 1024  # recurrent models: tokens scored per sequence
WARMUP = 256  # ... read first to settle the state (unscored)
SEGMENT = 256  # time steps per forward call
GROUP_TOKENS = 1 << 18  # tokens run as one batch (bounds memory: a group's state and one segment's features)
LN2 = float(np.log(2))


@dataclass
class TokenScores:
    bits: np.ndarray  # (n,) surprisal of each scored token
    entropy: np.ndarray  # (n,) entropy of the prediction for it
    top_ids: np.ndarray  # (n, 5) the model's most likely tokens there
    top_probs: np.ndarray  # (n, 5)

    @classmethod
    def empty(cls, n: int, k: int = 5) -> "TokenScores":
        return cls(np.zeros(n), np.zeros(n), np.zeros((n, k), np.int64), np.zeros((n, k)))

    def put(self, where, logp: torch.Tensor, targets: torch.Tensor) -> None:
        """Fill positions `where` from log-probabilities (m, V) and the tokens that came (m,)."""
        self.bits[where] = (-logp.gather(1, targets[:, None])[:, 0] / LN2).cpu().numpy()
        self.entropy[where] = (-(logp.exp() * logp).sum(dim=1) / LN2).cpu().numpy()
        top_logp, top_ids = logp.topk(self.top_ids.shape[1], dim=1)
        self.top_ids[where] = top_ids.cpu().numpy()
        self.top_probs[where] = top_logp.exp().cpu().numpy()


def describe_scoring(run, mixed: bool) -> str:
    if mixed:
        return describe_run_context(run)
    if run.model.max_context:
        return describe_context(run.model) + "; the network alone"
    return f"carried state: blocks of {BLOCK} tokens, each warmed up on the {WARMUP} before it; the network alone"


@torch.inference_mode()
def score_tokens(run, tokens: np.ndarray, mixed: bool = False, session=None) -> TokenScores:
    """Scores of tokens[1:], each predicted from all the tokens before it (tokens[0] is BOS).

    mixed: through `session` (scoring.mixing_session), or a new one when none is given.
    """
    n = max(len(tokens) - 1, 0)
    k = min(5, run.tokenizer.vocab_size)
    scores = TokenScores.empty(n, k)
    with bar(total=n, desc="score", unit="tok") as progress:
        if mixed or run.model.max_context:
            stream = score_run(run, tokens, 1, session) if mixed else score_logits(run.model, tokens, 1, run.device)
            for first, logp, targets, *_ in stream:
                scores.put(slice(first - 1, first - 1 + len(targets)), logp, targets)
                progress.update(len(targets))
            return scores
        for rows in _groups(_plan_rows(len(tokens))):
            _score_group(run, tokens, rows, scores)
            progress.update(sum(stop - first for _, first, stop in rows))
    return scores


def _plan_rows(n_tokens: int) -> list[tuple[int, int, int]]:
    """(start, first, stop) per sequence: inputs tokens[start:stop-1], targets tokens[first:stop].

    The first sequence needs no warm-up (it begins at BOS), so it scores WARMUP + BLOCK tokens and
    every sequence has the same input length, WARMUP + BLOCK (the last may be shorter).
    """
    rows, first = [], 1
    stop = min(n_tokens, 1 + WARMUP + BLOCK)
    while first < stop:
        rows.append((max(0, first - 1 - WARMUP), first, stop))
        first, stop = stop, min(n_tokens, stop + BLOCK)
    return rows


def _groups(rows: list) -> list[list]:
    """Rows split into about-equal groups of at most GROUP_TOKENS input tokens."""
    per_group = max(1, GROUP_TOKENS // (WARMUP + BLOCK))
    n_groups = -(-len(rows) // per_group)
    size = -(-len(rows) // max(n_groups, 1))
    return [rows[i : i + size] for i in range(0, len(rows), size)]


def _score_group(run, tokens: np.ndarray, rows: list, scores: TokenScores) -> None:
    model, device = run.model, run.device
    length = max(stop - 1 - start for start, _, stop in rows)
    x = np.zeros((len(rows), length), dtype=np.int64)  # right padding: never read by a scored position
    target_pos = np.full((len(rows), length), -1, dtype=np.int64)  # the token each input predicts, -1 unscored
    for r, (start, first, stop) in enumerate(rows):
        x[r, : stop - 1 - start] = tokens[start : stop - 1]
        target_pos[r, first - 1 - start : stop - 1 - start] = np.arange(first, stop)
    x = torch.from_numpy(x).to(device)
    head, state = model.output_layer(), model.init_state(len(rows), device)
    for s in range(0, length, SEGMENT):
        feats, state = model.scoring_features(x[:, s : s + SEGMENT], state)
        pos = target_pos[:, s : s + SEGMENT]
        scored = pos >= 0
        if not scored.any():
            continue  # warm-up only
        logp = torch.log_softmax(head(feats[torch.from_numpy(scored).to(device)]).float(), dim=-1)
        where = pos[scored]
        scores.put(where - 1, logp, torch.from_numpy(tokens[where].astype(np.int64)).to(device))
