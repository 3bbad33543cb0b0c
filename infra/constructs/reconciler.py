"""The reservation reconciler (``functions/reconciler``), run every 5 minutes by EventBridge Scheduler."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from aws_cdk import Duration
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as targets
from constructs import Construct

from infra.constructs.budgets import Budgets
from infra.constructs.function import finops_function
from infra.constructs.ledger_table import LedgerTable
from infra.runtime import RECONCILER_FUNCTION_DIR

PERIOD = Duration.minutes(5)


class Reconciler(Construct):
    """Books or releases reservations whose gateway call died before settling (``finops.budgets.reconciler``).

    Runs overlapping is safe (ledger rows are written once per request id, reservations are removed
    conditionally), so there is no reserved concurrency; the timeout stays below the period anyway.
    A missed run costs nothing but latency: the next one, 5 minutes later, picks the same reservations
    up, hence no Lambda async retries and no dead-letter queue.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        layers: Sequence[lambda_.ILayerVersion],
        budgets: Budgets,
        ledger: LedgerTable,
        code_dir: Path = RECONCILER_FUNCTION_DIR,
    ) -> None:
        super().__init__(scope, construct_id)
        built = finops_function(
            self,
            code_dir=code_dir,
            description="FinOps budgets: book or release reservations that outlived their gateway call",
            role_description="FinOps reconciler function: its log group, X-Ray, the budgets and ledger tables",
            layers=layers,
            memory_size=512,
            timeout=Duration.minutes(4),  # below PERIOD
            retry_attempts=0,  # the next scheduled run retries
            environment={
                "POWERTOOLS_SERVICE_NAME": "finops-reconciler",
                "POWERTOOLS_METRICS_NAMESPACE": "FinOpsGateway",
                "FINOPS_LEDGER_TABLE": ledger.table_name,
                "FINOPS_BUDGETS_TABLE": budgets.table_name,
                "LOG_LEVEL": "INFO",
            },
        )
        self.function, self.log_group = built.function, built.log_group
        budgets.grant_reconcile(self.function, ledger)

        self.schedule = scheduler.Schedule(
            self, "Schedule",
            description="Every 5 minutes: reconcile expired budget reservations",
            schedule=scheduler.ScheduleExpression.rate(PERIOD),
            target=targets.LambdaInvoke(
                self.function,
                # Scheduler retries a failed (e.g. throttled) invoke within the period, never into the next run.
                retry_attempts=2,
                max_event_age=Duration.minutes(4),
            ),
        )
