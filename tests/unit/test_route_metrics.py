"""``RoutedCalls``: one embedded-metric-format line per routed auto call, by tier and model class, which the
stack's routing alarms read (infra test ``test_routed_tiers_alarm_when_their_strong_share_runs_over_target``)."""

from __future__ import annotations

import json

import pytest
from finops.gateway import route_metrics
from finops.routing import RouteDecision


def _decision(model_class: str | None, routed: bool) -> RouteDecision:
    return RouteDecision("gpt-4o", "auto", "classifier", 0.9, model_class, "classifier score 0.900 -> strong",
                         "gpt-4o", routed=routed)


def test_a_routed_call_writes_one_metric_line_with_its_tier_and_class(monkeypatch, capsys) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    route_metrics.record("pro", _decision("strong", routed=True))
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(lines) == 1
    emf = lines[0]
    (directive,) = emf["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "FinOpsGateway"
    assert [m["Name"] for m in directive["Metrics"]] == ["RoutedCalls"]
    assert sorted(directive["Dimensions"][0]) == ["ModelClass", "Tier"]
    assert (emf["Tier"], emf["ModelClass"], emf["RoutedCalls"]) == ("pro", "strong", [1.0])


@pytest.mark.parametrize(("disabled", "model_class", "routed"), [
    ("true", "strong", True),  # metrics off (tests, the local stack)
    ("false", None, False),  # a concrete model: nothing was routed
    ("false", "strong", False),  # a downgrade is not a routing decision
])
def test_nothing_is_written_otherwise(monkeypatch, capsys, disabled: str, model_class: str | None,
                                      routed: bool) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", disabled)
    route_metrics.record("pro", _decision(model_class, routed))
    assert capsys.readouterr().out == ""
