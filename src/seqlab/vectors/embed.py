"""Hidden states -> vectors: the states after every token of a long text, pooled passage vectors, and a
writer that streams vectors to disk.

    vecs = embed_texts(run, [b"first passage", b"second"])      # (2, C) float32, unit length
    for start, states in token_states(run.model, tokens, run.device): ...   # state after tokens[start + j]

A passage is read as its own document (BOS first) through the model contract (`scoring_features`, the
features the output layer reads) and its token states are pooled: `mean` (the default, measured against
`last` and `max` in bench/vectors_retrieval.py; see docs/vectors.md). A passage longer than the model's
context is cut into pieces of at most that many tokens, each read from BOS; mean and max pool over all of
them, `last` takes the last piece's last state. Vectors are scaled to unit length: cosine = dot product.

`surprisal` pools what the run predicts rather than its states, in the vocabulary's space (2 x V dims):
each token's bits (-log2 of the probability the run gave it there) raised to SURPRISAL_POWER and summed at
its id (the tokens the run did not expect carry the passage's content, as IDF says of rare words), joined
with the square root of the run's average next-token distribution over the passage (what it expects to
read around it). Each half is scaled to unit length. On held-out paragraphs it finds a passage's other half
7x more often than pooled states (docs/vectors.md); it needs a full softmax (any head; adaptive ones too).
`words` keeps the expected half and bags words instead of tokens, each weighted by what the run paid for it
(pool_words, bag.py): sparse vectors that find the other half more often than BM25 does.
"""

import hashlib
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import sparse

from ..errors import SeqlabError
from .bag import WORD_BITS, BagVectors, safetensors_header, word_occurrences
from ..scoring import TorchThreads, Window, _batch_tokens, _batches_of_equal_length, _in_order, plan_windows

STATE_POOLINGS = ("mean", "last", "max")
BAG_POOLINGS = ("surprisal", "words")  # what the run predicts, in the vocabulary's space
POOLINGS = (*STATE_POOLINGS, *BAG_POOLINGS)
DEFAULT_POOLING = "mean"
SURPRISAL_POWER = 1.5  # bits**1.5: measured against bits and bits**2 (docs/vectors.md)
STATE_BLOCK, STATE_WARMUP = 512, 256  # a recurrent model's blocks when reading long texts for states
RECURRENT_PIECE = 1024  # tokens per piece for models without a context limit (bounds a batch's memory)
BATCH_TOKENS = 16384  # padded tokens per forward pass
CENTRE = True  # measured: bench/vectors_retrieval.py (docs/vectors.md)
DTYPES = {"float32": np.float32, "float16": np.float16}
FORMATS = ("safetensors", "npy")


def fingerprint(run_dir) -> str:
    """A digest of what makes a run's vectors what they are: its config, tokenizer and checkpoint bytes."""
    h = hashlib.blake2b(digest_size=16)
    for name in ("config.json", "tokenizer.json", "checkpoint.safetensors"):
        path = Path(run_dir) / name
        if path.exists():
            h.update(name.encode())
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
    return h.hexdigest()


def check_pooling(pooling: str) -> str:
    if pooling not in POOLINGS:
        raise SeqlabError(f"unknown pooling {pooling!r}; choose one of: {', '.join(POOLINGS)}")
    return pooling


