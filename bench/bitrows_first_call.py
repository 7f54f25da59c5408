"""Seconds (thread CPU, wall) of BitRows' first score+learn step (27 rows) in a fresh process: its loops come from
numba's cache (bitkernel.py; until 2026-12-06 they were compiled in each process, 3.7-4.5 CPU-seconds).

Run twice (the first run fills the cache): nice python bench/bitrows_first_call.py
"""
import time
import numpy as np
from seqlab.countmodel.bitcm import BitCM
from seqlab.countmodel.bitrows import BitRows
rows = BitRows(BitCM(table_bits=16, match_bits=12), np.full(27, 256), 100)
a = np.ones(27, dtype=bool)
g = np.full((27, 256), -np.log(256))
for step in range(2):
    c, w = time.thread_time(), time.perf_counter()
    rows.score(g, a)
    rows.learn(np.full(27, 97), a)
    print(f"step {step}: {time.thread_time() - c:.2f} s CPU, {time.perf_counter() - w:.2f} s wall")
