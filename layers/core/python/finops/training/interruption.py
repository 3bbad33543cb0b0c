"""Why the loop should stop early: SIGTERM, the Spot two-minute notice, or a caller's request.

:class:`StopFlag` is what the loop checks between steps. :func:`install_sigterm` sets it from the signal
handler (the loop then checkpoints and the process exits 143). :class:`SpotNoticePoller` polls the instance
metadata service (IMDSv2: PUT a session token, then GET ``spot/instance-action`` with it) on a daemon thread
and sets the flag when AWS announces the interruption. A 404 means no notice; so does any connection error
(not on EC2, IMDS disabled, hop limit too low), so the poller never stops a job that was not interrupted.
"""

from __future__ import annotations

import logging
import signal
import threading
from enum import StrEnum
from types import FrameType
from typing import Any

import httpx
from pydantic import BaseModel, ValidationError

log = logging.getLogger(__name__)

DEFAULT_IMDS_ENDPOINT = "http://169.254.169.254"
TOKEN_PATH = "/latest/api/token"  # noqa: S105 - a URL path, not a secret
INSTANCE_ACTION_PATH = "/latest/meta-data/spot/instance-action"
TOKEN_TTL_SECONDS = 21600


class StopReason(StrEnum):
    FINISHED = "finished"
    TIME_BOX = "time_box"
    SIGTERM = "sigterm"
    SPOT_NOTICE = "spot_interruption"
    REQUESTED = "requested"


class StopFlag:
    """Set once (the first reason wins); read by the loop between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self.reason: StopReason | None = None

    def set(self, reason: StopReason = StopReason.REQUESTED) -> None:
        with self._lock:
            if self.reason is None:
                self.reason = reason
            self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)


def install_sigterm(flag: StopFlag) -> Any:
    """Route SIGTERM to ``flag``; returns the previous handler (for tests to put back)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        log.warning("SIGTERM received: checkpointing before exit")
        flag.set(StopReason.SIGTERM)

    return signal.signal(signal.SIGTERM, handler)


class InstanceAction(BaseModel, frozen=True):
    """The body AWS documents: ``{"action": "terminate", "time": "2017-09-18T08:22:00Z"}``."""

    action: str
    time: str


class SpotNoticePoller:
    def __init__(self, flag: StopFlag, *, endpoint: str = DEFAULT_IMDS_ENDPOINT, interval_seconds: float = 5.0,
                 timeout_seconds: float = 1.0) -> None:
        self.flag = flag
        self.endpoint = endpoint.rstrip("/")
        self.interval_seconds = interval_seconds
        self.notice: InstanceAction | None = None
        # No proxies from the environment: the metadata service is link-local.
        self._http = httpx.Client(timeout=timeout_seconds, trust_env=False)
        self._token: str | None = None
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def _fetch_token(self) -> str:
        response = self._http.put(f"{self.endpoint}{TOKEN_PATH}",
                                  headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_SECONDS)})
        response.raise_for_status()
        return response.text

    def check(self) -> InstanceAction | None:
        """One poll: the notice if AWS has announced one, else None. Never raises."""
        try:
            if self._token is None:
                self._token = self._fetch_token()
            response = self._http.get(f"{self.endpoint}{INSTANCE_ACTION_PATH}",
                                      headers={"X-aws-ec2-metadata-token": self._token})
            if response.status_code == 401:  # token expired: fetch a new one next time
                self._token = None
                return None
            if response.status_code != 200:
                return None
            return InstanceAction.model_validate_json(response.content)
        except (httpx.HTTPError, ValidationError) as error:
            log.debug("no spot notice (%s)", error)
            self._token = None
            return None

    def _run(self) -> None:
        while not self._done.is_set() and not self.flag.is_set():
            notice = self.check()
            if notice is not None:
                self.notice = notice
                log.warning("spot interruption notice: %s at %s; checkpointing", notice.action, notice.time)
                self.flag.set(StopReason.SPOT_NOTICE)
                return
            self._done.wait(self.interval_seconds)

    def start(self) -> SpotNoticePoller:
        self._thread = threading.Thread(target=self._run, name="spot-notice-poller", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._http.close()

    def __enter__(self) -> SpotNoticePoller:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
