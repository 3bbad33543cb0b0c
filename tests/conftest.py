"""Shared test plumbing: the no-internet guard and the ONE place request headers are built.

Every integration and e2e test gets its request headers from :func:`tagged_headers` (or events through
:func:`load_event`, which applies :func:`auth_headers`). When chat calls start requiring
``Authorization: Bearer <virtual key>``, add it to :func:`auth_headers` and nothing else changes.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import socket
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

EVENTS = Path(__file__).resolve().parents[1] / "events"

PROJECT = "X-Project-ID"
USER = "X-User-ID"
ENVIRONMENT = "X-Environment"
TAG_HEADERS = (PROJECT, USER, ENVIRONMENT)

# The tags of a well-behaved client; events/chat_completion.json carries the same values.
DEFAULT_TAGS = {PROJECT: "checkout-web", USER: "alice", ENVIRONMENT: "production"}

# ------------------------------------------------------------------------------------------------------
# Headers: the single place auth and cost tags are put on a request.
# ------------------------------------------------------------------------------------------------------


def auth_headers() -> dict[str, str]:
    """Credentials a chat call needs. Today: none. Later: ``{"Authorization": "Bearer <virtual key>"}``."""
    return {}


_UNSET: Any = object()


def build_headers(project: str | None = _UNSET, user: str | None = _UNSET, environment: str | None = _UNSET,
                  extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Auth + the three cost tags. Pass ``None`` for a tag to leave that header out."""
    chosen = {
        PROJECT: DEFAULT_TAGS[PROJECT] if project is _UNSET else project,
        USER: DEFAULT_TAGS[USER] if user is _UNSET else user,
        ENVIRONMENT: DEFAULT_TAGS[ENVIRONMENT] if environment is _UNSET else environment,
    }
    headers = auth_headers()
    headers.update({k: v for k, v in chosen.items() if v is not None})
    headers.update(extra or {})
    return headers


def _without(headers: dict[str, Any], names: Iterable[str]) -> None:
    lowered = {n.lower() for n in names}
    for key in [k for k in headers if k.lower() in lowered]:
        del headers[key]


def build_event(name: str, *, headers: Mapping[str, str] | None = None, drop: Iterable[str] = (),
                body: Any = _UNSET, request_id: str | None = None, keep_request_id: bool = False,
                path: str | None = None, method: str | None = None) -> dict[str, Any]:
    """``events/<name>.json`` with auth applied, headers overridden/dropped and a fresh request id."""
    event = copy.deepcopy(json.loads((EVENTS / f"{name}.json").read_text()))
    overrides = {**auth_headers(), **(headers or {})}
    for key in ("headers", "multiValueHeaders"):
        current = event.get(key) or {}
        _without(current, [*overrides, *drop])
        for k, v in overrides.items():
            current[k] = v if key == "headers" else [v]
        event[key] = current
    if body is not _UNSET:
        event["body"] = body if body is None or isinstance(body, str) else json.dumps(body)
        event["isBase64Encoded"] = False
    if not keep_request_id:
        event["requestContext"]["requestId"] = request_id or str(uuid.uuid4())
        event["requestContext"]["extendedRequestId"] = event["requestContext"]["requestId"]
    if path is not None:
        event["path"] = path
        event["pathParameters"] = {"proxy": path.lstrip("/")}
        event["requestContext"]["path"] = f"/{event['requestContext']['stage']}{path}"
    if method is not None:
        event["httpMethod"] = method
        event["requestContext"]["httpMethod"] = method
    return event


@pytest.fixture
def tagged_headers() -> Callable[..., dict[str, str]]:
    """``tagged_headers(project=..., user=..., environment=..., extra=...)`` -> request headers."""
    return build_headers


@pytest.fixture
def load_event() -> Callable[..., dict[str, Any]]:
    return build_event


@pytest.fixture
def default_tags() -> dict[str, str]:
    return dict(DEFAULT_TAGS)


# ------------------------------------------------------------------------------------------------------
# No internet: any connection to a non-loopback address fails loudly.
# ------------------------------------------------------------------------------------------------------


class NetworkBlocked(RuntimeError):
    pass


LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def _is_loopback_host(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode()
    if not isinstance(host, str):
        return False
    host = host.strip("[]").split("%", 1)[0]
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_address(family: int, address: Any) -> None:
    if family == getattr(socket, "AF_UNIX", object()):
        return
    host = address[0] if isinstance(address, tuple) and address else address
    if not _is_loopback_host(host):
        raise NetworkBlocked(f"tests may only connect to loopback, not {address!r}")


@pytest.fixture(autouse=True, scope="session")
def _no_internet() -> Iterable[None]:
    mp = pytest.MonkeyPatch()
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_create_connection = socket.create_connection
    real_getaddrinfo = socket.getaddrinfo

    def connect(self: socket.socket, address: Any) -> Any:
        _check_address(self.family, address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> Any:
        _check_address(self.family, address)
        return real_connect_ex(self, address)

    def create_connection(address: Any, *args: Any, **kwargs: Any) -> Any:
        _check_address(socket.AF_INET, address)
        return real_create_connection(address, *args, **kwargs)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not _is_loopback_host(host):
            raise NetworkBlocked(f"tests may not resolve {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    mp.setattr(socket.socket, "connect", connect)
    mp.setattr(socket.socket, "connect_ex", connect_ex)
    mp.setattr(socket, "create_connection", create_connection)
    mp.setattr(socket, "getaddrinfo", getaddrinfo)
    try:
        yield
    finally:
        mp.undo()
