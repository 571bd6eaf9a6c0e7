"""`make demo`: the main job end to end against the local stack (see README)."""

from __future__ import annotations

import sys


def main() -> int:
    from kbackup.demo_run import run_demo

    return run_demo()


if __name__ == "__main__":
    sys.exit(main())
