"""An offsets commit the broker accepts as a request can still refuse a partition, and then
nothing is committed for it: a fresh broker's group coordinator still loading answers
COORDINATOR_LOAD_IN_PROGRESS (seen on the CI stack minutes after it started), a partition that does
not exist UNKNOWN_TOPIC_OR_PART. The restore's commits — its progress anchor
(tasks/restore/fence.py) and the translated consumer groups (tasks/restore/groups.py) — go through
`commit_group_offsets`: the first is asked again until it is committed, the second fails naming
the group and the partition, never passes as committed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

from tasks.services.errors import KafkaOperationError
from tasks.services.kafka.admin import commit_group_offsets


def committed(admin: Any, group: str) -> dict[tuple[str, int], int]:
    future = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)], request_timeout=30)[
        group
    ]
    return {(tp.topic, tp.partition): tp.offset for tp in future.result(timeout=30).topic_partitions}


def test_offsets_of_new_groups_are_committed_or_the_refused_partition_is_named(
    admin: Any,
    kafka_config: dict[str, Any],
    create_topic: Callable[..., str],
    unique_name: Callable[[str], str],
) -> None:
    topic = create_topic("commit", partitions=2)
    groups = [unique_name(f"grp{i}") for i in range(4)]  # new groups: on several coordinator partitions
    commit_group_offsets(
        admin,
        kafka_config,
        {g: [TopicPartition(topic, 0, 3), TopicPartition(topic, 1, i)] for i, g in enumerate(groups)},
    )
    for i, group in enumerate(groups):
        assert committed(admin, group) == {(topic, 0): 3, (topic, 1): i}

    with pytest.raises(KafkaOperationError) as refused:
        commit_group_offsets(admin, kafka_config, {groups[0]: [TopicPartition(topic, 7, 1)]})
    assert f"commit offsets of group {groups[0]} ({topic}[7])" in str(refused.value)
    assert "UNKNOWN_TOPIC_OR_PART" in str(refused.value) and not refused.value.retryable
