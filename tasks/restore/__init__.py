"""The restore wing: discover objects by partition key → pre-flight → target topics → decode
envelopes → produce with ordering checks → check → consumer groups → report.

- `discover`: reads the prefix and plans (`plan_restore_task`); `discover_listing`: Stream
  Reactor data without a manifest, from the listing.
- `preflight`: every object the restore will read is there and as the manifest says, before
  anything is produced.
- `target`: creating or checking the target topics (`prepare_targets_task`).
- `decode`: a unit's objects fetched and decoded into columns, in restore order.
- `work`: the units packed into work units, one task run each (`restore_units`), after
  `fence` has aborted what earlier runs left open; `produce`: the units of a work unit produced
  exactly once and resumably, several to a transaction, through `writer`, the work unit's
  transactional producer.
- `check`: reading back what was restored (a consumer per work unit) and comparing digests;
  `groups`: consumer-group offsets translated onto the target.
- `report`: what each unit did, and how to resume a failed restore.
- `errors`: the stages' errors.

The pure model — the plan, units, routing, ordering rules, segment digests, and discovery from
manifests — is layout/restore/.
"""
