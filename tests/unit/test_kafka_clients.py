"""The callbacks every Kafka client shares (tasks/services/kafka/clients.py) and the connection settings:
security failures become non-retryable errors naming the broker and the cause, librdkafka's
lines are deduplicated, the SASL password stays secret. No broker needed."""

from __future__ import annotations

import logging
import os
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from core.connections import KafkaSettings
from tasks.services.errors import (
    BrokerUnavailableError,
    KafkaAuthenticationError,
    KafkaAuthorizationError,
    KafkaOperationError,
    KafkaTlsError,
    is_retryable,
)
from tasks.services.kafka.admin import kafka_failure
from tasks.services.kafka.clients import (
    LIBRDKAFKA_LOG,
    ClientErrors,
    DuplicateFilter,
    client_callbacks,
    client_config,
)

SASL_CONFIG = {
    "bootstrap.servers": "127.0.0.1:19094",
    "security.protocol": "SASL_SSL",
    "sasl.mechanisms": "SCRAM-SHA-512",
    "sasl.username": "backup",
    "sasl.password": "hunter2",
}
SASL_FAILURE = (
    "sasl_ssl://127.0.0.1:19094/bootstrap: SASL authentication error: Authentication failed during "
    "authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512 (after 312ms in state AUTH_REQ)"
)
TLS_FAILURE = (
    "ssl://broker-1.example.com:9093/1: SSL handshake failed: error:0A000086:SSL routines::certificate "
    "verify failed: broker certificate could not be verified (after 5ms in state SSL_HANDSHAKE, "
    "3 identical error(s) suppressed)"
)


def test_sasl_failure_is_raised_naming_user_broker_and_cause() -> None:
    errors = ClientErrors(SASL_CONFIG)
    with pytest.raises(KafkaAuthenticationError) as caught:
        errors(KafkaError(KafkaError._AUTHENTICATION, SASL_FAILURE))
    error = caught.value
    assert (error.broker, error.username, error.mechanism) == ("127.0.0.1:19094", "backup", "SCRAM-SHA-512")
    assert str(error) == (
        "SASL authentication failed for user 'backup' at 127.0.0.1:19094: Authentication failed during "
        "authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512"
    )
    assert not is_retryable(error)
    assert "hunter2" not in str(error)


def test_tls_failure_is_raised_naming_the_broker() -> None:
    with pytest.raises(KafkaTlsError) as caught:
        ClientErrors(SASL_CONFIG)(KafkaError(KafkaError._SSL, TLS_FAILURE))
    assert caught.value.broker == "broker-1.example.com:9093"
    assert str(caught.value).startswith("TLS handshake with broker-1.example.com:9093 failed: error:0A000086")
    assert "(after" not in str(caught.value)
    assert not is_retryable(caught.value)


def test_connection_errors_are_remembered_not_raised() -> None:
    errors = ClientErrors(SASL_CONFIG)
    refused = "127.0.0.1:19094/bootstrap: Connect to ipv4#127.0.0.1:19094 failed: Connection refused"
    errors(KafkaError(KafkaError._TRANSPORT, refused))
    errors(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
    assert errors.last_connection_error == refused
    config = {**SASL_CONFIG, "error_cb": errors}
    failure = kafka_failure("metadata request", config, KafkaException(KafkaError(KafkaError._TRANSPORT)))
    assert isinstance(failure, BrokerUnavailableError) and is_retryable(failure)
    assert "unreachable" in str(failure) and "Connection refused" in str(failure)


@pytest.mark.parametrize(
    "code",
    [
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    ],
)
def test_authorization_failures_are_not_retried(code: int) -> None:
    failure = kafka_failure("describe configs", SASL_CONFIG, KafkaException(KafkaError(code)))
    assert isinstance(failure, KafkaAuthorizationError)
    assert failure.operation == "describe configs" and failure.principal == "user 'backup'"
    assert failure.code == KafkaError(code).name()
    assert "not authorized" in str(failure) and not is_retryable(failure)


def test_other_errors_keep_their_classification() -> None:
    failure = kafka_failure(
        "list offsets", SASL_CONFIG, KafkaException(KafkaError(KafkaError.NOT_COORDINATOR))
    )
    assert isinstance(failure, KafkaOperationError) and failure.retryable


def _record(text: str, client: str = "rdkafka#consumer-1") -> logging.LogRecord:
    return logging.LogRecord(
        "kbackup.librdkafka", logging.WARNING, __file__, 1, "%s [%s] %s", ("FAIL", client, text), None
    )


def test_duplicate_lines_are_dropped_within_the_window_and_counted(monkeypatch: Any) -> None:
    now = [1000.0]
    monkeypatch.setattr("tasks.services.kafka.clients.time.monotonic", lambda: now[0])
    duplicates = DuplicateFilter(window_s=30)
    refused = "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused (after {}ms in state CONNECT)"
    assert duplicates.filter(_record(refused.format(0)))
    # The same complaint from another client, with another timing: still a repeat.
    passed = [duplicates.filter(_record(refused.format(i), f"rdkafka#producer-{i}")) for i in range(46)]
    assert not any(passed) and duplicates.dropped == 46
    assert duplicates.filter(_record("something else"))
    now[0] += 31
    again = _record(refused.format(3))
    assert duplicates.filter(again)
    assert again.getMessage().endswith("(46 more like it in the previous 30 s suppressed)")


def test_librdkafka_lines_go_through_python_logging_at_most_as_warnings(caplog: Any) -> None:
    with caplog.at_level(logging.DEBUG, logger="kbackup.librdkafka"):
        LIBRDKAFKA_LOG.log(
            logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#producer-9", "a unique complaint 7f3a"
        )
    [record] = [r for r in caplog.records if "7f3a" in r.getMessage()]
    assert record.name == "kbackup.librdkafka" and record.levelno == logging.WARNING


def test_settings_keep_the_sasl_password_secret(monkeypatch: Any, tmp_path: Any) -> None:
    for name in list(os.environ):
        if name.startswith("KBACKUP_KAFKA_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("KBACKUP_KAFKA_SASL_PASSWORD=from-dotenv-secret\n")
    monkeypatch.setenv("KBACKUP_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19094")
    monkeypatch.setenv("KBACKUP_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KBACKUP_KAFKA_SASL_USERNAME", "backup")
    monkeypatch.setenv("KBACKUP_KAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM", "https")
    settings = KafkaSettings()
    assert "from-dotenv-secret" not in repr(settings) and "from-dotenv-secret" not in str(settings.redacted())
    config = client_config(settings)
    assert config["sasl.password"] == "from-dotenv-secret"  # read from .env, handed to librdkafka
    assert config["security.protocol"] == "SASL_SSL" and config["sasl.username"] == "backup"
    assert config["ssl.endpoint.identification.algorithm"] == "https"
    assert isinstance(config["error_cb"], ClientErrors) and config["logger"] is LIBRDKAFKA_LOG
    assert set(client_callbacks(config)) == {"error_cb", "logger"}
