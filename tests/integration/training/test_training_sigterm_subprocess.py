"""The real container command, ``python -m finops.training``, against moto's server on 127.0.0.1.

A first process is killed with SIGTERM between periodic checkpoints: it must checkpoint the step it reached
and exit 143. The next attempt (``main()``, in-process to save a second torch start-up) resumes and finishes
(exit 0); its final checkpoint is bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from finops.training import state, tiny
from finops.training.__main__ import main
from finops.training.checkpoint import CheckpointStore, S3Location
from finops.training.loop import LoopConfig, train
from moto.server import ThreadedMotoServer
from training_it_support import Imds, assert_identical_training, snapshot

ROOT = Path(__file__).resolve().parents[3]
TOTAL, EVERY, SEED = 200, 50, 7


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(moto_server: str) -> object:
    return boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing")


def _env(moto_server: str, uri: str, imds: Imds, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FINOPS_", "AWS_"))}
    env.update({
        "AWS_ENDPOINT_URL": moto_server, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1", "PYTHONPATH": str(ROOT / "layers/core/python"),
        "FINOPS_CHECKPOINT_URI": uri, "FINOPS_TOTAL_STEPS": str(TOTAL), "FINOPS_CHECKPOINT_EVERY": str(EVERY),
        "FINOPS_SEED": str(SEED), "FINOPS_RUN_ID": "sigterm-test", "FINOPS_IMDS_ENDPOINT": imds.url,
        **extra,
    })
    return env


class Process:
    """A child whose stderr lines are collected on a thread (so the pipe never fills up)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.text: list[str] = []
        self.proc = subprocess.Popen([sys.executable, "-m", "finops.training"], cwd=ROOT, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.text.append(line)
            self.lines.put(line)

    def wait_for(self, needle: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if needle in self.lines.get(timeout=0.5):
                    return
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
        raise AssertionError(f"never saw {needle!r}; stderr:\n{''.join(self.text)}")

    def wait(self, timeout: float = 60) -> int:
        return self.proc.wait(timeout)


def test_sigterm_checkpoints_then_exits_143_and_a_new_process_resumes_bit_identically(
        moto_server: str, s3: object, imds: Imds, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    bucket = f"ckpt-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    uri = f"s3://{bucket}/jobs/demo/"
    store = CheckpointStore(S3Location.parse(uri), client=s3)

    first = Process(_env(moto_server, uri, imds, FINOPS_TINY_STEP_SLEEP_SECONDS="0.01"))
    try:
        first.wait_for("checkpoint saved step=50 ")
        time.sleep(0.15)  # some steps past the periodic checkpoint
        first.proc.send_signal(signal.SIGTERM)
        assert first.wait() == 143, "".join(first.text)
    finally:
        if first.proc.poll() is None:
            first.proc.kill()

    stopped_at = store.generations()[0]
    assert EVERY < stopped_at < TOTAL and stopped_at % EVERY != 0  # saved on the signal, not by the schedule
    progress = store.read_progress()
    assert (progress.step, progress.done, progress.reason) == (stopped_at, False, "sigterm")
    assert "SIGTERM received" in "".join(first.text)
    assert any(r[0] == "GET" for r in imds.requests)  # the Spot poller ran (404: no notice)

    # The next attempt (in-process here, to keep the test fast): same command, same environment.
    for name, value in _env(moto_server, uri, imds).items():
        if name.startswith(("FINOPS_", "AWS_")):
            monkeypatch.setenv(name, value)
    assert main() == 0
    assert f"resumed from step {stopped_at} " in caplog.text
    assert store.read_progress().done

    final = store.load()
    assert final is not None and final.manifest.step == TOTAL
    payload = state.from_bytes(final.data)
    want = snapshot(train(tiny.build, CheckpointStore(S3Location.parse(f"s3://{bucket}/reference/"), client=s3),
                          LoopConfig(total_steps=TOTAL, checkpoint_every=EVERY, seed=SEED)).job)
    assert_identical_training({k: payload[k] for k in ("model", "optimizer", "scheduler", "rng")}, want)
