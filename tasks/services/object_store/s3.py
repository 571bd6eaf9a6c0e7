"""`S3Store`: the object store on S3 (AWS, SeaweedFS, MinIO, ...) through boto3 — the one module of
the project that imports boto3 or botocore. Also the client's construction from the settings or a
prefect-aws credentials block.

Errors that name what went wrong: a missing bucket says which bucket at which endpoint.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Literal, cast

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from core.connections import CredentialsBlockError, S3Settings
from tasks.services.errors import (
    BucketNotFoundError,
    ObjectNotFoundError,
    StorageAccessError,
    TransientStorageError,
)
from tasks.services.object_store.base import (
    DeleteRefusal,
    ObjectInfo,
    ObjectStore,
    ObjectVersion,
    Retention,
    put_operation,
)

if TYPE_CHECKING:  # boto3-stubs[s3], a dev dependency: the types alone, never needed at run time
    from mypy_boto3_s3 import S3Client
    from prefect_aws import AwsCredentials

    from layout.manifest import Protection


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


# Objects below this size are sent in one conditional PUT (If-None-Match: *); larger ones go
# through boto3's transfer manager as multipart uploads after a HEAD check.
SINGLE_PUT_LIMIT = 64 * 1024 * 1024
TRANSFER_CONFIG = TransferConfig(multipart_threshold=SINGLE_PUT_LIMIT, multipart_chunksize=16 * 1024 * 1024)
DELETE_BATCH = 1000  # DeleteObjects takes at most 1,000 keys
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
_NOT_FOUND_CODES = ("404", "NoSuchKey", "NotFound")
_PRECONDITION_CODES = ("PreconditionFailed", "412", "ConditionalRequestConflict")
_NO_LOCK_CODES = ("ObjectLockConfigurationNotFoundError", "InvalidRequest")


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _server_time(response: Mapping[str, Any]) -> datetime | None:
    """The Date header of an answer: the S3 server's clock."""
    date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    try:
        return parsedate_to_datetime(date).astimezone(UTC) if date else None
    except (TypeError, ValueError):
        return None


