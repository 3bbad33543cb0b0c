"""``finops spot-backtest``: a checkpointed training job replayed on real Spot prices under three policies.

Prices: the real rows of one instance type in one region (``data/spot``, 2022-05-31, ~5.6 h). Each zone's
first row is taken to have been in effect since the file's first timestamp (the API reports the price in
effect at a window's start the same way); after a zone's last row its price holds (post-2017 Spot prices move
slowly, and the data says nothing later). Each seed starts the job at a uniformly drawn moment of the file's
span, so the price changes inside the file fall at different points of the job.

Preemptions: ``preemption_model.PreemptionModel`` (a model calibrated on AWS's published interruption
bands, not data). A Spot launch draws its exponential "hazard budget" from a numpy ``Generator`` seeded per
(seed, policy); the hazard is evaluated per checkpoint interval from the zone's price ratio, 24 h volatility
and the time since the last preemption there.

The job: ``steps`` steps at ``steps_per_hour``, a checkpoint every ``checkpoint_every`` steps. A preemption
loses the steps since the last checkpoint (no checkpoint on the two-minute notice: conservative); every start
after the first costs ``restart_overhead`` of billed time without progress (boot, image pull, checkpoint load).

Policies:

- ``on-demand``: the whole job on On-Demand; cost = steps / steps_per_hour x On-Demand price, exactly.
- ``cheapest``: always the zone with the lowest current Spot price (ties: AZ ID), re-picked straight after a
  preemption.
- ``hunter``: the workflow's behaviour: ``hunter.hunt`` chooses a zone; after a preemption the job runs
  On-Demand for ``on_demand_box`` (10 min of training after the restart, checkpointed at the end), then hunts
  again with the preempted zone in its cooldown. When no zone is eligible it runs an On-Demand box of
  ``no_zone_box`` and hunts again. The price history is held for the job's length by assumption, so the
  hunter's staleness check is off here.

Money is Decimal; durations are float hours, billed per instance-second (rounded to 1e-9 h).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal, TypeVar

import numpy as np
from pydantic import BaseModel, Field

from .hunter import HunterConfig, Preemption, hunt
from .market import SpotPrice, group_by_zone, on_demand_price, zone_stats
from .preemption_model import PreemptionModel

Policy = Literal["hunter", "cheapest", "on-demand"]
POLICIES: tuple[Policy, ...] = ("hunter", "cheapest", "on-demand")
WINDOW = timedelta(hours=24)
_N = TypeVar("_N", Decimal, float, int)

# Throughput of the reference job (QLoRA fine-tune of Llama-3-8B, 4-bit base + LoRA adapters, sequence length
# 2048, 16 sequences = 32,768 tokens per optimizer step) in steps per hour. Rough public-benchmark-level
# figures, not measurements: V100 ~700 tokens/s, A10G ~900, T4 ~350, 8xA100 (p4d) ~25,000 with FSDP. They only
# set the job's length and the wall-clock time of a checkpoint interval; the saving in % barely depends on them.
STEPS_PER_HOUR: dict[str, int] = {
    "p3.2xlarge": 77, "p3.8xlarge": 290, "p3.16xlarge": 560, "p4d.24xlarge": 2750,
    "g5.xlarge": 99, "g5.2xlarge": 99, "g5.12xlarge": 360, "g5.48xlarge": 700,
    "g4dn.xlarge": 38, "g4dn.2xlarge": 38,
}
HEADLINE_SPOT_USD = Decimal(50)
HEADLINE_ON_DEMAND_USD = Decimal(400)


class TrainingJob(BaseModel, frozen=True):
    name: str = "Llama-3-8B QLoRA fine-tune"
    instance_type: str
    region: str
    steps: int = Field(gt=0)
    steps_per_hour: int = Field(gt=0)
    checkpoint_every: int = Field(default=50, gt=0)
    restart_overhead: timedelta = timedelta(minutes=5)
    on_demand_box: timedelta = timedelta(minutes=10)
    no_zone_box: timedelta = timedelta(minutes=60)

    @property
    def hours(self) -> Decimal:
        """Training hours without interruptions."""
        return Decimal(self.steps) / Decimal(self.steps_per_hour)


def reference_job(instance_type: str = "p3.2xlarge", region: str = "us-east-1", *, steps: int | None = None,
                  target_on_demand_usd: Decimal = HEADLINE_ON_DEMAND_USD) -> TrainingJob:
    """The Llama-3-8B fine-tune, sized (unless ``steps`` is given) so that On-Demand costs about $400."""
    if instance_type not in STEPS_PER_HOUR:
        raise ValueError(f"no throughput assumption for {instance_type}; known: {', '.join(STEPS_PER_HOUR)}")
    rate = STEPS_PER_HOUR[instance_type]
    if steps is None:
        steps = max(int(target_on_demand_usd / on_demand_price(instance_type, region) * rate), 1)
    return TrainingJob(instance_type=instance_type, region=region, steps=steps, steps_per_hour=rate)


class Market:
    """The price path of one instance type in one region, as the backtest replays it."""

    def __init__(self, history: Iterable[SpotPrice], instance_type: str, region: str) -> None:
        rows = list(history)
        if not rows:
            raise ValueError("empty price history")
        self.instance_type, self.region = instance_type, region
        self.start = min(r.ts for r in rows)
        self.end = max(r.ts for r in rows)
        self.on_demand = on_demand_price(instance_type, region)
        self.zones: dict[str, list[SpotPrice]] = {}
        for (az_id, _), zone_rows in group_by_zone(rows, instance_types=[instance_type], region=region).items():
            first = zone_rows[0]
            backfill = [first.model_copy(update={"ts": self.start})] if first.ts > self.start else []
            self.zones[az_id] = backfill + zone_rows
        self.rows = [r for zone_rows in self.zones.values() for r in zone_rows]

    @property
    def span_hours(self) -> float:
        return (self.end - self.start).total_seconds() / 3600

    def price(self, az_id: str, now: datetime) -> Decimal | None:
        known = [r.price_usd for r in self.zones[az_id] if r.ts <= now]
        return known[-1] if known else None

    def cheapest(self, now: datetime) -> tuple[str, Decimal] | None:
        offers = [(price, az_id) for az_id in self.zones if (price := self.price(az_id, now)) is not None]
        return (min(offers)[1], min(offers)[0]) if offers else None

    def discounts(self) -> dict[str, float]:
        """Each zone's lowest Spot price in the data as a fraction of On-Demand."""
        return {az: float(min(r.price_usd for r in rows) / self.on_demand) for az, rows in self.zones.items()}


