"""Baseline: a seeded pseudo-random score per prompt (stable for the same prompt and seed, thread-safe)."""

from __future__ import annotations

import hashlib

from .base import Strategy


class RandomStrategy(Strategy):
    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self._salt = seed.to_bytes(8, "little", signed=True)

    def score(self, text: str) -> float:
        digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8, key=self._salt).digest()
        return int.from_bytes(digest, "little") / 2**64
