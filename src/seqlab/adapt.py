"""Online adaptation of the network while it scores: dynamic evaluation (Krause et al. 2018; nncp).

A compressor keeps learning from the text it codes; a frozen network does not. Here the network
scores a chunk of the text, then takes one gradient step on that chunk (text it has already
scored), and scores the next chunk with the new weights. Every prediction still uses only the
tokens before it, so the figure is an honest compression figure, and a decoder that has decoded
a chunk can take the very same step (docs/adapt.md states the contract).

    with Adapter(run.model, run.device) as adapter:           # weights restored on exit
        for first, log_probs, targets in adapter.stream(tokens, n_context):
            ...                                               # scored before the chunk's step

    text = adapter.text(n_context)                            # a decoder's view, a chunk at a time
    for first, stop in text.chunks(n_total):
        ... decode tokens[first:stop] ...
        text.learn(tokens[:stop], first, stop)                # the same step eval took

The chunks: the scored positions n_context.. in runs of `chunk` tokens (a multiple of a window
model's stride, so the windows are eval's own: scoring.plan_windows). A window model scores a
chunk as eval does, in sliding windows; a recurrent model reads the chunk from the state the
previous chunk left (the first chunk from a fresh state, over the text's context too). The
step: Adam on the chunk's mean cross-entropy, over every weight, state carried from chunk to
chunk and from text to text of one pass. Results are bit-for-bit repeatable given the torch
build and the thread count (`threads`, fixed for the pass).
"""

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .models.base import map_state
from .options import integer, number
from .scoring import TorchThreads, _batches_of_equal_length, plan_windows, window_log_probs

# Chosen on the tuning slices of three corpora's *training* splits (never their held-out bytes), with the count
# model mixed in as eval mixes it: the largest rate that made no slice's mixed figure worse (docs/adapt.md). Larger
# ones help the network alone more and the mix less: both models then learn the same recent text, counted twice.
DEFAULT_LR = 3e-5
DEFAULT_CHUNK = 256
BETAS = (0.9, 0.999)


@dataclass
class AdaptOptions:
    lr: float = DEFAULT_LR
    chunk: int = DEFAULT_CHUNK  # tokens scored between steps (rounded up to a window model's stride)
    threads: int = 0  # torch threads for the pass (0: as set); the result depends on it

    def describe(self, chunk: int) -> str:
        return f"Adam lr {self.lr:g} on each {chunk}-token chunk once scored"


