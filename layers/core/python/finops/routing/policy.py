"""Routing policy as configuration (``data/router/routing.json``): per customer tier, which concrete model
serves each model class (cheap / medium / strong), how many ``auto`` calls go to each class, and what happens
when a tier asks for a model it may not use.

Which models a tier may use at all stays in the budget policy (``data/budgets.json``); the router checks the
ladders against it (``Router.__init__``).
"""

from __future__ import annotations

import importlib.resources
import json
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

CLASSES: tuple[str, ...] = ("strong", "medium", "cheap")  # best first


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TierRouting(_Strict):
    cheap: str | None = None
    medium: str | None = None
    strong: str | None = None
    # Target shares of ``auto`` calls (calibrated on the validation split): strong, then medium.
    strong_share: float = Field(default=0.5, ge=0, le=1)
    medium_share: float = Field(default=0.0, ge=0, le=1)
    # Or a quality target: the share of the weak->strong quality gap to recover (overrides strong_share).
    target_pgr: float | None = Field(default=None, ge=0, le=1)
    # A concrete model the tier may not use: serve the tier's best model instead, or let the caller refuse.
    on_forbidden: Literal["downgrade", "refuse"] = "downgrade"
    # "adaptive": hold strong_share / medium_share on the tier's recent auto calls (``share_control``) once
    # enough were seen; "static": the validation cut-offs only. A quality target (target_pgr) is always static.
    share_control: Literal["adaptive", "static"] = "adaptive"

    @model_validator(mode="after")
    def _some_model(self) -> TierRouting:
        if not (self.cheap or self.medium or self.strong):
            raise ValueError("a tier needs at least one of cheap / medium / strong")
        if self.strong_share + self.medium_share > 1:
            raise ValueError("strong_share + medium_share must be <= 1")
        return self

    def model_of(self, cls: str) -> str | None:
        return getattr(self, cls)

    @property
    def classes(self) -> tuple[str, ...]:
        """The configured classes, best first."""
        return tuple(c for c in CLASSES if self.model_of(c))

    @property
    def top_model(self) -> str:
        return self.model_of(self.classes[0])  # type: ignore[return-value]


class FleetShareControl(_Strict):
    """Adaptive share control across execution environments (``fleet_scores``), when the router has a score
    store: the scores of the last ``hours`` UTC hours; written every ``flush_every`` scores or
    ``flush_seconds``, re-read every ``refresh_seconds``."""

    hours: int = Field(default=2, ge=1, le=48)
    flush_every: int = Field(default=50, ge=1)
    flush_seconds: float = Field(default=30.0, gt=0)
    refresh_seconds: float = Field(default=60.0, gt=0)


class RoutingPolicy(_Strict):
    default_strategy: str = "classifier"
    reference_model: str = "gpt-4o"  # the counterfactual for auto calls of a tier without a strong model
    auto_models: tuple[str, ...] = ("auto",)
    default_tier: str = "free"  # the routing of a tier this file does not list
    # adaptive share control: how many recent auto calls per tier are kept, and how many before they count
    adaptive_window: int = Field(default=2000, ge=1)
    adaptive_min_samples: int = Field(default=200, ge=1)
    fleet: FleetShareControl = FleetShareControl()
    tiers: dict[str, TierRouting]

    @model_validator(mode="after")
    def _default_tier_exists(self) -> RoutingPolicy:
        if self.default_tier not in self.tiers:
            raise ValueError(f"default_tier {self.default_tier!r} is not a tier")
        return self

    def tier(self, name: str) -> TierRouting:
        return self.tiers.get(name) or self.tiers[self.default_tier]

    def is_auto(self, model: str) -> bool:
        return model.strip().lower() in {m.lower() for m in self.auto_models}


@lru_cache(maxsize=4)
def load_routing_policy(path: str | None = None) -> RoutingPolicy:
    raw = Path(path).read_text() if path else (
        importlib.resources.files("finops") / "data" / "router" / "routing.json").read_text()
    return RoutingPolicy.model_validate(json.loads(raw))
