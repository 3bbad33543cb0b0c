"""The checkpoint-aware training loop.

On start it resumes from the newest valid checkpoint (weights, optimizer, scheduler, RNG states, data
position); then it trains until ``total_steps``, saving every ``checkpoint_every`` steps. Between steps it
checks the stop flag (SIGTERM, Spot notice, a caller) and the time box; either way it saves a checkpoint of
the current step before returning, so at most the step in flight is lost. After a crash (no chance to save)
the next run redoes the steps since the last periodic checkpoint and, because every source of randomness
is restored, ends bit-identical to a run that was never interrupted.

``progress.json`` is written at every checkpoint and at the end: ``done`` tells the workflow whether an
exit code 0 means "finished" or "stopped early (time box), resume me".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import torch
from pydantic import BaseModel, Field

from finops.training import state
from finops.training.checkpoint import CheckpointStore, Progress
from finops.training.interruption import StopFlag, StopReason
from finops.training.job import JobBuilder, TrainingJob

log = logging.getLogger(__name__)


class TrainingFailed(RuntimeError):
    """The job itself failed (for example a non-finite loss): exit 1, no retry on Spot will fix it."""


class LoopConfig(BaseModel, frozen=True):
    total_steps: int = Field(gt=0)
    checkpoint_every: int = Field(default=50, gt=0)
    time_box_seconds: float | None = Field(default=None, gt=0)
    seed: int = 0
    run_id: str = "local"
    torch_threads: int = Field(default=1, ge=1)


@dataclass
class RunResult:
    step: int
    reason: StopReason
    job: TrainingJob
    resumed_from: int | None = None
    saved_steps: list[int] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.reason is StopReason.FINISHED


def _train_one_step(job: TrainingJob, position: state.DataPosition, seed: int) -> tuple[float, state.DataPosition]:
    indices, position = state.next_batch_indices(position, seed=seed, dataset_size=job.dataset_size,
                                                 batch_size=job.batch_size)
    batch = job.get_batch(indices)
    job.optimizer.zero_grad(set_to_none=True)
    loss = job.loss(job.model, batch)
    if not torch.isfinite(loss):
        raise TrainingFailed(f"loss is {loss.item()}")
    loss.backward()
    if job.max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(job.model.parameters(), job.max_grad_norm)
    job.optimizer.step()
    if job.scheduler is not None:
        job.scheduler.step()
    return float(loss.item()), position


def train(build: JobBuilder, store: CheckpointStore, config: LoopConfig, *, stop: StopFlag | None = None,
          clock: Callable[[], float] = time.monotonic,
          after_step: Callable[[int], None] | None = None) -> RunResult:
    """Resume, train, checkpoint; returns why it stopped. ``after_step(step)`` is a hook for callers/tests."""
    started = clock()
    stop = stop or StopFlag()
    state.make_deterministic(config.torch_threads)
    state.seed_everything(config.seed)
    job = build(seed=config.seed, total_steps=config.total_steps)

    step, position, resumed_from = 0, state.DataPosition(), None
    loaded = store.load()
    if loaded is not None:
        restored = state.restore(state.from_bytes(loaded.data), model=job.model, optimizer=job.optimizer,
                                 scheduler=job.scheduler)
        step, position, resumed_from = restored.step, restored.position, restored.step
        log.info("resumed from step %d (%s)", step, loaded.manifest.key)
    result = RunResult(step=step, reason=StopReason.FINISHED, job=job, resumed_from=resumed_from)
    last_saved = resumed_from

    def progress(reason: StopReason | None) -> Progress:
        return Progress(step=step, total_steps=config.total_steps, done=step >= config.total_steps,
                        reason=reason.value if reason else "running", run_id=config.run_id,
                        updated_at=datetime.now(UTC))

    def checkpoint() -> None:
        nonlocal last_saved
        if last_saved == step:
            return
        payload = state.capture(step=step, position=position, model=job.model, optimizer=job.optimizer,
                                scheduler=job.scheduler, run_id=config.run_id)
        store.save(step, state.to_bytes(payload), run_id=config.run_id)
        last_saved = step
        result.saved_steps.append(step)

    reason = StopReason.FINISHED
    while step < config.total_steps:
        if stop.is_set():
            reason = stop.reason or StopReason.REQUESTED
            break
        if config.time_box_seconds is not None and clock() - started >= config.time_box_seconds:
            reason = StopReason.TIME_BOX
            break
        loss, position = _train_one_step(job, position, config.seed)
        step += 1
        if step % config.checkpoint_every == 0 or step == config.total_steps:
            checkpoint()
            store.write_progress(progress(None))
            log.info("step %d/%d loss %.6f", step, config.total_steps, loss)
        if after_step is not None:
            after_step(step)

    checkpoint()
    store.write_progress(progress(reason))
    log.info("stopped at step %d/%d: %s", step, config.total_steps, reason.value)
    result.step, result.reason = step, reason
    return result
