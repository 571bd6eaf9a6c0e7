"""What every confluent-kafka client shares: its error callback and its logger.

`client_config()` is the configuration every Consumer, Producer and AdminClient is built from:
the connection settings (`core.connections.KafkaSettings`) plus `client_callbacks(config)`, so
every client gets both:

- `error_cb`: authentication, TLS and authorization failures are raised at once (from the
  poll, consume or flush that serves the callback) as `KafkaSecurityError`s naming the broker and
  the real cause; a retry cannot fix them. Connection errors are only remembered: librdkafka
  reconnects by itself, and the caller's timeout reports the brokers as unreachable, with the
  last error it saw (`last_connection_error`).
- `logger`: librdkafka's own lines go through the Python logger `kbackup.librdkafka` instead of
  straight to stderr, at most WARNING (what fails a run is raised, not logged), and a line that
  repeats within `DEDUP_WINDOW_S` is dropped and counted (`DuplicateFilter`).

confluent-kafka serves both callbacks from the thread that calls poll(), consume() or flush();
an AdminClient only from admin.poll() (see tasks.services.kafka.admin).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, cast

from confluent_kafka import KafkaError
from pydantic import ValidationError

from core.connections import CredentialsBlockError, KafkaSettings
from tasks.services.errors import (
    KafkaAuthenticationError,
    KafkaAuthorizationError,
    KafkaSecurityError,
    KafkaTlsError,
)

LOGGER_NAME = "kbackup.librdkafka"
DEDUP_WINDOW_S = 30.0

AUTHENTICATION_CODES = frozenset(
    {
        KafkaError._AUTHENTICATION,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError.UNSUPPORTED_SASL_MECHANISM,
        KafkaError.ILLEGAL_SASL_STATE,
    }
)
TLS_CODES = frozenset({KafkaError._SSL})
AUTHORIZATION_CODES = frozenset(
    {
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        KafkaError.DELEGATION_TOKEN_AUTHORIZATION_FAILED,
    }
)

# "sasl_ssl://127.0.0.1:19094/bootstrap: SASL authentication error: <why> (after 312ms in state AUTH_REQ)"
_BROKER_PREFIX = re.compile(r"^(?:[a-z_]+://)?(?P<broker>[^\s/]+)/[^\s:]*: ")
_STATE_SUFFIX = re.compile(r"\s*\(after \d+ms in state [A-Z_]+(?:, \d+ identical error\(s\) suppressed)?\)$")
_REASON_PREFIXES = ("SASL authentication error: ", "SSL handshake failed: ")


def _broker_and_reason(text: str, fallback_broker: str) -> tuple[str, str]:
    """The broker address and the bare reason in one of librdkafka's connection error strings."""
    match = _BROKER_PREFIX.match(text)
    broker = match.group("broker") if match else fallback_broker
    reason = _STATE_SUFFIX.sub("", text[match.end() :] if match else text)
    for prefix in _REASON_PREFIXES:
        reason = reason.removeprefix(prefix)
    return broker, reason


def principal(config: dict[str, Any]) -> str:
    """Who the cluster sees: the SASL user, or (without SASL) whatever TLS or the listener says."""
    username = config.get("sasl.username")
    return f"user {username!r}" if username else "this client"


def security_error(error: KafkaError, config: dict[str, Any], operation: str) -> KafkaSecurityError | None:
    """The non-retryable error a KafkaError stands for, or None when it is not about security."""
    code = error.code()
    bootstrap = str(config.get("bootstrap.servers"))
    if code in AUTHENTICATION_CODES:
        broker, reason = _broker_and_reason(error.str(), bootstrap)
        return KafkaAuthenticationError(
            broker,
            config.get("sasl.username"),
            config.get("sasl.mechanisms") or config.get("sasl.mechanism"),
            reason,
        )
    if code in TLS_CODES:
        broker, reason = _broker_and_reason(error.str(), bootstrap)
        return KafkaTlsError(broker, reason)
    if code in AUTHORIZATION_CODES:
        return KafkaAuthorizationError(operation, principal(config), error.name(), error.str())
    return None


class ClientErrors:
    """A client's `error_cb`: raises what a retry cannot fix, remembers the last connection error."""

    def __init__(self, config: dict[str, Any]) -> None:
        self._context: dict[str, Any] = {
            key: config[key]
            for key in ("bootstrap.servers", "sasl.username", "sasl.mechanisms", "sasl.mechanism")
            if key in config
        }
        self.last_connection_error: str | None = None

    def __call__(self, error: KafkaError) -> None:
        failure = security_error(error, self._context, "connection")
        if failure is not None:
            raise failure
        if error.code() != KafkaError._ALL_BROKERS_DOWN:  # says less than the error before it
            self.last_connection_error = error.str()


