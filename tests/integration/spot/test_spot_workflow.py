"""The synthesized spot-training state machine, executed by moto: every path the workflow promises.

See conftest.py for what is real and what is patched. Prices: p3.2xlarge in us-east-1 from the 2022-05-31
file: use1-az1 at $3.06 (= On-Demand: no spare capacity), use1-az2/az5/az6 at $0.918.
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from finops.spot.market import on_demand_price
from spot_harness import Run, World

EVENTS = Path(__file__).resolve().parents[3] / "events"

pytestmark = pytest.mark.xdist_group("spot-moto")

SPOT_PRICE = Decimal("0.918")
ON_DEMAND = on_demand_price("p3.2xlarge", "us-east-1")


def spec(**overrides: Any) -> dict[str, Any]:
    """events/spot_execution_input.json's spec (a fresh checkpoint prefix per run), with ``overrides``."""
    base: dict[str, Any] = json.loads((EVENTS / "spot_execution_input.json").read_text())["spec"]
    return {**base, "checkpoint_prefix": f"it/{uuid.uuid4().hex[:8]}", **overrides}


def hours_cost(latency_ms: int, price: Decimal) -> Decimal:
    return (Decimal(latency_ms) / Decimal(3_600_000) * price).quantize(Decimal("0.000001"))


def states_entered(execution: dict[str, Any]) -> list[str]:
    return [e["stateEnteredEventDetails"]["name"] for e in execution["history"] if "stateEnteredEventDetails" in e]


def state_output(execution: dict[str, Any], state: str) -> list[dict[str, Any]]:
    return [json.loads(e["stateExitedEventDetails"]["output"]) for e in execution["history"]
            if e.get("stateExitedEventDetails", {}).get("name") == state]


def test_preempted_on_spot_then_on_demand_time_box_then_spot_again_to_done(world: World) -> None:
    execution = world.start(spec(), [
        Run("preempt", (3600, 1800), steps=300),  # lost twice: Batch retried in place once, then gave up
        Run("timebox", (600,), steps=100),  # the On-Demand 10-minute box
        Run("finish", (5400,)),
    ])
    assert execution["status"] == "SUCCEEDED", (execution.get("error"), execution.get("cause"),
                                                 states_entered(execution))
    assert states_entered(execution) == [
        "InitTotals", "ValidateJobSpec", "HuntZone", "SpotZoneFound", "PlanSpotRun", "RunOnSpot",
        "RecordInterruptedRun", "PreemptedOrFailed", "PlanOnDemandRun", "RunOnDemand", "RecordRun",
        "ReadProgress", "TrainingFinished", "HuntZone", "SpotZoneFound", "PlanSpotRun", "RunOnSpot",
        "RecordRun", "ReadProgress", "TrainingFinished", "Done"]

    # where each job ran: the quietest cheap zone, On-Demand, then another zone (the first cools down)
    first_hunt, second_hunt = (out["hunt"] for out in state_output(execution, "HuntZone"))
    assert first_hunt["chosen"]["az_id"] == "use1-az2"
    az1 = next(s for s in first_hunt["scores"] if s["az_id"] == "use1-az1")
    assert not az1["eligible"] and "no spare capacity" in az1["reason"]
    assert first_hunt["placement_scores"] == "unavailable"
    assert second_hunt["chosen"]["az_id"] == "use1-az5"
    az2 = next(s for s in second_hunt["scores"] if s["az_id"] == "use1-az2")
    assert not az2["eligible"] and az2["recent_preemptions"] == 1 and "cooling down" in az2["reason"]
    assert [job.queue_arn for job in world.jobs] == [
        world.queue_arn("SpotTrainingBatchSpotQueueUse1Az2"), world.queue_arn("SpotTrainingBatchOnDemandQueue"),
        world.queue_arn("SpotTrainingBatchSpotQueueUse1Az5")]

    # the container contract: checkpoint URI, steps, run id; the 10-minute box on On-Demand only
    spot_env, on_demand_env, _ = (job.environment for job in world.jobs)
    assert on_demand_env["FINOPS_TIME_BOX_SECONDS"] == "600"
    assert "FINOPS_TIME_BOX_SECONDS" not in spot_env
    assert spot_env["FINOPS_TOTAL_STEPS"] == "1000" and spot_env["FINOPS_CHECKPOINT_EVERY"] == "50"
    assert spot_env["FINOPS_RUN_ID"] == execution["name"]
    assert spot_env["FINOPS_CHECKPOINT_URI"].startswith("s3://") and spot_env["FINOPS_CHECKPOINT_URI"].endswith("/")

    # one ledger row per attempt, cost = instance-hours x price, under the spec's project
    rows = world.ledger_entries(execution["name"])
    assert [(r.provider, r.status, r.model) for r in rows] == [
        ("aws-batch-spot", "preempted", "p3.2xlarge"), ("aws-batch-on-demand", "ok", "p3.2xlarge"),
        ("aws-batch-spot", "ok", "p3.2xlarge")]
    assert [round(r.latency_ms / 1000) for r in rows] == [5400, 600, 5400]
    for row, price in zip(rows, (SPOT_PRICE, ON_DEMAND, SPOT_PRICE), strict=True):
        assert row.kind == "training"
        assert (row.project_id, row.user_id, row.environment, row.department_id) == (
            "llm-finetune", "alice", "development", "research")
        assert row.cost_usd == hours_cost(row.latency_ms, price)
    assert rows[1].cost_usd == pytest.approx(Decimal("0.51"), abs=Decimal("0.001"))  # 10 min at $3.06/h
    totals = state_output(execution, "RecordRun")[-1]["totals"]
    assert Decimal(totals["cost_usd"]) == sum(r.cost_usd for r in rows)
    assert (totals["attempts"], totals["preemptions"]) == (3, 1)
    assert world.alerts() == []


