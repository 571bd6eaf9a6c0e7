"""The documents a newcomer reads hold what they say: README.md stays short, every relative link of
README.md, ARCHITECTURE.md, docs/ and bench/README.md reaches an existing file (and heading), the
`kbackup` command lines they show use real subcommands and flags (parsed by the CLI's own argparse
parser) with KCQL the parser accepts, and the `make` targets they name exist. The quickstart's
commands themselves are run against the stack by tests/e2e/test_readme_quickstart.py."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from kbackup.cli import build_parser
from kcql import KcqlError, parse_backup, parse_restore
from kcql.selection import restore_selection
from tests.support.docs import (
    DOCUMENTS,
    README,
    REPO,
    anchors,
    code_blocks,
    kbackup_commands,
    relative_links,
    section,
    shell_commands,
)

MAX_README_LINES = 200
QUICKSTART = "Quickstart"
PLACEHOLDERS = ("...", "…")


def _name(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def _parse_cli(argv: list[str]) -> object:
    """The CLI's namespace for `kbackup ARGV`, or a failure saying what argparse refused."""
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            return build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"kbackup {' '.join(argv)!r} is not a valid command line:\n{errors.getvalue()}")


def _check_kcql(argv: list[str]) -> None:
    """The `--kcql` text of a backup or a restore parses, unless it is a placeholder."""
    args = _parse_cli(argv)
    text = getattr(args, "kcql", None)
    if not text or any(p in text for p in PLACEHOLDERS):
        return
    if argv[0] == "backup":
        parse_backup(text)
    elif argv[0] == "restore":
        restore_selection(text)


def test_the_readme_is_at_most_200_lines() -> None:
    lines = README.read_text().count("\n")
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; move detail into docs/"


@pytest.mark.parametrize("document", DOCUMENTS, ids=_name)
def test_every_relative_link_resolves(document: Path) -> None:
    broken = []
    for target in relative_links(document.read_text()):
        path_part, _, fragment = target.partition("#")
        path = (document.parent / path_part).resolve() if path_part else document
        if not path.exists():
            broken.append(f"{target}: no file {path}")
        elif fragment and path.suffix == ".md" and fragment not in anchors(path.read_text()):
            broken.append(f"{target}: no heading #{fragment} in {_name(path)}")
    assert not broken, f"{_name(document)}:\n" + "\n".join(broken)


def test_the_documents_link_to_each_other() -> None:
    """README.md leads to every other document; every document is reachable from it."""
    linked = {
        (README.parent / target.partition("#")[0]).resolve()
        for target in relative_links(README.read_text())
        if target.partition("#")[0]
    }
    missing = [_name(d) for d in DOCUMENTS if d != README and d.resolve() not in linked]
    assert not missing, f"README.md does not link to {missing}"


def test_the_quickstart_backs_up_lists_verifies_and_restores_with_real_commands() -> None:
    quickstart = section(README.read_text(), QUICKSTART)
    commands = kbackup_commands(quickstart)
    assert [argv[0] for argv in commands] == ["backup", "ls", "verify", "restore"]
    for argv in commands:
        _check_kcql(argv)
        assert not any(p in " ".join(argv) for p in PLACEHOLDERS), f"a placeholder in kbackup {argv}"
    assert "make demo" in quickstart and "make serve" in quickstart
    assert re.search(r"http://127\.0\.0\.1:14200", quickstart), (
        "the quickstart names the Prefect UI's address"
    )


@pytest.mark.parametrize("document", DOCUMENTS, ids=_name)
def test_every_documented_kbackup_command_is_a_real_one(document: Path) -> None:
    for argv in kbackup_commands(document.read_text()):
        _check_kcql(argv)


@pytest.mark.parametrize("document", DOCUMENTS, ids=_name)
def test_every_kcql_example_parses(document: Path) -> None:
    for block in code_blocks(document.read_text(), "sql"):
        try:
            parse_backup(block)
        except KcqlError as as_backup:
            try:
                parse_restore(block)
            except KcqlError as as_restore:
                pytest.fail(
                    f"{_name(document)}: neither a backup ({as_backup}) nor a restore ({as_restore}):\n{block}"
                )


def _make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z-]*):", (REPO / "Makefile").read_text(), re.M))


def _named_targets(text: str) -> set[str]:
    """The targets of `make …` in inline code and of the `make` commands in shell blocks."""
    shell = [*re.findall(r"`(make [^`]*)`", text), *code_blocks(text, "bash")]
    return {
        target
        for snippet in shell
        for argv in shell_commands(snippet)
        if argv[0] == "make"
        for target in argv[1:]
        if "=" not in target and not target.startswith("-")
    }


@pytest.mark.parametrize("document", DOCUMENTS, ids=_name)
def test_every_make_target_named_exists(document: Path) -> None:
    named = _named_targets(document.read_text())
    assert named <= _make_targets(), f"{_name(document)} names {sorted(named - _make_targets())}"


def test_the_two_commands_and_what_ci_runs() -> None:
    text = section(README.read_text(), "Two commands")
    [block] = code_blocks(text, "bash")
    assert [line.split("#")[0].strip() for line in block.splitlines()] == ["make demo", "make test"]
    ci = (REPO / ".ci" / "run").read_text()
    assert "make lint" in ci and "make test" in ci and ".ci/run" in text
