"""The FinOps gateway stack: composes the capability constructs, owns no logic of its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import CfnOutput, RemovalPolicy, Stack, Tags
from aws_cdk import aws_kms as kms
from constructs import Construct

from infra.constructs.gateway_api import GatewayApi
from infra.constructs.layers import GatewayLayers
from infra.constructs.ledger_table import LedgerTable
from infra.constructs.provider_secrets import ProviderSecrets


class GatewayStack(Stack):
    """Ledger table + provider secrets (one customer-managed KMS key) + layers + Lambda + REST API.

    Environment-agnostic (no account/region, no lookups): synthesizes offline.
    """

    def __init__(self, scope: Construct, construct_id: str, *, deps_layer_dir: Path | None = None,
                 **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        Tags.of(self).add("Application", "finops-gateway")

        self.key = kms.Key(
            self, "DataKey",
            description="FinOps gateway: encrypts the usage ledger and the provider API key secrets",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,  # the retained ledger table stays readable
        )
        self.ledger = LedgerTable(self, "Ledger", encryption_key=self.key)
        self.secrets = ProviderSecrets(self, "ProviderSecrets", encryption_key=self.key)
        self.layers = GatewayLayers(self, "Layers", deps_dir=deps_layer_dir)
        self.gateway = GatewayApi(self, "Gateway", layers=self.layers.all, ledger=self.ledger,
                                  secrets=self.secrets)

        CfnOutput(self, "ApiUrl", value=self.gateway.api.url, description="REST API prod stage URL")
        CfnOutput(self, "OpenAIBaseUrl", value=self.gateway.api.url_for_path("/v1"),
                  description="base_url for OpenAI SDKs (authenticate with a gateway virtual key)")
        CfnOutput(self, "LedgerTableName", value=self.ledger.table_name, description="Usage ledger table")
        for name, secret in self.secrets.secrets.items():
            CfnOutput(self, f"{name.capitalize()}SecretArn", value=secret.secret_arn,
                      description=f"Secret holding the {name} API key (put-secret-value the real key)")
