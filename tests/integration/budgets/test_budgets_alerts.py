"""Soft alerts: crossing 80% of a budget publishes once per scope per UTC day to SNS and EventBridge."""

from __future__ import annotations

from budgets_it_support import QUIET_BREAKER, Alerts, BudgetStack, policy_dict

POLICY = policy_dict(tier_free={"budget": {"daily_usd": 0.001}, "breaker": QUIET_BREAKER},
                     users={"*": {"daily_usd": 0.001}})


def big(tag: str) -> str:
    return f"{tag} " + "budget " * 2000  # ~$0.0003 on gpt-4o-mini with max_tokens=1


def test_crossing_80_percent_alerts_once_per_scope_per_day(bstack: BudgetStack, alerts: Alerts) -> None:
    gw = bstack.gateway(POLICY, alerts=alerts)
    key = bstack.create_key("free")
    key_id = bstack.key_id(key)
    for i in range(2):  # 30%, 60%
        assert bstack.chat(gw, key, big(f"c{i}"), max_tokens=1).status == 200
    assert alerts.sns() == [] and alerts.events() == []

    assert bstack.chat(gw, key, big("c2"), max_tokens=1).status == 200  # 90%
    sns = alerts.sns()
    events = alerts.events()
    assert sorted(m["scope"] for m in sns) == sorted([f"key:{key_id}", "user:alice"])
    assert sorted(e["detail"]["scope"] for e in events) == sorted([f"key:{key_id}", "user:alice"])
    for message in sns:
        assert message["day"] == "2026-11-29"
        assert message["threshold"] == "0.8"
        assert message["daily_budget_usd"] == "0.001000"
        assert 0.0008 <= float(message["spent_usd"]) <= 0.001
        assert "80%" in message["message"]
        assert message["_subject"] == "AI budget 80% reached"
    for event in events:
        assert event["source"] == "finops.gateway"
        assert event["detail-type"] == "BudgetThresholdReached"
        assert event["detail"]["threshold"] == "0.8"

    # later calls above the threshold, from this function or a cold one, never alert again today
    for i in range(3):
        assert bstack.chat(gw, key, f"small {i}", max_tokens=5).status == 200
    cold = bstack.gateway(POLICY, alerts=alerts)
    assert bstack.chat(cold, key, "small from a cold start", max_tokens=5).status == 200
    assert alerts.sns() == [] and alerts.events() == []

    # a new day, crossing again: one more alert per scope
    bstack.clock.advance(86_400)
    for i in range(3):
        assert bstack.chat(gw, key, big(f"d{i}"), max_tokens=1).status == 200
    next_day = alerts.sns()
    assert sorted(m["scope"] for m in next_day) == sorted([f"key:{key_id}", "user:alice"])
    assert {m["day"] for m in next_day} == {"2026-11-30"}
    assert len(alerts.events()) == 2


def test_failed_calls_do_not_alert(bstack: BudgetStack, alerts: Alerts) -> None:
    gw = bstack.gateway(POLICY, alerts=alerts)
    key = bstack.create_key("free")
    for i in range(2):
        assert bstack.chat(gw, key, big(f"c{i}"), max_tokens=1).status == 200
    failed = bstack.chat(gw, key, big("c2") + " [[sim:status=500]]", max_tokens=1)
    assert failed.status == 502
    assert alerts.sns() == [] and alerts.events() == []


def test_the_deployed_handler_publishes_alerts(bstack: BudgetStack, alerts: Alerts) -> None:
    bstack.use_policy(POLICY)
    bstack.set_env(FINOPS_ALERTS_TOPIC_ARN=alerts.topic_arn, FINOPS_ALERTS_EVENT_BUS=alerts.bus)
    key = bstack.create_key("free")
    for i in range(3):
        reply = bstack.invoke_gateway(key, bstack.body(big(f"h{i}"), max_tokens=1))
        assert reply.status == 200, reply.body
    assert len(alerts.sns()) == 2
    assert len(alerts.events()) == 2
    assert bstack.invoke_gateway(key, bstack.body("tiny", max_tokens=5)).status == 200
    assert alerts.sns() == []
