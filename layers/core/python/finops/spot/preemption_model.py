"""A seeded Spot preemption model for the backtest. A model, not data: every number below is an assumption.

AWS publishes no per-zone interruption rates. What it does publish is the Spot Instance Advisor's
"frequency of interruption" per instance type and region: the rate at which Spot reclaimed capacity during the
trailing month, in bands ``<5%``, ``5-10%``, ``10-15%``, ``15-20%`` and ``>20%``
(https://aws.amazon.com/ec2/spot/instance-advisor/). We read a band as the probability that an instance kept
for a month (730 h) is interrupted at least once, so a monthly probability ``p`` is the constant hazard
``-ln(1 - p) / 730`` per hour.

The per-hour hazard of a zone then rises with what the hunter also sees:

- **Price level** (Spot / On-Demand), log-linearly between calibration points: at the day's 30% floor (deep
  spare capacity) the middle of the 5-10% band; 50% -> 10-15%; 70% -> 15-20%; 85% -> 25% (inside the
  open-ended ``>20%`` band); at the On-Demand price (no spare capacity, beyond any band) one interruption per
  20 instance-hours (``at_on_demand_per_hour`` = 0.05). Ratios outside [0.30, 1.0] are clamped.
- **Volatility**: times ``1 + cv / cv_reference`` (a 5% CV doubles it) and ``1 + 0.5 * changes / 12``.
- **Clustering**: reclaims come in waves, so for a while after a preemption the same zone is riskier:
  times ``1 + cluster_boost * 0.5 ** (hours since that preemption / cluster_half_life_hours)`` (x10 at once,
  x5.5 an hour later). This is what a cooldown can exploit; ``cluster_boost=0`` turns it off.
- **Scale**: ``scale`` multiplies everything, for sensitivity (GPU types often sit in the ``>20%`` band, which
  has no upper edge).

Deterministic for a seed: the backtest draws each launch's time to interruption from a numpy ``Generator``.
"""

from __future__ import annotations

import itertools
import math

from pydantic import BaseModel, Field

HOURS_PER_MONTH = 730.0


def monthly_to_hourly(probability: float) -> float:
    """The constant per-hour hazard that interrupts a month-long instance with this probability."""
    return -math.log(1.0 - probability) / HOURS_PER_MONTH


class PreemptionModel(BaseModel, frozen=True):
    # (price ratio, monthly interruption probability) calibration points, ratios increasing
    bands: tuple[tuple[float, float], ...] = ((0.30, 0.075), (0.50, 0.125), (0.70, 0.175), (0.85, 0.25))
    at_on_demand_per_hour: float = Field(default=0.05, gt=0)
    cv_reference: float = Field(default=0.05, gt=0)
    changes_reference: float = Field(default=12.0, gt=0)
    changes_factor: float = Field(default=0.5, ge=0)
    cluster_boost: float = Field(default=9.0, ge=0)
    cluster_half_life_hours: float = Field(default=1.0, gt=0)
    scale: float = Field(default=1.0, ge=0)

    def base_hazard(self, price_ratio: float) -> float:
        """Per-hour hazard from the price level alone (log-linear between calibration points)."""
        points = [(ratio, monthly_to_hourly(p)) for ratio, p in self.bands] + [(1.0, self.at_on_demand_per_hour)]
        if price_ratio <= points[0][0]:
            return points[0][1]
        for (r0, h0), (r1, h1) in itertools.pairwise(points):
            if price_ratio <= r1:
                w = (price_ratio - r0) / (r1 - r0)
                return math.exp(math.log(h0) + w * (math.log(h1) - math.log(h0)))
        return points[-1][1]

    def hazard(self, *, price_ratio: float, cv: float = 0.0, changes: int = 0,
               hours_since_preemption: float | None = None) -> float:
        """Per-hour interruption hazard of a running Spot instance in a zone with these statistics."""
        rate = self.base_hazard(price_ratio)
        rate *= 1.0 + cv / self.cv_reference
        rate *= 1.0 + self.changes_factor * changes / self.changes_reference
        if hours_since_preemption is not None and hours_since_preemption >= 0:
            rate *= 1.0 + self.cluster_boost * 0.5 ** (hours_since_preemption / self.cluster_half_life_hours)
        return rate * self.scale
