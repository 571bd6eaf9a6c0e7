"""Which package may import which, checked on the source: every `import` and `from ... import`
of every module, including the ones inside functions.

- Nothing below the command line imports it: tasks/, flows/, layout/, kcql/, formats/ and core/
  never import kbackup/.
- kcql/, formats/ and core/ are pure: no Prefect, boto3/botocore or confluent-kafka.
- core/ is the bottom layer: it imports none of the project's other packages.
- boto3, botocore and their stubs are imported by one module only: the S3 object store
  (tasks/services/object_store/s3.py); everything else goes through the ObjectStore interface.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BELOW_CLI = ("tasks", "flows", "layout", "kcql", "formats", "core")
PURE = ("kcql", "formats", "core")
SERVICE_CLIENTS = ("prefect", "boto3", "botocore", "confluent_kafka")
PROJECT = ("kbackup", "tasks", "flows", "layout", "kcql", "formats", "core")
BOTO = ("boto3", "botocore", "mypy_boto3_s3")
S3_STORE = "tasks/services/object_store/s3.py"


def imported_modules(path: Path) -> Iterator[tuple[int, str]]:
    """(line, dotted module name) of every import in the file; relative imports resolved."""
    return imports_in(path.read_text(), path.relative_to(ROOT).parent.parts)


def imports_in(source: str, package: tuple[str, ...]) -> Iterator[tuple[int, str]]:
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else ()
            module = ".".join((*base, node.module or ""))
            yield node.lineno, module.strip(".")


def sources(packages: tuple[str, ...]) -> list[Path]:
    return sorted(path for package in packages for path in (ROOT / package).rglob("*.py"))


def top(module: str) -> str:
    return module.split(".", 1)[0]


def test_the_walk_sees_every_kind_of_import() -> None:
    source = """
import prefect.task_runners, os
from confluent_kafka import Producer
from . import sibling
from ..core.connections import S3Settings

def lazy():
    from kbackup.settings import KafkaSettings
    if True:
        import boto3
"""
    assert [name for _, name in sorted(imports_in(source, ("tasks", "sub")))] == [
        "os",
        "prefect.task_runners",
        "confluent_kafka",
        "tasks.sub",
        "tasks.core.connections",
        "kbackup.settings",
        "boto3",
    ]


@pytest.mark.parametrize("path", sources(BELOW_CLI), ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_below_the_cli_imports_it(path: Path) -> None:
    relative = path.relative_to(ROOT).as_posix()
    found = [
        f"{relative}:{line} imports {name}" for line, name in imported_modules(path) if top(name) == "kbackup"
    ]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("path", sources(PURE), ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_packages_import_no_service_client(path: Path) -> None:
    relative = path.relative_to(ROOT).as_posix()
    found = [
        f"{relative}:{line} imports {name}"
        for line, name in imported_modules(path)
        if top(name) in SERVICE_CLIENTS
    ]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("path", sources(("core",)), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_imports_no_other_layer(path: Path) -> None:
    relative = path.relative_to(ROOT).as_posix()
    found = [
        f"{relative}:{line} imports {name}"
        for line, name in imported_modules(path)
        if top(name) in PROJECT and top(name) != "core"
    ]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("path", sources(PROJECT), ids=lambda p: str(p.relative_to(ROOT)))
def test_only_the_s3_store_imports_boto3(path: Path) -> None:
    relative = path.relative_to(ROOT).as_posix()
    found = [
        f"{relative}:{line} imports {name}"
        for line, name in imported_modules(path)
        if top(name) in BOTO and relative != S3_STORE
    ]
    assert not found, "\n".join(found)


def test_the_s3_store_is_where_the_layering_says() -> None:
    assert any(top(name) == "boto3" for _, name in imported_modules(ROOT / S3_STORE))
