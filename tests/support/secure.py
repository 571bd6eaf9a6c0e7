"""The secured side of a stack (scripts/stack-up.sh): SCRAM users with ACLs on Kafka's SASL_SSL
listener, made at runtime through the PLAINTEXT listener (where everyone is a super user), and
SeaweedFS's bucket-scoped identities. The ACLs below are the README's minimal sets."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

# (resource type, name, pattern, operation); "{topic}" / "{target}" are filled in per test.
Acl = tuple[ResourceType, str, ResourcePatternType, AclOperation]
_LITERAL, _PREFIXED = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED

BACKUP_ACLS: tuple[Acl, ...] = (
    (ResourceType.TOPIC, "{topic}", _LITERAL, AclOperation.READ),
    (ResourceType.TOPIC, "{topic}", _LITERAL, AclOperation.DESCRIBE_CONFIGS),
    (ResourceType.GROUP, "kbackup-export-", _PREFIXED, AclOperation.DESCRIBE),
)
RESTORE_ACLS: tuple[Acl, ...] = (
    (ResourceType.TOPIC, "{target}", _LITERAL, AclOperation.CREATE),
    (ResourceType.TOPIC, "{target}", _LITERAL, AclOperation.WRITE),
    (ResourceType.TOPIC, "{target}", _LITERAL, AclOperation.READ),
    (ResourceType.TRANSACTIONAL_ID, "kbackup-restore-", _PREFIXED, AclOperation.WRITE),
    (ResourceType.GROUP, "kbackup-restore-", _PREFIXED, AclOperation.READ),
)


@dataclass
class SecureStack:
    """What a test needs to reach a stack's SASL_SSL listener and scoped S3 identities."""

    env: dict[str, str]  # the stack's .env (OwnStack.env)

    @property
    def plaintext(self) -> dict[str, Any]:
        """Client settings for the PLAINTEXT listener (a super user there), with kbackup's callbacks."""
        from tasks.services.kafka.clients import client_callbacks

        config = {"bootstrap.servers": self.env["KBACKUP_KAFKA_BOOTSTRAP_SERVERS"]}
        return {**config, **client_callbacks(config)}

    @property
    def bucket(self) -> str:
        return self.env["KBACKUP_STACK_SECURE_BUCKET"]

    def admin(self) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.env["KBACKUP_KAFKA_BOOTSTRAP_SERVERS"], "log_level": 0})

    def create_user(
        self, acls: tuple[Acl, ...] = (), password: str | None = None, **names: str
    ) -> tuple[str, str]:
        """A new SCRAM-SHA-512 user holding `acls` (names formatted with `names`): (user, password)."""
        user = f"u-{uuid.uuid4().hex[:10]}"
        password = password or f"pw-{uuid.uuid4().hex}"
        admin = self.admin()
        upsertion = UserScramCredentialUpsertion(
            user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), password.encode()
        )
        admin.alter_user_scram_credentials([upsertion], request_timeout=30)[user].result(timeout=30)
        bindings = [
            AclBinding(rtype, name.format(**names), pattern, f"User:{user}", "*", op, AclPermissionType.ALLOW)
            for rtype, name, pattern, op in acls
        ]
        if bindings:
            for future in admin.create_acls(bindings, request_timeout=30).values():
                future.result(timeout=30)
        return user, password

    def kafka_env(self, user: str, password: str, ca_file: str | None = None) -> dict[str, str]:
        """KBACKUP_KAFKA_* for `user` on the SASL_SSL listener."""
        return {
            "KBACKUP_KAFKA_BOOTSTRAP_SERVERS": self.env["KBACKUP_STACK_SASL_BOOTSTRAP"],
            "KBACKUP_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KBACKUP_KAFKA_SASL_MECHANISMS": "SCRAM-SHA-512",
            "KBACKUP_KAFKA_SASL_USERNAME": user,
            "KBACKUP_KAFKA_SASL_PASSWORD": password,
            "KBACKUP_KAFKA_SSL_CA_LOCATION": ca_file or self.env["KBACKUP_STACK_CA_FILE"],
        }

    def s3_env(self, identity: str) -> dict[str, str]:
        """The S3 endpoint and credentials of identity `backup` (read/write) or `restore` (read),
        both limited to `bucket`; `admin` is the stack's all-powerful identity."""
        if identity == "admin":
            key, secret = self.env["AWS_ACCESS_KEY_ID"], self.env["AWS_SECRET_ACCESS_KEY"]
        else:
            prefix = f"KBACKUP_STACK_S3_{identity.upper()}"
            key, secret = self.env[f"{prefix}_ACCESS_KEY"], self.env[f"{prefix}_SECRET_KEY"]
        return {
            "KBACKUP_S3_ENDPOINT_URL": self.env["KBACKUP_S3_ENDPOINT_URL"],
            "AWS_ACCESS_KEY_ID": key,
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_REGION": self.env.get("AWS_REGION", "us-east-1"),
        }

    def s3(self, identity: str = "admin") -> Any:
        import boto3

        env = self.s3_env(identity)
        return boto3.client(
            "s3",
            endpoint_url=env["KBACKUP_S3_ENDPOINT_URL"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=env["AWS_REGION"],
        )

    def ensure_bucket(self) -> str:
        """The scoped identities' bucket, created with the admin identity when missing."""
        s3 = self.s3()
        existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        if self.bucket not in existing:
            s3.create_bucket(Bucket=self.bucket)
        return self.bucket