class S3Store(ObjectStore):
    """The object store on a boto3 S3 client."""

    def __init__(self, client: S3Client) -> None:
        self.client = client

    @classmethod
    def from_settings(cls, settings: S3Settings | None = None) -> S3Store:
        """On `s3_client(settings)`: the configured endpoint, or the credentials block's."""
        return cls(s3_client(settings))

    @property
    def endpoint(self) -> str:
        return str(self.client.meta.endpoint_url)

    def error(self, operation: str, bucket: str, key: str | None, exc: Exception) -> Exception:
        """Turn a botocore error into one that says which bucket/key at which endpoint, and
        whether a retry may help."""
        if isinstance(exc, ClientError):
            code = _code(exc)
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in ("NoSuchBucket",) or (code == "404" and key is None):
                return BucketNotFoundError(bucket, self.endpoint)
            if code == "NoSuchKey" and key is not None:
                return ObjectNotFoundError(operation, bucket, key, self.endpoint, f"{code}: {exc}")
            if code in _TRANSIENT_CODES or status >= 500:
                return TransientStorageError(operation, bucket, key, self.endpoint, f"{code}: {exc}")
            return StorageAccessError(operation, bucket, key, self.endpoint, f"{code}: {exc}")
        return TransientStorageError(operation, bucket, key, self.endpoint, str(exc))

    # --- buckets ---------------------------------------------------------------------------------

    def check_bucket(self, bucket: str) -> None:
        try:
            self.client.head_bucket(Bucket=bucket)
        except (ClientError, BotoCoreError) as exc:
            raise self.error("HeadBucket", bucket, None, exc) from exc

    def create_bucket(self, bucket: str, *, object_lock: bool = False) -> None:
        try:
            if object_lock:
                self.client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
            else:
                self.client.create_bucket(Bucket=bucket)
        except (ClientError, BotoCoreError) as exc:
            raise self.error("CreateBucket", bucket, None, exc) from exc

    def versioned(self, bucket: str) -> bool:
        try:
            return self.client.get_bucket_versioning(Bucket=bucket).get("Status") in ("Enabled", "Suspended")
        except (ClientError, BotoCoreError):
            return False

    def object_lock_enabled(self, bucket: str) -> bool:
        try:
            answer = self.client.get_object_lock_configuration(Bucket=bucket)
        except ClientError as exc:
            if _code(exc) not in _NO_LOCK_CODES:
                raise self.error("GetObjectLockConfiguration", bucket, None, exc) from exc
            return False
        except BotoCoreError as exc:
            raise self.error("GetObjectLockConfiguration", bucket, None, exc) from exc
        return answer.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"

    # --- objects ---------------------------------------------------------------------------------

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        try:
            answer = self.client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND_CODES:
                return None
            raise self.error("HeadObject", bucket, key, exc) from exc
        except BotoCoreError as exc:
            raise self.error("HeadObject", bucket, key, exc) from exc
        until = answer.get("ObjectLockRetainUntilDate")
        return ObjectInfo(
            key=key,
            size=int(answer["ContentLength"]),
            last_modified=answer.get("LastModified"),
            metadata=dict(answer.get("Metadata", {})),
            version_id=answer.get("VersionId"),
            retention=Retention(str(answer.get("ObjectLockMode", "")), until) if until else None,
        )

    def get(self, bucket: str, key: str) -> bytes:
        try:
            return bytes(self.client.get_object(Bucket=bucket, Key=key)["Body"].read())
        except (ClientError, BotoCoreError) as exc:
            raise self.error("GetObject", bucket, key, exc) from exc

    def read_chunks(self, bucket: str, key: str, chunk_bytes: int) -> Iterator[bytes]:
        try:
            body = self.client.get_object(Bucket=bucket, Key=key)["Body"]
            yield from body.iter_chunks(chunk_bytes)
        except (ClientError, BotoCoreError) as exc:
            raise self.error("GetObject", bucket, key, exc) from exc

    def list_objects(self, bucket: str, prefix: str, *, start_after: str = "") -> Iterator[ObjectInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        pages = (
            paginator.paginate(Bucket=bucket, Prefix=prefix, StartAfter=start_after)
            if start_after
            else paginator.paginate(Bucket=bucket, Prefix=prefix)
        )
        try:
            for page in pages:
                listed_at = _server_time(cast(Mapping[str, Any], page))
                for entry in page.get("Contents", []):
                    yield ObjectInfo(
                        key=entry["Key"],
                        size=int(entry.get("Size", 0)),
                        last_modified=entry.get("LastModified"),
                        listed_at=listed_at,
                    )
        except (ClientError, BotoCoreError) as exc:
            raise self.error("ListObjectsV2", bucket, prefix, exc) from exc

    def put(
        self,
        bucket: str,
        key: str,
        data: bytes,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str | None = None,
        protection: Protection | None = None,
        if_none_match: bool = False,
    ) -> bool:
        """As the interface says; data of SINGLE_PUT_LIMIT or more goes up as a multipart upload
        (boto3's transfer manager), for `if_none_match` after a HEAD finds no object there."""
        extra: dict[str, Any] = protection.put_arguments() if protection else {}
        if metadata is not None:
            extra["Metadata"] = dict(metadata)
        if content_type is not None:
            extra["ContentType"] = content_type
        try:
            if len(data) < SINGLE_PUT_LIMIT:
                if if_none_match:
                    extra["IfNoneMatch"] = "*"
                self.client.put_object(Bucket=bucket, Key=key, Body=data, **extra)
                return True
            if if_none_match and self.head(bucket, key) is not None:
                return False
            self.client.upload_fileobj(io.BytesIO(data), bucket, key, ExtraArgs=extra, Config=TRANSFER_CONFIG)
            return True
        except ClientError as exc:
            if if_none_match and _code(exc) in _PRECONDITION_CODES:
                return False
            raise self.error(put_operation(protection), bucket, key, exc) from exc
        except BotoCoreError as exc:
            raise self.error("PutObject", bucket, key, exc) from exc

    def delete(self, bucket: str, key: str, version_id: str | None = None) -> None:
        try:
            if version_id is None:
                self.client.delete_object(Bucket=bucket, Key=key)
            else:
                self.client.delete_object(Bucket=bucket, Key=key, VersionId=version_id)
        except (ClientError, BotoCoreError) as exc:
            raise self.error("DeleteObject", bucket, key, exc) from exc

    def delete_many(self, bucket: str, targets: Sequence[ObjectVersion]) -> list[DeleteRefusal]:
        refused: list[DeleteRefusal] = []
        for start in range(0, len(targets), DELETE_BATCH):
            batch = targets[start : start + DELETE_BATCH]
            objects = [
                {"Key": t.key, "VersionId": t.version_id} if t.version_id else {"Key": t.key} for t in batch
            ]
            try:
                answer = self.client.delete_objects(
                    Bucket=bucket,
                    Delete={"Objects": objects, "Quiet": True},  # type: ignore[typeddict-item]
                )
            except (ClientError, BotoCoreError) as exc:
                raise self.error("DeleteObjects", bucket, batch[0].key, exc) from exc
            refused.extend(
                DeleteRefusal(
                    key=str(error.get("Key", "")),
                    version_id=error.get("VersionId"),
                    code=str(error.get("Code", "")),
                    message=str(error.get("Message", "")),
                )
                for error in answer.get("Errors", [])
            )
        return refused

    def versions(self, bucket: str, key: str) -> list[str]:
        found: list[str] = []
        try:
            for page in self.client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key):
                for entry in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
                    if entry.get("Key") == key and entry.get("VersionId"):
                        found.append(str(entry["VersionId"]))
        except (ClientError, BotoCoreError) as exc:
            raise self.error("ListObjectVersions", bucket, key, exc) from exc
        return found

    def retention(self, bucket: str, key: str, version_id: str | None = None) -> Retention | None:
        """None also when the store says there is none (S3 and SeaweedFS answer
        ObjectLockConfigurationNotFoundError, 404; a bucket without Object Lock, InvalidRequest)."""
        request: dict[str, str] = {"Bucket": bucket, "Key": key}
        if version_id:
            request["VersionId"] = version_id
        try:
            answer = self.client.get_object_retention(**request)  # type: ignore[arg-type]
        except (ClientError, BotoCoreError):
            return None
        retention = answer.get("Retention", {})
        until = retention.get("RetainUntilDate")
        return Retention(str(retention.get("Mode", "")), until) if until else None

    def put_retention(
        self, bucket: str, key: str, retention: Retention, version_id: str | None = None
    ) -> None:
        request: dict[str, Any] = {
            "Bucket": bucket,
            "Key": key,
            "Retention": {"Mode": retention.mode, "RetainUntilDate": retention.until},
        }
        if version_id:
            request["VersionId"] = version_id
        try:
            self.client.put_object_retention(**request)
        except (ClientError, BotoCoreError) as exc:
            raise self.error("PutObjectRetention", bucket, key, exc) from exc
