"""The admin API handler (functions/admin) with API Gateway REST proxy events from events/admin_*.json."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from budgets_it_support import EVENTS, BudgetStack, Reply

PLACEHOLDER = "vk_0123456789ab"


def event(name: str, key_id: str | None = None, body: Any = None, query: dict[str, str] | None = None) -> dict:
    raw = (Path(EVENTS) / f"{name}.json").read_text()
    if key_id is not None:
        raw = raw.replace(PLACEHOLDER, key_id)
    data = copy.deepcopy(json.loads(raw))
    if body is not None:
        data["body"] = json.dumps(body)
    if query is not None:
        data["queryStringParameters"] = query
        data["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()}
    return data


def admin(stack: BudgetStack, *args: Any, **kw: Any) -> Reply:
    return Reply.of_proxy(stack.invoke("admin", event(*args, **kw)))


def test_admin_events_are_rest_proxy_events_with_an_iam_caller() -> None:
    for name in ("admin_create_key", "admin_list_keys", "admin_get_key", "admin_rotate_key", "admin_revoke_key"):
        data = json.loads((Path(EVENTS) / f"{name}.json").read_text())
        assert data["requestContext"]["identity"]["userArn"].startswith("arn:aws:iam::")
        assert data["path"].startswith("/admin/keys")
        assert data["httpMethod"] in ("GET", "POST", "DELETE")


def test_create_list_get_rotate_revoke(bstack: BudgetStack) -> None:
    created = admin(bstack, "admin_create_key")
    assert created.status == 201, created.body
    key, key_id = created.body["key"], created.body["key_id"]
    assert key.startswith("sk-fin-") and key_id.startswith("vk_")
    assert created.body["tier"] == "pro"
    assert created.body["projects"] == ["checkout-web"]
    assert created.body["environments"] == ["production", "staging"]
    assert key not in json.dumps(bstack.ddb.scan(TableName=bstack.tables.keys)["Items"])

    listed = admin(bstack, "admin_list_keys")
    assert listed.status == 200
    assert [k["key_id"] for k in listed.body["data"]] == [key_id]
    assert all("key" not in k and "key_hash" not in k for k in listed.body["data"])

    got = admin(bstack, "admin_get_key", key_id)
    assert got.status == 200 and got.body["key_id"] == key_id and got.body["status"] == "active"

    rotated = admin(bstack, "admin_rotate_key", key_id)
    assert rotated.status == 201
    new_key, new_id = rotated.body["key"], rotated.body["key_id"]
    assert new_id != key_id and new_key != key
    assert rotated.body["projects"] == ["checkout-web"] and rotated.body["tier"] == "pro"
    old = admin(bstack, "admin_get_key", key_id)
    assert old.body["status"] == "revoked" and old.body["replaced_by"] == new_id

    # the old key no longer works at the gateway, the new one does
    assert bstack.invoke_gateway(key).status == 401
    assert bstack.invoke_gateway(new_key).status == 200

    revoked = admin(bstack, "admin_revoke_key", new_id)
    assert revoked.status == 200 and revoked.body["status"] == "revoked"
    assert admin(bstack, "admin_list_keys").body["data"] == []
    everything = admin(bstack, "admin_list_keys", query={"include_revoked": "true"})
    assert {k["key_id"] for k in everything.body["data"]} == {key_id, new_id}


def test_unknown_tier_is_400(bstack: BudgetStack) -> None:
    reply = admin(bstack, "admin_create_key", body={"name": "x", "tier": "platinum"})
    assert reply.status == 400
    assert reply.error["param"] == "tier"
    assert reply.error["type"] == "invalid_request_error"
    assert bstack.ddb.scan(TableName=bstack.tables.keys)["Items"] == []


def test_invalid_body_is_400(bstack: BudgetStack) -> None:
    reply = admin(bstack, "admin_create_key", body={"tier": "free"})
    assert reply.status == 400 and reply.code == "invalid_request"


def test_unknown_key_id_is_404(bstack: BudgetStack) -> None:
    for name in ("admin_get_key", "admin_rotate_key", "admin_revoke_key"):
        reply = admin(bstack, name, "vk_ffffffffffff")
        assert reply.status == 404, name
        assert reply.code == "key_not_found"


def test_a_key_id_of_another_shape_is_404_without_a_lookup(bstack: BudgetStack, monkeypatch) -> None:
    """Real DynamoDB refuses an index key over 2,048 bytes (a 500 had it been queried); no id of another shape
    is ever looked up."""
    from finops.keys.model import ApiKey

    queried = []
    monkeypatch.setattr(ApiKey.by_key_id, "query", lambda *a, **kw: queried.append(a) or iter(()))
    for key_id in ("vk_" + "f" * 3000, "VK_FFFFFFFFFFFF", "vk_fffffffffff", "vk_ffffffffffff0", "vk_gggggggggggg"):
        for name in ("admin_get_key", "admin_rotate_key", "admin_revoke_key"):
            reply = admin(bstack, name, key_id)
            assert (reply.status, reply.code) == (404, "key_not_found"), (name, key_id[:20])
    assert queried == []
    admin(bstack, "admin_get_key", "vk_ffffffffffff")
    assert len(queried) == 1  # the well-formed id still is


def test_an_unknown_admin_route_names_the_admin_routes(bstack: BudgetStack) -> None:
    data = event("admin_list_keys")
    data["path"] = data["requestContext"]["path"] = "/admin/users"
    reply = Reply.of_proxy(bstack.invoke("admin", data))
    assert (reply.status, reply.code) == (404, "not_found")
    assert "/admin/keys" in reply.body["error"]["message"] and "/v1/" not in reply.body["error"]["message"]


def test_a_crash_in_an_admin_route_is_a_typed_500(bstack: BudgetStack, monkeypatch) -> None:
    from finops.keys.service import KeyService

    def crash(self, include_revoked=False):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(KeyService, "list", crash)
    reply = admin(bstack, "admin_list_keys")
    assert (reply.status, reply.code, reply.body["error"]["type"]) == (500, "internal_error", "server_error")
    assert "secret internals" not in json.dumps(reply.body)


def test_rotating_a_revoked_key_is_400(bstack: BudgetStack) -> None:
    key_id = admin(bstack, "admin_create_key").body["key_id"]
    assert admin(bstack, "admin_revoke_key", key_id).status == 200
    reply = admin(bstack, "admin_rotate_key", key_id)
    assert reply.status == 400 and reply.error["param"] == "key_id"
