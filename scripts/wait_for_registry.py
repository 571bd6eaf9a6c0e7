"""Wait until the stack's schema registry answers its Confluent-compatible API (GET subjects).

Reads KBACKUP_SCHEMA_REGISTRY_URL from the `export NAME=value` lines scripts/stack-up.sh wrote;
on failure prints where the registry's log is and its last lines, and exits 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.request
from pathlib import Path


def registry_url(env: Path) -> str:
    for line in env.read_text().splitlines():
        if line.startswith("export KBACKUP_SCHEMA_REGISTRY_URL="):
            return line.split("=", 1)[1]
    raise SystemExit(f"stack: no KBACKUP_SCHEMA_REGISTRY_URL in {env}")


def ready(url: str) -> str | None:
    try:
        with urllib.request.urlopen(f"{url}/subjects", timeout=2) as response:
            response.read()
    except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
        return str(exc)
    return None


def alive(pid: int | None) -> bool:
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--env", type=Path, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--pid", type=int, help="the registry's process: its death fails at once")
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args()
    url = registry_url(args.env)
    deadline = time.monotonic() + args.timeout
    error = ready(url)
    while error is not None and time.monotonic() < deadline and alive(args.pid):
        time.sleep(0.5)
        error = ready(url)
    if error is None:
        print("stack: schema registry answers")
        return 0
    tail = args.log.read_text(errors="replace").splitlines()[-20:] if args.log.exists() else []
    if not alive(args.pid):
        print(f"stack: schema registry (pid {args.pid}) exited: {error}", file=sys.stderr)
    else:
        print(f"stack: schema registry did not answer within {args.timeout:.0f} s: {error}", file=sys.stderr)
    print(f"stack: its log is {args.log}; last lines:", *tail, sep="\n  ", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