class Adapter:
    """One scoring pass in which the model learns from what it has scored; restores its weights on close."""

    def __init__(self, model, device, options: AdaptOptions | None = None):
        self.model, self.device = model, torch.device(device)
        self.options = options or AdaptOptions()
        self.threads = self.options.threads or torch.get_num_threads()
        stride = model.max_context // 2 if model.max_context else 1
        self.chunk = -(-max(1, self.options.chunk) // stride) * stride  # eval's windows never straddle chunks
        self.saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.was_training = model.training
        model.eval()  # no dropout: the step must be repeatable
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(params, lr=self.options.lr, betas=BETAS)
        self.steps = 0

    def __enter__(self) -> "Adapter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Put the weights back as they were before the pass."""
        self.model.load_state_dict(self.saved)
        self.model.train(self.was_training)

    def describe(self) -> str:
        return self.options.describe(self.chunk)

    def learn_rows(self, known: torch.Tensor, valid: torch.Tensor, span: int) -> None:
        """A step on the last `span` tokens of each row of `known` (S, T), tokens a codec has already coded
        side by side (compress/lockstep.py), each learnt once as eval's chunks are; row i's tokens from column
        valid[i] on are padding. A window model reads them with up to its context before them, a recurrent
        one from a fresh state over them. Encoder and decoder call it with the same tensors: the same step."""
        model, end = self.model, known.shape[1]
        width = min(end, (model.max_context or span) + 1)
        window = known[:, end - width :]
        targets = window[:, 1:].clone()
        columns = torch.arange(end - width + 1, end)
        targets[(columns[None, :] >= valid[:, None]) | (columns[None, :] < end - span)] = -100  # padding, or learnt
        if not (targets >= 0).any():
            return
        with TorchThreads(self.threads), torch.enable_grad():
            logits, _ = model(window[:, :-1])
            self.step(F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=-100))

    def step(self, loss: torch.Tensor) -> None:
        """One Adam step on `loss` (inside the caller's thread and grad settings)."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.steps += 1

    def text(self, n_context: int) -> "AdaptedText":
        return AdaptedText(self, n_context)

    def stream(self, tokens: np.ndarray, n_context: int):
        """scoring.score_logits' stream for one text, one chunk at a time: each chunk's log-probabilities
        are from the weights before its step."""
        text = self.text(n_context)
        for first, stop in text.chunks(len(tokens)):
            log_probs = text.learn(tokens, first, stop)
            yield first, log_probs, torch.from_numpy(np.asarray(tokens[first:stop], dtype=np.int64)).to(self.device)


class AdaptedText:
    """One text read chunk by chunk: `learn` scores a chunk and takes the step on it."""

    def __init__(self, adapter: Adapter, n_context: int):
        assert n_context >= 1, "the first scored token needs at least one token before it"
        self.adapter, self.n_context = adapter, n_context
        self.state = None  # a recurrent model's state after the last chunk
        self.next_first = n_context

    def chunks(self, n_total: int) -> list[tuple[int, int]]:
        """(first, stop) of every chunk of a text of n_total tokens, in order."""
        c = self.adapter.chunk
        return [(a, min(a + c, n_total)) for a in range(self.n_context, n_total, c)]

    def learn(self, tokens: np.ndarray, first: int, stop: int) -> torch.Tensor:
        """Log-probabilities (stop - first, V) of tokens[first:stop] under the current weights, then one step on
        them. `tokens` needs only tokens[:stop]; chunks must come in order, as `chunks` gives them."""
        assert first == self.next_first and stop <= len(tokens), "chunks in order, each with the tokens before it"
        self.next_first = stop
        a = self.adapter
        with TorchThreads(a.threads), torch.enable_grad():
            log_probs = self._log_probs(np.asarray(tokens[:stop]), first, stop)
            targets = torch.from_numpy(np.asarray(tokens[first:stop], dtype=np.int64)).to(a.device)
            a.step(F.nll_loss(log_probs, targets))
        return log_probs.detach()

    def _log_probs(self, tokens: np.ndarray, first: int, stop: int) -> torch.Tensor:
        model, device = self.adapter.model, self.adapter.device
        if model.max_context:  # eval's sliding windows over the chunk, in batches of one input length
            windows = plan_windows(model, stop, first)
            parts = [window_log_probs(model, tokens, device, batch)[1]
                     for batch in _batches_of_equal_length(windows, len(windows) * model.max_context)]
            return torch.cat(parts)
        start = first - 1 if self.state is not None else 0  # the first chunk reads the text's context too
        x = torch.from_numpy(tokens[start : stop - 1].astype(np.int64))[None].to(device)
        features, state = model.features(x, self.state)
        self.state = map_state(torch.Tensor.detach, state)
        return F.log_softmax(model.output_layer()(features[0, -(stop - first) :]).float(), dim=-1)


def add_adapt_options(p, what: str) -> None:
    """--adapt, --adapt-lr and --adapt-chunk of a verb (eval, compress); `what` is --adapt's help."""
    p.add_argument("--adapt", action="store_true", help=what)
    p.add_argument("--adapt-lr", type=number(min=0, min_open=True), default=DEFAULT_LR,
                   help=f"its Adam learning rate (default {DEFAULT_LR:g})")
    p.add_argument("--adapt-chunk", type=integer(min=1), default=DEFAULT_CHUNK,
                   help=f"tokens between its steps (default {DEFAULT_CHUNK})")


def adapt_options(args) -> AdaptOptions | None:
    return AdaptOptions(lr=args.adapt_lr, chunk=args.adapt_chunk) if args.adapt else None
