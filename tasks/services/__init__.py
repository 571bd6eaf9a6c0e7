"""The clients of the outside world and the stores built on them; they import no stage.

- `object_store`: every object-store call (S3 through boto3, or in memory for tests).
- `kafka`: client configuration (`clients`), bounded calls (`calls`), the admin API (`admin`:
  cluster facts, offsets snapshots), reading a partition window (`reader`).
- `schema_registry`: fetching and registering registry schemas.
- `manifest_store`: reading and writing manifests, the commit point of every backup.
- `locks`: the backup lock, a lease kept in the bucket.
- `errors`: the services' errors, and which of them a retry can fix.
"""
