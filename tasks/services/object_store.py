"""The S3 client and the few object-store operations the flows need.

Errors that name what went wrong: a missing bucket says which bucket at which endpoint.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, cast

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from core.connections import CredentialsBlockError, S3Settings
from tasks.services.errors import (
    BucketNotFoundError,
    ObjectConflictError,
    StorageAccessError,
    TransientStorageError,
)

if TYPE_CHECKING:  # boto3-stubs[s3], a dev dependency: the types alone, never needed at run time
    from mypy_boto3_s3 import S3Client
    from prefect_aws import AwsCredentials


def s3_client(settings: S3Settings | None = None) -> S3Client:
    """A boto3 S3 client for the configured endpoint, with adaptive retries for throttling and 5xx;
    with `settings.credentials_block`, on that AwsCredentials block's credentials (loaded here,
    from the Prefect API this process is configured with)."""
    settings = settings or S3Settings()
    if settings.credentials_block:
        return client_from_block(load_aws_credentials(settings.credentials_block), settings)
    return boto3.client("s3", config=_config(settings), **settings.client_kwargs())


def _config(settings: S3Settings) -> Config:
    # The setting is a free string: botocore's Config checks it and raises
    # InvalidS3AddressingStyleError for anything but these three.
    addressing_style = cast(Literal["auto", "virtual", "path"], settings.effective_addressing_style())
    return Config(
        retries={"max_attempts": 5, "mode": "adaptive"},
        s3={"addressing_style": addressing_style},
        max_pool_connections=32,
    )


def load_aws_credentials(name: str) -> AwsCredentials:
    """The prefect-aws AwsCredentials block `name`, or CredentialsBlockError."""
    from prefect_aws import AwsCredentials

    try:
        block = AwsCredentials.load(name, _sync=True)  # type: ignore[call-arg]  # async_dispatch's flag
    except ValidationError:  # its message would quote the values
        raise CredentialsBlockError(
            "AwsCredentials", name, "its values are not valid for this block type"
        ) from None
    except ValueError as exc:  # Prefect: "Unable to find block document named ..."
        raise CredentialsBlockError("AwsCredentials", name, f"not found ({exc})") from None
    return cast("AwsCredentials", block)


def client_from_block(block: AwsCredentials, settings: S3Settings | None = None) -> S3Client:
    """An S3 client on the block's credentials (keys, session token, profile or assumed role:
    prefect-aws's boto3 session) and region; the endpoint is the block's `aws_client_parameters`
    endpoint_url when set, else the settings' (KBACKUP_S3_ENDPOINT_URL). The AWS_* variables are
    not used."""
    settings = settings or S3Settings()
    parameters = block.aws_client_parameters
    endpoint = parameters.endpoint_url or settings.endpoint_url
    effective = settings.model_copy(update={"endpoint_url": endpoint})
    kwargs: dict[str, Any] = {"use_ssl": parameters.use_ssl}
    if endpoint:
        kwargs["endpoint_url"] = endpoint
    if parameters.verify_cert_path:
        kwargs["verify"] = str(parameters.verify_cert_path)
    elif parameters.verify is not None:
        kwargs["verify"] = parameters.verify
    session = block.get_boto3_session()
    if session.region_name is None and settings.region:
        kwargs["region_name"] = settings.region
    return session.client("s3", config=_config(effective), **kwargs)


# --- object operations ---------------------------------------------------------------------

# Objects below this size are sent in one conditional PUT (If-None-Match: *); larger ones go
# through boto3's transfer manager as multipart uploads after a HEAD check.
SINGLE_PUT_LIMIT = 64 * 1024 * 1024
TRANSFER_CONFIG = TransferConfig(multipart_threshold=SINGLE_PUT_LIMIT, multipart_chunksize=16 * 1024 * 1024)
_TRANSIENT_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
    "503",
    "500",
}
SHA256_METADATA = "sha256"


def endpoint_of(client: S3Client) -> str:
    return str(client.meta.endpoint_url)


def storage_error(
    client: S3Client, operation: str, bucket: str, key: str | None, exc: Exception
) -> Exception:
    """Turn a botocore error into one that says which bucket/key at which endpoint, and whether
    a retry may help."""
    endpoint = endpoint_of(client)
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in ("NoSuchBucket",) or (code == "404" and key is None):
            return BucketNotFoundError(bucket, endpoint)
        if code in _TRANSIENT_CODES or status >= 500:
            return TransientStorageError(operation, bucket, key, endpoint, f"{code}: {exc}")
        return StorageAccessError(operation, bucket, key, endpoint, f"{code}: {exc}")
    return TransientStorageError(operation, bucket, key, endpoint, str(exc))


def check_bucket(client: S3Client, bucket: str) -> None:
    try:
        client.head_bucket(Bucket=bucket)
    except (ClientError, BotoCoreError) as exc:
        raise storage_error(client, "HeadBucket", bucket, None, exc) from exc


def head_object(client: S3Client, bucket: str, key: str) -> dict[str, Any] | None:
    try:
        return dict(client.head_object(Bucket=bucket, Key=key))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise storage_error(client, "HeadObject", bucket, key, exc) from exc
    except BotoCoreError as exc:
        raise storage_error(client, "HeadObject", bucket, key, exc) from exc


def put_object_once(
    client: S3Client,
    bucket: str,
    key: str,
    data: bytes,
    metadata: dict[str, str],
    sha256: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> bool:
    """Write `data` at `key` unless an object is there already.

    `sha256` is the data's hex digest when the caller has it already. `extra` are more arguments
    of the upload (server-side encryption, Object Lock retention: layout.manifest.Protection),
    sent with the single PUT and with the multipart upload alike. Returns True when written,
    False when an identical object (same sha256) was already there (a retried export). An
    existing object with other content is an ObjectConflictError.
    """
    sha256 = sha256 or hashlib.sha256(data).hexdigest()
    metadata = {**metadata, SHA256_METADATA: sha256}
    extra = dict(extra or {})
    try:
        if len(data) < SINGLE_PUT_LIMIT:
            client.put_object(Bucket=bucket, Key=key, Body=data, Metadata=metadata, IfNoneMatch="*", **extra)
            return True
        if head_object(client, bucket, key) is None:
            client.upload_fileobj(
                io.BytesIO(data),
                bucket,
                key,
                ExtraArgs={"Metadata": metadata, **extra},
                Config=TRANSFER_CONFIG,
            )
            return True
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code not in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
            raise _put_error(client, bucket, key, exc, extra) from exc
    except BotoCoreError as exc:
        raise storage_error(client, "PutObject", bucket, key, exc) from exc
    existing = head_object(client, bucket, key)
    existing_sha = (existing or {}).get("Metadata", {}).get(SHA256_METADATA)
    if existing_sha != sha256:
        raise ObjectConflictError(bucket, key, existing_sha, sha256)
    _retain_at_least(client, bucket, key, existing or {}, extra)
    return False


def _retain_at_least(
    client: S3Client, bucket: str, key: str, existing: Mapping[str, Any], extra: Mapping[str, Any]
) -> None:
    """An object already there (a retried export's, uploaded under an earlier retention date)
    is retained at least as long as this upload asked: an Object Lock retention can always be
    extended, never shortened. (Chains never share objects: layout.chains.chain_suffix.)"""
    until = extra.get("ObjectLockRetainUntilDate")
    if until is None:
        return
    current = existing.get("ObjectLockRetainUntilDate")
    if (
        current is not None
        and current >= until
        and existing.get("ObjectLockMode")
        in (
            extra["ObjectLockMode"],
            "COMPLIANCE",
        )
    ):
        return
    request: dict[str, Any] = {
        "Bucket": bucket,
        "Key": key,
        "Retention": {"Mode": extra["ObjectLockMode"], "RetainUntilDate": max(until, current or until)},
    }
    if existing.get("VersionId"):
        request["VersionId"] = existing["VersionId"]
    try:
        client.put_object_retention(**request)
    except (ClientError, BotoCoreError) as exc:
        raise storage_error(client, "PutObjectRetention", bucket, key, exc) from exc


def _put_error(
    client: S3Client, bucket: str, key: str, exc: ClientError, extra: Mapping[str, Any]
) -> Exception:
    """storage_error, saying what the upload asked for when it asked for encryption or a lock:
    a store that cannot encrypt may answer only "InternalError" (SeaweedFS without a KMS key)."""
    asked = ", ".join(
        f"{name}={value:%Y-%m-%dT%H:%M:%SZ}" if hasattr(value, "strftime") else f"{name}={value}"
        for name, value in extra.items()
    )
    if not asked:
        return storage_error(client, "PutObject", bucket, key, exc)
    return storage_error(client, f"PutObject ({asked})", bucket, key, exc)


def check_object_lock(client: S3Client, bucket: str, asked_by: str) -> None:
    """Fail unless Object Lock is enabled on the bucket (a bucket gets it when it is created)."""
    try:
        answer = client.get_object_lock_configuration(Bucket=bucket)
        enabled = answer.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code not in ("ObjectLockConfigurationNotFoundError", "InvalidRequest"):
            raise storage_error(client, "GetObjectLockConfiguration", bucket, None, exc) from exc
        enabled = False
    except BotoCoreError as exc:
        raise storage_error(client, "GetObjectLockConfiguration", bucket, None, exc) from exc
    if not enabled:
        raise StorageAccessError(
            "GetObjectLockConfiguration",
            bucket,
            None,
            endpoint_of(client),
            f"Object Lock is not enabled on bucket {bucket!r}, and {asked_by} asks for it. Object Lock "
            "can only be enabled when a bucket is created (aws s3api create-bucket --bucket "
            f"{bucket} --object-lock-enabled-for-bucket; boto3: create_bucket(..., "
            "ObjectLockEnabledForBucket=True)): back up to such a bucket, or drop the "
            "'object.lock.*' properties",
        )


def put_json_once(
    client: S3Client, bucket: str, key: str, text: str, extra: Mapping[str, Any] | None = None
) -> None:
    put_object_once(client, bucket, key, text.encode(), {}, extra=extra)


def get_object_bytes(client: S3Client, bucket: str, key: str) -> bytes:
    try:
        return bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    except (ClientError, BotoCoreError) as exc:
        raise storage_error(client, "GetObject", bucket, key, exc) from exc


def list_objects(client: S3Client, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    """Every object under `prefix`, in key order (S3 lists lexicographically)."""
    paginator = client.get_paginator("list_objects_v2")
    try:
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            # Plain dicts for the callers (Key, Size, LastModified, ...), not the stubs' TypedDict.
            yield from cast(list[dict[str, Any]], page.get("Contents", []))
    except (ClientError, BotoCoreError) as exc:
        raise storage_error(client, "ListObjectsV2", bucket, prefix, exc) from exc
