"""Several iterables read at once, their items merged into one iterator: the ledger's ``by_day`` shards, whose
reads are network-bound (DynamoDB query pages), read side by side instead of one after another.

Items come in arrival order. Memory stays bounded (at most ``buffer`` items wait between the readers and the
consumer); a reader's failure is raised to the consumer; a consumer that stops early (closes the iterator)
stops the readers at their next item and cancels the sources not started yet.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
_DONE = object()  # one source is exhausted
POLL_SECONDS = 0.1  # how often a reader blocked on a full buffer checks whether the consumer is gone


@dataclass(frozen=True)
class _Failed:
    error: BaseException


def merged(sources: Iterable[Callable[[], Iterable[T]]], workers: int, buffer: int = 1000) -> Iterator[T]:
    """The items of every ``source()``, read by up to ``workers`` threads at once."""
    sources = list(sources)
    out: queue.Queue[Any] = queue.Queue(maxsize=buffer)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def read(source: Callable[[], Iterable[T]]) -> None:
        try:
            for item in source():
                if not put(item):
                    return
        except BaseException as exc:  # handed to the consumer, which raises it
            put(_Failed(exc))
            return
        put(_DONE)

    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="ledger-read")
    try:
        for source in sources:
            pool.submit(read, source)
        remaining = len(sources)
        while remaining:
            item = out.get()
            if item is _DONE:
                remaining -= 1
            elif isinstance(item, _Failed):
                raise item.error
            else:
                yield item
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
