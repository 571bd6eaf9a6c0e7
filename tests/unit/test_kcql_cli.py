"""`kbackup kcql check`: JSON on success (exit 0), the caret message on error (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kbackup.cli import main
from tests.unit.test_kcql_seed import HOURLY, SALES


def test_check_prints_specs_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kcql", "check", SALES]) == 0
    [spec] = json.loads(capsys.readouterr().out)
    assert spec["kind"] == "backup" and spec["format"] == "AVRO"
    assert [f["path"] for f in spec["partition_by"]] == [["year"], ["product_category"], ["region"]]


def test_check_connector_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "hourly.properties"
    path.write_text(HOURLY)
    assert main(["kcql", "check", "--connector-config", str(path)]) == 0
    output = json.loads(capsys.readouterr().out)
    assert [t["type"] for t in output["transforms"]] == ["TimestampConverter", "InsertWallclock"]


def test_check_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kcql", "check", "--restore", "INSERT INTO t SELECT * FROM bkt STOREAS NOPE"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("KCQL error at line 1, column 41: expected a format name, found 'NOPE'")


def test_python_dash_m_runs_the_same_command_line(tmp_path: Path) -> None:
    """`python -m kbackup.cli` (what the benchmarks run) is the command line too, not a no-op."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "kbackup.cli", "kcql", "check", SALES],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    [spec] = json.loads(result.stdout)
    assert spec["kind"] == "backup" and spec["format"] == "AVRO"
