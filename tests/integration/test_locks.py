"""The backup lock against the real S3 server: a second contender waits and says for whom, an
expired lease is taken over within its lease time, and a holder whose lease was taken over refuses
to commit — also a whole backup flow, which then writes no manifest."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from flows.backup import BackupParameters, backup_flow
from layout.keys import is_bookkeeping_key
from layout.lock import LeaseRecord, lease_key, lock_folder
from tasks.runtime import shutdown
from tasks.services.errors import LockLostError, LockTimeoutError
from tasks.services.locks import (
    CLOCK_MARGIN_SECONDS,
    POLL_JITTER,
    Lease,
    acquire_lease,
    exclusive,
    poll_seconds,
    read_lock,
    release_lease,
    renew_lease,
)
from tasks.services.manifest_store import list_backup_ids
from tests.support.kafka import numbered_messages
from tests.support.locks import lease_record

LOG = logging.getLogger("tests.locks")


def _acquire(store: Any, bucket: str, lease_seconds: float, timeout_seconds: float = 30) -> Lease:
    """A lease with no renewal thread: a holder that stops renewing, like a killed run."""
    return acquire_lease(
        store, "backup", bucket, "p", lease_seconds=lease_seconds, timeout_seconds=timeout_seconds, logger=LOG
    )


def _lease_objects(s3: Any, bucket: str) -> list[str]:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=lock_folder("p", "backup")).get("Contents", [])
    return [o["Key"] for o in listed]


def test_a_second_backup_waits_for_the_first_and_says_for_whom(
    s3: Any, store: Any, bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tasks.services.locks")
    got: dict[str, Any] = {}

    def second() -> None:
        with exclusive("backup", bucket, "p", lease_seconds=4, timeout_seconds=60, store=store) as lease:
            got["epoch"], got["at"] = lease.record.epoch, time.monotonic()

    with exclusive("backup", bucket, "p", lease_seconds=4, store=store) as first:
        contender = threading.Thread(target=second)
        contender.start()
        time.sleep(8)  # twice the lease: the renewals keep it
        assert "epoch" not in got
        first.check()
        released_at = time.monotonic()
    contender.join(30)
    assert got["epoch"] == first.record.epoch + 1 == 2
    assert got["at"] - released_at < 3
    since = first.record.acquired_at.isoformat(timespec="seconds")
    waiting = [r.getMessage() for r in caplog.records if r.getMessage().startswith("waiting for")]
    assert waiting, caplog.text
    assert waiting[0].startswith(
        f"waiting for the backup lock of s3://{bucket}/p: held by a process outside Prefect on "
        f"{socket.gethostname()} pid {os.getpid()} since {since}, lease expires "
    )
    assert len(waiting) == 1  # at most one line every 15 s
    # the lease objects are neither backups (kbackup ls, the chain) nor data (restore discovery)
    assert _lease_objects(s3, bucket) == [lease_key("p", "backup", 1), lease_key("p", "backup", 2)]
    assert list_backup_ids(store, bucket, "p") == []
    assert all(is_bookkeeping_key(key) for key in _lease_objects(s3, bucket))
    state = read_lock(store, bucket, "p", "backup")
    assert state is not None and state.current is not None and state.current.released


def test_an_expired_lease_is_taken_over_within_its_lease_time(
    store: Any, bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tests.locks")
    stopped = _acquire(store, bucket, lease_seconds=3)
    started = time.monotonic()
    taker = _acquire(store, bucket, lease_seconds=30)
    waited = time.monotonic() - started
    assert taker.record.epoch == 2
    # The lease, the margin, a second each for the truncation of the lease's LastModified and of the
    # Date header the taker judges it by, and one wait between the taker's looks (its own lease's).
    latest = 3 + CLOCK_MARGIN_SECONDS + 1 + 1 + poll_seconds(30) * POLL_JITTER
    assert 3 - 1 <= waited <= latest, waited
    assert (
        f"took over the backup lock of s3://{bucket}/p: the lease of a process outside Prefect" in caplog.text
    )
    assert (
        f"pid {os.getpid()} since {stopped.record.acquired_at.isoformat(timespec='seconds')}" in caplog.text
    )


def test_a_holder_whose_lease_was_taken_over_refuses_to_commit(store: Any, bucket: str) -> None:
    stale = _acquire(store, bucket, lease_seconds=2)
    taker = _acquire(store, bucket, lease_seconds=30)
    with pytest.raises(LockLostError) as lost:
        stale.check()
    assert (lost.value.bucket, lost.value.prefix, lost.value.epoch) == (bucket, "p", 1)
    assert lost.value.holder == taker.record
    with pytest.raises(LockLostError):
        renew_lease(stale)
    assert not release_lease(stale)  # leaves the new holder's lease alone
    state = read_lock(store, bucket, "p", "backup")
    assert state is not None and state.current == taker.record
    taker.check()
    assert release_lease(taker)


def test_a_lapsed_lease_nobody_took_is_won_again_with_the_next_epoch(store: Any, bucket: str) -> None:
    lapsed = _acquire(store, bucket, lease_seconds=1)
    since = lapsed.record.acquired_at
    time.sleep(1.5)
    lapsed.check()
    assert (lapsed.record.epoch, lapsed.record.acquired_at) == (2, since)
    assert release_lease(lapsed)


def test_a_lapse_is_a_warning_and_the_retaken_lease_keeps_the_runs_identity(
    prefect_harness: None, store: Any, bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An S3 stall outliving the lease, played by a holder that does not renew its 1 s lease for
    1.5 s (the S3 server keeps running); the renewal, from the keeper's thread as in a run, takes
    the next epoch under the run's name and says so."""
    from prefect import flow
    from prefect.context import FlowRunContext

    caplog.set_level(logging.WARNING, logger="tests.locks")

    @flow(name="lapse-probe")
    def holder() -> tuple[Lease, str, str]:
        context = FlowRunContext.get()
        assert context is not None and context.flow_run is not None
        lease = _acquire(store, bucket, lease_seconds=1)
        time.sleep(1.5)  # past the lease: the next renewal finds it lapsed
        keeper = threading.Thread(target=renew_lease, args=(lease,))  # no flow-run context there
        keeper.start()
        keeper.join(30)
        return lease, str(context.flow_run.id), context.flow_run.name

    lease, run_id, run_name = holder()
    assert lease.record.epoch == 2
    stored = read_lock(store, bucket, "p", "backup")
    assert stored is not None and stored.current == lease.record
    assert (stored.current.flow_run_id, stored.current.flow_run_name) == (run_id, run_name)
    assert stored.current.holder().startswith(f"run {run_name} ({run_id}) on ")
    [warning] = [r.getMessage() for r in caplog.records if "lapsed" in r.getMessage()]
    assert warning.startswith(
        f"the backup lock of s3://{bucket}/p lapsed: its lease {lease_key('p', 'backup', 1)} (epoch 1) "
        "went unrenewed for "
    )
    assert warning.endswith("so this run took it again as epoch 2")
    assert release_lease(lease)


