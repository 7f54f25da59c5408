"""Whether two source trees compress with the very same floats: a hash of every step's mixed log-probabilities.

    python bench/compress_floats.py RUN --file F [--bytes 100000] [--segment-tokens 390] [--src SRC]

A change meant to keep compress's format (the same floats, faster) must leave this hash as it was: run it on the
tree before (--src, a `git archive` of it) and on this one. The coder rounds each row to 24 bits, so a file's bytes
can stay the same where a float moved; this hash cannot. --segment-tokens 390 makes 100 KB read 256 rows a step,
as 1 MB does. Prints the hash, the compressed size and the main thread's CPU-seconds.
"""

import argparse
import hashlib
import sys
import time
from pathlib import Path

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("run")
ap.add_argument("--file", required=True)
ap.add_argument("--bytes", type=int, default=100_000, help="bytes taken from the start of the file")
ap.add_argument("--segment-tokens", type=int, default=390)
ap.add_argument("--src", help="a seqlab source tree to hash instead of this one")
args = ap.parse_args()
src = Path(args.src) if args.src else Path(__file__).resolve().parents[1]
sys.path.insert(0, str(src / "src" if (src / "src" / "seqlab").is_dir() else src))

import torch  # noqa: E402

from seqlab.compress import codec, compress_bytes, lockstep  # noqa: E402
from seqlab.run import load  # noqa: E402

torch.set_num_threads(1)
lockstep.SEGMENT_TOKENS = args.segment_tokens
digest = hashlib.sha256()
code_block = codec.code_block


def hashing_code_block(run, session, n_tokens, threads, pick, *rest, **options):
    def hashed(j, active, logp):
        digest.update(logp.numpy().tobytes())
        return pick(j, active, logp)

    return code_block(run, session, n_tokens, threads, hashed, *rest, **options)


codec.code_block = hashing_code_block
data = Path(args.file).read_bytes()[: args.bytes]
run = load(args.run)
start = time.thread_time()
blob = compress_bytes(run, data, 1)
print(f"seqlab from {Path(lockstep.__file__).parents[2]}: log-probabilities {digest.hexdigest()[:16]}, "
      f"{len(blob):,} bytes, main thread {time.thread_time() - start:.2f} CPU-s")
