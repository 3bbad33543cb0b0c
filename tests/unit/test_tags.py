from __future__ import annotations

import string

import pytest
from finops.errors import MissingCostTags
from finops.settings import Settings
from finops.tags import TAG_HEADERS, UNALLOCATED, is_valid_tag, resolve_tags
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

GOOD = {"X-Project-ID": "checkout-web", "X-User-ID": "alice", "X-Environment": "production"}
ALLOWED = string.ascii_letters + string.digits + "._:-"

HOSTILE = [
    "<script>alert(1)</script>",
    "'; DROP TABLE ledger; --",
    "a" * 65,
    "projét",
    "プロジェクト",
    "abc\r\nSet-Cookie: session=evil",
    "abc\nX-Injected: 1",
    "with space",
    "a/b",
    "${jndi:ldap://x}",
    "abc\x00def",
]


def settings(**kw: object) -> Settings:
    return Settings(**kw)


def headers(**overrides: str | None) -> dict[str, str]:
    names = {"project": "X-Project-ID", "user": "X-User-ID", "environment": "X-Environment"}
    out = dict(GOOD)
    for key, value in overrides.items():
        if value is None:
            out.pop(names[key])
        else:
            out[names[key]] = value
    return out


def test_valid_tags_resolve_to_their_values() -> None:
    tags = resolve_tags(GOOD, settings())
    assert (tags.project_id, tags.user_id, tags.environment) == ("checkout-web", "alice", "production")
    assert tags.department_id == "unallocated"
    assert tags.unallocated == ()


@pytest.mark.parametrize("missing", TAG_HEADERS)
def test_each_missing_tag_is_refused_by_name(missing: str) -> None:
    hdrs = {k: v for k, v in GOOD.items() if k != missing}
    with pytest.raises(MissingCostTags) as info:
        resolve_tags(hdrs, settings())
    err = info.value
    assert err.status == 400
    assert err.param == missing
    assert err.envelope()["error"]["invalid_headers"] == [missing]
    assert f"{missing} is missing" in err.message


def test_every_bad_header_is_named_at_once() -> None:
    with pytest.raises(MissingCostTags) as info:
        resolve_tags({"X-Project-ID": "", "X-Environment": "prod<>"}, settings())
    envelope = info.value.envelope()["error"]
    assert envelope["code"] == "missing_cost_tags"
    assert envelope["type"] == "invalid_request_error"
    assert envelope["invalid_headers"] == ["X-Project-ID", "X-User-ID", "X-Environment"]
    assert envelope["param"] == "X-Project-ID, X-User-ID, X-Environment"
    for name in TAG_HEADERS:
        assert name in envelope["message"]


def test_length_limits() -> None:
    assert is_valid_tag("a")
    assert is_valid_tag("a" * 64)
    assert not is_valid_tag("a" * 65)
    assert not is_valid_tag("")


def test_allowed_punctuation() -> None:
    assert is_valid_tag("team.a_b:c-d")
    tags = resolve_tags(headers(project="org:team.a_b-1", user="svc_bot.7"), settings())
    assert tags.project_id == "org:team.a_b-1"
    assert tags.user_id == "svc_bot.7"


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("header", TAG_HEADERS)
def test_hostile_values_are_refused_and_never_reflected(header: str, value: str) -> None:
    hdrs = dict(GOOD)
    hdrs[header] = value
    with pytest.raises(MissingCostTags) as info:
        resolve_tags(hdrs, settings())
    err = info.value
    assert err.param == header
    rendered = repr(err.envelope()) + err.message + str(err.headers)
    assert value not in rendered
    for fragment in ("<script>", "DROP", "Set-Cookie", "X-Injected", "jndi", "プロジェクト", "projét"):
        if fragment in value:
            assert fragment not in rendered


def test_trailing_newline_is_not_a_valid_tag() -> None:
    assert not is_valid_tag("alice\n")
    assert not is_valid_tag("\nalice")


@pytest.mark.parametrize("spelling", ["x-project-id", "X-PROJECT-ID", "x-Project-Id"])
def test_header_names_are_case_insensitive(spelling: str) -> None:
    hdrs = {spelling: "p1", "x-user-id": "u1", "X-ENVIRONMENT": "staging"}
    tags = resolve_tags(hdrs, settings())
    assert (tags.project_id, tags.user_id, tags.environment) == ("p1", "u1", "staging")


