"""The ledger table: rows written through PynamoDB (idempotent on ``request_id``), read back with the plain client
straight into :class:`LedgerEntry` (:func:`entry_of_item`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from aws_lambda_powertools import Logger
from pynamodb.exceptions import PutError, PynamoDBException

from .. import aws
from .concurrent import merged
from .entry import LedgerEntry, utc_iso
from .model import LedgerRow, bind
from .spill import SPILL
from .spill import record as spill_record

logger = Logger(child=True)


class LedgerRepository:
    def __init__(self, table_name: str, shards: int) -> None:
        self.model = bind(table_name)
        self.shards = shards

    def _row(self, entry: LedgerEntry) -> LedgerRow:
        data = entry.model_dump()
        data["ts"] = utc_iso(entry.ts)
        data["unallocated_tags"] = list(entry.unallocated_tags)
        return self.model(day=entry.day, day_shard=entry.day_shard(self.shards), **data)

    def item(self, entry: LedgerEntry) -> dict:
        """The row as a DynamoDB item (for a transaction that writes it with other items)."""
        return self._row(entry).serialize()

    def append(self, entry: LedgerEntry) -> bool:
        """Write ``entry`` once. Returns False if a row with this request id already exists.

        If DynamoDB cannot take the row after botocore's retries, the complete row is logged as a
        ``ledger_spill`` record (CloudWatch Logs, so it is not lost); the error is re-raised.
        """
        row = self._row(entry)
        try:
            row.save(condition=self.model.request_id.does_not_exist())
            return True
        except PutError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                return False
            self.spill(entry, exc)
            raise
        except PynamoDBException as exc:
            self.spill(entry, exc)
            raise

    def spill(self, entry: LedgerEntry, exc: Exception) -> None:
        """Log the whole row (``ledger_spill``); :mod:`.spill` reads it back for the reconciler."""
        logger.error(SPILL, extra=spill_record(entry, exc))

    def get(self, request_id: str) -> LedgerEntry | None:
        """One row, read strongly consistent: the reconciler asks right after a write found the row there."""
        item = aws.client("dynamodb").get_item(TableName=self.model.Meta.table_name, ConsistentRead=True,
                                               Key={"request_id": {"S": request_id}}).get("Item")
        return None if item is None else entry_of_item(item)

    def day(self, day: str, readers: int = 1) -> Iterator[LedgerEntry]:
        """Every row of one UTC day through the ``by_day`` index (no scan): shard by shard (each in ``ts``
        order), or with ``readers`` > 1 that many shards read at once, rows in arrival order.

        Read with the plain client, each item straight into a :class:`LedgerEntry` (:func:`entry_of_item`):
        PynamoDB's model objects cost ~6x more per row (``make bench``), most of a large day's read."""
        def shard_rows(shard: int) -> Callable[[], Iterator[LedgerEntry]]:
            return lambda: map(entry_of_item, self._index_items(f"{day}#{shard:02d}"))

        sources = [shard_rows(shard) for shard in range(self.shards)]
        if readers <= 1 or self.shards == 1:
            for source in sources:
                yield from source()
        else:
            yield from merged(sources, min(readers, self.shards))

    def _index_items(self, day_shard: str) -> Iterator[dict[str, Any]]:
        """The raw items of one ``by_day`` partition, page by page."""
        paginator = aws.client("dynamodb").get_paginator("query")
        for page in paginator.paginate(
                TableName=self.model.Meta.table_name, IndexName=self.model.by_day.Meta.index_name,
                KeyConditionExpression="#k = :k", ExpressionAttributeNames={"#k": "day_shard"},
                ExpressionAttributeValues={":k": {"S": day_shard}}):
            yield from page.get("Items", [])


def _plain(value: Mapping[str, Any]) -> Any:
    """A DynamoDB attribute value as JSON-ish Python; numbers stay strings (pydantic parses them exactly)."""
    ((kind, raw),) = value.items()
    if kind in ("S", "N", "BOOL"):
        return raw
    if kind == "NULL":
        return None
    if kind == "L":
        return [_plain(v) for v in raw]
    if kind in ("SS", "NS"):
        return list(raw)
    raise ValueError(f"unexpected DynamoDB type {kind} in a ledger item")


_INDEX_ONLY = frozenset({"day", "day_shard"})


def entry_of_item(item: Mapping[str, Mapping[str, Any]]) -> LedgerEntry:
    """A ledger item as the low-level client returns it -> :class:`LedgerEntry` (the one way rows are read back;
    attributes an older row lacks take the entry's defaults)."""
    data = {name: _plain(value) for name, value in item.items() if name not in _INDEX_ONLY}
    data["unallocated_tags"] = tuple(data.get("unallocated_tags") or ())
    return LedgerEntry.model_validate(data)
