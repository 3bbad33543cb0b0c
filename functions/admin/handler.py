"""Admin API (API Gateway REST, IAM-authorized): create, list, rotate and revoke virtual keys. Wiring only."""

from typing import Annotated, Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from finops.errors import FinOpsError
from finops.gateway import http, strict_json
from finops.gateway.factory import keys
from finops.keys.service import KeySpec
from finops.settings import get_settings

logger = Logger()
tracer = Tracer()
app = APIGatewayRestResolver(enable_validation=True, json_body_deserializer=strict_json.loads)
http.install(app, serves="POST and GET /admin/keys, GET and DELETE /admin/keys/{key_id} and "
                         "POST /admin/keys/{key_id}/rotate")


def _actor() -> str:
    identity = app.current_event.request_context.identity
    return str(identity.user_arn or identity.caller or "unknown")


@app.post("/admin/keys")
def create_key(spec: Annotated[KeySpec, Body()]):
    key, record = keys(get_settings()).create(spec)
    logger.info("key created", extra={"key_id": record.key_id, "tier": record.tier, "actor": _actor()})
    return Response(201, http.JSON, {"key": key, **record.model_dump()})


@app.get("/admin/keys")
def list_keys(include_revoked: Annotated[bool, Query()] = False):
    return Response(200, http.JSON, {"data": [r.model_dump() for r in keys(get_settings()).list(include_revoked)]})


@app.get("/admin/keys/<key_id>")
def get_key(key_id: str):
    return Response(200, http.JSON, keys(get_settings()).get(key_id).model_dump())


@app.post("/admin/keys/<key_id>/rotate")
def rotate_key(key_id: str):
    key, record = keys(get_settings()).rotate(key_id)
    logger.info("key rotated", extra={"old_key_id": key_id, "key_id": record.key_id, "actor": _actor()})
    return Response(201, http.JSON, {"key": key, **record.model_dump()})


@app.delete("/admin/keys/<key_id>")
def revoke_key(key_id: str):
    record = keys(get_settings()).revoke(key_id)
    logger.info("key revoked", extra={"key_id": key_id, "actor": _actor()})
    return Response(200, http.JSON, record.model_dump())


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request_id = http.request_id_of(event)
    try:
        http.prepare(event, get_settings().max_body_bytes)  # the same body checks as the gateway: 400/413, not 5xx
    except FinOpsError as exc:
        return http.proxy_error(exc, request_id)
    return http.with_request_id(app.resolve(event, context), request_id)
