"""The FinOps gateway stack: composes the capability constructs, owns no logic of its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import CfnOutput, RemovalPolicy, Stack, Tags
from aws_cdk import aws_kms as kms
from constructs import Construct

from infra.constructs.admin_api import AdminApi
from infra.constructs.budgets import Budgets
from infra.constructs.chargeback import Chargeback
from infra.constructs.gateway_api import GatewayApi
from infra.constructs.keys_table import KeysTable
from infra.constructs.layers import GatewayLayers
from infra.constructs.ledger_table import LedgerTable
from infra.constructs.provider_secrets import ProviderSecrets
from infra.constructs.reconciler import Reconciler
from infra.constructs.routing_alarms import RoutingShareAlarms


class GatewayStack(Stack):
    """Ledger, keys and budgets tables + provider secrets + budget alerts (one customer-managed KMS key),
    layers, the gateway Lambda + REST API, the IAM-authorized admin API and the scheduled reconciler.

    Environment-agnostic (no account/region, no lookups): synthesizes offline.
    """

    def __init__(self, scope: Construct, construct_id: str, *, deps_layer_dir: Path | None = None,
                 **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        Tags.of(self).add("Application", "finops-gateway")

        self.key = kms.Key(
            self, "DataKey",
            description=("FinOps gateway: encrypts the ledger, keys and budgets tables, the provider API key "
                         "secrets and the budget alerts topic"),
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,  # the retained tables stay readable
        )
        self.ledger = LedgerTable(self, "Ledger", encryption_key=self.key)
        self.keys = KeysTable(self, "Keys", encryption_key=self.key)
        self.budgets = Budgets(self, "Budgets", encryption_key=self.key)
        self.secrets = ProviderSecrets(self, "ProviderSecrets", encryption_key=self.key)
        self.layers = GatewayLayers(self, "Layers", deps_dir=deps_layer_dir)
        self.gateway = GatewayApi(self, "Gateway", layers=self.layers.all, ledger=self.ledger, keys=self.keys,
                                  budgets=self.budgets, secrets=self.secrets)
        self.admin = AdminApi(self, "Admin", api=self.gateway.api, layers=self.layers.all, keys=self.keys)
        self.reconciler = Reconciler(self, "Reconciler", layers=self.layers.all, budgets=self.budgets,
                                     ledger=self.ledger, restore_from=self.gateway.log_groups)
        self.chargeback = Chargeback(self, "Chargeback", layers=self.layers.for_chargeback, ledger=self.ledger,
                                     encryption_key=self.key)
        self.routing_alarms = RoutingShareAlarms(self, "RoutingAlarms", alerts=self.budgets.alerts)

        CfnOutput(self, "ApiUrl", value=self.gateway.api.url, description="REST API prod stage URL")
        CfnOutput(self, "OpenAIBaseUrl", value=self.gateway.api.url_for_path("/v1"),
                  description="base_url for OpenAI SDKs (authenticate with a gateway virtual key)")
        CfnOutput(self, "AdminKeysUrl", value=self.gateway.api.url_for_path("/admin/keys"),
                  description="Admin API for virtual keys (SigV4-signed requests, execute-api:Invoke)")
        CfnOutput(self, "LedgerTableName", value=self.ledger.table_name, description="Usage ledger table")
        CfnOutput(self, "KeysTableName", value=self.keys.table_name, description="Virtual keys table")
        CfnOutput(self, "BudgetsTableName", value=self.budgets.table_name, description="Budget buckets table")
        CfnOutput(self, "AlertsTopicArn", value=self.budgets.alerts.topic.topic_arn,
                  description="SNS topic for budget threshold alerts (subscribe email/chat here)")
        CfnOutput(self, "AlertsEventBusName", value=self.budgets.alerts.event_bus.event_bus_name,
                  description="EventBridge bus receiving BudgetThresholdReached events (source finops.gateway)")
        for name, secret in self.secrets.secrets.items():
            CfnOutput(self, f"{name.capitalize()}SecretArn", value=secret.secret_arn,
                      description=f"Secret holding the {name} API key (put-secret-value the real key)")
