"""Removing what a restore drill created on the cluster, whatever happened to the drill: its scratch
topics (`drill-<id>-<topic>`), the consumer groups it translated (`drill-<id>-<group>`) and the
restore's own bookkeeping groups (`kbackup-restore-<restore id>…`, unique to the drill: the scratch
prefix is in the restore id).

Every request has a bounded timeout and nothing here raises: what could not be removed is returned
in the DrillCleanup (and logged), so the drill records it in its evidence. It never checks the run's
stop request: it is what runs after one (a SIGINT or SIGTERM ends the run within the command
line's grace period, kbackup.cli.STOP_GRACE_S, which these timeouts stay within).
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from layout.drills import DrillCleanup
from tasks.services.kafka.admin import admin_result

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 5.0  # one admin request of the clean-up
GONE_WAIT_S = 5.0  # how long deleted topics may still show in the metadata


def restore_groups_prefix(restore_id: str) -> str:
    """The restore's own groups (tasks.restore.committed, layout.restore.progress, writer slots)."""
    return f"kbackup-restore-{restore_id}"


def _admin(config: dict[str, Any]) -> AdminClient:
    return AdminClient({**config, "log_level": 3, "socket.timeout.ms": int(REQUEST_TIMEOUT_S * 1000)})


def _scratch_topics(admin: AdminClient, prefix: str) -> list[str]:
    metadata = admin.list_topics(timeout=REQUEST_TIMEOUT_S)
    return sorted(name for name in metadata.topics if name.startswith(prefix))


def _error_text(exc: BaseException) -> str:
    error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
    return str(error.str() if isinstance(error, KafkaError) else exc)


def _not_found(exc: BaseException) -> bool:
    error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
    return isinstance(error, KafkaError) and error.code() in (
        KafkaError.GROUP_ID_NOT_FOUND,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
    )


def delete_groups(admin: AdminClient, prefixes: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Delete every consumer group whose name starts with one of `prefixes`: (deleted, problems)."""
    listing = admin_result(
        admin, admin.list_consumer_groups(request_timeout=REQUEST_TIMEOUT_S), REQUEST_TIMEOUT_S + 1
    )
    groups = sorted(g.group_id for g in listing.valid if g.group_id.startswith(prefixes))
    deleted: list[str] = []
    problems: list[str] = []
    if not groups:
        return deleted, problems
    futures = admin.delete_consumer_groups(groups, request_timeout=REQUEST_TIMEOUT_S)
    for group, future in sorted(futures.items()):
        try:
            admin_result(admin, future, REQUEST_TIMEOUT_S + 1)
            deleted.append(group)
        except Exception as exc:  # noqa: BLE001 - recorded, never raised: the clean-up goes on
            if _not_found(exc):
                deleted.append(group)
            else:
                problems.append(f"consumer group {group}: {_error_text(exc)}")
    return deleted, problems


def delete_topics(admin: AdminClient, prefix: str) -> tuple[list[str], list[str]]:
    """Delete every topic whose name starts with `prefix` and wait, a bounded time, until the
    metadata no longer shows them: (deleted, problems)."""
    topics = _scratch_topics(admin, prefix)
    deleted: list[str] = []
    problems: list[str] = []
    if not topics:
        return deleted, problems
    futures = admin.delete_topics(
        topics, operation_timeout=REQUEST_TIMEOUT_S, request_timeout=REQUEST_TIMEOUT_S
    )
    for topic, future in sorted(futures.items()):
        try:
            admin_result(admin, future, 2 * REQUEST_TIMEOUT_S + 1)
            deleted.append(topic)
        except Exception as exc:  # noqa: BLE001 - recorded, never raised: the clean-up goes on
            if _not_found(exc):
                deleted.append(topic)
            else:
                problems.append(f"topic {topic}: {_error_text(exc)}")
    deadline = time.monotonic() + GONE_WAIT_S
    left = [t for t in _scratch_topics(admin, prefix) if t in deleted]
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = [t for t in _scratch_topics(admin, prefix) if t in deleted]
    problems += [f"topic {topic}: still listed {GONE_WAIT_S:.0f} s after its deletion" for topic in left]
    return deleted, problems


def clean_up_scratch(config: dict[str, Any], scratch_prefix: str, restore_id: str | None) -> DrillCleanup:
    """Delete the drill's consumer groups (its translated ones and, given the restore id, the
    restore's own), then its scratch topics. Never raises: each step's failure is a problem."""
    prefixes = (scratch_prefix,) + ((restore_groups_prefix(restore_id),) if restore_id else ())
    groups: list[str] = []
    topics: list[str] = []
    problems: list[str] = []
    admin = None
    try:
        admin = _admin(config)
    except Exception as exc:  # noqa: BLE001
        problems.append(f"no admin client for {config.get('bootstrap.servers')}: {_error_text(exc)}")
    if admin is not None:
        for what, step in (
            ("consumer groups", lambda: delete_groups(admin, prefixes)),
            ("scratch topics", lambda: delete_topics(admin, scratch_prefix)),
        ):
            try:
                done, failed = step()
            except Exception as exc:  # noqa: BLE001 - a listing that failed: said, and the next step runs
                problems.append(f"{what} starting with {' or '.join(prefixes)}: {_error_text(exc)}")
                continue
            (groups if what == "consumer groups" else topics).extend(done)
            problems += failed
        with contextlib.suppress(Exception):
            admin.poll(0)
    for problem in problems:
        log.warning("drill clean-up: not removed: %s", problem)
    log.info(
        "drill clean-up: deleted %d scratch topics and %d consumer groups (%s…)",
        len(topics),
        len(groups),
        scratch_prefix,
    )
    return DrillCleanup(deleted_topics=tuple(topics), deleted_groups=tuple(groups), problems=tuple(problems))


def cluster_id_of(config: dict[str, Any]) -> str | None:
    """The cluster's id, for the evidence; None when it cannot be asked."""
    try:
        admin = _admin(config)
        return admin_result(
            admin, admin.describe_cluster(request_timeout=REQUEST_TIMEOUT_S), REQUEST_TIMEOUT_S + 1
        ).cluster_id
    except Exception:  # noqa: BLE001 - the evidence says None
        return None