class RunResult(BaseModel, frozen=True):
    policy: Policy
    seed: int
    cost_usd: Decimal
    spot_cost_usd: Decimal
    on_demand_cost_usd: Decimal
    hours: float  # wall clock, start to last step
    spot_hours: float
    on_demand_hours: float
    lost_steps: int
    preemptions: int
    spot_launches: int
    on_demand_runs: int
    zones_used: list[str]


def _billed(hours: float, price: Decimal) -> Decimal:
    return Decimal(str(round(hours, 9))) * price


class _Run:
    def __init__(self, policy: Policy, seed: int, job: TrainingJob, market: Market, model: PreemptionModel,
                 hunter_config: HunterConfig, start: datetime) -> None:
        self.policy, self.seed, self.job, self.market, self.model = policy, seed, job, market, model
        self.hunter_config = hunter_config
        self.rng = np.random.default_rng([seed, POLICIES.index(policy)])
        self.start = start
        self.clock = 0.0  # hours since start
        self.step = 0  # steps safely checkpointed (or done)
        self.spot_cost = self.od_cost = Decimal(0)
        self.spot_hours = self.od_hours = 0.0
        self.lost_steps = self.preemptions = self.spot_launches = self.od_runs = 0
        self.started = False
        self.preempted: list[Preemption] = []
        self.zones_used: list[str] = []

    @property
    def now(self) -> datetime:
        return self.start + timedelta(hours=self.clock)

    def _overhead(self) -> float:
        hours = self.job.restart_overhead.total_seconds() / 3600 if self.started else 0.0
        self.started = True
        return hours

    def _hazard(self, az_id: str) -> float:
        now = self.now
        stats = zone_stats(self.market.zones[az_id], now, WINDOW)
        assert stats is not None  # a zone is only launched in once it has a price
        last = max((p.at for p in self.preempted if p.az_id == az_id), default=None)
        since = (now - last).total_seconds() / 3600 if last is not None else None
        return self.model.hazard(price_ratio=float(stats.price / self.market.on_demand), cv=stats.cv,
                                 changes=stats.changes, hours_since_preemption=since)

    def _segments(self, overhead: float) -> Iterable[tuple[float, int]]:
        """(hours, steps) pieces of a run from the current step: the restart overhead, then checkpoint intervals."""
        if overhead > 0:
            yield overhead, 0
        step = self.step
        while step < self.job.steps:
            target = min((step // self.job.checkpoint_every + 1) * self.job.checkpoint_every, self.job.steps)
            yield (target - step) / self.job.steps_per_hour, target - step
            step = target

    def run_spot(self, az_id: str) -> bool:
        """Train on Spot in ``az_id`` until done (True) or preempted (False)."""
        self.spot_launches += 1
        self.zones_used.append(az_id)
        budget = float(self.rng.exponential())
        used = 0.0
        for hours, steps in self._segments(self._overhead()):
            rate = self._hazard(az_id)
            price = self.market.price(az_id, self.now)
            assert price is not None
            if rate > 0 and used + rate * hours >= budget:
                cut = (budget - used) / rate
                self.spot_cost += _billed(cut, price)
                self.spot_hours += cut
                self.lost_steps += min(int(cut * self.job.steps_per_hour), steps)
                self.clock += cut
                self.preemptions += 1
                self.preempted.append(Preemption(az_id=az_id, instance_type=self.job.instance_type, at=self.now))
                return False
            used += rate * hours
            self.spot_cost += _billed(hours, price)
            self.spot_hours += hours
            self.clock += hours
            self.step += steps
        return True

    def run_on_demand(self, box: timedelta | None) -> None:
        """Train On-Demand for a time box (checkpointing at its end) or, without a box, to the end."""
        self.od_runs += 1
        overhead = self._overhead()
        remaining = self.job.steps - self.step
        steps = remaining if box is None else min(
            remaining, math.floor(box.total_seconds() / 3600 * self.job.steps_per_hour))
        hours = overhead + steps / self.job.steps_per_hour
        self.od_cost += _billed(hours, self.market.on_demand)
        self.od_hours += hours
        self.clock += hours
        self.step += steps

    def result(self) -> RunResult:
        return RunResult(policy=self.policy, seed=self.seed, cost_usd=self.spot_cost + self.od_cost,
                         spot_cost_usd=self.spot_cost, on_demand_cost_usd=self.od_cost, hours=self.clock,
                         spot_hours=self.spot_hours, on_demand_hours=self.od_hours, lost_steps=self.lost_steps,
                         preemptions=self.preemptions, spot_launches=self.spot_launches, on_demand_runs=self.od_runs,
                         zones_used=self.zones_used)


def simulate(policy: Policy, job: TrainingJob, market: Market, *, seed: int,
             model: PreemptionModel = PreemptionModel(),  # noqa: B008 (frozen models: safe defaults)
             hunter_config: HunterConfig = HunterConfig(stale_after=None),  # noqa: B008
             max_attempts: int = 10_000) -> RunResult:
    """One run of ``job`` under ``policy``; the same arguments always give the same result."""
    offset = float(np.random.default_rng(seed).uniform(0.0, market.span_hours))
    run = _Run(policy, seed, job, market, model, hunter_config, market.start + timedelta(hours=offset))
    if policy == "on-demand":
        run.od_runs = 1
        hours = job.hours
        run.od_cost = hours * market.on_demand
        run.od_hours = run.clock = float(hours)
        run.step = job.steps
        return run.result()
    for _ in range(max_attempts):
        if run.step >= job.steps:
            break
        if policy == "cheapest":
            offer = market.cheapest(run.now)
            if offer is None:
                run.run_on_demand(job.no_zone_box)
            else:
                run.run_spot(offer[0])
            continue
        found = hunt(market.rows, instance_types=[job.instance_type], region=job.region, now=run.now,
                     preemptions=run.preempted, config=hunter_config)
        if found.chosen is None:
            run.run_on_demand(job.no_zone_box)
        elif not run.run_spot(found.chosen.az_id):
            run.run_on_demand(job.on_demand_box)
    else:
        raise RuntimeError(f"{policy} did not finish {job.steps} steps in {max_attempts} attempts")
    return run.result()


def percentile(values: Sequence[_N], q: float) -> _N:
    """Nearest-rank percentile (an element of ``values``, so Decimals stay Decimal)."""
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


class PolicySummary(BaseModel, frozen=True):
    policy: Policy
    runs: int
    mean_cost_usd: Decimal
    p90_cost_usd: Decimal
    saving_vs_on_demand: Decimal  # 1 - mean cost / On-Demand cost
    mean_lost_steps: float
    p90_lost_steps: int
    mean_preemptions: float
    p90_preemptions: int
    mean_hours: float
    p90_hours: float
    mean_on_demand_share: Decimal  # part of the cost paid at On-Demand rates


class BacktestReport(BaseModel, frozen=True):
    job: TrainingJob
    on_demand_usd_per_hour: Decimal
    on_demand_cost_usd: Decimal
    zones: dict[str, float]  # AZ ID -> lowest Spot/On-Demand ratio in the data
    data_start: datetime
    data_end: datetime
    seeds: list[int]
    hazard_scale: float
    summaries: list[PolicySummary]
    verdict: str


def _summary(policy: Policy, runs: Sequence[RunResult], on_demand_cost: Decimal) -> PolicySummary:
    n = Decimal(len(runs))
    costs = [r.cost_usd for r in runs]
    mean_cost = sum(costs, Decimal(0)) / n
    od_share = sum((r.on_demand_cost_usd / r.cost_usd for r in runs if r.cost_usd), Decimal(0)) / n
    return PolicySummary(
        policy=policy, runs=len(runs), mean_cost_usd=mean_cost.quantize(Decimal("0.01")),
        p90_cost_usd=percentile(costs, 0.9).quantize(Decimal("0.01")),
        saving_vs_on_demand=(1 - mean_cost / on_demand_cost).quantize(Decimal("0.0001")) + 0,  # + 0: no "-0"
        mean_lost_steps=sum(r.lost_steps for r in runs) / len(runs),
        p90_lost_steps=percentile([r.lost_steps for r in runs], 0.9),
        mean_preemptions=sum(r.preemptions for r in runs) / len(runs),
        p90_preemptions=percentile([r.preemptions for r in runs], 0.9),
        mean_hours=sum(r.hours for r in runs) / len(runs), p90_hours=percentile([r.hours for r in runs], 0.9),
        mean_on_demand_share=od_share.quantize(Decimal("0.0001")))


def _verdict(job: TrainingJob, market: Market, on_demand_cost: Decimal, summaries: Sequence[PolicySummary]) -> str:
    hunter = next(s for s in summaries if s.policy == "hunter")
    claimed = 1 - HEADLINE_SPOT_USD / HEADLINE_ON_DEMAND_USD
    floor = min(market.discounts().values(), default=1.0)
    return (f"Seed claim: ${HEADLINE_SPOT_USD} on Spot vs ${HEADLINE_ON_DEMAND_USD} On-Demand, a {claimed:.1%} "
            f"saving, needs Spot at {1 - claimed:.1%} of On-Demand all the time. On {job.instance_type} in "
            f"{job.region} the cheapest Spot price of the day is {floor:.1%} of On-Demand, so even with no "
            f"preemptions the best possible saving is {1 - floor:.1%}. The hunter's mean cost is "
            f"${hunter.mean_cost_usd} (p90 ${hunter.p90_cost_usd}) against ${on_demand_cost.quantize(Decimal('0.01'))}"
            f" On-Demand: a {hunter.saving_vs_on_demand:.1%} saving, not {claimed:.1%}.")


def run_backtest(history: Iterable[SpotPrice], job: TrainingJob, *, seeds: Sequence[int],
                 model: PreemptionModel = PreemptionModel(),  # noqa: B008
                 hunter_config: HunterConfig = HunterConfig(stale_after=None),  # noqa: B008
                 policies: Sequence[Policy] = POLICIES) -> BacktestReport:
    market = Market(history, job.instance_type, job.region)
    if not market.zones:
        raise ValueError(f"no Spot price rows for {job.instance_type} in {job.region}")
    on_demand_cost = job.hours * market.on_demand
    summaries = [_summary(policy, [simulate(policy, job, market, seed=s, model=model, hunter_config=hunter_config)
                                   for s in seeds], on_demand_cost) for policy in policies]
    verdict = _verdict(job, market, on_demand_cost, summaries) if "hunter" in policies else ""
    return BacktestReport(job=job, on_demand_usd_per_hour=market.on_demand, on_demand_cost_usd=on_demand_cost,
                          zones=market.discounts(), data_start=market.start, data_end=market.end, seeds=list(seeds),
                          hazard_scale=model.scale, summaries=summaries, verdict=verdict)
