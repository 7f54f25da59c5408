"""seqlab: train neural sequence models on your own data, then put them to work.

    import seqlab
    run = seqlab.load("runs/latest")
    print(seqlab.generate(run, "ROMEO:", max_tokens=200)[0].text)
    print(seqlab.evaluate(run)["bpb"])
"""

__version__ = "0.1.0"

import gc  # noqa: E402
import os  # noqa: E402

# torch's CPU build waits at the end of each parallel region in GNU OpenMP (libgomp), whose threads spin 300,000
# turns before they sleep. Where other work shares the cores (a laptop, a shared VM), the spinning thread takes the
# time slice the thread it waits for needs: 2-thread training beside two busy processes ran at 345 tokens/s, with
# 3,000 turns at 6,900 (beside one, 1.33x; idle, the same speed; bench/omp_wait.py, docs/training.md). libgomp
# reads this once, as torch loads it, so it comes before any import of torch; a user's own setting of either wins.
OPENMP_SPIN = "3000"
OPENMP_WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
if not any(name in os.environ for name in OPENMP_WAIT_VARIABLES):
    os.environ["GOMP_SPINCOUNT"] = OPENMP_SPIN

# importing torch makes a few hundred thousand objects, next to none of them garbage: the collector's passes
# over them cost every command ~0.13 s of its start
_collecting = gc.isenabled()
gc.disable()
try:
    from .config import RunConfig  # noqa: E402
    from .evaluate import evaluate  # noqa: E402
    from .generate import generate, stream  # noqa: E402
    from .run import Run, load  # noqa: E402
    from .train import train  # noqa: E402
finally:
    if _collecting:
        gc.enable()

__all__ = ["RunConfig", "Run", "load", "train", "generate", "stream", "evaluate", "__version__"]
