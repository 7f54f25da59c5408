"""Score every token of a sequence exactly once, with as much context as the model can use.

Attention models (bounded context L) slide a window of L tokens with stride L/2:
each scored token sees at least L/2 tokens before it. Recurrent models score
blocks of BLOCK tokens, each warmed up on the WARMUP tokens before it (the
state is carried through the warm-up, unscored), so long texts run as parallel
chunks. Every scored token is predicted from the tokens before it only.
"""

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F

RNN_BLOCK = 4096
RNN_WARMUP = 1024
# Input tokens per forward pass. A recurrent model steps its blocks through time together, so it wants
# many rows; a window model's activations should stay in a CPU's cache: 2k-token batches score ~1.5x
# faster than 64k on 2 cores, where 64k spends a third of its time in page faults (bench/surprise_speed.py).
BATCH_TOKENS_RECURRENT = 65536
BATCH_TOKENS_WINDOWS = 2048
# A batch's log-probabilities are (tokens, vocabulary) float32, twice over (logits, then log_softmax): a word-level
# vocabulary of 32,768 made a 65k-token batch 17 GB. So a large vocabulary's batches hold fewer tokens.
BATCH_LOGITS_BYTES = 1 << 28


class TorchThreads:
    """Run with a given torch thread count (it can change float results), then restore it."""

    def __init__(self, n: int):
        self.n, self.saved = n, torch.get_num_threads()

    def __enter__(self):
        torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        torch.set_num_threads(self.saved)


@dataclass
class Window:
    start: int  # inputs are tokens[start : stop - 1]
    first: int  # first scored position; targets tokens[first : stop]
    stop: int


def plan_windows(model, n_total: int, n_context: int) -> list[Window]:
    """Windows covering positions n_context..n_total-1 once each (n_context >= 1)."""
    assert n_context >= 1, "the first scored token needs at least one token before it"
    if model.max_context:
        block, max_len = model.max_context // 2, model.max_context
    else:
        block, max_len = RNN_BLOCK, RNN_BLOCK + RNN_WARMUP
    windows = []
    for first in range(n_context, n_total, block):
        stop = min(first + block, n_total)
        windows.append(Window(max(0, stop - 1 - max_len), first, stop))
    return windows


def describe_context(model) -> str:
    if model.max_context:
        return f"sliding window of {model.max_context} tokens, stride {model.max_context // 2}"
    return f"carried state: blocks of {RNN_BLOCK} tokens, each warmed up on the {RNN_WARMUP} tokens before it"


def score_logits(model, tokens: np.ndarray, n_context: int, device, batch_tokens: int | None = None):
    """Yield (first_position, log_probs (n, V), targets (n,)) covering tokens[n_context:] in order.

    Each yield is one batch of consecutive windows; the output layer reads only their scored positions.
    On the CPU the batches are scored in torch.get_num_threads() threads at once, each op on one
    thread: a 2k-token batch's ops are too small to split well (2 cores score ~10% more this way),
    and whatever the caller does between batches (the count model's work) runs beside them.
    """
    windows = plan_windows(model, len(tokens), n_context)
    batches = list(_batches_of_equal_length(windows, batch_tokens or _logits_batch_tokens(model)))
    workers = min(torch.get_num_threads(), len(batches)) if torch.device(device).type == "cpu" else 1
    yield from _in_order(partial(_score_batch, model, tokens, device), batches, workers)


@torch.no_grad()
def _score_batch(model, tokens: np.ndarray, device, batch: list[Window]):
    return window_log_probs(model, tokens, device, batch)


def window_log_probs(model, tokens: np.ndarray, device, batch: list[Window]):
    """(first position, log_probs (n, V), targets (n,)) of a batch of windows of one input length, scored
    positions only; with gradients when they are enabled (adapt.py learns from them)."""
    x = torch.from_numpy(np.stack([tokens[w.start : w.stop - 1] for w in batch]).astype(np.int64))
    last = max(w.stop - w.first for w in batch)
    feats = model.window_features(x.to(device), last)  # (B, last, C)
    scored = torch.zeros(feats.shape[:2], dtype=torch.bool)
    for row, w in enumerate(batch):
        scored[row, last - (w.stop - w.first) :] = True
    logp = F.log_softmax(model.output_layer()(feats[scored.to(device)]).float(), dim=-1)
    first, stop = batch[0].first, batch[-1].stop
    return first, logp, torch.from_numpy(tokens[first:stop].astype(np.int64)).to(device)


