"""Budgets: the GCRA bucket table (``finops.budgets``) and where soft alerts go (SNS + EventBridge)."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct
from finops.budgets.table import TTL_ATTRIBUTE, BudgetItem

from infra.constructs.ledger_table import LedgerTable
from infra.constructs.model_table import ModelTable

EVENT_BUS_NAME = "finops-budgets"
# What finops.budgets.alerts publishes to the bus (rules match on these).
EVENT_SOURCE = "finops.gateway"
EVENT_DETAIL_TYPE = "BudgetThresholdReached"


class BudgetsTable(ModelTable):
    """Buckets, caps, breakers, loop counters and alert markers (hash key ``pk``, ``BudgetItem``).

    TTL on ``expires_at`` (``finops.budgets.table.TTL_ATTRIBUTE``) expires alert markers and loop counters.
    """

    def __init__(self, scope: Construct, construct_id: str, *, encryption_key: kms.IKey) -> None:
        super().__init__(scope, construct_id, model=BudgetItem, encryption_key=encryption_key,
                         time_to_live_attribute=TTL_ATTRIBUTE)


class BudgetAlerts(Construct):
    """An SNS topic (operators subscribe: email, chat, ...) and a custom event bus (rules, automation).

    The topic is encrypted with the stack key and its policy denies publishing without TLS.
    """

    def __init__(self, scope: Construct, construct_id: str, *, encryption_key: kms.IKey,
                 event_bus_name: str = EVENT_BUS_NAME) -> None:
        super().__init__(scope, construct_id)
        self.encryption_key = encryption_key
        self.topic = sns.Topic(
            self, "Topic",
            display_name="FinOps gateway budget alerts",
            master_key=encryption_key,
            enforce_ssl=True,
        )
        self.event_bus = events.EventBus(
            self, "Bus",
            event_bus_name=event_bus_name,
            description=f"FinOps gateway budget alerts ({EVENT_SOURCE} / {EVENT_DETAIL_TYPE})",
        )

    def allow_cloudwatch_alarms(self) -> None:
        """Let this account's CloudWatch alarms notify the topic: publish (the topic policy is the stack's own,
        so the default account access is not there) and use the topic key (a customer-managed key must say so
        in its key policy)."""
        stack = Stack.of(self)
        alarms = f"arn:{stack.partition}:cloudwatch:{stack.region}:{stack.account}:alarm:*"
        self.topic.add_to_resource_policy(iam.PolicyStatement(
            principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")], actions=["sns:Publish"],
            resources=[self.topic.topic_arn], conditions={"ArnLike": {"aws:SourceArn": alarms}}))
        self.encryption_key.add_to_resource_policy(iam.PolicyStatement(
            principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
            actions=["kms:Decrypt", "kms:GenerateDataKey*"], resources=["*"],
            conditions={"ArnLike": {"aws:SourceArn": alarms}}))

    def grant_publish(self, grantee: iam.IGrantable) -> None:
        """What ``AlertPublisher._publish`` does: sns:Publish on the topic (plus the topic key, through SNS
        only) and events:PutEvents on the bus."""
        iam.Grant.add_to_principal(grantee=grantee, actions=["sns:Publish"],
                                   resource_arns=[self.topic.topic_arn])
        iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["kms:GenerateDataKey", "kms:Decrypt"],
            resource_arns=[self.encryption_key.key_arn],
            conditions={"StringEquals": {"kms:ViaService": f"sns.{Stack.of(self).region}.amazonaws.com"}},
        )
        iam.Grant.add_to_principal(grantee=grantee, actions=["events:PutEvents"],
                                   resource_arns=[self.event_bus.event_bus_arn])


class Budgets(Construct):
    """The budgets capability: ``Table`` (BudgetsTable) and ``Alerts`` (BudgetAlerts).

    The grants mirror the calls in ``finops.budgets.store`` / ``alerts`` / ``reconciler``. Transactions
    (``TransactWriteItems``) have no IAM action of their own: each item needs its own action (UpdateItem on
    this table, PutItem on the ledger for the settlement's ledger row); ConditionCheckItem is never used.
    """

    def __init__(self, scope: Construct, construct_id: str, *, encryption_key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        self.table = BudgetsTable(self, "Table", encryption_key=encryption_key)
        self.alerts = BudgetAlerts(self, "Alerts", encryption_key=encryption_key)

    @property
    def table_name(self) -> str:
        return self.table.table_name

    def environment(self) -> dict[str, str]:
        """The ``FINOPS_*`` variables the gateway function reads (``finops.settings``)."""
        return {
            "FINOPS_BUDGETS_TABLE": self.table.table_name,
            "FINOPS_ALERTS_TOPIC_ARN": self.alerts.topic.topic_arn,
            "FINOPS_ALERTS_EVENT_BUS": self.alerts.event_bus.event_bus_name,
        }

    def grant_gateway(self, grantee: iam.IGrantable, ledger: LedgerTable) -> None:
        """Admission (UpdateItem, alone or in a transaction), breaker trips (UpdateItem), state reads
        (GetItem), alert markers (conditional PutItem), settlement (UpdateItem here + PutItem on the
        ledger, in one transaction), alert publishing, and the router's fleet scores (UpdateItem to add,
        BatchGetItem to read: ``finops.routing.score_store``)."""
        self.table.grant(grantee, ["dynamodb:UpdateItem", "dynamodb:GetItem", "dynamodb:PutItem",
                                   "dynamodb:BatchGetItem"])
        ledger.grant_append(grantee)
        self.alerts.grant_publish(grantee)

    def grant_reconcile(self, grantee: iam.IGrantable, ledger: LedgerTable) -> None:
        """``Reconciler.run`` and ``.restore``: Scan for reservations, UpdateItem to resolve them, GetItem; the
        ledger row for each (conditional PutItem, GetItem)."""
        self.table.grant(grantee, ["dynamodb:Scan", "dynamodb:UpdateItem", "dynamodb:GetItem"])
        ledger.grant_append(grantee)
