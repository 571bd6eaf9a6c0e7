"""Objects fetched ahead of their reader: a work unit reads its partitions' objects one after the
other, and each GET waits a round trip; `Prefetch` asks for the next ones on a few threads while
the reader decodes and produces, within a byte budget (sizes from the manifest).

`Prefetch.store()` is an ObjectStore whose `get` answers from what was fetched ahead (raising
what the GET raised: a missing object is the same error, when it is read); everything else goes
to the store it wraps.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from tasks.services.object_store.base import ObjectStore

PREFETCH_THREADS = 8
PREFETCH_BYTES = 64 * 1024 * 1024  # what the objects fetched and not yet read may hold, one at least


class Prefetch:
    """Fetch `objects` ((key, size or None), in the order they will be read) from `bucket` ahead of
    their reader. Use as a context manager: leaving it drops what was not read."""

    def __init__(
        self,
        store: ObjectStore,
        bucket: str,
        objects: Iterable[tuple[str, int | None]],
        threads: int = PREFETCH_THREADS,
        budget: int = PREFETCH_BYTES,
    ) -> None:
        self.wrapped, self.bucket, self.budget = store, bucket, budget
        self.waiting: deque[tuple[str, int]] = deque((key, size or 0) for key, size in objects)
        self.fetched: dict[str, tuple[Future[bytes], int]] = {}
        self.held = 0
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="kbackup-prefetch")
        self.started = False  # the first read starts the fetching (a reader may read nothing)

    def _fill(self) -> None:
        while self.waiting and (not self.fetched or self.held + self.waiting[0][1] <= self.budget):
            key, size = self.waiting.popleft()
            if key in self.fetched:
                continue
            self.fetched[key] = (self.pool.submit(self.wrapped.get, self.bucket, key), size)
            self.held += size

    def get(self, bucket: str, key: str) -> bytes:
        if not self.started:
            self.started = True
            self._fill()
        found = self.fetched.pop(key, None) if bucket == self.bucket else None
        if found is None:
            return self.wrapped.get(bucket, key)
        future, size = found
        self.held -= size
        self._fill()
        return future.result()

    def store(self) -> ObjectStore:
        """The wrapped store, its `get` answered from here."""
        return cast("ObjectStore", _Reading(self))

    def __enter__(self) -> Prefetch:
        return self

    def __exit__(self, *_: object) -> None:
        self.waiting.clear()
        self.pool.shutdown(wait=True, cancel_futures=True)


class _Reading:
    """An ObjectStore in all but `get`, which its Prefetch answers."""

    def __init__(self, prefetch: Prefetch) -> None:
        self._prefetch = prefetch

    def get(self, bucket: str, key: str) -> bytes:
        return self._prefetch.get(bucket, key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._prefetch.wrapped, name)
