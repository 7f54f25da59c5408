"""seqlab: train neural sequence models on your own data, then put them to work.

    import seqlab
    run = seqlab.load("runs/latest")
    print(seqlab.generate(run, "ROMEO:", max_tokens=200)[0].text)
    print(seqlab.evaluate(run)["bpb"])
"""

__version__ = "0.1.0"

import gc  # noqa: E402

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
