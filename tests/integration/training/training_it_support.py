"""Helpers for the training integration tests: comparing two trainings bit for bit, a local IMDSv2."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import torch
from finops.training import state
from finops.training.job import TrainingJob

TOTAL = 160
EVERY = 50


class SimulatedCrash(RuntimeError):
    """Stands for kill -9 / a lost host: the run stops without a chance to checkpoint."""


def assert_same(a: Any, b: Any, path: str = "") -> None:
    """Recursive equality where tensors must be bit-identical (``torch.equal``, same dtype)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        assert isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor), path
        assert a.dtype == b.dtype and torch.equal(a, b), f"tensors differ at {path}"
    elif isinstance(a, Mapping):
        assert isinstance(b, Mapping) and set(a) == set(b), f"keys differ at {path}: {set(a) ^ set(b)}"
        for key in a:
            assert_same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), f"lengths differ at {path}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def snapshot(job: TrainingJob) -> dict[str, Any]:
    """Everything that must match after training: weights, optimizer, scheduler and the RNGs' next draws."""
    return {
        "model": {k: v.clone() for k, v in job.model.state_dict().items()},
        "optimizer": job.optimizer.state_dict(),
        "scheduler": job.scheduler.state_dict() if job.scheduler is not None else None,
        "rng": state.capture_rng(),
    }


def assert_identical_training(got: Mapping[str, Any], want: Mapping[str, Any]) -> None:
    assert got["model"].keys() == want["model"].keys()
    for name, tensor in want["model"].items():
        assert torch.equal(got["model"][name], tensor), f"weight {name} differs"
    assert_same(got["optimizer"], want["optimizer"], "optimizer")
    assert_same(got["scheduler"], want["scheduler"], "scheduler")
    assert_same(got["rng"], want["rng"], "rng")


# ------------------------------------------------------------------------------------------------------
# IMDSv2 on 127.0.0.1: token PUT, then spot/instance-action GET (404 until a notice is posted)
# ------------------------------------------------------------------------------------------------------

TOKEN = "AQAEAFakeImdsV2Token=="


@dataclass
class Imds:
    server: ThreadingHTTPServer
    notice: dict[str, str] | None = None
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def give_notice(self, when: str = "2026-11-29T17:00:00Z") -> None:
        with self.lock:
            self.notice = {"action": "terminate", "time": when}


def serve_imds() -> Imds:
    imds: Imds

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: str, content_type: str = "text/plain") -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_PUT(self) -> None:
            with imds.lock:
                imds.requests.append(("PUT", self.path, self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")))
            if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                self._send(200, TOKEN)
            else:
                self._send(400, "missing ttl")

        def do_GET(self) -> None:
            token = self.headers.get("X-aws-ec2-metadata-token")
            with imds.lock:
                imds.requests.append(("GET", self.path, token))
                notice = imds.notice
            if token != TOKEN:
                self._send(401, "")
            elif self.path != "/latest/meta-data/spot/instance-action" or notice is None:
                self._send(404, "Not Found")
            else:
                self._send(200, json.dumps(notice), "application/json")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    imds = Imds(server)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="imds", daemon=True).start()
    return imds
