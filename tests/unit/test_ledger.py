from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from finops import aws
from finops.ledger import model as ledger_model
from finops.ledger.entry import LedgerEntry, shard_of, utc_iso
from finops.ledger.model import DecimalAttribute
from finops.ledger.repository import LedgerRepository
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

TABLE = "finops-ledger-unit"


def entry(**kw: object) -> LedgerEntry:
    base: dict[str, object] = dict(
        request_id="req-1", ts=datetime(2026, 11, 29, 14, 30, 0, 123456, tzinfo=UTC), project_id="p",
        user_id="u", environment="production", department_id="d", requested_model="gpt-4o-2024-08-06",
        model="gpt-4o", provider="openai", input_tokens=10, output_tokens=5, cost_usd=Decimal("0.000075"),
        price_version="2026-11-01", status="ok", http_status=200, latency_ms=12)
    base.update(kw)
    return LedgerEntry(**base)


# --- DecimalAttribute ----------------------------------------------------------------------------------


@settings(deadline=None, max_examples=100)
@given(st.decimals(allow_nan=False, allow_infinity=False, places=12, min_value=Decimal("-1e12"),
                   max_value=Decimal("1e12")))
def test_decimal_attribute_round_trips_exactly(value: Decimal) -> None:
    attr = DecimalAttribute()
    text = attr.serialize(value)
    assert "E" not in text.upper()
    back = attr.deserialize(text)
    assert isinstance(back, Decimal)
    assert back == value


@pytest.mark.parametrize(("value", "text"), [
    (Decimal("0.00001845"), "0.00001845"),
    (Decimal("1E-10"), "0.0000000001"),
    (Decimal("1E+3"), "1000"),
    (Decimal("2.50"), "2.50"),
])
def test_decimal_attribute_writes_plain_notation(value: Decimal, text: str) -> None:
    assert DecimalAttribute().serialize(value) == text


@pytest.mark.parametrize("value", [0.1, 1.0, 3, True, "0.1"])
def test_decimal_attribute_refuses_non_decimals(value: object) -> None:
    with pytest.raises(TypeError, match="Decimal"):
        DecimalAttribute().serialize(value)  # type: ignore[arg-type]


# --- LedgerEntry ---------------------------------------------------------------------------------------


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(ValidationError, match="timezone-aware"):
        entry(ts=datetime(2026, 11, 29, 14, 30))


def test_aware_timestamps_are_normalised_to_utc() -> None:
    tokyo = timezone(timedelta(hours=9))
    e = entry(ts=datetime(2026, 11, 30, 8, 0, tzinfo=tokyo))
    assert e.ts == datetime(2026, 11, 29, 23, 0, tzinfo=UTC)
    assert e.ts.utcoffset() == timedelta(0)
    assert e.day == "2026-11-29"


def test_day_shard_format() -> None:
    e = entry()
    shard = e.day_shard(8)
    assert re.fullmatch(r"2026-11-29#0[0-7]", shard)
    assert shard == f"2026-11-29#{shard_of('req-1', 8):02d}"
    assert e.day_shard(1) == "2026-11-29#00"


@settings(deadline=None, max_examples=100)
@given(st.text(min_size=1, max_size=128), st.integers(1, 99))
def test_shard_is_stable_and_in_range(request_id: str, shards: int) -> None:
    assert 0 <= shard_of(request_id, shards) < shards
    assert shard_of(request_id, shards) == shard_of(request_id, shards)


def test_shards_spread_requests() -> None:
    used = {shard_of(f"req-{i}", 8) for i in range(200)}
    assert used == set(range(8))


def test_utc_iso() -> None:
    assert utc_iso(datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)) == "2026-01-02T03:04:05.000006Z"
    plus2 = timezone(timedelta(hours=2))
    assert utc_iso(datetime(2026, 1, 2, 3, 4, 5, tzinfo=plus2)) == "2026-01-02T01:04:05.000000Z"


def test_entry_field_bounds() -> None:
    with pytest.raises(ValidationError):
        entry(request_id="")
    with pytest.raises(ValidationError):
        entry(input_tokens=-1)
    with pytest.raises(ValidationError):
        entry(latency_ms=-5)


# --- Repository against moto ---------------------------------------------------------------------------


@pytest.fixture
def repo(moto_aws: str) -> Iterator[LedgerRepository]:
    aws.client.cache_clear()
    ledger_model.LedgerRow._connection = None
    table = f"{TABLE}-{moto_aws}"
    ledger_model.bind(table).create_table(wait=True)
    try:
        yield LedgerRepository(table, 8)
    finally:
        aws.client("dynamodb").delete_table(TableName=table)
        ledger_model.LedgerRow._connection = None
        aws.client.cache_clear()


def test_append_is_idempotent_on_request_id(repo: LedgerRepository) -> None:
    assert repo.append(entry()) is True
    assert repo.append(entry(cost_usd=Decimal("99"), status="other")) is False
    stored = repo.get("req-1")
    assert stored is not None
    assert stored.cost_usd == Decimal("0.000075")
    assert stored.status == "ok"


