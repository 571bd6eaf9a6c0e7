"""The one error family of kbackup: every error it expects derives from `KbackupError`, through
the base of the layer that raises it. Each package's own errors subclass its layer's base:

    KbackupError                      the root: an expected failure, said in one message
    ├── InputError                    what the user gave is not valid: fix the input (exit 2)
    │   └── LanguageError             KCQL (kcql.errors.KcqlError), properties, date patterns
    ├── FormatError                   an object's bytes ↔ records (formats.errors)
    ├── StorageError                  S3: buckets, objects, access (tasks.services.errors)
    ├── KafkaError                    brokers, topics, security, client calls (tasks.services.errors)
    ├── RegistryError                 a schema registry (tasks.services.schema_registry)
    ├── BackupError                   a backup's manifests, lock and verification (tasks.services.errors)
    └── RestoreError                  a restore's discovery, checks and writes (tasks.restore.errors)

`Retryable` marks what a retry of the same task can fix (a broker that is down, a timeout, S3
throttling or a 5xx); everything else (bad KCQL, a corrupt object, a missing bucket or
permission) fails at once (tasks.runtime.retry). The command line prints an expected error as one
message and exits 2 for an InputError, 1 for the others (kbackup.cli); anything that is not a
KbackupError is a bug and shows its traceback.

InputError and FormatError are ValueErrors too, as the package bases they replace were: code
that catches ValueError (pydantic validators among it) keeps seeing them.

Pure: imports nothing beyond the standard library, so every package can use it.
"""

from __future__ import annotations


class KbackupError(Exception):
    """Root of every error kbackup expects; anything else is a bug."""


class Retryable:
    """Mixin: a retry of the same task may succeed."""


class InputError(KbackupError, ValueError):
    """What the user gave (a statement, a property, a location, a parameter) is not valid; nothing ran."""


class LanguageError(InputError):
    """KCQL: a statement, one of its properties or date patterns, a connector config."""


class FormatError(KbackupError, ValueError):
    """An object's bytes and its records: encoding, decoding, compression."""


class StorageError(KbackupError):
    """S3: a bucket, an object, access to them."""


class KafkaError(KbackupError):
    """Kafka: brokers, topics, security, the client calls."""


class RegistryError(KbackupError):
    """A schema registry: reaching it, fetching and registering schemas."""


class BackupError(KbackupError):
    """A backup's own records: its manifests, its lock, its verification."""


class RestoreError(KbackupError):
    """A restore: discovery, pre-flight, ordering, the writes and their check."""
