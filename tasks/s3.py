"""The S3 client and the few object-store operations the flows need.

Errors that name what went wrong: a missing bucket says which bucket at which endpoint.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from kbackup.settings import S3Settings


def s3_client(settings: S3Settings | None = None) -> Any:
    """A boto3 S3 client for the configured endpoint, with adaptive retries for throttling and 5xx."""
    settings = settings or S3Settings()
    config = Config(
        retries={"max_attempts": 5, "mode": "adaptive"},
        s3={"addressing_style": settings.effective_addressing_style()},
        max_pool_connections=32,
    )
    return boto3.client("s3", config=config, **settings.client_kwargs())
