"""The gateway itself: the Lambda function and the REST API (API Gateway) in front of it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.constructs.budgets import Budgets
from infra.constructs.function import LOG_RETENTION, finops_function
from infra.constructs.keys_table import KeysTable
from infra.constructs.ledger_table import LedgerTable
from infra.constructs.provider_secrets import ProviderSecrets
from infra.runtime import GATEWAY_FUNCTION_DIR, GATEWAY_STREAM_FUNCTION_DIR

STAGE_NAME = "prod"
FUNCTION_TIMEOUT = Duration.seconds(60)
# API Gateway REST's default (and, for regional/private APIs without a quota increase, maximum)
# integration timeout. The function may run 60 s, but a synchronous REST call is cut at 29 s and answered
# by the INTEGRATION_TIMEOUT gateway response (504, OpenAI envelope); raising it above 29 s needs a Service
# Quotas increase of "Maximum integration timeout in milliseconds" for regional APIs, then this value.
# Set explicitly so the limit is visible here and in the template (TimeoutInMillis).
INTEGRATION_TIMEOUT = Duration.seconds(29)
# Response streaming (responseTransferMode STREAM): API Gateway allows up to 15 minutes for a streamed
# integration; a long answer from a slow model streams for minutes, and the function must outlive it.
STREAM_FUNCTION_TIMEOUT = Duration.minutes(15)
STREAM_INTEGRATION_TIMEOUT = Duration.minutes(15)
# The managed runtime runs this wrapper, which execs the streaming runtime loop (finops.streaming_runtime).
EXEC_WRAPPER = "/var/task/bootstrap"

VIRTUAL_KEY_AUTH_REASON = (
    "Clients authenticate with gateway virtual keys (Authorization: Bearer) verified inside the Lambda "
    "against hashed keys in DynamoDB; an OpenAI-compatible API cannot use IAM/Cognito auth without "
    "breaking existing SDKs."
)

# One JSON object per request. Never the Authorization header or bodies (virtual keys, prompts).
ACCESS_LOG_FORMAT = json.dumps({
    "requestId": apigw.AccessLogField.context_request_id(),
    "extendedRequestId": apigw.AccessLogField.context_extended_request_id(),
    "requestTime": apigw.AccessLogField.context_request_time(),
    "ip": apigw.AccessLogField.context_identity_source_ip(),
    "userAgent": apigw.AccessLogField.context_identity_user_agent(),
    "httpMethod": apigw.AccessLogField.context_http_method(),
    "path": apigw.AccessLogField.context_path(),
    "resourcePath": apigw.AccessLogField.context_resource_path(),
    "protocol": apigw.AccessLogField.context_protocol(),
    "status": apigw.AccessLogField.context_status(),
    "responseLength": apigw.AccessLogField.context_response_length(),
    "responseLatency": apigw.AccessLogField.context_response_latency(),
    "integrationStatus": apigw.AccessLogField.context_integration_status(),
    "integrationLatency": apigw.AccessLogField.context_integration_latency(),
    "errorMessage": apigw.AccessLogField.context_error_message(),
    "errorType": apigw.AccessLogField.context_error_response_type(),
    "xrayTraceId": apigw.AccessLogField.context_xray_trace_id(),
})

# Errors API Gateway answers itself (throttling, timeouts, ...) in OpenAI's error envelope, so SDKs
# parse them like the Lambda's own errors (finops.errors). $context.error.messageString is quoted JSON.
_GATEWAY_ERRORS = {
    apigw.ResponseType.THROTTLED: ("rate_limit_error", "rate_limited"),
    apigw.ResponseType.INTEGRATION_TIMEOUT: ("server_error", "gateway_timeout"),
    apigw.ResponseType.DEFAULT_4_XX: ("invalid_request_error", "invalid_request"),
    apigw.ResponseType.DEFAULT_5_XX: ("server_error", "internal_error"),
}


def _envelope(error_type: str, code: str) -> str:
    return (
        '{"error": {"message": $context.error.messageString, '
        f'"type": "{error_type}", "code": "{code}", "param": null}}}}'
    )


class GatewayApi(Construct):
    """``POST /v1/chat/completions``, ``GET /v1/models`` and a catch-all, all proxied to one Lambda.

    Every path and method reaches the function (unknown ones answer 404/405 in OpenAI's envelope):
    the explicit resources also carry ``ANY``, and ``/`` plus ``/{proxy+}`` take everything else, except
    the ``/admin`` tree (``AdminApi``), whose explicit resources take precedence over ``/{proxy+}``: a
    route it does not define gets API Gateway's own 403 (in the DEFAULT_4XX envelope), never this function.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        layers: Sequence[lambda_.ILayerVersion],
        ledger: LedgerTable,
        keys: KeysTable,
        budgets: Budgets,
        secrets: ProviderSecrets,
        code_dir: Path = GATEWAY_FUNCTION_DIR,
        stream_code_dir: Path = GATEWAY_STREAM_FUNCTION_DIR,
        streaming: bool = True,
        throttling_rate_limit: float = 100,
        throttling_burst_limit: int = 200,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_groups: list[logs.LogGroup] = []  # both functions' (where their ledger_spill records land)
        self.function = self._function(self, layers, ledger, keys, budgets, code_dir)
        # Chat completions stream through a second function (the runtime loop that can stream); with
        # streaming=False they go to the buffered function, which answers stream:true with one SSE body.
        self.stream_function = (
            self._function(Construct(self, "Stream"), layers, ledger, keys, budgets, stream_code_dir, stream=True)
            if streaming else None)
        for function in filter(None, (self.function, self.stream_function)):
            ledger.grant_gateway_access(function)
            keys.grant_authenticate(function)
            budgets.grant_gateway(function, ledger)
            secrets.grant_read(function)
            self._grant_bedrock(function)
        self.api = self._rest_api(throttling_rate_limit, throttling_burst_limit)

    # --- Lambda ---------------------------------------------------------------------------------------

    def _function(self, scope: Construct, layers: Sequence[lambda_.ILayerVersion], ledger: LedgerTable,
                  keys: KeysTable, budgets: Budgets, code_dir: Path, *, stream: bool = False) -> lambda_.Function:
        extra = {"AWS_LAMBDA_EXEC_WRAPPER": EXEC_WRAPPER} if stream else {}
        built = finops_function(
            scope,
            code_dir=code_dir,
            description=("OpenAI-compatible FinOps gateway, streamed chat completions (runtime loop)" if stream
                         else "OpenAI-compatible FinOps gateway (cost tags, budgets, routing, ledger)"),
            role_description=(
                "FinOps gateway function: its log group, X-Ray, the ledger, keys and budgets tables, "
                "budget alerts, provider secrets"
            ),
            layers=layers,
            memory_size=1024,
            timeout=STREAM_FUNCTION_TIMEOUT if stream else FUNCTION_TIMEOUT,
            environment={
                **extra,
                "POWERTOOLS_SERVICE_NAME": "finops-gateway",
                "POWERTOOLS_METRICS_NAMESPACE": "FinOpsGateway",
                "FINOPS_LEDGER_TABLE": ledger.table_name,
                "FINOPS_KEYS_TABLE": keys.table_name,
                **budgets.environment(),
                "LOG_LEVEL": "INFO",
            },
        )
        if not stream:
            self.log_group = built.log_group
        self.log_groups.append(built.log_group)
        return built.function

    @staticmethod
    def _grant_bedrock(function: lambda_.Function) -> None:
        """Bedrock Converse / ConverseStream on foundation models and cross-region inference profiles."""
        function.add_to_role_policy(iam.PolicyStatement(
            actions=["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"],
            resources=[Stack.of(function).format_arn(service="bedrock", account="", resource="foundation-model",
                                                     resource_name="*"),
                       Stack.of(function).format_arn(service="bedrock", resource="inference-profile",
                                                     resource_name="*")],
        ))
        Validations.of(function.role).acknowledge(Acknowledgment(  # type: ignore[arg-type]
            id="AwsSolutions::AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:bedrock:<AWS::Region>::foundation-model/*]",
            reason=("The gateway routes to whichever Bedrock model the price catalog names; the catalog, not IAM, "
                    "is the allow-list, and budgets meter every call."),
        ))
        Validations.of(function.role).acknowledge(Acknowledgment(  # type: ignore[arg-type]
            id=("AwsSolutions::AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:bedrock:<AWS::Region>:"
                "<AWS::AccountId>:inference-profile/*]"),
            reason="Cross-region inference profiles of the catalog's Bedrock models (us.anthropic...).",
        ))

    # --- REST API -------------------------------------------------------------------------------------

    def _rest_api(self, rate_limit: float, burst_limit: int) -> apigw.RestApi:
        self.access_log_group = logs.LogGroup(
            self, "AccessLogs", retention=LOG_RETENTION, removal_policy=RemovalPolicy.RETAIN,
        )
        api = apigw.RestApi(
            self, "Api",
            description="AI FinOps gateway: OpenAI-compatible API with cost tags, budgets and chargeback",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            cloud_watch_role=True,
            deploy_options=apigw.StageOptions(
                stage_name=STAGE_NAME,
                access_log_destination=apigw.LogGroupLogDestination(self.access_log_group),
                access_log_format=apigw.AccessLogFormat.custom(ACCESS_LOG_FORMAT),
                logging_level=apigw.MethodLoggingLevel.INFO,
                data_trace_enabled=False,  # full request logging would write bearer keys and prompts
                metrics_enabled=True,
                tracing_enabled=True,
                throttling_rate_limit=rate_limit,
                throttling_burst_limit=burst_limit,
            ),
        )
        # The stack exports the URL as ApiUrl; drop RestApi's auto-named duplicate output.
        api.node.try_remove_child("Endpoint")
        for response_type, (error_type, code) in _GATEWAY_ERRORS.items():
            api.add_gateway_response(
                f"{code}-{response_type.response_type}",
                type=response_type,
                templates={"application/json": _envelope(error_type, code)},
            )

        integration = apigw.LambdaIntegration(self.function, proxy=True, allow_test_invoke=False,
                                              timeout=INTEGRATION_TIMEOUT)
        chat_integration = integration
        if self.stream_function is not None:
            chat_integration = apigw.LambdaIntegration(
                self.stream_function, proxy=True, allow_test_invoke=False, timeout=STREAM_INTEGRATION_TIMEOUT,
                response_transfer_mode=apigw.ResponseTransferMode.STREAM)
        v1 = api.root.add_resource("v1")
        chat = v1.add_resource("chat")
        completions = chat.add_resource("completions")
        models = v1.add_resource("models")
        self.methods = [completions.add_method("POST", chat_integration), models.add_method("GET", integration)]
        # Wrong method or a path prefix: still the function's answer (405/404 in OpenAI's envelope),
        # not API Gateway's "Missing Authentication Token".
        for resource in (api.root, v1, chat, completions, models):
            self.methods.append(resource.add_method("ANY", integration))
        proxy = api.root.add_proxy(default_integration=integration, any_method=True)
        self.methods.append(proxy.any_method)

        self._acknowledge_api_findings(api)
        return api

    def _acknowledge_api_findings(self, api: apigw.RestApi) -> None:
        # Method-level, on this construct's methods only (the admin API's methods are IAM-authorized):
        # the OpenAI-compatible methods are open at the API Gateway layer by design.
        for rule in ("AwsSolutions-APIG4", "AwsSolutions-COG4"):
            for method in self.methods:
                Validations.of(method).acknowledge(
                    Acknowledgment(id=f"AwsSolutions::{rule}", reason=VIRTUAL_KEY_AUTH_REASON),
                )
        # On the AWS::ApiGateway::RestApi resource only.
        Validations.of(api.node.default_child).acknowledge(Acknowledgment(
            id="AwsSolutions::AwsSolutions-APIG2",
            reason=(
                "Request bodies are validated inside the Lambda (pydantic models of the OpenAI schema), "
                "which answers 400 in OpenAI's error envelope; API Gateway's validator would answer in "
                "its own format and break OpenAI SDK error handling."
            ),
        ))
        # On the prod stage only (where a web ACL would be associated).
        Validations.of(api.deployment_stage).acknowledge(Acknowledgment(
            id="AwsSolutions::AwsSolutions-APIG3",
            reason=(
                "AWS WAF is an optional, paid add-on (the README recommends a web ACL with rate-based "
                "rules for production); stage throttling and the gateway's own budgets and rate limits "
                "already bound abuse."
            ),
        ))
        # The account-level role API Gateway uses to push execution logs to CloudWatch.
        Validations.of(api.node.find_child("CloudWatchRole")).acknowledge(Acknowledgment(
            id=("AwsSolutions::AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/"
                "service-role/AmazonAPIGatewayPushToCloudWatchLogs]"),
            reason=(
                "cloud_watch_role=True: API Gateway's account-wide CloudWatch Logs role needs log-group "
                "creation across the account (execution logs go to API-Gateway-Execution-Logs_<api>/<stage>, "
                "created by the service); AmazonAPIGatewayPushToCloudWatchLogs is the AWS-maintained "
                "policy for exactly that role."
            ),
        ))