@pytest.mark.parametrize("env", ["production", "staging", "development", "test"])
def test_default_environments_accepted(env: str) -> None:
    assert resolve_tags(headers(environment=env), settings()).environment == env


@pytest.mark.parametrize("env", ["prod", "Production", "qa", "dev"])
def test_environment_outside_the_set_is_refused(env: str) -> None:
    with pytest.raises(MissingCostTags) as info:
        resolve_tags(headers(environment=env), settings())
    assert info.value.param == "X-Environment"
    assert "production, staging, development, test" in info.value.message


def test_configured_environments_replace_the_default_set() -> None:
    custom = settings(environments=("prod", "qa"))
    assert resolve_tags(headers(environment="qa"), custom).environment == "qa"
    with pytest.raises(MissingCostTags):
        resolve_tags(headers(environment="production"), custom)


def test_observe_mode_books_untagged_to_unallocated() -> None:
    tags = resolve_tags({}, settings(enforcement_mode="observe"))
    assert (tags.project_id, tags.user_id, tags.environment, tags.department_id) == ("unallocated",) * 4
    assert tags.unallocated == TAG_HEADERS


def test_observe_mode_keeps_valid_tags_and_replaces_only_bad_ones() -> None:
    tags = resolve_tags(headers(user="<bad>", environment=None), settings(enforcement_mode="observe"))
    assert tags.project_id == "checkout-web"
    assert tags.user_id == "unallocated"
    assert tags.environment == "unallocated"
    assert tags.unallocated == ("X-User-ID", "X-Environment")


def test_department_comes_from_the_project_map() -> None:
    s = settings(project_departments={"checkout-web": "retail", "search": "platform"})
    assert resolve_tags(GOOD, s).department_id == "retail"
    assert resolve_tags(headers(project="search"), s).department_id == "platform"
    assert resolve_tags(headers(project="unknown-project"), s).department_id == "unallocated"


def test_the_unallocated_label_is_the_one_the_chargeback_queries_select() -> None:
    from finops.chargeback.sql import load

    tags = resolve_tags({}, settings(enforcement_mode="observe"))
    assert tags.project_id == tags.department_id == UNALLOCATED
    assert f"department_id = '{UNALLOCATED}'" in load("unallocated_spend").sql


@hypothesis_settings(deadline=None, max_examples=100)
@given(st.text(alphabet=ALLOWED, min_size=1, max_size=64))
def test_any_allowed_value_is_valid(value: str) -> None:
    assert is_valid_tag(value)


@hypothesis_settings(deadline=None, max_examples=100)
@given(st.text(min_size=1, max_size=80).filter(lambda v: not (set(v) <= set(ALLOWED) and len(v) <= 64)))
def test_refusal_does_not_depend_on_the_value(value: str) -> None:
    """Whatever the bad value, the error is the same as for a plain invalid one: nothing is echoed."""
    with pytest.raises(MissingCostTags) as reference:
        resolve_tags(headers(project="!"), settings())
    with pytest.raises(MissingCostTags) as info:
        resolve_tags(headers(project=value), settings())
    assert info.value.envelope() == reference.value.envelope()


def test_key_bindings_skip_only_the_tags_that_were_booked_to_unallocated() -> None:
    from finops.errors import FinOpsError
    from finops.keys.service import KeyRecord

    key = KeyRecord(key_id="k", name="n", tier="pro", projects=("checkout-web",), environments=("production",),
                    user_id="alice", created_at="2026-01-01T00:00:00Z")
    observe = settings(enforcement_mode="observe")
    key.check_bindings(resolve_tags({}, observe))  # all three missing: booked to unallocated, nothing to check
    key.check_bindings(resolve_tags(GOOD, observe))
    sent = resolve_tags(headers(project=UNALLOCATED), observe)  # the label sent as a value is a project
    assert sent.unallocated == ()
    with pytest.raises(FinOpsError) as info:
        key.check_bindings(sent)
    assert info.value.status == 403 and info.value.param == "X-Project-ID"
