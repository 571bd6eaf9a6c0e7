"""Restore against the real stack: backups built by tests/support/restore_backups.py (the same
shape the backup flow writes), restored by the restore flow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flows.restore import RestoreFailed, RestoreParameters, restore_flow
from formats.errors import CorruptObjectError
from kcql.selection import restore_selection
from layout.restore.errors import BackupIncompleteError, MissingObjectError
from tasks.restore.discover import plan_restore
from tasks.restore.errors import PreflightError, TargetPartitionsError
from tasks.restore.work import restore_work_unit
from tasks.services.errors import KafkaOperationError, TransientStorageError
from tests.support.kafka import by_partition, consume_all, high_watermarks, numbered_messages, produce
from tests.support.restore_backups import build_backup, group_at
from tests.support.topics import NOW_MS, OLD_MS, topic_digests, tricky_messages

pytestmark = pytest.mark.usefixtures("prefect_harness")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"  # tests/fixtures (see its README)


def _restore(kcql: str, **kwargs: Any) -> Any:
    return restore_flow(RestoreParameters(kcql=kcql, **kwargs))


@pytest.mark.parametrize("fmt", ["AVRO", "PARQUET", "JSON"])
def test_tricky_topic_restores_byte_identically(
    fmt, kafka_config, s3, admin, filled_topic, bucket, unique_name
):
    source = filled_topic("src", 4, tricky_messages(partitions=4, random_per_partition=25))
    manifest = build_backup(s3, kafka_config, source, 4, bucket, "bk", fmt=fmt, per_object=10)
    target = unique_name("dst")
    try:
        report = _restore(f"INSERT INTO `{target}` SELECT * FROM {bucket}:bk")
        expected = topic_digests(consume_all(kafka_config, source, 4))
        restored = topic_digests(consume_all(kafka_config, target, 4))
        assert restored == expected
        assert expected == {p.partition: p.records_digest for p in manifest.partitions}
        assert report.ok and len(report.checks) == 4 and all(c.digest_compared for c in report.checks)
        assert report.records == manifest.record_count
    finally:
        admin.delete_topics([target])


def _timed_topic(kafka_config, create_topic, count=60):
    source = create_topic("timed", partitions=2)
    produce(
        kafka_config,
        source,
        (
            {
                "partition": i % 2,
                "key": f"k{i}".encode(),
                "value": f"v{i}".encode(),
                "timestamp": OLD_MS + i * 1000,
            }
            for i in range(count)
        ),
    )
    return source


def test_time_window_restores_exactly_the_records_in_it(
    kafka_config, s3, admin, create_topic, bucket, unique_name
):
    source = _timed_topic(kafka_config, create_topic)
    build_backup(s3, kafka_config, source, 2, bucket, "pit", per_object=7)
    target = unique_name("dst")
    start, end = OLD_MS + 10_000, OLD_MS + 30_000
    try:
        _restore(
            f"INSERT INTO `{target}` SELECT * FROM {bucket}:pit", restore_from=str(start), restore_to=str(end)
        )
        restored = consume_all(kafka_config, target, 2)
        expected = [m for m in consume_all(kafka_config, source, 2) if start <= m.timestamp()[1] < end]
        assert sorted((m.partition(), m.key(), m.timestamp()[1]) for m in restored) == sorted(
            (m.partition(), m.key(), m.timestamp()[1]) for m in expected
        )
        assert len(restored) == 20
    finally:
        admin.delete_topics([target])


def test_offset_window(kafka_config, s3, admin, create_topic, bucket, unique_name):
    source = _timed_topic(kafka_config, create_topic)
    build_backup(s3, kafka_config, source, 2, bucket, "ow", per_object=7)
    target = unique_name("dst")
    try:
        _restore(
            f"INSERT INTO `{target}` SELECT * FROM {bucket}:ow",
            restore_from="offset:5",
            restore_to="offset:12",
        )
        restored = consume_all(kafka_config, target, 2)
        by_partition = {p: [m.key() for m in restored if m.partition() == p] for p in (0, 1)}
        assert by_partition[0] == [f"k{2 * i}".encode() for i in range(5, 12)]
        assert by_partition[1] == [f"k{2 * i + 1}".encode() for i in range(5, 12)]
    finally:
        admin.delete_topics([target])


def test_hive_filter_restores_only_emea(kafka_config, s3, admin, create_topic, bucket, unique_name):
    source = create_topic("regions", partitions=2)
    regions = ["EMEA", "AMER", "APAC"]
    produce(
        kafka_config,
        source,
        (
            {
                "partition": i % 2,
                "key": f"k{i}".encode(),
                "value": json.dumps({"i": i, "region": regions[i % 3]}).encode(),
            }
            for i in range(90)
        ),
    )
    build_backup(
        s3,
        kafka_config,
        source,
        2,
        bucket,
        "hive",
        per_object=8,
        partition_key=lambda r: {"region": json.loads(r.value)["region"]},
    )
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="hive/region=EMEA/")["Contents"]]
    assert keys
    target = unique_name("dst")
    try:
        report = _restore(
            f"INSERT INTO `{target}` SELECT * FROM {bucket}:hive PROPERTIES('restore.filter'='region=EMEA')"
        )
        restored = consume_all(kafka_config, target, 2)
        assert len(restored) == 30 and report.records == 30
        assert {json.loads(m.value())["region"] for m in restored} == {"EMEA"}
        for p in (0, 1):  # in source order within each partition
            values = [json.loads(m.value())["i"] for m in restored if m.partition() == p]
            assert values == sorted(values)
    finally:
        admin.delete_topics([target])


@pytest.mark.parametrize("metadata", ["m", ""], ids=["with-metadata", "no-metadata"])
def test_consumer_group_resumes_at_the_restored_record(
    metadata, kafka_config, s3, admin, filled_topic, bucket, unique_name
):
    from confluent_kafka import Consumer, TopicPartition

    source = filled_topic("grp", 1, numbered_messages(50))
    group = unique_name("app")
    build_backup(
        s3,
        kafka_config,
        source,
        1,
        bucket,
        "g",
        per_object=9,
        groups=[group_at(group, source, 0, 17, metadata)],
    )
    target = unique_name("dst")
    try:
        # a pre-existing record in the target shifts the offsets; commit batches add markers
        create = __import__("tests.support.kafka", fromlist=["create_topic"]).create_topic
        create(admin, target, 1, {})
        produce(kafka_config, target, [{"key": b"other", "value": b"already here"}])
        report = restore_flow(
            RestoreParameters(
                kcql=f"INSERT INTO `{target}` SELECT * FROM {bucket}:g LIMIT 5 "
                "PROPERTIES('restore.target.nonempty'='append')",
                group_prefix="r-",
            )
        )
        [translation] = report.groups
        assert translation.group == f"r-{group}" and translation.source_offset == 17
        consumer = Consumer(
            {
                **kafka_config,
                "group.id": f"r-{group}",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
            }
        )
        try:
            [tp] = consumer.committed([TopicPartition(target, 0)], timeout=10)
            assert tp.offset == translation.target_offset
            consumer.assign([TopicPartition(target, 0, tp.offset)])
            message = consumer.poll(10)
            assert message is not None and message.key() == b"k17"
        finally:
            consumer.close()
    finally:
        admin.delete_topics([target])


def test_missing_manifest_is_refused(kafka_config, s3, filled_topic, bucket, unique_name):
    source = filled_topic("nomani", 1, numbered_messages(10, key=b"k"))
    build_backup(s3, kafka_config, source, 1, bucket, "half", per_object=4, write_manifest=False)
    with pytest.raises(BackupIncompleteError) as caught:
        _restore(f"INSERT INTO `{unique_name('dst')}` SELECT * FROM {bucket}:half")
    assert caught.value.bucket == bucket and caught.value.prefix == "half"
    assert "no manifest" in str(caught.value)


def test_object_missing_from_the_bucket(kafka_config, s3, filled_topic, bucket, unique_name):
    source = filled_topic("gone", 1, numbered_messages(10, key=b"k"))
    manifest = build_backup(s3, kafka_config, source, 1, bucket, "gone", per_object=4)
    key = manifest.partitions[0].objects[1].key
    s3.delete_object(Bucket=bucket, Key=key)
    with pytest.raises(PreflightError) as caught:
        _restore(f"INSERT INTO `{unique_name('dst')}` SELECT * FROM {bucket}:gone")
    assert caught.value.keys == (key,) and caught.value.mode == "quick"
    [missing] = caught.value.problems
    assert isinstance(missing, MissingObjectError) and missing.backup_id == manifest.backup_id


def test_truncated_object_fails_its_partition_only(
    kafka_config, s3, admin, filled_topic, bucket, unique_name
):
    source = filled_topic("trunc", 2, numbered_messages(40, 2, key=b"k"))
    manifest = build_backup(s3, kafka_config, source, 2, bucket, "tr", per_object=5)
    bad = manifest.partitions[1].objects[2].key
    data = s3.get_object(Bucket=bucket, Key=bad)["Body"].read()
    s3.put_object(Bucket=bucket, Key=bad, Body=data[: len(data) // 2])
    target = unique_name("dst")
    try:
        with pytest.raises(RestoreFailed) as caught:  # without the pre-flight, reading finds it
            _restore(
                f"INSERT INTO `{target}` SELECT * FROM {bucket}:tr PROPERTIES('restore.preflight'='none')"
            )
        assert isinstance(caught.value.cause, CorruptObjectError)
        assert caught.value.cause.key == bad and caught.value.cause.bucket == bucket
        status = {u.unit: u.status for u in caught.value.report.units}
        assert status == {f"{source}.0": "done", f"{source}.1": "failed"}
        assert bad in (caught.value.report.units[1].error or "")
    finally:
        admin.delete_topics([target])


def test_target_with_too_few_partitions_is_refused_before_producing(
    kafka_config, s3, create_topic, filled_topic, bucket
):
    source = filled_topic("wide", 3, numbered_messages(9, 3, key=b"k", value=b"v"))
    build_backup(s3, kafka_config, source, 3, bucket, "w", per_object=5)
    target = create_topic("narrow", partitions=2)
    with pytest.raises(TargetPartitionsError) as caught:
        _restore(f"INSERT INTO `{target}` SELECT * FROM {bucket}:w")
    assert (caught.value.topic, caught.value.needed, caught.value.actual) == (target, 3, 2)
    assert high_watermarks(kafka_config, target, 2) == [(0, 0), (0, 0)]


def test_murmur2_into_another_partition_count(kafka_config, s3, admin, create_topic, filled_topic, bucket):
    from layout.restore.routing import murmur2_partition

    source = filled_topic("m2", 3, numbered_messages(30, 3, key="key{i}", value=b"v"))
    build_backup(s3, kafka_config, source, 3, bucket, "m", per_object=5)
    target = create_topic("m2dst", partitions=5)
    report = _restore(
        f"INSERT INTO `{target}` SELECT * FROM {bucket}:m PROPERTIES('restore.partitioner'='murmur2')"
    )
    assert report.ok
    restored = consume_all(kafka_config, target, 5)
    assert len(restored) == 30
    assert all(m.partition() == murmur2_partition(m.key(), 5) for m in restored)


@pytest.mark.parametrize(
    ("folder", "storeas", "extension"),
    [
        ("avro", "AVRO", "avro"),
        ("parquet", "PARQUET", "parquet"),
        ("json", "JSON", "json"),
        ("csv_withheaders", "CSV_WITHHEADERS", "csv"),
        ("csv", "CSV", "csv"),
    ],
)
def test_stream_reactor_value_only_files(
    folder, storeas, extension, kafka_config, s3, admin, bucket, unique_name
):
    files = sorted((FIXTURES / "stream-reactor" / folder).iterdir())
    for partition, path in enumerate(files):
        s3.put_object(
            Bucket=bucket, Key=f"sr/orders/{partition}/{199:012d}.{extension}", Body=path.read_bytes()
        )
    target = unique_name("dst")
    try:
        report = _restore(f"INSERT INTO `{target}` SELECT * FROM {bucket}:sr STOREAS {storeas}")
        restored = consume_all(kafka_config, target, len(files))
        for partition in range(len(files)):
            assert sum(1 for m in restored if m.partition() == partition) == 200
        assert all(m.key() is None and not m.headers() for m in restored)
        if folder != "csv":
            first = json.loads(next(m for m in restored if m.partition() == 0).value())
            assert set(first) >= {"name", "title", "salary"}
        assert any("value-only" in note for note in report.notes)
    finally:
        admin.delete_topics([target])


def test_stream_reactor_envelope(kafka_config, s3, admin, bucket, unique_name):
    s3.put_object(
        Bucket=bucket,
        Key="env/avro/0",
        Body=(FIXTURES / "stream-reactor-envelope" / "envelope.avro").read_bytes(),
    )
    target = unique_name("dst")
    try:
        _restore(
            f"INSERT INTO `{target}` SELECT * FROM {bucket}:env STOREAS AVRO PROPERTIES('store.envelope'=true, "
            "'key.converter'='json', 'value.converter'='json')"
        )
        restored = consume_all(kafka_config, target, 4)
        assert [m.partition() for m in restored] == [3, 3, 3]
        assert [m.timestamp()[1] for m in restored] == [1234567890, 1234567891, 1234567892]
        assert restored[0].key() == b'{"id":"1"}'
        assert [name for name, _ in restored[0].headers()] == ["header1", "header2"]
        assert restored[0].headers()[1][1] == b"123456789"
    finally:
        admin.delete_topics([target])


def test_rerun_after_completion_adds_nothing(kafka_config, s3, admin, create_topic, bucket, unique_name):
    source = create_topic("again", partitions=1)
    produce(
        kafka_config,
        source,
        ({"key": f"k{i}".encode(), "value": b"v", "timestamp": NOW_MS} for i in range(25)),
    )
    build_backup(s3, kafka_config, source, 1, bucket, "a", per_object=6)
    target = unique_name("dst")
    try:
        first = _restore(f"INSERT INTO `{target}` SELECT * FROM {bucket}:a LIMIT 4")
        second = _restore(f"INSERT INTO `{target}` SELECT * FROM {bucket}:a LIMIT 4")
        assert first.units[0].produced == 25 and second.units[0].produced == 0
        assert second.units[0].resumed_after == 25
        assert [m.key() for m in consume_all(kafka_config, target, 1)] == [
            f"k{i}".encode() for i in range(25)
        ]
    finally:
        admin.delete_topics([target])


def test_log_append_time_source_keeps_its_timestamps(
    prefect_harness, kafka_config, s3, admin, create_topic, bucket, unique_name
):
    from flows.backup import BackupParameters, backup_flow

    source = create_topic("appendtime", partitions=2, config={"message.timestamp.type": "LogAppendTime"})
    produce(kafka_config, source, numbered_messages(40, 2, value=b"v"))
    source_records = consume_all(kafka_config, source, 2)
    assert {m.timestamp()[0] for m in source_records} == {2}  # LogAppendTime, stamped by the broker
    backup_flow(
        BackupParameters(
            kcql=f"INSERT INTO {bucket}:lat SELECT * FROM `{source}` STOREAS AVRO PROPERTIES('store.envelope'=true)",
        ),
    )
    target = unique_name("dst")
    try:
        report = _restore(f"INSERT INTO `{target}` SELECT * FROM {bucket}:lat")
        assert any("LogAppendTime" in note for t in report.targets for note in t.warnings)
        restored = consume_all(kafka_config, target, 2)
        by_key = {m.key(): m.timestamp()[1] for m in restored}
        assert by_key == {m.key(): m.timestamp()[1] for m in source_records}
    finally:
        admin.delete_topics([target])


class _FailsOnce:
    """The real S3 store, but the first read of `key` fails as a dropped connection does (a
    retryable error): the work unit starts again with a fresh producer, as after a wedged one."""

    def __init__(self, store: Any, key: str) -> None:
        self.store, self.key, self.failed = store, key, False

    def get(self, bucket: str, key: str) -> bytes:
        if key == self.key and not self.failed:
            self.failed = True
            raise TransientStorageError("get", bucket, key, "test", "connection dropped")
        return self.store.get(bucket, key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def test_a_unit_started_again_with_a_fresh_producer_reports_where_it_resumed(
    kafka_config, s3, store, create_topic, bucket
):
    source = create_topic("fresh", partitions=1)
    produce(
        kafka_config,
        source,
        ({"key": f"k{i}".encode(), "value": b"v", "timestamp": NOW_MS} for i in range(30)),
    )
    manifest = build_backup(s3, kafka_config, source, 1, bucket, "f", per_object=10)
    target = create_topic("dst", partitions=1)
    plan = plan_restore(store, restore_selection(f"INSERT INTO `{target}` SELECT * FROM {bucket}:f LIMIT 10"))
    plan = plan.model_copy(update={"progress": "shared"})  # as the fence records it for a new restore
    third = manifest.partitions[0].objects[2].key  # read once 20 records are committed
    [result] = restore_work_unit(plan, plan.units, 0, kafka_config, _FailsOnce(store, third), {target: 1})
    assert (result.resumed_after, result.produced, result.selected) == (20, 30, 30)
    assert [m.key() for m in consume_all(kafka_config, target, 1)] == [f"k{i}".encode() for i in range(30)]


def test_a_record_the_broker_refuses_stops_the_restore_without_retrying(
    kafka_config, s3, create_topic, filled_topic, bucket
):
    source = filled_topic("keyless", 1, [{"partition": 0, "key": None, "value": b"v"}] * 6)
    build_backup(s3, kafka_config, source, 1, bucket, "kl", per_object=3)
    target = create_topic("compacted", partitions=1, config={"cleanup.policy": "compact"})
    with pytest.raises(RestoreFailed) as caught:  # a compacted topic refuses records without a key
        _restore(f"INSERT INTO `{target}` SELECT * FROM {bucket}:kl")
    cause = caught.value.cause
    assert isinstance(cause, KafkaOperationError) and not cause.retryable
    assert cause.operation == f"produce to {target}[0]" and "INVALID_RECORD" in cause.reason
    assert "cannot help" in cause.reason
    [unit] = caught.value.report.units
    assert unit.status == "failed" and "INVALID_RECORD" in (unit.error or "")
    assert consume_all(kafka_config, target, 1) == []


def _group_offsets(admin: Any, group: str, partitions: list[tuple[str, int]]) -> dict[int, tuple[int, str]]:
    """`group`'s committed (offset, metadata) on each of `partitions` that has one, by partition."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

    request = ConsumerGroupTopicPartitions(group, [TopicPartition(t, p) for t, p in partitions])
    found = admin.list_consumer_group_offsets([request], request_timeout=30)[group].result(timeout=30)
    return {tp.partition: (tp.offset, tp.metadata) for tp in found.topic_partitions if tp.offset >= 0}


