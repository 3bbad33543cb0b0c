"""``Router.route``: which concrete model serves a chat call, and why. Free of AWS and HTTP.

- ``model: "auto"``: the strategy scores the prompt (last user message); the tier's cut-offs pick the class
  (strong / medium / cheap) and the tier's ladder the model. A tier with one class skips scoring. The
  cut-offs are the validation-calibrated ones until the tier has seen enough auto calls, then (share control
  ``adaptive``, the default) the quantiles of its recent scores that hold its target shares: the whole fleet's
  recent scores when the router has a score store (``fleet_scores``), else this execution environment's.
- a concrete model: honoured if the tier may use it; otherwise downgraded to the tier's best model
  (``downgraded``) or, when the tier says ``refuse`` (or routing is off), returned as asked with
  ``forbidden`` set so the caller answers 403.
- ``X-FinOps-Route: off``: no routing. ``auto`` then gets the tier's best model; a concrete model is only
  checked. ``X-FinOps-Route: <strategy>`` (e.g. ``length``) routes this call with that strategy.

``counterfactual_model`` is what the call would have used without the router: the tier's strong model (or
the policy's reference model) for ``auto``, the requested model otherwise. The ledger prices the same usage
on it for savings reports.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..budgets.policy import BudgetPolicy, load_policy
from ..pricing import PriceCatalog, load_catalog
from .features import prompt_text
from .fleet_scores import FleetScores, ScoreStore
from .policy import RoutingPolicy, TierRouting, load_routing_policy
from .share_control import AdaptiveCutoffs, RecentScores, ScoreHistogram
from .strategies import STRATEGIES, Cutoffs, Strategy, get_strategy

ROUTE_HEADER = "X-FinOps-Route"
OFF = ("off", "none", "false", "0", "disabled")
ON = ("", "on", "auto", "true", "1", "default")


@dataclass(frozen=True)
class RouteDecision:
    model: str  # the model to call (canonical name when known)
    requested_model: str
    strategy: str | None  # the strategy that picked the model; None when the router did not choose
    score: float | None  # the strategy's score in [0, 1], when it scored the prompt
    model_class: str | None  # strong / medium / cheap, for auto calls
    reason: str
    counterfactual_model: str  # what the call would have used without routing (the ledger's reference)
    routed: bool = False  # the router chose the model (``auto``)
    downgraded: bool = False  # a concrete model the tier may not use was replaced
    forbidden: bool = False  # a concrete model the tier may not use, to refuse (403); ``model`` is as asked
    route_ms: float = 0.0


AllowsFn = Callable[[str, str], bool]  # (tier, canonical model) -> may this tier use it?
CanonicalFn = Callable[[str], str]  # alias -> canonical model name (unknown names unchanged)


def _allows_of(budgets: BudgetPolicy) -> AllowsFn:
    """Model access from the budget policy (the one the governor enforces). A routing tier the budget policy
    does not define is not checked: its calls use the default tier's ladder and the governor still decides."""

    def allows(tier: str, model: str) -> bool:
        return tier not in budgets.tiers or budgets.tier(tier).allows(model)

    return allows


def _canonical_of(catalog: PriceCatalog) -> CanonicalFn:
    def canonical(model: str) -> str:
        return catalog.get(model).model if model in catalog else model

    return canonical


