"""Virtual keys: randomness, hash-only storage, list/rotate/revoke (KeyService over moto)."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from budgets_it_support import BudgetStack
from finops.errors import InvalidRequest, NotFound, Unauthorized
from finops.keys.service import KEY_PREFIX, KeySpec, hash_key


def raw_items(stack: BudgetStack) -> list[dict]:
    return stack.ddb.scan(TableName=stack.tables.keys)["Items"]


def test_keys_carry_at_least_128_random_bits(bstack: BudgetStack) -> None:
    service = bstack.key_service()
    keys = [service.create(KeySpec(name=f"k{i}", tier="free"))[0] for i in range(20)]
    assert len(set(keys)) == 20
    for key in keys:
        assert key.startswith(KEY_PREFIX)
        secret = key.removeprefix(KEY_PREFIX)
        raw = base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))
        assert len(raw) * 8 >= 128
    # no shared structure beyond the prefix: every position varies across keys
    bodies = [k.removeprefix(KEY_PREFIX) for k in keys]
    assert all(len({b[i] for b in bodies}) > 1 for i in range(16))


def test_only_the_sha256_of_a_key_is_stored(bstack: BudgetStack) -> None:
    key, record = bstack.key_service().create(KeySpec(name="stored", tier="pro", projects=["checkout-web"]))
    items = raw_items(bstack)
    assert len(items) == 1
    dumped = json.dumps(items)
    assert key not in dumped
    assert key.removeprefix(KEY_PREFIX) not in dumped
    assert items[0]["key_hash"]["S"] == hashlib.sha256(key.encode()).hexdigest() == hash_key(key)
    assert items[0]["key_id"]["S"] == record.key_id
    assert items[0]["tier"]["S"] == "pro"


def test_list_rotate_revoke(bstack: BudgetStack) -> None:
    service = bstack.key_service(cache_ttl_seconds=0)
    old_key, old = service.create(KeySpec(name="svc", tier="pro", projects=["checkout-web"],
                                          environments=["production"], user_id="alice"))
    _, other = service.create(KeySpec(name="other", tier="free"))
    assert [r.key_id for r in service.list()] == [old.key_id, other.key_id]

    new_key, new = service.rotate(old.key_id)
    assert new.key_id != old.key_id and new_key != old_key
    assert (new.name, new.tier, new.projects, new.environments, new.user_id) == (
        "svc", "pro", ("checkout-web",), ("production",), "alice")
    assert service.authenticate(f"Bearer {new_key}").key_id == new.key_id
    with pytest.raises(Unauthorized):
        service.authenticate(f"Bearer {old_key}")
    revoked = service.get(old.key_id)
    assert revoked.status == "revoked" and revoked.replaced_by == new.key_id and revoked.revoked_at
    assert {r.key_id for r in service.list()} == {new.key_id, other.key_id}
    assert {r.key_id for r in service.list(include_revoked=True)} == {old.key_id, new.key_id, other.key_id}

    with pytest.raises(InvalidRequest):
        service.rotate(old.key_id)  # a revoked key cannot be rotated
    assert service.revoke(other.key_id).status == "revoked"
    assert service.revoke(other.key_id).status == "revoked"  # idempotent
    assert [r.key_id for r in service.list()] == [new.key_id]


def test_unknown_tier_id_and_bad_tags_are_refused(bstack: BudgetStack) -> None:
    service = bstack.key_service()
    with pytest.raises(InvalidRequest) as tier:
        service.create(KeySpec(name="x", tier="platinum"))
    assert tier.value.status == 400 and tier.value.param == "tier"
    with pytest.raises(InvalidRequest):
        service.create(KeySpec(name="x", tier="free", projects=["no spaces allowed"]))
    with pytest.raises(NotFound) as missing:
        service.get("vk_000000000000")
    assert missing.value.status == 404 and missing.value.code == "key_not_found"
    with pytest.raises(NotFound):
        service.revoke("vk_000000000000")
    assert raw_items(bstack) == []


def test_authenticate_caches_for_the_ttl_including_misses(bstack: BudgetStack) -> None:
    service = bstack.key_service(cache_ttl_seconds=30)
    key, record = service.create(KeySpec(name="c", tier="free"))
    assert service.authenticate(f"Bearer {key}").key_id == record.key_id
    bstack.key_service().revoke(record.key_id)  # another instance
    assert service.authenticate(f"Bearer {key}").key_id == record.key_id
    bstack.clock.advance(30.5)
    with pytest.raises(Unauthorized):
        service.authenticate(f"Bearer {key}")
    for header in (None, "", "Basic abc", f"bearer {key}", "Bearer ", "Bearer sk-fin-" + "a" * 200):
        with pytest.raises(Unauthorized):
            service.authenticate(header)
