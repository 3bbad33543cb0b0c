"""The router in the request path: `model: "auto"`, X-FinOps-Route, and the ledger's counterfactual cost."""

from __future__ import annotations

import json
import time

from finops import aws
from finops.pricing import Usage, load_catalog
from finops.routing import load_routing_policy
from finops.routing.fleet_scores import hour_of
from finops.routing.score_store import PREFIX, DynamoScoreStore

HARD = "Analyze the legal exposure in this contract clause and draft a strategy memo, step by step. " * 12


def _event(load_event, content: str, model: str = "auto", **headers: str) -> dict:
    event = load_event("chat_completion", body={"model": model, "messages": [{"role": "user", "content": content}]})
    event["headers"].update(headers)
    return event


def test_auto_routes_and_books_what_the_strong_model_would_have_cost(gateway_env, load_event):
    catalog = load_catalog()
    easy = gateway_env.invoke(_event(load_event, "hi"))
    hard = gateway_env.invoke(_event(load_event, HARD))
    assert (easy.status, hard.status) == (200, 200)
    assert easy.header("X-FinOps-Model") == "gpt-4o-mini"
    assert hard.header("X-FinOps-Model") == "gpt-4o"
    assert easy.header("X-FinOps-Route-Decision").startswith("classifier")

    rows = {row.request_id: row for row in gateway_env.entries()}
    cheap = rows[easy.header("X-Request-ID")]
    strong = rows[hard.header("X-Request-ID")]
    assert (cheap.requested_model, cheap.model, cheap.route_strategy) == ("auto", "gpt-4o-mini", "classifier")
    usage = Usage(prompt_tokens=cheap.input_tokens, completion_tokens=cheap.output_tokens)
    assert cheap.counterfactual_usd == catalog.get("gpt-4o").cost(usage) > cheap.cost_usd
    # Routed to the reference model itself: no savings.
    assert strong.counterfactual_usd == strong.cost_usd


def test_route_off_and_concrete_models_are_not_routed(gateway_env, load_event):
    off = gateway_env.invoke(_event(load_event, "hi", **{"X-FinOps-Route": "off"}))
    concrete = gateway_env.invoke(_event(load_event, "hi", model="gpt-3.5-turbo"))
    assert (off.status, concrete.status) == (200, 200)
    assert off.header("X-FinOps-Model") == "gpt-4o"  # the enterprise tier's best model, unscored
    assert concrete.header("X-FinOps-Model") == "gpt-3.5-turbo"
    assert concrete.header("X-FinOps-Route-Decision") is None
    row = next(r for r in gateway_env.entries() if r.request_id == concrete.header("X-Request-ID"))
    assert (row.route_strategy, row.counterfactual_usd) == (None, row.cost_usd)


def test_the_gateway_shares_routing_scores_with_every_execution_environment(gateway_env, load_event):
    policy = load_routing_policy()
    ddb = aws.client("dynamodb")
    # Other environments saw enough hard prompts (all scored 0.99) for the fleet's cut-off to sit there.
    store = DynamoScoreStore(ddb, gateway_env.budgets_table)
    store.add("classifier#enterprise", hour_of(time.time()), {990: policy.adaptive_min_samples})
    first = gateway_env.invoke(_event(load_event, HARD))  # a new environment: no scores of its own yet
    assert first.status == 200
    assert "from the fleet's recent calls" in first.header("X-FinOps-Route-Decision")
    assert first.header("X-FinOps-Model") != "gpt-4o"  # HARD alone goes strong; against this fleet it does not

    for i in range(policy.fleet.flush_every - 1):  # this environment's scores reach the table every flush_every
        assert gateway_env.invoke(_event(load_event, f"question {i}")).status == 200
    items = ddb.scan(TableName=gateway_env.budgets_table, ConsistentRead=True)["Items"]
    counted = sum(int(v["N"]) for item in items if item["pk"]["S"].startswith(f"{PREFIX}classifier#enterprise#")
                  for k, v in item.items() if k.startswith("b"))
    assert counted == policy.adaptive_min_samples + policy.fleet.flush_every


def test_each_routed_call_is_counted_for_the_routing_alarms(gateway_env, load_event, monkeypatch, capsys):
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    easy = gateway_env.invoke(_event(load_event, "hi"))
    concrete = gateway_env.invoke(_event(load_event, "hi", model="gpt-4o-mini"))
    assert (easy.status, concrete.status) == (200, 200)
    routed = [line for line in map(str.strip, capsys.readouterr().out.splitlines())
              if line.startswith("{") and '"RoutedCalls"' in line]
    assert len(routed) == 1  # the auto call only
    emf = json.loads(routed[0])
    assert (emf["Tier"], emf["ModelClass"]) == ("enterprise", "cheap")
