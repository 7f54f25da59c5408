"""Score several texts in shared forward passes (the dynamic batch of /v1/score).

Each text is cut into the same windows `scoring.token_bits` uses (so every token
is scored once with the same context); windows from all texts are sorted by
length and run together, right-padded. Padding at the right changes nothing
before it because every model is causal; the network's bits match `token_bits`.
When the run has a count model, each text's network output is then mixed with
it in a fresh session, in order, as `seqlab eval` scores one file, so both report
the same figure for the same text.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..scoring import plan_windows


@torch.no_grad()
def score_texts(model, token_lists: list[np.ndarray], device, count_model=None,
                batch_tokens: int = 32768) -> list[tuple[np.ndarray, np.ndarray]]:
    """(bits, the network's bits alone) of tokens[1:] for each token array (tokens[0] is BOS).

    Texts are taken in groups of about batch_tokens tokens, so the log-probabilities
    kept for mixing stay bounded however many texts are queued.
    """
    out = []
    for group in _groups(token_lists, batch_tokens):
        for tokens, stream in zip(group, _network_streams(model, group, device, batch_tokens)):
            out.append(_bits(tokens, stream, count_model, device))
    return out


def _bits(tokens: np.ndarray, stream: list, count_model, device) -> tuple[np.ndarray, np.ndarray]:
    """(bits, the network's bits) from a text's network stream, mixed with the count model if there is one."""
    if count_model is None:
        bits = _cat([_surprisal(logp, targets) for _, logp, targets in stream])
        return bits, bits
    # a fresh session, each target's cost alone: a request is scored as `seqlab eval` scores one file (the bitwise
    # model's full rows prune improbable bytes, its costs do not)
    mixed = list(count_model.session(device).mix(iter(stream), tokens, 1, costs=True))
    return (_cat([-costs / math.log(2) for _, costs, _, _ in mixed]),
            _cat([_surprisal(network, targets) for _, _, targets, network in mixed]))


def _surprisal(logp, targets):
    return -logp.gather(1, targets[:, None])[:, 0] / math.log(2)


def _cat(pieces: list) -> np.ndarray:
    return torch.cat(pieces).cpu().numpy() if pieces else np.zeros(0)


def _network_streams(model, token_lists: list[np.ndarray], device, batch_tokens: int) -> list[list]:
    """Per text, [(first position, log-probs (n, V), targets (n,))] in order, as scoring.score_logits yields."""
    items = [(i, w) for i, tokens in enumerate(token_lists) for w in plan_windows(model, len(tokens), 1)]
    items.sort(key=lambda item: item[1].stop - 1 - item[1].start)
    pieces: list[list] = [[] for _ in token_lists]
    for batch in _batches(items, batch_tokens):
        width = max(w.stop - 1 - w.start for _, w in batch)
        x = torch.zeros(len(batch), width, dtype=torch.long)
        for row, (i, w) in enumerate(batch):
            x[row, : w.stop - 1 - w.start] = torch.from_numpy(token_lists[i][w.start : w.stop - 1])
        logits, _ = model(x.to(device))  # (B, width, V)
        for row, (i, w) in enumerate(batch):
            length, n = w.stop - 1 - w.start, w.stop - w.first
            logp = F.log_softmax(logits[row, length - n : length].float(), dim=-1)
            targets = torch.from_numpy(token_lists[i][w.first : w.stop]).to(device)
            pieces[i].append((w.first, logp, targets))
    return [sorted(p, key=lambda t: t[0]) for p in pieces]


def _groups(token_lists: list[np.ndarray], batch_tokens: int):
    """Consecutive texts of about batch_tokens tokens in all (a longer text forms a group alone)."""
    group, size = [], 0
    for tokens in token_lists:
        if group and size + len(tokens) > batch_tokens:
            yield group
            group, size = [], 0
        group.append(tokens)
        size += len(tokens)
    if group:
        yield group


def _batches(items, batch_tokens: int):
    """Consecutive (length-sorted) windows, at most about batch_tokens padded tokens per batch."""
    batch = []
    for item in items:
        width = item[1].stop - 1 - item[1].start
        if batch and (len(batch) + 1) * width > batch_tokens:
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch
