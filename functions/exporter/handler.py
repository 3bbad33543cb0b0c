"""Scheduled (EventBridge Scheduler, daily at 00:45 UTC): export yesterday's ledger rows to S3 as Parquet.

Wiring only: the logic is in finops.chargeback. The event is ``{"scheduled_time": "<aws.scheduler.scheduled-time>"}``
from the schedule (the day before it is exported), or ``{"date": "YYYY-MM-DD"}`` to export any day by hand.
Re-running a day replaces its files. A reconciliation mismatch uploads nothing, emits
``ExportReconciliationFailures`` and fails the invocation.
"""

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from finops.chargeback import service
from finops.chargeback.export import ReconciliationError
from finops.chargeback.requests import ExportDayRequest

logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace="FinOpsGateway")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    day = ExportDayRequest.model_validate(event or {}).day()
    try:
        result = service.export_usage_day(day)
    except ReconciliationError as exc:
        metrics.add_metric("ExportReconciliationFailures", MetricUnit.Count, 1)
        logger.error("export_reconciliation_failed", extra={"day": day, **exc.details})
        raise
    metrics.add_metric("ExportReconciliationFailures", MetricUnit.Count, 0)
    metrics.add_metric("ExportedRows", MetricUnit.Count, result.rows)
    metrics.add_metric("ExportedBytes", MetricUnit.Bytes, result.bytes)
    metrics.add_metric("ExportedCostUSD", MetricUnit.NoUnit, float(result.cost_usd))
    logger.info("usage_exported", extra=result.summary())
    return result.summary()
