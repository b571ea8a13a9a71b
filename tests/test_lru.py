"""The bounded map the analysis and decision caches keep their entries in."""

from __future__ import annotations

from proxy.lru import BoundedLRU


def test_the_least_recently_used_go_first_beyond_the_count() -> None:
    lru: BoundedLRU[str, int] = BoundedLRU(2, 1_000, len)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1  # now the most recently used
    lru.put("c", 3)
    assert (lru.get("a"), lru.get("b"), lru.get("c")) == (1, None, 3)
    assert len(lru) == 2


def test_the_keys_cost_is_bounded_and_a_key_too_dear_is_not_kept() -> None:
    lru: BoundedLRU[str, int] = BoundedLRU(100, 10, len)
    lru.put("aaaa", 1)
    lru.put("bbbb", 2)
    lru.put("cccc", 3)  # 12 > 10: the oldest goes
    assert (lru.get("aaaa"), lru.get("bbbb"), lru.get("cccc")) == (None, 2, 3)
    lru.put("x" * 11, 4)
    assert lru.get("x" * 11) is None and len(lru) == 2


def test_a_key_put_again_or_discarded_is_counted_once() -> None:
    lru: BoundedLRU[str, int] = BoundedLRU(100, 8, len)
    for value in range(5):
        lru.put("aaaa", value)  # replaced, not counted five times
    lru.put("bbbb", 9)
    assert (lru.get("aaaa"), lru.get("bbbb")) == (4, 9)
    lru.discard("aaaa")
    lru.put("cccc", 7)
    assert (lru.get("bbbb"), lru.get("cccc")) == (9, 7)
    lru.clear()
    assert len(lru) == 0
    lru.put("dddddddd", 1)
    assert lru.get("dddddddd") == 1
