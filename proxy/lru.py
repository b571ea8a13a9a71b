"""A least-recently-used map bounded twice: in entries, and in the memory its keys take.

The caches keyed by what a caller sends (a statement's text, a policy input that holds it) need
both bounds: a count of entries alone lets distinct long keys hold gigabytes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

_K = TypeVar("_K")
_V = TypeVar("_V")


class BoundedLRU(Generic[_K, _V]):
    """At most ``max_entries`` entries whose keys ``cost`` at most ``max_bytes`` together; the
    least recently used go first, and a key that alone costs more is not kept."""

    def __init__(self, max_entries: int, max_bytes: int, cost: Callable[[_K], int]) -> None:
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._cost = cost
        self._entries: OrderedDict[_K, _V] = OrderedDict()
        self._bytes = 0

    def get(self, key: _K) -> _V | None:
        """The value kept for ``key``, which is now the most recently used."""
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: _K, value: _V) -> None:
        self.discard(key)
        cost = self._cost(key)
        if cost > self._max_bytes:
            return
        self._entries[key] = value
        self._bytes += cost
        while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
            gone, _ = self._entries.popitem(last=False)
            self._bytes -= self._cost(gone)

    def discard(self, key: _K) -> None:
        if self._entries.pop(key, None) is not None:
            self._bytes -= self._cost(key)

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)
