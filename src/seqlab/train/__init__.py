"""`seqlab train`: one training loop for every architecture, and what it needs around it.

    loop.py         train(): data -> model -> optimizer steps -> checkpoints -> final eval, samples, curve
    cli.py          `seqlab train`'s flags -> RunConfig, --resume, --nproc
    distributed.py  DistributedDataParallel across processes (--nproc N, or torchrun)
    defaults.py     the architecture and size picked for a budget and corpus when --arch is not given
    curve.py        the learning-curve PNG written beside the run

    import seqlab
    cfg = seqlab.RunConfig(arch="lstm")
    cfg.train.max_steps = 200
    run_dir = seqlab.train(cfg, "runs/demo")  # the bundled corpus; seqlab.load(run_dir) reads it back
"""

from .cli import add_cli, config_from_args
from .loop import train

__all__ = ["train", "config_from_args", "add_cli"]
