"""Which package may import which, checked on the source: every `import` and `from ... import`
of every module, including the ones inside functions (ARCHITECTURE.md, "Packages").

- The packages are layers, lowest first: core → formats → kcql → layout → tasks → flows →
  kbackup. A module imports its own package and lower ones only: nothing below the command line
  imports kbackup/, nothing below flows/ imports flows/, nothing below tasks/ imports tasks/.
- core/, formats/, kcql/ and layout/ (with layout/restore/, the restore's model) are pure: no
  Prefect, boto3/botocore or confluent-kafka.
- The wings of tasks/: the backup wing (tasks/backup) and the restore wing (tasks/restore) do not
  import each other; the services (tasks/services) and the run-time glue (tasks/runtime) import
  no stage (backup, restore, lifecycle).
- boto3/botocore only in the S3 implementation of the object store.
- No import cycle anywhere: the graph of every module's imports has no loop.
- No module over 500 lines; a flow module (one that defines a @flow) 150 at most.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BELOW_CLI = ("tasks", "flows", "layout", "kcql", "formats", "core")
PURE = ("layout", "kcql", "formats", "core")
SERVICE_CLIENTS = ("prefect", "boto3", "botocore", "confluent_kafka", "mypy_boto3_s3")
PROJECT = ("kbackup", "tasks", "flows", "layout", "kcql", "formats", "core")
LAYERS = ("core", "formats", "kcql", "layout", "tasks", "flows", "kbackup")  # lowest first
STAGES = ("tasks.backup", "tasks.restore", "tasks.lifecycle")
# wing → the wings it must not import
WING_RULES = {
    "tasks.backup": ("tasks.restore",),
    "tasks.restore": ("tasks.backup",),
    "tasks.services": STAGES,
    "tasks.runtime": STAGES,
}
S3_CLIENTS = ("boto3", "botocore", "mypy_boto3_s3", "s3transfer")
S3_IMPLEMENTATION = "tasks/services/object_store/s3.py"
MAX_MODULE_LINES = 500
MAX_FLOW_LINES = 150


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


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def layer_violations(importer: str, imported: str) -> list[str]:
    """What is wrong with module `importer` importing `imported` (both dotted names)."""
    problems = []
    if (
        top(importer) in LAYERS
        and top(imported) in LAYERS
        and LAYERS.index(top(imported)) > LAYERS.index(top(importer))
    ):
        problems.append(f"{top(importer)}/ is below {top(imported)}/")
    for wing, forbidden in WING_RULES.items():
        if within(importer, wing):
            problems += [f"{wing} must not import {f}" for f in forbidden if within(imported, f)]
    return problems


def test_the_rules_refuse_what_they_should() -> None:
    assert layer_violations("layout.restore.plan", "tasks.services.errors") == ["layout/ is below tasks/"]
    assert layer_violations("formats.codec", "kcql.specs") == ["formats/ is below kcql/"]
    assert layer_violations("tasks.backup.verify", "tasks.restore.decode") == [
        "tasks.backup must not import tasks.restore"
    ]
    assert layer_violations("tasks.restore.decode", "tasks.backup.export") == [
        "tasks.restore must not import tasks.backup"
    ]
    assert layer_violations("tasks.services.locks", "tasks.lifecycle.prune") == [
        "tasks.services must not import tasks.lifecycle"
    ]
    assert layer_violations("tasks.restore.decode", "layout.restore.order") == []
    assert layer_violations("flows.restore", "tasks.restore.discover") == []
    assert layer_violations("kbackup.cli", "flows.backup") == []
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"a"}}) == [["a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("path", sources(PROJECT), ids=lambda p: str(p.relative_to(ROOT)))
def test_layers_and_wings(path: Path) -> None:
    relative = path.relative_to(ROOT).as_posix()
    importer = module_name(path)
    found = [
        f"{relative}:{line} imports {name}: {problem}"
        for line, name in imported_modules(path)
        for problem in layer_violations(importer, name)
    ]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("path", sources(PROJECT), ids=lambda p: str(p.relative_to(ROOT)))
def test_boto3_only_behind_the_object_store(path: Path) -> None:
    relative = path.relative_to(ROOT).as_posix()
    if relative == S3_IMPLEMENTATION:
        return
    found = [
        f"{relative}:{line} imports {name}"
        for line, name in imported_modules(path)
        if top(name) in S3_CLIENTS
    ]
    assert not found, "\n".join(found)


def import_graph() -> dict[str, set[str]]:
    """Module → the project's modules it imports: `from package import module` counts as the
    module, `from module import name` and `import module` as the module."""
    paths = {module_name(path): path for path in sources(PROJECT)}
    graph: dict[str, set[str]] = {name: set() for name in paths}
    for name, path in paths.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                graph[name] |= {a.name for a in node.names} & paths.keys()
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                submodules = {f"{node.module}.{a.name}" for a in node.names} & paths.keys()
                graph[name] |= submodules or ({node.module} & paths.keys())
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with a loop (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(cycles)


def test_no_import_cycle_anywhere() -> None:
    graph = import_graph()
    assert len(graph) > 100 and "tasks.restore.discover" in graph["flows.restore"]
    assert find_cycles(graph) == []


@pytest.mark.parametrize("path", sources(PROJECT), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_stay_small(path: Path) -> None:
    text = path.read_text()
    lines = len(text.splitlines())
    limit = MAX_FLOW_LINES if "@flow(" in text else MAX_MODULE_LINES  # a flow module only composes
    assert lines <= limit, f"{path.relative_to(ROOT)}: {lines} lines, more than {limit}"


def test_the_s3_store_is_where_the_layering_says() -> None:
    assert any(top(name) == "boto3" for _, name in imported_modules(ROOT / S3_IMPLEMENTATION))
