"""Timestamps across their space, backed up and restored against the real stack: 0 (which
librdkafka cannot write: refused before anything is written, or written as 1 with
'restore.timestamp.zero'='substitute'), 1, negative ones, the largest (2^63-1, on topics whose
`message.timestamp.after.max.ms` admits it), and records without a timestamp. Records with
timestamp 0 are produced by Kafka's Java client (tests/support/java_producer.py). LogAppendTime
sources: tests/integration/test_restore.py::test_log_append_time_source_keeps_its_timestamps."""

from __future__ import annotations

from typing import Any

import pytest

from flows.backup import BackupParameters, backup_flow
from flows.restore import RestoreFailed, RestoreParameters, restore_flow
from formats import get_codec
from formats.envelope import Record, TimestampType
from kcql import parse_backup
from layout.restore.errors import UnwritableTimestampError
from layout.spec_bridge import codec_context
from tests.support.java_producer import produce_timestamps
from tests.support.kafka import consume_all, produce
from tests.support.topics import NOW_MS

pytestmark = pytest.mark.usefixtures("prefect_harness")

LARGEST = 2**63 - 1
# The broker refuses a timestamp more than message.timestamp.after.max.ms ahead (1 h by default).
BOUNDLESS = {"message.timestamp.after.max.ms": str(LARGEST)}
SUBSTITUTE = " PROPERTIES('restore.timestamp.zero'='substitute')"


def _restore(kcql: str) -> Any:
    return restore_flow(RestoreParameters(kcql=kcql))


def _backup(bucket: str, prefix: str, topic: str) -> None:
    backup_flow(
        BackupParameters(
            kcql=f"INSERT INTO {bucket}:{prefix} SELECT * FROM `{topic}` STOREAS AVRO "
            "PROPERTIES('store.envelope'=true)"
        )
    )


def _stamps(messages: list[Any]) -> list[tuple[int, bytes, tuple[int, int]]]:
    return [(m.partition(), m.key(), m.timestamp()) for m in messages]


def _zero_topic(stack_env: dict[str, str], create_topic: Any) -> str:
    """Two partitions; partition 0 holds timestamp 0 at offset 2, partition 1 at offset 1."""
    source = create_topic("zero", partitions=2)
    produce_timestamps(
        stack_env["KBACKUP_KAFKA_BOOTSTRAP_SERVERS"],
        source,
        [(0, NOW_MS), (0, NOW_MS + 1), (0, 0), (1, NOW_MS), (1, 0), (0, NOW_MS + 2)],
    )
    return source


def test_timestamp_zero_is_refused_before_anything_is_written(
    stack_env, kafka_config, admin, create_topic, bucket, unique_name
):
    source = _zero_topic(stack_env, create_topic)
    assert [m.timestamp() for m in consume_all(kafka_config, source, 2) if m.key() in (b"k2", b"k4")] == [
        (1, 0),
        (1, 0),
    ]
    _backup(bucket, "z", source)
    target = unique_name("dst")
    with pytest.raises(UnwritableTimestampError) as caught:
        _restore(f"INSERT INTO `{target}` SELECT * FROM {bucket}:z")
    error = caught.value
    assert (error.topic, error.partition, error.offset, error.timestamp, error.count) == (source, 0, 2, 0, 2)
    assert not error.written and "nothing was written" in str(error)
    assert "'restore.timestamp.zero'='substitute'" in str(error)
    assert target not in admin.list_topics(timeout=10).topics  # not even created


def test_timestamp_zero_is_written_as_one_with_substitute_and_the_check_expects_it(
    stack_env, kafka_config, admin, create_topic, bucket, unique_name
):
    source = _zero_topic(stack_env, create_topic)
    _backup(bucket, "z", source)
    target = unique_name("dst")
    try:
        report = _restore(f"INSERT INTO `{target}` SELECT * FROM {bucket}:z" + SUBSTITUTE)
        assert report.ok and len(report.checks) == 2 and all(c.digest_compared for c in report.checks)
        expected = [
            (p, key, (1, 1) if stamp == (1, 0) else stamp)
            for p, key, stamp in _stamps(consume_all(kafka_config, source, 2))
        ]
        assert _stamps(consume_all(kafka_config, target, 2)) == expected
        assert "2 records with timestamp 0" in report.preflight
        assert [n for n in report.notes if "timestamp 0" in n] == [
            f"{target}: 2 records with timestamp 0 (1970-01-01T00:00:00Z) were written with timestamp 1 "
            "('restore.timestamp.zero'='substitute'); the check expected the substitute"
        ]
    finally:
        admin.delete_topics([target])


