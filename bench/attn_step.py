"""One step's single-query attention as compress calls it, ways of computing it timed apart, per thread.

    python bench/attn_step.py [--rows 256] [--keys 32 48 64] [--calls 200]

A step of compress attends, in each of its 4 layers, one query per (row, head) to that row's cached keys: 256 rows,
4 heads of 32, 32-64 keys (the cache re-reads its last half window when it fills). Each way below is timed on a
cache laid out as the transformer's KVCache (rows, heads, 64 slots, 32), random floats, one torch thread, CPU-ms a
call (time.thread_time: the machine is shared), fp32 and bf16, then the largest difference of bmm's, numba's and numba
int8's outputs from the flash kernel's (a new kernel is a new compress format: how far the floats move):

- sdpa: F.scaled_dot_product_attention on the cache's first n slots (the flash kernel; what a step does now)
- bmm: the scores as one batched matmul per layer (q @ k^T), softmax in fp32, then @ v
- bmm-contig: the same on a cache whose rows' first n keys are one contiguous block (n slots, no stride)
- einsum: the scores by torch.einsum (its own matmul choice)
- numba: compiled loops on a cache whose keys are stored transposed (rows, heads, 32, slots) as bf16 bits, each
  score a sum in a fixed order (vectorised across keys, so no reassociation), softmax by torch (bf16 rows only)
- numba int8: the same loops on an int8 cache with a scale per (row, head, position): half the bytes (bf16 rows only)

--cold evicts the caches before each call (a 64 MB pass, not timed): in a step the other layers, the count model
and other jobs have evicted a layer's keys since its last read, so a step's attention reads them from memory.
"""

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from numba import njit

HEADS, DIM, SLOTS = 4, 32, 64


def sdpa(q, k, v):
    return F.scaled_dot_product_attention(q, k, v)


def bmm(q, k, v):
    b, h, _, d = q.shape
    n = k.shape[2]
    scores = torch.bmm(q.reshape(b * h, 1, d), k.reshape(b * h, n, d).transpose(1, 2))
    weights = torch.softmax(scores.float() * d**-0.5, dim=-1).to(v.dtype)
    return torch.bmm(weights, v.reshape(b * h, n, d)).view(b, h, 1, d)


def einsum(q, k, v):
    d = q.shape[-1]
    scores = torch.einsum("bhqd,bhkd->bhqk", q, k)
    weights = torch.softmax(scores.float() * d**-0.5, dim=-1).to(v.dtype)
    return torch.einsum("bhqk,bhkd->bhqd", weights, v)


@njit(nogil=True, cache=True)
def _scores(q, kt, n, out, wide):
    """out[r, h, :n] = q[r, h] . keys: kt (R, H, D, slots) bf16 bits, each key's sum over D in order."""
    as_float = wide.view(np.float32)
    for r in range(q.shape[0]):
        for h in range(q.shape[1]):
            o = out[r, h]
            o[:n] = 0.0
            for d in range(q.shape[2]):
                for t in range(n):
                    wide[t] = np.uint32(kt[r, h, d, t]) << 16
                for t in range(n):
                    o[t] += q[r, h, d] * as_float[t]


@njit(nogil=True, cache=True)
def _mixed(p, v, n, out, wide):
    """out[r, h] = sum over the n keys of p[r, h, t] * v[r, h, t] (bf16 bits), in key order."""
    as_float = wide.view(np.float32)
    for r in range(out.shape[0]):
        for h in range(out.shape[1]):
            o = out[r, h]
            o[:] = 0.0
            for t in range(n):
                for d in range(out.shape[2]):
                    wide[d] = np.uint32(v[r, h, t, d]) << 16
                for d in range(out.shape[2]):
                    o[d] += p[r, h, t] * as_float[d]


@njit(nogil=True, cache=True)
def _scores8(q, kt, scale, n, out):
    """out[r, h, :n] = q[r, h] . keys: kt (R, H, D, slots) int8, each key's sum times its scale (R, H, slots)."""
    for r in range(q.shape[0]):
        for h in range(q.shape[1]):
            o = out[r, h]
            o[:n] = 0.0
            for d in range(q.shape[2]):
                for t in range(n):
                    o[t] += q[r, h, d] * np.float32(kt[r, h, d, t])
            for t in range(n):
                o[t] *= scale[r, h, t]


@njit(nogil=True, cache=True)
def _mixed8(p, v, scale, n, out):
    """out[r, h] = sum over the n keys of p[r, h, t] * scale[r, h, t] * v[r, h, t] (int8), in key order."""
    for r in range(out.shape[0]):
        for h in range(out.shape[1]):
            o = out[r, h]
            o[:] = 0.0
            for t in range(n):
                weight = p[r, h, t] * scale[r, h, t]
                for d in range(out.shape[2]):
                    o[d] += weight * np.float32(v[r, h, t, d])


