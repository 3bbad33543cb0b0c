from __future__ import annotations

import json

import pytest
from finops.settings import DEFAULT_ENVIRONMENTS, Settings, get_settings


def test_defaults() -> None:
    s = Settings()
    assert s.enforcement_mode == "enforce"
    assert s.environments == ("production", "staging", "development", "test")
    assert s.environments == DEFAULT_ENVIRONMENTS
    assert s.max_body_bytes == 1024 * 1024
    assert s.project_departments == {}
    assert set(s.providers) == {"openai", "groq", "anthropic", "bedrock"}
    assert s.providers["bedrock"].secret_name is None  # IAM, no API key
    assert s.retry.attempts_per_model == 2 and s.retry.max_attempts == 4
    assert s.fallbacks["gpt-4o"] == ("claude-sonnet-4-5", "llama-3.3-70b-versatile")
    assert s.stream.on_budget_exhausted == "stop"


def test_environments_from_a_comma_list(monkeypatch: pytest.MonkeyPatch) -> None:
    """The documented form: FINOPS_ENVIRONMENTS=production,qa (a comma list)."""
    monkeypatch.setenv("FINOPS_ENVIRONMENTS", "production, qa ,sandbox")
    assert Settings().environments == ("production", "qa", "sandbox")


def test_environments_from_a_single_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINOPS_ENVIRONMENTS", "qa")
    assert Settings().environments == ("qa",)


def test_environments_from_a_json_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINOPS_ENVIRONMENTS", '["prod", "qa"]')
    assert Settings().environments == ("prod", "qa")


def test_environments_keyword_comma_string() -> None:
    assert Settings(environments="a, b").environments == ("a", "b")


def test_enforcement_mode_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINOPS_ENFORCEMENT_MODE", "observe")
    assert Settings().enforcement_mode == "observe"
    monkeypatch.setenv("FINOPS_ENFORCEMENT_MODE", "lenient")
    with pytest.raises(ValueError, match="enforcement_mode"):
        Settings()


def test_project_departments_json_map(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINOPS_PROJECT_DEPARTMENTS", json.dumps({"checkout-web": "retail", "x": "y"}))
    assert Settings().project_departments == {"checkout-web": "retail", "x": "y"}


def test_providers_json_and_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINOPS_PROVIDERS", json.dumps({
        "openai": {"base_url": "http://127.0.0.1:1/v1", "secret_name": "s", "timeout_seconds": 0.5}}))
    s = Settings()
    assert set(s.providers) == {"openai"}
    assert s.providers["openai"].timeout_seconds == 0.5
    assert s.providers["openai"].connect_timeout_seconds == 5.0


def test_non_positive_timeout_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINOPS_PROVIDERS", json.dumps({
        "openai": {"base_url": "http://x", "secret_name": "s", "timeout_seconds": 0}}))
    with pytest.raises(ValueError, match="timeout_seconds"):
        Settings()


def test_max_body_bytes_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINOPS_MAX_BODY_BYTES", "2048")
    assert Settings().max_body_bytes == 2048
    monkeypatch.setenv("FINOPS_MAX_BODY_BYTES", "0")
    with pytest.raises(ValueError, match="max_body_bytes"):
        Settings()


def test_get_settings_is_cached_until_cleared(monkeypatch: pytest.MonkeyPatch) -> None:
    get_settings.cache_clear()
    monkeypatch.setenv("FINOPS_LEDGER_TABLE", "first")
    assert get_settings().ledger_table == "first"
    monkeypatch.setenv("FINOPS_LEDGER_TABLE", "second")
    assert get_settings().ledger_table == "first"
    get_settings.cache_clear()
    assert get_settings().ledger_table == "second"
    get_settings.cache_clear()
