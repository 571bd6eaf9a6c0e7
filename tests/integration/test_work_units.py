"""Work units (issue 23) against the real broker and S3 server: what a backup writes does not
depend on how its partitions are grouped into units. The same windows exported one partition per
unit, all in one unit, in one unit that assigns a few partitions at a time, and by the backup flow
on its own units give the same keys (relative to the prefix), the same object bytes, and the same
manifest entries (records digests and counts, gaps, objects); a unit run again resumes each
partition after the objects it finds."""

from __future__ import annotations

import hashlib
import random
import uuid
from typing import Any

import pytest

from flows.backup import BackupParameters, backup_flow
from kcql import parse_backup
from layout.manifest import PartitionEntry
from tasks.backup import verify
from tasks.backup.export import ExportUnit, export_unit, export_units
from tasks.backup.plan import gap_cause, plan_backup
from tasks.backup.verify import verify_backup
from tasks.services.kafka import reader
from tests.support.kafka import consume_all, produce
from tests.support.topics import NOW_MS, topic_digests

pytestmark = pytest.mark.usefixtures("prefect_harness")

# records per partition: an empty one, tiny ones, some over flush.count (100), one at exactly it
COUNTS = [0, 1, 2, 17, 250, 99, 100, 101, 3, 640, 0, 40]
TRANSACTIONAL = 10  # committed and aborted transactions, ending on an abort marker
EMPTY_DIGEST = "sha256:" + hashlib.sha256().hexdigest()


def _fill(kafka_config: dict, topic: str) -> None:
    rng = random.Random(23)
    produce(
        kafka_config,
        topic,
        (
            {
                "partition": p,
                "key": f"k{p}-{i}".encode(),
                "value": rng.randbytes(rng.randint(0, 400)),
                "headers": [("h", str(i).encode())] if i % 3 else [],
                "timestamp": NOW_MS + i * 1000,
            }
            for p, count in enumerate(COUNTS)
            for i in range(count)
        ),
    )
    from confluent_kafka import Producer

    producer = Producer({**kafka_config, "transactional.id": f"units-{uuid.uuid4()}"})
    producer.init_transactions(30)
    for commit, values in ((True, [b"a", b"b"]), (False, [b"x", b"y"]), (True, [b"c"]), (False, [b"z"])):
        producer.begin_transaction()
        for value in values:
            producer.produce(topic, value=value, partition=TRANSACTIONAL, timestamp=NOW_MS)
        producer.flush(30)
        producer.commit_transaction(30) if commit else producer.abort_transaction(30)


def _objects(s3: Any, bucket: str, prefix: str) -> dict[str, str]:
    """sha256 of every object under the prefix (manifests and the lock left out), by key relative
    to the prefix."""
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/"):
        for listed in page.get("Contents", []):
            relative = listed["Key"][len(prefix) + 1 :]
            if relative.startswith("_"):
                continue
            body = s3.get_object(Bucket=bucket, Key=listed["Key"])["Body"].read()
            found[relative] = hashlib.sha256(body).hexdigest()
    return found


def _export_alone(
    spec: Any, window: Any, backup_id: str, cause: Any, kafka_config: dict, store: Any
) -> PartitionEntry:
    """One partition exported as a unit of its own."""
    alone = ExportUnit(
        spec=spec,
        backup_id=backup_id,
        name=f"{window.topic}[{window.partition}]",
        windows=(window,),
        gap_causes={window.topic: cause},
    )
    [entry] = export_unit(alone, kafka_config, store)
    return entry


def _comparable(entries: list[PartitionEntry], prefix: str) -> dict[tuple[str, int], dict]:
    """The entries as they must agree: all but the export's seconds, keys relative to the prefix."""
    result = {}
    for entry in entries:
        data = entry.model_dump(exclude={"seconds"})
        for obj in data["objects"]:
            assert obj["key"].startswith(f"{prefix}/")
            obj["key"] = obj["key"][len(prefix) + 1 :]
        result[(entry.topic, entry.partition)] = data
    return result