def last_connection_error(config: dict[str, Any]) -> str | None:
    """The last connection error the clients built from `config` reported, if any."""
    errors = config.get("error_cb")
    return errors.last_connection_error if isinstance(errors, ClientErrors) else None


# --- logging -----------------------------------------------------------------------------------

# Parts of a librdkafka line that change between repeats of the same complaint.
_VOLATILE = re.compile(
    r"rdkafka#[a-z]+-\d+|\(after \d+ms in state [A-Z_]+[^)]*\)|\d+ identical error\(s\) suppressed"
)


@dataclass
class _Seen:
    first: float
    dropped: int = 0


class DuplicateFilter(logging.Filter):
    """Lets a line through once per `window_s`; repeats inside the window are dropped and counted,
    and the first one let through after it says how many were dropped. `dropped` counts them all."""

    def __init__(self, window_s: float = DEDUP_WINDOW_S) -> None:
        super().__init__()
        self.window_s = window_s
        self.dropped = 0
        self._seen: dict[tuple[int, str], _Seen] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        key = (record.levelno, _VOLATILE.sub("", message))
        now = time.monotonic()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen.first < self.window_s:
                seen.dropped += 1
                self.dropped += 1
                return False
            if len(self._seen) > 1000:
                self._seen = {k: s for k, s in self._seen.items() if now - s.first < self.window_s}
            self._seen[key] = _Seen(first=now)
        if seen is not None and seen.dropped:
            record.msg = (
                f"{message} ({seen.dropped} more like it in the previous {self.window_s:.0f} s suppressed)"
            )
            record.args = ()
        return True


class LibrdkafkaLog:
    """The `logger` confluent-kafka calls for each librdkafka line: `log(level, "%s [%s] %s",
    facility, client name, text)`. Passed on to `kbackup.librdkafka` at most at WARNING: librdkafka
    reports there what it retries itself; what fails a run is raised by `ClientErrors`."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    def log(self, level: int, msg: str, *args: Any) -> None:
        self.logger.log(min(level, logging.WARNING), msg, *args)


LOGGER = logging.getLogger(LOGGER_NAME)
DUPLICATES = DuplicateFilter()
LOGGER.addFilter(DUPLICATES)
LIBRDKAFKA_LOG = LibrdkafkaLog(LOGGER)


def client_callbacks(config: dict[str, Any]) -> dict[str, Any]:
    """The `error_cb` and `logger` settings for clients built from `config`."""
    return {"error_cb": ClientErrors(config), "logger": LIBRDKAFKA_LOG}


def client_config(settings: KafkaSettings | None = None) -> dict[str, Any]:
    """librdkafka configuration for a client: the connection settings (from the environment unless
    given), with the Secret block `settings.password_block` names loaded over them (from the
    Prefect API this process is configured with), plus the error callback and the logger every
    client shares: authentication, authorization and TLS failures are raised at once,
    librdkafka's lines go through Python logging."""
    settings = settings or KafkaSettings()
    config = settings.librdkafka_config()
    if settings.password_block:
        config.update(settings_from_secret(settings.password_block, load_secret(settings.password_block)))
    return {**config, **client_callbacks(config)}


def load_secret(name: str) -> Any:
    """The value of the Prefect Secret block `name`, or CredentialsBlockError."""
    from prefect.blocks.system import Secret

    try:
        block = cast(Secret[Any], Secret.load(name, _sync=True))  # type: ignore[call-arg]  # async_dispatch's flag
    except ValidationError:  # its message would quote the values
        raise CredentialsBlockError("Secret", name, "its values are not valid for this block type") from None
    except ValueError as exc:  # Prefect: "Unable to find block document named ..."
        raise CredentialsBlockError("Secret", name, f"not found ({exc})") from None
    return block.get()


def settings_from_secret(name: str, value: Any) -> dict[str, Any]:
    """librdkafka settings from a Secret block's value: a string is the SASL password; a JSON
    object is librdkafka settings as they are (e.g. `sasl.username` and `sasl.password`)."""
    if isinstance(value, str):
        return {"sasl.password": value}
    if isinstance(value, dict):
        return {str(key): item for key, item in value.items()}
    raise CredentialsBlockError(
        "Secret", name, "its value must be a string or a JSON object of librdkafka settings"
    )
