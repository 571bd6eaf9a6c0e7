"""Credentials from Prefect blocks, without services: the S3 client built from an AwsCredentials
block's values, the librdkafka settings from a Secret block's value, the block names carried by
the settings and the flows' parameters (names only, never secrets)."""

from __future__ import annotations

import inspect
import os
from typing import Any

import pytest
from prefect_aws import AwsCredentials

from core.connections import (
    KAFKA_PASSWORD_BLOCK_ENV,
    S3_CREDENTIALS_BLOCK_ENV,
    CredentialsBlockError,
    KafkaSettings,
    S3Settings,
    credential_blocks,
)
from flows.backup import backup_flow
from flows.parameters import BackupParameters, RestoreParameters
from tasks.services.kafka import clients as kafka_clients
from tasks.services.object_store import s3

SECRET = "block-secret-value"


def _frozen_credentials(client: Any) -> Any:
    return client._request_signer._credentials.get_frozen_credentials()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith(("AWS_", "KBACKUP_S3_", "KBACKUP_KAFKA_")):
            monkeypatch.delenv(name)
    return monkeypatch


def test_s3_client_from_a_blocks_keys_region_and_endpoint(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AWS_ACCESS_KEY_ID", "env-key")
    clean_env.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    block = AwsCredentials(
        aws_access_key_id="block-key",
        aws_secret_access_key=SECRET,
        aws_session_token="block-token",
        region_name="eu-west-1",
        aws_client_parameters={"endpoint_url": "http://127.0.0.1:1"},
    )
    client = s3.client_from_block(block, S3Settings())
    credentials = _frozen_credentials(client)
    assert (credentials.access_key, credentials.secret_key, credentials.token) == (
        "block-key",
        SECRET,
        "block-token",
    )
    assert client.meta.endpoint_url == "http://127.0.0.1:1"
    assert client.meta.region_name == "eu-west-1"
    assert client.meta.config.s3 == {"addressing_style": "path"}  # a custom endpoint: path style
    assert client.meta.config.retries["mode"] == "adaptive"


def test_a_block_without_endpoint_or_region_takes_the_settings(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("KBACKUP_S3_ENDPOINT_URL", "http://127.0.0.1:2")
    clean_env.setenv("AWS_REGION", "us-west-2")
    block = AwsCredentials(aws_access_key_id="block-key", aws_secret_access_key=SECRET)
    client = s3.client_from_block(block, S3Settings())
    assert client.meta.endpoint_url == "http://127.0.0.1:2"
    assert client.meta.region_name == "us-west-2"
    assert _frozen_credentials(client).access_key == "block-key"


def test_s3_client_loads_the_block_the_settings_name(clean_env: pytest.MonkeyPatch) -> None:
    loaded: list[str] = []

    def load(name: str) -> AwsCredentials:
        loaded.append(name)
        return AwsCredentials(aws_access_key_id="block-key", aws_secret_access_key=SECRET)

    clean_env.setattr(s3, "load_aws_credentials", load)
    clean_env.setenv("KBACKUP_S3_ENDPOINT_URL", "http://127.0.0.1:3")
    clean_env.setenv(S3_CREDENTIALS_BLOCK_ENV, "prod-s3")
    client = s3.s3_client()
    assert loaded == ["prod-s3"]
    assert _frozen_credentials(client).secret_key == SECRET
    assert client.meta.endpoint_url == "http://127.0.0.1:3"


def test_without_a_block_the_environment_as_before(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setattr(s3, "load_aws_credentials", pytest.fail)
    clean_env.setenv("AWS_ACCESS_KEY_ID", "env-key")
    clean_env.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    clean_env.setenv("AWS_REGION", "us-east-1")
    assert _frozen_credentials(s3.s3_client()).access_key == "env-key"


def test_kafka_password_from_a_secret_block(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setattr(kafka_clients, "load_secret", lambda name: SECRET if name == "kafka-pw" else None)
    clean_env.setenv("KBACKUP_KAFKA_SASL_USERNAME", "kbackup-backup")
    clean_env.setenv("KBACKUP_KAFKA_SASL_PASSWORD", "from-the-environment")
    clean_env.setenv(KAFKA_PASSWORD_BLOCK_ENV, "kafka-pw")
    config = kafka_clients.client_config()
    assert config["sasl.password"] == SECRET
    assert config["sasl.username"] == "kbackup-backup"
    assert "password.block" not in config and "error_cb" in config  # the name is not a librdkafka setting


def test_a_secret_holding_a_json_object_is_librdkafka_settings(clean_env: pytest.MonkeyPatch) -> None:
    value = {"sasl.username": "block-user", "sasl.password": SECRET, "security.protocol": "SASL_SSL"}
    clean_env.setattr(kafka_clients, "load_secret", lambda name: value)
    config = kafka_clients.client_config(KafkaSettings(bootstrap_servers="b:9094", password_block="kafka"))
    assert {key: config[key] for key in value} == value
    assert config["bootstrap.servers"] == "b:9094"


def test_a_secret_of_another_shape_is_refused_without_its_value() -> None:
    with pytest.raises(CredentialsBlockError) as refused:
        kafka_clients.settings_from_secret("kafka", [SECRET])
    assert refused.value.name == "kafka" and refused.value.block_type == "Secret"
    assert SECRET not in str(refused.value)


def test_credential_blocks_name_the_blocks_for_the_body_only(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv(KAFKA_PASSWORD_BLOCK_ENV, "configured")
    with credential_blocks("s3-block", None):
        assert S3Settings().credentials_block == "s3-block"
        assert KafkaSettings().password_block == "configured"  # None: as configured
        with credential_blocks(None, "run-kafka"):
            assert KafkaSettings().password_block == "run-kafka"
        assert KafkaSettings().password_block == "configured"
    assert S3_CREDENTIALS_BLOCK_ENV not in os.environ
    assert os.environ[KAFKA_PASSWORD_BLOCK_ENV] == "configured"


def test_the_flows_take_block_names_as_parameters() -> None:
    assert list(inspect.signature(backup_flow.fn).parameters) == ["params"]  # one BackupParameters
    assert BackupParameters.model_fields["s3_credentials_block"].default is None
    assert BackupParameters.model_fields["kafka_password_block"].default is None
    backup = BackupParameters(kcql="INSERT INTO b:p SELECT * FROM t", s3_credentials_block="s3")
    restore = RestoreParameters(kcql="INSERT INTO t SELECT * FROM b:p", kafka_password_block="kafka")
    assert (backup.s3_credentials_block, backup.kafka_password_block) == ("s3", None)
    assert (restore.s3_credentials_block, restore.kafka_password_block) == (None, "kafka")
    for model in (BackupParameters, RestoreParameters):
        for field in ("s3_credentials_block", "kafka_password_block"):
            assert model.model_fields[field].annotation == str | None  # a name, not a SecretStr
