"""Reading and writing manifests in the bucket: the commit point of every backup."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import ValidationError

from layout.manifest import Manifest, manifest_key, manifests_prefix
from layout.manifest_checks import chain_problems, manifest_problems
from tasks.services.errors import ImpossibleManifestError, ManifestError

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
    """The manifest of `backup_id`, checked against its invariants (layout.manifest_checks): one
    with an impossible value, or naming a key outside the backup, is refused here, before any
    object it names is asked for (ImpossibleManifestError, naming each field and why)."""
    key = manifest_key(prefix, backup_id)
    data = store.get(bucket, key)
    try:
        manifest = Manifest.model_validate_json(data)
    except ValidationError as exc:
        raise ManifestError(
            bucket, key, f"not a valid manifest: {exc.errors()[0]['msg']} at {exc.errors()[0]['loc']}"
        ) from exc
    if problems := manifest_problems(manifest, prefix, backup_id):
        raise ImpossibleManifestError(bucket, key, prefix, [str(p) for p in problems])
    return manifest


def latest_manifest(store: ObjectStore, bucket: str, prefix: str) -> Manifest | None:
    ids = list_backup_ids(store, bucket, prefix)
    return read_manifest(store, bucket, prefix, ids[-1]) if ids else None


def read_chain(store: ObjectStore, bucket: str, prefix: str) -> list[Manifest]:
    """Every manifest under the prefix, oldest first, each checked (`read_manifest`) and their
    chains too (an incremental backup continues an older one of its chain, where it ended)."""
    manifests = [
        read_manifest(store, bucket, prefix, backup_id)
        for backup_id in list_backup_ids(store, bucket, prefix)
    ]
    found = chain_problems(manifests)
    for manifest in manifests:  # the oldest impossible one
        if manifest.backup_id in found:
            key = manifest_key(prefix, manifest.backup_id)
            raise ImpossibleManifestError(bucket, key, prefix, [str(p) for p in found[manifest.backup_id]])
    return manifests


def write_manifest(store: ObjectStore, bucket: str, prefix: str, manifest: Manifest) -> str:
    key = manifest_key(prefix, manifest.backup_id)
    # The manifest is encrypted and retained as its objects are (Manifest.protection).
    store.put_once(
        bucket, key, manifest.model_dump_json(indent=2).encode(), {}, protection=manifest.protection
    )
    return key
