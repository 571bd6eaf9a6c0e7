"""A second, empty schema registry for one test: the Apicurio Registry the stack runs (the same
cached install, found by scripts/install-registry.sh as scripts/stack-up.sh finds it), started with
in-memory storage on two free loopback ports, so that a restore can register schemas in a registry
that has never seen them. Stopped (terminate, a bounded wait, kill) however the test ends."""

from __future__ import annotations

import contextlib
import json
import random
import struct
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from confluent_kafka.schema_registry import RegisteredSchema, Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from tests.support.stack import is_free

REPO = Path(__file__).resolve().parents[2]

# Below the kernel's ephemeral range (32768-60999 by default), so that no client's outgoing
# connection takes a port between our check and the registry's bind; above the stack's defaults.
PORT_RANGE = (20_000, 32_768)


class RegistryDidNotStart(AssertionError):
    """The registry exited or did not answer in time; the message has the tail of its log."""

    def __init__(self, reason: str, log: Path) -> None:
        self.reason = reason
        self.log = log
        tail = log.read_text(errors="replace").splitlines()[-30:] if log.exists() else []
        super().__init__("\n  ".join([f"schema registry: {reason}; its log is {log}, last lines:", *tail]))


def registry_jar() -> Path:
    """The runner jar of the cached install (installed first when missing, as `make up` does)."""
    found = subprocess.run(
        [str(REPO / "scripts" / "install-registry.sh")], capture_output=True, text=True, timeout=600
    )
    assert found.returncode == 0 and found.stdout.strip(), (
        f"scripts/install-registry.sh failed (exit {found.returncode}):\n{found.stderr}"
    )
    return Path(found.stdout.strip().splitlines()[-1])


def free_ports(count: int, low: int = PORT_RANGE[0], high: int = PORT_RANGE[1]) -> list[int]:
    """`count` different ports in [low, high) that 127.0.0.1 can bind now."""
    ports: list[int] = []
    rng = random.Random()
    while len(ports) < count:
        port = rng.randrange(low, high)
        if port not in ports and is_free(port):
            ports.append(port)
    return ports


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/subjects", timeout=2) as response:
            response.read()
    except Exception:  # noqa: BLE001 - any failure means "not yet"
        return False
    return True


@contextlib.contextmanager
def fresh_registry(log_dir: Path, timeout: float = 120) -> Iterator[str]:
    """Start an empty Apicurio Registry, wait (at most `timeout` seconds) until its Confluent-
    compatible API answers, and yield that API's URL (…/apis/ccompat/v7). Its log is
    `log_dir/registry.log`."""
    jar = registry_jar()
    http_port, management_port = free_ports(2)
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / "registry.log"
    url = f"http://127.0.0.1:{http_port}/apis/ccompat/v7"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                "java",
                "-Xms64m",
                "-Xmx256m",
                "-XX:+UseSerialGC",
                "-Djava.awt.headless=true",
                "-Dquarkus.http.host=127.0.0.1",
                f"-Dquarkus.http.port={http_port}",
                "-Dquarkus.management.host=127.0.0.1",
                f"-Dquarkus.management.port={management_port}",
                "-jar",
                str(jar),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=log_dir,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout
        while not _answers(url):
            if process.poll() is not None:
                raise RegistryDidNotStart(f"exited with {process.returncode} before it answered", log)
            if time.monotonic() > deadline:
                raise RegistryDidNotStart(f"did not answer {url} within {timeout:.0f} s", log)
            time.sleep(0.5)
        yield url
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes], grace: float = 30) -> None:
    """SIGTERM (Quarkus shuts down cleanly), then SIGKILL when it is still there after `grace` s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(grace)


# --- Avro records in the Confluent wire format, through the real registry ----------------------


def register(
    client: SchemaRegistryClient, subject: str, schema: dict[str, Any], references: Sequence[Any] = ()
) -> RegisteredSchema:
    """Register an Avro schema (a dict) under `subject` and return it as registered (id, version)."""
    registered = Schema(json.dumps(schema), "AVRO", references=list(references))
    client.register_schema(subject, registered)
    return client.lookup_schema(subject, registered)


def serializer(client: SchemaRegistryClient, registered: RegisteredSchema) -> AvroSerializer:
    """An AvroSerializer writing with exactly this registered version (found by lookup, never
    registered again), references included: confluent-kafka parses a schema with references only
    when it is given as a Schema object that carries them, not as a string."""
    return AvroSerializer(client, registered.schema, conf={"auto.register.schemas": False})


def schema_id(data: bytes) -> int:
    """The schema id in a Confluent wire-format payload (magic byte 0, 4-byte big-endian id)."""
    assert len(data) >= 5 and data[0] == 0, f"not the Confluent wire format: {data[:8]!r}"
    return int(struct.unpack(">I", data[1:5])[0])


def decoded_records(messages: Sequence[Any], url: str) -> dict[int, list[tuple[Any, ...]]]:
    """Per partition, in offset order: (key, value, headers, timestamp type, timestamp) of each
    consumed message, key and value read by AvroDeserializer against the registry at `url`."""
    deserializer = AvroDeserializer(SchemaRegistryClient({"url": url}))
    result: dict[int, list[tuple[Any, ...]]] = {}
    for m in messages:
        key_context = SerializationContext(m.topic(), MessageField.KEY, m.headers())
        value_context = SerializationContext(m.topic(), MessageField.VALUE, m.headers())
        kind, timestamp = m.timestamp()
        result.setdefault(m.partition(), []).append(
            (
                deserializer(m.key(), key_context),
                deserializer(m.value(), value_context),
                m.headers() or [],
                kind,
                timestamp,
            )
        )
    return result
