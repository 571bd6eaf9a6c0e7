"""The connection settings under their old import path, for modules not yet moved to
`core.connections` (the settings) and `tasks.kafka_clients.client_config` (a client's
configuration): tasks/backup_export.py, tasks/restore_check.py, tasks/restore_produce.py and
tasks/restore_target.py call `KafkaSettings().client_config()`, and
tests/e2e/test_restore_faults_cli.py imports `S3Settings` from here. Delete this module once they
have moved; the CLI itself needs no settings of its own.
"""

from __future__ import annotations

from typing import Any

from core import connections
from core.connections import S3Settings

__all__ = ["KafkaSettings", "S3Settings"]


class KafkaSettings(connections.KafkaSettings):
    """`core.connections.KafkaSettings` with the old `client_config()` method."""

    def client_config(self) -> dict[str, Any]:
        """Same as `tasks.kafka_clients.client_config(self)`; call that instead."""
        from tasks.kafka_clients import client_config

        return client_config(self)
