"""The parse results: frozen pydantic models, one per statement kind."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from core.models import FrozenModel

if TYPE_CHECKING:
    from formats.codec import CodecSpec

Converter = Literal["bytes", "string", "json", "avro"]


class Format(str, Enum):  # noqa: UP042 - str() of a member stays "Format.X" as callers expect
    """STOREAS names. Each format's facts (extension, compressions) are its codec's, in
    formats.registry: asked for when needed, so parsing KCQL does not import the codecs."""

    AVRO = "AVRO"
    PARQUET = "PARQUET"
    JSON = "JSON"
    CSV = "CSV"
    CSV_WITHHEADERS = "CSV_WITHHEADERS"
    TEXT = "TEXT"
    BYTES = "BYTES"

    @property
    def codec_spec(self) -> CodecSpec:
        from formats.registry import CODECS

        return CODECS[self.value].spec

    @property
    def extension(self) -> str:
        return self.codec_spec.extension

    @property
    def compressions(self) -> tuple[str, ...]:
        return self.codec_spec.compressions


class PartitionField(FrozenModel):
    source: Literal["key", "value", "header", "topic", "partition", "date"]
    path: tuple[str, ...] = ()
    pattern: str | None = None

    @property
    def name(self) -> str:
        """The Hive-style name: last path element, `key`, `topic`, `partition`, or the date pattern."""
        if self.source == "date":
            return self.pattern or "date"
        if self.path:
            return self.path[-1]
        return self.source

    @property
    def text(self) -> str:
        """Canonical KCQL text."""
        if self.source == "date":
            return f"_date.{self.pattern}"
        if self.source in ("topic", "partition"):
            return f"_{self.source}"
        return ".".join((f"_{self.source}", *self.path))


class EnvelopeOptions(FrozenModel):
    enabled: bool = False
    key: bool = True
    value: bool = True
    headers: bool = True
    metadata: bool = True


class CodecOptions(FrozenModel):
    """How records are encoded in a backup's objects: which parts of the envelope they carry, the
    key and value converters, the compression. A BackupSpec's (`BackupSpec.codec`), or, for Stream
    Reactor data restored without a manifest, the restore statement's. layout.spec_bridge.codec_context
    makes a codec's context of them."""

    envelope: EnvelopeOptions = EnvelopeOptions()
    key_converter: Converter = "bytes"
    value_converter: Converter = "bytes"
    compression: str | None = None
    compression_level: int | None = None


class PaddingOptions(FrozenModel):
    type: Literal["LeftPad", "RightPad", "NoOp"] = "LeftPad"
    char: str = Field(default="0", min_length=1, max_length=1)
    lengths: tuple[tuple[str, int], ...] = (("offset", 12),)


class RestoreBound(FrozenModel):
    timestamp_ms: int | None = None
    offset: int | None = None


PropertyValue = str | int | bool
SseMode = Literal["AES256", "aws:kms"]
LockMode = Literal["GOVERNANCE", "COMPLIANCE"]


