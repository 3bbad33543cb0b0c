"""The fleet's routing scores in the budgets table (``fleet_scores.ScoreStore``).

One item per (strategy, tier, UTC hour), ``pk = route#<strategy>#<tier>#<YYYY-MM-DDTHH>``: attribute
``b0000`` .. ``b0999`` counts the scores in that bin, added with ``ADD`` (atomic, so every environment writes
without reading first). The items expire through the table's TTL a day after their hour is out of every
window. The bucket engine never reads them: no ``r_`` reservation attribute, no bucket cell.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ..budgets.table import TTL_ATTRIBUTE
from .fleet_scores import HOUR_FORMAT

PREFIX = "route#"
RETAIN_SECONDS = 2 * 86_400  # after the hour began: past any window, then one day more


def pk_of(key: str, hour: str) -> str:
    return f"{PREFIX}{key}#{hour}"


def _attr(b: int) -> str:
    """The attribute counting bin ``b``: ``b0000`` .. ``b0999``."""
    return f"b{b:04d}"


def _bin(attr: str) -> int | None:
    """The bin an attribute counts (``_attr``'s inverse), None for any other attribute."""
    return int(attr[1:]) if len(attr) == 5 and attr[0] == "b" and attr[1:].isdigit() else None


class DynamoScoreStore:
    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    def add(self, key: str, hour: str, counts: Mapping[int, int]) -> None:
        names = {"#ttl": TTL_ATTRIBUTE}
        values: dict[str, Any] = {":ttl": {"N": str(int(_epoch(hour)) + RETAIN_SECONDS)}}
        adds = []
        for b, n in sorted(counts.items()):
            names[f"#b{b}"] = _attr(b)
            values[f":b{b}"] = {"N": str(int(n))}
            adds.append(f"#b{b} :b{b}")
        if not adds:
            return
        self.client.update_item(
            TableName=self.table, Key={"pk": {"S": pk_of(key, hour)}},
            UpdateExpression="ADD " + ", ".join(adds) + " SET #ttl = :ttl",
            ExpressionAttributeNames=names, ExpressionAttributeValues=values)

    def read(self, key: str, hours: list[str]) -> Counter[int]:
        """The summed counts of these hours' items (missing items count nothing). Keys DynamoDB leaves
        unprocessed are asked once more, then left out: a histogram a little short is still a histogram."""
        counts: Counter[int] = Counter()
        request: dict[str, Any] = {self.table: {"Keys": [{"pk": {"S": pk_of(key, h)}} for h in hours]}}
        for _ in range(2):
            answer = self.client.batch_get_item(RequestItems=request)
            for item in answer.get("Responses", {}).get(self.table, []):
                for attr, value in item.items():
                    if (b := _bin(attr)) is not None:
                        counts[b] += int(value["N"])
            request = answer.get("UnprocessedKeys") or {}
            if not request:
                break
        return counts


def _epoch(hour: str) -> float:
    return datetime.strptime(hour, HOUR_FORMAT).replace(tzinfo=UTC).timestamp()
