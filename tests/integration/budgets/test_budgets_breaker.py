"""The runaway-loop circuit breaker through ChatGateway: loops, request rate, spend rate, cooldown, half-open."""

from __future__ import annotations

from decimal import Decimal

from budgets_it_support import BudgetStack, policy_dict


def breaker(**kw: int | float) -> dict[str, int | float]:
    return {"window_seconds": 300, "cooldown_seconds": 60, **kw}


def test_same_prompt_repeated_trips_the_breaker_until_the_cooldown(bstack: BudgetStack) -> None:
    gw = bstack.gateway(policy_dict(tier_free={"breaker": breaker(max_repeats=3)}))
    key = bstack.create_key("free")
    key_id = bstack.key_id(key)
    for _ in range(3):
        assert bstack.chat(gw, key, "summarise this again").status == 200
    calls = bstack.sim.count
    # one loop counter per prompt, expiring (DynamoDB TTL) two windows after its last write
    [loop] = [item for pk, item in bstack.budget_items().items() if pk.startswith(f"loop#{key_id}#")]
    assert int(loop["expires_at"]["N"]) == int(bstack.clock()) + 600

    tripped = bstack.chat(gw, key, "summarise this again")
    assert tripped.status == 429 and tripped.code == "circuit_open"
    assert tripped.header("retry-after") == "60"
    assert tripped.error["scope"] == f"key:{key_id}"
    assert tripped.error["trigger"] == "loop"

    bstack.clock.advance(10)
    other = bstack.chat(gw, key, "a completely different question")  # open: everything is refused
    assert other.status == 429 and other.code == "circuit_open"
    assert other.header("retry-after") == "50"
    assert other.error["scope"] == f"key:{key_id}"
    assert bstack.sim.count == calls

    # the breaker is per scope: another key of the same user and project is not affected by this key's loop
    assert bstack.chat(gw, bstack.create_key("free"), "a completely different question").status == 200

    bstack.clock.advance(50)  # cooldown over: half-open, admits again
    assert bstack.chat(gw, key, "a completely different question").status == 200
    # half-open: the prompt that tripped it gets exactly one probe; a loop that continues re-trips at once
    assert bstack.chat(gw, key, "summarise this again").status == 200
    again = bstack.chat(gw, key, "summarise this again")
    assert again.status == 429 and again.code == "circuit_open" and again.header("retry-after") == "60"
    assert again.error["trigger"] == "loop"
    assert bstack.item(f"breaker#key#{key_id}")["trips"] == {"N": "2"}
    assert bstack.sim.count == calls + 3  # the other key, the different question, the probe


def test_request_rate_trips_the_breaker(bstack: BudgetStack) -> None:
    gw = bstack.gateway(policy_dict(tier_pro={"breaker": breaker(window_seconds=60, max_requests=5,
                                                                 cooldown_seconds=30)}))
    key = bstack.create_key("pro")
    for i in range(5):
        assert bstack.chat(gw, key, f"distinct prompt {i}").status == 200
    reply = bstack.chat(gw, key, "distinct prompt 5")
    assert reply.status == 429 and reply.code == "circuit_open"
    assert reply.error["trigger"] == "breaker_requests"
    assert reply.header("retry-after") == "30"
    bstack.clock.advance(29)
    assert bstack.chat(gw, key, "distinct prompt 6").code == "circuit_open"
    bstack.clock.advance(1)
    # half-open: exactly one probe, and a client still going at full rate re-trips at once
    assert bstack.chat(gw, key, "probe").status == 200
    again = bstack.chat(gw, key, "after the probe")
    assert again.code == "circuit_open" and again.error["trigger"] == "breaker_requests"
    assert again.header("retry-after") == "30"
    # a client that slows down to the allowed rate (one call per 12 s) keeps being admitted
    bstack.clock.advance(30 + 12)
    assert bstack.chat(gw, key, "slow").status == 200
    for i in range(3):
        bstack.clock.advance(12)
        assert bstack.chat(gw, key, f"steady {i}").status == 200


def test_spend_rate_trips_the_breaker(bstack: BudgetStack) -> None:
    gw = bstack.gateway(policy_dict(tier_pro={"breaker": breaker(window_seconds=60, max_spend_usd=0.0005)}))
    key = bstack.create_key("pro")
    prompt = "budget " * 2000  # ~$0.0003 on gpt-4o-mini
    assert bstack.chat(gw, key, "a " + prompt, max_tokens=1).status == 200
    reply = bstack.chat(gw, key, "b " + prompt, max_tokens=1)
    assert reply.status == 429 and reply.code == "circuit_open"
    assert reply.error["trigger"] == "breaker_spend"
    assert reply.header("retry-after") == "60"


def test_one_oversized_call_is_admitted_and_does_not_trip_the_breaker(bstack: BudgetStack) -> None:
    """A call whose worst case alone exceeds the spend threshold is not a runaway: it fills the spend window
    while in flight, settles at its actual cost, and the key, user and project stay usable."""
    gw = bstack.gateway(policy_dict(tier_pro={"breaker": breaker(window_seconds=60, max_spend_usd=0.0005)}))
    key = bstack.create_key("pro")
    key_id = bstack.key_id(key)
    prompt = "budget " * 2000  # ~$0.0003 of prompt; 1000 output tokens allowed: ~$0.0009 worst case
    reply = bstack.chat(gw, key, "big " + prompt, max_tokens=1000)
    assert reply.status == 200, reply.body
    row = bstack.entry(reply.request_id)
    assert row.reserved_usd > Decimal("0.0005") > row.cost_usd
    for pk in (f"breaker#key#{key_id}", "breaker#user#alice", "breaker#project#checkout-web"):
        assert "open_until" not in bstack.item(pk), pk
    assert bstack.chat(gw, key, "a small one right after", max_tokens=5).status == 200


def test_enterprise_keys_still_have_the_breaker(bstack: BudgetStack) -> None:
    gw = bstack.gateway(policy_dict(tier_enterprise={"breaker": breaker(max_repeats=2, cooldown_seconds=120)}))
    key = bstack.create_key("enterprise")
    assert [bstack.chat(gw, key, "loop", model="gpt-4o").status for _ in range(2)] == [200, 200]
    reply = bstack.chat(gw, key, "loop", model="gpt-4o")
    assert reply.status == 429 and reply.code == "circuit_open" and reply.header("retry-after") == "120"
    rows = bstack.entries()
    assert len(rows) == 2 and all(r.cost_usd > 0 and r.tier == "enterprise" for r in rows)
