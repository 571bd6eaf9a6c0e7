"""The stack's schema registry is real: Apicurio Registry's Confluent-compatible API, spoken to by
confluent-kafka's own SchemaRegistryClient."""

from __future__ import annotations

import json
import uuid

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

PAYMENT = {
    "type": "record",
    "name": "Payment",
    "namespace": "kbackup.smoke",
    "fields": [{"name": "id", "type": "long"}, {"name": "amount", "type": "double"}],
}


def test_register_an_avro_schema_and_read_it_back_by_id(stack_env: dict[str, str]) -> None:
    url = stack_env.get("KBACKUP_SCHEMA_REGISTRY_URL")
    if not url:
        pytest.fail(
            "no KBACKUP_SCHEMA_REGISTRY_URL in the stack's env: run `make up` (it starts the registry)"
        )
    subject = f"smoke-{uuid.uuid4().hex[:12]}-value"
    schema = Schema(json.dumps(PAYMENT), "AVRO")

    schema_id = SchemaRegistryClient({"url": url}).register_schema(subject, schema)

    # A fresh client (an empty cache) asks the registry itself.
    reader = SchemaRegistryClient({"url": url})
    fetched = reader.get_schema(schema_id)
    assert fetched.schema_type == "AVRO"
    assert json.loads(fetched.schema_str) == PAYMENT
    latest = reader.get_latest_version(subject)
    assert (latest.subject, latest.version, latest.schema_id) == (subject, 1, schema_id)
    # The same schema again is the same id and version, not a new one.
    assert SchemaRegistryClient({"url": url}).register_schema(subject, schema) == schema_id
    assert reader.get_versions(subject) == [1]
