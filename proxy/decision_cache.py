"""A cache of the answers a policy engine gave, by input: each kept for a time to live, and only
while the engine's answers name the revision it was given under (:mod:`proxy.policy` says why);
misses for the same input while the engine is asked share its one answer. Beside its count of
entries, a cache keeps at most :data:`MAX_CACHED_BYTES` of inputs: an input holds the statement
as the caller wrote it and its parameters' names, and a count alone would let 8,192 distinct
long statements hold gigabytes, expired or not (an entry past its time to live goes only when it is
looked up again or pushed out)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

from prometheus_client import Counter

from proxy.lru import BoundedLRU

_T = TypeVar("_T")
# An input in a canonical form: equal inputs, equal keys (proxy.policy makes them).
CacheKey = bytes | str
# The inputs a cache keeps, in bytes of memory, at most all together.
MAX_CACHED_BYTES = 64 * 1024 * 1024


class DecisionCache(Generic[_T]):
    """Answers OPA gave, by input, each for ``ttl_s`` and only while OPA names the revision it
    was given under (see the module docstring); least recently used beyond ``size``. An answer
    is kept as ``reused`` makes it (marked as not asked for this request), once, so that a hit
    hands out the kept value itself rather than a copy per request."""

    def __init__(
        self,
        name: str,
        size: int,
        ttl_s: float,
        clock: Callable[[], float],
        lookups: Counter,
        reused: Callable[[_T], _T],
    ) -> None:
        self._reused = reused
        self._size = size if ttl_s > 0 else 0
        self._ttl_s = ttl_s
        self._clock = clock
        self._hit, self._miss = lookups.labels(name, "hit"), lookups.labels(name, "miss")
        # By input: the answer, and until when it is kept.
        self._entries: BoundedLRU[CacheKey, tuple[_T, float]] = BoundedLRU(
            size, MAX_CACHED_BYTES, sys.getsizeof
        )
        self._revision: str | None = None
        # How many times the revision changed: an answer to a question asked before the last
        # change may name the revision before it, and must not bring it back.
        self.generation = 0
        # OPA's answers on their way, by key: the misses that come meanwhile wait for them.
        self._asking: dict[CacheKey, asyncio.Task[_T]] = {}

    def seen(self, revision: str | None, asked_at: int) -> None:
        """OPA just answered under ``revision`` a question asked at generation ``asked_at``: a
        change empties the cache, unless the revision changed since the question was asked (it
        may be the revision before that change, answered late: then it changes nothing, and
        :meth:`put` keeps nothing of it)."""
        if revision != self._revision and asked_at == self.generation:
            self._revision = revision
            self.generation += 1
            self._entries.clear()

    def get(self, key: CacheKey) -> _T | None:
        entry = self._entries.get(key)
        if entry is not None and self._clock() < entry[1]:
            self._hit.inc()
            return entry[0]
        if entry is not None:
            self._entries.discard(key)
        self._miss.inc()
        return None

    async def ask_once(
        self,
        key: CacheKey,
        ask: Callable[[], Coroutine[Any, Any, _T]],
        revision_of: Callable[[_T], str | None],
    ) -> _T:
        """``ask()`` for a key the cache missed, kept for reuse. The answer, as ``reused`` makes
        it if another request's question for the key was already on its way (reused, as if
        cached). A failure fails every request that waits for it (each fails closed). With reuse
        off, asks every time. The question runs as a task of its own: a caller that goes away
        leaves it to the others."""
        if self._size == 0:
            return await ask()
        asking = self._asking.get(key)
        if asking is not None:
            return self._reused(await asyncio.shield(asking))
        task = asyncio.ensure_future(ask())
        self._asking[key] = task

        def done(finished: asyncio.Task[_T]) -> None:
            if self._asking.get(key) is finished:
                del self._asking[key]
            if not finished.cancelled() and finished.exception() is None:
                value = finished.result()
                self.put(key, value, revision_of(value))

        task.add_done_callback(done)
        return await asyncio.shield(task)

    def put(self, key: CacheKey, value: _T, revision: str | None) -> None:
        if self._size == 0 or revision != self._revision:
            return  # a newer revision was seen while this one was asked: never keep it
        self._entries.put(key, (self._reused(value), self._clock() + self._ttl_s))
