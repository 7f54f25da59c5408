"""Reading a group of candidate edits' tails after one prefix, in stages (fix.py _edit_bits_all): the network
reads each stage's rows as one batch, and gives them what one read of every tail would give them."""

import copy

import numpy as np
import torch

LN2 = float(np.log(2))


def _repeat_state(model, state, n: int):
    """The batch-1 state repeated n times along its batch dimension."""
    return _map_batch(model, state, lambda s, dim: s.repeat_interleave(n, dim=dim))


def _select_state(model, state, rows: list[int]):
    """The state of some rows of a batch."""
    index = torch.tensor(rows)
    return _map_batch(model, state, lambda s, dim: s.index_select(dim, index.to(s.device)))


def _map_batch(model, state, fn):
    """fn(tensor, its batch dimension) applied to every tensor of a state (the dimension found by comparing
    init_state's shapes for batches of 1 and 2)."""
    one, two = (model.init_state(n, torch.device("cpu")) for n in (1, 2))

    def walk(s, a, b):
        if isinstance(s, torch.Tensor):
            dim = next(d for d in range(s.dim()) if a.shape[d] == 1 and b.shape[d] == 2)
            return fn(s, dim)
        if isinstance(s, (tuple, list)):
            return type(s)(walk(*parts) for parts in zip(s, a, b))
        if hasattr(s, "__dict__"):
            out = copy.copy(s)
            for k, v in vars(s).items():
                setattr(out, k, walk(v, getattr(a, k), getattr(b, k)))
            return out
        return s

    return walk(state, one, two)


class _TailRead:
    """One group's tails after one prefix, read by the network in stages (the rows and positions each
    stage asks for) and judged; each stage gives what one read of every tail would give (a transformer
    whose cache one read would overflow re-reads the last half window before the tails, here too)."""

    def __init__(self, judge, state, last_logits: torch.Tensor, history: np.ndarray, tails: list):
        model, device = judge.run.model, judge.run.device
        self.model, self.state, self.last = model, state, last_logits.float()
        self.lengths = np.array([len(t) for t in tails])
        self.width = int(self.lengths.max())
        batch = np.zeros((len(tails), self.width), dtype=np.int64)
        for i, t in enumerate(tails):
            batch[i, : len(t)] = t
        self.y = torch.from_numpy(batch).to(device)
        self.before = None  # (tails, width, depth): the tokens before each position, as fix._tokens_before's rows
        if judge.session is not None:
            head = np.concatenate([np.full(judge.depth, -1, dtype=np.int64), history])
            seqs = np.concatenate([np.broadcast_to(head, (len(tails), len(head))), batch], axis=1)
            last = len(head) - 1 + np.arange(self.width)  # the index of the token before position j
            self.before = seqs[:, last[:, None] - np.arange(judge.depth)[None, :]]
        self.bits = torch.full((len(tails), self.width), float("nan"))
        self.carried = None  # (rows, state after the last stage that read them): where the next stage goes on
        inputs, limit = self.width - 1, model.max_context
        self.window = None
        if limit and hasattr(state, "tokens") and state.length + inputs > limit:  # Transformer.features re-reads
            keep = max(limit // 2, inputs)
            self.window = torch.cat([state.tokens.expand(len(tails), -1), self.y[:, :-1]], dim=1)[:, -keep:]

    def network(self, rows: list[int], lo: int, hi: int) -> torch.Tensor:
        """The network's log-probabilities (len(rows), hi - lo, V) at positions lo..hi-1 of tails `rows`
        (lo > 0: these rows' positions up to lo were the last stage read)."""
        model, x, parts = self.model, self.y[rows, :-1], []
        if lo == 0:
            parts.append(self.last[None, None].expand(len(rows), 1, -1))
        first = max(lo, 1)  # position j is predicted from input j - 1
        if first < hi and self.window is not None:
            offset = self.window.shape[1] - x.shape[1]  # the window's index of input 0
            out, _ = model(self.window[rows, : offset + hi - 1])
            parts.append(out[:, offset + first - 1 :].float())
        elif first < hi:
            if lo == 0:
                state = _repeat_state(model, self.state, len(rows))
            else:
                carried_rows, carried = self.carried
                state = _select_state(model, carried, [carried_rows.index(r) for r in rows])
            out, state = model(x[:, first - 1 : hi - 1], state)
            parts.append(out.float())
            self.carried = (rows, state)
        return torch.log_softmax(torch.cat(parts, dim=1), dim=-1)

    def total(self, rows: list[int]) -> np.ndarray:
        """Bits judged so far of each of `rows`, summed in position order (float32)."""
        m = self.bits[rows]
        valid = ~torch.isnan(m)
        return torch.zeros(len(rows)).index_add_(0, valid.nonzero()[:, 0], m[valid]).numpy()

    def totals(self) -> np.ndarray:
        """Every tail's bits; infinity for a tail not read to its end."""
        out = self.total(list(range(len(self.lengths))))
        unread = torch.isnan(self.bits[:, : self.width]) & (torch.arange(self.width)[None] < torch.from_numpy(
            self.lengths)[:, None])
        out[unread.any(dim=1).numpy()] = np.inf
        return out


def _judge_stage(judge, stages: list[tuple]) -> None:
    """Read and judge positions lo..hi-1 of some rows of some groups ((_TailRead, rows, lo, hi) each):
    the network group by group, the judge's blend of the counts once for all."""
    net, targets, before, where = [], [], [], []
    for read, rows, lo, hi in stages:
        hi = min(hi, read.width)
        if not rows or lo >= hi:
            continue
        positions = np.arange(lo, hi)
        valid = positions[None, :] < read.lengths[rows][:, None]  # (rows, positions)
        logp = read.network(rows, lo, hi)
        mask = torch.from_numpy(valid)
        net.append(logp[mask])
        targets.append(read.y[rows, lo:hi][mask])
        if read.before is not None:
            before.append(read.before[rows, lo:hi][valid])
        where.append((read, rows, lo, hi, mask))
    if not net:
        return
    logp = judge.mixed(torch.cat(net), np.concatenate(before) if before else None)
    bits = (-logp.gather(1, torch.cat(targets)[:, None])[:, 0] / LN2).cpu()
    at = 0
    for read, rows, lo, hi, mask in where:
        n = int(mask.sum())
        block = torch.full(mask.shape, float("nan"))
        block[mask] = bits[at : at + n]
        read.bits[rows, lo:hi] = block
        at += n
