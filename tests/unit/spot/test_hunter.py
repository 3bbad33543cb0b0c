"""The zone hunter: every zone scored with a reason, the best eligible one chosen, deterministically."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from finops.spot.hunter import HunterConfig, Preemption, hunt
from finops.spot.market import SpotPrice, bundled_price_file, load_price_file
from hypothesis import given, settings
from hypothesis import strategies as st

NOW = datetime(2022, 5, 31, 23, 59, 59, tzinfo=UTC)
P3 = "p3.2xlarge"  # On-Demand $3.06 in us-east-1


@pytest.fixture(scope="module")
def real_rows() -> list[SpotPrice]:
    return load_price_file(bundled_price_file())


def row(az_id: str, price: str, at: datetime, instance_type: str = P3) -> SpotPrice:
    return SpotPrice(az_id=az_id, instance_type=instance_type, price_usd=Decimal(price), ts=at)


def calm(az_id: str, price: str = "0.918", instance_type: str = P3) -> list[SpotPrice]:
    return [row(az_id, price, NOW - timedelta(hours=5), instance_type)]


def by_zone(result) -> dict:
    return {z.az_id: z for z in result.scores}


def test_real_data_zone_at_on_demand_price_is_ineligible(real_rows) -> None:
    result = hunt(real_rows, instance_types=[P3], region="us-east-1", now=NOW)
    zones = by_zone(result)
    assert set(zones) == {"use1-az1", "use1-az2", "use1-az5", "use1-az6"}
    assert not zones["use1-az1"].eligible
    assert zones["use1-az1"].price_ratio == 1.0
    assert zones["use1-az1"].reason.startswith("at on-demand price") and "no spare capacity" in zones["use1-az1"].reason
    assert zones["use1-az1"].spot_price_usd == Decimal("3.06") and zones["use1-az1"].on_demand_usd == Decimal("3.06")
    assert result.chosen is not None and result.chosen.az_id == "use1-az2"  # tie at $0.918: lowest AZ ID
    assert result.chosen.price_ratio == pytest.approx(0.3) and result.chosen.eligible
    assert "chose use1-az2" in result.reason


def test_real_data_p4d_in_us_east_2_has_no_eligible_zone(real_rows) -> None:
    result = hunt(real_rows, instance_types=["p4d.24xlarge"], region="us-east-2", now=NOW)
    assert result.chosen is None
    assert result.reason == "no eligible zone among 1 (1 at on-demand price): run On-Demand"


def test_every_zone_has_a_score_and_reason_and_chosen_is_the_best(real_rows) -> None:
    result = hunt(real_rows, instance_types=["g5.xlarge"], region="us-east-1", now=NOW)
    assert len(result.scores) == 4 and all(z.reason for z in result.scores)
    assert result.chosen == max((z for z in result.scores if z.eligible), key=lambda z: z.score)
    assert result.chosen.az_id == "use1-az5"  # $0.3382, the cheapest of four calm zones
    assert [z.score for z in result.scores] == sorted((z.score for z in result.scores), reverse=True)


def test_volatile_zone_loses_to_a_calm_one_at_the_same_price() -> None:
    jumpy = [row("use1-az2", price, NOW - timedelta(hours=h)) for h, price in
             [(10, "0.918"), (8, "1.2"), (6, "0.918"), (4, "1.1"), (2, "0.918")]]
    result = hunt([*jumpy, *calm("use1-az5")], instance_types=[P3], region="us-east-1", now=NOW)
    zones = by_zone(result)
    assert zones["use1-az2"].price_changes == 4 and zones["use1-az2"].volatility_cv > 0
    assert zones["use1-az2"].score < zones["use1-az5"].score
    assert result.chosen is not None and result.chosen.az_id == "use1-az5"
    strict = hunt(jumpy, instance_types=[P3], region="us-east-1", now=NOW, config=HunterConfig(max_cv=0.05))
    assert strict.chosen is None and strict.scores[0].reason.startswith("volatile: price CV")
    counting = hunt(jumpy, instance_types=[P3], region="us-east-1", now=NOW, config=HunterConfig(max_changes=3))
    assert counting.chosen is None and "4 price changes" in counting.scores[0].reason


def test_preempted_zone_cools_down_then_decays() -> None:
    history = [*calm("use1-az2"), *calm("use1-az5", "0.95")]
    hit = Preemption(az_id="use1-az2", instance_type=P3, at=NOW - timedelta(minutes=10))
    cooling = hunt(history, instance_types=[P3], region="us-east-1", now=NOW, preemptions=[hit])
    zone = by_zone(cooling)["use1-az2"]
    assert not zone.eligible and zone.reason.startswith("cooling down") and zone.recent_preemptions == 1
    assert cooling.chosen is not None and cooling.chosen.az_id == "use1-az5"

    def score_after(minutes: int) -> float:
        at = NOW - timedelta(minutes=minutes)
        result = hunt(history, instance_types=[P3], region="us-east-1", now=NOW,
                      preemptions=[hit.model_copy(update={"at": at})])
        assert by_zone(result)["use1-az2"].eligible
        return by_zone(result)["use1-az2"].score

    fresh = hunt(history, instance_types=[P3], region="us-east-1", now=NOW)
    assert by_zone(fresh)["use1-az2"].score == pytest.approx(0.7)
    assert score_after(31) < score_after(120) < score_after(600) < 0.7  # eligible after 30 min, penalty decays
    assert score_after(25 * 60) == pytest.approx(0.7)  # older than the window: forgotten
    skewed = hunt(history, instance_types=[P3], region="us-east-1", now=NOW,
                  preemptions=[hit.model_copy(update={"at": NOW + timedelta(seconds=30)})])
    assert by_zone(skewed)["use1-az2"].reason.startswith("cooling down: preempted here 0 min ago")
    other_type = Preemption(az_id="use1-az2", instance_type="g5.xlarge", at=NOW - timedelta(minutes=1))
    assert hunt(history, instance_types=[P3], region="us-east-1", now=NOW,
                preemptions=[other_type]).chosen.az_id == "use1-az2"


def test_placement_score() -> None:
    history = [*calm("use1-az2"), *calm("use1-az5"), *calm("use1-az6")]
    result = hunt(history, instance_types=[P3], region="us-east-1", now=NOW,
                  placement_scores={"use1-az2": 2, "use1-az5": 7, "use1-az6": 10})
    zones = by_zone(result)
    assert not zones["use1-az2"].eligible and zones["use1-az2"].reason.startswith("low placement score")
    assert zones["use1-az6"].score == pytest.approx(0.7)
    assert zones["use1-az5"].score == pytest.approx(0.7 - 0.3 * 3 / 9)
    assert result.chosen is not None and result.chosen.az_id == "use1-az6"
    missing = hunt(history, instance_types=[P3], region="us-east-1", now=NOW, placement_scores={})
    assert all(z.placement_score is None and "no placement score returned" in z.reason for z in missing.scores)


def test_a_price_older_than_the_window_is_the_price_in_effect() -> None:
    """The API returns the last change before the window as the effective price: a quiet zone, not a stale one."""
    quiet = [row("use1-az2", "0.918", NOW - timedelta(days=3))]
    jumpy = [row("use1-az5", "0.918", NOW - timedelta(hours=3)), row("use1-az5", "0.9", NOW - timedelta(hours=2))]
    result = hunt([*quiet, *jumpy], instance_types=[P3], region="us-east-1", now=NOW)
    zone = by_zone(result)["use1-az2"]
    assert zone.eligible and zone.price_changes == 0 and zone.volatility_cv == 0
    assert "no price change in the window (price in effect since 2022-05-28T23:59Z)" in zone.reason
    assert result.chosen is not None and result.chosen.az_id == "use1-az2"


def test_stale_zone_is_ineligible() -> None:
    old = [row("use1-az2", "0.5", NOW - timedelta(days=15))]
    result = hunt([*old, *calm("use1-az5")], instance_types=[P3], region="us-east-1", now=NOW)
    assert by_zone(result)["use1-az2"].reason.startswith("stale: latest price row 2022-05-16T23:59Z")
    assert result.chosen is not None and result.chosen.az_id == "use1-az5"
    unchecked = hunt(old, instance_types=[P3], region="us-east-1", now=NOW, config=HunterConfig(stale_after=None))
    assert unchecked.chosen is not None and unchecked.chosen.az_id == "use1-az2"


def test_no_history_means_on_demand() -> None:
    result = hunt([], instance_types=[P3], region="us-east-1", now=NOW)
    assert result.chosen is None and result.scores == [] and result.reason.endswith("run On-Demand")
    future = [row("use1-az2", "0.9", NOW + timedelta(minutes=1))]
    assert hunt(future, instance_types=[P3], region="us-east-1", now=NOW).scores == []


def test_other_regions_types_and_products_are_ignored() -> None:
    rows = [*calm("usw2-az1", "0.1"), *calm("use1-az2", "0.1", "g5.xlarge"), *calm("use1-az5"),
            SpotPrice(az_id="use1-az6", instance_type=P3, product_description="Windows", price_usd=Decimal("0.1"),
                      ts=NOW - timedelta(hours=1))]
    result = hunt(rows, instance_types=[P3], region="us-east-1", now=NOW)
    assert [z.az_id for z in result.scores] == ["use1-az5"]


def test_ties_follow_instance_type_order() -> None:
    rows = [*calm("use1-az2", "0.3018", "g5.xlarge"), *calm("use1-az5", "0.918")]  # both 30% of On-Demand
    first = hunt(rows, instance_types=["g5.xlarge", P3], region="us-east-1", now=NOW)
    assert first.chosen is not None and first.chosen.instance_type == "g5.xlarge"  # also the lower price
    rows = [*calm("use1-az2", "0.918"), *calm("use1-az1", "0.918")]
    assert hunt(rows, instance_types=[P3], region="us-east-1", now=NOW).chosen.az_id == "use1-az1"


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        hunt([], instance_types=[P3], region="us-east-1", now=NOW.replace(tzinfo=None))


def test_input_order_does_not_matter(real_rows) -> None:
    shuffled = list(real_rows)
    random.Random(7).shuffle(shuffled)
    kwargs = {"instance_types": [P3, "g5.xlarge", "g5.2xlarge"], "region": "us-east-1", "now": NOW}
    assert hunt(shuffled, **kwargs) == hunt(real_rows, **kwargs)


ZONES = ["use1-az1", "use1-az2", "use1-az4", "use1-az5"]


@settings(max_examples=150, deadline=None)
@given(
    prices=st.lists(st.tuples(st.sampled_from(ZONES), st.sampled_from([P3, "g5.xlarge"]),
                              st.decimals(min_value=Decimal("0.05"), max_value=Decimal("3.5"), places=3),
                              st.integers(min_value=0, max_value=40 * 60)), max_size=25),
    hits=st.lists(st.tuples(st.sampled_from(ZONES), st.integers(min_value=0, max_value=600)), max_size=4),
    placement=st.dictionaries(st.sampled_from(ZONES), st.integers(min_value=1, max_value=10)),
)
def test_never_chooses_an_ineligible_zone(prices, hits, placement) -> None:
    history = [row(az, str(price), NOW - timedelta(minutes=ago), itype) for az, itype, price, ago in prices]
    preemptions = [Preemption(az_id=az, instance_type=P3, at=NOW - timedelta(minutes=ago)) for az, ago in hits]
    result = hunt(history, instance_types=[P3, "g5.xlarge"], region="us-east-1", now=NOW,
                  preemptions=preemptions, placement_scores=placement or None)
    eligible = [z for z in result.scores if z.eligible]
    assert all(z.reason for z in result.scores)
    if result.chosen is None:
        assert not eligible and result.reason.endswith("run On-Demand")
    else:
        assert result.chosen.eligible and result.chosen.score == max(z.score for z in eligible)
        assert result.chosen.price_ratio < HunterConfig().max_price_ratio
        recent = [p for p in preemptions if p.az_id == result.chosen.az_id and result.chosen.instance_type == P3
                  and NOW - p.at < HunterConfig().cooldown]
        assert not recent
