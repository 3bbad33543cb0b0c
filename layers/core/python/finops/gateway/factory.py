"""Composition root: one :class:`ChatGateway` per warm function, built on first request."""

from __future__ import annotations

from functools import lru_cache

from ..ledger.repository import LedgerRepository
from ..pricing import load_catalog
from ..settings import get_settings
from .service import ChatGateway, ProviderSet


@lru_cache(maxsize=1)
def gateway() -> ChatGateway:
    settings = get_settings()
    return ChatGateway(
        settings=settings,
        catalog=load_catalog(settings.price_catalog_path),
        providers=ProviderSet(settings),
        ledger=LedgerRepository(settings.ledger_table, settings.ledger_shards),
    )


def reset() -> None:
    """Forget cached settings and clients (tests and the local stack change the environment)."""
    gateway.cache_clear()
    get_settings.cache_clear()
