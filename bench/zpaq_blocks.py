"""zpaq -m5's cost of a run's held-out bytes block by block, beside seqlab eval's: is size(all) - size(train) what
an online coder pays?

    python bench/zpaq_blocks.py RUN [--block 8192] [--bytes N]

A compressor's conditional cost of held-out bytes is usually taken as size(train + held-out) - size(train)
(compress/classical.py). That is an online coder's cost only if the compressor codes its input left to right with
one model. zpaq -m5 chooses its model from the input it is given, so a longer input can be coded with another
model, training bytes included. This bench adds the held-out bytes a block at a time, size(train + held[:k]) for
k = 0, block, 2 block, ..., and prints each block's increment (bits per byte of the block) beside what `seqlab
eval`'s mix pays for the same bytes (bitcm_gain.todays_mix: session.mix, eval's path, cached). A block whose
increment is negative (the archive shrank when bytes were added) says the total is not an online cost. The
column "one model" codes every prefix with the model -m5 picks for all the bytes (bench/zpaq_model.py): an online
coder's increments; the last line is seqlab's eval minus the one model, paired over the blocks, with its 95%
interval (seqlab.stats.paired_difference). Byte-level runs only (a token is a byte).
"""

import argparse
import tempfile
from pathlib import Path

from common import block_costs, print_table, seqlab, zpaq
from zpaq_model import one_model_zpaq

import numpy as np  # noqa: E402

from bitcm_gain import todays_mix  # noqa: E402
from mixer_gains import held_out  # noqa: E402
from seqlab.countmodel import HISTORY_FILE  # noqa: E402
from seqlab.stats import paired_difference  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run")
    p.add_argument("--block", type=int, default=8192, help="held-out bytes added per zpaq run")
    p.add_argument("--bytes", type=int, default=0, help="at most this many held-out bytes (0: all)")
    p.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "bitcm-gain"))
    args = p.parse_args()
    run = seqlab.load(args.run)
    if len(run.tokenizer.token_bytes) != 257:
        raise SystemExit("a byte-level run is needed (a token is a byte)")
    items = held_out(run, args.bytes or 1 << 62)
    logp, targets = todays_mix(run, items, Path(args.cache))
    seqlab_bits = -logp[np.arange(len(targets)), targets] / np.log(2)
    history = np.load(run.path / HISTORY_FILE, mmap_mode="r")
    train = np.asarray(history[history < 256], dtype=np.uint8).tobytes()
    held = targets.astype(np.uint8).tobytes()
    starts = np.arange(0, len(held), args.block)
    ends = np.minimum(starts + args.block, len(held))
    zpaq_bytes = block_costs(zpaq, train, held, [0, *ends])
    one_model = one_model_zpaq(train + held)
    if one_model is None:
        raise SystemExit("could not write out zpaq -m5's model for these bytes (bench/zpaq_model.py)")
    fixed_bytes = block_costs(one_model, train, held, [0, *ends])
    seqlab_bytes = np.array([seqlab_bits[a:b].sum() / 8 for a, b in zip(starts, ends)])
    n = ends - starts
    rows = [[f"{a:,}-{b:,}", f"{8 * z / m:.3f}", f"{8 * f / m:.3f}", f"{8 * s / m:.3f}"]
            for a, b, m, z, f, s in zip(starts, ends, n, zpaq_bytes, fixed_bytes, seqlab_bytes)]
    grew = zpaq_bytes > 0
    for label, keep in ("all blocks (size(all) - size(train))", np.ones_like(grew)), \
                       (f"the {int(grew.sum())} blocks where zpaq's archive grew", grew):
        rows.append([label, *(f"{8 * b[keep].sum() / n[keep].sum():.4f}" for b in (zpaq_bytes, fixed_bytes,
                                                                                      seqlab_bytes))])
    print_table(f"zpaq -m5 block by block, {run.path.name}: {len(train):,} training bytes, {len(held):,} held-out",
                ["held-out bytes", "zpaq -m5 bits/byte", "zpaq -m5, one model", "seqlab eval bits/byte"], rows)
    print(f"seqlab's eval costs less than zpaq's increment in {int((seqlab_bytes < zpaq_bytes).sum())} of "
          f"{len(starts)} blocks, less than the one model's in {int((seqlab_bytes < fixed_bytes).sum())}")
    diff, low, high = paired_difference(8 * seqlab_bytes, 8 * fixed_bytes, n)
    print(f"seqlab eval minus zpaq -m5 (one model), paired over the blocks: {diff:+.4f} [{low:+.4f}, {high:+.4f}] "
          f"bits per byte ({diff / (8 * fixed_bytes.sum() / n.sum()):+.1%})")


if __name__ == "__main__":
    main()
