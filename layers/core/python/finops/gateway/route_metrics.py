"""One CloudWatch metric per routed ``auto`` call: ``RoutedCalls`` in ``FinOpsGateway`` by ``Tier`` and
``ModelClass`` (Powertools' embedded metric format, one log line). The stack's routing alarms compare each
tier's strong-call share with its target (``infra/constructs/routing_alarms.py``).

A line per call, not the handler's per-invocation metric set: the dimensions are the call's own. Written only
where Powertools metrics are on (``POWERTOOLS_METRICS_DISABLED`` unset or false), as every metric here.
"""

from __future__ import annotations

import os

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from ..routing import RouteDecision

NAMESPACE = "FinOpsGateway"
METRIC = "RoutedCalls"


def enabled() -> bool:
    return os.environ.get("POWERTOOLS_METRICS_DISABLED", "false").strip().lower() not in ("1", "true", "yes")


def record(tier: str, decision: RouteDecision) -> None:
    if not decision.routed or decision.model_class is None or not enabled():
        return
    with single_metric(name=METRIC, unit=MetricUnit.Count, value=1, namespace=NAMESPACE) as metric:
        metric.add_dimension(name="Tier", value=tier)
        metric.add_dimension(name="ModelClass", value=decision.model_class)
