"""Property-based hostile input against every HTTP endpoint, through the real handlers (moto + simulator).

The non-negotiable under test: every endpoint answers malformed, oversized, missing or hostile input with a
typed 4xx in OpenAI's error envelope; a fault never loses a ledger row or leaks budget. For each generated
request, whatever it is:

- the status is never 5xx (the simulated provider is healthy; only an injected crash may give a 500);
- every answer carries ``X-Request-ID``; every non-2xx answer is JSON with exactly the envelope
  ``{"error": {"message": str, "type": str, "param": str | None, "code": str, ...}}``;
- a cost-tag header value the client sent is never echoed back (body or headers);
- no budget reservation (``r_*`` attribute in the budgets table) is left behind;
- a request that was admitted (answered 200, or booked: it carries ``X-FinOps-Cost-USD``) has exactly one
  ledger row and reached the provider once; any other request has no row and never reached the provider.

The example tests in test_errors_handler.py and test_tags_handler.py pin the exact answers; here only the
invariants are checked, over inputs nobody thought of. Examples are derandomized so CI is reproducible.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import string
from collections.abc import Callable
from typing import Any

import pytest
from finops import aws
from finops.gateway import factory
from finops.local import lambda_runtime
from finops.providers.openai_compatible import OpenAICompatibleProvider
from finops.settings import get_settings
from finops.tags import is_valid_tag
from hypothesis import HealthCheck, currently_in_test_context, given, settings
from hypothesis import event as hypothesis_event
from hypothesis import strategies as st

from tests.integration.conftest import Result

BASE = settings(deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])
ONE_MIB = 1024 * 1024
TAG_HEADERS = ("X-Project-ID", "X-User-ID", "X-Environment")
ROLES = ("system", "developer", "user", "assistant", "tool", "function")
SERVED_MODELS = ("gpt-4o-mini", "gpt-3.5-turbo", "gpt-4o", "llama-3.1-8b-instant", "llama-3.3-70b-versatile", "auto")
OTHER_MODELS = ("claude-sonnet-4-5", "gpt-5", "GPT-4O", "a:b/c.d_e-f", "../../etc/passwd", "x" * 128, "x" * 129)
_ids = itertools.count()


def next_request_id() -> str:
    return f"fuzz-{next(_ids):06d}"


# --- strategies: JSON values and hostile text -----------------------------------------------------------

NASTY_STRINGS = (
    "", " ", "\x00", "a\x00b", "\r\n", "evil\r\nSet-Cookie: s=1", "<script>alert(1)</script>",
    "'; DROP TABLE ledger; --", "{{7*7}}", "${jndi:ldap://x}", "\ufeff", "\u202eevil", "\U0001d518\U0001d52b", "項目",
    "café", "NaN", "Infinity", "null", "[[sim]]", "%00", "%2e%2e/",
)
LONE_SURROGATES = ("\ud800", "\udfff", "\ud83d", "a\udc00b")


def text_strategy(surrogates: bool) -> st.SearchStrategy[str]:
    nasty = NASTY_STRINGS + (LONE_SURROGATES if surrogates else ())
    fill = ["a", "é", "\x00", "😀", " "] + (["\ud800"] if surrogates else [])
    return st.one_of(st.sampled_from(nasty), st.text(max_size=40),
                     st.text(st.characters(exclude_categories=[] if surrogates else None), max_size=20),
                     st.builds(lambda ch, n: ch * n, st.sampled_from(fill), st.integers(100, 20_000)))


def json_strategy(strings: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), huge_ints, st.floats(allow_nan=False,
                        allow_infinity=False), st.sampled_from([1e308, -1e308, 5e-324]), strings)
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(strings, inner,
                                                                                             max_size=4), max_leaves=10)


huge_ints = st.sampled_from([0, -1, 2**31, 2**53 + 1, 2**63, 2**64, 10**30, 10**100, -(10**100)])
texts = text_strategy(surrogates=True)
json_values = json_strategy(texts)
# Unicode text that is valid (no lone surrogate): what a request that should get through carries.
clean_texts = text_strategy(surrogates=False)
clean_json = json_strategy(clean_texts)
hostile_ints = st.one_of(st.integers(-3, 20), st.integers(), huge_ints, st.sampled_from([1.0, 1.5, 1e308, -0.0]),
                         json_values)

content_parts = st.lists(st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": st.one_of(texts, json_values)}),
    st.fixed_dictionaries({"type": st.sampled_from(["image_url", "input_audio", "text"])},
                          optional={"image_url": json_values, "cache_control": json_values}),
    st.dictionaries(texts, json_values, max_size=3),
), max_size=3)
tool_calls = st.lists(st.fixed_dictionaries({}, optional={
    "id": json_values, "type": st.one_of(st.just("function"), json_values),
    "function": st.one_of(st.fixed_dictionaries({}, optional={"name": json_values, "arguments": json_values}),
                          json_values)}), max_size=3)
messages = st.fixed_dictionaries(
    {"role": st.one_of(st.sampled_from(ROLES), json_values)},
    optional={
        "content": st.one_of(texts, content_parts, json_values),
        "name": st.one_of(texts, json_values),
        "tool_calls": st.one_of(tool_calls, json_values),
        "tool_call_id": json_values,
        "function_call": json_values,
        "refusal": json_values,
    })
chat_bodies = st.builds(
    lambda base, extra: {**extra, **base},
    st.fixed_dictionaries(
        {"model": st.one_of(st.sampled_from(SERVED_MODELS), st.sampled_from(OTHER_MODELS), json_values),
         "messages": st.one_of(st.lists(messages, min_size=1, max_size=4), json_values)},
        optional={
            "max_tokens": hostile_ints,
            "max_completion_tokens": hostile_ints,
            "n": hostile_ints,
            "stream": st.one_of(st.booleans(), json_values),
            "stream_options": st.one_of(st.fixed_dictionaries({"include_usage": json_values}), json_values),
            "temperature": json_values,
            "tools": json_values,
            "response_format": json_values,
            "logit_bias": json_values,
            "user": json_values,
        }),
    st.dictionaries(texts, json_values, max_size=2),
)

# Requests the schema accepts, with hostile values where it allows anything: these get past validation, so they
# exercise token counting, pricing, admission, the provider call and settlement.
valid_messages = st.fixed_dictionaries(
    {"role": st.sampled_from(ROLES)},
    optional={
        "content": st.one_of(st.none(), clean_texts, st.lists(st.one_of(
            st.fixed_dictionaries({"type": st.just("text"), "text": st.one_of(clean_texts, clean_json)}),
            st.dictionaries(clean_texts, clean_json, max_size=3)), max_size=3)),
        "name": st.one_of(st.none(), st.text(max_size=64)),
        "tool_calls": st.one_of(st.none(), st.lists(st.fixed_dictionaries({}, optional={
            "id": clean_json, "type": clean_json, "function": st.one_of(st.none(), st.fixed_dictionaries(
                {}, optional={"name": clean_json, "arguments": clean_json}))}), max_size=2)),
        "tool_call_id": clean_json,
        "cache_control": clean_json,
    })
accepted_bodies = st.builds(
    lambda base, extra: {**extra, **base},
    st.fixed_dictionaries(
        {"model": st.sampled_from(SERVED_MODELS), "messages": st.lists(valid_messages, min_size=1, max_size=3)},
        optional={
            "max_tokens": st.one_of(st.integers(1, 64), st.integers(1, 10**40), st.sampled_from([1.0, 4096.0])),
            "max_completion_tokens": st.one_of(st.none(), st.integers(1, 2**70)),
            "n": st.integers(1, 16),
            "stream": st.booleans(),
            "stream_options": st.one_of(st.none(), st.fixed_dictionaries({"include_usage": st.booleans()},
                                                                         optional={"x": clean_json})),
            "temperature": clean_json,
            "tools": clean_json,
            "seed": clean_json,
        }),
    st.dictionaries(clean_texts, clean_json, max_size=2),
)

# --- strategies: raw request bodies ---------------------------------------------------------------------

GOOD_BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
CONTENT_TEMPLATE = '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": @}]}'
TEMPLATE = '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "%s": %s}'


def dumps(value: Any, ascii_only: bool) -> str:
    return json.dumps(value, ensure_ascii=ascii_only)


def nested(kind: str, depth: int) -> str:
    opener, closer = {"array": ("[", "]"), "object": ('{"a": ', "}")}[kind]
    inner = opener * depth + "1" + closer * depth if kind == "object" else opener * depth + closer * depth
    return TEMPLATE % ("deep", inner)


raw_texts = st.one_of(
    # valid JSON text: a chat request with hostile fields, or any JSON value at all
    st.builds(dumps, accepted_bodies, st.booleans()),
    st.builds(dumps, accepted_bodies, st.booleans()),
    st.builds(dumps, chat_bodies, st.booleans()),
    st.builds(dumps, json_values, st.booleans()),
    # number tokens JSON does not have, or that do not fit
    st.builds(lambda field, token: TEMPLATE % (field, token),
              st.sampled_from(["max_tokens", "max_completion_tokens", "n", "temperature", "stream", "top_p"]),
              st.sampled_from(["NaN", "Infinity", "-Infinity", "1e308", "1e309", "-1e400", "1" + "0" * 5000,
                               "0." + "0" * 5000 + "1", "1E", "0x10", "01", "+1", "1_000", "true", "nan"])),
    st.builds(lambda token: CONTENT_TEMPLATE.replace("@", token),
              st.sampled_from(["NaN", "Infinity", '"\\ud800"', '"\\udfff\\ud800"', '"a\\u0000b"', '"\\u0000"',
                               '"\x00"', '"\x1f"', '"\\x41"', "'single'", '"\\"', '"\\uZZZZ"'])),
    # deeply nested arrays and objects
    st.builds(nested, st.sampled_from(["array", "object"]),
              st.sampled_from([10, 100, 990, 1000, 1100, 5000, 50_000, 200_000])),
    st.sampled_from(["[" * 100_000, '{"a":' * 100_000]),
    # near and over the 1 MiB limit
    st.builds(lambda n, ch: dumps({**GOOD_BODY, "messages": [{"role": "user", "content": ch * n}]}, False),
              st.sampled_from([ONE_MIB - 60, ONE_MIB, ONE_MIB + 1, 2 * ONE_MIB]), st.sampled_from(["x", "é"])),
    # broken JSON text
    st.builds(lambda body, cut: body[:cut], st.builds(dumps, chat_bodies, st.booleans()), st.integers(0, 60)),
    st.sampled_from(["", " ", "\n", "null", "true", "0", "{}", "[]", "[{}]", '"x"', "\ufeff{}", "{} {}",
                     '{"model": "gpt-4o-mini", "model": 5, "messages": [{"role": "user", "content": "hi"}]}',
                     '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]} trailing',
                     "\x00", "{\x00}", "model=gpt-4o-mini&messages=hi", "--boundary\r\n\r\n"]),
    texts,
)


@st.composite
def bodies(draw: st.DrawFn) -> tuple[str | None, bool]:
    """``(body, isBase64Encoded)`` as API Gateway would pass them, with a hostile payload."""
    kind = draw(st.sampled_from(["text", "text", "text", "none", "base64", "base64-bytes", "base64-broken"]))
    if kind == "none":
        return None, draw(st.booleans())
    if kind == "text":
        return draw(raw_texts), False
    if kind == "base64":
        text = draw(raw_texts)
        encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-16", "utf-32", "latin-1"]))
        raw = text.encode(encoding, errors="replace")
        if draw(st.booleans()):
            raw = raw[: draw(st.integers(0, max(0, len(raw))))]
        return base64.b64encode(raw).decode(), True
    if kind == "base64-bytes":
        return base64.b64encode(draw(st.binary(max_size=200))).decode(), True
    encoded = base64.b64encode(json.dumps(GOOD_BODY).encode()).decode()
    broken = draw(st.sampled_from([
        encoded[:-1], encoded.rstrip("="), encoded + "=", "!" + encoded, encoded.replace("e", "-"),
        encoded[:20] + "\n" + encoded[20:], " " + encoded, json.dumps(GOOD_BODY), "", "====", "a", "\x00",
        encoded.replace("y", "_"), "😀"]))
    return (draw(texts) if draw(st.booleans()) else broken), True


# Half of them accepted by the schema: for the properties that need a request to get as far as the provider.
mostly_accepted = st.one_of(st.builds(lambda body: (json.dumps(body), False), accepted_bodies), bodies())

# --- strategies: hostile headers, paths, methods, queries -----------------------------------------------

GOOD_TAGS = {"X-Project-ID": "checkout-web", "X-User-ID": "alice", "X-Environment": "production"}
HOSTILE_TAGS = ("<script>alert(document.cookie)</script>", "'; DROP TABLE finops_ledger; --", "p" * 65,
                "evil\r\nSet-Cookie: session=stolen", "evil\nX-Forwarded-For: 1.2.3.4", "../../etc/passwd",
                "café-münchen", "項目-プロジェクト", "abc\x00def", "unallocated", "*", "production ", " alice",
                "alice,bob", "alice, bob", "prod\u0000uction", "\ud800alice")
tag_values = st.one_of(
    st.sampled_from(["checkout-web", "alice", "u.1:x_y-z", "production", "staging", "development", "test", "p" * 64]),
    st.sampled_from(HOSTILE_TAGS),
    st.text(max_size=70),
    st.text(string.ascii_letters + string.digits + "._:-", min_size=60, max_size=70),
    st.builds(lambda n: "t" * n, st.integers(65, 20_000)),
)


def casing(name: str) -> st.SearchStrategy[str]:
    return st.sampled_from([name, name.lower(), name.upper()])



HEADER_PARTS = ("X-Project-ID", "X-User-ID", "X-Environment", "Authorization", "Content-Type", "X-FinOps-Route",
                "X-FinOps-Fallback", "other")


@st.composite
def hostile_headers(draw: st.DrawFn, key: str) -> tuple[dict[str, str] | None, dict[str, list[str]] | None, list[str]]:
    """``(headers, multiValueHeaders, tag values sent)``: missing, duplicated, overlong, CRLF and unicode values for
    the cost tags and Authorization, a wrong or hostile Content-Type, the gateway's own request headers. A few
    headers are hostile at a time (the others are what a good client sends), so requests get past the first check
    often enough to reach the later ones."""
    if draw(st.integers(0, 30)) == 0:
        return None, None, []  # API Gateway sends null when the request had no headers
    hostile = draw(st.sets(st.sampled_from(HEADER_PARTS), max_size=3))
    single: dict[str, str] = {"Accept": "application/json", "Host": "api.example.com"}
    multi: dict[str, list[str]] = {k: [v] for k, v in single.items()}
    sent: list[str] = []

    def put(name: str, value: str) -> None:
        single[name] = value
        multi[name] = [value]

    for tag in TAG_HEADERS:
        if tag not in hostile:
            put(tag, GOOD_TAGS[tag])
            sent.append(GOOD_TAGS[tag])
            continue
        choice = draw(st.sampled_from(["missing", "hostile", "hostile", "hostile", "duplicate"]))
        if choice == "missing":
            continue
        value = draw(tag_values)
        put(draw(casing(tag)), value)
        sent.append(value)
        if choice == "duplicate":  # the same header twice, in another case or as a second value
            other = draw(tag_values)
            sent.append(other)
            if draw(st.booleans()):
                put(draw(casing(tag)), other)
            else:
                multi[next(k for k in multi if k.lower() == tag.lower())].append(other)
    if "Authorization" not in hostile:
        put("Authorization", f"Bearer {key}")
    else:
        auth = draw(st.one_of(
            st.sampled_from([f"bearer {key}", f"BEARER {key}", f"Bearer  {key}", f"Bearer {key} ", f" Bearer {key}",
                             f"Bearer {key}\r\nX-Evil: 1", f"Bearer {key}\x00", f"Basic {key}", key, "Bearer",
                             "Bearer ", "Bearer sk-fin-", f"Bearer {key[:-1]}", f"Bearer {key}{key}",
                             f"Bearer {key},Bearer {key}", "Bearer sk-fin-\ud800", "Bearer sk-fin-ключ",
                             "Bearer " + "A" * 20_000]),
            st.builds(lambda t: f"Bearer {t}", texts), texts, st.none()))
        if auth is not None:
            put(draw(casing("Authorization")), auth)
            if draw(st.booleans()):  # and a second Authorization header, in another case
                put("authorization" if "Authorization" in single else "Authorization",
                    draw(st.sampled_from([f"Bearer {key}", "Bearer nope"])))
    if "Content-Type" not in hostile:
        put("Content-Type", "application/json")
    else:
        content_type = draw(st.one_of(st.none(), st.sampled_from([
            "application/json; charset=utf-16", "text/plain", "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=xyz", "application/xml", "", "application/json\r\nX-Evil: 1"]), texts))
        if content_type is not None:
            put(draw(casing("Content-Type")), content_type)
    for name in ("X-FinOps-Route", "X-FinOps-Fallback"):
        if name in hostile:
            put(draw(casing(name)), draw(st.one_of(st.sampled_from(["off", "OFF", "length", "auto", "none", "0", ""]),
                                                   texts)))
    if "other" in hostile:
        for name, value in draw(st.dictionaries(texts.filter(bool), texts, min_size=1, max_size=3)).items():
            put(name, value)
    if draw(st.integers(0, 10)) == 0:
        multi = None  # some clients / test tools send only one of the two maps
    return single, multi, sent


METHODS = st.one_of(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "CONNECT",
                                     "post", "get", "Post"]), st.text(max_size=10))
GATEWAY_PATHS = st.one_of(
    st.sampled_from(["/v1/chat/completions", "/v1/models", "/v1/chat/completions/", "/v1/models/", "//v1/models",
                     "/v1//chat/completions", "/V1/MODELS", "/v1/models/gpt-4o", "/v1/completions", "/v1/embeddings",
                     "/", "", "v1/models", "/v1/chat/completions/../../admin/keys", "/admin/keys", "/v1/models%00",
                     "/v1/models\x00", "/v1/models\r\nX: y", "/v1/models?x=1", "/v1/models#frag", "/v1/models/.",
                     "/" + "a" * 5000, "/v1/\ud800", "/v1/модели", "/{proxy+}", "/v1/chat/completions/*"]),
    st.builds(lambda t: "/" + t, texts), texts)
queries = st.one_of(st.none(), st.dictionaries(texts, texts, max_size=3),
                    st.fixed_dictionaries({"include_revoked": st.one_of(st.sampled_from(
                        ["true", "false", "1", "0", "yes", "no", "on", "TRUE", "maybe", "", "null"]), texts)}))


# --- running a request and checking the properties ------------------------------------------------------


def bucket_reservations(env: Any) -> list[str]:
    """Budget reservations left in the budgets table (``r_<request id>`` attributes)."""
    items = aws.client("dynamodb").scan(TableName=env.budgets_table, ConsistentRead=True)["Items"]
    return [f"{item['pk']['S']}:{k}" for item in items for k in item if k.startswith("r_")]


def record(label: str) -> None:
    """Tally answers in ``--hypothesis-show-statistics`` (the regression tests call the checks outside Hypothesis)."""
    if currently_in_test_context():
        hypothesis_event(label)


def check_answer(status: int, headers: dict[str, str], body: bytes | str, request_id: str, *,
                 allow_500: bool = False) -> dict[str, Any] | None:
    """The answer-shape properties; returns the error object of a non-2xx answer."""
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    lowered = {k.lower(): v for k, v in headers.items()}
    assert status < 500 or (allow_500 and status == 500), (status, text[:2000])
    assert 200 <= status < 600, status
    assert lowered.get("x-request-id") == request_id, ("X-Request-ID", status, headers)
    if 200 <= status < 300:
        record(f"{status}")
        return None
    assert lowered.get("content-type", "").split(";")[0].strip() == "application/json", headers
    envelope = json.loads(text)
    assert isinstance(envelope, dict) and set(envelope) == {"error"}, envelope
    error = envelope["error"]
    assert isinstance(error, dict), envelope
    assert isinstance(error.get("message"), str) and error["message"], error
    assert isinstance(error.get("type"), str) and error["type"], error
    assert isinstance(error.get("code"), str) and error["code"], error
    assert "param" in error and (error["param"] is None or isinstance(error["param"], str)), error
    if status == 500:
        assert (error["type"], error["code"]) == ("server_error", "internal_error"), error
    record(f"{status} {error['code']}")
    return error


def check_no_echo(tags: list[str], request_body: str | None, answer: str) -> None:
    """A refused (invalid) cost-tag value is never reflected, raw or JSON-escaped. Short values, valid ones
    (which may coincide with the gateway's own text, e.g. the list of environments) and ones the prompt
    carries (the provider may repeat it) could appear by coincidence, so only distinctive ones are checked."""
    for value in tags:
        if len(value.strip()) < 8 or is_valid_tag(value) or value in (request_body or ""):
            continue
        assert value not in answer, f"cost tag value {value!r} echoed"
        assert json.dumps(value)[1:-1] not in answer, f"cost tag value {value!r} echoed (JSON-escaped)"


def check_books(env: Any, request_id: str, admitted: bool, calls_before: int, provider_calls: int | None = 1) -> None:
    """Exactly one ledger row for an admitted request, none otherwise; no reservation left behind."""
    assert bucket_reservations(env) == [], "budget reservation left behind"
    row = env.repo.get(request_id)
    calls = len(env.simulator.calls) - calls_before
    if admitted:
        assert row is not None, "admitted request without a ledger row"
        assert env.repo.get(f"{request_id}.1") is None, "a healthy provider needed a second attempt"
        assert provider_calls is None or calls == provider_calls, f"{calls} provider calls"
    else:
        assert row is None, f"refused request has a ledger row: {row}"
        assert calls == 0, f"a refused request reached the provider ({calls} calls)"


def chat_event(load_event: Callable[..., dict[str, Any]], name: str = "chat_completion") -> dict[str, Any]:
    event = load_event(name)
    event["requestContext"]["requestId"] = event["requestContext"]["extendedRequestId"] = next_request_id()
    return event


def run_gateway(env: Any, event: dict[str, Any], tags: list[str] | None = None, crash: bool = False) -> Result:
    request_id = event["requestContext"]["requestId"]
    before = len(env.simulator.calls)
    result = env.invoke(event)
    check_answer(result.status, result.headers, result.body, request_id, allow_500=crash)
    check_no_echo(tags or [], event.get("body"), result.body + json.dumps(result.headers, ensure_ascii=False))
    chat = str(event.get("httpMethod")).upper() == "POST"
    admitted = (result.status == 200 and chat) or "x-finops-cost-usd" in result.headers
    check_books(env, request_id, admitted, before, provider_calls=0 if crash else 1)
    return result


# --- the properties -------------------------------------------------------------------------------------


@settings(BASE, max_examples=250)
@given(body=bodies())
def test_chat_completions_answers_any_body_with_a_typed_4xx_or_a_booked_200(gateway_env, load_event, body) -> None:
    event = chat_event(load_event)
    event["body"], event["isBase64Encoded"] = body
    run_gateway(gateway_env, event)


@settings(BASE, max_examples=80)
@given(data=st.data())
@pytest.mark.parametrize("mode", ["enforce", "observe"])
def test_chat_completions_answers_hostile_headers(gateway_env, load_event, mode, data) -> None:
    if os.environ.get("FINOPS_ENFORCEMENT_MODE", "enforce") != mode:
        gateway_env.set(FINOPS_ENFORCEMENT_MODE=mode)
    single, multi, tags = data.draw(hostile_headers(gateway_env.key))
    event = chat_event(load_event)
    event["headers"], event["multiValueHeaders"] = single, multi
    event["body"] = json.dumps({"model": data.draw(st.sampled_from(["gpt-4o-mini", "llama-3.1-8b-instant", "auto"])),
                                "messages": [{"role": "user", "content": f"question {next(_ids)}"}]})
    run_gateway(gateway_env, event, tags)


@settings(BASE, max_examples=200)
@given(route=st.one_of(st.sampled_from([("GET", "/v1/models"), ("POST", "/v1/chat/completions")]),
                       st.tuples(st.sampled_from(["GET", "POST"]), GATEWAY_PATHS), st.tuples(METHODS, GATEWAY_PATHS)),
       query=queries, with_body=st.booleans())
def test_gateway_answers_any_route_method_and_query(gateway_env, load_event, route, query, with_body) -> None:
    method, path = route
    event = chat_event(load_event)
    event["httpMethod"] = event["requestContext"]["httpMethod"] = method
    event["path"] = path
    event["pathParameters"] = {"proxy": path.lstrip("/")}
    event["requestContext"]["path"] = "/prod" + path
    event["queryStringParameters"] = query
    event["multiValueQueryStringParameters"] = None if query is None else {k: [v] for k, v in query.items()}
    if not with_body:
        event["body"] = None
    result = run_gateway(gateway_env, event)
    if result.status == 200 and method == "GET":
        assert result.json()["object"] == "list"


@settings(BASE, max_examples=100)
@given(body=mostly_accepted, stream=st.sampled_from([True, True, False, None]),
       method=st.sampled_from(["POST"] * 8 + ["GET"]), data=st.data())
def test_streaming_function_answers_any_body_and_headers(gateway_env, load_event, body, stream, method, data) -> None:
    event = chat_event(load_event, "chat_completion_stream")
    raw, is_b64 = body
    if stream is not None and raw is not None and not is_b64:
        try:
            decoded = json.loads(raw)
            if isinstance(decoded, dict):
                raw = json.dumps({**decoded, "stream": stream})
        except (ValueError, RecursionError):
            pass
    event["body"], event["isBase64Encoded"] = raw, is_b64
    event["httpMethod"] = event["requestContext"]["httpMethod"] = method
    tags: list[str] = []
    if data.draw(st.integers(0, 2)) == 0:
        event["headers"], event["multiValueHeaders"], tags = data.draw(hostile_headers(gateway_env.key))
    request_id = event["requestContext"]["requestId"]
    before = len(gateway_env.simulator.calls)
    response = lambda_runtime.invoke_streaming("gateway_stream", event)
    payload = b"".join(response.body)
    check_answer(response.status, response.headers, payload, request_id)
    check_no_echo(tags, raw, payload.decode() + json.dumps(response.headers, ensure_ascii=False))
    admitted = response.status == 200 or any(k.lower() == "x-finops-cost-usd" for k in response.headers)
    check_books(gateway_env, request_id, admitted, before)


ADMIN_EVENTS = ("admin_create_key", "admin_list_keys", "admin_get_key", "admin_rotate_key", "admin_revoke_key")
key_specs = st.fixed_dictionaries({}, optional={
    "name": st.one_of(texts, json_values, st.just("n" * 129)),
    "tier": st.one_of(st.sampled_from(["free", "pro", "enterprise", "platinum", "", "FREE"]), json_values),
    "projects": st.one_of(st.lists(st.one_of(st.sampled_from(["*", "checkout-web"]), texts), max_size=3), json_values),
    "environments": st.one_of(st.lists(st.one_of(st.sampled_from(["*", "production"]), texts), max_size=3),
                              json_values),
    "user_id": st.one_of(st.none(), st.sampled_from(["alice"]), texts, json_values),
})


@settings(BASE, max_examples=200)
@given(data=st.data())
def test_admin_api_answers_hostile_input(gateway_env, load_event, data) -> None:
    name = data.draw(st.sampled_from(ADMIN_EVENTS))
    event = load_event(name)
    request_id = event["requestContext"]["requestId"] = next_request_id()
    key_ids = st.one_of(st.sampled_from([0, -1]), st.sampled_from(["vk_0123456789ab", "vk_ffffffffffff"]),
                        st.sampled_from(["", "/", "..", "vk_%2F", "vk_0123456789ab/rotate", "vk_\x00", "VK_*"]),
                        texts, st.builds(lambda n: "vk_" + "f" * n, st.integers(1000, 5000)))
    if "{key_id}" in event["resource"]:
        key_id = data.draw(key_ids)
        if isinstance(key_id, int):  # a real key, looked up after drawing (keys come and go during the test)
            key_id = sorted(r.key_id for r in factory.keys(get_settings()).list(include_revoked=True))[key_id]
        event["path"] = event["resource"].replace("{key_id}", key_id)
        event["pathParameters"] = {"key_id": key_id}
    if data.draw(st.integers(0, 3)) == 0:
        event["httpMethod"] = data.draw(METHODS)
    if data.draw(st.integers(0, 4)) == 0:
        event["path"] = data.draw(st.one_of(GATEWAY_PATHS, st.builds(lambda t: "/admin/keys/" + t, texts)))
    if name == "admin_list_keys" or data.draw(st.integers(0, 4)) == 0:
        query = data.draw(queries)
        event["queryStringParameters"] = query
        event["multiValueQueryStringParameters"] = None if query is None else {k: [v] for k, v in query.items()}
    shape = data.draw(st.sampled_from(["spec", "spec", "raw", "keep"]))
    if shape == "spec":
        event["body"], event["isBase64Encoded"] = json.dumps(data.draw(key_specs)), False
    elif shape == "raw":
        event["body"], event["isBase64Encoded"] = data.draw(bodies())
    result = Result(lambda_runtime.invoke("admin", event))
    check_answer(result.status, result.headers, result.body, request_id)
    if 200 <= result.status < 300:
        assert isinstance(result.json(), dict)


REAL_STREAM = OpenAICompatibleProvider.stream
CRASHES = (RuntimeError("bug in an adapter"), ValueError("bad"), KeyError("choices"), TypeError("None"),
           UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), RecursionError("deep"))


@settings(BASE, max_examples=50)
@given(body=mostly_accepted, crash=st.sampled_from(CRASHES))
def test_an_injected_crash_is_a_500_envelope_with_a_ledger_row_and_no_leak(gateway_env, load_event, monkeypatch,
                                                                           body, crash) -> None:
    def crashing(self: Any, payload: Any) -> Any:
        raise crash

    monkeypatch.setattr(OpenAICompatibleProvider, "complete", crashing)
    event = chat_event(load_event)
    event["body"], event["isBase64Encoded"] = body
    result = run_gateway(gateway_env, event, crash=True)
    assert result.status != 200
    if result.status == 500:
        assert str(crash) not in result.body or len(str(crash)) < 6


@settings(BASE, max_examples=40)
@given(body=st.builds(lambda b: json.dumps({**b, "stream": True}), accepted_bodies), crash=st.sampled_from(CRASHES),
       after=st.integers(0, 6))
def test_a_crash_mid_stream_still_books_the_call_and_releases_the_budget(gateway_env, load_event, monkeypatch, body,
                                                                        crash, after) -> None:
    """The provider's stream breaks after ``after`` chunks (0: before the first): the answer is a 500 envelope
    or a stream that ends early, never an exception out of the body, and the call is booked once."""
    def crashing(self: Any, payload: Any) -> Any:
        for i, chunk in enumerate(REAL_STREAM(self, payload)):
            if i >= after:
                raise crash
            yield chunk
        raise crash

    monkeypatch.setattr(OpenAICompatibleProvider, "stream", crashing)
    event = chat_event(load_event, "chat_completion_stream")
    event["body"] = body
    request_id = event["requestContext"]["requestId"]
    before = len(gateway_env.simulator.calls)
    response = lambda_runtime.invoke_streaming("gateway_stream", event)
    payload = b"".join(response.body)
    check_answer(response.status, response.headers, payload, request_id, allow_500=True)
    assert str(crash).encode() not in payload or len(str(crash)) < 6
    admitted = response.status in (200, 500)
    check_books(gateway_env, request_id, admitted, before, provider_calls=1 if admitted else 0)


# --- regressions: the shrunk failing examples the properties found, pinned ---------------------------------
# Each was an unhandled exception (a Lambda error: API Gateway's bare 502, no envelope, no X-Request-ID) or a
# 500 after the provider call had been admitted, until the fix named beside it.

ARRAY_OF_NULL_FUNCTION = ('{"model": "gpt-4o-mini", "messages": [{"role": "system", '
                          '"tool_calls": [{"function": null}]}]}')
REGRESSION_BODIES = {
    # check_body: a base64 body must decode to UTF-8 (Powertools decoded it with .decode() and crashed)
    "base64-not-utf8": ("gA==", True),
    # json_loads: json.loads raises a plain ValueError past Python's 4300-digit int limit
    "int-over-4300-digits": (TEMPLATE % ("max_tokens", "1" + "0" * 5000), False),
    # json_loads: RecursionError from nesting, closed or not
    "deep-nesting": (nested("object", 5000), False),
    "deep-unterminated": ('{"a":' * 100_000, False),
    # json_loads: a lone surrogate passed validation and crashed the provider call (UnicodeEncodeError -> 500)
    "lone-surrogate": (CONTENT_TEMPLATE.replace("@", '"\\ud800"'), False),
    # json_loads: non-finite numbers passed validation and crashed the provider call (ValueError -> 500)
    "overflow-to-inf": (TEMPLATE % ("temperature", "1e309"), False),
    "nan": (TEMPLATE % ("temperature", "NaN"), False),
    "minus-infinity": (TEMPLATE % ("top_p", "-Infinity"), False),
    # openai_schema.ToolCall: token counting called .get on a tool call's function, null or a list (null is now
    # read as absent: see the test below)
    "tool-call-function-list": (ARRAY_OF_NULL_FUNCTION.replace("null", "[]"), False),
    "tool-calls-not-a-list": (ARRAY_OF_NULL_FUNCTION.replace('[{"function": null}]', "5"), False),
}


def invoke_function(function: str, event: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    if function == "gateway_stream":
        response = lambda_runtime.invoke_streaming(function, event)
        return response.status, response.headers, b"".join(response.body)
    result = Result(lambda_runtime.invoke(function, event))
    return result.status, result.headers, result.body.encode()


@pytest.mark.parametrize("function", ["gateway", "gateway_stream"])
@pytest.mark.parametrize("body", REGRESSION_BODIES.values(), ids=REGRESSION_BODIES.keys())
def test_regression_hostile_bodies_are_a_typed_400(gateway_env, load_event, function, body) -> None:
    event = chat_event(load_event, "chat_completion" if function == "gateway" else "chat_completion_stream")
    event["body"], event["isBase64Encoded"] = body
    request_id = event["requestContext"]["requestId"]
    status, headers, payload = invoke_function(function, event)
    error = check_answer(status, headers, payload, request_id)
    assert status == 400, payload
    assert error is not None and (error["type"], error["code"]) == ("invalid_request_error", "invalid_request")
    check_books(gateway_env, request_id, False, len(gateway_env.simulator.calls))
    assert gateway_env.simulator.calls == []


@pytest.mark.parametrize("function", ["gateway", "gateway_stream"])
def test_regression_a_tool_call_with_a_null_function_is_served_and_booked(gateway_env, load_event, function) -> None:
    """The shrunk example: ``"tool_calls": [{"function": null}]`` crashed token counting (AttributeError: 500 from
    the streaming function, an unhandled error from the gateway). A null function now reads as none."""
    event = chat_event(load_event, "chat_completion" if function == "gateway" else "chat_completion_stream")
    event["body"], event["isBase64Encoded"] = ARRAY_OF_NULL_FUNCTION, False
    request_id = event["requestContext"]["requestId"]
    status, headers, payload = invoke_function(function, event)
    check_answer(status, headers, payload, request_id)
    assert status == 200, payload
    check_books(gateway_env, request_id, True, 0)


@pytest.mark.parametrize("body", [("gA==", True), ("a", True), ("e30", True),
                                  ('{"name": "\\ud800", "tier": "free"}', False)],
                         ids=["not-utf8", "bad-padding", "no-padding", "lone-surrogate"])
def test_regression_admin_refuses_undecodable_bodies(gateway_env, load_event, body) -> None:
    """The admin API had no body checks: invalid base64 (binascii.Error) or non-UTF-8 bodies crashed it. (A lone
    surrogate was stored as a key's name; it is now refused as at the gateway.)"""
    event = load_event("admin_create_key")
    event["body"], event["isBase64Encoded"] = body
    result = Result(lambda_runtime.invoke("admin", event))
    error = check_answer(result.status, result.headers, result.body, event["requestContext"]["requestId"])
    assert result.status == 400 and error is not None and error["code"] == "invalid_request"


@pytest.mark.parametrize(("function", "name"), [("gateway", "models"), ("admin", "admin_create_key"),
                                                ("admin", "admin_list_keys")])
def test_regression_answers_built_by_the_resolver_carry_the_request_id(gateway_env, load_event, function,
                                                                       name) -> None:
    """GET /v1/models and the admin API's 2xx answers had no X-Request-ID."""
    event = load_event(name)
    result = Result(lambda_runtime.invoke(function, event))
    assert 200 <= result.status < 300
    assert result.header("X-Request-ID") == event["requestContext"]["requestId"]
