"""User story: a `kbackup backup` is killed (SIGKILL) while it holds the lock of its bucket:prefix;
the next backup of that prefix says it waits for the killed run, takes the lock over once the killed
run's lease ran out, and completes — within the lease time, not an hour."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from layout.lock import LeaseRecord, lease_key
from tasks.services.locks import CLOCK_MARGIN_SECONDS
from tasks.services.manifest_store import list_backup_ids, read_chain
from tests.support.cli import kbackup_command, user_environment
from tests.support.kafka import produce

RECORDS = 60_000  # 2 × 30 MB: the backup runs for several seconds after it takes the lock
LEASE_SECONDS = 15


def _start(kcql: str, home: Path) -> tuple[subprocess.Popen[str], Path]:
    """`kbackup backup` in a folder (and temporary Prefect server) of its own, output to a file."""
    home.mkdir()
    output = home / "output.txt"
    env = user_environment(home, {"KBACKUP_LOCK_LEASE_SECONDS": str(LEASE_SECONDS)})
    with output.open("w") as sink:
        process = subprocess.Popen(
            kbackup_command("backup", "--kcql", kcql),
            cwd=home,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,  # its temporary Prefect server can be stopped with it
        )
    return process, output


def _lease(s3: Any, bucket: str, epoch: int) -> LeaseRecord | None:
    try:
        body = s3.get_object(Bucket=bucket, Key=lease_key("k", "backup", epoch))["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    return LeaseRecord.model_validate_json(body)


@pytest.mark.timeout(240)
def test_a_killed_backup_holds_the_lock_only_for_its_lease(
    kafka_config: dict, s3: Any, store: Any, create_topic: Any, bucket: str, stack_env: dict, tmp_path: Path
) -> None:
    topic = create_topic("killed", partitions=2)
    produce(
        kafka_config,
        topic,
        (
            {"partition": i % 2, "key": f"k{i:06d}".encode(), "value": os.urandom(1000)}
            for i in range(RECORDS)
        ),
    )
    kcql = f"INSERT INTO {bucket}:k SELECT * FROM `{topic}` STOREAS AVRO PROPERTIES('store.envelope'=true)"
    # Two runs start together; the one that takes the lock first is killed while it holds it.
    runs = {p.pid: (p, out) for p, out in (_start(kcql, tmp_path / "a"), _start(kcql, tmp_path / "b"))}
    started = list(runs)
    try:
        deadline = time.monotonic() + 150
        while (held := _lease(s3, bucket, 1)) is None:
            assert time.monotonic() < deadline, "no run took the lock"
            assert all(p.poll() is None for p, _ in runs.values()), [o.read_text() for _, o in runs.values()]
            time.sleep(0.1)
        killed, _ = runs.pop(held.pid)
        [(survivor, survivor_output)] = runs.values()
        time.sleep(1)
        still_held = _lease(s3, bucket, 1)
        assert killed.poll() is None and still_held and not still_held.released, (
            "the first run ended too soon"
        )
        killed.send_signal(signal.SIGKILL)
        killed_at = datetime.now(UTC)
        killed.wait(30)
        assert list_backup_ids(store, bucket, "k") == []

        survivor.wait(150)
        output = survivor_output.read_text()
        assert survivor.returncode == 0, output
    finally:
        for pid in started:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)  # the temporary Prefect servers

    assert f"waiting for the backup lock of s3://{bucket}/k: held by {held.holder()}, lease expires" in output
    assert f"took over the backup lock of s3://{bucket}/k: the lease of {held.holder()} expired" in output
    taken = _lease(s3, bucket, 2)
    assert taken is not None and taken.pid == survivor.pid
    # free at the latest a lease (plus margin, timestamp resolution and one poll) after the kill
    assert (taken.acquired_at - killed_at).total_seconds() <= LEASE_SECONDS + CLOCK_MARGIN_SECONDS + 1 + 2.5
    [manifest] = read_chain(store, bucket, "k")
    assert manifest.record_count == RECORDS