def test_objects_and_entries_do_not_depend_on_the_grouping(
    kafka_config: dict, create_topic: Any, bucket: str, s3: Any, store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = create_topic("units", partitions=len(COUNTS))
    _fill(kafka_config, topic)
    kcql = (
        f"INSERT INTO {bucket}:{{prefix}} SELECT * FROM `{topic}` STOREAS PARQUET "
        "PROPERTIES('store.envelope'=true, 'flush.count'=100)"
    )

    def spec(prefix: str) -> Any:
        return parse_backup(kcql.format(prefix=prefix))[0]

    plan = plan_backup(spec("one"), kafka_config, store)
    windows = plan.windows
    assert [w.end - w.start for w in windows][TRANSACTIONAL] == 10  # a b | x y | c | z, 4 markers
    cause = gap_cause(plan.topics[0])

    one = [_export_alone(spec("one"), w, plan.backup_id, cause, kafka_config, store) for w in windows]

    def unit(prefix: str) -> ExportUnit:
        return ExportUnit(
            spec=spec(prefix),
            backup_id=plan.backup_id,
            name="all",
            windows=windows,
            gap_causes={topic: cause},
        )

    everything = export_unit(unit("all"), kafka_config, store)
    monkeypatch.setattr(reader, "ASSIGNED_RECORDS", 150)  # a few partitions assigned at a time
    rounds = export_unit(unit("rounds"), kafka_config, store)
    monkeypatch.undo()

    expected = _comparable(one, "one")
    assert _comparable(everything, "all") == expected
    assert _comparable(rounds, "rounds") == expected
    objects = _objects(s3, bucket, "one")
    assert _objects(s3, bucket, "all") == objects
    assert _objects(s3, bucket, "rounds") == objects

    # what was read is what Kafka holds, holes included
    digests = topic_digests(consume_all(kafka_config, topic, len(COUNTS)))
    entries = {e.partition: e for e in everything}
    for partition, count in enumerate(COUNTS):
        entry = entries[partition]
        if partition == TRANSACTIONAL:
            assert entry.record_count == 3
            assert [(g.first, g.last) for g in entry.gaps] == [(2, 5), (7, 9)]
        else:
            assert (entry.record_count, entry.end_offset) == (count, count)
            assert entry.gaps == ()
        assert entry.records_digest == digests.get(partition, EMPTY_DIGEST)
        assert sum(o.record_count for o in entry.objects) == entry.record_count
    assert [len(entries[p].objects) for p in (4, 6, 7, 9)] == [3, 1, 2, 7]
    assert entries[0].objects == () and entries[0].records_digest == EMPTY_DIGEST

    # run again (a retried unit): every partition resumes after the objects it finds, the last
    # object of partition 9 gone (rewritten), and the entries are the same
    nine = entries[9].objects
    s3.delete_object(Bucket=bucket, Key=nine[-1].key)
    again = export_unit(unit("all"), kafka_config, store)
    assert _comparable(again, "all") == expected
    assert _objects(s3, bucket, "all") == objects


def test_the_flow_packs_partitions_into_units(
    kafka_config: dict, create_topic: Any, bucket: str, s3: Any, store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flow on 3 workers: 3 task runs for 12 partitions, the same objects and digests as one
    partition at a time; its verification reports what it finds in the same order on 16 threads
    as on one."""
    topic = create_topic("flowunits", partitions=len(COUNTS))
    _fill(kafka_config, topic)
    props = "PROPERTIES('store.envelope'=true, 'flush.count'=100)"
    [result] = backup_flow(
        BackupParameters(
            kcql=f"INSERT INTO {bucket}:flow SELECT * FROM `{topic}` STOREAS AVRO {props}",
            concurrency=3,
            task_runner="threads",
            verify="full",
        )
    )
    manifest = result.manifest
    assert [(p.topic, p.partition) for p in manifest.partitions] == [(topic, p) for p in range(len(COUNTS))]
    plan = plan_backup(
        parse_backup(f"INSERT INTO {bucket}:single SELECT * FROM `{topic}` STOREAS AVRO {props}")[0],
        kafka_config,
        store,
    )
    assert len(export_units(plan, 3)) == 3
    single = [
        _export_alone(plan.spec, w, plan.backup_id, gap_cause(plan.topics[0]), kafka_config, store)
        for w in plan.windows
    ]
    assert _comparable(list(manifest.partitions), "flow") == _comparable(single, "single")
    assert _objects(s3, bucket, "flow") == _objects(s3, bucket, "single")

    # verification asks for the objects on threads; what it finds is reported in the manifest's
    # order whatever their timing: damage two partitions' objects and compare with one thread
    by_partition = {p.partition: p for p in manifest.partitions}
    gone = by_partition[4].objects[1].key
    damaged = by_partition[9].objects[2].key
    s3.delete_object(Bucket=bucket, Key=gone)
    s3.put_object(Bucket=bucket, Key=damaged, Body=b"not an avro object")
    reports = [verify_backup(store, bucket, manifest, "full") for _ in range(2)]
    monkeypatch.setattr(verify, "VERIFY_THREADS", 1)
    serial = verify_backup(store, bucket, manifest, "full")
    assert reports[0] == reports[1] == serial
    problems = serial.problems
    assert gone in problems[0] and "missing from the bucket" in problems[0]
    assert damaged in problems[1] and "bytes, the manifest says" in problems[1]
    assert all(damaged in p or f"{topic}/9" in p for p in problems[2:]) and len(problems) > 2
    assert serial.objects_checked == sum(len(p.objects) for p in manifest.partitions)
