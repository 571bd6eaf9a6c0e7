"""The services are real: a Kafka broker that keeps offsets, timestamps and transactions, and an
S3 server that stores, lists, assembles multipart uploads and honours conditional puts."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError
from confluent_kafka import Consumer, Producer, TopicPartition

from tests.support.kafka import consume_all, high_watermarks, produce

BASE_TS = 1_700_000_000_000


def test_high_watermarks_and_offsets_for_times(kafka_config: dict[str, Any], create_topic: Any) -> None:
    topic = create_topic("smoke", partitions=3)
    produce(
        kafka_config,
        topic,
        (
            {"key": f"k{i}".encode(), "value": b"v", "partition": i % 3, "timestamp": BASE_TS + i}
            for i in range(10_000)
        ),
    )

    marks = high_watermarks(kafka_config, topic, 3)
    assert [low for low, _ in marks] == [0, 0, 0]
    assert sum(high for _, high in marks) == 10_000

    # Record i went to partition i % 3 at offset i // 3 with timestamp BASE_TS + i.
    consumer = Consumer({**kafka_config, "group.id": "smoke-times"})
    try:
        # One partition per request: a request holds one timestamp per partition.
        probes = [(p, i) for p in range(3) for i in (p, 3 * 1000 + p, 3 * 3332 + p)]
        answers = [
            consumer.offsets_for_times([TopicPartition(topic, p, BASE_TS + i)], timeout=10)[0]
            for p, i in probes
        ]
        # A timestamp between two records answers the next record's offset.
        between = consumer.offsets_for_times([TopicPartition(topic, 1, BASE_TS + 3 * 10 + 2)], timeout=10)[0]
    finally:
        consumer.close()
    assert [(a.partition, a.offset) for a in answers] == [(p, i // 3) for p, i in probes]
    assert between.offset == 11


def test_aborted_transaction_leaves_a_gap_read_committed_skips(
    kafka_config: dict[str, Any], create_topic: Any
) -> None:
    topic = create_topic("txn")
    producer = Producer({**kafka_config, "transactional.id": f"smoke-{uuid.uuid4()}"})
    producer.init_transactions(30)
    for outcome, values in (("commit", [b"a", b"b"]), ("abort", [b"x", b"y", b"z"]), ("commit", [b"c"])):
        producer.begin_transaction()
        for value in values:
            producer.produce(topic, value=value)
        producer.flush(30)
        if outcome == "commit":
            producer.commit_transaction(30)
        else:
            producer.abort_transaction(30)

    committed = consume_all(kafka_config, topic, 1, "read_committed")
    assert [m.value() for m in committed] == [b"a", b"b", b"c"]
    offsets = [m.offset() for m in committed]
    # a, b, commit marker at 2, then x, y, z (3-5), abort marker at 6, then c at 7.
    assert offsets == [0, 1, 7]
    everything = consume_all(kafka_config, topic, 1, "read_uncommitted")
    assert [m.value() for m in everything] == [b"a", b"b", b"x", b"y", b"z", b"c"]


def test_s3_put_get_list(s3: Any, bucket: str) -> None:
    body = bytes(range(256)) * 10
    s3.put_object(Bucket=bucket, Key="a/b/000000000001.avro", Body=body)
    s3.put_object(Bucket=bucket, Key="a/c.json", Body=b"{}")
    assert s3.get_object(Bucket=bucket, Key="a/b/000000000001.avro")["Body"].read() == body
    listing = s3.list_objects_v2(Bucket=bucket, Prefix="a/")
    assert [o["Key"] for o in listing["Contents"]] == ["a/b/000000000001.avro", "a/c.json"]
    assert [o["Size"] for o in listing["Contents"]] == [len(body), 2]


def test_s3_multipart_upload_is_assembled_in_order(s3: Any, bucket: str) -> None:
    parts = [bytes([i]) * (5 * 1024 * 1024) for i in range(2)] + [b"tail"]
    upload = s3.create_multipart_upload(Bucket=bucket, Key="big")
    etags = [
        {
            "PartNumber": n,
            "ETag": s3.upload_part(
                Bucket=bucket, Key="big", UploadId=upload["UploadId"], PartNumber=n, Body=p
            )["ETag"],
        }
        for n, p in enumerate(parts, start=1)
    ]
    s3.complete_multipart_upload(
        Bucket=bucket, Key="big", UploadId=upload["UploadId"], MultipartUpload={"Parts": etags}
    )
    data = s3.get_object(Bucket=bucket, Key="big")["Body"].read()
    assert hashlib.sha256(data).digest() == hashlib.sha256(b"".join(parts)).digest()


def test_s3_conditional_put_if_none_match(s3: Any, bucket: str) -> None:
    """SeaweedFS honours `If-None-Match: *`: a second conditional put of the same key fails with
    412 and leaves the first object untouched (the backup relies on this where it is supported)."""
    s3.put_object(Bucket=bucket, Key="once", Body=b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as error:
        s3.put_object(Bucket=bucket, Key="once", Body=b"second", IfNoneMatch="*")
    assert error.value.response["Error"]["Code"] in ("PreconditionFailed", "412")
    assert s3.get_object(Bucket=bucket, Key="once")["Body"].read() == b"first"


def test_missing_bucket_is_reported_as_no_such_bucket(s3: Any, unique_name: Any) -> None:
    with pytest.raises(ClientError) as error:
        s3.put_object(Bucket=unique_name("absent"), Key="k", Body=b"")
    assert error.value.response["Error"]["Code"] == "NoSuchBucket"