def test_row_round_trips_through_dynamodb(repo: LedgerRepository) -> None:
    original = entry(cost_usd=Decimal("0.000000123456789"), unallocated_tags=("X-User-ID",),
                     usage_source="estimated", stream=True, error_code=None, cached_input_tokens=3,
                     cache_write_input_tokens=4)
    repo.append(original)
    back = repo.get("req-1")
    assert back == original
    table = repo.model.Meta.table_name
    raw = aws.client("dynamodb").get_item(TableName=table, Key={"request_id": {"S": "req-1"}})["Item"]
    assert raw["cost_usd"] == {"N": "0.000000123456789"}
    assert raw["ts"] == {"S": "2026-11-29T14:30:00.123456Z"}
    assert raw["day"] == {"S": "2026-11-29"}
    assert raw["day_shard"] == {"S": original.day_shard(8)}
    assert raw["cache_write_input_tokens"] == {"N": "4"}


def test_get_missing_returns_none(repo: LedgerRepository) -> None:
    assert repo.get("nope") is None


def test_day_query_uses_the_index_not_a_scan(repo: LedgerRepository, monkeypatch: pytest.MonkeyPatch) -> None:
    day1 = datetime(2026, 11, 29, 0, 0, 1, tzinfo=UTC)
    ids = [f"req-{i}" for i in range(20)]
    for i, rid in enumerate(ids):
        repo.append(entry(request_id=rid, ts=day1 + timedelta(minutes=i)))
    repo.append(entry(request_id="other-day", ts=datetime(2026, 11, 30, 0, 0, tzinfo=UTC)))
    repo.append(entry(request_id="day-before", ts=datetime(2026, 11, 28, 23, 59, 59, tzinfo=UTC)))

    def no_scan(*_: object, **__: object) -> None:
        raise AssertionError("the ledger must not be scanned")

    monkeypatch.setattr(repo.model, "scan", no_scan)
    got = list(repo.day("2026-11-29"))
    assert sorted(e.request_id for e in got) == sorted(ids)
    assert all(e.day == "2026-11-29" for e in got)
    assert [e.request_id for e in repo.day("2026-11-30")] == ["other-day"]
    assert list(repo.day("2026-12-01")) == []


def test_a_day_read_with_concurrent_readers_has_the_same_rows(repo: LedgerRepository) -> None:
    day1 = datetime(2026, 11, 29, 0, 0, 1, tzinfo=UTC)
    for i in range(60):
        repo.append(entry(request_id=f"req-{i}", ts=day1 + timedelta(seconds=i), output_tokens=i))
    sequential = list(repo.day("2026-11-29"))
    assert len({shard_of(e.request_id, repo.shards) for e in sequential}) == repo.shards  # every shard has rows
    for readers in (2, 8, 64):
        concurrent = list(repo.day("2026-11-29", readers=readers))
        assert sorted(concurrent, key=lambda e: e.request_id) == sorted(sequential, key=lambda e: e.request_id)
    # Each shard alone comes back in ts order, as the sequential read shows.
    for shard in range(repo.shards):
        in_shard = [e.ts for e in sequential if shard_of(e.request_id, repo.shards) == shard]
        assert in_shard == sorted(in_shard)


def test_day_reads_and_gets_return_the_rows_written(repo: LedgerRepository) -> None:
    """Rows are read back through the plain client (a day's read and a single get alike): every field comes out
    as written, for rows with every field set, with nulls, and for a row written before newer attributes existed
    (those take the entry's defaults)."""
    day1 = datetime(2026, 11, 29, 9, 30, 0, 123456, tzinfo=UTC)
    full = entry(request_id="full", ts=day1, input_tokens=1200, cached_input_tokens=200, cache_write_input_tokens=64,
                 output_tokens=321, cost_usd=Decimal("0.0012345678"), tax_usd=Decimal("0.5"), stream=True,
                 reserved_usd=Decimal("0.02"), counterfactual_usd=Decimal("0.004"), route_strategy="classifier",
                 attempt=2, parent_request_id="call-1", unallocated_tags=("X-User-ID",), budget_bypassed=True,
                 error_code="provider_timeout", key_id="vk_0123456789ab", tier="pro", latency_ms=875, kind="chat")
    bare = entry(request_id="bare", ts=day1 + timedelta(seconds=1))
    for e in (full, bare):
        repo.append(e)
    old = repo._row(entry(request_id="old", ts=day1 + timedelta(seconds=2), output_tokens=9)).serialize()
    for newer in ("cache_write_input_tokens", "counterfactual_usd", "attempt", "kind"):
        old.pop(newer)
    aws.client("dynamodb").put_item(TableName=repo.model.Meta.table_name, Item=old)

    raw = {e.request_id: e for e in repo.day("2026-11-29")}
    assert set(raw) == {"full", "bare", "old"}
    for rid in raw:
        assert raw[rid] == repo.get(rid), rid
    assert raw["full"] == full and raw["bare"] == bare
    assert (raw["old"].cache_write_input_tokens, raw["old"].counterfactual_usd, raw["old"].kind) == (0, 0, "chat")


def test_get_reads_numbers_as_ints(repo: LedgerRepository) -> None:
    repo.append(entry(input_tokens=7, output_tokens=9, http_status=502, latency_ms=1500))
    assert repo.get("missing") is None
    e = repo.get("req-1")
    assert e is not None
    assert (e.input_tokens, e.output_tokens, e.http_status, e.latency_ms) == (7, 9, 502, 1500)
    assert all(isinstance(v, int) for v in (e.input_tokens, e.output_tokens, e.http_status, e.latency_ms))
