"""Connection settings: how to reach the Kafka cluster and the object store.

Read from the environment (and `.env`) with pydantic-settings; `tasks/` builds its clients from
them (`tasks.services.kafka.clients.client_config`, `tasks.services.object_store.open_store`) and the
command line uses the same classes, so nothing below the CLI depends on it. Plain settings only: no client library is
imported here.

Secrets never become flow parameters and are never logged: `SecretStr` hides them in reprs.

The credentials can also live in Prefect blocks, named (never held) here: `S3Settings.credentials_block`
(a prefect-aws AwsCredentials block) and `KafkaSettings.password_block` (a Secret block), from
`KBACKUP_S3_CREDENTIALS_BLOCK` / `KBACKUP_KAFKA_PASSWORD_BLOCK` or, for one run, from the flows'
parameters of the same meaning (`credential_blocks`). The clients load them where they are built.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import InputError

KAFKA_ENV_PREFIX = "KBACKUP_KAFKA_"
S3_CREDENTIALS_BLOCK_ENV = "KBACKUP_S3_CREDENTIALS_BLOCK"
KAFKA_PASSWORD_BLOCK_ENV = f"{KAFKA_ENV_PREFIX}PASSWORD_BLOCK"


class KafkaSettings(BaseSettings):
    """How to reach the Kafka cluster.

    Every other `KBACKUP_KAFKA_*` variable is passed to librdkafka with the prefix removed,
    lower-cased and `_` turned into `.`: `KBACKUP_KAFKA_SASL_MECHANISMS=PLAIN` becomes
    `sasl.mechanisms=PLAIN`, `KBACKUP_KAFKA_SECURITY_PROTOCOL=SASL_SSL` becomes `security.protocol`.
    The fields below can also come from `.env`; the password is a `SecretStr`.
    """

    model_config = SettingsConfigDict(env_prefix=KAFKA_ENV_PREFIX, env_file=".env", extra="ignore")

    bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        description="Comma-separated host:port list of brokers (librdkafka bootstrap.servers).",
    )
    security_protocol: str | None = Field(
        default=None, description="PLAINTEXT (librdkafka's default), SSL, SASL_PLAINTEXT or SASL_SSL."
    )
    sasl_mechanisms: str | None = Field(
        default=None, description="SCRAM-SHA-512, SCRAM-SHA-256, PLAIN, ... (librdkafka sasl.mechanisms)."
    )
    sasl_username: str | None = Field(default=None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(default=None, description="SASL password, never logged.")
    ssl_ca_location: str | None = Field(
        default=None, description="PEM file of the CA that signed the brokers' certificates."
    )
    password_block: str | None = Field(
        default=None,
        description="Name of a Prefect Secret block holding the SASL password (or, as a JSON object, "
        "librdkafka settings); its value overrides the settings above. Not passed to librdkafka.",
    )

    def librdkafka_config(self) -> dict[str, Any]:
        """The settings alone: bootstrap servers, the fields above and every pass-through setting.
        A client also needs the shared callbacks: `tasks.services.kafka.clients.client_config` adds them."""
        config: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers}
        declared = {f"{KAFKA_ENV_PREFIX}{name.upper()}" for name in type(self).model_fields}
        for name, value in os.environ.items():
            if name.startswith(KAFKA_ENV_PREFIX) and name not in declared:
                config[name[len(KAFKA_ENV_PREFIX) :].lower().replace("_", ".")] = value
        for name in ("security_protocol", "sasl_mechanisms", "sasl_username", "ssl_ca_location"):
            value = getattr(self, name)
            if value:
                config[name.replace("_", ".")] = value
        if self.sasl_password is not None:
            config["sasl.password"] = self.sasl_password.get_secret_value()
        return config

    def redacted(self) -> dict[str, Any]:
        """The settings with anything secret-looking masked, for logs and errors."""
        return {
            key: ("***" if any(word in key for word in ("password", "secret", "key")) else value)
            for key, value in self.librdkafka_config().items()
        }


class S3Settings(BaseSettings):
    """How to reach the object store. Credentials follow boto3's usual chain (AWS_* variables,
    profiles, instance roles); they are read here only to be handed to boto3, never logged."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    endpoint_url: str | None = Field(
        default=None,
        validation_alias="KBACKUP_S3_ENDPOINT_URL",
        description="S3-compatible endpoint such as http://127.0.0.1:18333; empty for AWS S3.",
    )
    region: str | None = Field(default=None, validation_alias="AWS_REGION", description="AWS region.")
    access_key_id: str | None = Field(
        default=None, validation_alias="AWS_ACCESS_KEY_ID", description="Access key (or use a profile/role)."
    )
    secret_access_key: SecretStr | None = Field(
        default=None, validation_alias="AWS_SECRET_ACCESS_KEY", description="Secret key, never logged."
    )
    addressing_style: str = Field(
        default="auto",
        validation_alias="KBACKUP_S3_ADDRESSING_STYLE",
        description="'path', 'virtual' or 'auto'; path style is used automatically with a custom endpoint.",
    )
    credentials_block: str | None = Field(
        default=None,
        validation_alias=S3_CREDENTIALS_BLOCK_ENV,
        description="Name of a prefect-aws AwsCredentials block: its credentials (and its endpoint and "
        "region, when it sets them) are used instead of the AWS_* variables.",
    )

    def client_kwargs(self) -> dict[str, Any]:
        """boto3.client's connection arguments: endpoint, region and, when both are set, the keys."""
        kwargs: dict[str, Any] = {}
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
        if self.region:
            kwargs["region_name"] = self.region
        if self.access_key_id and self.secret_access_key:
            kwargs["aws_access_key_id"] = self.access_key_id
            kwargs["aws_secret_access_key"] = self.secret_access_key.get_secret_value()
        return kwargs

    def effective_addressing_style(self) -> str:
        """The addressing style to use: 'auto' means path style with a custom endpoint."""
        if self.addressing_style == "auto" and self.endpoint_url:
            return "path"
        return self.addressing_style


