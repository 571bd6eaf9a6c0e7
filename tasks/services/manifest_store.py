"""Reading and writing manifests in the bucket: the commit point of every backup."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import ValidationError

from layout.manifest import Manifest, manifest_key, manifests_prefix
from tasks.services.errors import ManifestError

if TYPE_CHECKING:
    from tasks.services.object_store import ObjectStore


def list_backup_ids(store: ObjectStore, bucket: str, prefix: str) -> list[str]:
    """Backup ids under the prefix, oldest first (ids sort by time)."""
    folder = manifests_prefix(prefix)
    ids = []
    for listed in store.list_objects(bucket, folder):
        name = listed.key[len(folder) :]
        if name.endswith(".json") and "/" not in name:
            ids.append(name[: -len(".json")])
    return sorted(ids)


def read_manifest(store: ObjectStore, bucket: str, prefix: str, backup_id: str) -> Manifest:
    key = manifest_key(prefix, backup_id)
    data = store.get(bucket, key)
    try:
        return Manifest.model_validate_json(data)
    except ValidationError as exc:
        raise ManifestError(
            bucket, key, f"not a valid manifest: {exc.errors()[0]['msg']} at {exc.errors()[0]['loc']}"
        ) from exc


def latest_manifest(store: ObjectStore, bucket: str, prefix: str) -> Manifest | None:
    ids = list_backup_ids(store, bucket, prefix)
    return read_manifest(store, bucket, prefix, ids[-1]) if ids else None


def read_chain(store: ObjectStore, bucket: str, prefix: str) -> list[Manifest]:
    """Every manifest under the prefix, oldest first."""
    return [
        read_manifest(store, bucket, prefix, backup_id)
        for backup_id in list_backup_ids(store, bucket, prefix)
    ]


def write_manifest(store: ObjectStore, bucket: str, prefix: str, manifest: Manifest) -> str:
    key = manifest_key(prefix, manifest.backup_id)
    # The manifest is encrypted and retained as its objects are (Manifest.protection).
    store.put_once(
        bucket, key, manifest.model_dump_json(indent=2).encode(), {}, protection=manifest.protection
    )
    return key
