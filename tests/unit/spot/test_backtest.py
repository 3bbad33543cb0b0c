"""The Spot backtest: deterministic per seed, exact On-Demand cost, monotonic in the hazard, runnable CLI."""

from __future__ import annotations

import argparse
import json
from datetime import timedelta
from decimal import Decimal

import pytest
from finops.spot.backtest import (
    Market,
    TrainingJob,
    percentile,
    reference_job,
    run_backtest,
    simulate,
)
from finops.spot.cli import register
from finops.spot.hunter import HunterConfig, hunt
from finops.spot.market import bundled_price_file, load_price_file, on_demand_price
from finops.spot.preemption_model import PreemptionModel, monthly_to_hourly

SEEDS = range(24)


@pytest.fixture(scope="module")
def rows():
    return load_price_file(bundled_price_file())


@pytest.fixture(scope="module")
def p3_market(rows) -> Market:
    return Market(rows, "p3.2xlarge", "us-east-1")


def small_job(steps: int = 600, **update) -> TrainingJob:
    return reference_job("p3.2xlarge", "us-east-1", steps=steps).model_copy(update=update)


def test_reference_job_costs_about_400_on_demand() -> None:
    job = reference_job("p3.2xlarge", "us-east-1")
    cost = job.hours * on_demand_price("p3.2xlarge", "us-east-1")
    assert Decimal(399) < cost <= Decimal(400)
    assert reference_job("g5.xlarge", "us-east-1").steps != job.steps
    with pytest.raises(ValueError, match="no throughput assumption"):
        reference_job("x9.nano", "us-east-1")


def test_on_demand_only_cost_is_exact(p3_market) -> None:
    job = small_job(steps=1234)
    result = simulate("on-demand", job, p3_market, seed=3)
    assert result.cost_usd == Decimal(1234) / Decimal(77) * Decimal("3.06")
    assert result.on_demand_cost_usd == result.cost_usd and result.spot_cost_usd == 0
    assert result.preemptions == result.lost_steps == 0
    assert result.hours == pytest.approx(1234 / 77)


def test_same_seed_same_run_different_seed_different_run(p3_market) -> None:
    model = PreemptionModel(scale=300)
    job = small_job()
    for policy in ("hunter", "cheapest"):
        first = simulate(policy, job, p3_market, seed=11, model=model)
        assert simulate(policy, job, p3_market, seed=11, model=model) == first
        others = {simulate(policy, job, p3_market, seed=s, model=model).cost_usd for s in range(5)}
        assert len(others) > 1
    report = run_backtest(p3_market.rows, job, seeds=range(5), model=model)
    assert run_backtest(p3_market.rows, job, seeds=range(5), model=model) == report


def test_spot_without_preemptions_costs_the_spot_price(p3_market) -> None:
    job = small_job()
    result = simulate("cheapest", job, p3_market, seed=1, model=PreemptionModel(scale=0))
    assert result.preemptions == 0 and result.spot_launches == 1 and result.zones_used == ["use1-az2"]
    assert result.cost_usd == pytest.approx(Decimal(600) / Decimal(77) * Decimal("0.918"), abs=Decimal("1e-6"))


def test_higher_hazard_loses_more_steps(p3_market) -> None:
    job = small_job()
    lost = []
    for scale in (0, 300, 1000, 3000):
        runs = [simulate("cheapest", job, p3_market, seed=s, model=PreemptionModel(scale=scale)) for s in SEEDS]
        lost.append(sum(r.lost_steps for r in runs))
        for r in runs:  # a preemption loses at most the steps since the last checkpoint
            assert r.lost_steps <= r.preemptions * (job.checkpoint_every - 1)
    assert lost[0] == 0
    assert lost == sorted(lost) and len(set(lost)) == len(lost), lost


def test_hunter_never_launches_in_an_ineligible_zone(rows, p3_market) -> None:
    model = PreemptionModel(scale=300)
    job = small_job()
    for seed in SEEDS:
        run = simulate("hunter", job, p3_market, seed=seed, model=model)
        assert "use1-az1" not in run.zones_used  # at the On-Demand price all day
        assert run.on_demand_runs >= run.preemptions  # every preemption is followed by an On-Demand box
    p4d = Market(rows, "p4d.24xlarge", "us-east-2")  # its one zone sits at the On-Demand price
    job = reference_job("p4d.24xlarge", "us-east-2", steps=3000)
    hunter = simulate("hunter", job, p4d, seed=0)
    assert hunter.spot_launches == 0 and hunter.preemptions == 0 and hunter.spot_cost_usd == 0
    assert simulate("cheapest", job, p4d, seed=0).spot_launches >= 1


