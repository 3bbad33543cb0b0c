"""Cost tags through the real handler: enforcement, hostile values, observe mode, departments, GSI reads."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

TAGS = ("X-Project-ID", "X-User-ID", "X-Environment")

HOSTILE = [
    "<script>alert(document.cookie)</script>",
    "'; DROP TABLE finops_ledger; --",
    "p" * 65,
    "café-münchen",
    "項目",
    "evil\r\nSet-Cookie: session=stolen",
    "evil\nX-Forwarded-For: 1.2.3.4",
    "../../etc/passwd",
    "{{7*7}}",
]


def test_untagged_event_is_400_naming_every_header(gateway_env, load_event) -> None:
    event = load_event("chat_completion_untagged")
    result = gateway_env.invoke(event)
    assert result.status == 400
    err = result.error()
    assert err["code"] == "missing_cost_tags"
    assert err["type"] == "invalid_request_error"
    assert err["param"] == "X-Project-ID, X-User-ID, X-Environment"
    assert err["invalid_headers"] == list(TAGS)
    for name in TAGS:
        assert name in err["message"]
    assert result.header("X-Request-ID") == event["requestContext"]["requestId"]
    assert gateway_env.simulator.calls == []
    assert gateway_env.entries() == []


@pytest.mark.parametrize("missing", TAGS)
def test_each_missing_tag_is_named(gateway_env, load_event, missing) -> None:
    result = gateway_env.invoke(load_event("chat_completion", drop=[missing]))
    assert result.status == 400
    err = result.error()
    assert err["code"] == "missing_cost_tags"
    assert err["param"] == missing
    assert err["invalid_headers"] == [missing]


def test_two_bad_tags_are_both_named(gateway_env, load_event, tagged_headers) -> None:
    result = gateway_env.invoke(load_event("chat_completion", headers=tagged_headers(
        user="", environment="prod")))
    assert result.status == 400
    assert result.error()["invalid_headers"] == ["X-User-ID", "X-Environment"]


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("header", TAGS)
def test_hostile_tag_values_are_refused_and_never_reflected(gateway_env, load_event, header, value) -> None:
    result = gateway_env.invoke(load_event("chat_completion", headers={header: value}))
    assert result.status == 400
    err = result.error()
    assert err["code"] == "missing_cost_tags"
    assert err["invalid_headers"] == [header]
    rendered = result.body + json.dumps(result.headers)
    assert value not in rendered
    assert value not in json.loads(result.body)["error"]["message"]
    for fragment in ("<script>", "DROP TABLE", "Set-Cookie", "X-Forwarded-For", "passwd", "{{", "café", "項目"):
        if fragment in value:
            assert fragment not in rendered
    assert gateway_env.simulator.calls == []
    assert gateway_env.entries() == []


def test_sixty_four_characters_is_the_limit(gateway_env, load_event, tagged_headers) -> None:
    ok = gateway_env.invoke(load_event("chat_completion", headers=tagged_headers(project="p" * 64)))
    assert ok.status == 200
    assert gateway_env.entries()[0].project_id == "p" * 64
    too_long = gateway_env.invoke(load_event("chat_completion", headers=tagged_headers(project="p" * 65)))
    assert too_long.status == 400


@pytest.mark.parametrize("case", [str.lower, str.upper])
def test_header_names_are_case_insensitive(gateway_env, load_event, tagged_headers, case) -> None:
    headers = {case(k): v for k, v in tagged_headers(project="case-test", user="u.1", environment="staging").items()}
    result = gateway_env.invoke(load_event("chat_completion", drop=TAGS, headers=headers))
    assert result.status == 200
    [entry] = gateway_env.entries()
    assert (entry.project_id, entry.user_id, entry.environment) == ("case-test", "u.1", "staging")


@pytest.mark.parametrize("environment", ["production", "staging", "development", "test"])
def test_default_environments(gateway_env, load_event, tagged_headers, environment) -> None:
    result = gateway_env.invoke(load_event("chat_completion", headers=tagged_headers(environment=environment)))
    assert result.status == 200
    assert gateway_env.entries()[0].environment == environment


def test_environment_outside_the_set_is_400(gateway_env, load_event, tagged_headers) -> None:
    result = gateway_env.invoke(load_event("chat_completion", headers=tagged_headers(environment="qa")))
    assert result.status == 400
    err = result.error()
    assert err["param"] == "X-Environment"
    assert "production, staging, development, test" in err["message"]


def test_environments_configured_as_json_list(gateway_env, load_event, tagged_headers) -> None:
    gateway_env.set(FINOPS_ENVIRONMENTS='["prod", "qa"]')
    assert gateway_env.invoke(load_event("chat_completion", headers=tagged_headers(environment="qa"))).status == 200
    refused = gateway_env.invoke(load_event("chat_completion", headers=tagged_headers(environment="production")))
    assert refused.status == 400


def test_environments_configured_as_comma_list(gateway_env, load_event, tagged_headers) -> None:
    gateway_env.set(FINOPS_ENVIRONMENTS="prod,qa")
    assert gateway_env.invoke(load_event("chat_completion", headers=tagged_headers(environment="qa"))).status == 200
    refused = gateway_env.invoke(load_event("chat_completion", headers=tagged_headers(environment="production")))
    assert refused.status == 400


def test_observe_mode_books_untagged_calls_to_unallocated(gateway_env, load_event) -> None:
    gateway_env.set(FINOPS_ENFORCEMENT_MODE="observe")
    event = load_event("chat_completion_untagged")
    result = gateway_env.invoke(event)
    assert result.status == 200
    warning = result.header("X-FinOps-Warning")
    assert warning is not None
    assert "unallocated" in warning
    for name in TAGS:
        assert name in warning
    [entry] = gateway_env.entries()
    assert entry.request_id == event["requestContext"]["requestId"]
    assert (entry.project_id, entry.user_id, entry.environment, entry.department_id) == ("unallocated",) * 4
    assert entry.unallocated_tags == TAGS
    assert entry.status == "ok"
    assert entry.cost_usd > 0


def test_observe_mode_keeps_good_tags_and_never_echoes_bad_ones(gateway_env, load_event, tagged_headers) -> None:
    gateway_env.set(FINOPS_ENFORCEMENT_MODE="observe")
    result = gateway_env.invoke(load_event("chat_completion", headers=tagged_headers(user="<img src=x>")))
    assert result.status == 200
    assert "<img" not in json.dumps(result.headers)
    assert result.header("X-FinOps-Warning").count("X-") == 1
    [entry] = gateway_env.entries()
    assert entry.project_id == "checkout-web"
    assert entry.user_id == "unallocated"
    assert entry.unallocated_tags == ("X-User-ID",)


def test_enforce_mode_sends_no_warning_header(gateway_env, load_event) -> None:
    result = gateway_env.invoke(load_event("chat_completion"))
    assert result.status == 200
    assert result.header("X-FinOps-Warning") is None


def test_departments_from_the_project_map(gateway_env, load_event, tagged_headers) -> None:
    gateway_env.set(FINOPS_PROJECT_DEPARTMENTS=json.dumps({"checkout-web": "retail", "search": "platform"}))
    first = load_event("chat_completion")
    second = load_event("chat_completion", headers=tagged_headers(project="search"))
    third = load_event("chat_completion", headers=tagged_headers(project="side-project"))
    for event in (first, second, third):
        assert gateway_env.invoke(event).status == 200
    departments = {e.request_id: e.department_id for e in gateway_env.entries()}
    assert departments == {first["requestContext"]["requestId"]: "retail",
                           second["requestContext"]["requestId"]: "platform",
                           third["requestContext"]["requestId"]: "unallocated"}


def test_day_query_returns_the_rows_without_a_scan(gateway_env, load_event, monkeypatch) -> None:
    before = datetime.now(UTC).strftime("%Y-%m-%d")
    ids = []
    for i in range(5):
        event = load_event("chat_completion", body={"model": "gpt-4o-mini", "messages": [
            {"role": "user", "content": f"question {i}"}]})
        assert gateway_env.invoke(event).status == 200
        ids.append(event["requestContext"]["requestId"])
    repo = gateway_env.repo

    def no_scan(*_, **__):
        raise AssertionError("LedgerRepository.day must query the by_day index, not scan")

    monkeypatch.setattr(repo.model, "scan", no_scan)
    after = datetime.now(UTC).strftime("%Y-%m-%d")
    rows = [e for day in sorted({before, after}) for e in repo.day(day)]
    assert sorted(e.request_id for e in rows) == sorted(ids)
    assert all(e.status == "ok" for e in rows)
    assert list(repo.day("1999-01-01")) == []
