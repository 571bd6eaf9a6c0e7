"""Registry schemas through the flows, against the stack's real registry: a backup of Avro records
(AvroSerializer, a reference, two versions) lists their schemas in its manifest; a restore into
the same registry registers nothing new (identical schemas are reused, so the ids map to
themselves) and restores byte for byte; errors name the registry. The restore into a fresh
registry, with ids rewritten, is the end-to-end test tests/e2e/test_schema_registry_cli.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaReference, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from flows.backup import BackupParameters, backup_flow
from flows.restore import RestoreParameters, restore_flow
from tasks.services.schema_registry import Registry, RegistryRequestError, RegistryUnavailableError
from tests.support.kafka import consume_all
from tests.support.topics import topic_digests

pytestmark = pytest.mark.usefixtures("prefect_harness")

ADDRESS = {
    "type": "record",
    "name": "Address",
    "namespace": "kbackup.test",
    "fields": [
        {"name": "city", "type": "string"},
        {"name": "zip", "type": ["null", "string"], "default": None},
    ],
}


def _person(version: int) -> dict[str, Any]:
    fields: list[dict[str, Any]] = [
        {"name": "name", "type": "string"},
        {"name": "age", "type": "int"},
        {"name": "home", "type": "kbackup.test.Address"},
    ]
    if version == 2:
        fields.append({"name": "email", "type": ["null", "string"], "default": None})
    return {"type": "record", "name": "Person", "namespace": "kbackup.test", "fields": fields}


@pytest.fixture
def registry(stack_env: dict[str, str]) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": stack_env["KBACKUP_SCHEMA_REGISTRY_URL"]})


def _avro_topic(registry: SchemaRegistryClient, kafka_config: dict[str, Any], create_topic: Any) -> str:
    """Two partitions of Person records: version 1, then version 2 (one more field); Address is a
    reference; the keys are Avro strings; one tombstone."""
    from confluent_kafka import Producer

    topic = create_topic("avro", partitions=2)
    address_subject = f"{topic}-address"
    registry.register_schema(address_subject, Schema(json.dumps(ADDRESS), "AVRO"))
    reference = [SchemaReference("kbackup.test.Address", address_subject, 1)]
    producer = Producer(kafka_config)
    key_serializer = AvroSerializer(registry, '"string"')
    for version in (1, 2):
        schema = Schema(json.dumps(_person(version)), "AVRO", reference)
        registry.register_schema(f"{topic}-value", schema)
        registry.clear_latest_caches()  # else the serializer of version 2 would get version 1 again
        serializer = AvroSerializer(
            registry, schema, conf={"auto.register.schemas": False, "use.latest.version": True}
        )
        for i in range(40):
            person: dict[str, Any] = {
                "name": f"p{version}-{i}",
                "age": i,
                "home": {"city": "Oslo", "zip": None},
            }
            if version == 2:
                person["email"] = f"p{i}@example.com" if i % 2 else None
            producer.produce(
                topic,
                serializer(person, SerializationContext(topic, MessageField.VALUE)),
                key_serializer(f"k{i}", SerializationContext(topic, MessageField.KEY)),
                partition=i % 2,
                headers=[("v", str(version).encode())],
            )
    producer.produce(
        topic, None, key_serializer("gone", SerializationContext(topic, MessageField.KEY)), partition=0
    )
    assert producer.flush(30) == 0
    return topic


def test_backup_lists_the_schemas_and_a_restore_into_the_same_registry_is_byte_exact(
    registry, kafka_config, create_topic, target_topic, bucket
):
    source = _avro_topic(registry, kafka_config, create_topic)
    [result] = backup_flow(
        BackupParameters(
            kcql=f"INSERT INTO {bucket}:avro SELECT * FROM `{source}` STOREAS AVRO "
            "PROPERTIES('store.envelope'=true, 'key.converter'='avro', 'value.converter'='avro')",
            verify="full",
        ),
    )
    manifest = result.manifest
    subjects = {v.subject for s in manifest.schemas for v in s.versions}
    assert {f"{source}-value", f"{source}-address"} <= subjects
    values = [s for s in manifest.schemas if "value" in s.used_by]
    assert len(values) == 2 and all(s.references for s in values)
    assert any("reference" in s.used_by for s in manifest.schemas)
    assert any("key" in s.used_by for s in manifest.schemas)
    assert manifest.lossless and sum(p.not_wire_format for p in manifest.partitions) == 0
    assert sorted(i for p in manifest.partitions for i in p.schema_ids.get("value", ())) == sorted(
        [s.id for s in values] * 2
    )

    target = target_topic("same-registry")
    report = restore_flow(RestoreParameters(kcql=f"INSERT INTO `{target}` SELECT * FROM {bucket}:avro"))
    assert report.ok and all(c.digest_compared for c in report.checks)
    assert all(line.endswith(f"→ target id {line.split()[1]}") for line in report.schemas), report.schemas
    assert topic_digests(consume_all(kafka_config, target, 2)) == topic_digests(
        consume_all(kafka_config, source, 2)
    )


def test_an_unreachable_registry_and_an_unknown_id_are_named(stack_env):
    url = "http://127.0.0.1:9/apis/ccompat/v7"  # the discard port: nothing listens
    with pytest.raises(RegistryUnavailableError) as failed:
        Registry(url).fetch({"value": [1]})
    assert url in str(failed.value) and "schema id 1" in str(failed.value)
    stack = stack_env["KBACKUP_SCHEMA_REGISTRY_URL"]
    with pytest.raises(RegistryRequestError) as unknown:
        Registry(stack).fetch({"value": [987654321]})
    assert not isinstance(unknown.value, RegistryUnavailableError)
    assert stack in str(unknown.value) and "schema id 987654321" in str(unknown.value)


def test_a_target_subject_that_refuses_the_schema_fails_the_restore_before_producing(
    registry, kafka_config, create_topic, target_topic, bucket, tmp_path, admin
):
    """The target registry's compatibility rule is respected: its subject holds an incompatible
    schema under BACKWARD, the registration is refused naming the subject, nothing is produced."""
    from confluent_kafka.schema_registry import SchemaRegistryClient as Client

    from tasks.services.schema_registry import RegistryRequestError
    from tests.support.kafka import high_watermarks
    from tests.support.registry import fresh_registry

    source = _avro_topic(registry, kafka_config, create_topic)
    backup_flow(
        BackupParameters(
            kcql=f"INSERT INTO {bucket}:avro SELECT * FROM `{source}` STOREAS AVRO "
            "PROPERTIES('store.envelope'=true, 'key.converter'='avro', 'value.converter'='avro')",
        ),
    )
    target = target_topic("refused")
    with fresh_registry(tmp_path / "registry") as url:
        other = Client({"url": url})
        clash = {
            "type": "record",
            "name": "Person",
            "namespace": "kbackup.test",
            "fields": [{"name": "name", "type": "long"}],
        }
        other.register_schema(f"{source}-value", Schema(json.dumps(clash), "AVRO"))
        other.set_compatibility(f"{source}-value", "BACKWARD")
        with pytest.raises(RegistryRequestError) as refused:
            restore_flow(
                RestoreParameters(
                    kcql=f"INSERT INTO `{target}` SELECT * FROM {bucket}:avro PROPERTIES('schema.registry.url'='{url}')"
                )
            )
    assert url in str(refused.value) and f"{source}-value" in str(refused.value)
    assert sum(high for _, high in high_watermarks(kafka_config, target, 2)) == 0


def test_a_backup_with_schemas_and_no_target_registry_says_what_to_do(
    registry, kafka_config, create_topic, target_topic, bucket, monkeypatch
):
    from core.errors import InputError

    source = _avro_topic(registry, kafka_config, create_topic)
    backup_flow(
        BackupParameters(
            kcql=f"INSERT INTO {bucket}:avro SELECT * FROM `{source}` STOREAS AVRO "
            "PROPERTIES('store.envelope'=true, 'value.converter'='avro')",
        ),
    )
    monkeypatch.delenv("KBACKUP_SCHEMA_REGISTRY_URL")
    with pytest.raises(InputError, match="restore.schema.ids'='keep'"):
        restore_flow(
            RestoreParameters(kcql=f"INSERT INTO `{target_topic('none')}` SELECT * FROM {bucket}:avro")
        )
