"""Everything that talks to a service or runs as a Prefect task, in wings by stage and role
(ARCHITECTURE.md has the map):

- `tasks.backup`: a backup's stages — plan (snapshot offsets), export (read, group, encode,
  roll), upload, verify, manifest (the commit point), report.
- `tasks.restore`: a restore's stages — discover, preflight, target, decode, produce (with its
  transactional writer), check, groups, report.
- `tasks.lifecycle`: retention (prune).
- `tasks.services`: the clients of the outside world — object store, Kafka, schema registry —
  and the stores built on them (manifests, the backup lock), with their errors.
- `tasks.runtime`: the run-time glue — task runners, shutdown on signals, the run directory,
  progress, retry policy, log format.

Stages import services and runtime, never each other (the backup and restore wings are apart);
services and runtime import no stage; the pure models are in layout/ (layout/restore/ for the
restore). tests/unit/test_layering.py checks it.
"""
