"""The registry schemas a backup holds (docs/user-guide.md, "Schema Registry").

Records in the Confluent wire format (`key.converter` / `value.converter` `avro`) name a schema
by its registry id in their first five bytes. A backup records every schema its records use,
with the schemas those reference, in its manifest (`Manifest.schemas`): a restore registers them
in the target's registry and rewrites the ids (tasks/services/schema_registry.py), and value-only objects
with typed columns are read back with them (formats/avro_columns.py).

Pure: no registry client here (tasks/services/schema_registry.py talks to the registry).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import fastavro
from pydantic import Field

from core.errors import FormatError
from core.models import FrozenModel

Side = Literal["key", "value", "reference"]


class SchemaReference(FrozenModel):
    """A named type a schema uses from another subject's version (the registry's reference)."""

    name: str
    subject: str
    version: int


class SubjectVersion(FrozenModel):
    subject: str
    version: int


class StoredSchema(FrozenModel):
    """One registry schema as the source registry served it."""

    id: int = Field(description="Its id in the source registry (what the records' bytes name).")
    schema_type: str = Field(default="AVRO", description="AVRO, JSON or PROTOBUF.")
    schema_text: str = Field(description="The schema as the registry returned it.")
    references: tuple[SchemaReference, ...] = ()
    versions: tuple[SubjectVersion, ...] = Field(
        default=(), description="Every subject and version the source registry lists it under."
    )
    used_by: tuple[Side, ...] = Field(
        default=(), description="`key` / `value`: records use it; `reference`: another schema does."
    )

    @property
    def subjects(self) -> tuple[str, ...]:
        return tuple(v.subject for v in self.versions)


class SchemaError(FormatError):
    """A schema the backup holds cannot be used (parsed, or its references found)."""


def describe(schema: StoredSchema) -> str:
    """One line: id, type, subjects and versions, who uses it, what it references."""
    subjects = ", ".join(f"{v.subject} v{v.version}" for v in schema.versions) or "no subject"
    references = ", ".join(f"{r.name} ({r.subject} v{r.version})" for r in schema.references)
    return f"id {schema.id} {schema.schema_type} {subjects}; used by {'/'.join(schema.used_by) or '-'}" + (
        f"; references {references}" if references else ""
    )


def merged(*groups: Iterable[StoredSchema]) -> tuple[StoredSchema, ...]:
    """Schemas from several backups (a chain), one per id, in id order; `used_by` and `versions`
    are united."""
    by_id: dict[int, StoredSchema] = {}
    for schema in (s for group in groups for s in group):
        known = by_id.get(schema.id)
        if known is None:
            by_id[schema.id] = schema
            continue
        by_id[schema.id] = known.model_copy(
            update={
                "used_by": tuple(dict.fromkeys(known.used_by + schema.used_by)),
                "versions": tuple(dict.fromkeys(known.versions + schema.versions)),
            }
        )
    return tuple(by_id[i] for i in sorted(by_id))


def registration_order(schemas: Sequence[StoredSchema]) -> list[StoredSchema]:
    """The schemas with every referenced subject version before the schemas that use it, so that
    a registry accepts each registration. A reference no schema here provides is an error."""
    by_version = {(v.subject, v.version): s for s in schemas for v in s.versions}
    ordered: list[StoredSchema] = []
    placed: set[int] = set()
    visiting: set[int] = set()

    def place(schema: StoredSchema) -> None:
        if schema.id in placed:
            return
        if schema.id in visiting:
            raise SchemaError(f"schema id {schema.id}: its references form a cycle")
        visiting.add(schema.id)
        for reference in schema.references:
            used = by_version.get((reference.subject, reference.version))
            if used is None:
                raise SchemaError(
                    f"schema id {schema.id} references {reference.subject!r} version {reference.version}, "
                    "which the backup does not hold"
                )
            place(used)
        visiting.discard(schema.id)
        placed.add(schema.id)
        ordered.append(schema)

    for schema in sorted(schemas, key=lambda s: s.id):
        place(schema)
    return ordered


@functools.lru_cache(maxsize=16)
def cached_avro_lookup(schemas: tuple[StoredSchema, ...]) -> Callable[[int], Any] | None:
    """`avro_lookup` made once per set of schemas: a restore's objects and a verification's share
    it, so each schema is parsed once, not once an object. None without schemas: objects are read
    without (layout.spec_bridge.codec_context's `avro_schemas`)."""
    return avro_lookup(schemas) if schemas else None


def avro_lookup(schemas: Sequence[StoredSchema]) -> Callable[[int], Any]:
    """Schema id → fastavro's parsed writer schema, references resolved (parsed first, as named
    types). Parsed once per id; an unknown id raises KeyError, an unusable schema SchemaError."""
    by_version = {(v.subject, v.version): s for s in schemas for v in s.versions}
    by_id = {s.id: s for s in schemas}
    parsed: dict[int, Any] = {}

    def named_types(schema: StoredSchema, named: dict[str, Any], seen: set[int]) -> None:
        for reference in schema.references:
            used = by_version.get((reference.subject, reference.version))
            if used is None:
                raise SchemaError(
                    f"schema id {schema.id} references {reference.subject!r} version "
                    f"{reference.version}, which the backup does not hold"
                )
            if used.id in seen:
                continue
            seen.add(used.id)
            named_types(used, named, seen)
            fastavro.parse_schema(_json(used), named_schemas=named)

    def lookup(schema_id: int) -> Any:
        if schema_id not in parsed:
            schema = by_id[schema_id]
            if schema.schema_type.upper() != "AVRO":
                raise SchemaError(f"schema id {schema_id} is {schema.schema_type}, not AVRO")
            named: dict[str, Any] = {}
            named_types(schema, named, {schema.id})
            parsed[schema_id] = fastavro.parse_schema(_json(schema), named_schemas=named)
        return parsed[schema_id]

    return lookup


def _json(schema: StoredSchema) -> Any:
    try:
        return json.loads(schema.schema_text)
    except ValueError as exc:
        raise SchemaError(f"schema id {schema.id} is not JSON: {exc}") from None