def test_one_negative_and_the_largest_timestamps_restore_exactly(
    stack_env, kafka_config, admin, create_topic, bucket, unique_name
):
    source = create_topic("space", partitions=1, config=BOUNDLESS)
    produce_timestamps(
        stack_env["KBACKUP_KAFKA_BOOTSTRAP_SERVERS"], source, [(0, 1), (0, NOW_MS), (0, LARGEST), (0, 2)]
    )
    # librdkafka writes negative timestamps as they are (the Java client refuses them)
    produce(kafka_config, source, ({"key": b"neg", "value": b"v", "timestamp": t} for t in (-1, -5)))
    original = _stamps(consume_all(kafka_config, source, 1))
    assert [stamp for _, _, stamp in original] == [
        (1, 1),
        (1, NOW_MS),
        (1, LARGEST),
        (1, 2),
        (1, -1),
        (1, -5),
    ]
    _backup(bucket, "s", source)
    target = unique_name("dst")
    try:
        report = _restore(f"INSERT INTO `{target}` SELECT * FROM {bucket}:s")
        assert report.ok and all(c.digest_compared for c in report.checks)
        assert _stamps(consume_all(kafka_config, target, 1)) == original
    finally:
        admin.delete_topics([target])


def _stream_reactor_object(s3: Any, bucket: str, prefix: str, topic: str, stamps: list[int | None]) -> None:
    """One envelope object as Stream Reactor writes it (no manifest): records 0.. of partition 0,
    with `stamps` (None: no timestamp, type NO_TIMESTAMP_TYPE)."""
    spec = parse_backup(
        f"INSERT INTO {bucket}:{prefix} SELECT * FROM `{topic}` STOREAS AVRO PROPERTIES('store.envelope'=true)"
    )[0]
    records = [
        Record(
            f"k{i}".encode(),
            f"v{i}".encode(),
            (),
            topic,
            0,
            i,
            stamp,
            TimestampType.NO_TIMESTAMP_TYPE if stamp is None else TimestampType.CREATE_TIME,
        )
        for i, stamp in enumerate(stamps)
    ]
    writer = get_codec("AVRO").writer(codec_context("AVRO", spec.codec, topic, 0))
    writer.write(records)
    key = f"{prefix}/{topic}/0/{len(stamps) - 1:012d}.avro"
    s3.put_object(Bucket=bucket, Key=key, Body=writer.finish())


def test_records_without_a_timestamp_get_the_restores_time_and_are_checked_by_count(
    kafka_config, s3, admin, bucket, unique_name
):
    target = unique_name("dst")
    _stream_reactor_object(s3, bucket, "none", "src", [NOW_MS, None, None])
    try:
        report = _restore(
            f"INSERT INTO `{target}` SELECT * FROM {bucket}:none STOREAS AVRO PROPERTIES('store.envelope'=true)"
        )
        assert report.ok and [c.digest_compared for c in report.checks] == [False]
        restored = consume_all(kafka_config, target, 1)
        assert [m.key() for m in restored] == [b"k0", b"k1", b"k2"]
        assert restored[0].timestamp() == (1, NOW_MS)
        assert all(m.timestamp()[0] == 1 and m.timestamp()[1] > NOW_MS for m in restored[1:])
    finally:
        admin.delete_topics([target])


def test_without_a_manifest_timestamp_zero_is_refused_before_its_batch_is_produced(
    kafka_config, s3, admin, bucket, unique_name
):
    target = unique_name("dst")
    _stream_reactor_object(s3, bucket, "nm", "src", [NOW_MS, NOW_MS + 1, NOW_MS + 2, 0, NOW_MS + 4])
    kcql = f"INSERT INTO `{target}` SELECT * FROM {bucket}:nm STOREAS AVRO PROPERTIES('store.envelope'=true"
    try:
        with pytest.raises(RestoreFailed) as caught:
            _restore(kcql + ")")
        error = caught.value.cause
        assert isinstance(error, UnwritableTimestampError)
        assert (error.topic, error.partition, error.offset, error.timestamp, error.written) == (
            "src",
            0,
            3,
            0,
            True,
        )
        assert consume_all(kafka_config, target, 1) == []  # the batch holding it was not produced
        report = _restore(kcql + ", 'restore.timestamp.zero'='substitute')")  # the same restore, resumed
        assert report.ok and report.units[0].records == 5
        assert [m.timestamp()[1] for m in consume_all(kafka_config, target, 1)] == [
            NOW_MS,
            NOW_MS + 1,
            NOW_MS + 2,
            1,
            NOW_MS + 4,
        ]
    finally:
        admin.delete_topics([target])
