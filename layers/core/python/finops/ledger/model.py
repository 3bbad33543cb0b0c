"""The usage ledger: one immutable DynamoDB item per call (PynamoDB model).

Keys: ``request_id`` is the table's hash key (idempotent writes). The ``by_day`` GSI is keyed by
``day_shard`` = ``YYYY-MM-DD#NN`` and ``ts``, so one day is read with N parallel queries and no scan.
The CDK table (infra/) is built from the same key names; tests/infra checks they agree.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pynamodb.attributes import (
    Attribute,
    BooleanAttribute,
    ListAttribute,
    NumberAttribute,
    UnicodeAttribute,
)
from pynamodb.constants import NUMBER
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from ..dynamo import bind as bind_model


class DecimalAttribute(Attribute[Decimal]):
    """A DynamoDB number kept as :class:`~decimal.Decimal` both ways (PynamoDB's NumberAttribute floats)."""

    attr_type = NUMBER

    def serialize(self, value: Decimal) -> str:
        if not isinstance(value, Decimal):
            raise TypeError(f"money must be Decimal, got {type(value).__name__}")
        return format(value, "f")

    def deserialize(self, value: Any) -> Decimal:
        return Decimal(value)


class ByDayIndex(GlobalSecondaryIndex["LedgerRow"]):
    class Meta:
        index_name = "by_day"
        projection = AllProjection()

    day_shard = UnicodeAttribute(hash_key=True)
    ts = UnicodeAttribute(range_key=True)


class LedgerRow(Model):
    class Meta:
        table_name = "finops-ledger"
        billing_mode = "PAY_PER_REQUEST"

    request_id = UnicodeAttribute(hash_key=True)
    ts = UnicodeAttribute()  # ISO 8601 UTC with microseconds, e.g. 2026-11-29T14:30:00.123456Z
    day = UnicodeAttribute()  # YYYY-MM-DD (UTC)
    day_shard = UnicodeAttribute()
    kind = UnicodeAttribute(default="chat")

    project_id = UnicodeAttribute()
    user_id = UnicodeAttribute()
    environment = UnicodeAttribute()
    department_id = UnicodeAttribute()
    unallocated_tags = ListAttribute(of=UnicodeAttribute, default=list)

    requested_model = UnicodeAttribute()
    model = UnicodeAttribute()
    provider = UnicodeAttribute()

    input_tokens = NumberAttribute(default=0)
    cached_input_tokens = NumberAttribute(default=0)
    cache_write_input_tokens = NumberAttribute(default=0)
    output_tokens = NumberAttribute(default=0)
    usage_source = UnicodeAttribute(default="provider")  # provider | estimated

    cost_usd = DecimalAttribute()
    price_version = UnicodeAttribute()

    status = UnicodeAttribute()  # ok | provider_error | provider_timeout | ...
    http_status = NumberAttribute()
    error_code = UnicodeAttribute(null=True)
    latency_ms = NumberAttribute()
    stream = BooleanAttribute(default=False)
    key_id = UnicodeAttribute(null=True)
    tier = UnicodeAttribute(null=True)
    reserved_usd = DecimalAttribute(default=Decimal)
    tax_usd = DecimalAttribute(default=Decimal)
    budget_bypassed = BooleanAttribute(default=False)
    counterfactual_usd = DecimalAttribute(default=Decimal)
    route_strategy = UnicodeAttribute(null=True)
    attempt = NumberAttribute(default=0)  # 0: the call's first try; n: its n-th retry or fallback
    parent_request_id = UnicodeAttribute(null=True)  # the caller's request id, shared by all its attempts

    by_day = ByDayIndex()


def bind(table_name: str) -> type[LedgerRow]:
    return bind_model(LedgerRow, table_name)
