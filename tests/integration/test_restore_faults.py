"""Restore faults against the real stack: the pre-flight refuses damaged or missing objects before
anything is created, a failure mid-restore reports what is committed per target partition and a
rerun resumes exactly once, a non-empty target is refused unless appending is asked for, and a stop
request ends a running restore within seconds. (A broker restart mid-restore is in
tests/e2e/test_restore_faults_cli.py, on a stack of the test session's own.)"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest

from flows.restore import RestoreFailed, RestoreParameters, restore_flow
from formats.errors import CorruptObjectError
from layout.restore.errors import MissingObjectError
from tasks.restore.errors import PreflightError, TargetNotEmptyError
from tasks.runtime import shutdown
from tests.support.kafka import consume_all, high_watermarks, produce
from tests.support.kafka import create_topic as create_plain_topic
from tests.support.restore_backups import build_backup

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _restore(kcql: str, **kwargs: Any) -> Any:
    return restore_flow(RestoreParameters(kcql=kcql, **kwargs))


def _topic_exists(admin: Any, topic: str) -> bool:
    return topic in admin.list_topics(timeout=10).topics


def _two_partitions(kafka_config: dict[str, Any], create_topic: Any, records: int = 80) -> str:
    source = create_topic("src", partitions=2)
    produce(
        kafka_config,
        source,
        (
            {"partition": i % 2, "key": f"k{i:05d}".encode(), "value": f"v{i}".encode()}
            for i in range(records)
        ),
    )
    return source


def _same_size_other_bytes(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0xFF for b in data[middle : middle + 8]) + data[middle + 8 :]


def _by_partition(messages: list[Any]) -> dict[int, list[tuple[bytes, bytes]]]:
    result: dict[int, list[tuple[bytes, bytes]]] = {}
    for m in messages:
        result.setdefault(m.partition(), []).append((m.key(), m.value()))
    return result


def test_quick_preflight_names_every_bad_object_before_anything_is_created(
    kafka_config, s3, admin, create_topic, bucket, unique_name
):
    source = _two_partitions(kafka_config, create_topic)
    manifest = build_backup(s3, kafka_config, source, 2, bucket, "q", per_object=10)
    truncated = manifest.partitions[1].objects[2].key
    missing = manifest.partitions[0].objects[3].key
    data = s3.get_object(Bucket=bucket, Key=truncated)["Body"].read()
    s3.put_object(Bucket=bucket, Key=truncated, Body=data[: len(data) // 2])
    s3.delete_object(Bucket=bucket, Key=missing)
    target = unique_name("dst")
    with pytest.raises(PreflightError) as caught:
        _restore(f"INSERT INTO `{target}` SELECT * FROM {bucket}:q")
    error = caught.value
    assert error.mode == "quick" and error.checked == 8
    assert set(error.keys) == {truncated, missing}
    kinds = {getattr(p, "key", None): type(p) for p in error.problems}
    assert kinds == {truncated: CorruptObjectError, missing: MissingObjectError}
    assert f"{len(data) // 2} bytes in the bucket, the manifest says {len(data)}" in str(error)
    assert "nothing was restored" in str(error)
    assert not _topic_exists(admin, target)  # refused before the target was created


def test_full_preflight_finds_other_bytes_of_the_same_size(
    kafka_config, s3, admin, create_topic, bucket, unique_name
):
    source = _two_partitions(kafka_config, create_topic)
    manifest = build_backup(s3, kafka_config, source, 2, bucket, "f", per_object=10)
    changed = manifest.partitions[0].objects[1].key
    data = s3.get_object(Bucket=bucket, Key=changed)["Body"].read()
    s3.put_object(Bucket=bucket, Key=changed, Body=_same_size_other_bytes(data))
    target = unique_name("dst")
    with pytest.raises(PreflightError) as caught:
        _restore(f"INSERT INTO `{target}` SELECT * FROM {bucket}:f PROPERTIES('restore.preflight'='full')")
    assert caught.value.mode == "full" and caught.value.keys == (changed,)
    assert "differs from the manifest's" in str(caught.value)
    assert not _topic_exists(admin, target)


def test_failure_mid_restore_reports_what_is_committed_and_a_rerun_resumes(
    kafka_config, s3, admin, create_topic, bucket, unique_name
):
    source = _two_partitions(kafka_config, create_topic)
    manifest = build_backup(s3, kafka_config, source, 2, bucket, "mid", per_object=10)
    bad = manifest.partitions[1].objects[2].key  # records 20-29 of partition 1
    data = s3.get_object(Bucket=bucket, Key=bad)["Body"].read()
    s3.put_object(Bucket=bucket, Key=bad, Body=_same_size_other_bytes(data))
    target = unique_name("dst")
    # LIMIT 5: a transaction every 5 records; no pre-flight, so reading finds the object
    kcql = f"INSERT INTO `{target}` SELECT * FROM {bucket}:mid LIMIT 5 PROPERTIES('restore.preflight'='none')"
    try:
        with pytest.raises(RestoreFailed) as caught:
            _restore(kcql)
        assert isinstance(caught.value.cause, CorruptObjectError) and caught.value.cause.key == bad
        report = caught.value.report
        progress = {p.target: (p.status, p.committed, p.expected) for p in report.progress}
        assert progress == {f"{target}/0": ("complete", 40, 40), f"{target}/1": ("partial", 20, 40)}
        assert [p.describe() for p in report.progress] == [
            f"{target}/0: complete (40 of 40 records committed)",
            f"{target}/1: partial (20 of 40 records committed)",
        ]
        assert report.resume is not None
        assert "1 complete, 1 partial (of 2)" in report.resume
        assert "run the same restore again" in report.resume and "exactly once" in report.resume
        assert len(consume_all(kafka_config, target, 2)) == 60

        s3.put_object(Bucket=bucket, Key=bad, Body=data)  # the cause removed: the rerun resumes
        rerun = _restore(kcql)
        assert {u.unit: (u.resumed_after, u.produced) for u in rerun.units} == {
            f"{source}.0": (40, 0),
            f"{source}.1": (20, 20),
        }
        assert rerun.ok
        assert _by_partition(consume_all(kafka_config, target, 2)) == _by_partition(
            consume_all(kafka_config, source, 2)
        )
    finally:
        admin.delete_topics([target])


def test_a_target_with_records_of_its_own_is_refused_unless_appending(
    kafka_config, s3, admin, create_topic, bucket, unique_name
):
    source = create_topic("src", partitions=1)
    produce(kafka_config, source, ({"key": f"k{i}".encode(), "value": b"restored"} for i in range(20)))
    build_backup(s3, kafka_config, source, 1, bucket, "ne", per_object=6)
    target = unique_name("dst")
    try:
        create_plain_topic(admin, target, 1, {})
        produce(kafka_config, target, ({"key": b"mine", "value": f"old{i}".encode()} for i in range(3)))
        kcql = f"INSERT INTO `{target}` SELECT * FROM {bucket}:ne"
        with pytest.raises(TargetNotEmptyError) as caught:
            _restore(kcql)
        error = caught.value
        assert (error.topic, error.records, error.ranges) == (target, 3, {0: (0, 3)})
        assert "'restore.target.nonempty'='append'" in str(error)
        assert high_watermarks(kafka_config, target, 1) == [(0, 3)]  # nothing produced

        report = _restore(kcql + " PROPERTIES('restore.target.nonempty'='append')")
        assert report.ok and report.records == 20
        values = [m.value() for m in consume_all(kafka_config, target, 1)]
        assert values == [b"old0", b"old1", b"old2"] + [b"restored"] * 20
        # and a rerun of that same restore finds its own records after the old ones: allowed
        again = _restore(kcql + " PROPERTIES('restore.target.nonempty'='append')")
        assert again.units[0].produced == 0 and again.units[0].resumed_after == 20
    finally:
        admin.delete_topics([target])


def test_a_stop_request_ends_the_restore_within_seconds_and_a_rerun_resumes(
    kafka_config, s3, admin, create_topic, bucket, unique_name
):
    records = 40_000
    source = create_topic("stop", partitions=2)
    produce(
        kafka_config,
        source,
        ({"partition": i % 2, "key": f"k{i:06d}".encode(), "value": os.urandom(100)} for i in range(records)),
    )
    build_backup(s3, kafka_config, source, 2, bucket, "s", per_object=1_000)
    target = unique_name("dst")
    kcql = f"INSERT INTO `{target}` SELECT * FROM {bucket}:s LIMIT 500"
    outcome: list[BaseException | Any] = []

    def run() -> None:
        try:
            outcome.append(_restore(kcql, concurrency=2))
        except BaseException as exc:  # noqa: BLE001 - inspected below
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    try:
        thread.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(0.1)
            try:
                if sum(high for _, high in high_watermarks(kafka_config, target, 2)) > 2_000:
                    break
            except Exception:  # noqa: BLE001 - the topic may not exist yet
                continue
        asked = time.monotonic()
        shutdown.request_stop("test")
        thread.join(30)
        stopped_after = time.monotonic() - asked
        assert not thread.is_alive() and stopped_after < 15, stopped_after
        [failed] = outcome
        assert isinstance(failed, RestoreFailed), failed
        assert isinstance(failed.cause, shutdown.RunInterrupted)
        committed = {p.target: p.committed for p in failed.report.progress}
        assert all(p.status in ("partial", "not started") for p in failed.report.progress)
        # the open transactions were aborted: what a reader sees is exactly what was committed
        visible = _by_partition(consume_all(kafka_config, target, 2))
        assert {f"{target}/{p}": len(v) for p, v in visible.items()} == {
            t: n for t, n in committed.items() if n
        }
        assert all(n % 500 == 0 for n in committed.values() if n)
    finally:
        shutdown.clear()
    try:
        rerun = _restore(kcql)
        assert rerun.ok and rerun.records == records
        assert _by_partition(consume_all(kafka_config, target, 2)) == _by_partition(
            consume_all(kafka_config, source, 2)
        )
    finally:
        admin.delete_topics([target])
