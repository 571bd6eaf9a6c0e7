"""User story: an operator stops a running backup with Ctrl-C or `kill` (SIGTERM), or the machine's
supervisor kills it outright (SIGKILL). A signalled run stops within seconds, leaves no manifest
(nothing half-written looks complete) and exits 128 + the signal; however kbackup dies, the
temporary Prefect server it started dies with it; the next backup of the same chain runs."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import child_pids, is_running, kbackup_command, run_kbackup, user_environment
from tests.support.kafka import produce

RECORDS = 300_000


def _messages() -> Iterator[dict[str, Any]]:
    value = bytes(range(256)) * 2
    for i in range(RECORDS):
        yield {"partition": i % 2, "key": f"k{i:07d}".encode(), "value": value}


@pytest.fixture(scope="module")
def big_topic(kafka_config: dict[str, Any], admin: Any) -> Iterator[str]:
    """A topic whose backup takes long enough to be interrupted in the middle."""
    import uuid

    from tests.support.kafka import create_topic, delete_topics

    name = f"signals-{uuid.uuid4().hex[:8]}"
    create_topic(admin, name, 2, {})
    produce(kafka_config, name, _messages())
    yield name
    delete_topics(admin, [name])


def _start_backup(topic: str, bucket: str, cwd: Path) -> subprocess.Popen[str]:
    kcql = f"INSERT INTO {bucket}:sig SELECT * FROM `{topic}` STOREAS AVRO PROPERTIES('store.envelope'=true, 'flush.count'=5000)"
    return subprocess.Popen(
        kbackup_command("backup", "--kcql", kcql),
        cwd=cwd,
        env=user_environment(cwd),  # no PREFECT_API_URL: kbackup starts its own temporary API
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )


def _wait_until_exporting(process: subprocess.Popen[str], s3: Any, bucket: str, topic: str) -> list[int]:
    """Wait until the backup has uploaded a data object; returns kbackup's child processes then."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        if s3.list_objects_v2(Bucket=bucket, Prefix=f"sig/{topic}/").get("KeyCount", 0):
            children = child_pids(process.pid)
            assert children, "kbackup started no temporary Prefect API"
            return children
        time.sleep(0.2)
    process.kill()
    pytest.fail(f"the backup uploaded nothing in 120 s: {process.communicate()}")


def _manifests(s3: Any, bucket: str) -> list[str]:
    listing = s3.list_objects_v2(Bucket=bucket, Prefix="sig/_manifests/", Delimiter="/")
    return [o["Key"] for o in listing.get("Contents", [])]


def _wait_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(is_running(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if is_running(p)]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signalled_backup_stops_within_seconds_and_commits_nothing(
    big_topic: str, s3: Any, bucket: str, tmp_path: Path, sig: signal.Signals
) -> None:
    process = _start_backup(big_topic, bucket, tmp_path)
    children = _wait_until_exporting(process, s3, bucket, big_topic)
    signalled = time.monotonic()
    process.send_signal(sig)
    try:
        out, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"kbackup was still running 30 s after {sig.name}: {process.communicate()}")
    took = time.monotonic() - signalled
    assert process.returncode == 128 + sig, (process.returncode, out, err)
    assert took < 15, f"{sig.name} took {took:.1f} s to stop the backup"
    assert f"stopped by {sig.name}" in err
    assert _manifests(s3, bucket) == [], "a stopped backup committed a manifest"
    assert _wait_gone(children, 10) == [], "the temporary Prefect API outlived kbackup"

    # The chain is not blocked: the next backup of the same bucket:prefix completes.
    rerun = run_kbackup(
        "backup",
        "--kcql",
        f"INSERT INTO {bucket}:sig SELECT * FROM `{big_topic}` STOREAS AVRO PROPERTIES('store.envelope'=true, 'flush.count'=5000)",
        cwd=tmp_path,
        timeout=600,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert f"{RECORDS} records" in rerun.stdout


def test_a_killed_kbackup_takes_its_temporary_prefect_api_with_it(
    big_topic: str, s3: Any, bucket: str, tmp_path: Path
) -> None:
    process = _start_backup(big_topic, bucket, tmp_path)
    children = _wait_until_exporting(process, s3, bucket, big_topic)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    assert _wait_gone(children, 15) == [], "the temporary Prefect API outlived a SIGKILLed kbackup"
    assert _manifests(s3, bucket) == []


def test_an_interrupted_restore_aborts_its_transaction_and_a_rerun_is_exactly_once(
    big_topic: str,
    kafka_config: dict[str, Any],
    s3: Any,
    admin: Any,
    bucket: str,
    unique_name: Any,
    tmp_path: Path,
) -> None:
    from tests.support.kafka import consume_all, delete_topics, high_watermarks
    from tests.support.topics import topic_digests

    backup = run_kbackup(
        "backup",
        "--kcql",
        f"INSERT INTO {bucket}:sig SELECT * FROM `{big_topic}` STOREAS AVRO PROPERTIES('store.envelope'=true, 'flush.count'=5000)",
        cwd=tmp_path,
    )
    assert backup.returncode == 0, backup.stderr
    target = unique_name("sigdst")
    kcql = f"INSERT INTO `{target}` SELECT * FROM {bucket}:sig"
    try:
        process = subprocess.Popen(
            kbackup_command("restore", "--kcql", kcql),
            cwd=tmp_path,
            env=user_environment(tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # until some records are in, well before the end
            assert process.poll() is None, process.communicate()
            try:
                if sum(high for _, high in high_watermarks(kafka_config, target, 2)) > 20_000:
                    break
            except Exception:  # noqa: BLE001 - the topic may not exist yet
                pass
            time.sleep(0.1)
        children = child_pids(process.pid)
        signalled = time.monotonic()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
        took = time.monotonic() - signalled
        assert process.returncode == 130, (out, err)
        assert took < 15, f"SIGINT took {took:.1f} s to stop the restore"
        assert "stopped by SIGINT" in err
        assert _wait_gone(children, 10) == []
        # Only committed transactions are visible, and the stop left none open: a read_committed
        # consumer reaches the end of every partition.
        committed = consume_all(kafka_config, target, 2)
        assert 0 < len(committed) < RECORDS

        rerun = run_kbackup("restore", "--kcql", kcql, cwd=tmp_path)
        assert rerun.returncode == 0, rerun.stderr
        restored = consume_all(kafka_config, target, 2)
        source = consume_all(kafka_config, big_topic, 2)
        assert len(restored) == len(source) == RECORDS
        assert topic_digests(restored) == topic_digests(source)
    finally:
        delete_topics(admin, [target])
