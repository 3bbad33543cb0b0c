"""The admin API: virtual key management (``functions/admin``) under ``/admin/keys`` of the gateway's
REST API, every method IAM-authorized (SigV4)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from aws_cdk import Acknowledgment, Validations
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.constructs.function import finops_function
from infra.constructs.gateway_api import INTEGRATION_TIMEOUT
from infra.constructs.keys_table import KeysTable
from infra.runtime import ROOT

# (Not in infra/runtime.py: a change there rebuilds the deps layer, see the Makefile.)
ADMIN_FUNCTION_DIR = ROOT / "functions" / "admin"

IAM_AUTH_REASON = (
    "The admin API is for operators and automation with AWS credentials: every method uses "
    "AuthorizationType AWS_IAM (SigV4), so access is granted by IAM policies on execute-api:Invoke for "
    "/admin/*; a Cognito user pool would add a second identity store for the same people."
)

# (path below /admin/keys, HTTP method): exactly the routes of functions/admin/handler.py.
ROUTES = (
    ("", "POST"),
    ("", "GET"),
    ("{key_id}", "GET"),
    ("{key_id}", "DELETE"),
    ("{key_id}/rotate", "POST"),
)


class AdminApi(Construct):
    """``/admin/keys``: create, list, get, revoke and rotate virtual keys (``finops.keys.KeyService``).

    Its own function, role and log group (the log records who changed which key); the same layers,
    runtime and architecture as the gateway; mounted on the gateway's RestApi and prod stage.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        api: apigw.RestApi,
        layers: Sequence[lambda_.ILayerVersion],
        keys: KeysTable,
        code_dir: Path = ADMIN_FUNCTION_DIR,
    ) -> None:
        super().__init__(scope, construct_id)
        built = finops_function(
            self,
            code_dir=code_dir,
            description="FinOps gateway admin API: create, list, rotate and revoke virtual keys",
            role_description="FinOps admin function: its log group, X-Ray, the keys table",
            layers=layers,
            memory_size=512,
            timeout=INTEGRATION_TIMEOUT,  # API Gateway answers 504 after this anyway
            environment={
                "POWERTOOLS_SERVICE_NAME": "finops-admin",
                "FINOPS_KEYS_TABLE": keys.table_name,
                "LOG_LEVEL": "INFO",
            },
        )
        self.function, self.log_group = built.function, built.log_group
        keys.grant_admin(self.function)

        integration = apigw.LambdaIntegration(self.function, proxy=True, allow_test_invoke=False,
                                              timeout=INTEGRATION_TIMEOUT)
        self.root = api.root.add_resource("admin").add_resource("keys")
        self.methods: list[apigw.Method] = []
        for subpath, http_method in ROUTES:
            resource = self.root
            for part in filter(None, subpath.split("/")):
                resource = resource.get_resource(part) or resource.add_resource(part)
            method = resource.add_method(http_method, integration,
                                         authorization_type=apigw.AuthorizationType.IAM)
            # APIG4 (authorization) is satisfied by IAM; COG4 asks for Cognito specifically.
            Validations.of(method).acknowledge(Acknowledgment(id="AwsSolutions::AwsSolutions-COG4",
                                                              reason=IAM_AUTH_REASON))
            self.methods.append(method)
