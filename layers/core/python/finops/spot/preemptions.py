"""This workflow's own preemptions per zone (DynamoDB through PynamoDB), read back by the zone hunter.

Why a table and not the execution's state: preemptions of one execution must penalise the zone for the
others too (two jobs hunting the same instance type), and they must survive the execution. Items expire by
DynamoDB TTL (``expires_at``) after ``RETENTION`` (longer than the hunter's 24 h window), so the table stays
the size of one day's interruptions and nothing has to clean it.

Keys: ``az_id`` (hash) and ``at_key`` = ``<ISO UTC>#<instance type>#<job id>`` (range), so the hunter reads
one zone's recent preemptions with one Query on a key range and a repeated write of the same job is a no-op.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.models import Model

from ..dynamo import bind as bind_model
from ..ledger.entry import utc_iso
from .hunter import Preemption

TTL_ATTRIBUTE = "expires_at"
RETENTION = timedelta(days=2)


class PreemptionRow(Model):
    class Meta:
        table_name = "finops-spot-preemptions"
        billing_mode = "PAY_PER_REQUEST"

    az_id = UnicodeAttribute(hash_key=True)
    at_key = UnicodeAttribute(range_key=True)
    at = UnicodeAttribute()
    instance_type = UnicodeAttribute()
    run_id = UnicodeAttribute()
    job_id = UnicodeAttribute()
    expires_at = NumberAttribute()  # TTL, epoch seconds


class PreemptionStore:
    def __init__(self, table_name: str) -> None:
        self.model = bind_model(PreemptionRow, table_name)

    def record(self, preemption: Preemption, *, run_id: str, job_id: str) -> None:
        at = utc_iso(preemption.at)
        self.model(
            az_id=preemption.az_id,
            at_key=f"{at}#{preemption.instance_type}#{job_id}",
            at=at,
            instance_type=preemption.instance_type,
            run_id=run_id,
            job_id=job_id,
            expires_at=int((preemption.at + RETENTION).timestamp()),
        ).save()

    def recent(self, az_ids: Iterable[str], *, since: datetime) -> list[Preemption]:
        """Preemptions at or after ``since`` in the given zones (one Query per zone)."""
        start = utc_iso(since)
        found: list[Preemption] = []
        for az_id in sorted(set(az_ids)):
            for row in self.model.query(az_id, self.model.at_key >= start):
                found.append(Preemption(az_id=row.az_id, instance_type=row.instance_type,
                                        at=datetime.fromisoformat(row.at.replace("Z", "+00:00")).astimezone(UTC)))
        return found
