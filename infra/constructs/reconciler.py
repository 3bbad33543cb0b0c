"""The reservation reconciler (``functions/reconciler``), run every 5 minutes by EventBridge Scheduler, and the
restorer of spilled ledger rows, fed by a CloudWatch Logs subscription on the gateway's ``ledger_spill`` records."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_logs_destinations as logs_destinations
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as targets
from constructs import Construct

from infra.constructs.budgets import Budgets
from infra.constructs.function import finops_function
from infra.constructs.ledger_table import LedgerTable
from infra.runtime import ROOT

RECONCILER_FUNCTION_DIR = ROOT / "functions" / "reconciler"
PERIOD = Duration.minutes(5)
# The gateway logs a row DynamoDB would not take as a Powertools JSON line whose message is ``ledger_spill``.
SPILL_PATTERN = logs.FilterPattern.string_value("$.message", "=", "ledger_spill")


class _InvokeUnqualified(targets.LambdaInvoke):
    """``LambdaInvoke`` whose role may invoke the unqualified function only.

    The stock target calls ``grant_invoke``, which also allows ``<function arn>:*`` (every version and
    alias): a wildcard the schedule never needs, since its target is the unqualified ARN.
    """

    def __init__(self, func: lambda_.IFunction, **props: object) -> None:
        super().__init__(func, **props)
        self._function_arn = func.function_arn

    def _add_target_action_to_role(self, role: iam.IRole) -> None:
        iam.Grant.add_to_principal(grantee=role, actions=["lambda:InvokeFunction"],
                                   resource_arns=[self._function_arn])


class Reconciler(Construct):
    """Books or releases reservations whose gateway call died before settling (``finops.budgets.reconciler``).

    Overlapping runs are safe (ledger rows are written once per request id, reservations are removed
    conditionally), so there is no reserved concurrency; the timeout stays below the period anyway.
    A missed scheduled run costs nothing but latency: the next one, 5 minutes later, picks the same
    reservations up.

    ``restore_from``: the gateway's log groups; a subscription filter sends their ``ledger_spill`` records to
    the same function, which writes the rows back and settles their reservations with the real cost. CloudWatch
    Logs invokes it asynchronously, so a failed restore (the ledger table still unavailable) is retried twice by
    Lambda: safe for both sources, since a repeat finds its rows written and its reservations gone. If every
    try fails, the reservation expires and the scheduled run books it at its worst case (the record stays in the
    retained log for a manual ``finops reconcile --spill``).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        layers: Sequence[lambda_.ILayerVersion],
        budgets: Budgets,
        ledger: LedgerTable,
        restore_from: Sequence[logs.ILogGroup] = (),
        code_dir: Path = RECONCILER_FUNCTION_DIR,
    ) -> None:
        super().__init__(scope, construct_id)
        built = finops_function(
            self,
            code_dir=code_dir,
            description=("FinOps budgets: book or release reservations that outlived their gateway call; restore "
                         "spilled ledger rows"),
            role_description="FinOps reconciler function: its log group, X-Ray, the budgets and ledger tables",
            layers=layers,
            memory_size=512,
            timeout=Duration.minutes(4),  # below PERIOD
            retry_attempts=2,  # a spill restore retried; a scheduled run repeated (both idempotent)
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
        # LambdaDestination grants logs.amazonaws.com the invoke, scoped to each log group's ARN.
        self.spill_subscriptions = [
            logs.SubscriptionFilter(self, f"SpillSubscription{i}", log_group=log_group, filter_pattern=SPILL_PATTERN,
                                    destination=logs_destinations.LambdaDestination(self.function))
            for i, log_group in enumerate(restore_from)]

        # Own role (instead of the stack-wide SchedulerRoleForTarget-*) with the same confused-deputy
        # guards: only EventBridge Scheduler, for schedules of this account's default group.
        stack = Stack.of(self)
        self.scheduler_role = iam.Role(
            self, "SchedulerRole",
            description="EventBridge Scheduler: invoke the FinOps reconciler function",
            assumed_by=iam.ServicePrincipal("scheduler.amazonaws.com", conditions={"StringEquals": {
                "aws:SourceAccount": stack.account,
                "aws:SourceArn": stack.format_arn(service="scheduler", resource="schedule-group",
                                                  resource_name="default"),
            }}),
        )
        self.schedule = scheduler.Schedule(
            self, "Schedule",
            description="Every 5 minutes: reconcile expired budget reservations",
            schedule=scheduler.ScheduleExpression.rate(PERIOD),
            target=_InvokeUnqualified(
                self.function,
                role=self.scheduler_role,
                # Scheduler retries a failed (e.g. throttled) invoke within the period, never into the next run.
                retry_attempts=2,
                max_event_age=Duration.minutes(4),
            ),
        )
