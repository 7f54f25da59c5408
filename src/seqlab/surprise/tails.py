"""Reading a group of candidate edits' tails after one prefix, in stages (fix.py _edit_bits_all): the network
reads each stage's rows as one batch, and gives them what one read of every tail would give them."""

import copy

import numpy as np
import torch

from ..models.transformer import features_at, features_masked

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
    return _zip_batch(model, [state], lambda parts, dim: fn(parts[0], dim))


def _cat_states(model, states: list):
    """Several states side by side as one batch, in their order."""
    return _zip_batch(model, states, lambda parts, dim: torch.cat(parts, dim=dim))


def _zip_batch(model, states: list, fn):
    """fn(the states' corresponding tensors, their batch dimension) in place of every tensor of the states'
    common structure (the dimension found by comparing init_state's shapes for batches of 1 and 2)."""
    one, two = (model.init_state(n, torch.device("cpu")) for n in (1, 2))

    def walk(parts, a, b):
        s = parts[0]
        if isinstance(s, torch.Tensor):
            dim = next(d for d in range(s.dim()) if a.shape[d] == 1 and b.shape[d] == 2)
            return fn(parts, dim)
        if isinstance(s, (tuple, list)):
            return type(s)(walk(list(p), *ab) for p, *ab in zip(zip(*parts), a, b))
        if hasattr(s, "__dict__"):
            out = copy.copy(s)
            for k in vars(s):
                setattr(out, k, walk([getattr(p, k) for p in parts], getattr(a, k), getattr(b, k)))
            return out
        return s

    return walk(list(states), one, two)


