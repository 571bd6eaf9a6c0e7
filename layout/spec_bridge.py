"""From a parsed BackupSpec to the pieces the export and verification use: how objects are
named, when they roll, how the codec is set up, and how PARTITIONBY values are computed."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from formats import CodecContext, get_codec
from kcql import BackupSpec
from layout.keys import KeyNaming, Padding
from layout.manifest import Manifest
from layout.objects import FlushRules
from layout.partition_values import FieldRule, PartitionValues, avro_decoder
from layout.schemas import cached_avro_lookup


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
    spec: BackupSpec, topic: str, partition: int, object_key: str | None = None
) -> CodecContext:
    envelope = spec.envelope.enabled and get_codec(spec.format.value).spec.supports_envelope
    return CodecContext(
        topic=topic,
        partition=partition,
        envelope=envelope,
        envelope_key=spec.envelope.key,
        envelope_value=spec.envelope.value,
        envelope_headers=spec.envelope.headers,
        envelope_metadata=spec.envelope.metadata,
        key_converter=spec.key_converter,
        value_converter=spec.value_converter,
        compression=spec.compression,
        compression_level=spec.compression_level,
        object_key=object_key,
    )


def spec_of(manifest: Manifest) -> BackupSpec:
    return BackupSpec.model_validate(manifest.spec)


def codec_context_from_manifest(
    manifest: Manifest, topic: str, partition: int, object_key: str
) -> CodecContext:
    """The context to read one of the manifest's objects, with its registry schemas (value-only
    objects with typed columns from Avro values are read back with them)."""
    context = codec_context(spec_of(manifest), topic, partition, object_key)
    if not manifest.schemas:
        return context
    return dataclasses.replace(context, avro_schemas=cached_avro_lookup(manifest.schemas))


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