def _in_order(fn, items: list, workers: int):
    """fn(item) for each item, yielded in order; with several workers, computed up to `workers` items
    ahead in as many threads, torch single-threaded in each (restored when the stream ends)."""
    if workers <= 1:
        yield from map(fn, items)
        return
    with TorchThreads(1), ThreadPoolExecutor(workers) as pool:
        ahead = deque(pool.submit(fn, item) for item in items[:workers])
        for item in items[workers:]:
            done = ahead.popleft().result()
            ahead.append(pool.submit(fn, item))
            yield done
        while ahead:
            yield ahead.popleft().result()


def _batch_tokens(model) -> int:
    return BATCH_TOKENS_WINDOWS if model.max_context else BATCH_TOKENS_RECURRENT


def _logits_batch_tokens(model) -> int:
    """_batch_tokens for a pass that computes log-probabilities: fewer for a large vocabulary (BATCH_LOGITS_BYTES);
    a pass that reads only states (vectors/embed.py) keeps the full batch."""
    return max(1, min(_batch_tokens(model), BATCH_LOGITS_BYTES // (4 * model.config.vocab_size)))


def _batches_of_equal_length(windows: list[Window], batch_tokens: int):
    """Consecutive windows of one input length, about batch_tokens tokens per batch."""
    batch: list[Window] = []
    for w in windows:
        length = w.stop - 1 - w.start
        if batch and (length != batch[0].stop - 1 - batch[0].start or len(batch) * length >= batch_tokens):
            yield batch
            batch = []
        batch.append(w)
    if batch:
        yield batch


def token_bits(model, tokens: np.ndarray, n_context: int, device) -> np.ndarray:
    """Surprisal in bits of each token in tokens[n_context:]."""
    out = [
        (-logp.gather(1, targets[:, None])[:, 0] / np.log(2)).cpu().numpy()
        for _, logp, targets in score_logits(model, tokens, n_context, device)
    ]
    return np.concatenate(out) if out else np.zeros(0)


def mixing_session(run):
    """State carried across the texts of one scoring pass (the count model's), or None without one."""
    return run.count_model.session(run.device) if run.count_model is not None else None


def score_run(run, tokens: np.ndarray, n_context: int, session=None, adapter=None, costs: bool = False):
    """Like score_logits for a whole run: yields (first, log_probs, targets, network_log_probs).

    When the run has a count model, log_probs are the network mixed with it; otherwise both are the
    network's. Pass one `session` (mixing_session) to score several texts as one stream, and an
    `adapter` (adapt.Adapter) to have the network learn from each chunk once it is scored. costs: log_probs
    holds only each target's log-probability (n,), not the rows (what eval needs: the bitwise model then
    evaluates only the byte's path).
    """
    if adapter is not None:
        stream = adapter.stream(tokens, n_context)
    else:
        stream = score_logits(run.model, tokens, n_context, run.device)
    session = session or mixing_session(run)
    if session is None:
        for first, logp, targets in stream:
            yield first, logp.gather(1, targets[:, None])[:, 0] if costs else logp, targets, logp
        return
    yield from session.mix(stream, tokens, n_context, costs)


def run_token_bits(run, tokens: np.ndarray, n_context: int, session=None, bar=None,
                   adapter=None) -> tuple[np.ndarray, np.ndarray]:
    """(bits of each token in tokens[n_context:], the network's bits alone); `bar` (progress.bar) counts tokens;
    `adapter` (adapt.Adapter): the network learns from each chunk once scored."""
    mixed, network = [], []
    for _, logp, targets, net_logp in score_run(run, tokens, n_context, session, adapter, costs=True):
        if bar is not None:
            bar.update(len(targets))
        mixed.append((-logp / np.log(2)).cpu().numpy())
        network.append((-net_logp.gather(1, targets[:, None])[:, 0] / np.log(2)).cpu().numpy())
    if not mixed:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(mixed), np.concatenate(network)


def describe_run_context(run) -> str:
    text = describe_context(run.model)
    if run.count_model is not None:
        from .countmodel import describe

        text += "; " + describe(run.count_model.config)
    return text
