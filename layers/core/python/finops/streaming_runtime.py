"""A Lambda runtime loop that streams responses, for the Python runtime (which cannot stream on its own).

Why a loop of our own: API Gateway REST streams a Lambda proxy integration (``responseTransferMode:
STREAM``, InvokeWithResponseStream) only if the function writes its response in the Runtime API's
streaming mode, which AWS's Python runtime client does not do (only Node.js has ``streamifyResponse``). The
alternatives were the Lambda Web Adapter (a Rust extension in a layer published from another account,
with the app rewritten as an HTTP server) and a function URL (which streams only what the runtime
streams: the same problem, and a second front door beside the API). This module is the smallest piece
that closes the gap: ~150 lines speaking the documented Runtime API over ``http.client``.

It runs in the managed python3.x runtime: ``AWS_LAMBDA_EXEC_WRAPPER`` points at
``functions/gateway_stream/bootstrap``, which execs ``python -m finops.streaming_runtime handler.<name>``.

Wire format (API Gateway's "Lambda proxy integration format for response streaming"): the response is
``Content-Type: application/vnd.awslambda.http-integration-response``; its body is a JSON prelude
``{"statusCode", "headers", "cookies"}``, eight NUL bytes, then the payload as produced. A failure after
the first byte is reported in the HTTP trailers ``Lambda-Runtime-Function-Error-Type/-Body``.
"""

from __future__ import annotations

import base64
import http.client
import importlib
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

API_VERSION = "2018-06-01"
HTTP_INTEGRATION_RESPONSE = "application/vnd.awslambda.http-integration-response"
DELIMITER = b"\x00" * 8


@dataclass
class StreamedHttpResponse:
    """What a streaming handler returns: status and headers first, then the body as it is produced."""

    status: int
    headers: dict[str, str]
    body: Iterable[bytes]


