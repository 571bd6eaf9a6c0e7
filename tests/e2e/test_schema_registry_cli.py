"""User story (issue 16): a topic of Avro records in the Confluent wire format — two versions of
its value schema, one of them referencing a record registered under a subject of its own, Avro
keys, tombstones — is backed up with the installed `kbackup` (the schemas go into the manifest and
`kbackup ls` shows them) and restored into an empty registry: the schemas are registered there,
the ids in the records rewritten, and every record reads back as it was. With
'restore.schema.ids'='keep' into the same registry the records come back byte for byte."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaReference, SchemaRegistryClient
from confluent_kafka.serialization import MessageField, SerializationContext

from tests.support.cli import assert_clean_success, run_kbackup
from tests.support.kafka import consume_all, produce
from tests.support.registry import decoded_records, register, schema_id, serializer

pytestmark = pytest.mark.usefixtures("prefect_harness")

PARTITIONS = 3
RECORDS = 300
BASE_TIMESTAMP = 1_700_000_000_000


@dataclass(frozen=True)
class AvroTopic:
    """A topic filled with Avro records, and the subjects and ids its records use."""

    name: str
    subjects: frozenset[str]
    ids: frozenset[int]


def _schemas(namespace: str) -> dict[str, dict[str, Any]]:
    address = {
        "type": "record",
        "name": "Address",
        "namespace": namespace,
        "fields": [{"name": "city", "type": "string"}, {"name": "zip", "type": "string"}],
    }
    order_v1 = {
        "type": "record",
        "name": "Order",
        "namespace": namespace,
        "fields": [
            {"name": "id", "type": "long"},
            {"name": "amount", "type": "double"},
            {"name": "items", "type": {"type": "array", "items": "string"}},
        ],
    }
    # v2 adds a field with a default: backward compatible.
    order_v2 = {
        **order_v1,
        "fields": [*order_v1["fields"], {"name": "note", "type": "string", "default": ""}],
    }
    # v3 adds a field whose type is the Address record of another subject (a reference).
    order_v3 = {
        **order_v2,
        "fields": [
            *order_v2["fields"],
            {"name": "ship_to", "type": ["null", f"{namespace}.Address"], "default": None},
        ],
    }
    key = {
        "type": "record",
        "name": "OrderKey",
        "namespace": namespace,
        "fields": [{"name": "id", "type": "long"}],
    }
    return {"address": address, "v1": order_v1, "v2": order_v2, "v3": order_v3, "key": key}


def _messages(count: int, serializers: dict[str, Any], topic: str) -> Iterator[dict[str, Any]]:
    """Round-robin over the partitions: values cycle through the three schema versions, every
    third record has an Avro key (the others none), two keyed records are tombstones; headers
    (one duplicated) and explicit timestamps."""
    value_context = SerializationContext(topic, MessageField.VALUE)
    key_context = SerializationContext(topic, MessageField.KEY)
    tombstones = {30, 151}
    for i in range(count):
        version = ("v1", "v2", "v3")[i % 3]
        value: dict[str, Any] = {"id": i, "amount": i * 1.25, "items": [f"sku-{n}" for n in range(i % 4)]}
        if version != "v1":
            value["note"] = f"note {i}"
        if version == "v3":
            value["ship_to"] = None if i % 2 else {"city": f"city-{i % 7}", "zip": f"{10_000 + i}"}
        keyed = i % 3 == 0 or i in tombstones
        message: dict[str, Any] = {
            "partition": i % PARTITIONS,
            "key": serializers["key"]({"id": i}, key_context) if keyed else None,
            "value": None if i in tombstones else serializers[version](value, value_context),
            "timestamp": BASE_TIMESTAMP + i * 1_000,
        }
        if i % 5:
            message["headers"] = [("source", b"orders"), ("seq", str(i).encode()), ("seq", b"again")]
        yield message


@pytest.fixture
def avro_topic(create_topic: Any, kafka_config: dict[str, Any], stack_env: dict[str, str]) -> AvroTopic:
    """A fresh topic of RECORDS Avro records written with the stack registry's schemas."""
    url = stack_registry(stack_env)
    client = SchemaRegistryClient({"url": url})
    topic = create_topic("avro", partitions=PARTITIONS)
    namespace = f"kbackup.t{uuid.uuid4().hex[:10]}"
    schemas = _schemas(namespace)
    address_subject = f"{namespace}.Address"
    address = register(client, address_subject, schemas["address"])
    registered = {
        "key": register(client, f"{topic}-key", schemas["key"]),
        "v1": register(client, f"{topic}-value", schemas["v1"]),
        "v2": register(client, f"{topic}-value", schemas["v2"]),
        "v3": register(
            client,
            f"{topic}-value",
            schemas["v3"],
            [SchemaReference(address_subject, address_subject, address.version)],
        ),
    }
    assert [registered[v].version for v in ("v1", "v2", "v3")] == [1, 2, 3]
    serializers = {name: serializer(client, schema) for name, schema in registered.items()}
    assert produce(kafka_config, topic, _messages(RECORDS, serializers, topic)) == RECORDS
    return AvroTopic(
        name=topic,
        subjects=frozenset({address_subject, f"{topic}-key", f"{topic}-value"}),
        ids=frozenset(r.schema_id for r in registered.values() if r.schema_id is not None),
    )


def stack_registry(stack_env: dict[str, str]) -> str:
    url = stack_env.get("KBACKUP_SCHEMA_REGISTRY_URL")
    if not url:
        pytest.fail(
            "no KBACKUP_SCHEMA_REGISTRY_URL in the stack's env: run `make up` (it starts the registry)"
        )
    return url


