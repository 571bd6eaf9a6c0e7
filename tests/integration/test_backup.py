"""The backup flow against the real broker and S3 server."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flows.backup import BackupParameters, backup_flow
from layout.manifest import Manifest
from tasks.services.manifest_store import read_chain
from tests.support.kafka import consume_all, numbered_messages, produce
from tests.support.topics import NOW_MS, topic_digests, tricky_messages

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _keys(s3: Any, bucket: str, prefix: str = "") -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []))


@pytest.mark.parametrize("fmt", ["AVRO", "PARQUET", "JSON"])
def test_envelope_backup_keeps_every_record(
    fmt: str, kafka_config: dict, create_topic: Any, bucket: str, store: Any
) -> None:
    topic = create_topic("tricky", partitions=4)
    produce(kafka_config, topic, tricky_messages())
    expected = topic_digests(consume_all(kafka_config, topic, 4))

    [result] = backup_flow(
        BackupParameters(
            kcql=f"INSERT INTO {bucket}:bk SELECT * FROM `{topic}` STOREAS {fmt} PROPERTIES('store.envelope'=true)",
            verify="full",
        ),
    )

    manifest = result.manifest
    assert manifest.lossless and manifest.format == fmt
    assert {p.partition: p.records_digest for p in manifest.partitions} == expected
    assert manifest.record_count == 13 + 4 * 150
    assert result.verification.records_decoded == manifest.record_count
    assert read_chain(store, bucket, "bk") == [manifest]
    ext = fmt.lower()
    for partition in manifest.partitions:
        assert [o.key for o in partition.objects] == [
            f"bk/{topic}/{partition.partition}/{partition.end_offset - 1:012d}.{ext}"
        ]


def test_seed_payments_statement_default_layout(filled_topic: Any, bucket: str, s3: Any) -> None:
    topic = filled_topic("payments", 3, numbered_messages(300, 3, key="p{i}", value=b"{}"))
    kcql = f"INSERT INTO {bucket}\nSELECT * FROM `{topic}`\nSTOREAS AVRO\nPROPERTIES (\n ‘store.envelope’=true\n);"
    [result] = backup_flow(BackupParameters(kcql=kcql))
    assert _keys(s3, bucket, topic) == [f"{topic}/{p}/000000000099.avro" for p in range(3)]
    assert result.manifest.record_count == 300


def _sales(kafka_config: dict, topic: str) -> list[dict]:
    rows = [
        {"year": 2023, "category": "Electronics", "region": "EMEA"},
        {"year": 2023, "category": "Books", "region": "APAC"},
        {"year": 2024, "category": "Electronics", "region": "EMEA"},
        {"year": 2024, "category": "Garden", "region": "AMER"},
    ]
    messages = [
        {
            "key": json.dumps({"year": row["year"], "id": i}).encode(),
            "value": json.dumps({"product_category": row["category"], "amount": i}).encode(),
            "headers": [("region", row["region"].encode())],
            "partition": i % 2,
        }
        for i, row in enumerate(rows * 5)
    ]
    produce(kafka_config, topic, messages)
    return messages


@pytest.mark.parametrize("include_keys", [False, True])
def test_seed_sales_partitionby(
    include_keys: bool, kafka_config: dict, create_topic: Any, bucket: str, s3: Any
) -> None:
    topic = create_topic("sales", partitions=2)
    _sales(kafka_config, topic)
    props = "'store.envelope'=true" + (", 'partition.include.keys'=true" if include_keys else "")
    kcql = (
        f"INSERT INTO {bucket}:sales SELECT * FROM `{topic}` "
        f"PARTITIONBY _key.year, _value.product_category, _headers.region STOREAS AVRO PROPERTIES({props})"
    )
    [result] = backup_flow(BackupParameters(kcql=kcql, verify="full"))
    keys = [k for k in _keys(s3, bucket, "sales/") if "/_manifests/" not in k]
    folders = sorted({k.rsplit("/", 1)[0] for k in keys})
    if include_keys:
        assert folders == [
            "sales/year=2023/product_category=Books/region=APAC",
            "sales/year=2023/product_category=Electronics/region=EMEA",
            "sales/year=2024/product_category=Electronics/region=EMEA",
            "sales/year=2024/product_category=Garden/region=AMER",
        ]
    else:
        assert folders == [
            "sales/2023/Books/APAC",
            "sales/2023/Electronics/EMEA",
            "sales/2024/Electronics/EMEA",
            "sales/2024/Garden/AMER",
        ]
    assert all(k.rsplit("/", 1)[1].startswith(f"{topic}(") for k in keys)
    assert result.manifest.record_count == 20
    assert sum(len(p.objects) for p in result.manifest.partitions) == len(keys)


def test_flush_count_rolls_objects(kafka_config: dict, create_topic: Any, bucket: str, s3: Any) -> None:
    topic = create_topic("flush", partitions=2)
    produce(
        kafka_config, topic, ({"value": b"x" * 10, "partition": p} for p in range(2) for _ in range(10_500))
    )
    [result] = backup_flow(
        BackupParameters(
            kcql=f"INSERT INTO {bucket} SELECT * FROM `{topic}` STOREAS PARQUET PROPERTIES('store.envelope'=true, 'flush.count'=1000)",
        ),
    )
    for partition in result.manifest.partitions:
        assert [o.record_count for o in partition.objects] == [1000] * 10 + [500]
        assert [o.last_offset for o in partition.objects] == [999 + 1000 * i for i in range(10)] + [10_499]


def test_flush_size_and_interval_roll_objects(kafka_config: dict, create_topic: Any, bucket: str) -> None:
    topic = create_topic("flushsize")
    # 400 records of 10 KB of random bytes (incompressible); flush.size 1 MB → objects of about 1 MB.
    import random

    rng = random.Random(1)
    produce(
        kafka_config, topic, ({"value": rng.randbytes(10_000), "timestamp": NOW_MS + i} for i in range(400))
    )
    [by_size] = backup_flow(
        BackupParameters(
            kcql=f"INSERT INTO {bucket}:size SELECT * FROM `{topic}` STOREAS AVRO PROPERTIES('store.envelope'=true, 'flush.size'=1000000, 'compression'='null')",
        ),
    )
    objects = by_size.manifest.partitions[0].objects
    assert len(objects) >= 4
    assert all(o.size < 1_000_000 + 1_200_000 for o in objects)
    assert sum(o.record_count for o in objects) == 400

    topic2 = create_topic("flushtime")
    # One record a minute for 3 hours; flush.interval 3600 s → one object per hour of record time.
    produce(kafka_config, topic2, ({"value": b"v", "timestamp": NOW_MS + i * 60_000} for i in range(180)))
    [by_time] = backup_flow(
        BackupParameters(
            kcql=f"INSERT INTO {bucket}:time SELECT * FROM `{topic2}` STOREAS JSON PROPERTIES('store.envelope'=true, 'flush.interval'=3600)",
        ),
    )
    assert [o.record_count for o in by_time.manifest.partitions[0].objects] == [60, 60, 60]


def test_sparse_timestamps_make_few_objects_by_default(
    kafka_config: dict, create_topic: Any, bucket: str, s3: Any
) -> None:
    """2,000 records with timestamps spread over 40 days (one every 28.8 minutes): with the default
    flush rules (no interval) they are one object, not 667 (one per hour of record time); setting
    'flush.interval' still cuts by record time."""
    topic = create_topic("sparse", config={"retention.ms": "-1"})  # 41-day-old records stay
    step = 40 * 86_400_000 // 2000
    start = NOW_MS - 41 * 86_400_000
    produce(
        kafka_config, topic, ({"value": f"v{i}".encode(), "timestamp": start + i * step} for i in range(2000))
    )
    [default] = backup_flow(
        BackupParameters(
            kcql=f"INSERT INTO {bucket}:sparse SELECT * FROM `{topic}` STOREAS AVRO PROPERTIES('store.envelope'=true)"
        )
    )
    objects = default.manifest.partitions[0].objects
    data_keys = [k for k in _keys(s3, bucket, "sparse/") if "/_manifests/" not in k]
    assert len(data_keys) == len(objects) <= 10
    assert [(o.record_count, o.min_timestamp, o.max_timestamp) for o in objects] == [
        (2000, start, start + 1999 * step)
    ]
    [hourly] = backup_flow(
        BackupParameters(
            kcql=f"INSERT INTO {bucket}:hourly SELECT * FROM `{topic}` STOREAS AVRO PROPERTIES('store.envelope'=true, 'flush.interval'=3600)"
        )
    )
    assert len(hourly.manifest.partitions[0].objects) == 667


def test_incremental_backups_chain(kafka_config: dict, create_topic: Any, bucket: str, store: Any) -> None:
    topic = create_topic("incr", partitions=2)
    kcql = f"INSERT INTO {bucket}:inc SELECT * FROM `{topic}` STOREAS AVRO PROPERTIES('store.envelope'=true)"
    produce(kafka_config, topic, ({"value": f"a{i}".encode(), "partition": i % 2} for i in range(100)))
    [first] = backup_flow(BackupParameters(kcql=kcql))
    produce(kafka_config, topic, ({"value": f"b{i}".encode(), "partition": i % 2} for i in range(30)))
    [second] = backup_flow(BackupParameters(kcql=kcql, verify="full"))
    [third] = backup_flow(BackupParameters(kcql=kcql))

    assert second.manifest.previous_backup_id == first.manifest.backup_id
    assert third.manifest.previous_backup_id == second.manifest.backup_id
    for p in (0, 1):
        one, two, three = (m.manifest.partition(topic, p) for m in (first, second, third))
        assert (one.start_offset, one.end_offset) == (0, 50)
        assert (two.start_offset, two.end_offset, two.record_count) == (50, 65, 15)
        assert (three.start_offset, three.end_offset, three.record_count, three.objects) == (65, 65, 0, ())
    assert [m.backup_id for m in read_chain(store, bucket, "inc")] == [
        r.manifest.backup_id for r in (first, second, third)
    ]


def test_compacted_and_transactional_topics_back_up_with_gaps(
    kafka_config: dict, create_topic: Any, bucket: str
) -> None:
    import uuid

    from confluent_kafka import Producer

    topic = create_topic("txn")
    producer = Producer({**kafka_config, "transactional.id": f"t-{uuid.uuid4()}"})
    producer.init_transactions(30)
    for commit, values in ((True, [b"a", b"b"]), (False, [b"x", b"y"]), (True, [b"c"])):
        producer.begin_transaction()
        for value in values:
            producer.produce(topic, value=value)
        producer.flush(30)
        producer.commit_transaction(30) if commit else producer.abort_transaction(30)
    [result] = backup_flow(
        BackupParameters(
            kcql=f"INSERT INTO {bucket}:txn SELECT * FROM `{topic}` STOREAS PARQUET PROPERTIES('store.envelope'=true)",
            verify="full",
        ),
    )
    entry = result.manifest.partitions[0]
    assert entry.record_count == 3
    # a=0 b=1 commit-marker=2 x=3 y=4 abort-marker=5 c=6 commit-marker=7
    assert [(g.first, g.last, g.cause) for g in entry.gaps] == [
        (2, 5, "transaction-markers"),
        (7, 7, "transaction-markers"),
    ]
    assert entry.end_offset == 8

    compacted = create_topic(
        "compact",
        config={"cleanup.policy": "compact", "segment.ms": "100", "min.cleanable.dirty.ratio": "0.01"},
    )
    produce(
        kafka_config, compacted, ({"key": f"k{i % 3}".encode(), "value": f"v{i}".encode()} for i in range(30))
    )
    [backup] = backup_flow(
        BackupParameters(
            kcql=f"INSERT INTO {bucket}:cmp SELECT * FROM `{compacted}` STOREAS JSON PROPERTIES('store.envelope'=true)",
            verify="full",
        ),
    )
    assert backup.verification.records_decoded == backup.manifest.record_count


def test_missing_bucket_fails_naming_it(kafka_config: dict, create_topic: Any, unique_name: Any) -> None:
    from tasks.services.errors import BucketNotFoundError

    topic = create_topic("nobucket")
    missing = unique_name("absent")
    state = backup_flow(
        BackupParameters(kcql=f"INSERT INTO {missing} SELECT * FROM `{topic}`"), return_state=True
    )
    assert state.is_failed()
    with pytest.raises(BucketNotFoundError) as error:
        state.result()
    assert error.value.bucket == missing
    assert "127.0.0.1" in str(error.value)


def _manifest(result: Any) -> Manifest:
    return result.manifest
