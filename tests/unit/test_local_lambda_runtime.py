"""The local runtime's response-streaming invocation: the function stays busy until its body is done, and is
freed however the body ends -- read to the end, failing, or closed before its first chunk."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from finops.local import lambda_runtime
from finops.streaming_runtime import StreamedHttpResponse


class Body:
    def __init__(self, chunks: list[bytes], fail_at: int | None = None) -> None:
        self.chunks, self.fail_at, self.closed = chunks, fail_at, 0

    def __iter__(self) -> Iterator[bytes]:
        for i, chunk in enumerate(self.chunks):
            if i == self.fail_at:
                raise RuntimeError("mid-stream")
            yield chunk

    def close(self) -> None:
        self.closed += 1


@pytest.fixture
def streaming(monkeypatch: pytest.MonkeyPatch) -> Any:
    def start(body: Body) -> StreamedHttpResponse:
        monkeypatch.setattr(lambda_runtime, "load_handler",
                            lambda function: lambda event, context: StreamedHttpResponse(200, {}, body))
        return lambda_runtime.invoke_streaming("test_streaming_fn", {})
    return start


def busy() -> bool:
    return lambda_runtime._lock("test_streaming_fn").locked()


def test_the_function_is_busy_until_the_body_is_read_to_the_end(streaming) -> None:
    body = Body([b"a", b"b"])
    response = streaming(body)
    assert busy()
    assert list(response.body) == [b"a", b"b"]
    assert not busy() and body.closed == 1


def test_a_body_closed_before_its_first_chunk_frees_the_function_and_is_closed(streaming) -> None:
    body = Body([b"a", b"b"])
    response = streaming(body)
    response.body.close()
    assert not busy() and body.closed == 1
    response.body.close()  # twice: nothing more
    assert not busy() and body.closed == 1
    assert streaming(Body([b"c"])).body.close() is None  # the next invocation gets the function


def test_a_body_failing_mid_way_frees_the_function(streaming) -> None:
    body = Body([b"a", b"b"], fail_at=1)
    response = streaming(body)
    assert next(response.body) == b"a"
    with pytest.raises(RuntimeError):
        next(response.body)
    assert not busy() and body.closed == 1
