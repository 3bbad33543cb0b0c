"""Model routing: pick the cheapest adequate model for a chat call.

``Router.default().route(messages, requested_model, tier, route_header)`` -> ``RouteDecision``. The shipped
complexity classifier lives in ``finops/data/router/`` (built by ``scripts/train_router.py``); the baselines
(length, seed heuristic, random, always weak/strong) are strategies beside it (``strategies/``).
"""

from __future__ import annotations

from .policy import RoutingPolicy, TierRouting, load_routing_policy
from .router import ROUTE_HEADER, RouteDecision, Router

__all__ = ["ROUTE_HEADER", "RouteDecision", "Router", "RoutingPolicy", "TierRouting", "load_routing_policy"]
