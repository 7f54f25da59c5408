"""One block of a file coded as segments read side by side, in lockstep.

A token at a time, one text is slow: every step is a handful of small matrix products
and a count-model lookup, whatever the batch. So a block of the file is cut into
`segments_for(n)` contiguous segments, each read from BOS as its own text (formats 15-18:
at line starts, after a newline, seams.py), and every
step predicts the next token of all of them at once: one model step of batch S, one
count-model blend of S rows (LockstepReader), one mix. The count model's session is
one for the whole file: every segment's tokens are counted every COUNT_EVERY steps
(countmodel/session.py), as eval counts its text every COUNT_EVERY tokens, and the
mixing weights take a step every `max(1, chunk // S)` steps, on as many tokens as
eval's chunk. The network's step runs in a worker thread beside the count model's blend (numpy and torch each
release the GIL in their kernels); the mixing weights' step on the last chunk is queued behind it, and the main
thread takes it back if the worker has not begun it when the blend is done (_learnt).

With the count model's bitwise model on (counts.bitcm, formats 135-138 and 143-146), the mix's rows go through it
(countmodel/bitrows.py BitRows: a row per segment over the shared slow state, its recent state its own) before
`pick`, and the step's bytes are learnt in row order after it; the mixer learns from the mix before it, as eval's.

Encoder and decoder run this very loop (same shapes, same order, same thread count),
so both see bit-identical probabilities; only `pick` differs: the encoder codes the
token it knows, the decoder decodes it.
"""

import copy
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..countmodel import Experts
from ..countmodel.lockstep import LockstepReader
from ..countmodel.session import MIX_FIRST
from ..scoring import TorchThreads
from ..train.speed import autocast, native_bf16

SEGMENT_TOKENS = 4096  # at least this many tokens per segment: each starts cold, without the text before it
MAX_SEGMENTS = 256  # rows per step
BLOCK_TOKENS = 1 << 22  # tokens coded as one block: memory stays bounded however large the file
# a segment read after a newline (seams.py) counts as this many tokens warmer to the warmth sets: its first token
# is mixed with the network's weight at its prior (a line start is a true context), not at the cold start's 0.3
LINE_WARMTH = 1
REACH = 1024  # a segment at a line start ends at most this many tokens past its span (seams.py)
BF16_ARCHS = ("transformer",)  # whose step runs in bf16 where the CPU computes it natively (measured: docs/compress.md)
CPU = torch.device("cpu")


def step_in_bf16(run) -> bool:
    """Whether compress runs the network's step under bf16 autocast on this CPU (formats 23-26, 143-146): a
    transformer's, where the CPU multiplies bf16 natively (train/speed.py's test: AVX512-BF16 or AMX): 1.34-1.41x
    fp32's step on a Xeon's AMX, the same speed on a Zen 4's AVX512-BF16 (docs/compress.md).
    The decoder must compute the same floats, so the header records it and a CPU without native bf16 refuses."""
    return run.config.arch in BF16_ARCHS and native_bf16(CPU)


def with_bf16_linears(model):
    """A copy of the model whose linear layers hold their weights in bf16, for a bf16 step without --adapt (which
    trains the model itself). Autocast casts each fp32 weight to bf16 at every step (its cache keeps only the casts
    of weights that take gradients), about a seventh of the step: the same rounding once gives the same bf16
    weights, so the same floats; the embeddings and layer norms stay fp32, as autocast reads them."""
    twin = copy.deepcopy(model)
    for module in twin.modules():
        if isinstance(module, nn.Linear):  # a weight tied to the embedding (the output layer's) becomes its own
            module.weight = nn.Parameter(module.weight.detach().to(torch.bfloat16), requires_grad=False)
            if module.bias is not None:
                module.bias = nn.Parameter(module.bias.detach().to(torch.bfloat16), requires_grad=False)
    return twin


