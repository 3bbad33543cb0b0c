"""Scheduled (EventBridge Scheduler, monthly on the 1st at 03:00 UTC): last month's FOCUS 1.2 export.

Wiring only: the logic is in finops.chargeback. The event is ``{"scheduled_time": ...}`` from the schedule
(the month before it is exported), or ``{"month": "YYYY-MM"}`` by hand. Reads the month's
``usage/dt=*`` files, writes ``focus/billing_period=YYYY-MM/``; a reconciliation mismatch uploads nothing,
emits ``FocusReconciliationFailures`` and fails the invocation.
"""

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from finops.chargeback import service
from finops.chargeback.export import ReconciliationError
from finops.chargeback.requests import FocusExportRequest

logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace="FinOpsGateway")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    month = FocusExportRequest.model_validate(event or {}).month_to_export()
    try:
        result = service.export_focus(month)
    except ReconciliationError as exc:
        metrics.add_metric("FocusReconciliationFailures", MetricUnit.Count, 1)
        logger.error("focus_reconciliation_failed", extra={"month": month, **exc.details})
        raise
    metrics.add_metric("FocusReconciliationFailures", MetricUnit.Count, 0)
    metrics.add_metric("FocusRows", MetricUnit.Count, result.rows)
    logger.info("focus_exported", extra=result.summary())
    return result.summary()
