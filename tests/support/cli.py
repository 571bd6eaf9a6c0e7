"""Run `kbackup` as a user does: the console script installed in a virtualenv, from a working
directory outside the repository, with nothing of the checkout on the import path."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

# The script the test run's own virtualenv installed (`pip install -e .` puts it beside python).
INSTALLED_KBACKUP = Path(sys.executable).with_name("kbackup")

# Lines that must never appear in the output of a successful run.
_ALARMING = re.compile(r"^.*(\bERROR\b|Traceback \(most recent call last\)).*$", re.MULTILINE)


def kbackup_command(*args: str, script: Path = INSTALLED_KBACKUP) -> list[str]:
    return [str(script), *args]


def user_environment(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test's environment as a user's shell would have it: no PYTHONPATH pointing into the
    checkout and none of the test session's Prefect settings, a PREFECT_HOME of its own under
    `home`, plus `extra` (e.g. PREFECT_API_URL)."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name != "PYTHONPATH" and not name.startswith("PREFECT_")
    }
    env["PREFECT_HOME"] = str(home / ".prefect")
    env.update(extra or {})
    return env


def run_kbackup(
    *args: str,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    script: Path = INSTALLED_KBACKUP,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """`kbackup ARGS` in `cwd` (a folder outside the repository), its output captured."""
    assert script.exists(), f"{script} is not installed"
    return subprocess.run(
        kbackup_command(*args, script=script),
        cwd=cwd,
        env=user_environment(cwd, env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def alarming_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """ERROR and traceback lines in a run's stdout and stderr."""
    return _ALARMING.findall(result.stdout) + _ALARMING.findall(result.stderr)


def assert_clean_success(result: subprocess.CompletedProcess[str]) -> None:
    """Exit 0 and not one ERROR or traceback line."""
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert not alarming_lines(result), f"{alarming_lines(result)}\n--- stderr\n{result.stderr}"


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def is_running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
