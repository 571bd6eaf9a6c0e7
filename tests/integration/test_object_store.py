"""The object-store contract (tests/unit/test_object_store_contract.py, where MemoryStore passes
it) run on S3Store against the real SeaweedFS: the semantics the unit tests rely on are S3's."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.buckets import empty_and_delete
from tests.unit.test_object_store_contract import (  # noqa: F401 - collected here, on S3Store
    test_a_delete_in_a_versioned_bucket_leaves_a_marker,
    test_a_listing_is_in_key_order_under_the_prefix,
    test_a_listing_shows_no_deleted_object,
    test_a_missing_object_and_a_missing_bucket_are_told_apart,
    test_a_plain_bucket_has_one_version_and_no_lock,
    test_a_retained_version_cannot_be_deleted_and_its_retention_only_grows,
    test_chunks_stream_the_object,
    test_if_none_match_writes_only_where_nothing_is,
    test_put_once_writes_then_accepts_the_same_bytes_and_refuses_others,
)


@pytest.fixture
def make_bucket(store: Any, s3: Any, unique_name: Callable[[str], str]) -> Iterator[Callable[..., str]]:
    """make_bucket(object_lock=False) -> a new bucket's name (made through the store under test);
    emptied and deleted afterwards."""
    made: list[str] = []

    def make(object_lock: bool = False) -> str:
        made.append(unique_name("contract"))
        store.create_bucket(made[-1], object_lock=object_lock)
        return made[-1]

    yield make
    for name in made:
        empty_and_delete(s3, name)
