"""Scheduled (EventBridge Scheduler, every 5 minutes): book or release reservations that outlived their call.

Also the target of a CloudWatch Logs subscription on the gateway's ``ledger_spill`` records (``{"awslogs": ...}``):
it writes those rows back to the ledger and settles the reservations their calls still hold.
"""

import time
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from finops.gateway.factory import reconciler
from finops.ledger import spill

logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace="FinOpsGateway")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "awslogs" in event:
        restored = reconciler().restore(spill.entries(spill.subscription_messages(event)))
        metrics.add_metric("LedgerRowsRestored", MetricUnit.Count, restored.restored)
        return dict(restored.__dict__)
    summary = reconciler().run(time.time())
    metrics.add_metric("ReservationsBooked", MetricUnit.Count, summary.booked)
    metrics.add_metric("ReservationsReleased", MetricUnit.Count, summary.released)
    metrics.add_metric("ReservationsStale", MetricUnit.Count, summary.already_settled)
    return {"booked": summary.booked, "released": summary.released, "already_settled": summary.already_settled}