class Router:
    def __init__(self, policy: RoutingPolicy | None = None, *, allows: AllowsFn | None = None,
                 canonical: CanonicalFn | None = None,
                 strategies: Mapping[str, Strategy] | None = None, score_store: ScoreStore | None = None,
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None) -> None:
        self.policy = policy or load_routing_policy()
        self.allows = allows or _allows_of(load_policy())
        self.canonical = canonical or (lambda m: m)
        self._strategies: dict[str, Strategy] = dict(strategies or {})
        self._cutoffs: dict[tuple[str, str], Cutoffs] = {}
        self._recent: dict[tuple[str, str], RecentScores] = {}  # (strategy, tier) -> scores of recent auto calls
        self._rng = rng or random.Random()  # breaks ties at an adaptive cut-off (share_control)
        fleet = self.policy.fleet
        self.fleet = None if score_store is None else FleetScores(
            score_store, hours=fleet.hours, flush_every=fleet.flush_every, flush_seconds=fleet.flush_seconds,
            refresh_seconds=fleet.refresh_seconds, clock=clock)
        self._auto = frozenset(m.strip().lower() for m in self.policy.auto_models)
        if self.policy.default_strategy not in STRATEGIES and self.policy.default_strategy not in self._strategies:
            raise ValueError(f"unknown default strategy {self.policy.default_strategy!r}")
        for name, tier in self.policy.tiers.items():
            for cls in tier.classes:
                model = tier.model_of(cls)
                if not self.allows(name, self.canonical(model)):  # type: ignore[arg-type]
                    raise ValueError(f"routing tier {name!r}: its {cls} model {model!r} is not allowed for the tier")

    @classmethod
    def for_policies(cls, budgets: BudgetPolicy, catalog: PriceCatalog, policy: RoutingPolicy | None = None,
                     score_store: ScoreStore | None = None) -> Router:
        """A router checking model access against ``budgets`` and resolving aliases with ``catalog``; with
        ``score_store``, holding its shares on the fleet's recent scores."""
        return cls(policy or load_routing_policy(), allows=_allows_of(budgets), canonical=_canonical_of(catalog),
                   score_store=score_store)

    @classmethod
    def default(cls) -> Router:
        """The shipped routing policy, the budget policy's tier permissions and the price catalog's aliases."""
        return cls.for_policies(load_policy(), load_catalog())

    # --- strategies ---------------------------------------------------------------------------------------

    def strategy(self, name: str) -> Strategy:
        if name not in self._strategies:
            self._strategies[name] = get_strategy(name)
        return self._strategies[name]

    def cutoffs(self, strategy: Strategy, tier_name: str, tier: TierRouting) -> Cutoffs:
        key = (strategy.name, tier_name)
        if key not in self._cutoffs:
            self._cutoffs[key] = strategy.cutoffs(tier.strong_share, tier.medium_share, tier.target_pgr)
        return self._cutoffs[key]

    @staticmethod
    def adapts(strategy: Strategy, tier: TierRouting) -> bool:
        """Does this tier hold its shares on recent calls with this strategy? Not for a quality target (that
        needs labels) nor for a strategy that always picks the same class."""
        return tier.share_control == "adaptive" and tier.target_pgr is None and not strategy.constant

    def adaptive_cutoffs(self, strategy: Strategy, tier_name: str, tier: TierRouting) -> AdaptiveCutoffs | None:
        """Cut-offs holding the tier's target shares on its recent auto calls: the fleet's, else this
        environment's, whichever first holds ``adaptive_min_samples``; None while neither does (or the tier does
        not adapt)."""
        if not self.adapts(strategy, tier):
            return None
        enough = self.policy.adaptive_min_samples
        recent: RecentScores | ScoreHistogram | None = None
        if self.fleet is not None:
            recent = self.fleet.histogram(_fleet_key(strategy.name, tier_name))
            source = "the fleet's recent calls"
        if recent is None or len(recent) < enough:
            recent = self._recent.get((strategy.name, tier_name))
            source = "recent calls"
        if recent is None or len(recent) < enough:
            return None
        strong = recent.cut_for_share(tier.strong_share)
        medium = recent.cut_for_share(tier.strong_share + tier.medium_share) if tier.medium_share > 0 else strong
        return AdaptiveCutoffs(strong, medium, source)

    def observe(self, strategy: Strategy, tier_name: str, score: float) -> None:
        key = (strategy.name, tier_name)
        if key not in self._recent:
            self._recent[key] = RecentScores(self.policy.adaptive_window)
        self._recent[key].add(score)
        if self.fleet is not None:
            self.fleet.record(_fleet_key(strategy.name, tier_name), score)

    def warm(self) -> None:
        """Load the default strategy (the classifier artifact) now, e.g. at Lambda init."""
        self.strategy(self.policy.default_strategy).score("warm up")

    # --- the decision -------------------------------------------------------------------------------------

    def route(self, messages: Iterable[Mapping[str, Any]] | str, requested_model: str, tier: str,
              route_header: str | None = None) -> RouteDecision:
        started = time.perf_counter()
        decision = self._route(messages, requested_model, tier, route_header)
        object.__setattr__(decision, "route_ms", (time.perf_counter() - started) * 1000)
        return decision

    def _route(self, messages: Iterable[Mapping[str, Any]] | str, requested_model: str, tier_name: str,
               route_header: str | None) -> RouteDecision:
        tier = self.policy.tier(tier_name)
        header = (route_header or "").strip().lower()
        off = header in OFF
        note = ""
        strategy_name = self.policy.default_strategy
        if not off and header not in ON:
            if header in STRATEGIES or header in self._strategies:
                strategy_name = header
            else:
                note = f" (unknown {ROUTE_HEADER} value {route_header!r} ignored)"

        if requested_model.strip().lower() in self._auto:
            counterfactual = tier.strong or self.policy.reference_model
            if off:
                return RouteDecision(tier.top_model, requested_model, None, None, tier.classes[0],
                                     "routing off: the tier's best model", counterfactual)
            if len(tier.classes) == 1:
                return RouteDecision(tier.top_model, requested_model, None, None, tier.classes[0],
                                     f"the tier has one model class ({tier.classes[0]})" + note, counterfactual,
                                     routed=True)
            strategy = self.strategy(strategy_name)
            score = strategy.score(prompt_text(messages))
            adaptive = self.adaptive_cutoffs(strategy, tier_name, tier)
            if adaptive is not None:
                wanted = adaptive.decide(score, self._rng.random())
                how = f" (cut-off {adaptive.strong.value:.3f} from {adaptive.source})"
            else:
                cut = self.cutoffs(strategy, tier_name, tier)
                wanted = "strong" if score >= cut.strong else "medium" if score >= cut.medium else "cheap"
                how = ""
            if self.adapts(strategy, tier):
                self.observe(strategy, tier_name, score)  # after deciding: this call is judged on the ones before
            cls = self._nearest_class(tier, wanted)
            return RouteDecision(tier.model_of(cls), requested_model, strategy.name, score, cls,  # type: ignore[arg-type]
                                 f"{strategy.name} score {score:.3f} -> {wanted}"
                                 + (f" (served by {cls})" if cls != wanted else "") + how + note,
                                 counterfactual, routed=True)

        model = self.canonical(requested_model)
        if self.allows(tier_name, model):
            return RouteDecision(model, requested_model, None, None, None, "requested model", model)
        if off or tier.on_forbidden == "refuse":
            return RouteDecision(model, requested_model, None, None, None,
                                 f"model not allowed for tier {tier_name!r}", model, forbidden=True)
        return RouteDecision(tier.top_model, requested_model, None, None, tier.classes[0],
                             f"model not allowed for tier {tier_name!r}: downgraded to the tier's best model",
                             model, downgraded=True)

    @staticmethod
    def _nearest_class(tier: TierRouting, wanted: str) -> str:
        """The wanted class if configured, else the closest one. A medium call in a tier without a medium model
        goes to cheap: the strong cut-off was calibrated for the tier's strong-call share."""
        if tier.model_of(wanted):
            return wanted
        order = {"strong": ("medium", "cheap"), "medium": ("cheap", "strong"), "cheap": ("medium", "strong")}
        return next(c for c in order[wanted] if tier.model_of(c))


def _fleet_key(strategy: str, tier: str) -> str:
    return f"{strategy}#{tier}"