@dataclass
class InvocationContext:
    """The attributes of Lambda's context object that Powertools and our handlers read."""

    aws_request_id: str
    deadline_ms: int
    invoked_function_arn: str
    function_name: str = field(default_factory=lambda: os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "local"))
    function_version: str = field(default_factory=lambda: os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"))
    memory_limit_in_mb: int = field(
        default_factory=lambda: int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")))
    log_group_name: str = field(default_factory=lambda: os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", ""))
    log_stream_name: str = field(default_factory=lambda: os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", ""))

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.deadline_ms - int(time.time() * 1000))


def prelude(status: int, headers: Mapping[str, str]) -> bytes:
    return json.dumps({"statusCode": status, "headers": dict(headers), "cookies": []}).encode() + DELIMITER


def _error_payload(exc: BaseException) -> dict[str, Any]:
    return {"errorType": type(exc).__name__, "errorMessage": str(exc),
            "stackTrace": traceback.format_exception(type(exc), exc, exc.__traceback__)[-5:]}


class RuntimeClient:
    """The Runtime API at ``AWS_LAMBDA_RUNTIME_API`` (host:port)."""

    def __init__(self, address: str, timeout: float | None = None) -> None:
        host, _, port = address.partition(":")
        self.host, self.port = host, int(port or 80)
        self.timeout = timeout

    def _connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def next(self) -> tuple[dict[str, Any], InvocationContext, str | None]:
        conn = self._connection()
        try:
            conn.request("GET", f"/{API_VERSION}/runtime/invocation/next")
            response = conn.getresponse()
            body = response.read()
            context = InvocationContext(
                aws_request_id=response.headers["Lambda-Runtime-Aws-Request-Id"],
                deadline_ms=int(response.headers.get("Lambda-Runtime-Deadline-Ms") or 0),
                invoked_function_arn=response.headers.get("Lambda-Runtime-Invoked-Function-Arn", ""),
            )
            return json.loads(body), context, response.headers.get("Lambda-Runtime-Trace-Id")
        finally:
            conn.close()

    def stream(self, request_id: str, response: StreamedHttpResponse) -> bool:
        """Send ``response`` in streaming mode. Returns False if the connection broke (the client went
        away); the body iterator is closed either way, so whatever produces it settles."""
        conn = self._connection()
        body = iter(response.body)
        failure: BaseException | None = None
        try:
            conn.putrequest("POST", f"/{API_VERSION}/runtime/invocation/{request_id}/response")
            conn.putheader("Lambda-Runtime-Function-Response-Mode", "streaming")
            conn.putheader("Content-Type", HTTP_INTEGRATION_RESPONSE)
            conn.putheader("Transfer-Encoding", "chunked")
            conn.putheader("Trailer", "Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body")
            conn.endheaders()
            self._chunk(conn, prelude(response.status, response.headers))
            while True:
                try:
                    data = next(body)
                except StopIteration:
                    break
                except Exception as exc:  # the producer failed after the first byte: report it in trailers
                    failure = exc
                    break
                if data:
                    self._chunk(conn, data)
            trailers = b""
            if failure is not None:
                encoded = base64.b64encode(json.dumps(_error_payload(failure)).encode())
                trailers = (f"Lambda-Runtime-Function-Error-Type: {type(failure).__name__}\r\n".encode()
                            + b"Lambda-Runtime-Function-Error-Body: " + encoded + b"\r\n")
            conn.send(b"0\r\n" + trailers + b"\r\n")
            conn.getresponse().read()
            return True
        except OSError:
            return False
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
            conn.close()

    @staticmethod
    def _chunk(conn: http.client.HTTPConnection, data: bytes) -> None:
        conn.send(b"%x\r\n%s\r\n" % (len(data), data))

    def error(self, request_id: str, exc: BaseException) -> None:
        self._post(f"/{API_VERSION}/runtime/invocation/{request_id}/error", exc)

    def init_error(self, exc: BaseException) -> None:
        self._post(f"/{API_VERSION}/runtime/init/error", exc)

    def _post(self, path: str, exc: BaseException) -> None:
        conn = self._connection()
        try:
            conn.request("POST", path, body=json.dumps(_error_payload(exc)),
                         headers={"Lambda-Runtime-Function-Error-Type": type(exc).__name__,
                                  "Content-Type": "application/json"})
            conn.getresponse().read()
        finally:
            conn.close()


Handler = Callable[[dict[str, Any], InvocationContext], StreamedHttpResponse]


def serve(handler: Handler, client: RuntimeClient, *, invocations: int | None = None) -> None:
    """Fetch events and stream the handler's answers, forever (or ``invocations`` times, for tests)."""
    served = 0
    while invocations is None or served < invocations:
        event, context, trace_id = client.next()
        if trace_id:
            os.environ["_X_AMZN_TRACE_ID"] = trace_id
        else:
            os.environ.pop("_X_AMZN_TRACE_ID", None)
        try:
            response = handler(event, context)
        except Exception as exc:  # before the first byte: an ordinary invocation error
            client.error(context.aws_request_id, exc)
        else:
            client.stream(context.aws_request_id, response)
        served += 1


def load(spec: str) -> Handler:
    """``handler.lambda_handler`` from the task root (``LAMBDA_TASK_ROOT``), as Lambda resolves _HANDLER."""
    module_name, _, attribute = spec.rpartition(".")
    root = os.environ.get("LAMBDA_TASK_ROOT")
    if root and root not in sys.path:
        sys.path.insert(0, root)
    return getattr(importlib.import_module(module_name), attribute)


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - the process entry point in Lambda
    args = argv if argv is not None else sys.argv[1:]
    client = RuntimeClient(os.environ["AWS_LAMBDA_RUNTIME_API"])
    try:
        handler = load(args[0] if args else os.environ["_HANDLER"])
    except Exception as exc:
        client.init_error(exc)
        raise
    serve(handler, client)


if __name__ == "__main__":  # pragma: no cover
    main()
