"""Training with several processes (DistributedDataParallel): joining, agreeing, leaving, launching.

Every function here is a no-op, or is never called, for the usual single process: torch.distributed
is imported only when there really are several.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn

from digitrec.errors import DigitrecError

LEAVE_TIMEOUT = timedelta(seconds=120)  # how long a finished process waits for the others before leaving


def distributed_context() -> tuple[int, int]:
    """(rank, world size): under torchrun, joins the process group (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


@contextmanager
def process_group() -> Iterator[tuple[int, int]]:
    """(rank, world size) for the time of a run; the group is left afterwards, however the run ends."""
    rank, world = distributed_context()
    try:
        yield rank, world
        if world > 1:
            leave_together()
    finally:
        if world > 1:  # gloo's threads left running at exit abort the process (pytorch/pytorch#190489)
            import torch.distributed as dist

            dist.destroy_process_group()


def leave_together() -> None:
    """Wait, after a run that ended well, until every process has finished its last collective: one
    that tore its group down while another still talked to it aborted ("terminate called without an
    active exception", once in a full test run). A process that does not come within LEAVE_TIMEOUT
    (it failed) is named in the error, instead of the wait lasting gloo's 30 minutes."""
    import torch.distributed as dist

    if dist.get_backend() == "gloo":
        dist.monitored_barrier(timeout=LEAVE_TIMEOUT)
    else:
        dist.barrier()


def agree_on_stop(received: int | None) -> int | None:
    """The signal any process received, on every process: all stop at the same batch, or the next
    all-reduce would hang."""
    import torch.distributed as dist

    flag = torch.tensor([received or 0])
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag) or None


def check_ranks_agree(model: nn.Module, world: int, log: Callable[[str], None]) -> None:
    """DDP keeps replicas identical; prove it at the end rather than trust it."""
    import torch.distributed as dist

    for buffer in model.buffers():  # batch-norm statistics: each rank's last forward saw its own shard
        dist.broadcast(buffer, 0)
    flat = torch.cat([value.detach().flatten().float().cpu() for value in model.state_dict().values()])
    gathered = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    if not all(torch.equal(replica, gathered[0]) for replica in gathered):
        raise DigitrecError(f"the {world} processes ended with different weights")
    log(f"Weights identical on all {world} processes")


def without_option(arguments: list[str], option: str) -> list[str]:
    """`arguments` less `option` and its value, written as `--option N` or `--option=N`."""
    kept, skip_value = [], False
    for argument in arguments:
        if skip_value or argument.startswith(f"{option}="):
            skip_value = False
        elif argument == option:
            skip_value = True
        else:
            kept.append(argument)
    return kept


def launch_processes(count: int, arguments: list[str], run_dir: Path) -> bool:
    """`digitrec ARGUMENTS` in `count` processes: `torchrun --standalone --nproc-per-node N -m digitrec ...`,
    with the run folder spelled out so that every process agrees on it. True if all of them succeeded."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // count)))
    try:
        torchrun(["--standalone", f"--nproc-per-node={count}", "-m", "digitrec", *arguments, "--out", str(run_dir)])
    except ChildFailedError:
        return False  # the processes have printed their own error
    return True