def segments_for(n_tokens: int) -> int:
    return max(1, min(MAX_SEGMENTS, n_tokens // SEGMENT_TOKENS))


def segment_lengths(n_tokens: int, segments: int) -> np.ndarray:
    """Tokens in each segment: all ceil(n / S) but the last."""
    per = -(-n_tokens // segments) if n_tokens else 0
    return np.clip(n_tokens - per * np.arange(segments), 0, per)


@dataclass
class Layout:
    """A block's segments: their lengths (tokens, in the text's order) and the token each is read after
    (its first context: BOS, or a newline for a segment moved to a line start, formats 15-18)."""

    lengths: np.ndarray  # int64 (S,)
    first: np.ndarray  # int64 (S,)

    @classmethod
    def nominal(cls, n_tokens: int, bos: int) -> "Layout":
        lengths = segment_lengths(n_tokens, segments_for(n_tokens))
        return cls(lengths.astype(np.int64), np.full(len(lengths), bos, dtype=np.int64))

    def rows(self, tokens: np.ndarray) -> np.ndarray:
        """(S, steps): the block's tokens as code_block reads them, 0 past each segment's end."""
        out = np.zeros((len(self.lengths), int(self.lengths.max(initial=0))), dtype=np.int64)
        for row, (start, n) in enumerate(zip(self.starts(), self.lengths)):
            out[row, :n] = tokens[start : start + n]
        return out

    def read(self, step: int, tokens: np.ndarray) -> None:
        """Step `step`'s tokens were read (every row's): a layout whose lengths are known has nothing to learn."""

    def starts(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)

    def text(self, rows: np.ndarray) -> np.ndarray:
        """The block's tokens back from rows (S, steps), in the text's order."""
        return np.concatenate([rows[row, :n] for row, n in enumerate(self.lengths)]) if len(rows) else rows


def _learnt(learning: tuple | None, session) -> None:
    """The mixing weights' step on a chunk (learning: its future in the worker, queued behind the network's step, and
    the chunk), done before the next mix reads the weights: taken here if the worker has not begun it, so whichever
    thread is free first takes it (the same floats in either thread)."""
    if learning is None:
        return
    future, chunk = learning
    if future.cancel():
        _learn_chunk(session, chunk)
    else:
        future.result()


def _network_step(model, x: torch.Tensor, state, bf16: bool):
    with torch.no_grad(), autocast(CPU, bf16):  # autocast's state is per thread: entered in the worker
        logits, state = model.step(x, state)
    return F.log_softmax(logits.float(), dim=-1), state


@torch.no_grad()
def code_block(run, session, n_tokens: int, threads: int, pick, progress=None, adapter=None,
               layout: "Layout | None" = None, bf16: bool = False) -> None:
    """Step through a block of n_tokens as segments_for(n_tokens) segments in lockstep.

    pick(j, active, logp) gets step j's mixed log-probabilities (S, V) and which rows still have a
    token (bool (S,)); it returns every row's token at step j (int64 (S,), anything for inactive rows).
    session: the file's count-model session (CountSession), or None for the network alone.
    adapter: an adapt.Adapter (compress --adapt): every max(1, chunk // S) steps the network takes a step
    on the tokens coded since (learn_rows); the next steps predict with the new weights and the state
    (recurrent state, KV cache) built before, as the decoder does.
    layout: the segments' lengths and first contexts (Layout); by default segment_lengths' cuts, each from BOS.
    bf16: the network's step under bf16 autocast (step_in_bf16: formats 23-26, 143-146).
    """
    layout = layout or Layout.nominal(n_tokens, run.tokenizer.bos_id)
    lengths = layout.lengths  # a decoder's seams.Chain learns some as it reads: until then, their most
    n_rows, steps = len(lengths), int(lengths.max(initial=0))
    model = with_bf16_linears(run.model) if bf16 and adapter is None else run.model
    # a bf16 step's keys and values are bf16: a cache of them (BF16_ARCHS' init_state takes its dtype)
    state = model.init_state(n_rows, CPU, torch.bfloat16) if bf16 else model.init_state(n_rows, CPU)
    x = torch.from_numpy(layout.first.copy())
    ahead = np.where(layout.first != run.tokenizer.bos_id, LINE_WARMTH, 0)
    reader = LockstepReader(session, n_rows, layout.first, steps, ahead) if session is not None else None
    bitwise = _bit_rows(session.bitcm, layout.first, n_tokens) if reader and session.bitcm else None
    from_bos = torch.from_numpy(layout.first == run.tokenizer.bos_id)  # rows whose first bytes are the mix's
    every = max(1, run.config.counts.chunk // n_rows)
    adapt_every = max(1, adapter.chunk // n_rows) if adapter is not None else 0
    known = x[:, None].repeat(1, steps + 1) if adapter is not None else None
    pending: list = []
    due: list = []  # a chunk whose weights' step is queued behind the next network step
    learning = None  # (its future, the chunk)
    j = 0
    # the worker's torch threads are its own (OpenMP's count is per thread): set in it, as in this one
    with ThreadPoolExecutor(1, initializer=torch.set_num_threads, initargs=(threads,)) as pool, TorchThreads(threads):
        net = pool.submit(_network_step, model, x, state, bf16) if steps else None
        while j < lengths.max(initial=0):
            active = lengths > j
            experts = reader.distributions() if reader else None
            _learnt(learning, session)
            net_logp, state = net.result()
            before = session.mixer.premix(net_logp, experts) if reader else net_logp  # what the weights learn from
            kept = session.mixer.sse_inputs(before, experts) if reader else None  # and the SSE stage, with it
            logp = session.mixer.refine(before, experts, kept) if reader else net_logp
            coded = _bitwise(bitwise, logp, net_logp, active, from_bos if j < MIX_FIRST else None) if bitwise else logp
            tokens = pick(j, active, coded)
            if bitwise:
                bitwise.learn(tokens, active)
            layout.read(j, tokens)
            last = j + 1 >= lengths.max()
            if reader:
                pending.append((before, kept, net_logp, experts, tokens, active))
                if len(pending) == every or last:
                    due, pending = pending, []
            x = torch.from_numpy(tokens)
            if adapter is not None:
                known[:, j + 1] = x
                if (j + 1) % adapt_every == 0 or last:
                    adapter.learn_rows(known[:, : j + 2], torch.from_numpy(lengths + 1), adapt_every)
            if not last:  # the next step's network (and the weights' step on `due`) beside the counting below
                net = pool.submit(_network_step, model, x, state, bf16)
                learning = (pool.submit(_learn_chunk, session, due), due) if due else None
                due = []
            if reader:
                reader.append(tokens, active)
                if (j + 1) % session.count_every == 0 or last:
                    reader.advance()
            if progress is not None:
                progress(int(active.sum()))
            j += 1
    if due:  # the block's last chunk: the next block's mix reads the weights after it
        _learn_chunk(session, due)


def row_bound(n_tokens: int) -> int:
    """The most tokens any segment of a block of n_tokens can have, nominal or at line starts (seams.py: none
    ends more than REACH past a nominal segment's length): what the encoder and the decoder both know first."""
    return int(segment_lengths(n_tokens, segments_for(n_tokens)).max(initial=0)) + REACH


def _bit_rows(bitcm, first: np.ndarray, n_tokens: int):
    from ..countmodel.bitrows import BitRows  # here: numba's import, as the session's

    return BitRows(bitcm, first, row_bound(n_tokens))


def _bitwise(rows, logp: torch.Tensor, net_logp: torch.Tensor, active: np.ndarray,
             from_mix: torch.Tensor | None) -> torch.Tensor:
    """The bitwise model's distributions (countmodel/bitcm.py) of every active row's next token, the mix's row and the
    network's inputs at each bit, as eval's CountSession._bitwise gives them (BOS: its floor); the rows from_mix (a
    text's first bytes after BOS, MIX_FIRST) code with the mix's row, read by the bitwise model all the same."""
    from ..countmodel.bitrows import byte_rows

    mixed, network = logp.double().numpy(), net_logp.double().numpy()
    out = torch.from_numpy(byte_rows(rows.score(mixed[:, :256], active, network[:, :256]),
                                     np.ones(len(active), dtype=bool), logp.shape[1])).to(logp)
    return out if from_mix is None else torch.where(from_mix[:, None], logp, out)


def _learn_chunk(session, pending: list) -> None:
    """A step of the mixing weights on the steps since the last (their rows with a token), from the mix before the
    SSE stage and the SSE stage's inputs that each step kept (mixing them again cost a fifth of the worker)."""
    before, kept, net_logp, experts, tokens = [], [], [], [], []
    for lp, sse, net, ex, tok, active in pending:
        rows = torch.from_numpy(active)
        before.append(lp[rows])
        kept.append(None if sse is None else (sse[0][rows], tuple(cell[rows] for cell in sse[1])))
        net_logp.append(net[rows])
        experts.append(ex.select(active))
        tokens.append(torch.from_numpy(tok[active]))
    inputs = None if kept[0] is None else (torch.cat([k[0] for k in kept]),
                                           tuple(map(torch.cat, zip(*(k[1] for k in kept)))))
    session.mixer.learn(torch.cat(before), torch.cat(net_logp), Experts.concat(experts), torch.cat(tokens), inputs)