def test_a_real_training_failure_fails_the_execution_with_its_reason(world: World) -> None:
    execution = world.start(spec(), [Run("fail", (120,))])
    assert execution["status"] == "FAILED"
    assert execution["error"] == "TrainingFailed"
    assert execution["cause"].startswith("Essential container in task exited")
    assert states_entered(execution)[-3:] == ["RecordInterruptedRun", "PreemptedOrFailed", "TrainingFailed"]
    (row,) = world.ledger_entries(execution["name"])
    assert (row.status, row.error_code, row.provider) == ("failed", "training_failed", "aws-batch-spot")
    assert row.cost_usd == hours_cost(row.latency_ms, SPOT_PRICE) > 0
    assert world.alerts() == []


def test_the_dollar_cap_stops_the_run_and_alerts(world: World) -> None:
    # 2 h on Spot at $0.918 = $1.836, over a $1.50 cap: no On-Demand run follows the preemption
    execution = world.start(spec(max_cost_usd="1.50"), [Run("preempt", (7200,), steps=400)])
    assert execution["status"] == "FAILED"
    assert execution["error"] == "SpotTrainingStopped"
    assert execution["cause"].startswith("dollar cap reached: $1.836")
    assert states_entered(execution)[-3:] == ["PreemptedOrFailed", "AlertAndStop", "Stopped"]
    assert len(world.jobs) == 1
    (alert,) = world.alerts()
    assert alert["project_id"] == "llm-finetune" and alert["reason"] == execution["cause"]
    assert Decimal(alert["totals"]["cost_usd"]) == world.ledger_entries(execution["name"])[0].cost_usd


def test_too_many_preemptions_stop_the_run_and_alert(world: World) -> None:
    execution = world.start(spec(max_preemptions=0), [Run("preempt", (300,), steps=10)])
    assert execution["status"] == "FAILED"
    assert execution["error"] == "SpotTrainingStopped"
    assert execution["cause"] == "too many preemptions: 1 > 0"
    (alert,) = world.alerts()
    assert alert["totals"]["preemptions"] == 1


def test_an_invalid_spec_fails_at_validation_without_running_anything(world: World) -> None:
    execution = world.start(spec(total_steps=0), [])
    assert execution["status"] == "FAILED"
    assert execution["error"] == "InvalidJobSpec"
    assert states_entered(execution) == ["InitTotals", "ValidateJobSpec"]
    assert world.jobs == []
