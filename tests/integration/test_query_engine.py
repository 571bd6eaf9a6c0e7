"""Proof by a real query engine: a Hive-partitioned PARQUET backup of the seed's sales example,
with typed columns from JSON values, queried by DuckDB over the downloaded objects; the aggregate
equals the one computed from the source topic. Then the same backup restores to values equal as
documents. The same again for the sales as Avro records in the Confluent wire format (issue 16):
the Avro record's fields become the typed columns, and the restored values read back equal."""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import duckdb
import pytest

from flows.backup import BackupParameters, backup_flow
from flows.restore import RestoreParameters, restore_flow
from tests.support.kafka import consume_all, produce

pytestmark = pytest.mark.usefixtures("prefect_harness")

REGIONS = ["EMEA", "APAC", "AMER"]
CATEGORIES = ["Electronics", "Books", "Garden", "Toys"]


def _sales(count: int) -> list[dict[str, Any]]:
    """The seed's sales records: the year in the JSON key, the category in the JSON value, the
    region in a header; amounts integers and fractions, some fields only in some records."""
    rng = random.Random(14)
    messages = []
    for i in range(count):
        value: dict[str, Any] = {
            "product_category": rng.choice(CATEGORIES),
            "amount": rng.choice([rng.randint(1, 500), round(rng.uniform(1, 500), 2)]),
            "customer": {"id": rng.randint(1, 50), "vip": rng.random() < 0.2},
            "items": [f"sku-{rng.randint(1, 9)}" for _ in range(rng.randint(0, 3))],
        }
        if rng.random() < 0.3:
            value["discount"] = None if rng.random() < 0.5 else round(rng.uniform(0, 0.5), 2)
        messages.append(
            {
                "key": json.dumps({"year": rng.choice([2023, 2024]), "id": i}).encode(),
                "value": json.dumps(value).encode(),
                "headers": [("region", rng.choice(REGIONS).encode())],
                "partition": i % 3,
            }
        )
    return messages


def _aggregate_of_topic(messages: list[Any]) -> dict[tuple[str, str], tuple[int, float]]:
    totals: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0.0])
    for m in messages:
        region = dict(m.headers())["region"].decode()
        value = json.loads(m.value())
        total = totals[(region, value["product_category"])]
        total[0] += 1
        total[1] += value["amount"]
    return {group: (int(n), amount) for group, (n, amount) in totals.items()}


def _canonical(value: bytes) -> str:
    """A JSON value's document as one string, numbers as floats: documents equal as Python
    values (json.loads(a) == json.loads(b), where 10 == 10.0) give equal strings."""

    def numbers_as_floats(part: Any) -> Any:
        if isinstance(part, dict):
            return {name: numbers_as_floats(member) for name, member in part.items()}
        if isinstance(part, list):
            return [numbers_as_floats(item) for item in part]
        return float(part) if isinstance(part, int) and not isinstance(part, bool) else part

    return json.dumps(numbers_as_floats(json.loads(value)), sort_keys=True)


def _download(s3: Any, bucket: str, prefix: str, into: Path) -> list[Path]:
    paths = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if "/_manifests/" in obj["Key"]:
                continue
            path = into / obj["Key"]
            path.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, obj["Key"], str(path))
            paths.append(path)
    return paths


