"""The shape every FinOps Lambda shares: own role, own log group, the two layers, arm64, X-Ray.

Not a construct of its own: the children are created directly in the capability's construct
(``FunctionLogs``, ``FunctionRole``, ``Function``), so their logical ids stay those of the capability.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.constructs.layers import lambda_architecture, lambda_runtime

HANDLER = "handler.lambda_handler"
LOG_RETENTION = logs.RetentionDays.ONE_YEAR
CODE_EXCLUDE = ["**/__pycache__", "*.pyc", ".gitkeep"]
XRAY_REASON = (
    "Only xray:PutTraceSegments and xray:PutTelemetryRecords (added by tracing=ACTIVE) use "
    "Resource '*': these X-Ray actions support no resource-level permissions."
)


@dataclass(frozen=True)
class FinOpsFunction:
    function: lambda_.Function
    role: iam.Role
    log_group: logs.LogGroup


def finops_function(
    scope: Construct,
    *,
    code_dir: Path,
    description: str,
    role_description: str,
    layers: Sequence[lambda_.ILayerVersion],
    environment: Mapping[str, str],
    memory_size: int,
    timeout: Duration,
    **function_props: object,
) -> FinOpsFunction:
    # Logs are kept (RETAIN): the gateway's ledger_spill records live there until replayed, and the
    # admin function's log is the audit trail of key changes.
    log_group = logs.LogGroup(scope, "FunctionLogs", retention=LOG_RETENTION, removal_policy=RemovalPolicy.RETAIN)
    # An explicit role instead of CDK's default one, which attaches the AWS-managed
    # AWSLambdaBasicExecutionRole (logs:* on every log group): this one may write its own log group only.
    role = iam.Role(scope, "FunctionRole", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                    description=role_description)
    log_group.grant_write(role)
    function = lambda_.Function(
        scope, "Function",
        description=description,
        runtime=lambda_runtime(),
        architecture=lambda_architecture(),
        handler=HANDLER,
        code=lambda_.Code.from_asset(str(code_dir), exclude=CODE_EXCLUDE),
        layers=list(layers),
        memory_size=memory_size,
        timeout=timeout,
        tracing=lambda_.Tracing.ACTIVE,
        role=role,
        log_group=log_group,
        environment=dict(environment),
        **function_props,
    )
    Validations.of(role).acknowledge(Acknowledgment(id="AwsSolutions::AwsSolutions-IAM5[Resource::*]",
                                                    reason=XRAY_REASON))
    return FinOpsFunction(function, role, log_group)
