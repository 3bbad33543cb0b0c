"""The streaming runtime loop against a Runtime API endpoint on 127.0.0.1.

The server below implements the documented Runtime API routes the loop uses (next, response in streaming
mode, error), reading the chunked response as it arrives, so the tests see what Lambda would: the
http-integration prelude, the 8-byte delimiter, each chunk when it is written, and error trailers.
(AWS's runtime interface emulator is a Go binary that is not installable here; see docs/streaming.md.)
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from finops.local.lambda_runtime import load_handler
from finops.streaming_runtime import (
    DELIMITER,
    HTTP_INTEGRATION_RESPONSE,
    RuntimeClient,
    StreamedHttpResponse,
    serve,
)

EVENTS = Path(__file__).resolve().parents[2] / "events"


class RuntimeApi(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self.responses: dict[str, dict[str, Any]] = {}
        self.errors: dict[str, dict[str, Any]] = {}
        self.first_chunk = threading.Event()
        self.done = threading.Event()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: RuntimeApi

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:  # /2018-06-01/runtime/invocation/next
        request_id, event = self.server.events.get(timeout=10)
        body = json.dumps(event).encode()
        self.send_response(200)
        self.send_header("Lambda-Runtime-Aws-Request-Id", request_id)
        self.send_header("Lambda-Runtime-Deadline-Ms", "9999999999999")
        self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:1:function:f")
        self.send_header("Lambda-Runtime-Trace-Id", "Root=1-abc;Sampled=0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        parts = self.path.strip("/").split("/")
        request_id = parts[-2]
        if parts[-1] == "error":
            length = int(self.headers["Content-Length"])
            self.server.errors[request_id] = json.loads(self.rfile.read(length))
        else:
            record: dict[str, Any] = {"headers": dict(self.headers), "chunks": [], "trailers": {}}
            self.server.responses[request_id] = record
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    break
                record["chunks"].append(self.rfile.read(size))
                self.rfile.readline()
                self.server.first_chunk.set() if len(record["chunks"]) == 2 else None
            while (line := self.rfile.readline().strip()):
                name, _, value = line.decode().partition(": ")
                record["trailers"][name] = value
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()
        self.server.done.set()


@pytest.fixture
def runtime_api() -> Iterator[RuntimeApi]:
    server = RuntimeApi()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def run_once(runtime_api: RuntimeApi, handler: Any, event: dict[str, Any], request_id: str = "req-1") -> None:
    runtime_api.events.put((request_id, event))
    serve(handler, RuntimeClient(runtime_api.address, timeout=10), invocations=1)


def test_the_response_is_streamed_with_the_prelude_and_each_chunk_as_it_is_produced(runtime_api) -> None:
    waited = []

    def body() -> Iterator[bytes]:
        yield b"data: one\n\n"
        # The runtime must have sent the prelude and the first chunk already: a buffering loop deadlocks here.
        waited.append(runtime_api.first_chunk.wait(timeout=5))
        yield b"data: two\n\n"

    def handler(event: dict[str, Any], context: Any) -> StreamedHttpResponse:
        assert context.aws_request_id == "req-1" and context.get_remaining_time_in_millis() > 0
        return StreamedHttpResponse(200, {"Content-Type": "text/event-stream", "X-Request-ID": "r"}, body())

    run_once(runtime_api, handler, {"path": "/v1/chat/completions"})
    assert waited == [True]
    record = runtime_api.responses["req-1"]
    assert record["headers"]["Lambda-Runtime-Function-Response-Mode"] == "streaming"
    assert record["headers"]["Content-Type"] == HTTP_INTEGRATION_RESPONSE
    prelude, *payload = record["chunks"]
    assert prelude.endswith(DELIMITER)
    assert json.loads(prelude[: -len(DELIMITER)]) == {
        "statusCode": 200, "headers": {"Content-Type": "text/event-stream", "X-Request-ID": "r"}, "cookies": []}
    assert payload == [b"data: one\n\n", b"data: two\n\n"]
    assert record["trailers"] == {}


def test_a_failure_mid_stream_is_reported_in_the_trailers_and_the_body_is_closed(runtime_api) -> None:
    closed = []

    def body() -> Iterator[bytes]:
        try:
            yield b"data: partial\n\n"
            raise RuntimeError("boom")
        finally:
            closed.append(True)

    run_once(runtime_api, lambda e, c: StreamedHttpResponse(200, {}, body()), {})
    record = runtime_api.responses["req-1"]
    assert record["chunks"][1:] == [b"data: partial\n\n"]
    assert record["trailers"]["Lambda-Runtime-Function-Error-Type"] == "RuntimeError"
    assert closed == [True]


def test_a_handler_that_fails_before_streaming_posts_an_invocation_error(runtime_api) -> None:
    def handler(event: dict[str, Any], context: Any) -> StreamedHttpResponse:
        raise ValueError("bad wiring")

    run_once(runtime_api, handler, {})
    assert runtime_api.errors["req-1"]["errorType"] == "ValueError"
    assert "req-1" not in runtime_api.responses


def test_the_gateway_stream_handler_answers_bad_input_through_the_loop(runtime_api) -> None:
    event = json.loads((EVENTS / "chat_completion_stream.json").read_text())
    event["body"] = "{not json"
    run_once(runtime_api, load_handler("gateway_stream"), event, request_id="req-bad")
    prelude, *payload = runtime_api.responses["req-bad"]["chunks"]
    meta = json.loads(prelude[: -len(DELIMITER)])
    assert meta["statusCode"] == 400
    assert meta["headers"]["Content-Type"] == "application/json"
    error = json.loads(b"".join(payload))["error"]
    assert (error["type"], error["message"]) == ("invalid_request_error", "The request body is not valid JSON.")
