"""Shared test plumbing: the no-internet guard, moto without global resets, and the ONE place request
headers are built.

Every integration and e2e test gets its request headers from the ``tagged_headers`` fixture (or events
through ``load_event``); both go through :func:`auth_headers`, which adds ``Authorization: Bearer <virtual
key>`` from the ``virtual_key`` fixture (overridden by the integration and e2e conftests, which create or
read a key). Auth changes happen there and nowhere else.
"""

from __future__ import annotations

import copy
import functools
import ipaddress
import json
import os
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


def auth_headers(virtual_key: str | None) -> dict[str, str]:
    """Credentials a chat call needs: ``Authorization: Bearer <virtual key>`` when the suite has one."""
    return {"Authorization": f"Bearer {virtual_key}"} if virtual_key else {}


_UNSET: Any = object()


def build_headers(project: str | None = _UNSET, user: str | None = _UNSET, environment: str | None = _UNSET,
                  extra: Mapping[str, str] | None = None, *, key: str | None = None) -> dict[str, str]:
    """Auth + the three cost tags. Pass ``None`` for a tag to leave that header out."""
    chosen = {
        PROJECT: DEFAULT_TAGS[PROJECT] if project is _UNSET else project,
        USER: DEFAULT_TAGS[USER] if user is _UNSET else user,
        ENVIRONMENT: DEFAULT_TAGS[ENVIRONMENT] if environment is _UNSET else environment,
    }
    headers = auth_headers(key)
    headers.update({k: v for k, v in chosen.items() if v is not None})
    headers.update(extra or {})
    return headers


def _without(headers: dict[str, Any], names: Iterable[str]) -> None:
    lowered = {n.lower() for n in names}
    for key in [k for k in headers if k.lower() in lowered]:
        del headers[key]


def build_event(name: str, *, headers: Mapping[str, str] | None = None, drop: Iterable[str] = (),
                body: Any = _UNSET, request_id: str | None = None, keep_request_id: bool = False,
                path: str | None = None, method: str | None = None, key: str | None = None) -> dict[str, Any]:
    """``events/<name>.json`` with auth applied, headers overridden/dropped and a fresh request id."""
    event = copy.deepcopy(json.loads((EVENTS / f"{name}.json").read_text()))
    overrides = {**auth_headers(key), **(headers or {})}
    for field in ("headers", "multiValueHeaders"):
        current = event.get(field) or {}
        _without(current, [*overrides, *drop])
        for k, v in overrides.items():
            current[k] = v if field == "headers" else [v]
        event[field] = current
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
def virtual_key() -> str | None:
    """The gateway key requests carry. Overridden where a gateway with keys is running."""
    return None


@pytest.fixture
def tagged_headers(virtual_key: str | None) -> Callable[..., dict[str, str]]:
    """``tagged_headers(project=..., user=..., environment=..., extra=...)`` -> request headers."""
    return functools.partial(build_headers, key=virtual_key)


@pytest.fixture
def load_event(virtual_key: str | None) -> Callable[..., dict[str, Any]]:
    """``load_event("chat_completion", headers=..., drop=..., body=...)`` -> an API Gateway proxy event."""
    return functools.partial(build_event, key=virtual_key)


@pytest.fixture
def default_tags() -> dict[str, str]:
    return dict(DEFAULT_TAGS)


# ------------------------------------------------------------------------------------------------------
# Speed: botocore parses its service JSON once per Session; the code under test (and moto) create many
# sessions. Share one read-only loader so each client creation does not re-parse the same files.
# ------------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True, scope="session")
def _shared_botocore_loader() -> Iterable[None]:
    import botocore.loaders
    import botocore.session

    loaders: dict[Any, Any] = {}
    real = botocore.loaders.create_loader

    def create_loader(search_path_string: Any = None) -> Any:
        if search_path_string not in loaders:
            loaders[search_path_string] = real(search_path_string)
        return loaders[search_path_string]

    mp = pytest.MonkeyPatch()
    mp.setattr(botocore.session, "create_loader", create_loader)
    try:
        yield
    finally:
        mp.undo()


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


# ------------------------------------------------------------------------------------------------------
# moto in-process, without wiping other tests' state.
# ------------------------------------------------------------------------------------------------------


@pytest.fixture
def moto_aws(monkeypatch: pytest.MonkeyPatch) -> Iterable[str]:
    """``mock_aws`` that neither resets moto's backends on start nor wipes them on stop.

    moto's backends are process-global and shared with any in-process moto *server* (the local stack, the
    emulator-based tests). A plain ``mock_aws()`` would erase their tables; tests using this fixture name
    their resources with the yielded unique suffix and delete them themselves. AWS_ENDPOINT_URL is removed so
    boto3 talks to the mock, not to a server.
    """
    from moto import mock_aws

    for name in list(os.environ):
        if name.startswith("AWS_ENDPOINT_URL") or name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    mock = mock_aws()
    mock.start(reset=False)
    try:
        yield uuid.uuid4().hex[:10]
    finally:
        mock.stop(remove_data=False)


# ------------------------------------------------------------------------------------------------------
# xdist: keep the e2e tests on one worker.
# ------------------------------------------------------------------------------------------------------


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup`` that also groups ``tests/e2e`` by path.

    pytest-xdist 3.8 tags ``xdist_group`` tests by assigning ``item._nodeid``; pytest >= 9 derives
    ``nodeid`` from ``item._id`` instead, so the tag is lost and the group's tests are spread over all
    workers (each then starting its own local stack, interleaved with tests that reset moto). The e2e tests
    keep their ``xdist_group("e2e")`` mark; this scheduler enforces it by path until xdist catches up.
    """
    if config.getoption("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class PathAwareLoadGroupScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            if "@" not in nodeid and nodeid.replace("\\", "/").startswith("tests/e2e/"):
                return "e2e"
            return super()._split_scope(nodeid)

    return PathAwareLoadGroupScheduling(config, log)
