"""Unit tests build their own Settings; nothing leaks in from the process environment."""

from __future__ import annotations

import os

import pytest
from finops.gateway import factory


@pytest.fixture(autouse=True)
def _clean_finops_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("FINOPS_") or name in ("OPENAI_API_KEY", "GROQ_API_KEY"):
            monkeypatch.delenv(name)
    factory.reset()
