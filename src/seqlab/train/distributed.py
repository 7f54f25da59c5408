"""Training across processes: DistributedDataParallel, gloo on CPU, nccl on GPU.

Every rank runs the same loop on its own slice of each global batch
(data/batches.py): a window model's ranks draw the same B windows and keep
every world-th one, a recurrent model's ranks take every world-th stream. DDP
averages the gradients, so N ranks of B/N rows take the step one process of B
rows takes. Rank 0 alone writes; the clock is rank 0's, broadcast every step,
so the ranks agree on the schedule, on when to evaluate and checkpoint, and on
the step at which the budget runs out.

Launch with `torchrun --nproc_per_node N -m seqlab train ...` (any torchrun
rendezvous, multi-node included) or `seqlab train --nproc N`, which starts the
N workers itself on this machine.
"""

import os
import socket
import sys
from contextlib import contextmanager
from datetime import timedelta

import torch
import torch.distributed as dist

from ..errors import SeqlabError
from ..models.base import state_batch_dims

TIMEOUT = timedelta(minutes=60)  # rank 0's final evaluation runs while the others wait at the barrier


def env_rank() -> tuple[int, int, int] | None:
    """(rank, world, local_rank) when started by torchrun (or our own launcher), else None."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if active() else 1


@contextmanager
def process_group(device_name: str):
    """Join the job torchrun described in the environment; yields (rank, world)."""
    from ..run import resolve_device

    rank, world, local = env_rank()
    device = resolve_device(device_name)
    if device.type == "cuda":
        torch.cuda.set_device(device.index if device.index is not None else local)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)
    ok = False
    try:
        yield rank, world
        ok = True
    finally:
        if ok:  # after a failure the other ranks may never arrive; torchrun ends them
            dist.barrier()  # without it, destroying the group while a peer still talks aborts the run
        dist.destroy_process_group()


def _comm_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def broadcast_object(obj):
    """Rank 0's `obj` on every rank (anything picklable that the code itself made)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=_comm_device())
    return box[0]


def agree_tokenizer(tokenizer):
    """Every rank uses rank 0's tokenizer (BPE training need not be bit-identical across processes)."""
    if not active():
        return tokenizer
    from ..data.tokenizer import tokenizer_from_text

    text = broadcast_object(tokenizer.to_json() if dist.get_rank() == 0 else None)
    return tokenizer if dist.get_rank() == 0 else tokenizer_from_text(text)


def agree_clock(seconds: float) -> float:
    """Rank 0's elapsed seconds on every rank, so budget, schedule and stop step agree."""
    if not active():
        return seconds
    t = torch.tensor([seconds], dtype=torch.float64, device=_comm_device())
    dist.broadcast(t, src=0)
    return float(t.item())


def check_batch(batch_size: int, world: int) -> None:
    if batch_size % world:
        raise SeqlabError(f"--batch-size {batch_size} does not split evenly over {world} processes; "
                          f"use a multiple of {world}")


def wrap(model, device):
    """The module to run forward/backward through: DDP when distributed, else the model itself."""
    if not active():
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index or torch.cuda.current_device()]
                                   if device.type == "cuda" else None)


def gather_carry(model, carry, synced: bool = True) -> list | None:
    """The carried state of all ranks' streams in global stream order, for the checkpoint.

    Rank r holds streams r, r + world, ...; interleaving the gathered slices
    restores 0, 1, 2, ... `synced=False` (an interrupt, when the ranks may be at
    different points) cannot gather: the state is then left out and a resumed run
    starts its streams from a fresh state.
    """
    if carry is None:
        return None
    if not active():
        return list(carry)
    if not synced:
        return None
    world, out = dist.get_world_size(), []
    for t, d in zip(carry, state_batch_dims(model)):
        parts = [torch.empty_like(t) for _ in range(world)]
        dist.all_gather(parts, t.contiguous())
        out.append(torch.stack(parts, dim=d + 1).flatten(d, d + 1))  # (.., B/w, w, ..) -> (.., B, ..)
    return out


def shard_carry(model, tensors: list, rank: int, world: int):
    """This rank's streams of a saved carried state (saved by any number of processes)."""
    if not tensors:
        return None
    if world == 1:
        return tuple(tensors)
    dims = state_batch_dims(model)
    return tuple(t.index_select(d, torch.arange(rank, t.shape[d], world, device=t.device))
                 for t, d in zip(tensors, dims))


def is_rank_zero() -> bool:
    """True in a plain process and in rank 0 of a torchrun job."""
    ranks = env_rank()
    return ranks is None or ranks[0] == 0


def train_processes(train, cfg, run_dir, resume: bool = False, init=None, nproc: int | None = None) -> bool:
    """Run `train` (seqlab's training function) in several processes when asked (--nproc N, or under
    torchrun); False: train in this one."""
    ranks = env_rank()
    if nproc is not None and nproc < 1:
        raise SeqlabError(f"--nproc must be at least 1, got {nproc}")
    if nproc and nproc > 1:
        if ranks:
            raise SeqlabError("--nproc starts its own worker processes; under torchrun leave it out")
        check_batch(cfg.train.batch_size, nproc)
        launch(nproc, train_worker, (train, cfg, str(run_dir), resume, init))
        return True
    if ranks and ranks[1] > 1:
        train_worker(train, cfg, str(run_dir), resume, init)
        return True
    return False


def train_worker(train, cfg, run_dir: str, resume: bool, init) -> None:
    from pathlib import Path

    with process_group(cfg.train.device) as (rank, world):
        run_dir = Path(broadcast_object(run_dir))  # rank 0's: default names carry a timestamp
        train(cfg, run_dir, resume, log=print if rank == 0 else _quiet, rank=rank, world=world, init=init)


def _quiet(*args) -> None:
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(nproc: int, target, args: tuple) -> None:
    """Run target(*args) in nproc local worker processes, set up as torchrun would."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    errors = ctx.SimpleQueue()
    port = free_port()
    workers = mp.start_processes(_worker, args=(nproc, port, errors, target, args), nprocs=nproc,
                                 start_method="spawn", join=False)
    try:
        while not workers.join():
            pass
    except mp.ProcessExitedException:
        message = errors.get() if not errors.empty() else "a training process died (see the output above)"
        raise SeqlabError(message) from None
    finally:  # interrupted while waiting (Ctrl-C, a test's timeout): no worker outlives this call, hung or not
        for process in workers.processes:
            if process.is_alive():
                process.kill()


def _worker(rank: int, nproc: int, port: int, errors, target, args) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(nproc), LOCAL_WORLD_SIZE=str(nproc),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    try:
        target(*args)
    except SeqlabError as e:
        errors.put(str(e))
        sys.exit(2)
    # Leave without the interpreter's teardown: gloo's C++ threads, destroyed at exit, can abort a worker
    # that has finished its work ("terminate called without an active exception"; 3 test runs in ~15).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