def test_a_wait_has_a_bound_and_then_names_the_holder(store: Any, bucket: str) -> None:
    holder = _acquire(store, bucket, lease_seconds=30)
    with pytest.raises(LockTimeoutError) as timeout:
        _acquire(store, bucket, lease_seconds=30, timeout_seconds=1)
    assert timeout.value.holder == holder.record
    assert f"pid {os.getpid()} since" in str(timeout.value)
    assert release_lease(holder)


def test_a_stop_request_ends_the_wait_at_once(store: Any, bucket: str) -> None:
    holder = _acquire(store, bucket, lease_seconds=30)
    timer = threading.Timer(1.0, shutdown.request_stop, args=("SIGTERM",))
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(shutdown.RunInterrupted):
            _acquire(store, bucket, lease_seconds=30, timeout_seconds=60)
    finally:
        timer.join()
        shutdown.clear()
    assert time.monotonic() - started < 5
    assert release_lease(holder)


@pytest.mark.usefixtures("prefect_harness")
def test_a_backup_whose_lock_was_taken_over_writes_no_manifest(
    filled_topic: Any, bucket: str, s3: Any, store: Any
) -> None:
    topic = filled_topic("fenced", 2, numbered_messages(20_000, 2, value=200))
    intruder: dict[str, LeaseRecord] = {}

    def take_over() -> None:
        """As soon as the backup holds epoch 1, another holder (say, one whose clock is wrong)
        creates epoch 2."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not _lease_objects(s3, bucket):
            time.sleep(0.02)
        record = lease_record(
            bucket=bucket,
            prefix="p",
            epoch=2,
            at=datetime.now(UTC),
            lease_seconds=600,
            host="elsewhere",
            pid=1,
        )
        key = lease_key("p", "backup", 2)
        s3.put_object(Bucket=bucket, Key=key, Body=record.model_dump_json().encode(), IfNoneMatch="*")
        intruder["record"] = record

    thread = threading.Thread(target=take_over)
    thread.start()
    try:
        with pytest.raises(LockLostError) as lost:
            backup_flow(
                BackupParameters(
                    kcql=f"INSERT INTO {bucket}:p SELECT * FROM `{topic}` STOREAS AVRO", verify="quick"
                )
            )
    finally:
        thread.join(150)
    assert lost.value.holder == intruder["record"]
    assert list_backup_ids(store, bucket, "p") == []
    state = read_lock(store, bucket, "p", "backup")
    assert state is not None and state.current == intruder["record"]  # untouched by the loser
