"""``finops keys ...`` / ``finops reconcile``, the reconciler handler, and the local stack's seeded keys."""

from __future__ import annotations

import json
import stat
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from budgets_it_support import BudgetStack, FakeClock, Tables
from finops import cli
from finops.budgets.governor import BudgetGovernor
from finops.budgets.policy import load_policy
from finops.budgets.store import BucketStore
from finops.gateway import factory
from finops.keys.service import KeyRecord
from finops.ledger import spill
from finops.ledger.entry import LedgerEntry
from finops.local import stack
from finops.tags import CostTags


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert cli.main(list(argv)) == 0
    return capsys.readouterr().out


def test_keys_cli_create_list_rotate_revoke(bstack: BudgetStack, capsys: pytest.CaptureFixture[str]) -> None:
    created = json.loads(run(capsys, "keys", "create", "--name", "ci bot", "--tier", "free",
                             "--project", "checkout-web", "--project", "search", "--environment", "production",
                             "--user", "alice"))
    key, key_id = created["key"], created["key_id"]
    assert key.startswith("sk-fin-")
    assert (created["tier"], created["projects"], created["environments"], created["user_id"]) == (
        "free", ["checkout-web", "search"], ["production"], "alice")
    assert key not in json.dumps(bstack.ddb.scan(TableName=bstack.tables.keys)["Items"])

    table = run(capsys, "keys", "list")
    assert key_id in table and "ci bot" in table and "checkout-web,search" in table
    assert key not in table
    listed = json.loads(run(capsys, "keys", "list", "--json"))
    assert [k["key_id"] for k in listed] == [key_id]

    rotated = json.loads(run(capsys, "keys", "rotate", key_id))
    assert rotated["key_id"] != key_id and rotated["key"] != key
    assert rotated["projects"] == ["checkout-web", "search"] and rotated["user_id"] == "alice"
    assert [k["key_id"] for k in json.loads(run(capsys, "keys", "list", "--json"))] == [rotated["key_id"]]

    revoked = json.loads(run(capsys, "keys", "revoke", rotated["key_id"]))
    assert revoked["status"] == "revoked"
    assert json.loads(run(capsys, "keys", "list", "--json")) == []
    everything = json.loads(run(capsys, "keys", "list", "--json", "--all"))
    assert {k["key_id"]: k["status"] for k in everything} == {key_id: "revoked", rotated["key_id"]: "revoked"}


def test_keys_cli_refuses_an_unknown_tier(bstack: BudgetStack, capsys: pytest.CaptureFixture[str]) -> None:
    from finops.errors import InvalidRequest

    with pytest.raises(InvalidRequest):
        cli.main(["keys", "create", "--name", "x", "--tier", "platinum"])
    assert bstack.ddb.scan(TableName=bstack.tables.keys)["Items"] == []


def _crashed_call(bstack: BudgetStack, request_id: str) -> tuple[BucketStore, int]:
    """A call admitted 2000 s ago (real time) whose function died: its reservation expired 1100 s ago."""
    clock = FakeClock(time.time() - 2000)
    store = BucketStore(bstack.ddb, bstack.tables.budgets, ledger_table=bstack.tables.ledger, clock=clock)
    key = KeyRecord(key_id="vk_cli", name="t", tier="free", projects=("*",), environments=("*",),
                    created_at="2026-11-29T14:30:00.000000Z")
    tags = CostTags(project_id="checkout-web", user_id="alice", environment="production", department_id="x")
    BudgetGovernor(load_policy(), store).admit(request_id, key, tags, "gpt-4o-mini", Decimal("0.05"), "h",
                                               reservation={"model": "gpt-4o-mini", "key_id": "vk_cli"})
    tat = bstack.tat("bucket#key#vk_cli")
    assert tat is not None
    return store, tat


def test_reconcile_cli_books_an_expired_reservation(bstack: BudgetStack, capsys: pytest.CaptureFixture[str]) -> None:
    _, tat = _crashed_call(bstack, "req-cli")
    summary = json.loads(run(capsys, "reconcile"))
    assert summary["booked"] >= 1 and summary["released"] == 0
    row = bstack.entry("req-cli")
    assert row.status == "reconciled" and row.cost_usd == Decimal("0.05")
    assert bstack.tat("bucket#key#vk_cli") == tat
    assert json.loads(run(capsys, "reconcile")) == {"booked": 0, "released": 0, "already_settled": 0}


