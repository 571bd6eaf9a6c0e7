"""Objects fetched ahead of their reader (tasks/services/object_store/prefetch.py) on a MemoryStore:
the same bytes as the store's, read in any order, within the byte budget, and a GET's error raised
when its object is read."""

from __future__ import annotations

import threading

import pytest

from tasks.services.errors import KbackupError
from tasks.services.object_store import MemoryStore
from tasks.services.object_store.prefetch import Prefetch


class Counting(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.gets: list[str] = []
        self.lock = threading.Lock()

    def get(self, bucket: str, key: str) -> bytes:
        with self.lock:
            self.gets.append(key)
        return super().get(bucket, key)


def _store(count: int, size: int = 10) -> Counting:
    store = Counting()
    store.create_bucket("b")
    for index in range(count):
        store.put("b", f"k{index}", bytes([index]) * size)
    return store


def test_reads_get_the_stores_bytes_in_any_order_each_fetched_once() -> None:
    store = _store(20)
    keys = [(f"k{i}", 10) for i in range(20)]
    with Prefetch(store, "b", keys, threads=4, budget=1000) as ahead:
        reading = ahead.store()
        order = [3, 0, 1, 19, 2] + list(range(4, 19))
        assert [reading.get("b", f"k{i}") for i in order] == [bytes([i]) * 10 for i in order]
        assert reading.get("b", "k5") == bytes([5]) * 10  # read again: from the store
        assert reading.head("b", "k7") is not None  # everything but get goes to the store
    assert sorted(store.gets) == sorted([f"k{i}" for i in range(20)] + ["k5"])


def test_what_is_fetched_ahead_stays_within_the_budget() -> None:
    store = _store(10, size=100)
    with Prefetch(store, "b", [(f"k{i}", 100) for i in range(10)], threads=2, budget=250) as ahead:
        assert not ahead.fetched  # nothing before the first read
        ahead.store().get("b", "k0")  # k0 and k1 fetched (200 bytes; a third would pass 250), k0 read
        assert list(ahead.fetched) == ["k1", "k2"]
    big = _store(2, size=1000)
    with Prefetch(big, "b", [("k0", 1000), ("k1", 1000)], budget=10) as ahead:
        ahead.store().get("b", "k0")
        assert list(ahead.fetched) == ["k1"]  # one at least, whatever its size


def test_a_missing_object_is_the_stores_error_when_it_is_read() -> None:
    store = _store(2)
    with Prefetch(store, "b", [("k0", 10), ("gone", 10), ("k1", 10)]) as ahead:
        reading = ahead.store()
        assert reading.get("b", "k0") == bytes([0]) * 10
        with pytest.raises(KbackupError) as raised:
            reading.get("b", "gone")
        with pytest.raises(type(raised.value)):
            store.get("b", "gone")
        assert reading.get("b", "k1") == bytes([1]) * 10
