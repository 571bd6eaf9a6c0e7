"""From a parsed BackupSpec to the pieces the export and verification use: how objects are
named, when they roll, how the codec is set up (for the restore too), and how PARTITIONBY values
are computed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from formats import CodecContext, get_codec
from kcql import BackupSpec, CodecOptions
from layout.keys import KeyNaming, Padding
from layout.manifest import Manifest
from layout.objects import FlushRules
from layout.partition_values import FieldRule, PartitionValues, avro_decoder


def key_naming(spec: BackupSpec, extension: str, chain_suffix: str = "") -> KeyNaming:
    """How the statement names its objects; `chain_suffix` follows `key.suffix` in the names of a
    chain that is not the prefix's first (layout.chains.chain_suffix)."""
    return KeyNaming(
        prefix=spec.prefix,
        extension=extension,
        partition_names=tuple(field.name for field in spec.partition_by),
        include_keys=spec.partition_include_keys,
        padding=Padding(type=spec.padding.type, char=spec.padding.char, lengths=dict(spec.padding.lengths)),
        key_suffix=(spec.key_suffix or "") + chain_suffix,
    )


def flush_rules(spec: BackupSpec) -> FlushRules:
    return FlushRules(count=spec.flush_count, size=spec.flush_size, interval_seconds=spec.flush_interval)


def codec_context(
    fmt: str,
    options: CodecOptions,
    topic: str,
    partition: int,
    object_key: str | None = None,
    avro_schemas: Callable[[int], Any] | None = None,
) -> CodecContext:
    """The context a codec of `fmt` writes or reads one object of `topic`/`partition` with: the
    envelope where the format carries one; `avro_schemas` (schema id → parsed schema) types the
    value-only columns of Avro values. Every codec context is made here: the export's of its spec,
    the verification's and the restore's of the backup's (RestorePlan.codec)."""
    envelope = options.envelope
    return CodecContext(
        topic=topic,
        partition=partition,
        envelope=envelope.enabled and get_codec(fmt).spec.supports_envelope,
        envelope_key=envelope.key,
        envelope_value=envelope.value,
        envelope_headers=envelope.headers,
        envelope_metadata=envelope.metadata,
        key_converter=options.key_converter,
        value_converter=options.value_converter,
        compression=options.compression,
        compression_level=options.compression_level,
        object_key=object_key,
        avro_schemas=avro_schemas,
    )


def spec_of(manifest: Manifest) -> BackupSpec:
    return BackupSpec.model_validate(manifest.spec)


def codec_of(manifest: Manifest) -> CodecOptions:
    """The codec options the manifest's spec records, read alone (defaults for those it predates):
    what a restore needs of the spec, even of one whose other properties this version would refuse."""
    fields = CodecOptions.model_fields
    return CodecOptions.model_validate({k: v for k, v in manifest.spec.items() if k in fields})


BYTE_EXACT_CONVERTERS = ("bytes", "avro")


def is_lossless(spec: BackupSpec) -> bool:
    """Every part of every record is kept byte for byte: the envelope with all parts, keys and
    values as bytes (`bytes`, or `avro`: the Confluent wire format's bytes, kept as they are)."""
    envelope = spec.envelope
    return (
        envelope.enabled
        and get_codec(spec.format.value).spec.supports_envelope
        and envelope.key
        and envelope.value
        and envelope.headers
        and envelope.metadata
        and spec.key_converter in BYTE_EXACT_CONVERTERS
        and spec.value_converter in BYTE_EXACT_CONVERTERS
    )


def partition_values_for(
    spec: BackupSpec, avro_schemas: Callable[[int], Any] | None = None
) -> PartitionValues | None:
    """The statement's PARTITIONBY; keys and values under an `avro` converter are decoded with
    `avro_schemas` (schema id → parsed schema)."""
    if not spec.partition_by:
        return None
    from kcql.java_dates import java_date_formatter

    rules = [
        FieldRule(
            source=field.source,
            path=field.path,
            text=field.text,
            date_format=java_date_formatter(field.pattern)
            if field.source == "date" and field.pattern
            else None,
        )
        for field in spec.partition_by
    ]
    decoders = {
        side: avro_decoder(avro_schemas)
        for side in ("key", "value")
        if avro_schemas is not None and getattr(spec, f"{side}_converter") == "avro"
    }
    return PartitionValues(rules, missing_as_null=spec.partition_missing == "null", decoders=decoders)
