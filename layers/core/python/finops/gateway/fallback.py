"""Which models a call may try, in what order, and how long to wait between tries.

A call tries its model up to ``attempts_per_model`` times, then each model of its fallback chain, never
more than ``max_attempts`` in all. Only retryable provider errors (rate limit, overload, 5xx, timeout) move
on; the wait before a retry of the same model is exponential backoff with full jitter, or the provider's
``Retry-After`` when it sent one (a wait longer than ``max_delay_ms`` skips straight to the next model).
Moving to the next model does not wait: it is another provider.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..errors import ProviderError
from ..pricing import ModelPrice
from ..settings import RetryPolicy


@dataclass(frozen=True)
class Attempt:
    number: int  # 0 for the first try of the call
    price: ModelPrice
    delay_s: float  # wait before this attempt
    fallback: bool  # a model other than the first


class AttemptPlan:
    """Iterate the attempts; call :meth:`failed` with each retryable error before asking for the next."""

    def __init__(self, chain: list[ModelPrice], policy: RetryPolicy,
                 jitter: Callable[[float, float], float] = random.uniform) -> None:
        self.chain = chain
        self.policy = policy
        self.jitter = jitter
        self._last: ProviderError | None = None

    def failed(self, error: ProviderError) -> None:
        self._last = error

    def backoff(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1-based) of the same model."""
        cap = self.policy.max_delay_ms / 1000
        wait = self.jitter(0.0, min(cap, self.policy.base_delay_ms / 1000 * 2 ** (retry - 1)))
        if self._last is not None and self._last.retry_after is not None:
            wait = max(wait, self._last.retry_after)
        return wait

    def __iter__(self) -> Iterator[Attempt]:
        number = 0
        cap = self.policy.max_delay_ms / 1000
        for index, price in enumerate(self.chain):
            for retry in range(self.policy.attempts_per_model):
                if number >= self.policy.max_attempts:
                    return
                delay = 0.0
                if retry:
                    delay = self.backoff(retry)
                    if delay > cap:  # the provider asks for a longer pause than we hold a caller for
                        break
                yield Attempt(number, price, delay, fallback=index > 0)
                number += 1


def chain_for(first: ModelPrice, fallbacks: dict[str, tuple[str, ...]],
              usable: Callable[[str], ModelPrice | None]) -> list[ModelPrice]:
    """``first`` then its configured fallbacks that ``usable`` accepts (tier allows it, a provider serves it)."""
    chain = [first]
    for name in fallbacks.get(first.model, ()):
        price = usable(name)
        if price is not None and all(p.model != price.model for p in chain):
            chain.append(price)
    return chain