def test_duckdb_aggregates_a_hive_partitioned_backup(
    kafka_config: dict, create_topic: Any, bucket: str, s3: Any, admin: Any, unique_name: Any, tmp_path: Path
) -> None:
    topic = create_topic("sales", partitions=3)
    produce(kafka_config, topic, _sales(600))
    source = consume_all(kafka_config, topic, 3)
    expected = _aggregate_of_topic(source)

    kcql = (
        f"INSERT INTO {bucket}:sales SELECT * FROM `{topic}` "
        "PARTITIONBY _key.year, _value.product_category, _headers.region STOREAS PARQUET "
        "PROPERTIES('partition.include.keys'=true, 'key.converter'='json', 'value.converter'='json', "
        "'flush.count'=40)"
    )
    [result] = backup_flow(BackupParameters(kcql=kcql, verify="full"))
    assert result.manifest.record_count == 600 and not result.manifest.lossless

    paths = _download(s3, bucket, "sales/", tmp_path)
    assert len(paths) == sum(len(p.objects) for p in result.manifest.partitions) > 2 * 3 * 4
    assert {p.relative_to(tmp_path).parts[1].split("=")[0] for p in paths} == {"year"}

    files = f"{tmp_path}/sales/**/*.parquet"
    rows = duckdb.sql(
        f"SELECT region, product_category, count(*), sum(amount) "
        f"FROM read_parquet('{files}', hive_partitioning = true, union_by_name = true) GROUP BY ALL"
    ).fetchall()
    assert len(rows) == len(expected) == len(REGIONS) * len(CATEGORIES)
    for region, category, count, total in rows:
        assert (count, total) == (
            expected[(region, category)][0],
            pytest.approx(expected[(region, category)][1]),
        )

    # Typed columns, not one blob: the JSON fields and the partition columns are queryable as such.
    described = duckdb.sql(
        f"DESCRIBE SELECT * FROM read_parquet('{files}', hive_partitioning = true, union_by_name = true)"
    )
    columns = {name: kind for name, kind, *_ in described.fetchall()}
    assert columns["amount"] == "DOUBLE" and columns["year"] == "BIGINT"
    assert columns["customer"] == "STRUCT(id BIGINT, vip BOOLEAN)"
    assert columns["items"] == "VARCHAR[]"
    vip_2023 = sum(
        1 for m in source if json.loads(m.key())["year"] == 2023 and json.loads(m.value())["customer"]["vip"]
    )
    assert duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{files}', hive_partitioning = true, union_by_name = true) WHERE year = 2023 AND customer.vip"
    ).fetchall() == [(vip_2023,)]

    # A value-only restore gives back the values, equal as JSON documents.
    target = unique_name("dst")
    try:
        restore_flow(RestoreParameters(kcql=f"INSERT INTO `{target}` SELECT * FROM {bucket}:sales"))
        restored = consume_all(kafka_config, target, 3)
        assert Counter(_canonical(m.value()) for m in restored) == Counter(
            _canonical(m.value()) for m in source
        )
    finally:
        admin.delete_topics([target])


