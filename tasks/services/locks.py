"""The backup lock: a lease kept in the bucket, next to the chain it protects, so that two backups
of one bucket/prefix never run at once (their chains would fork).

Only conditional puts (`If-None-Match: *`) are needed. The leases are numbered objects
(layout.lock; read and written by tasks.services.lease_store); the highest number is the current
one. To acquire, a run lists them and, when the highest is released or expired, creates the next
number — one contender wins, the others look again. The number is a fencing token: the holder
renews by rewriting its own object only while no higher number exists, and checks that once more
just before its commit (the manifest).

Expiry is judged on the store's clock: an object's LastModified plus its lease time, against the
time of the listing that showed it (S3: its Date header), so the clocks of the hosts never
matter. A killed run's lease is free after at most its lease time (default 60 s) plus
CLOCK_MARGIN_SECONDS.

Why not a Prefect global concurrency limit: it protects only runs that talk to the same Prefect
API, and in the temporary API of a CLI run a killed run's slot was never given back.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from layout.lock import LeaseRecord, lease_key
from tasks.runtime import shutdown
from tasks.services.errors import KbackupError, LockLostError, LockTimeoutError
from tasks.services.lease_store import (
    CLOCK_MARGIN_SECONDS,
    LockState,
    delete_leases,
    newer_lease,
    put_record,
    read_lock,
    read_record,
)

if TYPE_CHECKING:
    from tasks.services.object_store import ObjectStore

__all__ = [
    "CLOCK_MARGIN_SECONDS",
    "POLL_JITTER",
    "Lease",
    "LeaseKeeper",
    "LockSettings",
    "LockState",
    "acquire_lease",
    "ensure_held",
    "exclusive",
    "lapse_message",
    "poll_seconds",
    "read_lock",
    "release_lease",
    "renew_lease",
    "retaken_record",
    "waiting_message",
]

POLL_JITTER = 1.25  # a waiting run looks again after poll_seconds() times up to this
# A waiting run says who it waits for at most this often.
WAIT_LOG_SECONDS = 15.0
# Lease objects kept below the current one (older ones are deleted by the next acquirer).
KEEP_PREVIOUS = 1

Logger = logging.Logger | logging.LoggerAdapter[Any]


class LockSettings(BaseSettings):
    """How long a lease lasts and how long a run waits for one (environment, `.env`)."""

    model_config = SettingsConfigDict(env_prefix="KBACKUP_LOCK_", env_file=".env", extra="ignore")

    lease_seconds: float = Field(
        default=60,
        gt=0,
        description="A lease lasts this long after each renewal (renewed every quarter of it); a killed "
        "run's lock is free this long (plus 2 s) after its last renewal.",
    )
    wait_timeout_seconds: float = Field(
        default=3600, ge=0, description="A run waiting for the lock gives up after this long."
    )


@dataclass(eq=False)
class Lease:
    """A lease this process holds. Renewed by a LeaseKeeper thread; `check()` before a commit."""

    store: ObjectStore
    record: LeaseRecord
    valid_until: float  # time.monotonic() until which no other run can take it over
    lost: LockLostError | None = None
    released: bool = False
    mutex: threading.Lock = field(default_factory=threading.Lock)
    logger: Logger = field(default_factory=lambda: logging.getLogger(__name__))

    @property
    def key(self) -> str:
        return self.key_of(self.record)

    @staticmethod
    def key_of(record: LeaseRecord) -> str:
        return lease_key(record.prefix, record.kind, record.epoch)

    @property
    def where(self) -> str:
        return f"s3://{self.record.bucket}/{self.record.prefix}"

    def check(self) -> None:
        """Fencing, just before a commit: raise LockLostError unless this run still holds the lock
        (renewed now, and no higher epoch after the renewal)."""
        ensure_held(self)


# --- acquire, renew, release ---------------------------------------------------------------------


def _flow_run() -> tuple[str | None, str | None]:
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return None, None
    return str(context.flow_run.id), context.flow_run.name


def _new_record(kind: str, bucket: str, prefix: str, epoch: int, lease_seconds: float) -> LeaseRecord:
    """The record of a lease this process (and its flow run, if any) takes now."""
    now = datetime.now(UTC)
    run_id, run_name = _flow_run()
    return LeaseRecord(
        kind=kind,
        bucket=bucket,
        prefix=prefix,
        epoch=epoch,
        flow_run_id=run_id,
        flow_run_name=run_name,
        host=socket.gethostname(),
        pid=os.getpid(),
        lease_seconds=lease_seconds,
        acquired_at=now,
        renewed_at=now,
        expires_at=now + timedelta(seconds=lease_seconds),
    )


def retaken_record(lapsed: LeaseRecord, now: datetime) -> LeaseRecord:
    """The next epoch's record for a holder whose lease `lapsed` ran out unrenewed: the same run
    (flow run id and name, host, pid, since when), renewed `now`. Built from the lapsed record, not
    from the context: the renewal thread has no flow run context."""
    return lapsed.model_copy(
        update={
            "epoch": lapsed.epoch + 1,
            "renewed_at": now,
            "expires_at": now + timedelta(seconds=lapsed.lease_seconds),
            "released": False,
        }
    )


def lapse_message(lapsed: LeaseRecord, key: str, unrenewed_seconds: float, new_epoch: int) -> str:
    """The warning of a lease that ran out before its holder could renew it, then re-taken."""
    where = f"s3://{lapsed.bucket}/{lapsed.prefix}"
    return (
        f"the {lapsed.kind} lock of {where} lapsed: its lease {key} (epoch {lapsed.epoch}) went "
        f"unrenewed for {unrenewed_seconds:.1f} s, {max(0.0, unrenewed_seconds - lapsed.lease_seconds):.1f} s "
        f"past its {lapsed.lease_seconds:g} s lease (S3 unreachable or this process stalled); no other run "
        f"took it meanwhile, so this run took it again as epoch {new_epoch}"
    )


def _create_lease(store: ObjectStore, record: LeaseRecord) -> Lease | None:
    """Create lease `record` (its epoch); None when another run created it first or a higher one exists."""
    started = time.monotonic()
    if not put_record(store, record, create=True):
        # Lost the race — unless the first attempt of a retried request was ours after all.
        try:
            if read_record(store, record.bucket, Lease.key_of(record)) != record:
                return None
        except FileNotFoundError:
            return None
    # A contender that listed before the newest leases were written may have created a number that
    # an older lease had (since deleted): only the highest number counts.
    if newer_lease(store, record):
        return None
    return Lease(store=store, record=record, valid_until=started + record.lease_seconds)


def waiting_message(kind: str, where: str, state: LockState, default_lease_seconds: float) -> str:
    expires_at = state.expires_at(default_lease_seconds)
    holder = state.current.holder() if state.current else f"an unreadable lease (epoch {state.epoch})"
    expires = expires_at.isoformat(timespec="seconds") if expires_at else "unknown"
    return f"waiting for the {kind} lock of {where}: held by {holder}, lease expires {expires}"


def poll_seconds(lease_seconds: float) -> float:
    """How long a run waiting for the lock sleeps between two looks (before the jitter)."""
    return min(2.0, lease_seconds / 4)


def acquire_lease(
    store: ObjectStore,
    kind: str,
    bucket: str,
    prefix: str,
    *,
    lease_seconds: float,
    timeout_seconds: float,
    logger: Logger,
) -> Lease:
    """Wait until the lock is free, then take it; LockTimeoutError after `timeout_seconds`."""
    where = f"s3://{bucket}/{prefix}"
    poll = poll_seconds(lease_seconds)
    started = time.monotonic()
    next_log = started
    while True:
        state = read_lock(store, bucket, prefix, kind)
        if state is None:
            continue
        if state.free(lease_seconds):
            lease = _create_lease(store, _new_record(kind, bucket, prefix, state.epoch + 1, lease_seconds))
            if lease is None:
                continue  # another run took this epoch: look again
            lease.logger = logger
            previous = state.current
            if state.epochs and (previous is None or not previous.released):
                holder = previous.holder() if previous else f"an unreadable lease (epoch {state.epoch})"
                logger.warning(
                    "took over the %s lock of %s: the lease of %s expired at %s without being released",
                    kind,
                    where,
                    holder,
                    (state.expires_at(lease_seconds) or state.server_now).isoformat(timespec="seconds"),
                )
            delete_leases(store, bucket, state.epochs, keep_from=lease.record.epoch - KEEP_PREVIOUS)
            logger.info(
                "holding the %s lock of %s (epoch %s, lease %s s)",
                kind,
                where,
                lease.record.epoch,
                lease_seconds,
            )
            return lease
        now = time.monotonic()
        if now - started >= timeout_seconds:
            raise LockTimeoutError(
                kind, bucket, prefix, state.current, state.expires_at(lease_seconds), now - started
            )
        if now >= next_log:
            logger.info(waiting_message(kind, where, state, lease_seconds))
            next_log = now + WAIT_LOG_SECONDS
        # a SIGINT/SIGTERM ends the wait at once (RunInterrupted), before this run holds anything
        shutdown.sleep(
            min(poll * random.uniform(1.0, POLL_JITTER), max(0.0, started + timeout_seconds - now))
        )


def _lost(lease: Lease, reason: str, newer: tuple[int, LeaseRecord | None] | None) -> LockLostError:
    record = lease.record
    lease.lost = LockLostError(
        record.kind, record.bucket, record.prefix, record.epoch, newer[1] if newer else None, reason
    )
    return lease.lost


def renew_lease(lease: Lease) -> None:
    """Extend the lease by its lease time; LockLostError when another run has taken it over.

    In time, the holder rewrites its own object (after checking that no higher epoch exists). After
    a lapse (e.g. S3 was unreachable for longer than the lease) another run may have taken it: the
    holder then has to win the next epoch with a conditional create, exactly like a contender.
    """
    with lease.mutex:
        if lease.lost is not None:
            raise lease.lost
        if lease.released:
            return
        record = lease.record
        newer = newer_lease(lease.store, record)
        if newer is not None:
            raise _lost(
                lease, f"a newer lease (epoch {newer[0]}) was taken while this one had run out", newer
            )
        if time.monotonic() >= lease.valid_until:
            unrenewed = time.monotonic() - (lease.valid_until - record.lease_seconds)
            lapsed = _create_lease(lease.store, retaken_record(record, datetime.now(UTC)))
            if lapsed is None:
                raise _lost(
                    lease,
                    "the lease ran out before it was renewed, and another run took it",
                    newer_lease(lease.store, record),
                )
            lease.record, lease.valid_until = lapsed.record, lapsed.valid_until
            lease.logger.warning(lapse_message(record, lease.key_of(record), unrenewed, lapsed.record.epoch))
            return
        now = datetime.now(UTC)
        renewed = record.model_copy(
            update={"renewed_at": now, "expires_at": now + timedelta(seconds=record.lease_seconds)}
        )
        started = time.monotonic()
        put_record(lease.store, renewed, create=False)
        lease.record, lease.valid_until = renewed, started + record.lease_seconds


def ensure_held(lease: Lease) -> None:
    """The fencing check before a commit: renew now, then make sure no higher epoch appeared while
    doing so. If S3 fails meanwhile, a lease with at least half its time left still counts."""
    try:
        renew_lease(lease)
        with lease.mutex:
            newer = newer_lease(lease.store, lease.record)
            if newer is not None:
                raise _lost(lease, f"a newer lease (epoch {newer[0]}) was taken", newer)
    except LockLostError:
        raise
    except KbackupError:
        if lease.valid_until - time.monotonic() < lease.record.lease_seconds / 2:
            raise


def release_lease(lease: Lease) -> bool:
    """Give the lock back (mark the lease released); False when it was no longer this run's."""
    with lease.mutex:
        if lease.lost is not None or lease.released:
            return False
        newer = newer_lease(lease.store, lease.record)
        if newer is not None:
            _lost(lease, f"a newer lease (epoch {newer[0]}) was taken", newer)
            return False
        now = datetime.now(UTC)
        put_record(
            lease.store,
            lease.record.model_copy(update={"released": True, "renewed_at": now, "expires_at": now}),
            create=False,
        )
        lease.released = True
        return True


