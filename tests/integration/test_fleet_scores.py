"""Fleet-wide share control: score histograms shared by every execution environment through the budgets table
(moto in-process), the cut-offs they give, and what a failing table costs (freshness only)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from finops.routing import Router, RoutingPolicy
from finops.routing.fleet_scores import BINS_PER_WRITE, FleetScores, hour_of
from finops.routing.score_store import PREFIX, DynamoScoreStore
from finops.routing.share_control import Cut, RecentScores, ScoreHistogram, bin_of
from moto import mock_aws
from written_scores import Fixed

TABLE = "fleet-scores-it"
T0 = 1_796_000_000.0  # 2026-11-30T00:53:20Z; any fixed instant


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Faults:
    """Fails chosen DynamoDB operations (botocore ``before-call``: nothing reaches the table) and counts calls."""

    def __init__(self, client: Any) -> None:
        self.failing: set[str] = set()
        self.fail_after: dict[str, int] = {}  # operation -> calls allowed before it fails
        self.calls: dict[str, int] = {}
        client.meta.events.register("before-call.dynamodb.*", self._before_call)

    def _before_call(self, model: Any, **_: Any) -> None:
        op = model.name
        self.calls[op] = self.calls.get(op, 0) + 1
        if op in self.failing or self.calls[op] > self.fail_after.get(op, 1 << 30):
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}},
                              op)


@pytest.fixture
def dynamodb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(TableName=TABLE, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                            BillingMode="PAY_PER_REQUEST")
        yield client


def environment(client: Any, clock: Clock, **fleet: Any) -> Router:
    """One execution environment's router: tier ``pro`` holds 30 % strong calls, after 100 scores."""
    policy = RoutingPolicy.model_validate({
        "default_strategy": "fixed", "adaptive_window": 500, "adaptive_min_samples": 100, "default_tier": "pro",
        "fleet": {"hours": 2, "flush_every": 20, "flush_seconds": 30, "refresh_seconds": 60, **fleet},
        "tiers": {"pro": {"cheap": "gpt-4o-mini", "strong": "gpt-4o", "strong_share": 0.3}}})
    return Router(policy, allows=lambda tier, model: True, strategies={"fixed": Fixed(strong=0.5, medium=0.5)},
                  score_store=DynamoScoreStore(client, TABLE), clock=clock, rng=random.Random(0))


def route(router: Router, score: float) -> Any:
    return router.route([{"role": "user", "content": repr(score)}], "auto", "pro")


def stored_total(client: Any) -> int:
    items = client.scan(TableName=TABLE)["Items"]
    return sum(int(v["N"]) for item in items for k, v in item.items() if k.startswith("b"))


# --- the histogram ---------------------------------------------------------------------------------------

def test_the_fleets_histogram_cuts_as_one_window_holding_the_same_scores() -> None:
    rng = random.Random(3)
    scores = [round(rng.betavariate(2, 5), 3) for _ in range(3000)]  # rounded: many ties within bins
    recent = RecentScores(window=len(scores))
    counts: dict[int, int] = {}
    for s in scores:
        recent.add(s)
        counts[bin_of(s)] = counts.get(bin_of(s), 0) + 1
    histogram = ScoreHistogram(counts)
    assert len(histogram) == 3000
    for share in (0.0, 0.05, 0.3, 0.5, 0.8, 0.97, 1.0):
        cut = histogram.cut_for_share(share)
        assert cut == recent.cut_for_share(share)
        draws = [i / 1000 for i in range(1000)]  # the share it sends up, over evenly spread draws
        sent = sum(cut.reaches(s, d) for s, d in zip(scores, draws * 3, strict=True))
        assert sent == pytest.approx(share * len(scores), abs=0.01 * len(scores))
    assert (bin_of(-0.5), bin_of(1.0), bin_of(7.0)) == (0, 999, 999)
    with pytest.raises(ValueError):
        ScoreHistogram().cut_for_share(0.5)
    moving = ScoreHistogram({500: 10})
    assert moving.cut_for_share(0.5) == Cut(500, 0.5)
    for _ in range(10):
        moving.add(900)  # each call's own score joins the histogram it is judged on next
    assert moving.cut_for_share(0.5) == Cut(900, 1.0)


# --- the store -------------------------------------------------------------------------------------------

def test_store_adds_atomically_and_sums_the_hours_asked(dynamodb: Any) -> None:
    store = DynamoScoreStore(dynamodb, TABLE)
    store.add("fixed#pro", "2026-12-02T13", {5: 2, 900: 1})
    store.add("fixed#pro", "2026-12-02T14", {5: 1, 10: 4})
    store.add("fixed#pro", "2026-12-02T14", {10: 1})  # a second environment, same hour: added, not replaced
    store.add("fixed#free", "2026-12-02T14", {10: 100})  # another tier: never read with pro
    assert store.read("fixed#pro", ["2026-12-02T14", "2026-12-02T13", "2026-12-02T12"]) == {5: 3, 10: 5, 900: 1}
    assert store.read("fixed#pro", ["2026-12-02T14"]) == {5: 1, 10: 5}
    item = dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": f"{PREFIX}fixed#pro#2026-12-02T14"}})["Item"]
    assert set(item) == {"pk", "b0005", "b0010", "expires_at"}
    assert int(item["expires_at"]["N"]) == 1_796_220_000 + 2 * 86_400  # 2026-12-02T14:00Z + 2 days


