"""zpaq -m5 as an online coder: the model -m5 chooses for a whole input, written out, so that size(train + held-out)
and size(train) are coded by one model.

zpaq 7.15 expands `-m5` per block into an explicit model (libzpaq.cpp, compressBlock, "Slow CM with lots of
models") from three things it measures on the block: its size (which sets every context model's table size:
2^(20+B) bytes of block, B = lg(size + 4095) - 20), a text flag, and up to two "periodic" contexts found from the
gaps between repeated bytes. So size(all) - size(train) can compare two different models: tinyshakespeare's
training split (1,003,854 bytes) is coded with tables half the size of those used for training + held-out (1,115,394
bytes, past 1 MiB), and the larger tables also make the *training* bytes cheaper, a saving that the difference
credits to the held-out bytes (docs/quality.md, "zpaq -m5's conditional cost"). `one_model_zpaq(whole)` gives a
compressor that codes any prefix of `whole` with the very model -m5 picks for `whole`; it checks that the explicit
model reproduces -m5's size on `whole` to the byte, and returns None where it does not (another zpaq, several blocks).
"""

import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np

BLOCK_LINE = re.compile(rb"\[(\d+)\.\.(\d+)\] (\d+) -method (\d)(\d+),(\d+),(\d+)")
GAPS = 1 << 12  # the longest gap between two equal bytes that -m5's analysis counts


def zpaq_archive(data: bytes, *method: str) -> tuple[bytes, bytes]:
    """(the archive, zpaq's output) of `zpaq a` on `data` with the given method arguments, one thread."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "f").write_bytes(data)
        done = subprocess.run(["zpaq", "a", "f.zpaq", "f", *method, "-t1"], cwd=tmp, check=True, capture_output=True)
        return (Path(tmp) / "f.zpaq").read_bytes(), done.stdout


def periodic_contexts(data: bytes) -> str:
    """-m5's periodic models: up to two gaps between repeated bytes frequent enough (score > 0.1) to get a context."""
    p = np.frombuffer(data, dtype=np.uint8)
    gaps = np.zeros(GAPS, dtype=np.int64)
    for byte in range(256):
        at = np.flatnonzero(p == byte)
        # zpaq measures each occurrence from the last one (the first from position 0)
        k = np.diff(np.concatenate(([0], at))) if len(at) else at
        k = k[(k > 0) & (k < GAPS)]
        gaps += np.bincount(k, minlength=GAPS)
    n1, out = len(p) - gaps[1] - gaps[2] - gaps[3], ""
    for _ in range(2):
        period, score, seen = 0, 0.0, 0
        for j in range(5, GAPS):
            if seen >= n1:
                break
            s = gaps[j] / (256.0 + n1 - seen)
            if s > score:
                score, period = s, j
            seen += gaps[j]
        if not (period > 4 and score > 0.1):
            break
        out += f"c0,0,{999 + period},255i1" + (f"c0,{period}i1" if period <= 255 else "")
        n1 -= gaps[period]
        gaps[period] = 0
    return out


def m5_model(data: bytes, block_bytes: int, redundancy: int, kind: int) -> str:
    """The explicit model zpaq -m5 codes a block of `block_bytes` with (its printed `-method 5B,R,T` analysis)."""
    size_bits = max((block_bytes + 4095).bit_length() - 20, 0)  # libzpaq's lg()
    data_type = redundancy * 4 + kind  # libzpaq's `type`
    text = "w2c0,1010,255i1" if data_type & 1 else "w1i1"
    return (f"x{size_bits},{(data_type & 2) * 2}{text}c256ci1,1,1,1,1,1,2a{periodic_contexts(data)}"
            "c0,2,0,255i1c0,3,0,0,255i1c0,4,0,0,0,255i1mm16ts19t0")


def one_model_zpaq(whole: bytes):
    """A compressor (bytes -> archive) coding every input with the model zpaq -m5 picks for `whole`, or None."""
    archive, said = zpaq_archive(whole, "-m5")
    blocks = BLOCK_LINE.findall(said)
    if len(blocks) != 1 or blocks[0][3] != b"5":
        return None
    block_bytes, redundancy, kind = (int(x) for x in blocks[0][2:3] + blocks[0][5:7])
    model = m5_model(whole, block_bytes, redundancy, kind)
    if len(zpaq_archive(whole, "-method", model)[0]) != len(archive):
        return None
    return lambda data: zpaq_archive(data, "-method", model)[0]
