"""Reading and writing the restore drills' evidence in the bucket (layout/drills.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import ValidationError

from layout.drills import DrillEvidence, drill_key, drills_prefix
from tasks.services.errors import DrillRecordError

if TYPE_CHECKING:
    from tasks.services.object_store import ObjectStore


def list_drill_ids(store: ObjectStore, bucket: str, prefix: str) -> list[str]:
    """Drill ids under the prefix, oldest first (ids sort by time)."""
    folder = drills_prefix(prefix)
    names = (listed.key[len(folder) :] for listed in store.list_objects(bucket, folder))
    return sorted(name[: -len(".json")] for name in names if name.endswith(".json") and "/" not in name)


def read_drill(store: ObjectStore, bucket: str, prefix: str, drill_id: str) -> DrillEvidence:
    key = drill_key(prefix, drill_id)
    try:
        return DrillEvidence.model_validate_json(store.get(bucket, key))
    except ValidationError as exc:
        first = exc.errors()[0]
        raise DrillRecordError(bucket, key, f"not valid: {first['msg']} at {first['loc']}") from exc


def read_drills(store: ObjectStore, bucket: str, prefix: str) -> list[DrillEvidence]:
    """Every drill's evidence under the prefix, oldest first."""
    return [read_drill(store, bucket, prefix, drill_id) for drill_id in list_drill_ids(store, bucket, prefix)]


def write_drill(store: ObjectStore, bucket: str, prefix: str, evidence: DrillEvidence) -> str:
    key = drill_key(prefix, evidence.drill_id)
    store.put(bucket, key, evidence.model_dump_json(indent=2).encode(), content_type="application/json")
    return key
