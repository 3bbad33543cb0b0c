"""The zone hunter: score every (zone, instance type) of a region and choose the quietest cheap one.

Since 2017 Spot prices move slowly, so 24 h volatility alone says little about preemption. The hunter combines
five signals per zone, each computed from the rows of the last ``window`` (24 h) at or before ``now``:

1. **Price level against On-Demand** (``price_ratio`` = Spot / On-Demand). The saving is ``1 - ratio``.
   A zone at or near the On-Demand price has no spare capacity (AWS raises the Spot price towards On-Demand
   as spare capacity runs out; in the 2022-05-31 data p3.2xlarge in use1-az1 sits at exactly $3.06, the
   On-Demand price, while its siblings sit at $0.918): ``ratio >= max_price_ratio`` (0.9) is ineligible.
2. **Volatility**: the time-weighted coefficient of variation of the price over the window (``volatility_cv``)
   and the number of price changes (``price_changes``). Each adds a capped penalty (``cv / cv_reference`` and
   ``changes / changes_reference``, each at most 1); above ``max_cv`` or ``max_changes`` the zone is
   ineligible (a price that jumps around is capacity being fought over).
3. **Placement score** (GetSpotPlacementScores, 1..10, when the caller could get it): ``(score - 10) / 9``
   times its weight, so 10 costs nothing and 1 costs the full weight; below ``min_placement_score`` the zone
   is ineligible. Without a score the signal is neutral (and the reason says so).
4. **This workflow's own recent preemptions** of the same instance type in the zone: ineligible for
   ``cooldown`` (30 min) after the latest one, then a penalty of ``preemption_weight`` per preemption that
   halves every ``preemption_half_life`` (2 h) after its cooldown; preemptions older than the window are
   forgotten.
5. **Staleness**. DescribeSpotPriceHistory "also returns the last price change before the start time, which
   is the effective price as of the start time" (EC2 API reference), so a zone with no row *in* the window
   still has a current price: it is the quietest kind of zone, scored as calm (its reason says since when the
   price holds). A zone whose latest row is older than ``stale_after`` (14 days; None turns the check off)
   is ineligible: the history is stale or the zone is no longer offered. Rows after ``now`` are ignored
   (a zone only known from the future is not scored).

``score = weight_price * (1 - ratio) - volatility penalties + placement term - preemption penalty``, higher
is better, rounded to 6 places. Every zone gets a score and a reason. ``chosen`` is the best eligible zone;
ties go to the lower Spot price, then the earlier instance type in ``instance_types``, then the AZ ID, so the
same input always gives the same answer. When no zone is eligible ``chosen`` is None and ``reason`` says
why: the workflow then runs On-Demand. The instance types listed are treated as interchangeable for the job
(scored by their discount, not by their speed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from pydantic import BaseModel, Field, field_validator

from .market import LINUX_DESCRIPTIONS, SpotPrice, group_by_zone, on_demand_price, zone_stats


class Preemption(BaseModel, frozen=True):
    az_id: str
    instance_type: str
    at: datetime

    @field_validator("at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("preemption time must be timezone-aware")
        return value


class HunterConfig(BaseModel, frozen=True):
    window: timedelta = timedelta(hours=24)
    stale_after: timedelta | None = timedelta(days=14)
    product_descriptions: tuple[str, ...] = LINUX_DESCRIPTIONS
    # 1. price level
    weight_price: float = 1.0
    max_price_ratio: float = Field(default=0.9, gt=0)
    # 2. volatility
    weight_cv: float = 0.3
    cv_reference: float = Field(default=0.05, gt=0)
    max_cv: float = 0.25
    weight_changes: float = 0.2
    changes_reference: int = Field(default=12, gt=0)
    max_changes: int = 48
    # 3. placement score
    weight_placement: float = 0.3
    min_placement_score: int = Field(default=3, ge=1, le=10)
    # 4. own preemptions
    cooldown: timedelta = timedelta(minutes=30)
    preemption_weight: float = 0.4
    preemption_half_life: timedelta = timedelta(hours=2)


class ZoneScore(BaseModel, frozen=True):
    az_id: str
    availability_zone: str | None
    instance_type: str
    spot_price_usd: Decimal
    on_demand_usd: Decimal
    price_ratio: float
    volatility_cv: float
    price_changes: int
    placement_score: int | None
    recent_preemptions: int
    score: float
    eligible: bool
    reason: str
    last_price_at: datetime | None = None


class HuntResult(BaseModel, frozen=True):
    chosen: ZoneScore | None
    scores: list[ZoneScore]
    reason: str


def _pct(ratio: float) -> str:
    return f"{ratio * 100:.0f}%"


def _usd(amount: Decimal) -> str:
    return f"${amount.normalize():f}"


def _preemption_penalty(times: Sequence[datetime], now: datetime, config: HunterConfig) -> float:
    half_life = config.preemption_half_life.total_seconds()
    total = 0.0
    for at in times:
        after_cooldown = max((now - at - config.cooldown).total_seconds(), 0.0)
        total += config.preemption_weight * 0.5 ** (after_cooldown / half_life)
    return total


def _score_zone(az_id: str, instance_type: str, rows: Sequence[SpotPrice], *, on_demand: Decimal, now: datetime,
                preempted_at: Sequence[datetime], placement: int | None, placement_known: bool,
                config: HunterConfig) -> ZoneScore | None:
    stats = zone_stats(rows, now, config.window)
    if stats is None:  # only rows after `now`: the zone is not known yet
        return None
    ratio = float(stats.price / on_demand)
    recent = sorted(min(t, now) for t in preempted_at if t >= now - config.window)  # clock skew: future = now
    volatility = (config.weight_cv * min(stats.cv / config.cv_reference, 1.0)
                  + config.weight_changes * min(stats.changes / config.changes_reference, 1.0))
    placement_term = config.weight_placement * (placement - 10) / 9 if placement is not None else 0.0
    score = config.weight_price * (1 - ratio) - volatility + placement_term - _preemption_penalty(recent, now, config)

    blockers: list[str] = []  # each "<label>: <detail>"; the label is what the no-eligible summary counts
    if config.stale_after is not None and now - stats.last_ts > config.stale_after:
        blockers.append(f"stale: latest price row {stats.last_ts:%Y-%m-%dT%H:%MZ} is older than {config.stale_after}")
    if ratio >= config.max_price_ratio:
        blockers.append(f"at on-demand price: {_usd(stats.price)} = {_pct(ratio)} of On-Demand {_usd(on_demand)}, "
                        "no spare capacity")
    if stats.cv > config.max_cv:
        blockers.append(f"volatile: price CV {stats.cv:.3f} > {config.max_cv}")
    if stats.changes > config.max_changes:
        blockers.append(f"volatile: {stats.changes} price changes in the window > {config.max_changes}")
    if placement is not None and placement < config.min_placement_score:
        blockers.append(f"low placement score: {placement}/10 < {config.min_placement_score}, capacity unlikely")
    if recent and now - recent[-1] < config.cooldown:
        until = recent[-1] + config.cooldown
        minutes = int((now - recent[-1]).total_seconds() // 60)
        blockers.append(f"cooling down: preempted here {minutes} min ago, eligible again at {until:%H:%MZ}")

    facts = [f"{_usd(stats.price)}/h = {_pct(ratio)} of On-Demand {_usd(on_demand)}",
             f"CV {stats.cv:.3f}, {stats.changes} price changes in {stats.in_window} rows" if stats.in_window
             else f"no price change in the window (price in effect since {stats.last_ts:%Y-%m-%dT%H:%MZ})",
             f"placement score {placement}/10" if placement is not None
             else ("no placement score returned" if placement_known else "placement score not available"),
             f"own preemptions in the window: {len(recent)}" if recent else "no own preemptions"]
    reason = "; ".join(blockers) + " | " + "; ".join(facts) if blockers else "; ".join(facts)
    availability_zone = next((r.availability_zone for r in reversed(rows) if r.availability_zone), None)
    return ZoneScore(az_id=az_id, availability_zone=availability_zone, instance_type=instance_type,
                     spot_price_usd=stats.price, on_demand_usd=on_demand, price_ratio=round(ratio, 6),
                     volatility_cv=round(stats.cv, 6), price_changes=stats.changes, placement_score=placement,
                     recent_preemptions=len(recent), score=round(score, 6), eligible=not blockers, reason=reason,
                     last_price_at=stats.last_ts)


def hunt(history: Iterable[SpotPrice], *, instance_types: Sequence[str], region: str, now: datetime,
         preemptions: Sequence[Preemption] = (), placement_scores: Mapping[str, int] | None = None,
         config: HunterConfig = HunterConfig()) -> HuntResult:  # noqa: B008 (a frozen model: safe default)
    """Score every zone of ``region`` offering one of ``instance_types`` at ``now``; choose the best eligible."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    order = {t: i for i, t in enumerate(instance_types)}
    zones = group_by_zone(history, instance_types=instance_types, region=region,
                          product_descriptions=config.product_descriptions)
    scores: list[ZoneScore] = []
    for (az_id, instance_type), rows in zones.items():
        placement = placement_scores.get(az_id) if placement_scores is not None else None
        zone = _score_zone(az_id, instance_type, rows, on_demand=on_demand_price(instance_type, region), now=now,
                           preempted_at=[p.at for p in preemptions
                                         if p.az_id == az_id and p.instance_type == instance_type],
                           placement=placement, placement_known=placement_scores is not None, config=config)
        if zone is not None:
            scores.append(zone)

    def rank(z: ZoneScore) -> tuple[bool, float, Decimal, int, str]:
        return (not z.eligible, -z.score, z.spot_price_usd, order[z.instance_type], z.az_id)

    scores.sort(key=rank)
    types = ", ".join(instance_types)
    if not scores:
        return HuntResult(chosen=None, scores=[], reason=f"no Spot price history for {types} in {region} "
                          f"in the {config.window} before {now:%Y-%m-%dT%H:%MZ}: run On-Demand")
    eligible = [z for z in scores if z.eligible]
    if not eligible:
        blocked: dict[str, int] = {}
        for z in scores:
            key = z.reason.split(" | ", 1)[0].split(":", 1)[0]
            blocked[key] = blocked.get(key, 0) + 1
        summary = ", ".join(f"{n} {why}" for why, n in sorted(blocked.items()))
        return HuntResult(chosen=None, scores=scores,
                          reason=f"no eligible zone among {len(scores)} ({summary}): run On-Demand")
    best = eligible[0]
    return HuntResult(chosen=best, scores=scores, reason=(
        f"chose {best.az_id} {best.instance_type} at {_usd(best.spot_price_usd)}/h "
        f"({_pct(best.price_ratio)} of On-Demand), score {best.score:.3f}; "
        f"{len(eligible)} of {len(scores)} zones eligible"))
