"""Composition root: one :class:`ChatGateway` per warm function, built on first request."""

from __future__ import annotations

from functools import lru_cache

from .. import aws
from ..budgets.alerts import AlertPublisher
from ..budgets.governor import BudgetGovernor
from ..budgets.policy import load_policy
from ..budgets.reconciler import Reconciler
from ..budgets.store import BucketStore
from ..keys.service import KeyService
from ..ledger.repository import LedgerRepository
from ..pricing import load_catalog
from ..routing import Router
from ..routing.score_store import DynamoScoreStore
from ..settings import Settings, get_settings
from .service import ChatGateway, ProviderSet


def governor(settings: Settings) -> BudgetGovernor:
    policy = load_policy(settings.budget_policy_path)
    dynamodb = aws.client("dynamodb")
    alerts = AlertPublisher(
        dynamodb, settings.budgets_table, policy.alert_thresholds,
        sns=aws.client("sns") if settings.alerts_topic_arn else None, topic_arn=settings.alerts_topic_arn,
        events=aws.client("events") if settings.alerts_event_bus else None, event_bus=settings.alerts_event_bus)
    return BudgetGovernor(policy, BucketStore(dynamodb, settings.budgets_table, ledger_table=settings.ledger_table),
                          alerts)


def keys(settings: Settings) -> KeyService:
    policy = load_policy(settings.budget_policy_path)
    return KeyService(settings.keys_table, set(policy.tiers), cache_ttl_seconds=settings.key_cache_seconds)


def router(settings: Settings) -> Router:
    """The router, checking model access against the same budget policy the governor enforces and holding its
    strong-call shares on the whole fleet's scores (kept in the budgets table)."""
    built = Router.for_policies(load_policy(settings.budget_policy_path), load_catalog(settings.price_catalog_path),
                                score_store=DynamoScoreStore(aws.client("dynamodb"), settings.budgets_table))
    built.warm()
    return built


@lru_cache(maxsize=1)
def gateway() -> ChatGateway:
    settings = get_settings()
    return ChatGateway(
        settings=settings,
        catalog=load_catalog(settings.price_catalog_path),
        providers=ProviderSet(settings),
        ledger=LedgerRepository(settings.ledger_table, settings.ledger_shards),
        governor=governor(settings),
        keys=keys(settings) if settings.auth_mode == "keys" else None,
        router=router(settings),
    )


def reconciler() -> Reconciler:
    settings = get_settings()
    policy = load_policy(settings.budget_policy_path)
    return Reconciler(
        BucketStore(aws.client("dynamodb"), settings.budgets_table, ledger_table=settings.ledger_table),
        LedgerRepository(settings.ledger_table, settings.ledger_shards), policy.reconcile_policy,
        load_catalog(settings.price_catalog_path).version)


def reset() -> None:
    """Forget cached settings and clients (tests and the local stack change the environment)."""
    gateway.cache_clear()
    get_settings.cache_clear()
    aws.client.cache_clear()
