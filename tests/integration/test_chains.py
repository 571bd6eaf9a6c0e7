"""Chains side by side under one prefix, through the flows: a full backup while an older chain
exists names its objects apart, so it neither collides with nor reuses that chain's objects. Here
retention (delete_records) moved the log start and the flush count changed: the new chain's first
object ends at the offset an old one ends at, with other records (the same key, before chains
had names of their own: an ObjectConflictError), and both points restore."""

from __future__ import annotations

import pytest

from flows.backup import BackupParameters, backup_flow
from flows.restore import RestoreParameters, restore_flow
from layout.chains import chain_suffix
from tests.support.kafka import consume_all, produce
from tests.support.topics import topic_digests

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _kcql(bucket: str, topic: str, count: int) -> str:
    return (
        f"INSERT INTO {bucket}:ch SELECT * FROM `{topic}` STOREAS AVRO "
        f"PROPERTIES('store.envelope'=true, 'flush.count'={count})"
    )


def test_a_full_backup_beside_an_older_chain_names_its_objects_apart(
    kafka_config, admin, create_topic, target_topic, bucket
):
    from confluent_kafka import TopicPartition

    topic = create_topic("chains", partitions=1)
    produce(kafka_config, topic, ({"key": f"k{i}".encode(), "value": b"v" * i} for i in range(20)))
    [first] = backup_flow(BackupParameters(kcql=_kcql(bucket, topic, 7)))  # objects end at 6, 13, 19
    first_digests = topic_digests(consume_all(kafka_config, topic, 1))
    produce(kafka_config, topic, ({"key": f"k{i}".encode(), "value": b"w"} for i in range(20, 25)))
    for future in admin.delete_records([TopicPartition(topic, 0, 3)]).values():
        future.result(timeout=30)  # retention: the log now starts at offset 3
    [second] = backup_flow(
        BackupParameters(kcql=_kcql(bucket, topic, 4), full=True)
    )  # ends at 6 (3..6), 10, ..., 24
    base = second.manifest.backup_id
    assert second.manifest.previous_backup_id is None and second.manifest.chain_id == base
    first_keys = {o.key for p in first.manifest.partitions for o in p.objects}
    second_keys = {o.key for p in second.manifest.partitions for o in p.objects}
    assert not first_keys & second_keys
    assert all(key.endswith(f"{chain_suffix(base)}.avro") for key in second_keys)
    assert len(second_keys) == 6
    assert second.manifest.partitions[0].start_offset == 3

    [third] = backup_flow(
        BackupParameters(kcql=_kcql(bucket, topic, 4))
    )  # continues the new chain, same names
    assert third.manifest.chain_id == base and third.manifest.chain_suffix == chain_suffix(base)

    for point, expected in ((first.manifest.backup_id, first_digests), (base, None)):
        target = target_topic("point")
        report = restore_flow(
            RestoreParameters(kcql=f"INSERT INTO `{target}` SELECT * FROM {bucket}:ch", point=point)
        )
        assert report.ok
        restored = topic_digests(consume_all(kafka_config, target, 1))
        assert restored == (expected or topic_digests(consume_all(kafka_config, topic, 1)))


def test_prune_leaves_a_nested_prefixs_backup_and_takes_only_its_own_leftovers(
    kafka_config, s3, store, create_topic, bucket
):
    """Another backup under `ch/nested` (inside this prefix) of the same topic is not a leftover
    of `ch`'s; an uncommitted object named as `ch`'s backup names its objects is."""
    from datetime import timedelta

    from tasks.lifecycle.prune import prune
    from tasks.services.manifest_store import read_chain

    topic = create_topic("nested", partitions=1)
    produce(kafka_config, topic, ({"key": f"k{i}".encode(), "value": b"v"} for i in range(10)))
    backup_flow(BackupParameters(kcql=_kcql(bucket, topic, 4)))
    backup_flow(BackupParameters(kcql=_kcql(bucket, topic, 4).replace(f"{bucket}:ch", f"{bucket}:ch/nested")))
    leftover = f"ch/{topic}/0/000000000099.avro"
    s3.put_object(Bucket=bucket, Key=leftover, Body=b"uploaded by a killed backup")
    chain_leftover = f"ch/{topic}/0/000000000098-c20261128T000000000Z-abcdef.avro"  # a killed full backup's
    s3.put_object(Bucket=bucket, Key=chain_leftover, Body=b"uploaded by a killed full backup")
    s3.put_object(Bucket=bucket, Key=f"ch/{topic}/0/notes.txt", Body=b"someone else's file")
    nested_before = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="ch/nested/")["Contents"]}

    report = prune(store, bucket, "ch", keep_last=1, keep_within=timedelta(days=1))
    assert report.orphans == 2 and report.deleted_objects == 2
    assert s3.list_objects_v2(Bucket=bucket, Prefix=leftover)["KeyCount"] == 0
    assert s3.list_objects_v2(Bucket=bucket, Prefix=chain_leftover)["KeyCount"] == 0
    assert s3.list_objects_v2(Bucket=bucket, Prefix=f"ch/{topic}/0/notes.txt")["KeyCount"] == 1
    assert {
        o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="ch/nested/")["Contents"]
    } == nested_before
    assert len(read_chain(store, bucket, "ch/nested")) == 1