def test_reconciler_handler_releases_with_the_release_policy(bstack: BudgetStack) -> None:
    policy = json.loads(json.dumps(load_policy().model_dump(mode="json")))
    policy["reconcile_policy"] = "release"
    bstack.use_policy(policy)
    _, tat = _crashed_call(bstack, "req-handler")
    result = bstack.invoke("reconciler", {"version": "0", "source": "aws.scheduler", "detail": {}})
    assert result["released"] >= 1 and result["booked"] == 0
    row = bstack.entry("req-handler")
    assert row.status == "reconciled" and row.cost_usd == 0 and row.error_code == "released_unsettled"
    refunded = bstack.tat("bucket#key#vk_cli")
    assert refunded is not None and refunded < tat
    assert bstack.invoke("reconciler", {}) == {"booked": 0, "released": 0, "already_settled": 0}


def test_reconcile_cli_restores_spilled_rows_from_log_lines(bstack: BudgetStack, capsys: pytest.CaptureFixture[str],
                                                           tmp_path: Path) -> None:
    """``finops reconcile --spill FILE``: the manual path for ledger_spill records (as `aws logs filter-log-events`
    prints them, other lines mixed in): the row is written and its reservation settled with the row's cost."""
    _, tat = _crashed_call(bstack, "req-spill")
    spilled = LedgerEntry(
        request_id="req-spill", ts=datetime.now(UTC), project_id="checkout-web", user_id="alice",
        environment="production", department_id="x", requested_model="gpt-4o-mini", model="gpt-4o-mini",
        provider="openai", input_tokens=100, output_tokens=20, cost_usd=Decimal("0.01"), reserved_usd=Decimal("0.05"),
        price_version="2026-11-01", status="ok", http_status=200, key_id="vk_cli", tier="free")
    line = json.dumps({"level": "ERROR", "message": "ledger_spill", **spill.record(spilled, RuntimeError("throttled"))})
    log = tmp_path / "spills.log"
    log.write_text(f'{{"level":"INFO","message":"request served"}}\n2026-12-02T07:00:00.000Z\tabc\t{line}\n')

    holding = [i["pk"]["S"] for i in bstack.ddb.scan(TableName=bstack.tables.budgets)["Items"] if "r_req-spill" in i]
    assert len(holding) >= 2  # the key's budget and the breaker's spend, at least

    assert json.loads(run(capsys, "reconcile", "--spill", str(log))) == {
        "restored": 1, "present": 0, "settled": len(holding)}
    row = bstack.entry("req-spill")
    assert (row.status, row.cost_usd, row.input_tokens) == ("ok", Decimal("0.01"), 100)
    refunded = bstack.tat("bucket#key#vk_cli")
    assert refunded is not None and refunded < tat  # 0.04 of the 0.05 reserved came back
    assert not [i for i in bstack.ddb.scan(TableName=bstack.tables.budgets)["Items"] if "r_req-spill" in i]
    # Replaying is a no-op, and the scheduled run finds nothing left to book.
    assert json.loads(run(capsys, "reconcile", "--spill", str(log))) == {"restored": 0, "present": 1, "settled": 0}
    assert bstack.tat("bucket#key#vk_cli") == refunded
    assert json.loads(run(capsys, "reconcile")) == {"booked": 0, "released": 0, "already_settled": 0}


# --- the local stack's keys -------------------------------------------------------------------------------------------


def test_local_stack_seeds_one_key_per_tier_and_reuses_them(aws_env: Tables, tmp_path: Path) -> None:
    factory.reset()
    stack.create_tables()
    path = tmp_path / "local" / "keys.json"
    keys = stack.seed_keys(path)
    assert set(keys) == {"free", "pro", "enterprise"}
    assert json.loads(path.read_text()) == keys
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    service = factory.keys(factory.get_settings())
    for tier, key in keys.items():
        assert service.authenticate(f"Bearer {key}").tier == tier

    assert stack.seed_keys(path) == keys  # reused, not re-created
    assert len(service.list(include_revoked=True)) == 3

    # a key that no longer works makes it seed a fresh set
    service.revoke(service.authenticate(f"Bearer {keys['pro']}").key_id)
    again = stack.seed_keys(path)
    assert set(again) == {"free", "pro", "enterprise"} and again["pro"] != keys["pro"]
    assert json.loads(path.read_text()) == again
    assert service.authenticate(f"Bearer {again['pro']}").tier == "pro"
