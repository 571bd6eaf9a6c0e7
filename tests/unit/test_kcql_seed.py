"""The seed document's statements (Lenses' backup & restore tutorial) parse to the expected specs."""

from __future__ import annotations

from kcql import (
    BackupSpec,
    EnvelopeOptions,
    Format,
    InsertWallclockTransform,
    PartitionField,
    RestoreSpec,
    TimestampConverterTransform,
    parse_backup,
    parse_connector_config,
    parse_restore,
)

PAYMENTS = "INSERT INTO lensesioaws \nSELECT * FROM payments \nSTOREAS AVRO \nPROPERTIES (\n ‘store.envelope’=true\n);"
SALES = "INSERT INTO lensesioaws\nSELECT * FROM sales \nPARTITIONBY _key.year, _value.product_category, _headers.region\nSTOREAS AVRO"
SALES_HIVE = SALES + "\nPROPERTIES('partition.include.keys'=true, ‘store.envelope’=true)"
HOURLY = """name=s3-hourly-backup
connector.class=io.lenses.streamreactor.connect.aws.s3.sink.S3SinkConnector
tasks.max=1
topics=payments
connect.s3.kcql=INSERT INTO lensesioaws:hourly SELECT * FROM payments PARTITIONBY _header.ts, _header.wallclock STOREAS AVRO PROPERTIES(‘store.envelope’=true, ‘flush.interval’=3600)
key.converter=org.apache.kafka.connect.storage.StringConverter
value.converter=org.apache.kafka.connect.converters.ByteArrayConverter
transforms=partitionTs,wallclock
transforms.partitionTs.type=io.lenses.connect.smt.header.TimestampConverter
transforms.partitionTs.field=_timestamp
transforms.partitionTs.header.name=ts
transforms.partitionTs.target.type=string
transforms.partitionTs.format.to.pattern='date='yyyy-MM-dd'/hour='HH
transforms.wallclock.type=io.lenses.connect.smt.header.InsertWallclock
transforms.wallclock.header.name=wallclock
transforms.wallclock.value.type=format
transforms.wallclock.format=yyyy-MM-dd-HH
"""

ENVELOPE = EnvelopeOptions(enabled=True)
SALES_FIELDS = (
    PartitionField(source="key", path=("year",)),
    PartitionField(source="value", path=("product_category",)),
    PartitionField(source="header", path=("region",)),
)


def test_payments() -> None:
    assert parse_backup(PAYMENTS) == [
        BackupSpec(
            bucket="lensesioaws",
            topics=("payments",),
            format=Format.AVRO,
            envelope=ENVELOPE,
            properties={"store.envelope": True},
        )
    ]


def test_sales_partitionby_both_header_spellings() -> None:
    [plain] = parse_backup(SALES)
    assert plain == BackupSpec(
        bucket="lensesioaws", topics=("sales",), format=Format.AVRO, partition_by=SALES_FIELDS
    )
    assert [f.name for f in plain.partition_by] == ["year", "product_category", "region"]
    assert parse_backup(SALES.replace("_headers.", "_header."))[0] == plain
    [hive] = parse_backup(SALES_HIVE)
    assert hive.partition_include_keys and hive.envelope.enabled


def test_restore_statements() -> None:
    assert parse_restore(
        "INSERT INTO payments SELECT * FROM lensesioaws STOREAS AVRO PROPERTIES(‘store.envelope’=true)"
    ) == [
        RestoreSpec(
            target_topic="payments",
            bucket="lensesioaws",
            format=Format.AVRO,
            envelope=ENVELOPE,
            properties={"store.envelope": True},
        )
    ]
    [spec] = parse_restore(
        "INSERT INTO * SELECT * FROM b-1:p/q PROPERTIES('restore.from'='2026-01-01T00:00:00Z', 'restore.to'='offset:99')"
    )
    assert spec.target_topic == "*" and spec.prefix == "p/q"
    assert spec.restore_from is not None and spec.restore_from.timestamp_ms == 1_767_225_600_000
    assert spec.restore_to is not None and spec.restore_to.offset == 99


def test_hourly_connector_config() -> None:
    config = parse_connector_config(HOURLY)
    assert config.topics == ("payments",)
    [spec] = config.specs
    assert (spec.bucket, spec.prefix, spec.flush_interval, spec.key_converter, spec.value_converter) == (
        "lensesioaws",
        "hourly",
        3600,
        "string",
        "bytes",
    )
    assert [f.text for f in spec.partition_by] == ["_header.ts", "_header.wallclock"]
    assert config.transforms == (
        TimestampConverterTransform(
            name="partitionTs",
            header_name="ts",
            field="_timestamp",
            target_type="string",
            format_to_pattern="'date='yyyy-MM-dd'/hour='HH",
        ),
        InsertWallclockTransform(
            name="wallclock", header_name="wallclock", value_type="format", format="yyyy-MM-dd-HH"
        ),
    )


def test_flush_interval_is_off_unless_a_statement_sets_it() -> None:
    """Ours differs from Stream Reactor's 3600 s default (docs/user-guide.md, flush rules)."""
    statement = "INSERT INTO bkt:p SELECT * FROM t STOREAS AVRO"
    [default] = parse_backup(statement)
    [set_by_property] = parse_backup(statement + " PROPERTIES('flush.interval'=600)")
    [set_by_clause] = parse_backup(statement + " WITH_FLUSH_INTERVAL=30")
    assert (default.flush_interval, set_by_property.flush_interval, set_by_clause.flush_interval) == (
        None,
        600,
        30,
    )