def test_units_alone_in_their_partitions_keep_their_progress_in_the_progress_group(
    kafka_config, s3, store, admin, filled_topic, bucket, unique_name
):
    """A restore begun now records the layout `shared` and commits each unit's count in the
    restore's progress group on the unit's own target partition; the units' own groups stay empty."""
    from flows.parameters import selection_of
    from layout.restore.progress import progress_group, restore_group, unit_group
    from tasks.restore.discover import plan_restore

    source = filled_topic("prog", 3, numbered_messages(30, partitions=3))
    build_backup(s3, kafka_config, source, 3, bucket, "pg", per_object=4)
    target = unique_name("dst")
    kcql = f"INSERT INTO `{target}` SELECT * FROM {bucket}:pg"
    try:
        report = _restore(kcql)
        assert report.ok and report.records == 30
        plan = plan_restore(store, selection_of(RestoreParameters(kcql=kcql)))
        everywhere = [(target, p) for p in range(3)]
        progress = _group_offsets(admin, progress_group(plan), everywhere)
        assert {p: offset for p, (offset, _) in progress.items()} == {0: 10, 1: 10, 2: 10}
        assert json.loads(progress[2][1])["starts"] == {"2": 0}
        assert all(not _group_offsets(admin, unit_group(plan, unit), everywhere) for unit in plan.units)
        anchor = _group_offsets(admin, restore_group(plan), [(target, 0)])[0]
        assert json.loads(anchor[1])["progress"] == "shared"
    finally:
        admin.delete_topics([target])