def unit_rows(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


# ---- states after every token of a long text ------------------------------------------------------------

@torch.no_grad()
def token_states(model, tokens: np.ndarray, device, batch_tokens: int | None = None):
    """Yield (start, states (n, C)) covering tokens in order: states[j] is the state after reading
    tokens[start + j], with as much context before it as scoring gives (scoring.plan_windows)."""
    padded = np.append(np.asarray(tokens, dtype=np.int64), 0)  # room for the last token's state; never read
    windows = state_windows(model, len(padded))
    batches = list(_batches_of_equal_length(windows, batch_tokens or _batch_tokens(model)))

    @torch.no_grad()
    def states_of(batch):
        x = torch.from_numpy(np.stack([padded[w.start : w.stop - 1] for w in batch]))
        last = max(w.stop - w.first for w in batch)
        feats = model.window_features(x.to(device), last).float()  # (B, last, C)
        rows = [feats[i, last - (w.stop - w.first) :] for i, w in enumerate(batch)]
        return batch[0].first - 1, torch.cat(rows).cpu().numpy()

    yield from _in_order(states_of, batches, _workers(device, len(batches)))


def _workers(device, n_batches: int) -> int:
    """Batches computed side by side, each op on one thread (as scoring does): on a CPU this is faster than
    one batch at a time on every thread, and much faster on a machine that other work keeps busy."""
    return min(torch.get_num_threads(), n_batches) if torch.device(device).type == "cpu" else 1


def state_windows(model, n_total: int) -> list[Window]:
    """scoring.plan_windows, but a recurrent model reads shorter blocks (STATE_BLOCK tokens, each warmed up
    on the STATE_WARMUP before it): more rows side by side and fewer steps one after another, 4x faster on a
    CPU for the same states to within what the warm-up forgets."""
    if model.max_context:
        return plan_windows(model, n_total, 1)
    reach = STATE_BLOCK + STATE_WARMUP
    return [Window(max(0, min(first + STATE_BLOCK, n_total) - 1 - reach), first, min(first + STATE_BLOCK, n_total))
            for first in range(1, n_total, STATE_BLOCK)]


def states_at(model, tokens: np.ndarray, positions: np.ndarray, device) -> np.ndarray:
    """The states after tokens[p] for each p in positions (any order, repeats allowed): (len(positions), C)."""
    positions = np.asarray(positions, dtype=np.int64)
    order = np.argsort(positions, kind="stable")
    sorted_pos = positions[order]
    out = None
    for start, states in token_states(model, tokens, device):
        lo, hi = np.searchsorted(sorted_pos, [start, start + len(states)])
        if out is None:
            out = np.zeros((len(positions), states.shape[1]), dtype=np.float32)
        out[order[lo:hi]] = states[sorted_pos[lo:hi] - start]
    return out if out is not None else np.zeros((0, 0), np.float32)


# ---- pooled passage vectors --------------------------------------------------------------------------------

def _pieces(run, texts: list[bytes]) -> list[tuple[int, int, np.ndarray]]:
    """(passage index, piece number, token ids BOS first) of every piece of every text."""
    tok, model = run.tokenizer, run.model
    length = (model.max_context or RECURRENT_PIECE) - 1
    out = []
    for i, data in enumerate(texts):
        ids = tok.encode(data)
        for k, at in enumerate(range(0, max(len(ids), 1), length)):
            out.append((i, k, np.concatenate([[tok.bos_id], ids[at : at + length]]).astype(np.int64)))
    return out


@torch.no_grad()
def embed_texts(run, texts: list[bytes], pooling: str = DEFAULT_POOLING, batch_tokens: int = BATCH_TOKENS,
                normalize: bool = True, centre: bool = CENTRE) -> np.ndarray | BagVectors:
    """One vector per text (n, C) float32, pooled from the run's token states, less the run's centre
    (see run_centre), unit length; normalize=False gives the pooled states as they are. The words pooling
    gives BagVectors, unit length as they are made."""
    pooled = pool_pieces(run, _pieces(run, texts), len(texts), pooling, batch_tokens)
    if not normalize or isinstance(pooled, BagVectors):
        return pooled
    return unit_rows(pooled - run_centre(run, pooling) if centre and is_centred(pooling) else pooled)


def is_centred(pooling: str) -> bool:
    """Pooled states share the run's common part (run_centre); the surprisal and words poolings' parts do not."""
    return pooling in STATE_POOLINGS


CENTRE_SAMPLES, CENTRE_TOKENS = 8, 128


@torch.no_grad()
def run_centre(run, pooling: str) -> np.ndarray:
    """The run's average pooled vector over text it generates itself (fixed seed, so a function of the
    weights alone, whatever the corpus at hand): every state shares a large common part that would make all
    cosines close to 1 and rank passages by how they lean on it; it is subtracted before scaling."""
    cache = run.__dict__.setdefault("_vector_centres", {})
    if pooling not in cache:
        from ..generate import generate

        with TorchThreads(1):  # one small step at a time: more threads only wait on each other
            samples = [s.text.encode("utf-8", errors="replace")
                       for s in generate(run, "", n=CENTRE_SAMPLES, max_tokens=CENTRE_TOKENS, seed=0)]
        lines = [line for s in samples for line in s.split(b"\n") if line.strip()] or [b" "]
        cache[pooling] = pool_pieces(run, _pieces(run, lines), len(lines), pooling).mean(0)
    return cache[pooling]


def pool_pieces(run, pieces, n: int, pooling: str, batch_tokens: int = BATCH_TOKENS, grad: bool = False):
    """Pool the pieces' token states per passage: (n, C) numpy, or a torch tensor with grad=True (tune)."""
    if pooling in BAG_POOLINGS:
        return {"surprisal": pool_surprisal, "words": pool_words}[pooling](run, pieces, n, batch_tokens, grad)
    device = run.device
    sums, counts, best, last, last_piece = None, torch.zeros(n, device=device), None, None, {}
    for batch, lengths, _, feats in _read_pieces(run, pieces, batch_tokens, grad):
        width = feats.shape[1]
        # token states only: position 0 (after BOS) is the same for every passage, so it counts only alone
        pos = torch.arange(width, device=device)[None, :]
        mask = (pos < lengths[:, None]) & ((pos >= 1) | (lengths[:, None] == 1))  # (B, T)
        if sums is None:
            sums = torch.zeros(n, feats.shape[-1], device=device)
            best = torch.full((n, feats.shape[-1]), -torch.inf, device=device)
            last = torch.zeros(n, feats.shape[-1], device=device)
        idx = torch.tensor([pieces[j][0] for j in batch], device=device)
        sums = sums.index_add(0, idx, (feats * mask[..., None]).sum(1))
        counts = counts.index_add(0, idx, mask.sum(1).float())
        if pooling == "max":
            best = best.index_reduce(0, idx, feats.masked_fill(~mask[..., None], -torch.inf).amax(1), "amax")
        elif pooling == "last":
            ends = feats[torch.arange(len(batch), device=device), lengths - 1]
            for row, j in enumerate(batch):
                i, k = pieces[j][0], pieces[j][1]
                if k >= last_piece.get(i, -1):
                    last_piece[i] = k
                    last = last.index_copy(0, torch.tensor([i], device=device), ends[row : row + 1])
    if sums is None:
        return np.zeros((0, 0), np.float32)
    out = {"mean": sums / counts.clamp(min=1)[:, None], "max": best, "last": last}[pooling]
    return out if grad else out.cpu().numpy()


def pool_surprisal(run, pieces, n: int, batch_tokens: int = BATCH_TOKENS, grad: bool = False):
    """The `surprisal` pooling of each passage (n, 2V): [bag of its tokens weighted by bits**SURPRISAL_POWER,
    sqrt of its mean next-token distribution], each half unit length, the whole scaled by 1/sqrt(2); numpy,
    or a torch tensor with grad=True (tune)."""
    bags = expected = None
    for batch, x, bits, exp, count in _predictions(run, pieces, batch_tokens, grad):
        idx = torch.tensor([pieces[j][0] for j in batch], device=run.device)
        bag = torch.zeros(len(x), exp.shape[1], device=run.device).scatter_add(1, x[:, 1:], bits ** SURPRISAL_POWER)
        if bags is None:
            bags, expected = torch.zeros(n, exp.shape[1], device=run.device), _Expected(n, exp.shape[1], run.device)
        bags = bags.index_add(0, idx, bag)
        expected.add(idx, exp, count)
    if bags is None:
        return np.zeros((0, 0), np.float32)
    out = torch.cat([F.normalize(bags, dim=-1), expected.unit()], 1) / math.sqrt(2)
    return out if grad else out.detach().cpu().numpy()


def pool_words(run, pieces, n: int, batch_tokens: int = BATCH_TOKENS, grad: bool = False):
    """The `words` pooling (bag.py) of each passage: a BagVectors, or with grad=True (tune) a dense torch tensor
    (n, U + V) whose U columns are the words the passages hold. A word's weight is the mean of the bits the run
    paid for its occurrences times 1 + ln(their number) (chosen on validation paragraphs: docs/vectors.md)."""
    token_bytes, device = run.tokenizer.token_bytes, run.device
    on = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
    costs, keys, expected = [], [], None
    for batch, _, bits, exp, count in _predictions(run, pieces, batch_tokens, grad):
        if expected is None:
            expected = _Expected(n, exp.shape[1], device)
        expected.add(torch.tensor([pieces[j][0] for j in batch], device=device), exp, count)
        for row, j in enumerate(batch):
            token, occurrence, share, columns = word_occurrences(token_bytes, pieces[j][2][1:])
            costs.append(torch.zeros(len(columns), device=device).index_add(0, on(occurrence),
                                                                              bits[row, on(token)] * on(share)))
            keys.append(pieces[j][0] * (1 << WORD_BITS) + columns)
    if expected is None:
        return BagVectors(sparse.csr_matrix((0, 1 << WORD_BITS), dtype=np.float32), np.zeros((0, 0), np.float32))
    keys, which = np.unique(np.concatenate(keys), return_inverse=True)  # one key per (passage, word)
    which = on(which.astype(np.int64))
    total = torch.zeros(len(keys), device=device).index_add(0, which, torch.cat(costs))
    times = torch.bincount(which, minlength=len(keys)).float()
    weight = total / times * (1 + torch.log(times))
    passage, column = keys >> WORD_BITS, keys & ((1 << WORD_BITS) - 1)
    norm = torch.zeros(n, device=device).index_add(0, on(passage), weight ** 2).sqrt()
    weight = weight / norm[on(passage)].clamp(min=1e-12) / math.sqrt(2)
    if grad:
        local, at = np.unique(column, return_inverse=True)
        words = torch.zeros(n, len(local), device=device).index_put((on(passage), on(at)), weight)
        return torch.cat([words, expected.unit() / math.sqrt(2)], 1)
    words = sparse.csr_matrix((weight.cpu().numpy(), (passage, column)), shape=(n, 1 << WORD_BITS), dtype=np.float32)
    return BagVectors(words, (expected.unit() / math.sqrt(2)).cpu().numpy())


class _Expected:
    """The surprisal and words poolings' dense half: the square root of a passage's mean next-token distribution."""

    def __init__(self, n: int, vocab: int, device):
        self.sums, self.counts = torch.zeros(n, vocab, device=device), torch.zeros(n, device=device)

    def add(self, idx, exp, count) -> None:
        self.sums, self.counts = self.sums.index_add(0, idx, exp), self.counts.index_add(0, idx, count)

    def unit(self):
        return F.normalize(torch.sqrt(self.sums / self.counts.clamp(min=1)[:, None] + 1e-12), dim=-1)


def _predictions(run, pieces, batch_tokens: int, grad: bool):
    """(batch, x, bits, expected, count) per batch of pieces: x their tokens (B, T) padded, bits (B, T-1) what the
    run paid for x[:, 1:] (0 past a piece's end), expected (B, V) the sum of its next-token distributions over
    the positions that predict a token of the piece, count (B,) how many those are."""
    head = run.model.output_layer()

    def predictions(lengths, x, feats):
        logp = F.log_softmax(head(feats[:, :-1]).float(), -1)  # (B, T-1, V): position t predicts token t+1
        predicts = torch.arange(x.shape[1] - 1, device=x.device)[None, :] < (lengths[:, None] - 1)
        bits = (-logp.gather(2, x[:, 1:, None])[..., 0] / math.log(2)).clamp(min=0) * predicts
        return bits, (logp.exp() * predicts[..., None]).sum(1), predicts.sum(1).float()

    # a (B, T, V) softmax per batch: a quarter of the tokens
    for batch, _, x, (bits, exp, count) in _read_pieces(run, pieces, batch_tokens // 4, grad, predictions):
        yield batch, x, bits, exp, count


def _read_pieces(run, pieces, batch_tokens: int, grad: bool, then=None):
    """(batch, lengths, x, what) per batch of pieces of about equal length, in order: x the batch's tokens
    (B, T) padded, what the model's features (B, T, C) or then(lengths, x, features), computed with grad for
    tune, else in _workers threads without it."""
    model, device = run.model, run.device
    order = sorted(range(len(pieces)), key=lambda j: len(pieces[j][2]))
    batches = list(_length_batches(order, pieces, batch_tokens))

    def read(batch):
        lengths = torch.tensor([len(pieces[j][2]) for j in batch], device=device)
        x = torch.zeros(len(batch), int(lengths.max()), dtype=torch.long)
        for row, j in enumerate(batch):
            x[row, : len(pieces[j][2])] = torch.from_numpy(pieces[j][2])
        x = x.to(device)
        with torch.set_grad_enabled(grad):
            feats = (model.features if grad else model.scoring_features)(x)[0]  # (B, T, C)
            return batch, lengths, x, then(lengths, x, feats) if then else feats.float()

    return map(read, batches) if grad else _in_order(read, batches, _workers(device, len(batches)))


def _length_batches(order, pieces, batch_tokens: int):
    batch, width = [], 0
    for j in order:
        w = len(pieces[j][2])
        if batch and max(width, w) * (len(batch) + 1) > batch_tokens:
            yield batch
            batch, width = [], 0
        batch.append(j)
        width = max(width, w)
    if batch:
        yield batch


def embed_stream(run, items, pooling: str, text_of=lambda p: p.data, buffer: int = 2048, centre: bool = CENTRE):
    """Yield (items, vectors) for consecutive chunks of an iterable of passages: bounded memory."""
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= buffer:
            yield chunk, embed_texts(run, [text_of(p) for p in chunk], pooling, centre=centre)
            chunk = []
    if chunk:
        yield chunk, embed_texts(run, [text_of(p) for p in chunk], pooling, centre=centre)


# ---- streamed output ---------------------------------------------------------------------------------------

def new_output_dir(out) -> Path:
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SeqlabError(f"{out} already exists and is not an empty directory; choose another --out or remove it")
    return out


class VectorWriter:
    """Rows written as they come into a preallocated file (safetensors or .npy) plus meta.jsonl, in a
    temporary directory renamed to `out` by close(): a half-written output never appears under its name."""

    def __init__(self, out, count: int, dim: int, dtype: str = "float32", fmt: str = "safetensors",
                 info: dict | None = None):
        self.out, self.count, self.dim, self.fmt = Path(out), count, dim, fmt
        self.dtype = np.dtype(DTYPES[dtype])
        self.tmp = self.out.with_name(f".{self.out.name}.tmp{os.getpid()}")
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.info = {**(info or {}), "count": count, "dim": dim, "dtype": dtype, "format": fmt}
        self.rows = self._open_rows()
        self.meta = open(self.tmp / "meta.jsonl", "w", encoding="utf-8")
        self.at = 0

    def _open_rows(self):
        shape = (self.count, self.dim)
        if self.fmt == "npy":
            return np.lib.format.open_memmap(self.tmp / "vectors.npy", mode="w+", dtype=self.dtype, shape=shape)
        n_bytes = self.count * self.dim * self.dtype.itemsize
        header = safetensors_header({"vectors": (self.dtype, shape)}, self.info)
        path = self.tmp / "vectors.safetensors"
        with open(path, "wb") as f:
            f.write(header)
            f.truncate(len(header) + n_bytes)
        if not n_bytes:
            return np.zeros(shape, self.dtype)
        return np.memmap(path, dtype=self.dtype, mode="r+", offset=len(header), shape=shape)

    def write(self, vectors: np.ndarray, metas: list[dict]) -> None:
        assert len(vectors) == len(metas) and self.at + len(vectors) <= self.count
        self._put(vectors)
        self.at += len(vectors)
        for m in metas:
            self.meta.write(json.dumps(m, ensure_ascii=False) + "\n")

    def close(self) -> Path:
        assert self.at == self.count, f"{self.at} rows written of {self.count}"
        if isinstance(self.rows, np.memmap):
            self.rows.flush()
        del self.rows
        self.meta.close()
        (self.tmp / "info.json").write_text(json.dumps(self.info, indent=2) + "\n")
        if self.out.exists():
            self.out.rmdir()  # checked empty before the work started
        os.replace(self.tmp, self.out)
        return self.out

    def _put(self, vectors: np.ndarray) -> None:
        self.rows[self.at : self.at + len(vectors)] = vectors

    def abort(self) -> None:
        self.meta.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


class BagWriter(VectorWriter):
    """VectorWriter for the words pooling's BagVectors: each part's rows appended to a scratch file as they come
    (memory bounded by a chunk), put together as one safetensors file (indptr, indices, values, expected) by close."""

    PARTS = ("indices", "values", "expected")

    def _open_rows(self):
        assert self.fmt == "safetensors", "embed refuses --format npy for the words pooling"
        self.indptr = [np.zeros(1, np.int64)]
        return {name: open(self.tmp / f".{name}", "wb") for name in self.PARTS}

    def _put(self, vectors: BagVectors) -> None:
        arrays = vectors.arrays(self.dtype)
        self.indptr.append(arrays["indptr"][1:] + self.indptr[-1][-1])
        for name in self.PARTS:
            self.rows[name].write(arrays[name].tobytes())

    def close(self) -> Path:
        indptr = np.concatenate(self.indptr)
        vocab, nnz = self.dim - (1 << WORD_BITS), int(indptr[-1])
        self.info["sparse"] = True
        shapes = {"indptr": (np.int64, (len(indptr),)), "indices": (np.int32, (nnz,)), "values": (self.dtype, (nnz,)),
                  "expected": (self.dtype, (self.count, vocab))}
        with open(self.tmp / "vectors.safetensors", "wb") as f:
            f.write(safetensors_header(shapes, self.info) + indptr.tobytes())
            for name in self.PARTS:
                self.rows[name].close()
                with open(self.tmp / f".{name}", "rb") as part:
                    shutil.copyfileobj(part, f, 1 << 20)
                (self.tmp / f".{name}").unlink()
        self.rows = None
        return super().close()

    def abort(self) -> None:
        for f in (self.rows or {}).values():
            f.close()
        super().abort()


def vector_writer(out, count: int, vectors, dtype: str, fmt: str, info: dict) -> VectorWriter:
    """The writer for vectors like these (a BagVectors or an array), `count` rows in all."""
    if isinstance(vectors, BagVectors):
        return BagWriter(out, count, vectors.dim, dtype, fmt, info)
    return VectorWriter(out, count, vectors.shape[1], dtype, fmt, info)


def read_vectors(out) -> tuple[np.ndarray | BagVectors, list[dict], dict]:
    """(vectors, metadata rows, info) of an `seqlab embed` output directory (vectors memory-mapped; the words
    pooling's BagVectors read into memory, as float32)."""
    out = Path(out)
    info = json.loads((out / "info.json").read_text())
    if info["format"] == "npy":
        vectors = np.load(out / "vectors.npy", mmap_mode="r")
    else:
        from safetensors.numpy import load_file

        arrays = load_file(str(out / "vectors.safetensors"))
        vectors = BagVectors.from_arrays(arrays) if info.get("sparse") else arrays["vectors"]
    with open(out / "meta.jsonl", encoding="utf-8") as f:
        metas = [json.loads(line) for line in f]
    return vectors, metas, info
