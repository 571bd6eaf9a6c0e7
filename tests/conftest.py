"""Shared fixtures.

Service fixtures are session-scoped and "use what is configured or start one": the environment
(KBACKUP_KAFKA_BOOTSTRAP_SERVERS + KBACKUP_S3_ENDPOINT_URL), else `.stack/env` when that stack
answers, else `scripts/stack-up.sh`. Unit tests request none of them and need no services.
Every test gets unique topic and bucket names.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.stack import read_env_file as _read_env_file

REPO = Path(__file__).resolve().parent.parent
STACK_ENV = REPO / ".stack" / "env"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = Path(str(item.fspath)).parent.name
        if tier in ("integration", "e2e"):
            item.add_marker(pytest.mark.integration)
        if tier == "e2e":
            item.add_marker(pytest.mark.e2e)


def _stack_answers(env: dict[str, str]) -> bool:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": env["KBACKUP_KAFKA_BOOTSTRAP_SERVERS"], "log_level": 0})
    try:
        return bool(admin.list_topics(timeout=3).brokers)
    except Exception:
        return False


@pytest.fixture(scope="session")
def stack_env() -> dict[str, str]:
    """The connection variables of a running stack, exported into os.environ."""
    names = ("KBACKUP_KAFKA_BOOTSTRAP_SERVERS", "KBACKUP_S3_ENDPOINT_URL")
    if all(os.environ.get(name) for name in names):
        env = {name: os.environ[name] for name in os.environ if name.startswith(("KBACKUP_", "AWS_"))}
    else:
        env = _read_env_file(STACK_ENV) if STACK_ENV.exists() else {}
        if not env or not _stack_answers(env):
            subprocess.run([str(REPO / "scripts" / "stack-up.sh")], check=True, cwd=REPO)
            env = _read_env_file(STACK_ENV)
    os.environ.update(env)
    return env


@pytest.fixture(scope="session")
def kafka_config(stack_env: dict[str, str]) -> dict[str, Any]:
    from tasks.services.kafka.clients import client_config

    return client_config()


@pytest.fixture(scope="session")
def admin(kafka_config: dict[str, Any]) -> Any:
    from confluent_kafka.admin import AdminClient

    return AdminClient(kafka_config)


@pytest.fixture(scope="session")
def s3(stack_env: dict[str, str]) -> Any:
    """A boto3 client of the stack's S3, for setting up buckets and objects and injecting faults."""
    from tasks.services.object_store.s3 import s3_client

    return s3_client()


@pytest.fixture(scope="session")
def store(s3: Any) -> Any:
    """The object store on that client (tasks.services.object_store.S3Store): what the code under
    test is given."""
    from tasks.services.object_store import S3Store

    return S3Store(s3)


def _slug(text: str, limit: int) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:limit].strip("-")


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """unique_name("orders") -> "orders-<test name>-<random>", valid as a topic and a bucket name."""

    def make(stem: str) -> str:
        return f"{_slug(stem, 12)}-{_slug(request.node.name, 24)}-{uuid.uuid4().hex[:8]}"

    return make


@pytest.fixture
def create_topic(admin: Any, unique_name: Callable[[str], str]) -> Iterator[Callable[..., str]]:
    """create_topic(stem, partitions=1, config={}) -> a fresh topic's name; deleted afterwards."""
    from tests.support.kafka import create_topic as create
    from tests.support.kafka import delete_topics

    created: list[str] = []

    def make(stem: str = "topic", partitions: int = 1, config: dict[str, str] | None = None) -> str:
        name = unique_name(stem)
        create(admin, name, partitions, config or {})
        created.append(name)
        return name

    yield make
    delete_topics(admin, created)


@pytest.fixture
def filled_topic(create_topic: Callable[..., str], kafka_config: dict[str, Any]) -> Callable[..., str]:
    """filled_topic(stem, partitions, messages) -> a fresh topic holding `messages` (dicts of
    Producer.produce keyword arguments, e.g. tests.support.kafka.numbered_messages); deleted afterwards."""
    from tests.support.kafka import produce

    def make(stem: str, partitions: int, messages: Iterable[dict[str, Any]]) -> str:
        name = create_topic(stem, partitions=partitions)
        produce(kafka_config, name, messages)
        return name

    return make


@pytest.fixture
def target_topic(admin: Any, unique_name: Callable[[str], str]) -> Iterator[Callable[..., str]]:
    """target_topic(stem="dst") -> a fresh name for a topic the code under test creates (a restore's
    target); deleted after the test, whether or not it was created."""
    from tests.support.kafka import delete_topics

    named: list[str] = []

    def make(stem: str = "dst") -> str:
        named.append(unique_name(stem))
        return named[-1]

    yield make
    delete_topics(admin, named)


@pytest.fixture
def bucket(s3: Any, unique_name: Callable[[str], str]) -> str:
    """A fresh, empty bucket for this test."""
    name = unique_name("bkt")
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A temporary Prefect API and PREFECT_HOME for the tests that run flows."""
    import tempfile

    from prefect.testing.utilities import prefect_test_harness

    with tempfile.TemporaryDirectory(prefix="kbackup-prefect-") as home:
        os.environ["PREFECT_HOME"] = home
        with prefect_test_harness(server_startup_timeout=120):
            yield


@pytest.fixture(scope="session")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A Kafka broker and SeaweedFS server of the session's own, for fault tests that kill or
    freeze them (see tests/support/stack.py); the shared stack is left alone."""
    from tests.support.stack import OwnStack

    stack = OwnStack.start(tmp_path_factory.mktemp("own-stack"))
    try:
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope="session")
def secure(own_stack: Any) -> Any:
    """The session's own stack with its secured listener (SASL_SSL, SCRAM users and ACLs) and the
    S3 identities of tests/support/secure.py, its bucket made."""
    from tests.support.secure import SecureStack

    stack = SecureStack(own_stack.env)
    stack.ensure_bucket()
    return stack