def _sale_schemas(namespace: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The sales records' key and value as Avro: a string category, a double amount, a nested
    record and an array."""
    key = {
        "type": "record",
        "name": "SaleKey",
        "namespace": namespace,
        "fields": [{"name": "year", "type": "int"}, {"name": "id", "type": "long"}],
    }
    value = {
        "type": "record",
        "name": "Sale",
        "namespace": namespace,
        "fields": [
            {"name": "product_category", "type": "string"},
            {"name": "amount", "type": "double"},
            {
                "name": "customer",
                "type": {
                    "type": "record",
                    "name": "Customer",
                    "fields": [{"name": "id", "type": "long"}, {"name": "vip", "type": "boolean"}],
                },
            },
            {"name": "items", "type": {"type": "array", "items": "string"}},
            {"name": "discount", "type": ["null", "double"], "default": None},
        ],
    }
    return key, value


def test_duckdb_aggregates_typed_columns_of_avro_values(
    kafka_config: dict,
    stack_env: dict[str, str],
    create_topic: Any,
    bucket: str,
    s3: Any,
    admin: Any,
    unique_name: Any,
    tmp_path: Path,
) -> None:
    """The same sales, produced with AvroSerializer (Confluent wire format): with the avro
    converters, value-only PARQUET objects hold the Avro record's fields as typed columns."""
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.serialization import MessageField, SerializationContext

    from tests.support.registry import decoded_records, register, serializer

    url = stack_env.get("KBACKUP_SCHEMA_REGISTRY_URL")
    if not url:
        pytest.fail(
            "no KBACKUP_SCHEMA_REGISTRY_URL in the stack's env: run `make up` (it starts the registry)"
        )
    client = SchemaRegistryClient({"url": url})
    topic = create_topic("avrosales", partitions=3)
    key_schema, value_schema = _sale_schemas(f"kbackup.sales{uuid.uuid4().hex[:10]}")
    key_registered = register(client, f"{topic}-key", key_schema)
    value_registered = register(client, f"{topic}-value", value_schema)
    to_key = serializer(client, key_registered)
    to_value = serializer(client, value_registered)
    messages = []
    for message in _sales(600):  # the JSON case's records, written as Avro
        value = json.loads(message["value"])
        value["amount"] = float(value["amount"])
        value.setdefault("discount", None)
        messages.append(
            {
                **message,
                "key": to_key(json.loads(message["key"]), SerializationContext(topic, MessageField.KEY)),
                "value": to_value(value, SerializationContext(topic, MessageField.VALUE)),
            }
        )
    produce(kafka_config, topic, messages)
    # (key, value, headers, timestamp type, timestamp) of each source record, read back by AvroDeserializer.
    source = [
        record
        for records in decoded_records(consume_all(kafka_config, topic, 3), url).values()
        for record in records
    ]
    totals: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0.0])
    for _, value, headers, *_ in source:
        total = totals[(dict(headers)["region"].decode(), value["product_category"])]
        total[0] += 1
        total[1] += value["amount"]
    expected = {group: (int(n), amount) for group, (n, amount) in totals.items()}

    kcql = (
        f"INSERT INTO {bucket}:sales SELECT * FROM `{topic}` "
        "PARTITIONBY _key.year, _value.product_category, _headers.region STOREAS PARQUET "
        "PROPERTIES('partition.include.keys'=true, 'key.converter'='avro', 'value.converter'='avro', "
        "'flush.count'=40)"
    )
    [result] = backup_flow(BackupParameters(kcql=kcql, verify="full"))
    assert result.manifest.record_count == 600 and not result.manifest.lossless

    paths = _download(s3, bucket, "sales/", tmp_path)
    assert len(paths) == sum(len(p.objects) for p in result.manifest.partitions) > 2 * 3 * 4
    files = f"{tmp_path}/sales/**/*.parquet"
    scan = f"read_parquet('{files}', hive_partitioning = true, union_by_name = true)"
    rows = duckdb.sql(
        f"SELECT region, product_category, count(*), sum(amount) FROM {scan} GROUP BY ALL"
    ).fetchall()
    assert len(rows) == len(expected) == len(REGIONS) * len(CATEGORIES)
    for region, category, count, total in rows:
        assert (count, total) == (
            expected[(region, category)][0],
            pytest.approx(expected[(region, category)][1]),
        )

    # The Avro schema's types, not ones inferred from the data; the writer's schema id and the
    # tombstone marker beside them.
    columns = {name: kind for name, kind, *_ in duckdb.sql(f"DESCRIBE SELECT * FROM {scan}").fetchall()}
    assert columns["product_category"] == "VARCHAR" and columns["amount"] == "DOUBLE"
    assert columns["customer"] == "STRUCT(id BIGINT, vip BOOLEAN)"
    assert columns["items"] == "VARCHAR[]" and columns["discount"] == "DOUBLE"
    assert duckdb.sql(f"SELECT DISTINCT _kbackup_schema_id, _kbackup_tombstone FROM {scan}").fetchall() == [
        (value_registered.schema_id, False)
    ]
    vip_2023 = sum(1 for key, value, *_ in source if key["year"] == 2023 and value["customer"]["vip"])
    assert duckdb.sql(f"SELECT count(*) FROM {scan} WHERE year = 2023 AND customer.vip").fetchall() == [
        (vip_2023,)
    ]

    # A value-only restore gives back values that AvroDeserializer reads equal to the source's.
    target = unique_name("dst")
    try:
        restore_flow(RestoreParameters(kcql=f"INSERT INTO `{target}` SELECT * FROM {bucket}:sales"))
        restored = consume_all(kafka_config, target, 3)
        restored_values = [v for records in decoded_records(restored, url).values() for _, v, *_ in records]
        assert Counter(json.dumps(v, sort_keys=True) for v in restored_values) == Counter(
            json.dumps(value, sort_keys=True) for _, value, *_ in source
        )
    finally:
        admin.delete_topics([target])
