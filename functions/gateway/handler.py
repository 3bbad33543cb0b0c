"""API Gateway (REST, proxy) -> the OpenAI-compatible gateway. Wiring only: the logic is in finops.gateway."""

from typing import Annotated, Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from finops.errors import FinOpsError
from finops.gateway import http, strict_json
from finops.gateway.factory import gateway
from finops.openai_schema import ChatCompletionRequest
from finops.settings import get_settings

logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace="FinOpsGateway")
app = APIGatewayRestResolver(enable_validation=True, json_body_deserializer=strict_json.loads)
http.install(app)


@app.get("/v1/models")
@tracer.capture_method
def list_models():
    return Response(200, http.JSON, gateway().list_models())


@app.post("/v1/chat/completions")
@tracer.capture_method
def chat_completions(request: Annotated[ChatCompletionRequest, Body()]):
    event = app.current_event
    result = gateway().chat(request, event.headers, http.request_id_of(event.raw_event))
    metrics.add_metric("AdmittedRequests", MetricUnit.Count, 1)
    return Response(result.status, result.content_type, result.body, result.headers)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    metrics.add_metric("Requests", MetricUnit.Count, 1)
    request_id = http.request_id_of(event)
    try:
        http.prepare(event, get_settings().max_body_bytes)
    except FinOpsError as exc:
        return http.proxy_error(exc, request_id)
    return http.with_request_id(app.resolve(event, context), request_id)