class LeaseKeeper(threading.Thread):
    """Renews a lease every quarter of its lease time until stopped, or until it is lost."""

    def __init__(self, lease: Lease, logger: Logger) -> None:
        super().__init__(name=f"kbackup-lease-{lease.record.kind}", daemon=True)
        self.lease = lease
        self.logger = logger
        self.interval = lease.record.lease_seconds / 4
        self.stopped = threading.Event()

    def run(self) -> None:
        delay = self.interval
        while not self.stopped.wait(delay):
            try:
                renew_lease(self.lease)
                delay = self.interval
            except LockLostError as exc:
                self.logger.error("%s; this run stops before its commit", exc)
                return
            except Exception as exc:  # noqa: BLE001 - S3 trouble: keep trying; a lapse is handled on renewal
                self.logger.warning(
                    "could not renew the %s lock of %s (trying again): %s",
                    self.lease.record.kind,
                    self.lease.where,
                    exc,
                )
                delay = max(0.5, self.interval / 2)

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=self.lease.record.lease_seconds)


def _logger() -> Logger:
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


@contextmanager
def exclusive(
    kind: str,
    bucket: str,
    prefix: str,
    *,
    lease_seconds: float | None = None,
    timeout_seconds: float | None = None,
    store: ObjectStore | None = None,
) -> Iterator[Lease]:
    """Hold the `kind` lock of bucket/prefix for the duration of the block; call the yielded
    lease's `check()` just before committing. Defaults: LockSettings (KBACKUP_LOCK_*), the store
    the settings configure (tasks.services.object_store.open_store)."""
    from tasks.services.object_store import open_store

    settings = LockSettings()
    logger = _logger()
    lease = acquire_lease(
        store or open_store(),
        kind,
        bucket,
        prefix,
        lease_seconds=lease_seconds if lease_seconds is not None else settings.lease_seconds,
        timeout_seconds=timeout_seconds if timeout_seconds is not None else settings.wait_timeout_seconds,
        logger=logger,
    )
    keeper = LeaseKeeper(lease, logger)
    keeper.start()
    try:
        yield lease
    finally:
        keeper.stop()
        try:
            if release_lease(lease):
                logger.info("released the %s lock of %s (epoch %s)", kind, lease.where, lease.record.epoch)
        except KbackupError as exc:
            logger.warning(
                "could not release the %s lock of %s; it runs out by itself at %s: %s",
                kind,
                lease.where,
                lease.record.expires_at.isoformat(timespec="seconds"),
                exc,
            )
