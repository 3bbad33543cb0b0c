"""Serve a Lambda handler over HTTP the way API Gateway REST does: request -> proxy event -> response.

Used by the local stack and the end-to-end tests. Mirrors API Gateway's own limit (10 MB payload) and its
event shape (v1 proxy format, multi-value headers, requestContext.requestId).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from ..streaming_runtime import StreamedHttpResponse

log = logging.getLogger("finops.local.bridge")
API_GATEWAY_MAX_PAYLOAD = 10 * 1024 * 1024


def to_proxy_event(request: Request, body: bytes, stage: str = "local") -> dict[str, Any]:
    multi_headers: dict[str, list[str]] = {}
    for key, value in request.headers.items():
        multi_headers.setdefault(key, []).append(value)
    multi_query = {k: request.args.getlist(k) for k in request.args}
    is_text = True
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        is_text = False
    request_id = str(uuid.uuid4())
    now = time.time()
    return {
        "resource": "/{proxy+}",
        "path": request.path,
        "httpMethod": request.method,
        "headers": {k: v[-1] for k, v in multi_headers.items()},
        "multiValueHeaders": multi_headers,
        "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": {"proxy": request.path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "resourcePath": "/{proxy+}",
            "httpMethod": request.method,
            "path": f"/{stage}{request.path}",
            "stage": stage,
            "requestId": request_id,
            "extendedRequestId": request_id,
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "requestTimeEpoch": int(now * 1000),
            "protocol": "HTTP/1.1",
            "identity": {"sourceIp": request.remote_addr or "127.0.0.1",
                         "userAgent": request.headers.get("User-Agent")},
        },
        "body": (text if is_text else base64.b64encode(body).decode()) if body else None,
        "isBase64Encoded": bool(body) and not is_text,
    }


def to_response(result: dict[str, Any] | StreamedHttpResponse) -> Response:
    if isinstance(result, StreamedHttpResponse):
        # API Gateway's STREAM transfer mode: headers first, then each chunk as the function writes it.
        streamed = Response(result.body, status=result.status, direct_passthrough=True)
        streamed.headers.clear()
        for key, value in result.headers.items():
            streamed.headers[key] = str(value)
        return streamed
    body = result.get("body") or ""
    data = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode()
    response = Response(data, status=int(result.get("statusCode", 200)))
    response.headers.clear()
    for key, values in (result.get("multiValueHeaders") or {}).items():
        for value in values:
            response.headers.add(key, str(value))
    for key, value in (result.get("headers") or {}).items():
        if key not in response.headers:
            response.headers[key] = str(value)
    return response


def _gateway_error(status: int, message: str) -> Response:
    return Response(json.dumps({"message": message}), status=status, content_type="application/json")


class ApiGatewayBridge:
    def __init__(self, handler: Callable[[dict[str, Any]], dict[str, Any] | StreamedHttpResponse]) -> None:
        self.handler = handler

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        length = request.content_length
        if length is not None and length > API_GATEWAY_MAX_PAYLOAD:
            response = _gateway_error(413, "Request Too Long")
        else:
            body = request.get_data(cache=False)
            if len(body) > API_GATEWAY_MAX_PAYLOAD:
                response = _gateway_error(413, "Request Too Long")
            else:
                try:
                    response = to_response(self.handler(to_proxy_event(request, body)))
                except Exception:
                    log.exception("handler crashed")
                    response = _gateway_error(502, "Internal server error")
        return response(environ, start_response)


def serve(handler: Callable[[dict[str, Any]], dict[str, Any] | StreamedHttpResponse], host: str = "127.0.0.1",
          port: int = 8080) -> BaseWSGIServer:
    server = make_server(host, port, ApiGatewayBridge(handler), threaded=True)
    threading.Thread(target=server.serve_forever, name="apigw-bridge", daemon=True).start()
    return server
