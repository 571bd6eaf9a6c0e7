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


# concurrency 1: both partitions in one work unit (one producer, transactions spanning both)
WORK_UNITS = pytest.mark.parametrize(
    "concurrency", [4, 1], ids=["a-work-unit-per-partition", "one-work-unit"]
)


@WORK_UNITS
def test_failure_mid_restore_reports_what_is_committed_and_a_rerun_resumes(
    kafka_config, s3, admin, create_topic, bucket, unique_name, concurrency
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
            _restore(kcql, concurrency=concurrency)
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


@pytest.mark.parametrize("concurrency", [2, 1], ids=["a-work-unit-per-partition", "one-work-unit"])
def test_a_stop_request_ends_the_restore_within_seconds_and_a_rerun_resumes(
    kafka_config, s3, admin, create_topic, bucket, unique_name, concurrency
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
            outcome.append(_restore(kcql, concurrency=concurrency))
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


def _dangling_transaction(
    kafka_config: dict[str, Any], transactional_id: str, group: str, topic: str, record: bool
) -> Any:
    """A producer that began a transaction under `transactional_id` (a record in `topic`/0 when
    `record`, and offset 0 for `group` with a unit's first metadata) and never ends it, as a
    killed restore leaves it: its offsets hold the group (UNSTABLE_OFFSET_COMMIT), its record the
    partition's last stable offset."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    producer = Producer(
        {**kafka_config, "transactional.id": transactional_id, "transaction.timeout.ms": 120_000}
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    if record:
        producer.produce(topic, b"dangling", b"dangling", partition=0)
        producer.flush(30)
    consumer = Consumer({**kafka_config, "group.id": group})
    metadata = consumer.consumer_group_metadata()
    consumer.close()
    where = [TopicPartition(topic, 0, 0, metadata='{"src":null,"starts":{"0":0}}')]
    producer.send_offsets_to_transaction(where, metadata, 30)
    return producer


def _is_fenced(producer: Any) -> bool:
    """Whether the dangling transaction was aborted and its producer fenced by someone else."""
    from confluent_kafka import KafkaException

    try:
        producer.commit_transaction(30)
    except KafkaException as exc:
        error = exc.args[0]
        return bool(error.fatal() or error.txn_requires_abort())
    return False


def test_a_rerun_in_fewer_work_units_fences_the_slots_it_no_longer_uses(
    kafka_config, s3, admin, create_topic, bucket, unique_name
):
    """A run in 4 work units, then a transaction left open under slot 3 (a killed run); the
    rerun works in 1 work unit (slot 0) and must fence slot 3 before anything else: else its
    open transaction would hold unit 0's progress (the progress group's offset on partition 0,
    layout.restore.progress) and the partition until the broker's timeout."""
    source = create_topic("src", partitions=4)
    produce(
        kafka_config,
        source,
        ({"partition": i % 4, "key": f"k{i}".encode(), "value": b"v"} for i in range(40)),
    )
    build_backup(s3, kafka_config, source, 4, bucket, "sl", per_object=5)
    target = unique_name("dst")
    kcql = f"INSERT INTO `{target}` SELECT * FROM {bucket}:sl"
    try:
        first = _restore(kcql, concurrency=4)
        assert first.ok
        names = f"kbackup-restore-{first.restore_id}"  # slot ids (tasks.restore.writer), progress group
        dangling = _dangling_transaction(kafka_config, f"{names}-w3", f"{names}-progress", target, True)
        started = time.monotonic()
        rerun = _restore(kcql, concurrency=1)
        assert rerun.ok and time.monotonic() - started < 60
        assert [u.produced for u in rerun.units] == [0, 0, 0, 0]
        assert _is_fenced(dangling)
        assert _by_partition(consume_all(kafka_config, target, 4)) == _by_partition(
            consume_all(kafka_config, source, 4)
        )
    finally:
        admin.delete_topics([target])


def test_a_restore_left_open_by_a_version_before_work_units_resumes(
    kafka_config, s3, store, admin, create_topic, bucket, unique_name
):
    """Before work units a restore produced under one transactional id per unit: a run killed in
    its first (begin-marker) transaction leaves the unit's group held under that id. The first run
    under work units fences it (the restore has recorded no slots yet) and restores everything."""
    from flows.parameters import selection_of
    from tasks.restore.discover import plan_restore
    from tasks.restore.writer import unit_names

    source = create_topic("src", partitions=2)
    produce(
        kafka_config,
        source,
        ({"partition": i % 2, "key": f"k{i}".encode(), "value": b"v"} for i in range(20)),
    )
    build_backup(s3, kafka_config, source, 2, bucket, "old", per_object=5)
    target = unique_name("dst")
    create_plain_topic(admin, target, 2, {})
    kcql = f"INSERT INTO `{target}` SELECT * FROM {bucket}:old"
    try:
        plan = plan_restore(store, selection_of(RestoreParameters(kcql=kcql)))
        transactional_id, group = unit_names(plan, plan.units[0])
        dangling = _dangling_transaction(kafka_config, transactional_id, group, target, False)
        started = time.monotonic()
        report = _restore(kcql)
        assert report.ok and report.records == 20 and time.monotonic() - started < 60
        assert _is_fenced(dangling)
        assert _by_partition(consume_all(kafka_config, target, 2)) == _by_partition(
            consume_all(kafka_config, source, 2)
        )
    finally:
        admin.delete_topics([target])
