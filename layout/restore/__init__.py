"""The restore's pure model, beside the backup's (layout/): what a restore reads, in which order,
and where each record goes. No Prefect, boto3 or confluent-kafka here: tested in memory.

- `plan`: the plan's models (RestorePlan, RestoreUnit, RestoreObject, Segment, TargetTopic) and
  the restore id.
- `from_manifests`: discovery from a manifest chain; `units`: the one unit builder of discovery.
- `routing`: which target partition each record goes to.
- `order`: clustering interleaved objects, merging by offset, the ordering rules.
- `digests`: the manifest's segment digests recomputed from decoded records.
- `errors`: the plan's and the order's errors.
"""
