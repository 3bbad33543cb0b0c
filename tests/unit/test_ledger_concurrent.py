"""``ledger.concurrent.merged``: several sources read at once into one iterator."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator

import pytest
from finops.ledger.concurrent import merged


def readers_alive() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("ledger-read")]


def test_every_item_of_every_source_arrives_once() -> None:
    sources = [lambda k=k: range(k * 1000, k * 1000 + k * 37) for k in range(12)]
    got = list(merged(sources, workers=3, buffer=5))
    assert sorted(got) == sorted(itertools.chain.from_iterable(s() for s in sources))
    assert readers_alive() == []


def test_the_sources_are_read_at_the_same_time() -> None:
    """Each source waits until all of them have started: only concurrent readers get past the barrier."""
    barrier = threading.Barrier(4, timeout=10)

    def source(k: int) -> Iterator[int]:
        barrier.wait()
        yield k

    assert sorted(merged([lambda k=k: source(k) for k in range(4)], workers=4)) == [0, 1, 2, 3]


def test_a_failing_source_is_raised_to_the_consumer() -> None:
    def broken() -> Iterator[int]:
        yield 1
        raise RuntimeError("query failed")

    with pytest.raises(RuntimeError, match="query failed"):
        list(merged([lambda: range(10_000), broken], workers=2, buffer=3))
    assert readers_alive() == []


def test_a_consumer_that_stops_early_stops_the_readers() -> None:
    started = []

    def endless(k: int) -> Iterator[int]:
        started.append(k)
        yield from itertools.count()

    items = merged([lambda k=k: endless(k) for k in range(6)], workers=2, buffer=4)
    assert len(list(itertools.islice(items, 50))) == 50
    items.close()  # returns once every reader has stopped; the sources not started yet never start
    assert readers_alive() == []
    assert len(started) <= 3
