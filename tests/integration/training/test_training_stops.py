"""Stopping cleanly: the Spot two-minute notice (IMDSv2 on 127.0.0.1) and the time box, via the loop and main()."""

from __future__ import annotations

import functools
import itertools
from typing import Any

import boto3
import pytest
from finops.training import tiny
from finops.training.__main__ import main
from finops.training.checkpoint import CheckpointStore, S3Location
from finops.training.interruption import SpotNoticePoller, StopFlag, StopReason
from finops.training.loop import LoopConfig, train
from training_it_support import TOKEN, Imds, assert_identical_training, snapshot

SLOW = functools.partial(tiny.build, settings=tiny.TinySettings(step_sleep_seconds=0.004))


def test_spot_notice_makes_the_loop_checkpoint_and_stop(new_store: Any, imds: Imds) -> None:
    store = new_store()
    config = LoopConfig(total_steps=200, checkpoint_every=50, seed=2)
    stop = StopFlag()

    def after_step(step: int) -> None:
        if step == 60:
            imds.give_notice()

    with SpotNoticePoller(stop, endpoint=imds.url, interval_seconds=0.01) as poller:
        result = train(SLOW, store, config, stop=stop, after_step=after_step)

    assert result.reason is StopReason.SPOT_NOTICE and poller.notice is not None
    assert poller.notice.action == "terminate"
    assert 60 <= result.step < 200
    assert store.generations()[0] == result.step  # checkpointed where it stopped
    progress = store.read_progress()
    assert progress.step == result.step and not progress.done and progress.reason == "spot_interruption"
    # IMDSv2: a token PUT with a TTL, then GETs carrying that token.
    assert ("PUT", "/latest/api/token", "21600") in imds.requests
    gets = [r for r in imds.requests if r[0] == "GET"]
    assert gets and all(r[1] == "/latest/meta-data/spot/instance-action" and r[2] == TOKEN for r in gets)

    resumed = train(tiny.build, new_store(), config)
    assert resumed.resumed_from == result.step and resumed.reason is StopReason.FINISHED


def test_time_box_checkpoints_and_a_later_run_finishes_identically(new_store: Any) -> None:
    config = LoopConfig(total_steps=160, checkpoint_every=50, seed=4)
    want = snapshot(train(tiny.build, new_store("reference"), config).job)

    ticks = itertools.count()  # a clock that advances one second per reading: the box closes deterministically
    boxed = train(tiny.build, new_store(), config.model_copy(update={"time_box_seconds": 70}),
                  clock=lambda: float(next(ticks)))
    assert boxed.reason is StopReason.TIME_BOX and 0 < boxed.step < 160
    progress = new_store().read_progress()
    assert not progress.done and progress.step == boxed.step and progress.reason == "time_box"
    assert new_store().generations()[0] == boxed.step

    finished = train(tiny.build, new_store(), config)
    assert finished.resumed_from == boxed.step
    assert_identical_training(snapshot(finished.job), want)
    assert new_store().read_progress().done

    again = train(tiny.build, new_store(), config)  # a retry after the job finished: nothing left to do
    assert (again.resumed_from, again.step, again.saved_steps, again.done) == (160, 160, [], True)


# ------------------------------------------------------------------------------------------------------
# main(): the env contract and the exit codes
# ------------------------------------------------------------------------------------------------------


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, bucket: str, imds: Imds) -> pytest.MonkeyPatch:
    monkeypatch.setenv("FINOPS_CHECKPOINT_URI", f"s3://{bucket}/runs/r1/")
    monkeypatch.setenv("FINOPS_RUN_ID", "r1")
    monkeypatch.setenv("FINOPS_IMDS_ENDPOINT", imds.url)
    monkeypatch.setenv("FINOPS_IMDS_POLL_SECONDS", "0.02")
    return monkeypatch


def _store(bucket: str) -> CheckpointStore:
    return CheckpointStore(S3Location.parse(f"s3://{bucket}/runs/r1/"), client=boto3.client("s3"))


def test_main_time_box_exits_0_not_done_then_a_second_run_finishes(env: pytest.MonkeyPatch, bucket: str) -> None:
    env.setenv("FINOPS_TOTAL_STEPS", "300")
    env.setenv("FINOPS_TIME_BOX_SECONDS", "0.4")
    env.setenv("FINOPS_TINY_STEP_SLEEP_SECONDS", "0.004")

    assert main() == 0
    progress = _store(bucket).read_progress()
    assert not progress.done and progress.reason == "time_box" and progress.step < 300
    assert _store(bucket).generations()[0] == progress.step

    env.setenv("FINOPS_TIME_BOX_SECONDS", "")  # the contract's "unset": no box
    env.delenv("FINOPS_TINY_STEP_SLEEP_SECONDS")
    assert main() == 0
    assert _store(bucket).read_progress().model_dump(include={"step", "total_steps", "done"}) == {
        "step": 300, "total_steps": 300, "done": True}


def test_main_spot_notice_not_followed_by_reclaim_exits_0_not_done(env: pytest.MonkeyPatch, bucket: str,
                                                                  imds: Imds) -> None:
    env.setenv("FINOPS_TOTAL_STEPS", "300")
    env.setenv("FINOPS_RECLAIM_WAIT_SECONDS", "0")
    imds.give_notice()

    assert main() == 0
    progress = _store(bucket).read_progress()
    assert not progress.done and progress.reason == "spot_interruption"


def test_main_real_failure_exits_1(env: pytest.MonkeyPatch) -> None:
    env.setenv("FINOPS_TOTAL_STEPS", "10")
    env.setenv("FINOPS_TRAINING_JOB", "finops.training.tiny:no_such_builder")
    assert main() == 1


def test_main_non_finite_loss_exits_1(env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    env.setenv("FINOPS_TOTAL_STEPS", "10")
    env.setenv("FINOPS_TINY_LEARNING_RATE", "1e30")
    assert main() == 1
    assert "TrainingFailed: loss is" in caplog.text