def test_a_restore_begun_before_the_progress_group_resumes_from_the_units_own_groups(
    kafka_config, s3, store, admin, create_topic, bucket, unique_name
):
    """An earlier version's partial run, written by hand: its restore group recorded slots without a
    layout, unit 0 committed 4 of its 10 records (and they are in the target), unit 1 never began.
    The rerun reads and keeps writing the units' own groups: unit 0 resumes after its 4, nothing
    is doubled, and the progress group is never used."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

    from flows.parameters import selection_of
    from layout.restore.progress import progress_group, restore_group, unit_group
    from tasks.restore.discover import plan_restore

    source = create_topic("old", partitions=2)
    produce(
        kafka_config,
        source,
        (
            {"partition": i % 2, "key": f"k{i}".encode(), "value": f"v{i}".encode(), "timestamp": NOW_MS + i}
            for i in range(20)
        ),
    )
    build_backup(s3, kafka_config, source, 2, bucket, "ol", per_object=3)
    target = unique_name("dst")
    create = __import__("tests.support.kafka", fromlist=["create_topic"]).create_topic
    create(admin, target, 2, {})
    kcql = f"INSERT INTO `{target}` SELECT * FROM {bucket}:ol"
    try:
        plan = plan_restore(store, selection_of(RestoreParameters(kcql=kcql)))
        first = [m for m in consume_all(kafka_config, source, 2) if m.partition() == 0][:4]
        produce(
            kafka_config,
            target,
            (
                {"partition": 0, "key": m.key(), "value": m.value(), "timestamp": m.timestamp()[1]}
                for m in first
            ),
        )
        [unit0] = [u for u in plan.units if u.source_partition == 0]
        older = [
            ConsumerGroupTopicPartitions(
                restore_group(plan),
                [TopicPartition(target, 0, 0, metadata='{"slots":1}'), TopicPartition(target, 1, 0)],
            ),
            ConsumerGroupTopicPartitions(
                unit_group(plan, unit0),
                [TopicPartition(target, 0, 4, metadata=f'{{"src":{first[-1].offset()},"starts":{{"0":0}}}}')],
            ),
        ]
        for request in older:  # the admin API alters one group per request
            admin.alter_consumer_group_offsets([request], request_timeout=30)[request.group_id].result(
                timeout=30
            )
        report = _restore(kcql)
        assert report.ok and report.records == 20
        assert sorted((u.source, u.resumed_after, u.produced) for u in report.units) == [
            (f"{source}/0", 4, 6),
            (f"{source}/1", 0, 10),
        ]
        assert by_partition(consume_all(kafka_config, target, 2)) == by_partition(
            consume_all(kafka_config, source, 2)
        )
        everywhere = [(target, p) for p in range(2)]
        assert not _group_offsets(admin, progress_group(plan), everywhere)
        assert [_group_offsets(admin, unit_group(plan, u), everywhere)[0][0] for u in plan.units] == [10, 10]
        anchor = _group_offsets(admin, restore_group(plan), [(target, 0)])[0]
        assert json.loads(anchor[1])["progress"] == "units"  # recorded, kept by every later run
    finally:
        admin.delete_topics([target])
