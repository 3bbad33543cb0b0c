"""AlertPublisher's once-per-day marker (moto): remembered only once DynamoDB has answered for it."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import botocore.exceptions
import pytest
from budgets_support import TABLES, FakeClock, budget_cell, item_of
from finops.budgets import gcra
from finops.budgets.alerts import MARKER_TTL_SECONDS, AlertPublisher

TOPIC = "arn:aws:sns:us-east-1:123456789012:budget-alerts"


@dataclass
class FakeSns:
    published: list[dict[str, Any]] = field(default_factory=list)

    def publish(self, **kw: Any) -> dict[str, Any]:
        self.published.append(kw)
        return {"MessageId": str(len(self.published))}


@dataclass
class FlakyDynamo:
    """The real (moto) client, except that the next ``failures`` PutItem calls raise ``error``."""

    client: Any
    error: Exception
    failures: int = 0
    puts: int = 0

    def put_item(self, **kw: Any) -> Any:
        self.puts += 1
        if self.failures:
            self.failures -= 1
            raise self.error
        return self.client.put_item(**kw)


THROTTLED = botocore.exceptions.ClientError(
    {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, "PutItem")
UNREACHABLE = botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:9")


def at_90_percent(clock: FakeClock) -> tuple[list[Any], dict[tuple[str, str], int]]:
    cell = budget_cell("key:vk_a", "1", "0.05")
    return [cell], {cell.key: clock.us + 9 * gcra.DAY_US // 10}  # $0.90 of $1 used today


MARKER = "alert#key:vk_a#2026-11-29#0.8"


@pytest.mark.parametrize("error", [THROTTLED, UNREACHABLE], ids=["client-error", "botocore-error"])
def test_a_marker_the_store_failed_to_claim_is_retried_on_a_later_call(ddb: Any, clock: FakeClock,
                                                                       error: Exception) -> None:
    dynamo, sns = FlakyDynamo(ddb, error, failures=1), FakeSns()
    publisher = AlertPublisher(dynamo, TABLES.budgets, (Decimal("0.8"),), sns=sns, topic_arn=TOPIC)
    cells, tats = at_90_percent(clock)

    assert publisher.check(clock.us, cells, tats) == []  # the claim failed: not sent, and not forgotten
    assert sns.published == [] and item_of(ddb, MARKER) == {}

    clock.advance(30)
    [event] = publisher.check(clock.us, cells, tats)  # the next call over the threshold claims and sends it
    assert event["scope"] == "key:vk_a" and event["threshold"] == "0.8" and event["day"] == "2026-11-29"
    assert len(sns.published) == 1
    assert int(item_of(ddb, MARKER)["expires_at"]["N"]) == int(clock()) + MARKER_TTL_SECONDS

    assert publisher.check(clock.us, cells, tats) == []  # remembered now: no second alert, no store call
    assert (len(sns.published), dynamo.puts) == (1, 2)


def test_a_marker_already_claimed_elsewhere_is_remembered_without_publishing(ddb: Any, clock: FakeClock) -> None:
    ddb.put_item(TableName=TABLES.budgets, Item={"pk": {"S": MARKER}})  # another function alerted today
    dynamo, sns = FlakyDynamo(ddb, THROTTLED), FakeSns()
    publisher = AlertPublisher(dynamo, TABLES.budgets, (Decimal("0.8"),), sns=sns, topic_arn=TOPIC)
    cells, tats = at_90_percent(clock)
    assert publisher.check(clock.us, cells, tats) == []
    assert publisher.check(clock.us, cells, tats) == []
    assert sns.published == []
    assert dynamo.puts == 1  # the conditional write's answer was remembered: asked only once