# --- environments sharing the fleet's scores --------------------------------------------------------------

def test_a_new_environment_routes_on_the_fleets_cut_off_from_its_first_call(dynamodb: Any) -> None:
    clock = Clock()
    rng = random.Random(0)
    warm = environment(dynamodb, clock)
    first = [route(warm, rng.random()) for _ in range(400)]
    assert "from the fleet's recent calls" in first[-1].reason
    assert stored_total(dynamodb) == 400  # flushed every 20 scores

    clock.now += 5
    cold = environment(dynamodb, clock)  # a new execution environment: no scores of its own
    decisions = [route(cold, rng.random()) for _ in range(100)]
    assert "from the fleet's recent calls" in decisions[0].reason
    share = sum(d.model_class == "strong" for d in decisions) / len(decisions)
    assert share == pytest.approx(0.3, abs=0.1)  # the validation cut-off (0.5) would send about 50 %
    clock.now += 3600  # the next UTC hour
    assert "from the fleet's" in route(environment(dynamodb, clock), 0.9).reason  # hours=2: this one and the last
    assert "from" not in route(environment(dynamodb, clock, hours=1), 0.9).reason  # this hour's only: too few


def test_histograms_are_re_read_only_after_refresh_seconds(dynamodb: Any) -> None:
    clock = Clock()
    faults = Faults(dynamodb)
    router = environment(dynamodb, clock, flush_every=1000, flush_seconds=10_000)
    for i in range(50):
        route(router, i / 50)
    assert faults.calls.get("BatchGetItem") == 1 and "UpdateItem" not in faults.calls
    clock.now += 60
    route(router, 0.5)
    assert faults.calls["BatchGetItem"] == 2
    # nothing written yet: the re-read histogram still counts this environment's own 50 + 1 scores
    histogram = router.fleet.histogram("fixed#pro") if router.fleet else None
    assert histogram is not None and len(histogram) == 51


def test_a_failing_table_loses_no_score_and_counts_none_twice(dynamodb: Any) -> None:
    clock = Clock()
    faults = Faults(dynamodb)
    router = environment(dynamodb, clock)
    faults.failing = {"UpdateItem", "BatchGetItem"}
    decisions = [route(router, i / 150) for i in range(150)]  # every write and read fails
    assert all(d.model == "gpt-4o" or d.model == "gpt-4o-mini" for d in decisions)
    assert "from recent calls" in decisions[-1].reason  # this environment's own scores instead
    assert stored_total(dynamodb) == 0
    assert faults.calls["UpdateItem"] == 150 // 20  # a failed write is tried again at the next flush, no sooner
    assert faults.calls["BatchGetItem"] == 1  # and a failed read after refresh_seconds
    faults.failing = set()
    clock.now += 31
    route(router, 0.5)  # the next write sends everything kept
    assert stored_total(dynamodb) == 151
    # an item that is not what the store wrote (a string count): read as a failure, not a failed call
    pk = {"S": f"{PREFIX}fixed#pro#{hour_of(clock.now)}"}
    dynamodb.put_item(TableName=TABLE, Item={"pk": pk, "b0001": {"S": "many"}})
    clock.now += 60
    assert route(router, 0.5).model in ("gpt-4o", "gpt-4o-mini")
    dynamodb.put_item(TableName=TABLE, Item={"pk": pk, "b5000": {"N": "7"}, "b0002": {"N": "-9"}})  # no such bin
    clock.now += 60
    assert route(router, 0.5).model in ("gpt-4o", "gpt-4o-mini")


def test_a_write_failing_halfway_resends_only_what_was_not_written(dynamodb: Any) -> None:
    clock = Clock()
    faults = Faults(dynamodb)
    fleet = FleetScores(DynamoScoreStore(dynamodb, TABLE), flush_every=10_000, flush_seconds=10_000, clock=clock)
    scores = [b / 1000 + 0.0005 for b in range(0, 1000, 3)]  # 334 distinct bins: two writes
    assert len(scores) > BINS_PER_WRITE
    for s in scores:
        fleet.record("fixed#pro", s)
    faults.fail_after = {"UpdateItem": 1}  # the first part is written, the second fails
    assert fleet.flush("fixed#pro") is False
    assert stored_total(dynamodb) == BINS_PER_WRITE
    faults.fail_after = {}
    assert fleet.flush("fixed#pro") is True
    counts = DynamoScoreStore(dynamodb, TABLE).read("fixed#pro", [hour_of(clock.now)])
    assert counts == {bin_of(s): 1 for s in scores}