class ProtectionOptions(FrozenModel):
    """How a backup's objects and manifest are protected in the store (docs/user-guide.md, "Encryption and
    immutability"): server-side encryption and S3 Object Lock retention."""

    sse: SseMode | None = Field(default=None, description="Server-side encryption (`sse`).")
    kms_key_id: str | None = Field(
        default=None, description="The KMS key of `sse`='aws:kms' (`sse.kms.key.id`)."
    )
    lock_mode: LockMode | None = Field(default=None, description="Object Lock mode (`object.lock.mode`).")
    lock_retention_s: int | None = Field(
        default=None,
        description="Seconds each object is retained from the backup's start (`object.lock.retention`).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ProtectionOptions:
        if self.sse == "aws:kms" and not self.kms_key_id:
            raise ValueError("'sse.kms.key.id' beside 'sse'='aws:kms' (the KMS key to encrypt with)")
        if self.kms_key_id and self.sse != "aws:kms":
            raise ValueError("'sse'='aws:kms' with 'sse.kms.key.id' (a key id is only used by KMS)")
        if (self.lock_mode is None) != (self.lock_retention_s is None):
            raise ValueError("'object.lock.mode' and 'object.lock.retention' together (both or neither)")
        return self


class BackupSpec(FrozenModel):
    bucket: str
    prefix: str = ""
    topics: tuple[str, ...]
    partition_by: tuple[PartitionField, ...] = ()
    format: Format = Format.JSON
    envelope: EnvelopeOptions = EnvelopeOptions()
    flush_size: int = 500_000_000
    flush_count: int = 50_000
    flush_interval: int | None = Field(
        default=None,
        description="Seconds of record timestamps per object; None (the default): objects are cut by "
        "count and size only. Stream Reactor's default is 3600 s of wall clock; ours is off, so sparse "
        "timestamps do not make tiny objects.",
    )
    partition_include_keys: bool = False
    padding: PaddingOptions = PaddingOptions()
    key_suffix: str | None = None
    key_converter: Converter = "bytes"
    value_converter: Converter = "bytes"
    compression: str | None = None
    compression_level: int | None = None
    isolation_level: Literal["read_committed", "read_uncommitted"] = "read_committed"
    partition_missing: Literal["error", "null"] = "error"
    schema_registry_url: str | None = Field(
        default=None, description="The source's schema registry (else KBACKUP_SCHEMA_REGISTRY_URL)."
    )
    full_every_s: int | None = Field(
        default=None,
        description="Start a new chain with a full backup when the current chain began this many seconds "
        "ago (`backup.full.every`); None: one chain forever.",
    )
    protection: ProtectionOptions = ProtectionOptions()
    properties: dict[str, PropertyValue] = Field(default_factory=dict)

    @property
    def codec(self) -> CodecOptions:
        """The statement's codec options (not a field: a manifest keeps the spec as it always was)."""
        return CodecOptions(
            envelope=self.envelope,
            key_converter=self.key_converter,
            value_converter=self.value_converter,
            compression=self.compression,
            compression_level=self.compression_level,
        )


class RestoreSpec(FrozenModel):
    target_topic: str
    bucket: str
    prefix: str = ""
    format: Format | None = None
    batch_limit: int | None = None
    envelope: EnvelopeOptions = EnvelopeOptions()
    key_converter: Converter = "bytes"
    value_converter: Converter = "bytes"
    source_topic: str | None = None
    restore_from: RestoreBound | None = None
    restore_to: RestoreBound | None = None
    partitions: tuple[int, ...] | None = None
    filter: tuple[tuple[str, str], ...] = ()
    partitioner: Literal["preserve", "murmur2"] = "preserve"
    preflight: Literal["quick", "full", "none"] = Field(
        default="quick",
        description="Checks before anything is produced: quick (every object listed with its manifest size), "
        "full (also each object's sha256), none.",
    )
    target_nonempty: Literal["refuse", "append"] = Field(
        default="refuse",
        description="A target partition that holds records this restore did not write: refuse, or append after them.",
    )
    timestamp_zero: Literal["refuse", "substitute"] = Field(
        default="refuse",
        description="A selected record with timestamp 0 (1970-01-01T00:00:00Z), which the producer client "
        "cannot write (it reads 0 as 'now'): refuse the restore before anything is written, or write "
        "it with the substitute timestamp 1 (1 ms later).",
    )
    schema_ids: Literal["rewrite", "keep"] = Field(
        default="rewrite",
        description="Registry schema ids in the records: rewrite to the target registry's ids (registering "
        "the backup's schemas there), or keep them (a restore into the same registry).",
    )
    schema_registry_url: str | None = Field(
        default=None, description="The target's schema registry (else KBACKUP_SCHEMA_REGISTRY_URL)."
    )
    point: str | None = Field(
        default=None, description="The restore point (a backup id); None: the newest (`restore.point`)."
    )
    acls: Literal["off", "literal", "all"] = Field(
        default="off",
        description="`restore.acls`: recreate the backup's ACL bindings for the restored topics and groups "
        "(literal: the literal ones, renamed; all: also prefixed and wildcard ones as recorded); off: none.",
    )
    users: bool = Field(
        default=False,
        description="`restore.users`: create the backup's SCRAM users missing on the target, with passwords "
        "given to the restore (never from the backup).",
    )
    properties: dict[str, PropertyValue] = Field(default_factory=dict)
