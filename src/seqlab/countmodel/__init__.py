"""A long-range count model mixed with the network's prediction.

Why: a network sees a bounded context (a window, or what fits in its state),
while text repeats itself far beyond it — names, boilerplate, whole lines.
Compressors (xz, PPM) win there by remembering everything. This module keeps
hashed n-gram counts (orders 1..24) of the run's training split plus the text
scored so far, blends the orders by Witten-Bell-style interpolation (short
orders first), and mixes a few of these blends (up to orders 2, 4 and 24 by
default) with the network's distribution geometrically. A match expert adds
what xz's long matches give: the usual continuation of the longest context seen
before among orders 32..1024, which on boilerplate-heavy text (HTML, source) is
right more than 99% of the time once the match is a few hundred tokens long.
One more blend (up to the longest expert order) counts the text scored so far
alone: where a file's style differs from the training split's (its own names,
its indentation), the training split's far larger counts outweigh the file's own
in the other blends (it took 2-3% off eval's mixed bits per byte on the held-out
splits of tinyshakespeare and C headers, 2-19% off single 100 KB texts).
The mixing weights adapt online to the text being scored: one set per
confidence bucket (the longest order that has seen the context), plus a set
selected by the order-1 context, updated after every chunk of 256 tokens from
the chunk's own log loss; an SSE stage then corrects the most likely token's
probability (mixer.py; their gains: docs/quality.md). One session carries
counts and weights across the texts it scores, so a held-out set of many files
reads as one stream.

The training split's table is built once, when training ends, and read from its
files at every load, what a lookup needs by position (store.py, disktable.py).

Everything is causal: the prediction for a token uses only the training split
and the tokens before it, so bits per byte stay an honest compression measure.
"""

from .mixer import Experts, OnlineMixer, blend_counts
from .lockstep import LockstepReader
from .session import (HISTORY_FILE, CountModel, CountReader, CountSession, add_word_table, check, describe,
                      load_count_model, save_history, usable)
from .store import TABLES_DIR, check_fits
from .tables import CountTable, RecentCounts, context_hashes, context_hashes_at, context_ids, continuations

__all__ = ["CountModel", "CountSession", "CountReader", "LockstepReader", "CountTable", "RecentCounts", "Experts",
           "OnlineMixer", "blend_counts", "context_hashes", "context_hashes_at", "context_ids", "continuations",
           "check", "describe", "usable", "save_history", "load_count_model", "add_word_table", "HISTORY_FILE",
           "TABLES_DIR", "check_fits"]
