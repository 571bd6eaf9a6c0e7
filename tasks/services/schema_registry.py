"""Talking to a Confluent-compatible Schema Registry (docs/user-guide.md, "Schema Registry"): fetching the
schemas a backup's records name (with the schemas they reference) and registering a backup's
schemas in a restore's target registry, old id → new id.

Every request is bounded (`KBACKUP_SCHEMA_REGISTRY_TIMEOUT_S`, a few retries by the client) and
every failure names the registry's URL and the schema. The pure parts (the stored form, the
order of registration, parsing with references) are layout/schemas.py's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from confluent_kafka.schema_registry import Schema, SchemaReference, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from prefect import task
from prefect.cache_policies import NO_CACHE

from core.connections import RegistrySettings
from core.errors import RegistryError, Retryable
from layout.schemas import SchemaReference as StoredReference
from layout.schemas import Side, StoredSchema, SubjectVersion, avro_lookup, merged, registration_order
from tasks.runtime.retry import RETRY_OPTIONS

NOT_FOUND = 404
CONFLICT = 409


class RegistryRequestError(RegistryError):
    """A registry refused or failed a request: `url` says which registry, the message what."""

    def __init__(self, url: str, problem: str) -> None:
        self.url = url
        self.problem = problem
        super().__init__(f"schema registry {url}: {problem}")


class RegistryUnavailableError(RegistryRequestError, Retryable):
    """The registry did not answer (connection refused, timeout, 5xx): a retry may succeed."""


class Registry:
    """One registry, its client and its URL (for errors)."""

    def __init__(self, url: str | None = None, settings: RegistrySettings | None = None) -> None:
        config = (settings or RegistrySettings()).client_config(url)
        config.setdefault("max.retries", 2)
        self.url: str = config["url"]
        self.client = SchemaRegistryClient(config)

    def call(self, what: str, request: Callable[..., Any], *args: Any) -> Any:
        """`request(*args)`'s answer, or RegistryError / RegistryUnavailableError saying `what` failed."""
        try:
            return request(*args)
        except SchemaRegistryError as exc:
            status = exc.http_status_code
            problem = f"{what}: {exc.error_message} (HTTP {status})"
            if status is not None and status >= 500:
                raise RegistryUnavailableError(self.url, problem) from None
            raise RegistryRequestError(self.url, problem) from None
        except Exception as exc:  # noqa: BLE001 - requests/httpx raise many kinds for a dead server
            raise RegistryUnavailableError(self.url, f"{what}: {type(exc).__name__}: {exc}") from None

    # --- backup ---------------------------------------------------------------------------

    def fetch(self, ids: Mapping[Side, Iterable[int]]) -> tuple[StoredSchema, ...]:
        """The schemas of these ids (by the side that uses them), with every schema they
        reference (transitively), as this registry serves them."""
        found: dict[int, StoredSchema] = {}
        for side, side_ids in ids.items():
            for schema_id in sorted(set(side_ids)):
                self._fetch_one(schema_id, side, found)
        return merged(found.values())

    def _fetch_one(self, schema_id: int, side: Side, found: dict[int, StoredSchema]) -> None:
        if schema_id in found:
            known = found[schema_id]
            if side not in known.used_by:
                found[schema_id] = known.model_copy(update={"used_by": (*known.used_by, side)})
            return
        schema = self.call(f"schema id {schema_id}", self.client.get_schema, schema_id)
        versions = self.call(f"subjects of schema id {schema_id}", self.client.get_schema_versions, schema_id)
        references = tuple(
            StoredReference(name=r.name, subject=r.subject, version=int(r.version))
            for r in (schema.references or ())
        )
        found[schema_id] = StoredSchema(
            id=schema_id,
            schema_type=schema.schema_type or "AVRO",
            schema_text=schema.schema_str,
            references=references,
            versions=tuple(SubjectVersion(subject=v.subject, version=int(v.version)) for v in versions),
            used_by=(side,),
        )
        for reference in references:
            registered = self.call(
                f"{reference.subject!r} version {reference.version} (referenced by schema id {schema_id})",
                self.client.get_version,
                reference.subject,
                reference.version,
            )
            self._fetch_one(int(registered.schema_id), "reference", found)

    def avro_lookup(self) -> Callable[[int], Any]:
        """Schema id → fastavro's parsed schema, fetched from this registry once per id (for
        typed columns from Avro values while exporting)."""
        parsed: dict[int, Any] = {}

        def lookup(schema_id: int) -> Any:
            if schema_id not in parsed:
                try:
                    schemas = self.fetch({"value": [schema_id]})
                except RegistryUnavailableError:
                    raise  # an outage fails the export (and is retried), never a silent fallback
                except RegistryError as exc:
                    raise KeyError(schema_id) from exc  # an id it does not know: not typed
                parsed[schema_id] = avro_lookup(schemas)(schema_id)
            return parsed[schema_id]

        return lookup

    # --- restore --------------------------------------------------------------------------

    def register(self, schemas: Sequence[StoredSchema]) -> dict[int, int]:
        """Register the backup's schemas under their subjects, referenced ones first, and return
        source id → this registry's id. A schema already registered identically is reused (the
        registry answers with its id); one the subject's compatibility refuses is an error naming
        the subject and version."""
        ids: dict[int, int] = {}
        versions: dict[tuple[str, int], int] = {}  # (subject, source version) -> target version
        for stored in registration_order(schemas):
            references = [
                SchemaReference(r.name, r.subject, versions.get((r.subject, r.version), r.version))
                for r in stored.references
            ]
            schema = Schema(stored.schema_text, stored.schema_type, references)
            if not stored.versions:
                raise RegistryRequestError(
                    self.url, f"schema id {stored.id} has no subject in the backup: it cannot be registered"
                )
            for place in stored.versions:
                where = (
                    f"registering schema id {stored.id} as {place.subject!r} (source version {place.version})"
                )
                new_id = self.call(where, self.client.register_schema, place.subject, schema)
                registered = self.call(where, self.client.lookup_schema, place.subject, schema)
                ids.setdefault(stored.id, int(new_id))
                versions[(place.subject, place.version)] = int(registered.version)
        return ids


@task(name="fetch-schemas", cache_policy=NO_CACHE, **RETRY_OPTIONS)
def fetch_schemas_task(url: str | None, ids: dict[Side, list[int]]) -> tuple[StoredSchema, ...]:
    return Registry(url).fetch(ids)


@task(name="register-schemas", cache_policy=NO_CACHE, **RETRY_OPTIONS)
def register_schemas_task(url: str | None, schemas: tuple[StoredSchema, ...]) -> dict[int, int]:
    return Registry(url).register(schemas)
