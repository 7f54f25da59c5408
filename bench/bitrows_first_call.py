"""Seconds (thread CPU, wall) of BitRows' first score+learn step (27 rows) in a fresh process: its two loops are
compiled there (not cached, bitrows.py says why), bitcm's own kernels come from numba's cache.

Run twice (the first run fills bitcm's cache): nice python bench/bitrows_first_call.py
"""
import time
import numpy as np
from seqlab.countmodel.bitcm import BitCM
from seqlab.countmodel.bitrows import BitRows
rows = BitRows(BitCM(table_bits=16, match_bits=12), np.full(27, 256), 100)
a = np.ones(27, dtype=bool); g = np.full((27, 256), -np.log(256))
for step in range(2):
    c, w = time.thread_time(), time.perf_counter()
    rows.score(g, a); rows.learn(np.full(27, 97), a)
    print(f"step {step}: {time.thread_time() - c:.2f} s CPU, {time.perf_counter() - w:.2f} s wall")
