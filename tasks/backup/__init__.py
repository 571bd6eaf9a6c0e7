"""The backup wing: snapshot offsets → export by work units of partitions with flush rules →
verification → manifest write.

- `plan`: which partitions, from which offset to which, continuing which chain
  (`plan_backup_task`, the offsets snapshot).
- `export`: a work unit's windows read through one consumer, each partition's grouped by
  PARTITIONBY, encoded and rolled into objects (`export_unit_task`); `upload`: putting those
  objects once, and finding what an earlier attempt put.
- `verify`: the objects are the manifest's, bit for bit (`verify_backup_task`); `verify_chain`:
  the verify flow's tasks over a prefix's chain.
- `manifest`: assembling and writing the manifest, the commit point (`write_manifest_task`).
- `report`: the per-partition table and summary, for artifacts and the command line.

The pure model it fills (keys, objects, grouping, manifest, chains) is layout/'s; its errors
are the services' (tasks.services.errors: ManifestError, VerificationError, the lock's).
"""
