"""The one place errors become HTTP: OpenAI's error envelope with a typed status.

``install(app)`` registers the handlers on a Powertools resolver; ``proxy_error`` builds the same answer
for errors raised before the resolver runs (body too large, broken base64).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from pydantic import ValidationError

from ..errors import FinOpsError, InternalError, InvalidRequest, NotFound, PayloadTooLarge
from ..openai_schema import ChatCompletionRequest
from . import headers as h
from . import strict_json

logger = Logger(child=True)
JSON = "application/json"
NOT_UTF8 = "The request body is not valid JSON: it must be UTF-8 text."


def request_id_of(event: Mapping[str, Any]) -> str:
    context = event.get("requestContext") or {}
    return str(context.get("requestId") or "")


def _describe(errors: Sequence[Mapping[str, Any]]) -> tuple[str, str | None]:
    """A readable message from pydantic errors, never echoing the offending input."""
    parts, params = [], []
    for err in errors[:10]:
        loc = [str(x) for x in err.get("loc", ()) if x != "body"]
        if err.get("type") == "json_invalid":
            return "The request body is not valid JSON.", None
        where = ".".join(loc) or "body"
        params.append(where)
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "Invalid request: " + "; ".join(parts) + ".", (params[0] if params else None)


def error_response(exc: FinOpsError, request_id: str) -> Response:
    headers = {h.REQUEST_ID: request_id, **exc.headers}
    return Response(status_code=exc.status, content_type=JSON, body=json.dumps(exc.envelope()), headers=headers)


def install(app: APIGatewayRestResolver, serves: str = "POST /v1/chat/completions and GET /v1/models") -> None:
    """OpenAI's error envelope for every failure the resolver sees: typed errors, validation errors, unknown
    routes (naming what this API ``serves``) and, as a typed 500, anything else."""

    def rid() -> str:
        return request_id_of(app.current_event.raw_event)

    @app.exception_handler(FinOpsError)
    def _finops(exc: FinOpsError) -> Response:
        if exc.status >= 500:
            logger.warning("request failed", extra={"code": exc.code, "status": exc.status})
        return error_response(exc, rid())

    @app.exception_handler(RequestValidationError)
    def _invalid(exc: RequestValidationError) -> Response:
        message, param = _describe(exc.errors())
        return error_response(InvalidRequest(message, param=param), rid())

    @app.not_found
    def _not_found(_: Exception) -> Response:
        return error_response(NotFound(f"Unknown route. This API serves {serves}."), rid())

    @app.exception_handler(Exception)
    def _crash(exc: Exception) -> Response:  # a bug: a typed 500 in the envelope, never a bare Lambda error
        logger.exception("request crashed")
        return error_response(InternalError("The gateway failed to handle the request."), rid())


def with_request_id(result: dict[str, Any], request_id: str) -> dict[str, Any]:
    """Every answer carries ``X-Request-ID``, also those built without this module (GET /v1/models, the admin API)."""
    multi, single = result.get("multiValueHeaders"), result.get("headers")
    names = {name.lower() for headers in (multi, single) if isinstance(headers, Mapping) for name in headers}
    if h.REQUEST_ID.lower() not in names:
        if isinstance(multi, dict):
            multi[h.REQUEST_ID] = [request_id]
        else:
            result["headers"] = {**(single or {}), h.REQUEST_ID: request_id}
    return result


def proxy_error(exc: FinOpsError, request_id: str) -> dict[str, Any]:
    """An API Gateway proxy result for an error raised outside the resolver."""
    headers = {"Content-Type": JSON, h.REQUEST_ID: request_id, **exc.headers}
    return {"statusCode": exc.status, "headers": headers, "body": json.dumps(exc.envelope()),
            "isBase64Encoded": False}


def prepare(event: dict[str, Any], max_bytes: int) -> None:
    """Before the resolver: refuse oversized or undecodable bodies, and read every body as JSON.

    The API is JSON-only; ``curl -d`` labels its body ``application/x-www-form-urlencoded``, which would
    otherwise be parsed as a form. The Content-Type header is normalised so such a body is read as JSON.
    """
    check_body(event, max_bytes)
    body = event.get("body")
    if body is None:
        return
    if not event.get("isBase64Encoded") and isinstance(body, str) and body.lstrip()[:1] in ("[", '"'):
        # Powertools would validate the first element of a top-level array as if it were the object.
        raise InvalidRequest("The request body must be a JSON object.", param="body")
    for field in ("headers", "multiValueHeaders"):
        headers = event.get(field)
        if isinstance(headers, dict):
            for name in [k for k in headers if k.lower() == "content-type"]:
                del headers[name]
            headers["Content-Type"] = [JSON] if field == "multiValueHeaders" else JSON


def check_body(event: Mapping[str, Any], max_bytes: int) -> str | None:
    """Refuse an oversized or undecodable body before anything parses it: JSON text is UTF-8 (RFC 8259), so a
    body that is not (binary sent base64-encoded, or text with lone surrogates) is a 400, not a crash later.
    Returns the body as text (base64 decoded), or None without a body."""
    body = event.get("body")
    if body is None:
        return None
    try:
        raw = body.encode() if isinstance(body, str) else body
    except UnicodeEncodeError as exc:
        raise InvalidRequest(NOT_UTF8) from exc
    if event.get("isBase64Encoded"):
        if len(raw) > (max_bytes * 4) // 3 + 4:
            raise PayloadTooLarge(f"Request body exceeds the gateway limit of {max_bytes} bytes.")
        try:
            raw = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidRequest("The request body is not valid base64.") from exc
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"Request body exceeds the gateway limit of {max_bytes} bytes.")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(NOT_UTF8) from exc


def parse_chat(event: Mapping[str, Any], max_bytes: int) -> ChatCompletionRequest:
    """The chat request in a proxy event, for the response-streaming function (which has no resolver):
    the same size check, JSON-object rule and pydantic validation, the same typed 400s."""
    if str(event.get("httpMethod") or "").upper() != "POST" or not str(event.get("path") or "").rstrip("/").endswith(
            "/v1/chat/completions"):
        raise NotFound("This function serves POST /v1/chat/completions only.")
    text = check_body(event, max_bytes)
    if text is None:
        raise InvalidRequest("The request body is missing.", param="body")
    try:
        data = strict_json.loads(text)  # as text, as the resolver's path parses it
    except ValueError as exc:
        raise InvalidRequest("The request body is not valid JSON.") from exc
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.", param="body")
    try:
        return ChatCompletionRequest.model_validate(data)
    except ValidationError as exc:
        message, param = _describe(exc.errors())
        raise InvalidRequest(message, param=param) from None