class StepRows:
    """Several texts' states stepped a token each, side by side in one batch (each text's own state
    given, batch 1): a recurrent state's rows are concatenated; transformer caches of different lengths
    are read with a key mask (transformer.features_at). A cache that `steps` more tokens would overflow
    (where features re-reads a half window) is stepped on its own, as before."""

    def __init__(self, model, states: list, steps: int):
        self.model = model
        cached = [hasattr(s, "length") for s in states]
        fits = [not c or s.length + steps <= model.max_context for s, c in zip(states, cached)]
        self.batched = [i for i, ok in enumerate(fits) if ok]
        # a copy of each state stepped on its own (a transformer's cache changes in place)
        self.states = [None if ok else _repeat_state(model, s, 1) for s, ok in zip(states, fits)]
        self.lengths, self.state, rows = None, None, [states[i] for i in self.batched]
        if rows and any(cached):  # one cache of the rows' keys and values (their lengths and tokens differ)
            self.lengths = torch.tensor([s.length for s in rows])
            self.state = copy.copy(rows[0])
            self.state.k, self.state.v = ([torch.cat(layer) for layer in zip(*(getattr(s, kv) for s in rows))]
                                          for kv in ("k", "v"))
        elif rows:
            self.state = _cat_states(model, rows)

    @torch.no_grad()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (n, V) of every text's next token after tokens (n,), one each."""
        model, out = self.model, [None] * len(self.states)
        if self.batched:
            x = tokens[self.batched]
            if self.lengths is not None:
                logits = model.output_layer()(features_at(model, x[:, None], self.state, self.lengths))[:, -1]
                self.lengths += 1
            else:
                logits, self.state = model.step(x, self.state)
            for row, i in enumerate(self.batched):
                out[i] = logits[row]
        alone = set(self.batched)
        for i, s in enumerate(self.states):
            if i not in alone:
                logits, self.states[i] = model.step(tokens[i : i + 1], s)
                out[i] = logits[0]
        return torch.stack(out)


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
        self.contexts = None  # (tails, width, orders): the count model's context ids of each position
        if judge.session is not None:
            self.contexts = judge.contexts(history, batch)
        self.bits = torch.full((len(tails), self.width), float("nan"))
        # prefix[i, j]: which of the tails' distinct beginnings tail i's first j tokens are (the inserts of the
        # expected text's first k tokens share them, as an insert and the replacements by the same text do):
        # its position j is predicted from them alone, and judged once for every tail that shares them
        self.prefix = np.zeros((len(tails), self.width), dtype=np.int64)
        for j in range(1, self.width):
            pairs = self.prefix[:, j - 1] * (int(batch.max()) + 1) + batch[:, j - 1]
            self.prefix[:, j] = self.prefix[:, j - 1].max() + 1 + np.unique(pairs, return_inverse=True)[1]
        self.carried = {}  # row: (the joint state the last stage that read it left, its index there)
        inputs, limit = self.width - 1, model.max_context
        self.window = None
        if limit and hasattr(state, "tokens") and state.length + inputs > limit:  # Transformer.features re-reads
            keep = max(limit // 2, inputs)
            self.window = torch.cat([state.tokens.expand(len(tails), -1), self.y[:, :-1]], dim=1)[:, -keep:]

    def network(self, rows: list[int], lo: int, hi: int) -> torch.Tensor:
        """The network's log-probabilities (len(rows), hi - lo, V) at positions lo..hi-1 of tails `rows`, for
        a group that re-reads a window (else _read_together reads it with others), or of position 0 alone."""
        model, x, parts = self.model, self.y[rows, :-1], []
        if lo == 0:
            parts.append(self.last[None, None].expand(len(rows), 1, -1))
        first = max(lo, 1)  # position j is predicted from input j - 1
        if first < hi:
            assert self.window is not None, "a group without a window is read with the others (_read_together)"
            offset = self.window.shape[1] - x.shape[1]  # the window's index of input 0
            out, _ = model(self.window[rows, : offset + hi - 1])
            parts.append(out[:, offset + first - 1 :].float())
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
    the network all groups' rows in a few batches (_network), the judge's blend of the counts once for all."""
    stages = [(read, rows, lo, min(hi, read.width)) for read, rows, lo, hi in stages]
    stages = [stage for stage in stages if stage[1] and stage[2] < stage[3]]
    if not stages:
        return
    net, targets, contexts, prefixes, where, groups = [], [], [], [], [], {}
    for (read, rows, lo, hi), logp in zip(stages, _network(stages)):
        positions = np.arange(lo, hi)
        valid = positions[None, :] < read.lengths[rows][:, None]  # (rows, positions)
        mask = torch.from_numpy(valid)
        net.append(logp[mask])
        targets.append(read.y[rows, lo:hi][mask])
        if read.contexts is not None:
            contexts.append(read.contexts[rows, lo:hi][valid])
        group = groups.setdefault(id(read), len(groups))
        prefixes.append(read.prefix[rows, lo:hi][valid] * (len(stages) + 1) + group)
        where.append((read, rows, lo, hi, mask))
    # each distinct (group, beginning) judged once: the same network output and count contexts
    _, once, copies = np.unique(np.concatenate(prefixes), return_index=True, return_inverse=True)
    net = torch.cat(net)[torch.from_numpy(once)]
    logp = judge.mixed(net, np.concatenate(contexts)[once] if contexts else None)[torch.from_numpy(copies.ravel())]
    bits = (-logp.gather(1, torch.cat(targets)[:, None])[:, 0] / LN2).cpu()
    at = 0
    for read, rows, lo, hi, mask in where:
        n = int(mask.sum())
        block = torch.full(mask.shape, float("nan"))
        block[mask] = bits[at : at + n]
        read.bits[rows, lo:hi] = block
        at += n


PAD = 4  # positions a transformer's row may be padded by to join a longer stage's batch (_network)


def _network(stages: list[tuple]) -> list[torch.Tensor]:
    """The network's log-probabilities (len(rows), hi - lo, V) of each (read, rows, lo, hi), as
    _TailRead.network gives them: the rows of every group that needs no re-read window in a few batches,
    those of stages of the same length together. A transformer's row may be padded by PAD positions past
    its stage to join a longer one: the next stage writes over the padding's keys before any position
    reads them. A recurrent state read past a row's stage would be wrong where the next stage goes on."""
    pad = PAD if hasattr(stages[0][0].state, "length") else 0
    out = [None] * len(stages)
    joint = []
    for k, (read, rows, lo, hi) in enumerate(stages):
        if read.window is None and max(lo, 1) < hi:
            joint.append(k)
        else:
            out[k] = read.network(rows, lo, hi)
    joint.sort(key=lambda k: (stages[k][2], -stages[k][3]))
    while joint:
        lo, longest = stages[joint[0]][2], stages[joint[0]][3]
        batch = [k for k in joint if stages[k][2] == lo and stages[k][3] >= longest - pad]
        joint = [k for k in joint if k not in batch]
        for k, logp in zip(batch, _read_together([stages[k] for k in batch])):
            out[k] = logp
    return out


def _read_together(stages: list[tuple]) -> list[torch.Tensor]:
    """_TailRead.network for several groups' stages that start at the same position, as one batch: each
    row goes on from its group's prefix (lo = 0; a transformer's first stage is read as trees, _Trees)
    or from where the last stage left it (a transformer's rows with a length each:
    transformer.features_at). A stage shorter than the batch is padded (_network says when that is
    safe)."""
    lo, cached = stages[0][2], hasattr(stages[0][0].state, "length")
    if cached and lo == 0:
        return _read_trees(stages)
    first = max(lo, 1)  # position j is predicted from input j - 1
    model, width = stages[0][0].model, max(hi for *_, hi in stages) - first
    x = torch.cat([torch.nn.functional.pad(read.y[rows, first - 1 : hi - 1], (0, width - (hi - first)))
                   for read, rows, _, hi in stages])
    if lo == 0:
        parts = [(read.state, [0] * len(rows)) for read, rows, *_ in stages]
    else:
        parts = [_carried(read, rows) for read, rows, *_ in stages]
    if cached:
        lengths = torch.cat([torch.full((len(rows),), read.state.length) for read, rows, *_ in stages])
        slots = int(lengths.max()) + first - 1 + width
        state = copy.copy(stages[0][0].state)
        state.k, state.v = _rows_of(parts, slots)
        logits = model.output_layer()(features_at(model, x, state, lengths + first - 1))
    else:
        state = _cat_states(model, [_select_state(model, s, index) for s, index in parts])
        logits, state = model(x, state)
    out, at = [], 0
    for read, rows, _, hi in stages:
        part = [logits[at : at + len(rows), : hi - first].float()]
        if lo == 0:
            part.insert(0, read.last[None, None].expand(len(rows), 1, -1))
        read.carried.update({r: (state, at + i) for i, r in enumerate(rows)})
        out.append(torch.log_softmax(torch.cat(part, dim=1), dim=-1))
        at += len(rows)
    return out


def _rows_of(parts: list[tuple], slots: int) -> tuple[list, list]:
    """The keys and values (a tensor per layer each) of the rows `parts` give ((state, indices) each: a
    cache of batch 1 for its every row, a batch's cache or a _Trees), side by side, with `slots` positions
    (zeros past a state's own)."""
    trees = parts[0][0]
    if isinstance(trees, _Trees) and all(s is trees for s, _ in parts):  # one gather for every group's rows
        return trees.rows([i for _, index in parts for i in index], slots)
    given = [s.rows(index, slots) if isinstance(s, _Trees) else (s.k, s.v) for s, index in parts]
    return tuple([_side_by_side(parts, [g[kv][layer] for g in given], slots) for layer in range(len(given[0][kv]))]
                 for kv in (0, 1))


def _side_by_side(parts: list[tuple], tensors: list[torch.Tensor], slots: int) -> torch.Tensor:
    """One layer's keys or values (rows, heads, slots, head size) of the rows `parts` give, from each part's
    tensor of that layer."""
    first = tensors[0]
    out = first.new_empty((sum(len(index) for _, index in parts), first.shape[1], slots, first.shape[3]))
    at = 0
    for t, (state, index) in zip(tensors, parts):
        n, kept = len(index), min(slots, t.shape[2])
        if isinstance(state, _Trees):
            rows = t  # already the rows asked for
        elif t.shape[0] == 1:
            rows = t[:1]  # a prefix's state, batch 1: the same for every row
        else:
            rows = t[torch.tensor(index, device=t.device)]
        out[at : at + n, :, :kept] = rows[:, :, :kept]
        out[at : at + n, :, kept:] = 0  # masked, but a value times a weight of 0 must not be nan
        at += n
    return out


class _Trees:
    """Several groups' tails through their first inputs, each group read as one tree of its tails'
    distinct beginnings (transformer.features_masked: each token attends to its prefix and its own
    ancestors, at the position it has in its tails): a beginning several tails share is read once. Keeps
    the tree's keys and values, and gives any tail's cache as reading it alone would have left it."""

    def __init__(self, stages: list[tuple]):
        read = stages[0][0]
        model, device = read.model, read.y.device
        trees = []  # per group: (prefix length, path (rows, inputs) of node indices, -1 where not read, tokens, depths)
        for read, rows, _, hi in stages:
            inputs = hi - 1
            valid = np.arange(1, hi)[None, :] < read.lengths[rows][:, None]  # input i predicts position i + 1
            ids = read.prefix[rows, 1:hi]
            _, first, local = np.unique(ids[valid], return_index=True, return_inverse=True)
            path = np.full((len(rows), inputs), -1, dtype=np.int64)
            path[valid] = local.ravel()
            tokens = read.y[rows, :inputs].cpu().numpy()[valid][first]
            depths = np.nonzero(valid)[1][first]
            trees.append((read.state.length, path, tokens, depths))
        n_nodes = max(len(t[2]) for t in trees)
        self.base = max(t[0] for t in trees)  # node n of a tree is at cache slot base + n
        keys = self.base + n_nodes
        idx = torch.zeros(len(trees), n_nodes, dtype=torch.long)
        pos = torch.zeros(len(trees), n_nodes, dtype=torch.long)
        sees = torch.zeros(len(trees), n_nodes, keys, dtype=torch.bool)
        for b, (length, path, tokens, depths) in enumerate(trees):
            idx[b, : len(tokens)] = torch.from_numpy(tokens)
            pos[b, : len(tokens)] = torch.from_numpy(length + depths)
            sees[b, :, :length] = True
            ancestors = np.zeros((n_nodes, n_nodes), dtype=bool)
            ancestors[np.arange(n_nodes), np.arange(n_nodes)] = True  # padding sees itself
            for i in range(path.shape[1]):
                on = path[:, i] >= 0
                ancestors[path[on, i][:, None], path[on, : i + 1]] = True
            sees[b, :, self.base :] = torch.from_numpy(ancestors)
        t = read.state.k[0]  # the keys and values of every layer in one tensor: rows() gathers them at once
        self.kv = t.new_zeros((2, len(read.state.k), len(trees), t.shape[1], keys, t.shape[3]))
        for b, (read, *_) in enumerate(stages):
            length = read.state.length
            self.kv[:, :, b, :, :length] = torch.stack([torch.stack(read.state.k), torch.stack(read.state.v)])[
                :, :, 0, :, :length]
        state = copy.copy(stages[0][0].state)
        state.k, state.v = list(self.kv[0]), list(self.kv[1])
        slots = self.base + torch.arange(n_nodes)[None].expand(len(trees), n_nodes)
        self.logits = model.output_layer()(features_masked(model, idx.to(device), pos.to(device), state,
                                                           slots.to(device), sees.to(device)))
        self.trees = trees
        self.group_of = np.concatenate([np.full(len(rows), b) for b, (_, rows, *_) in enumerate(stages)])
        self.length_of = np.array([t[0] for t in trees])[self.group_of]
        widest = max(t[1].shape[1] for t in trees)
        self.path = np.concatenate([np.pad(t[1], ((0, 0), (0, widest - t[1].shape[1])), constant_values=-1)
                                    for t in trees])  # every group's rows laid end to end

    def outputs(self, b: int) -> torch.Tensor:
        """Group b's logits (rows, inputs, V): each input's node's (meaningless where it was not read)."""
        path = torch.from_numpy(self.trees[b][1]).clamp(min=0)
        return self.logits[b][path]

    def rows(self, index: list[int], slots: int) -> tuple[list, list]:
        """The keys and values (a tensor (len(index), heads, slots, head size) per layer each) of the rows
        `index` (into every group's rows, laid end to end) as reading each alone would have left its cache:
        its prefix, then the nodes of its path (zeros past them). One gather for every layer."""
        kv, index = self.kv, np.asarray(index)
        group = self.group_of[index]
        prefix = min(self.base, slots)  # a group's slots past its prefix length hold zeros up to base
        out = kv.new_empty((*kv.shape[:2], len(index), kv.shape[3], slots, kv.shape[5]))
        starts = np.flatnonzero(np.diff(group, prepend=-1))  # runs of rows of one group: its prefix broadcast
        for a, b in zip(starts, np.append(starts[1:], len(group))):
            out[:, :, a:b, :, :prefix] = kv[:, :, group[a] : group[a] + 1, :, :prefix]
        out[..., prefix:, :] = 0
        groups = torch.from_numpy(group)
        row, i = np.nonzero(self.path[index] >= 0)
        nodes = torch.from_numpy(self.base + self.path[index][row, i])
        at = torch.from_numpy(self.length_of[index][row] + i)
        out[:, :, torch.from_numpy(row), :, at] = kv[:, :, groups[row], :, nodes]
        return list(out[0]), list(out[1])


def _read_trees(stages: list[tuple]) -> list[torch.Tensor]:
    """_read_together's first stage (lo = 0) for a transformer: each group's tails as one tree (_Trees)."""
    trees, out, at = _Trees(stages), [], 0
    for b, (read, rows, _, hi) in enumerate(stages):
        part = [read.last[None, None].expand(len(rows), 1, -1), trees.outputs(b)[:, : hi - 1].float()]
        read.carried.update({r: (trees, at + i) for i, r in enumerate(rows)})
        out.append(torch.log_softmax(torch.cat(part, dim=1), dim=-1))
        at += len(rows)
    return out


def _carried(read, rows: list[int]) -> tuple:
    """(the state, the indices in it) where rows of `read` were left by the last stage (one joint state)."""
    states = {id(read.carried[r][0]) for r in rows}
    assert len(states) == 1, "a stage's rows were left in one batch"
    return read.carried[rows[0]][0], [read.carried[r][1] for r in rows]
