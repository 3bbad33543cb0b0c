"""One CloudWatch metric per routed ``auto`` call: ``RoutedCalls`` in ``FinOpsGateway`` by ``Tier`` and
``ModelClass`` (Powertools' embedded metric format, one log line). The stack's routing alarms compare each
tier's strong-call share with its target (``infra/constructs/routing_alarms.py``).

A line per call, not the handler's per-invocation metric set: the dimensions are the call's own. Written only
where Powertools metrics are on (its own ``is_metrics_disabled``: ``POWERTOOLS_METRICS_DISABLED``,
``POWERTOOLS_DEV``), as every metric here.
"""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from ..routing import RouteDecision

NAMESPACE = "FinOpsGateway"
METRIC = "RoutedCalls"


def record(tier: str, decision: RouteDecision) -> None:
    if not decision.routed or decision.model_class is None or is_metrics_disabled():
        return
    with single_metric(name=METRIC, unit=MetricUnit.Count, value=1, namespace=NAMESPACE) as metric:
        metric.add_dimension(name="Tier", value=tier)
        metric.add_dimension(name="ModelClass", value=decision.model_class)