class RegistrySettings(BaseSettings):
    """How to reach a Confluent-compatible Schema Registry (docs/user-guide.md, "Schema Registry"): the source's
    for a backup, the target's for a restore. A KCQL `schema.registry.url` (or a connector
    config's `value.converter.schema.registry.url`) names the URL for one statement instead."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    url: str | None = Field(
        default=None,
        validation_alias="KBACKUP_SCHEMA_REGISTRY_URL",
        description="Base URL, such as http://registry:8081 (Apicurio: .../apis/ccompat/v7).",
    )
    user_info: SecretStr | None = Field(
        default=None,
        validation_alias="KBACKUP_SCHEMA_REGISTRY_USER_INFO",
        description="`user:password` for HTTP basic auth, never logged.",
    )
    ssl_ca_location: str | None = Field(
        default=None,
        validation_alias="KBACKUP_SCHEMA_REGISTRY_SSL_CA_LOCATION",
        description="PEM file of the CA that signed the registry's certificate.",
    )
    timeout_s: float = Field(
        default=10.0,
        validation_alias="KBACKUP_SCHEMA_REGISTRY_TIMEOUT_S",
        description="Bound of one request to the registry, in seconds.",
    )

    def client_config(self, url: str | None = None) -> dict[str, Any]:
        """confluent-kafka's SchemaRegistryClient configuration (`url` overrides the setting)."""
        chosen = url or self.url
        if not chosen:
            raise InputError(
                "no schema registry configured: set KBACKUP_SCHEMA_REGISTRY_URL "
                "(or the statement's 'schema.registry.url')"
            )
        config: dict[str, Any] = {"url": chosen, "timeout": self.timeout_s}
        if self.user_info is not None:
            config["basic.auth.user.info"] = self.user_info.get_secret_value()
        if self.ssl_ca_location:
            config["ssl.ca.location"] = self.ssl_ca_location
        return config


class CredentialsBlockError(InputError):
    """A Prefect block named as a credentials source is missing or unusable. The message names the
    block and the problem, never the block's values."""

    def __init__(self, block_type: str, name: str, problem: str) -> None:
        self.block_type = block_type
        self.name = name
        self.problem = problem
        super().__init__(f"Prefect {block_type} block {name!r}: {problem}")


@contextlib.contextmanager
def credential_blocks(s3: str | None = None, kafka: str | None = None) -> Iterator[None]:
    """For the body: the S3 and Kafka clients take their credentials from the Prefect blocks of
    these names (None: as configured before). Set in the environment, as the run's directory is
    (tasks.runtime.run_dir), so that worker processes see the names too; the previous values come back after."""
    names = {S3_CREDENTIALS_BLOCK_ENV: s3, KAFKA_PASSWORD_BLOCK_ENV: kafka}
    previous = {env: os.environ.get(env) for env, name in names.items() if name}
    for env, name in names.items():
        if name:
            os.environ[env] = name
    try:
        yield
    finally:
        for env, value in previous.items():
            if value is None:
                os.environ.pop(env, None)
            else:
                os.environ[env] = value
