"""A restore recreates every backed-up topic config the target can honour, against the real
broker; each one it does not is a warning and a report line with the reason (README, "What a
restore does")."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import ConfigResource, ConfigSource, ResourceType

from flows.backup import BackupParameters, backup_flow
from flows.restore import RestoreParameters, restore_flow
from tasks.restore.report import summary
from tasks.restore.topic_configs import refused_configs
from tests.support.kafka import numbered_messages, produce

pytestmark = pytest.mark.usefixtures("prefect_harness")

DATA_CONFIGS = {
    "retention.ms": "-1",
    "cleanup.policy": "compact,delete",
    "max.message.bytes": "2097152",
    "segment.bytes": "104857600",
}


def _topic_configs(admin, topic):
    resource = ConfigResource(ResourceType.TOPIC, topic)
    described = admin.describe_configs([resource], request_timeout=10)[resource].result(timeout=15)
    return {n: e for n, e in described.items() if e.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value}


def _backed_up_and_restored(admin, kafka_config, create_topic, bucket, unique_name, configs):
    source = create_topic("cfg", partitions=2, config=configs)
    produce(kafka_config, source, numbered_messages(20, 2, value=b"v"))
    backup_flow(
        BackupParameters(
            kcql=f"INSERT INTO {bucket}:cfg SELECT * FROM `{source}` STOREAS AVRO PROPERTIES('store.envelope'=true)"
        )
    )
    target = unique_name("dst")
    report = restore_flow(RestoreParameters(kcql=f"INSERT INTO `{target}` SELECT * FROM {bucket}:cfg"))
    return target, report


def test_configs_the_target_can_honour_are_recreated(kafka_config, admin, create_topic, bucket, unique_name):
    configs = {**DATA_CONFIGS, "min.insync.replicas": "1"}
    target, report = _backed_up_and_restored(admin, kafka_config, create_topic, bucket, unique_name, configs)
    try:
        restored = _topic_configs(admin, target)
        assert {n: e.value for n, e in restored.items()} == configs
        assert report.targets[0].configs_not_recreated == []
        assert not any("topic config" in note for note in report.notes)
    finally:
        admin.delete_topics([target])


def test_min_insync_replicas_above_the_replication_factor_is_reported_not_recreated(
    kafka_config, admin, create_topic, bucket, unique_name
):
    # The single broker accepts min.insync.replicas=2 on a replication-factor-1 topic; the target
    # (replication factor 1 too) cannot honour it, so it is left out, with a warning.
    configs = {**DATA_CONFIGS, "min.insync.replicas": "2"}
    target, report = _backed_up_and_restored(admin, kafka_config, create_topic, bucket, unique_name, configs)
    try:
        restored = {n: e.value for n, e in _topic_configs(admin, target).items()}
        assert restored == DATA_CONFIGS
        [skipped] = report.targets[0].configs_not_recreated
        assert (skipped.name, skipped.value, skipped.instead) == ("min.insync.replicas", "2", None)
        assert "replication factor 1" in skipped.reason
        line = f"{target}: topic config min.insync.replicas=2 not recreated: "
        assert any(note.startswith(line) for note in report.notes)
        assert line in summary(report)
        assert report.ok and report.records == 20
    finally:
        admin.delete_topics([target])


def test_an_existing_target_keeps_its_configs_and_the_report_names_the_differences(
    kafka_config, admin, create_topic, bucket, unique_name
):
    backed_up = {"retention.ms": "864000000000", "max.message.bytes": "2097152"}
    source = create_topic("cfg", partitions=1, config=backed_up)
    produce(kafka_config, source, numbered_messages(5, 1, value=b"v"))
    backup_flow(
        BackupParameters(
            kcql=f"INSERT INTO {bucket}:cfg SELECT * FROM `{source}` STOREAS AVRO PROPERTIES('store.envelope'=true)"
        )
    )
    target = create_topic("dst", partitions=1, config={"max.message.bytes": "2097152"})
    report = restore_flow(RestoreParameters(kcql=f"INSERT INTO `{target}` SELECT * FROM {bucket}:cfg"))
    [kept] = report.targets[0].configs_not_recreated
    assert (kept.name, kept.value) == ("retention.ms", "864000000000")
    assert kept.reason.startswith("the target topic existed; its value (")  # the broker's default
    assert any(
        n.startswith(f"{target}: topic config retention.ms=864000000000 not recreated: ")
        for n in report.notes
    )


def test_the_broker_names_the_configs_it_refuses(admin, unique_name):
    topic = unique_name("never-created")
    configs = {"retention.ms": "1000", "remote.storage.enable": "true", "no.such.config": "1"}
    refused = refused_configs(admin, topic, 1, 1, configs)
    assert [r.name for r in refused] == ["no.such.config", "remote.storage.enable"]
    assert "Unknown topic config name: no.such.config" in refused[0].reason
    assert "Tiered Storage" in refused[1].reason
    assert topic not in admin.list_topics(timeout=10).topics
    assert refused_configs(admin, topic, 1, 1, {"retention.ms": "1000"}) == []


def test_a_keyless_backup_of_a_compacted_topic_is_restored_into_a_deleting_one(
    kafka_config, admin, create_topic, bucket, unique_name
):
    """A value-only backup keeps no keys; a compacted target would refuse every record."""
    source = create_topic("cmp", partitions=1, config={"cleanup.policy": "compact,delete"})
    produce(kafka_config, source, numbered_messages(10, 1, value=b"v"))
    backup_flow(BackupParameters(kcql=f"INSERT INTO {bucket}:cmp SELECT * FROM `{source}` STOREAS AVRO"))
    target = unique_name("dst")
    try:
        report = restore_flow(RestoreParameters(kcql=f"INSERT INTO `{target}` SELECT * FROM {bucket}:cmp"))
        assert report.ok and report.records == 10
        assert _topic_configs(admin, target)["cleanup.policy"].value == "delete"
        [skipped] = report.targets[0].configs_not_recreated
        assert (skipped.name, skipped.value, skipped.instead) == (
            "cleanup.policy",
            "compact,delete",
            "delete",
        )
    finally:
        admin.delete_topics([target])