def int8_attention(q, kt, k_scale, v, v_scale, n: int) -> np.ndarray:
    """numba_attention on an int8 cache, a scale per (row, head, position): half the bf16 cache's bytes."""
    scores = np.empty(kt.shape[:2] + (kt.shape[3],), np.float32)
    out = np.empty(q.shape, np.float32)
    _scores8(q, kt, k_scale, n, scores)
    p = torch.softmax(torch.from_numpy(scores)[:, :, :n], -1).numpy()
    _mixed8(p, v, v_scale, n, out)
    return out


def as_int8(cache: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(int8 values, fp32 scales (rows, heads, slots)): each position's vector rounded to 127 steps of its largest."""
    scale = cache.float().abs().amax(-1).clamp_min(1e-12) / 127
    return (cache.float() / scale[..., None]).round().to(torch.int8).numpy(), scale.numpy()


def numba_attention(q, kt, v, n: int) -> np.ndarray:
    """q (R, H, D) fp32 (scaled); kt (R, H, D, slots), v (R, H, slots, D): uint16 views of bf16 caches."""
    scores = np.empty(kt.shape[:2] + (kt.shape[3],), np.float32)
    out = np.empty(q.shape, np.float32)
    _scores(q, kt, n, scores, np.empty(kt.shape[3], np.uint32))
    p = torch.softmax(torch.from_numpy(scores)[:, :, :n], -1).numpy()
    _mixed(p, v, n, out, np.empty(q.shape[2], np.uint32))
    return out


WAYS = {"sdpa": sdpa, "bmm": bmm, "einsum": einsum}
EVICT = torch.zeros(64 << 20, dtype=torch.uint8)


def timed(fn, args, calls: int, cold: bool) -> float:
    fn(*args)
    spent = 0.0
    for _ in range(calls):
        if cold:
            EVICT.add_(1)
        start = time.thread_time()
        fn(*args)
        spent += time.thread_time() - start
    return 1e3 * spent / calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--keys", type=int, nargs="+", default=[32, 48, 64])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--cold", action="store_true", help="the caches evicted before each call")
    args = ap.parse_args()
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    ways = list(WAYS) + ["bmm-contig", "numba", "numba int8"]
    print("| dtype | keys | " + " | ".join(ways) + " | largest difference: bmm, numba, numba int8 |")
    print("|---|---:|" + "---:|" * (len(ways) + 1))
    for dtype in (torch.float32, torch.bfloat16):
        for n in args.keys:
            q = torch.randn(args.rows, HEADS, 1, DIM, generator=gen).to(dtype)
            cache_k = torch.randn(args.rows, HEADS, SLOTS, DIM, generator=gen).to(dtype)
            cache_v = torch.randn(args.rows, HEADS, SLOTS, DIM, generator=gen).to(dtype)
            k, v = cache_k[:, :, :n], cache_v[:, :, :n]
            ms = [timed(fn, (q, k, v), args.calls, args.cold) for fn in WAYS.values()]
            ms.append(timed(bmm, (q, k.contiguous(), v.contiguous()), args.calls, args.cold))
            flash = sdpa(q, k, v)[:, :, 0].float()
            outs = [bmm(q, k, v)[:, :, 0].float()]
            if dtype == torch.bfloat16:
                kt = cache_k.transpose(2, 3).contiguous().view(torch.uint16).numpy()
                scaled = (q[:, :, 0].float() * DIM**-0.5).numpy()
                bf16_args = (scaled, kt, cache_v.view(torch.uint16).numpy(), n)
                kt8, v8 = as_int8(cache_k), as_int8(cache_v)
                int8_args = (scaled, np.ascontiguousarray(kt8[0].transpose(0, 1, 3, 2)), kt8[1], *v8, n)
                for fn, fn_args in ((numba_attention, bf16_args), (int8_attention, int8_args)):
                    ms.append(timed(fn, fn_args, args.calls, args.cold))
                    outs.append(torch.from_numpy(fn(*fn_args)))
            else:
                ms += [float("nan")] * 2  # the numba kernels read a bf16 or int8 cache only
            cells = " | ".join(f"{m:.3f}" for m in ms)
            diffs = ", ".join(f"{(out - flash).abs().max().item():.1e}" for out in outs)
            print(f"| {str(dtype)[6:]} | {n} | {cells} | {diffs} |", flush=True)


if __name__ == "__main__":
    main()
