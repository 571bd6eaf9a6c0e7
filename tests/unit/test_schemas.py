"""The registry schemas a backup holds (layout/schemas.py), and where their settings come from
(KCQL properties, the connector config, the environment): pure, no registry."""

from __future__ import annotations

import io
import json

import fastavro
import pytest

from core.connections import RegistrySettings
from core.errors import InputError
from kcql import parse_backup
from kcql.connector_config import parse_connector_config
from kcql.errors import KcqlValueError
from kcql.selection import restore_selection
from layout.schemas import (
    SchemaError,
    SchemaReference,
    StoredSchema,
    SubjectVersion,
    avro_lookup,
    describe,
    merged,
    registration_order,
)

ADDRESS = {
    "type": "record",
    "name": "Address",
    "namespace": "t",
    "fields": [{"name": "city", "type": "string"}],
}
PERSON = {
    "type": "record",
    "name": "Person",
    "namespace": "t",
    "fields": [{"name": "home", "type": "t.Address"}],
}


def _schema(schema_id: int, text: object, subject: str, version: int = 1, **fields: object) -> StoredSchema:
    return StoredSchema(
        id=schema_id,
        schema_text=json.dumps(text),
        versions=(SubjectVersion(subject=subject, version=version),),
        **fields,  # type: ignore[arg-type]
    )


ADDRESS_SCHEMA = _schema(7, ADDRESS, "address", used_by=("reference",))
PERSON_SCHEMA = _schema(
    3, PERSON, "people-value", references=(SchemaReference(name="t.Address", subject="address", version=1),)
)


def test_referenced_schemas_are_registered_first_whatever_their_ids():
    assert [s.id for s in registration_order([PERSON_SCHEMA, ADDRESS_SCHEMA])] == [7, 3]


def test_a_reference_the_backup_does_not_hold_is_named():
    with pytest.raises(SchemaError, match="schema id 3 references 'address' version 1"):
        registration_order([PERSON_SCHEMA])


def test_a_cycle_of_references_is_refused():
    a = _schema(1, "string", "a", references=(SchemaReference(name="x", subject="b", version=1),))
    b = _schema(2, "string", "b", references=(SchemaReference(name="y", subject="a", version=1),))
    with pytest.raises(SchemaError, match="cycle"):
        registration_order([a, b])


def test_the_lookup_parses_a_schema_with_its_references_and_decodes_with_it():
    lookup = avro_lookup([PERSON_SCHEMA, ADDRESS_SCHEMA])
    parsed = lookup(3)
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, parsed, {"home": {"city": "Oslo"}})
    assert fastavro.schemaless_reader(io.BytesIO(buffer.getvalue()), parsed) == {"home": {"city": "Oslo"}}
    assert lookup(3) is parsed  # parsed once
    with pytest.raises(KeyError):
        lookup(99)


def test_merged_keeps_one_schema_per_id_with_every_use():
    key_use = _schema(5, "string", "t-key", used_by=("key",))
    value_use = _schema(5, "string", "t-value", used_by=("value",))
    [one] = merged([key_use], [value_use, key_use])
    assert one.used_by == ("key", "value")
    assert one.subjects == ("t-key", "t-value")
    assert describe(one) == "id 5 AVRO t-key v1, t-value v1; used by key/value"


def test_registry_settings_come_from_the_environment_and_never_show_the_password(monkeypatch):
    monkeypatch.setenv("KBACKUP_SCHEMA_REGISTRY_URL", "http://registry:8081")
    monkeypatch.setenv("KBACKUP_SCHEMA_REGISTRY_USER_INFO", "alice:s3cret")
    settings = RegistrySettings()
    assert "s3cret" not in repr(settings)
    config = settings.client_config()
    assert config["url"] == "http://registry:8081" and config["basic.auth.user.info"] == "alice:s3cret"
    assert settings.client_config("http://other:8081")["url"] == "http://other:8081"


def test_no_registry_configured_says_how_to_configure_one(monkeypatch):
    monkeypatch.delenv("KBACKUP_SCHEMA_REGISTRY_URL", raising=False)
    with pytest.raises(InputError, match="KBACKUP_SCHEMA_REGISTRY_URL"):
        RegistrySettings().client_config()


def test_kcql_names_the_registry_and_the_restore_keeps_or_rewrites_ids():
    [spec] = parse_backup(
        "INSERT INTO bkt:p SELECT * FROM t STOREAS AVRO "
        "PROPERTIES('value.converter'='avro', 'schema.registry.url'='http://r:8081')"
    )
    assert spec.schema_registry_url == "http://r:8081" and spec.value_converter == "avro"
    keep = restore_selection("INSERT INTO t SELECT * FROM bkt:p PROPERTIES('restore.schema.ids'='keep')")
    assert keep.schema_ids == "keep"
    assert restore_selection("INSERT INTO t SELECT * FROM bkt:p").schema_ids == "rewrite"
    with pytest.raises(KcqlValueError, match="rewrite"):
        restore_selection("INSERT INTO t SELECT * FROM bkt:p PROPERTIES('restore.schema.ids'='new')")


CONNECTOR = """connect.s3.kcql=INSERT INTO bkt:p SELECT * FROM t STOREAS AVRO
value.converter=io.confluent.connect.avro.AvroConverter
value.converter.schema.registry.url=http://registry:8081
"""


def test_the_connector_configs_registry_url_is_the_statements():
    [spec] = parse_connector_config(CONNECTOR).specs
    assert spec.value_converter == "avro" and spec.schema_registry_url == "http://registry:8081"


def test_registry_credentials_in_a_connector_config_are_refused_with_where_they_go():
    text = CONNECTOR + "value.converter.basic.auth.user.info=alice:s3cret\n"
    with pytest.raises(KcqlValueError) as refused:
        parse_connector_config(text)
    assert "KBACKUP_SCHEMA_REGISTRY_USER_INFO" in str(refused.value)
    assert "line 4" in str(refused.value) and "s3cret" not in str(refused.value)
