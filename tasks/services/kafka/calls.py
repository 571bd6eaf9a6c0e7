"""Blocking Kafka client calls under a bound, and letting go of clients that may hang.

librdkafka does not always return from a call within the timeout it is given: after a broker
restart, `send_offsets_to_transaction` can wait forever (py-spy: blocked in rd_kafka_txn_op_req0)
for its TxnOffsetCommit, queued for a group coordinator the client decommissioned when it
re-bootstrapped (librdkafka issues 5456 and 5511). So a blocking call runs under a watchdog
(`bounded_call`): a call that has not returned some seconds after its own timeout raises
CallStalledError, and its client is abandoned (kept referenced, never destroyed: rd_kafka_destroy
would wait on it too). A stop request (tasks.runtime.shutdown) cuts every wait to `STOP_GRACE_S`.

The Kafka timeouts of the restore live here too, one fact in one place.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from tasks.runtime import shutdown
from tasks.services.errors import KafkaOperationError

T = TypeVar("T")
ADMIN_TIMEOUT_S = 30  # one admin request: metadata, configs, offsets, groups
LOOKUP_TIMEOUT_S = 60  # offset, watermark, config and metadata look-ups of a restore
TXN_TIMEOUT_S = 30  # the timeout each transactional call is given
WATCHDOG_GRACE_S = 15  # a call still running this long after its own timeout has wedged its client
STOP_GRACE_S = 5  # after a stop request, how long a call in flight may still finish
CLOSE_TIMEOUT_S = 10

# Clients wedged in a call that never returns: kept referenced so that they are never destroyed
# (rd_kafka_destroy would block on them); their daemon threads end with the process.
_ABANDONED: list[Any] = []


class CallStalledError(KafkaOperationError):
    """A blocking call that did not return within its timeout plus WATCHDOG_GRACE_S: its client
    is wedged and must be replaced."""

    def __init__(self, operation: str, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(operation, f"no answer after {seconds:.0f} s (client wedged)", retryable=True)


def bounded_call(operation: str, call: Callable[[], T], timeout_s: float) -> T:
    """Run a blocking client call in a daemon thread and wait at most `timeout_s` for it
    (`STOP_GRACE_S` once a stop was requested); raise CallStalledError when it has not returned,
    else return its result or raise its exception."""
    outcome: list[tuple[bool, Any]] = []
    finished = threading.Event()

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
            outcome.append((False, exc))
        finally:
            finished.set()

    threading.Thread(target=run, name=f"kbackup: {operation}", daemon=True).start()
    began = time.monotonic()
    deadline = began + timeout_s
    while not finished.wait(0.1):
        now = time.monotonic()
        if shutdown.stop_requested():
            deadline = min(deadline, now + STOP_GRACE_S)
        if now > deadline:
            raise CallStalledError(operation, now - began)
    ok, value = outcome[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def dispose(client: Any) -> None:
    """Let go of a client in a daemon thread: after a broker outage rd_kafka_destroy can wait on a
    broker thread that does not end, and the restore must not wait with it. The thread holds the
    last reference a moment, until the caller's own are gone, then destroys the client."""
    holder = [client]

    def release() -> None:
        time.sleep(1.0)
        holder.clear()

    threading.Thread(target=release, name="kbackup: dispose client", daemon=True).start()


def close_consumer(consumer: Any) -> None:
    """Close a consumer boundedly (best effort), abandoning it when close hangs."""
    try:
        bounded_call("close consumer", consumer.close, CLOSE_TIMEOUT_S)
    except CallStalledError:
        abandon(consumer)
        return
    except Exception:  # noqa: BLE001 - closing is best effort
        pass
    dispose(consumer)


def abandon(client: Any) -> None:
    """Keep a client wedged in a call referenced for the rest of the process (never destroyed)."""
    _ABANDONED.append(client)
