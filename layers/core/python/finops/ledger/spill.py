"""``ledger_spill`` log records: the whole ledger row, logged when DynamoDB could not take it.

The gateway's logs keep them (CloudWatch Logs, retained); a subscription filter on ``ledger_spill`` delivers them
to the reconciler, which writes the rows back and settles what their calls still hold
(:meth:`finops.budgets.reconciler.Reconciler.restore`).
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from .entry import LedgerEntry

SPILL = "ledger_spill"  # the log message, and the key holding the row


def record(entry: LedgerEntry, exc: BaseException) -> dict[str, Any]:
    """The ``extra`` of a spill log record: the whole row (JSON-safe: money as decimal strings) and the error."""
    return {SPILL: json.loads(entry.model_dump_json()), "error": str(exc)}


def entry_of(message: str | Mapping[str, Any]) -> LedgerEntry | None:
    """The row in one log message (a Powertools JSON line, possibly after a text prefix), else None."""
    if isinstance(message, str):
        start = message.find("{")
        if start < 0 or SPILL not in message:
            return None
        try:
            message = json.loads(message[start:])
        except ValueError:
            return None
    if not isinstance(message, Mapping) or message.get("message") != SPILL or not isinstance(message.get(SPILL), dict):
        return None
    try:
        return LedgerEntry.model_validate(message[SPILL])
    except ValidationError:
        return None


def subscription_messages(event: Mapping[str, Any]) -> list[str]:
    """The log messages of a CloudWatch Logs subscription delivery (``{"awslogs": {"data": gzip+base64}}``)."""
    data = json.loads(gzip.decompress(base64.b64decode(event["awslogs"]["data"])))
    if data.get("messageType") != "DATA_MESSAGE":  # CONTROL_MESSAGE: the subscription's own health check
        return []
    return [str(e.get("message", "")) for e in data.get("logEvents", [])]


def entries(messages: Iterable[str | Mapping[str, Any]]) -> list[LedgerEntry]:
    """The rows spilled in ``messages`` (other log lines are skipped), each request id once."""
    rows: dict[str, LedgerEntry] = {}
    for message in messages:
        entry = entry_of(message)
        if entry is not None:
            rows.setdefault(entry.request_id, entry)
    return list(rows.values())