def _kbackup(cwd: Path, *args: str, registry: str) -> Any:
    """The installed kbackup against the session's Prefect API and the given schema registry."""
    from prefect.settings import PREFECT_API_URL

    return run_kbackup(
        *args,
        cwd=cwd,
        env={"PREFECT_API_URL": str(PREFECT_API_URL.value()), "KBACKUP_SCHEMA_REGISTRY_URL": registry},
    )


def _back_up(avro_topic: AvroTopic, bucket: str, tmp_path: Path, registry: str) -> None:
    backup = _kbackup(
        tmp_path,
        "backup",
        "--kcql",
        f"INSERT INTO {bucket}:avro SELECT * FROM `{avro_topic.name}` STOREAS AVRO "
        "PROPERTIES('store.envelope'=true, 'key.converter'='avro', 'value.converter'='avro', "
        "'flush.count'=40)",
        registry=registry,
    )
    assert_clean_success(backup)
    assert f"{RECORDS} records" in backup.stdout


def _shift_ids(url: str, beyond: int) -> None:
    """Register unrelated schemas in the registry at `url` until its next id is above `beyond`,
    so that an id a restore failed to rewrite cannot be one of the schemas it registered."""
    client = SchemaRegistryClient({"url": url})
    last: int | None = 0
    n = 0
    while last is not None and last <= beyond:
        n += 1
        filler = {"type": "record", "name": f"Filler{n}", "fields": [{"name": "f", "type": "int"}]}
        last = register(client, f"filler-{n}", filler).schema_id


def test_restore_registers_the_schemas_in_an_empty_registry_and_rewrites_the_ids(
    avro_topic: AvroTopic,
    bucket: str,
    kafka_config: dict[str, Any],
    target_topic: Any,
    fresh_registry: str,
    stack_env: dict[str, str],
    tmp_path: Path,
) -> None:
    source_registry = stack_registry(stack_env)
    _back_up(avro_topic, bucket, tmp_path, source_registry)

    listing = _kbackup(tmp_path, "ls", f"s3://{bucket}/avro", registry=source_registry)
    assert_clean_success(listing)
    for subject in avro_topic.subjects:
        assert subject in listing.stdout, f"{subject} not in `kbackup ls`:\n{listing.stdout}"

    _shift_ids(fresh_registry, max(avro_topic.ids))
    target = target_topic()
    restore = _kbackup(
        tmp_path,
        "restore",
        "--kcql",
        f"INSERT INTO `{target}` SELECT * FROM {bucket}:avro",
        registry=fresh_registry,
    )
    assert_clean_success(restore)
    assert f"checked partitions: {PARTITIONS}/{PARTITIONS}" in restore.stdout, restore.stdout

    source = consume_all(kafka_config, avro_topic.name, PARTITIONS)
    restored = consume_all(kafka_config, target, PARTITIONS)
    assert_restored_with_new_ids(avro_topic, source, source_registry, restored, fresh_registry)


def assert_restored_with_new_ids(
    avro_topic: AvroTopic, source: list[Any], source_registry: str, restored: list[Any], target_registry: str
) -> None:
    """Every restored record reads (against the target registry) as its source record reads (against
    the source registry), partition, headers and timestamp included; the ids in the restored bytes
    are the target registry's, one for each source id, naming there the same schema (with the same
    references) under the same subjects; none of them is a source id."""
    assert decoded_records(restored, target_registry) == decoded_records(source, source_registry)
    fresh = SchemaRegistryClient({"url": target_registry})
    stack = SchemaRegistryClient({"url": source_registry})
    assert avro_topic.subjects <= set(fresh.get_subjects())
    fresh_ids = {
        fresh.get_version(subject, version).schema_id
        for subject in avro_topic.subjects
        for version in fresh.get_versions(subject)
    }
    pairs: set[tuple[int, int]] = set()
    for s, t in zip(source, restored, strict=True):
        for before, after in ((s.key(), t.key()), (s.value(), t.value())):
            if before is not None:
                assert after is not None, f"{t.topic()}[{t.partition()}]@{t.offset()} lost its key or value"
                pairs.add((schema_id(before), schema_id(after)))
    assert {old for old, _ in pairs} == avro_topic.ids
    assert len(pairs) == len(avro_topic.ids), f"a source id became several ids: {sorted(pairs)}"
    assert {new for _, new in pairs} <= fresh_ids
    assert not {new for _, new in pairs} & avro_topic.ids
    for old, new in pairs:
        before, after = stack.get_schema(old), fresh.get_schema(new)
        assert json.loads(after.schema_str or "") == json.loads(before.schema_str or "")
        assert [(r.name, r.subject) for r in after.references or []] == [
            (r.name, r.subject) for r in before.references or []
        ]


def test_keep_ids_into_the_same_registry_restores_byte_for_byte(
    avro_topic: AvroTopic,
    bucket: str,
    kafka_config: dict[str, Any],
    target_topic: Any,
    stack_env: dict[str, str],
    tmp_path: Path,
) -> None:
    registry = stack_registry(stack_env)
    _back_up(avro_topic, bucket, tmp_path, registry)
    target = target_topic()
    restore = _kbackup(
        tmp_path,
        "restore",
        "--kcql",
        f"INSERT INTO `{target}` SELECT * FROM {bucket}:avro PROPERTIES('restore.schema.ids'='keep')",
        registry=registry,
    )
    assert_clean_success(restore)
    assert f"checked partitions: {PARTITIONS}/{PARTITIONS}" in restore.stdout, restore.stdout

    def raw(messages: list[Any]) -> list[tuple[Any, ...]]:
        return [(m.partition(), m.key(), m.value(), m.headers(), m.timestamp()) for m in messages]

    assert raw(consume_all(kafka_config, target, PARTITIONS)) == raw(
        consume_all(kafka_config, avro_topic.name, PARTITIONS)
    )