def test_cooldown_moves_the_hunter_away_from_a_preempted_zone(p3_market) -> None:
    model = PreemptionModel(scale=3000)
    job = small_job()
    moved = 0
    for seed in SEEDS:
        run = simulate("hunter", job, p3_market, seed=seed, model=model)
        moved += sum(1 for a, b in zip(run.zones_used, run.zones_used[1:], strict=False) if a != b)
        cheapest = simulate("cheapest", job, p3_market, seed=seed, model=model)
        assert set(cheapest.zones_used) == {"use1-az2"}  # always the cheapest, preempted or not
    assert moved > 0


def test_preemption_model_calibration() -> None:
    model = PreemptionModel()
    assert model.base_hazard(0.30) == pytest.approx(monthly_to_hourly(0.075))
    assert model.base_hazard(0.10) == model.base_hazard(0.30)
    assert model.base_hazard(1.0) == pytest.approx(0.05) == model.base_hazard(1.2)
    ratios = [0.3 + i * 0.05 for i in range(15)]
    assert [model.base_hazard(r) for r in ratios] == sorted(model.base_hazard(r) for r in ratios)
    calm = model.hazard(price_ratio=0.3)
    assert model.hazard(price_ratio=0.3, cv=0.05) == pytest.approx(2 * calm)
    assert model.hazard(price_ratio=0.3, hours_since_preemption=0) == pytest.approx(10 * calm)
    assert model.hazard(price_ratio=0.3, hours_since_preemption=1) == pytest.approx(5.5 * calm)
    assert PreemptionModel(scale=4).hazard(price_ratio=0.3) == pytest.approx(4 * calm)


def test_headline_claim_against_the_data(rows) -> None:
    """$50 instead of $400 needs Spot at 12.5% of On-Demand; the data's floor bounds the saving."""
    job = reference_job("p3.2xlarge", "us-east-1")
    report = run_backtest(rows, job, seeds=range(3))
    floor = min(report.zones.values())
    hunter = next(s for s in report.summaries if s.policy == "hunter")
    od = next(s for s in report.summaries if s.policy == "on-demand")
    assert od.mean_cost_usd == report.on_demand_cost_usd.quantize(Decimal("0.01"))
    assert hunter.saving_vs_on_demand <= Decimal(str(1 - floor))
    assert hunter.mean_cost_usd > Decimal(50)
    assert f"best possible saving is {1 - floor:.1%}" in report.verdict and "not 87.5%" in report.verdict
    # every GPU type the catalog prices in us-east-1 and the data covers: none is near 12.5% of On-Demand
    for itype in ("p3.2xlarge", "g5.xlarge", "g5.2xlarge", "g5.12xlarge", "g5.48xlarge", "p4d.24xlarge"):
        market = Market(rows, itype, "us-east-1")
        assert min(market.discounts().values()) >= 0.25, itype


def test_percentile_is_nearest_rank() -> None:
    values = [Decimal(v) for v in range(1, 11)]
    assert percentile(values, 0.9) == Decimal(9) and percentile(values, 1.0) == Decimal(10)
    assert percentile([5], 0.9) == 5


def test_hunter_sees_the_backfilled_market(p3_market) -> None:
    found = hunt(p3_market.rows, instance_types=["p3.2xlarge"], region="us-east-1", now=p3_market.start,
                 config=HunterConfig(stale_after=None))
    assert found.chosen is not None and found.chosen.az_id == "use1-az2"
    assert p3_market.price("use1-az1", p3_market.start) == Decimal("3.06")
    assert p3_market.cheapest(p3_market.end + timedelta(days=3)) == ("use1-az2", Decimal("0.918"))


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="finops")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_table(capsys) -> None:
    code, out, _ = run_cli(["spot-backtest", "--seeds", "3", "--seed", "5"], capsys)
    assert code == 0
    assert "10065 steps on p3.2xlarge in us-east-1" in out and "3 seeds from 5" in out
    assert [line.split()[0] for line in out.splitlines()[4:7]] == ["hunter", "cheapest", "on-demand"]
    assert "Seed claim: $50 on Spot vs $400 On-Demand" in out


def test_cli_json_and_errors(capsys) -> None:
    code, out, _ = run_cli(["spot-backtest", "--seeds", "4", "--steps", "300", "--hazard-scale", "50",
                            "--instance-type", "g5.xlarge", "--json"], capsys)
    assert code == 0
    report = json.loads(out)
    assert report["job"]["steps"] == 300 and report["job"]["instance_type"] == "g5.xlarge"
    assert report["seeds"] == [0, 1, 2, 3] and report["hazard_scale"] == 50
    assert {s["policy"] for s in report["summaries"]} == {"hunter", "cheapest", "on-demand"}
    assert Decimal(report["summaries"][2]["mean_cost_usd"]) == (
        Decimal(300) / Decimal(99) * Decimal("1.006")).quantize(Decimal("0.01"))
    code, _, err = run_cli(["spot-backtest", "--region", "mars-north-1"], capsys)
    assert code == 2 and "no On-Demand price for p3.2xlarge in mars-north-1" in err
    code, _, err = run_cli(["spot-backtest", "--seeds", "0"], capsys)
    assert code == 2 and "--seeds" in err
