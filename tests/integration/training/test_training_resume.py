"""Exact resume: interrupted runs end bit-identical to an uninterrupted one (weights, optimizer, scheduler, RNGs).

Each "container" is a fresh ``train()`` call on the same S3 prefix. A *stop* (the flag SIGTERM and the Spot
notice set) checkpoints the current step before returning; a *crash* (kill -9, a lost host) does not, so the
next run resumes from the last periodic checkpoint and redoes the steps since.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from finops.training import tiny
from finops.training.interruption import StopFlag, StopReason
from finops.training.loop import LoopConfig, train
from training_it_support import EVERY, TOTAL, SimulatedCrash, assert_identical_training, snapshot

CONFIG = LoopConfig(total_steps=TOTAL, checkpoint_every=EVERY, seed=11, run_id="resume-test")
_REFERENCE: dict[int, dict[str, Any]] = {}


def reference(new_store: Any, seed: int = CONFIG.seed) -> dict[str, Any]:
    """The uninterrupted run (computed once per seed; it does not depend on the bucket)."""
    if seed not in _REFERENCE:
        result = train(tiny.build, new_store(f"reference-{seed}"), CONFIG.model_copy(update={"seed": seed}))
        assert result.reason is StopReason.FINISHED and result.resumed_from is None
        _REFERENCE[seed] = snapshot(result.job)
    return _REFERENCE[seed]


def run_with_interruptions(new_store: Any, events: list[tuple[int, str]]) -> tuple[dict[str, Any], list[Any]]:
    """Train to the end, stopping ("stop") or crashing ("crash") after the given steps, once each."""
    pending = sorted(events)
    runs: list[Any] = []
    for _attempt in range(len(events) + 1):
        stop = StopFlag()

        def after_step(step: int, stop: StopFlag = stop) -> None:
            if pending and pending[0][0] == step:
                _, kind = pending.pop(0)
                if kind == "crash":
                    raise SimulatedCrash(f"crash after step {step}")
                stop.set(StopReason.REQUESTED)

        try:
            result = train(tiny.build, new_store("job"), CONFIG, stop=stop, after_step=after_step)
        except SimulatedCrash:
            runs.append("crash")
            continue
        runs.append(result)
        if result.reason is StopReason.FINISHED:
            return snapshot(result.job), runs
    raise AssertionError(f"never finished: {runs}")


@pytest.mark.parametrize("stops", [[1], [37, 38], [50], [73, 121, 159]], ids=str)
def test_stopped_runs_end_bit_identical(new_store: Any, stops: list[int]) -> None:
    want = reference(new_store)
    got, runs = run_with_interruptions(new_store, [(s, "stop") for s in stops])

    assert_identical_training(got, want)
    results = [r for r in runs if r != "crash"]
    assert [r.step for r in results[:-1]] == stops  # each stop checkpointed exactly where it stopped
    assert [r.resumed_from for r in results[1:]] == stops


@pytest.mark.parametrize("crashes", [[64], [49, 99, 149], [50, 51]], ids=str)
def test_crashed_runs_redo_lost_steps_and_end_bit_identical(new_store: Any, crashes: list[int]) -> None:
    want = reference(new_store)
    got, runs = run_with_interruptions(new_store, [(c, "crash") for c in crashes])

    assert_identical_training(got, want)
    final = runs[-1]
    expected_resume = (crashes[-1] // EVERY) * EVERY or None  # the last periodic checkpoint before the crash
    assert final.resumed_from == expected_resume
    assert final.step == TOTAL


def test_mixed_stops_and_crashes(new_store: Any) -> None:
    want = reference(new_store)
    got, runs = run_with_interruptions(new_store, [(30, "stop"), (75, "crash"), (120, "stop"), (155, "crash")])

    assert_identical_training(got, want)
    assert [r if r == "crash" else r.resumed_from for r in runs] == [None, "crash", 50, "crash", 150]


def test_reference_is_sensitive_to_the_seed(new_store: Any) -> None:
    """Guards the comparison itself: a different seed must give different weights."""
    a, b = reference(new_store, seed=11), reference(new_store, seed=12)
    assert any(not torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
