"""A transaction committed in the target partition but not in the restore's progress: what Kafka
4.3 leaves when a broker restarted within its session timeout skips the markers of a commit it
completes (tasks.restore.reconcile; seen on a CI stack in the broker-restart test of
tests/e2e/test_restore_faults_cli.py). Here the progress offset is put back by the test, the way
the broker's lost marker left it; the rerun must resume after what the partition holds, not
produce its last transaction again."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

from flows.restore import RestoreParameters, restore_flow
from tasks.services.kafka.admin import commit_group_offsets
from tests.support.kafka import by_partition, consume_all, produce
from tests.support.restore_backups import build_backup

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _progress(admin: Any, group: str, topic: str, partition: int) -> TopicPartition:
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, partition)])
    [found] = admin.list_consumer_group_offsets([request])[group].result(30).topic_partitions
    return found


@pytest.mark.parametrize(
    ("batch", "rewound", "keep_metadata"),
    [(5, 35, True), (40, 0, False)],
    ids=["its-last-transaction", "its-first-transaction"],
)
def test_a_rerun_resumes_after_what_the_partition_holds_when_the_progress_lost_a_commit(
    kafka_config, s3, admin, create_topic, bucket, unique_name, batch, rewound, keep_metadata
):
    source = create_topic("src", partitions=2)
    produce(
        kafka_config,
        source,
        ({"partition": i % 2, "key": f"k{i:05d}".encode(), "value": f"v{i}".encode()} for i in range(80)),
    )
    build_backup(s3, kafka_config, source, 2, bucket, "lost", per_object=10)
    target = unique_name("dst")
    kcql = f"INSERT INTO `{target}` SELECT * FROM {bucket}:lost LIMIT {batch}"
    try:
        first = restore_flow(RestoreParameters(kcql=kcql, concurrency=2))
        assert first.ok and first.records == 80
        # where a unit alone in its partition keeps its progress (layout.restore.progress)
        group = f"kbackup-restore-{first.restore_id}-progress"
        committed = _progress(admin, group, target, 1)
        assert committed.offset == 40
        metadata = committed.metadata if keep_metadata else ""
        commit_group_offsets(
            admin, kafka_config, {group: [TopicPartition(target, 1, rewound, metadata=metadata)]}
        )

        rerun = restore_flow(RestoreParameters(kcql=kcql, concurrency=2))

        assert rerun.ok
        assert {u.unit: (u.resumed_after, u.produced) for u in rerun.units} == {
            f"{source}.0": (40, 0),
            f"{source}.1": (40, 0),
        }
        assert by_partition(consume_all(kafka_config, target, 2)) == by_partition(
            consume_all(kafka_config, source, 2)
        )
    finally:
        admin.delete_topics([target])
