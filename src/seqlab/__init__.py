"""seqlab: train neural sequence models on your own data, then put them to work.

    import seqlab
    run = seqlab.load("runs/latest")
    print(seqlab.generate(run, "ROMEO:", max_tokens=200)[0].text)
    print(seqlab.evaluate(run)["bpb"])
"""

__version__ = "0.1.0"

from .config import RunConfig  # noqa: E402
from .evaluate import evaluate  # noqa: E402
from .generate import generate, stream  # noqa: E402
from .run import Run, load  # noqa: E402
from .train import train  # noqa: E402

__all__ = ["RunConfig", "Run", "load", "train", "generate", "stream", "evaluate", "__version__"]
