"""A full run on several processes (GPUs, or CPU processes) and machines through torch's own launcher (torchrun's
elastic agent), with DDP: each optimizer step's rows are the one-process run's, split over the ranks, and its loss the
same mean per label token, so the losses are the one-process run's to float tolerance.

The launcher (`advisor train --nproc N`) starts N copies of the same command with torchrun's environment (RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, ...); transformers' Trainer, seeing it, wraps the model in DDP (gloo on the CPU,
NCCL on GPUs). Rank 0 alone holds the run directory, writes its files and reports; every rank resumes from rank 0's
checkpoints.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tuner.errors import AdvisorError

if TYPE_CHECKING:
    import torch

LAUNCHED = "ADVISOR_LAUNCHED"
"""Set in each process the launcher starts: the command then trains as its rank instead of launching again."""


@dataclass(frozen=True)
class Ranks:
    """This process's place among the run's processes (one process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """Rank 0: holds the run directory, writes the files, reports and scores."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def ranks() -> Ranks:
    """This process's rank from torchrun's environment (rank 0 of 1 outside it)."""
    environ = os.environ
    if LAUNCHED not in environ or "WORLD_SIZE" not in environ:
        return Ranks()
    return Ranks(int(environ["RANK"]), int(environ["WORLD_SIZE"]))


@dataclass(frozen=True)
class Launch:
    """How many processes train, on how many machines, meeting where."""

    nproc: int = 1
    """Processes on this machine: one per GPU, or CPU processes."""
    nnodes: int = 1
    """Machines, each running the same command."""
    rdzv_endpoint: str | None = None
    """host:port where the machines meet (torchrun's c10d rendezvous); needed with more than one machine."""

    @property
    def world(self) -> int:
        return self.nproc * self.nnodes

    def check(self, batch_size: int, gpus: int, cpu_count: int) -> None:
        """AdvisorError, one line, for a launch this machine or the recipe cannot run."""
        if self.nproc < 1 or self.nnodes < 1:
            raise AdvisorError(f"--nproc and --nnodes must be at least 1, got {self.nproc} and {self.nnodes}")
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise AdvisorError("--nnodes above 1 needs --rdzv-endpoint HOST:PORT, where the machines meet")
        if self.rdzv_endpoint and not _endpoint_ok(self.rdzv_endpoint):
            raise AdvisorError(f"--rdzv-endpoint must be HOST:PORT, got {self.rdzv_endpoint!r}")
        if gpus and self.nproc > gpus:
            raise AdvisorError(f"--nproc {self.nproc} is more processes than the {gpus} GPU(s) here: one per GPU")
        if not gpus and self.nproc > cpu_count:
            raise AdvisorError(
                f"--nproc {self.nproc} CPU processes on {cpu_count} core(s): no GPU here, and each process needs a core"
            )
        if batch_size % self.world:
            raise AdvisorError(
                f"a batch of {batch_size} rows does not split evenly over {self.world} processes: "
                f"choose a --batch-size that {self.world} divides, or another --nproc"
            )


def _endpoint_ok(endpoint: str) -> bool:
    host, _, port = endpoint.rpartition(":")
    return bool(host) and port.isdigit()


def launch(arguments: Sequence[str], plan: Launch, gpus: int) -> int:
    """Run `python -m advisor.cli ARGUMENTS` as plan.nproc processes here (of plan.world in all) under torchrun's
    elastic agent; returns 0, or raises AdvisorError naming the rank that failed (the same command resumes)."""
    import logging
    import shutil
    import signal
    import sys
    import tempfile
    import uuid

    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, Std
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    for name in ("torch.distributed.elastic", "torch.distributed.launcher"):
        logging.getLogger(name).setLevel(logging.CRITICAL)  # the agent's own chatter; failures are said below
    environment = {LAUNCHED: "1"}
    if not gpus and "OMP_NUM_THREADS" not in os.environ:  # the cores shared out, as torchrun leaves them to the user
        environment["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // plan.nproc))
    os.environ.update(environment)
    single = plan.nnodes == 1 and plan.rdzv_endpoint is None
    # The other ranks say nothing but their failures, which are said below: their output goes to files, so a rank
    # caught mid-collective by another's failure does not print its traceback over the one line that explains it.
    logs = tempfile.mkdtemp(prefix="advisor-ranks-")
    quiet = {rank: Std.ALL for rank in range(1, plan.nproc)}
    config = LaunchConfig(
        logs_specs=DefaultLogsSpecs(log_dir=logs, redirects=quiet),
        min_nodes=plan.nnodes,
        max_nodes=plan.nnodes,
        nproc_per_node=plan.nproc,
        run_id=uuid.uuid4().hex if single else "advisor-train",
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0" if single else str(plan.rdzv_endpoint),
        rdzv_configs={"rank": 0} if single else {},
        max_restarts=0,
        monitor_interval=0.1,
    )
    try:
        elastic_launch(config, sys.executable)("-m", "advisor.cli", *arguments)
    except ChildFailedError as error:
        # The agent stops the other ranks with SIGTERM once one fails, and times failures to the second; a rank
        # caught in a collective by another's death exits PEER_LOST: the rank that failed is the first of neither.
        rank, failure = min(
            error.failures.items(),
            key=lambda item: (item[1].exitcode in (-signal.SIGTERM, PEER_LOST), item[1].timestamp, item[0]),
        )
        how = f"was killed by signal {-failure.exitcode}" if failure.exitcode < 0 else f"exited {failure.exitcode}"
        raise AdvisorError(
            f"rank {rank} of {plan.world} {how}, and the others were stopped (their output: {logs}); the same "
            "command resumes from the last checkpoint"
        ) from None
    shutil.rmtree(logs, ignore_errors=True)  # kept only to explain a failure
    return 0


PEER_LOST = 3
"""A rank's exit status when a collective failed because another rank went away (the launcher names that one)."""


@contextlib.contextmanager
def peer_lost() -> Iterator[None]:
    """Within this block, a rank whose collective fails because another rank died (torch.distributed's errors, and
    the transport's: gloo raises a plain RuntimeError) exits with PEER_LOST and one line, not a traceback; outside the
    launcher, nothing changes."""
    import re
    import sys

    if not ranks().distributed:
        yield
        return
    import torch.distributed as dist

    try:
        yield
    except RuntimeError as error:
        transport = re.search(r"gloo|nccl|connection (reset|closed|refused)|broken pipe", str(error), re.IGNORECASE)
        if not isinstance(error, dist.DistError) and not transport:
            raise
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        sys.stderr.write(f"advisor: rank {ranks().rank} lost the other ranks: {first[:200]}\n")
        raise SystemExit(PEER_LOST) from None


def shard_loss(model: Any, inputs: dict[str, torch.Tensor], world: int) -> torch.Tensor:
    """This rank's share of the step's loss: its summed loss over the label tokens of every rank, times the ranks
    (DDP averages the ranks' gradients), so the step's gradient is the one-process step's mean per label token.

    `model` is the DDP wrapper, which syncs the gradients of what runs through its forward: inside summed_forward,
    that forward is the one-process run's loss (summed); without it, the model's own loss (a sum through
    `num_items_in_batch`), equal to it to float tolerance. A rank whose rows are all padding (the last, short batch
    of an epoch) sums nothing and contributes zero."""
    import torch
    import torch.distributed as dist

    from tuner.data.packing import IGNORE_INDEX

    total = (inputs["labels"][:, 1:] != IGNORE_INDEX).sum()
    dist.all_reduce(total)
    output = model(**inputs, use_cache=False, num_items_in_batch=total.clamp(min=1))
    loss = output if isinstance(output, torch.Tensor) else output.loss
    return loss * world


@contextlib.contextmanager
def summed_forward(model: Any) -> Iterator[None]:
    """Within this block, `model` called on a packed batch returns the one-process run's loss summed over its label
    tokens, over `num_items_in_batch` (tuner.training.loss: attention by example, logits in chunks at labelled
    positions): what shard_loss runs through DDP's forward. Models the one-process loss leaves to their own loss
    (scaled or soft-capped logits, a head that is not a plain linear layer) keep their forward."""
    import types

    from tuner.training.loss import _linear_weight, plain_output_head, training_loss

    head = plain_output_head(model)
    weight = _linear_weight(head) if head is not None else None
    if weight is None:
        yield
        return

    def forward(self: Any, *, num_items_in_batch: torch.Tensor, use_cache: bool = False, **batch: Any) -> Any:
        from tuner.data.packing import IGNORE_INDEX

        counted = (batch["labels"][:, 1:] != IGNORE_INDEX).sum()
        if int(counted) == 0:  # every row padding: zero, through every trained weight (DDP expects them all)
            trained = [p for p in self.parameters() if p.requires_grad]
            decoder = self.get_decoder()(input_ids=batch["input_ids"], position_ids=batch["position_ids"])
            return decoder.last_hidden_state.sum() * 0.0 + sum(p.sum() for p in trained) * 0.0
        return training_loss(self, batch) * counted / num_items_in_batch

    model.forward = types.MethodType(forward, model)
    try:
        yield
    finally:
        vars(model).pop("forward", None)


class StepOrder:
    """The training rows in the order one process would take them, then padding rows up to whole batches.

    Accelerate's sampler for one process (a seeded permutation per epoch, seed = data seed + epoch) is followed
    exactly; the DDP data loader then gives each rank its consecutive part of each batch. Padding rows (labels all
    ignored, rows `rows` onward of the dataset) make the last batch whole, so every rank has a part and no rows are
    repeated: the step's loss and gradient are the one-process run's short last batch's."""

    def __init__(self, rows: int, batch_size: int, seed: int) -> None:
        self.rows = rows
        self.padding = -rows % batch_size
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return self.rows + self.padding

    def __iter__(self) -> Iterator[int]:
        import torch

        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        yield from torch.randperm(self.rows, generator=generator).tolist()
        yield from range(self.rows, self.rows + self.padding)
        self.epoch += 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
