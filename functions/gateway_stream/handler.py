"""POST /v1/chat/completions with response streaming (API Gateway REST, responseTransferMode STREAM).

Wiring only: parse -> ChatGateway.chat(streaming=True) -> status, headers and body chunks for the
streaming runtime loop (finops.streaming_runtime), which this function runs instead of the managed
runtime's own (see ``bootstrap``). Non-streamed requests are answered here too, in one chunk.
"""

import json
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from finops.errors import FinOpsError, InternalError
from finops.gateway import http
from finops.gateway.factory import gateway
from finops.gateway.streaming import StreamingResponse
from finops.settings import get_settings
from finops.streaming_runtime import StreamedHttpResponse

logger = Logger()
metrics = Metrics(namespace="FinOpsGateway")


def _error(exc: FinOpsError, request_id: str) -> StreamedHttpResponse:
    headers = {"Content-Type": http.JSON, "X-Request-ID": request_id, **exc.headers}
    return StreamedHttpResponse(exc.status, headers, [json.dumps(exc.envelope()).encode()])


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> StreamedHttpResponse:
    request_id = http.request_id_of(event)
    logger.set_correlation_id(request_id)
    metrics.add_metric("Requests", MetricUnit.Count, 1)
    try:
        request = http.parse_chat(event, get_settings().max_body_bytes)
        result = gateway().chat(request, event.get("headers") or {}, request_id, streaming=True)
    except FinOpsError as exc:
        if exc.status >= 500:
            logger.warning("request failed", extra={"code": exc.code, "status": exc.status})
        return _error(exc, request_id)
    except Exception:
        logger.exception("unhandled error")
        return _error(InternalError("The gateway failed to handle the request."), request_id)
    metrics.add_metric("AdmittedRequests", MetricUnit.Count, 1)
    if isinstance(result, StreamingResponse):
        metrics.add_metric("StreamedRequests", MetricUnit.Count, 1)
        headers = {"Content-Type": result.content_type, "Cache-Control": "no-cache", **result.headers}
        return StreamedHttpResponse(result.status, headers, result.chunks)
    body = result.body if isinstance(result.body, str) else json.dumps(result.body)
    return StreamedHttpResponse(result.status, {"Content-Type": result.content_type, **result.headers},
                                [body.encode()])
