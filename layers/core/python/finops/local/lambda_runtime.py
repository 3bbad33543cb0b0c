"""Load a function's handler the way Lambda does, and the context object it is called with.

Lambda runs one event at a time per execution environment (a process). Handler code may rely on that:
Powertools' resolver keeps the current event in a class attribute, shared by every resolver in a process.
So the local runtime is one execution environment per function: concurrent HTTP requests queue for it, as
they would for a function with reserved concurrency 1. Concurrency against DynamoDB itself is exercised by
the tests that drive the budget store from many clients over HTTP.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from ..streaming_runtime import StreamedHttpResponse

REPO_ROOT = Path(__file__).resolve().parents[5]
FUNCTIONS = REPO_ROOT / "functions"

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass
class LocalContext:
    """The attributes of Lambda's context object that Powertools and our handlers read."""

    function_name: str
    memory_limit_in_mb: int = 1024
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/local"
    log_stream_name: str = "local"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@cache
def load_handler(function: str, attribute: str = "lambda_handler") -> Handler:
    """``functions/<function>/handler.py`` imported under a unique module name."""
    path = FUNCTIONS / function / "handler.py"
    name = f"functions_{function}_handler"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return getattr(module, attribute)


_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock(function: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(function, threading.Lock())


def invoke(function: str, event: dict[str, Any]) -> Any:
    """Run one event through ``function``'s handler, one event at a time per function."""
    with _lock(function):
        return load_handler(function)(event, LocalContext(function_name=f"finops-{function}"))


def invoke_streaming(function: str, event: dict[str, Any]) -> StreamedHttpResponse:
    """Like :func:`invoke` for a response-streaming function: the invocation lasts until its body has been
    sent (or abandoned), so the function stays busy, as a Lambda execution environment does."""
    lock = _lock(function)
    lock.acquire()
    try:
        response = load_handler(function)(event, LocalContext(function_name=f"finops-{function}"))
    except BaseException:
        lock.release()
        raise

    return StreamedHttpResponse(response.status, response.headers, _Invocation(response.body, lock))


class _Invocation:
    """A streamed body that holds its function's lock until it is exhausted, fails or is closed -- closed before
    its first chunk too (a generator closed before it starts would run no ``finally``, leaving the function
    locked and the body unclosed)."""

    def __init__(self, body: Iterable[bytes], lock: threading.Lock) -> None:
        self._body = body
        self._chunks = iter(body)
        self._lock: threading.Lock | None = lock

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._chunks)
        except BaseException:  # the end, or a failure: the invocation is over either way
            self.close()
            raise

    def close(self) -> None:
        if self._lock is None:
            return
        lock, self._lock = self._lock, None
        try:
            for source in (self._chunks,) if self._chunks is self._body else (self._chunks, self._body):
                close = getattr(source, "close", None)
                if close is not None:
                    close()
        finally:
            lock.release()
