"""The IMDSv2 Spot-notice poller against a local metadata service on 127.0.0.1."""

from __future__ import annotations

import socket
import time

from finops.training.interruption import SpotNoticePoller, StopFlag, StopReason
from training_it_support import TOKEN, Imds


def test_no_notice_is_a_404(imds: Imds) -> None:
    poller = SpotNoticePoller(StopFlag(), endpoint=imds.url)
    assert poller.check() is None
    assert [r[0] for r in imds.requests] == ["PUT", "GET"]


def test_notice_is_parsed_and_the_token_is_reused(imds: Imds) -> None:
    poller = SpotNoticePoller(StopFlag(), endpoint=imds.url)
    poller.check()
    imds.give_notice("2026-11-29T17:02:00Z")
    notice = poller.check()
    assert notice is not None and (notice.action, notice.time) == ("terminate", "2026-11-29T17:02:00Z")
    assert [r[0] for r in imds.requests] == ["PUT", "GET", "GET"]
    assert all(r[2] == TOKEN for r in imds.requests if r[0] == "GET")


def test_an_expired_token_is_fetched_again(imds: Imds) -> None:
    poller = SpotNoticePoller(StopFlag(), endpoint=imds.url)
    poller._token = "expired"
    imds.give_notice()
    assert poller.check() is None  # 401 with the stale token
    assert poller.check() is not None
    assert [r[0] for r in imds.requests] == ["GET", "PUT", "GET"]


def test_connection_errors_mean_no_notice() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    flag = StopFlag()
    poller = SpotNoticePoller(flag, endpoint=f"http://127.0.0.1:{port}", interval_seconds=0.01)
    assert poller.check() is None
    with poller:
        time.sleep(0.1)
    assert not flag.is_set()


def test_background_thread_sets_the_stop_flag_on_notice(imds: Imds) -> None:
    flag = StopFlag()
    with SpotNoticePoller(flag, endpoint=imds.url, interval_seconds=0.01):
        time.sleep(0.05)
        assert not flag.is_set()
        imds.give_notice()
        assert flag.wait(5)
    assert flag.reason is StopReason.SPOT_NOTICE


def test_the_first_stop_reason_wins() -> None:
    flag = StopFlag()
    flag.set(StopReason.SIGTERM)
    flag.set(StopReason.SPOT_NOTICE)
    assert flag.reason is StopReason.SIGTERM
