"""Soft alerts: crossing a threshold (default 80%) of a budget publishes once per scope per UTC day.

"Once" is enforced by a conditional write of a marker item (``alert#<scope>#<day>#<threshold>``, expiring
via TTL) before publishing to SNS and EventBridge; a warm function also remembers what it already sent.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from . import gcra
from .store import Cell

logger = Logger(child=True)
MARKER_TTL_SECONDS = 3 * 86_400


class AlertPublisher:
    def __init__(self, dynamodb: Any, table: str, thresholds: tuple[Decimal, ...], *,
                 sns: Any = None, topic_arn: str | None = None, events: Any = None,
                 event_bus: str | None = None) -> None:
        self.dynamodb = dynamodb
        self.table = table
        self.thresholds = tuple(sorted(thresholds))
        self.sns, self.topic_arn = sns, topic_arn
        self.events, self.event_bus = events, event_bus
        self._sent: set[str] = set()
        self._lock = threading.Lock()

    def check(self, now_us: int, cells: list[Cell], tats: dict[tuple[str, str], int]) -> list[dict[str, Any]]:
        """Publish an alert for every budget cell at or above a threshold not yet alerted today."""
        sent = []
        day = datetime.fromtimestamp(now_us / gcra.MICROS, UTC).strftime("%Y-%m-%d")
        for cell in cells:
            budget = gcra.level(tats.get(cell.key), now_us, cell.capacity, cell.period_us)
            daily = cell.capacity * gcra.DAY_US / cell.period_us  # the soft budget (below a tax ceiling)
            for threshold in self.thresholds:
                if budget < daily * threshold:
                    break
                marker = f"alert#{cell.scope}#{day}#{threshold}"
                with self._lock:
                    if marker in self._sent:
                        continue
                event = {"scope": cell.scope, "day": day, "threshold": str(threshold),
                         "spent_usd": str(budget.quantize(Decimal("0.000001"))),
                         "daily_budget_usd": str(daily.quantize(Decimal("0.000001")))}
                claimed = self._claim(marker, now_us)
                if claimed is None:  # the marker store failed: try again on a later call
                    continue
                with self._lock:
                    self._sent.add(marker)
                if claimed:
                    self._publish(event)
                    sent.append(event)
        return sent

    def _claim(self, marker: str, now_us: int) -> bool | None:
        """True: ours to publish. False: already published today. None: could not tell."""
        try:
            self.dynamodb.put_item(
                TableName=self.table,
                Item={"pk": {"S": marker}, "expires_at": {"N": str(now_us // gcra.MICROS + MARKER_TTL_SECONDS)}},
                ConditionExpression="attribute_not_exists(pk)")
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            logger.warning("alert marker write failed", extra={"marker": marker})
            return None
        except BotoCoreError:
            logger.warning("alert marker write failed", extra={"marker": marker})
            return None

    def _publish(self, event: dict[str, Any]) -> None:
        pct = int(Decimal(event["threshold"]) * 100)
        kind, _, scope_id = event["scope"].partition(":")
        message = f"{kind.capitalize()} {scope_id} has reached {pct}% of its daily AI budget " \
                  f"(${event['spent_usd']} of ${event['daily_budget_usd']})."
        detail = {**event, "message": message}
        try:
            if self.sns is not None and self.topic_arn:
                self.sns.publish(TopicArn=self.topic_arn, Subject=f"AI budget {pct}% reached"[:100],
                                 Message=json.dumps(detail))
            if self.events is not None and self.event_bus:
                self.events.put_events(Entries=[{
                    "Source": "finops.gateway", "DetailType": "BudgetThresholdReached",
                    "Detail": json.dumps(detail), "EventBusName": self.event_bus}])
        except (ClientError, BotoCoreError):
            logger.exception("alert publish failed", extra=detail)
