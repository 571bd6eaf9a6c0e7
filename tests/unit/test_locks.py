"""The backup lock's pure parts: lease keys, expiry on the server's clock, what a waiting run says;
and taking a lease over on a MemoryStore."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from layout.keys import is_bookkeeping_key, parse_object_key
from layout.lock import LeaseRecord, epoch_of, lease_key, lock_folder
from tasks.services.errors import LockLostError, LockTimeoutError
from tasks.services.locks import (
    CLOCK_MARGIN_SECONDS,
    Lease,
    LockState,
    acquire_lease,
    lapse_message,
    read_lock,
    release_lease,
    retaken_record,
    waiting_message,
)
from tasks.services.object_store import MemoryStore
from tests.support.locks import lease_record

T0 = datetime(2026, 11, 28, 2, 52, 41, tzinfo=UTC)


def _record(released: bool = False, run: bool = True) -> LeaseRecord:
    return lease_record(
        bucket="b",
        prefix="nightly",
        epoch=7,
        at=T0,
        lease_seconds=60,
        host="host-1",
        pid=4242,
        flow_run=("0d1e2f", "nightly-fox") if run else None,
        released=released,
    )


def _state(record: LeaseRecord | None, server_seconds_after_write: float) -> LockState:
    epoch = record.epoch if record else 3
    return LockState(
        epochs=((epoch, lease_key("nightly", "backup", epoch)),),
        current=record,
        last_modified=T0,
        server_now=T0 + timedelta(seconds=server_seconds_after_write),
    )


@pytest.mark.parametrize("prefix", ["nightly", "a/b", ""])
def test_lease_keys_sort_by_epoch_and_read_back(prefix: str) -> None:
    folder = lock_folder(prefix, "backup")
    keys = [lease_key(prefix, "backup", epoch) for epoch in (1, 9, 10, 123456)]
    assert keys == sorted(keys)
    assert [epoch_of(key, folder) for key in keys] == [1, 9, 10, 123456]
    assert keys[0] == f"{prefix + '/' if prefix else ''}_manifests/_lock/backup/000000000001.json"
    assert epoch_of(f"{folder}notes.json", folder) is None
    assert epoch_of("nightly/_manifests/20261128T025241000Z-abcdef.json", folder) is None


def test_lease_objects_are_neither_data_nor_backups() -> None:
    key = lease_key("nightly", "backup", 1)
    # restore discovery skips the manifests folder; the chain reads only its top level
    assert is_bookkeeping_key(key)
    assert parse_object_key(key, "nightly").topic is None
    assert "/" in key[len("nightly/_manifests/") :]


def test_a_lease_is_free_only_when_released_or_expired_on_the_server_clock() -> None:
    assert LockState((), None, None, T0).free(60)
    assert not _state(_record(), 30).free(60)
    assert not _state(_record(), 60).free(60)  # the margin covers 1-second timestamps
    assert _state(_record(), 60 + CLOCK_MARGIN_SECONDS).free(60)
    assert _state(_record(released=True), 1).free(60)
    # the holder's lease time counts, not the contender's
    assert not _state(_record(), 30).free(5)
    # an unreadable lease lasts the contender's lease time
    assert _state(None, 5 + CLOCK_MARGIN_SECONDS).free(5)


def test_the_waiting_message_names_the_holder_and_since_when() -> None:
    message = waiting_message("backup", "s3://b/nightly", _state(_record(), 10), 60)
    assert message == (
        "waiting for the backup lock of s3://b/nightly: held by run nightly-fox (0d1e2f) on host-1 "
        "pid 4242 since 2026-11-28T02:52:41+00:00, lease expires 2026-11-28T02:53:41+00:00"
    )
    outside = _record(run=False).holder()
    assert outside == "a process outside Prefect on host-1 pid 4242 since 2026-11-28T02:52:41+00:00"


def test_lock_errors_keep_what_they_are_about() -> None:
    holder = _record()
    timeout = LockTimeoutError("backup", "b", "nightly", holder, holder.expires_at, 3600)
    assert (timeout.bucket, timeout.prefix, timeout.holder, timeout.waited_seconds) == (
        "b",
        "nightly",
        holder,
        3600,
    )
    assert "gave up after 3600 s waiting for the backup lock of s3://b/nightly" in str(timeout)
    assert "pid 4242 since 2026-11-28T02:52:41+00:00, lease expires 2026-11-28T02:53:41+00:00" in str(timeout)
    lost = LockLostError("backup", "b", "nightly", 6, holder, "taken over")
    assert (lost.epoch, lost.holder, lost.reason) == (6, holder, "taken over")
    assert str(lost).startswith(
        "lost the backup lock of s3://b/nightly (epoch 6): taken over; now held by run"
    )


def test_a_lease_runs_out_on_the_stores_clock_and_the_taker_fences_the_old_holder() -> None:
    """acquire_lease and the fencing check on a MemoryStore, whose clock is the only one that
    says when a lease ran out (the hosts' never do)."""
    clock = [T0]
    store = MemoryStore(clock=lambda: clock[0])
    store.create_bucket("b")
    log = logging.getLogger("tests.locks")

    def acquire(timeout_seconds: float = 0) -> Lease:
        return acquire_lease(
            store, "backup", "b", "nightly", lease_seconds=30, timeout_seconds=timeout_seconds, logger=log
        )

    holder = acquire()
    assert holder.record.epoch == 1
    with pytest.raises(LockTimeoutError) as waited:
        acquire()
    assert waited.value.holder == holder.record
    clock[0] += timedelta(seconds=30 + CLOCK_MARGIN_SECONDS)  # the store's clock: the lease ran out
    taker = acquire()
    assert taker.record.epoch == 2
    with pytest.raises(LockLostError) as lost:
        holder.check()
    assert lost.value.holder == taker.record
    assert not release_lease(holder) and release_lease(taker)
    state = read_lock(store, "b", "nightly", "backup")
    assert state is not None and state.current is not None and state.current.released
    assert [e for e, _ in state.epochs] == [1, 2]


def test_a_retaken_lease_keeps_the_runs_identity_under_the_next_epoch() -> None:
    lapsed = _record()
    now = T0 + timedelta(seconds=95)
    retaken = retaken_record(lapsed, now)
    assert retaken.epoch == lapsed.epoch + 1
    same = ("flow_run_id", "flow_run_name", "host", "pid", "acquired_at", "lease_seconds", "kind", "bucket")
    assert {f: getattr(retaken, f) for f in same} == {f: getattr(lapsed, f) for f in same}
    assert (retaken.flow_run_id, retaken.flow_run_name) == ("0d1e2f", "nightly-fox")
    assert (retaken.renewed_at, retaken.expires_at, retaken.released) == (
        now,
        now + timedelta(seconds=60),
        False,
    )
    assert retaken.holder() == lapsed.holder()


def test_the_lapse_warning_names_the_lease_how_long_and_the_new_epoch() -> None:
    lapsed = _record()
    key = lease_key("nightly", "backup", 7)
    message = lapse_message(lapsed, key, unrenewed_seconds=95.04, new_epoch=8)
    assert message.startswith("the backup lock of s3://b/nightly lapsed: ")
    assert f"its lease {key} (epoch 7)" in message
    assert "unrenewed for 95.0 s, 35.0 s past its 60 s lease" in message
    assert message.endswith("took it again as epoch 8")
