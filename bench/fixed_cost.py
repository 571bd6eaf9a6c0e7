"""The fixed cost of a small backup: what `kbackup backup` of 1,000 records pays beyond its export.

    python bench/fixed_cost.py [--records 1000] [--runs 5]

Each backup is the installed `kbackup backup` script in its own process, under a new prefix of one
bucket (a chain of its own: a full backup; a user's bucket exists already, and a new bucket costs
SeaweedFS a new volume on its first write, 0.2 s counted against the lock), with and without a
configured Prefect API: without one, kbackup starts its temporary API (this benchmark
gives it a PREFECT_HOME of its own, whose first run creates the database: reported apart); with
one, the API is a `prefect server start` this benchmark starts (and stops) in another temporary
PREFECT_HOME. The export's seconds come from the manifest (each partition's `seconds`, divided by
the partitions exported at once); a backup of an empty topic (same partitions, nothing to export)
is measured too. Every run is checked: its manifest must hold every record of the topic.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    PARTITIONS,
    VALUE_SIZE,
    bench_topic_name,
    ensure_topic,
    machine,
    measured_backup,
    scratch_bucket,
    write_section,
)

CONCURRENCY = 4  # kbackup backup's default --concurrency


def _kbackup() -> list[str]:
    """The installed script next to this interpreter, else the module."""
    script = Path(sys.executable).with_name("kbackup")
    return [str(script)] if script.exists() else [sys.executable, "-m", "kbackup.cli"]


def _environment(prefect_home: Path, api_url: str | None) -> dict[str, str]:
    """This process's environment as a user's shell would have it: no Prefect settings but a
    PREFECT_HOME of the benchmark's own, and PREFECT_API_URL when an API is configured."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and k != "PYTHONPATH"}
    env["PREFECT_HOME"] = str(prefect_home)
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def prefect_server(home: Path) -> Iterator[str]:
    """`prefect server start` on a free port in `home`; yields its API URL, stops it afterwards."""
    port = _free_port()
    env = _environment(home, None) | {
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
    }
    log = (home / "server.log").open("w")
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("prefect")),
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 180
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"prefect server start exited: see {home / 'server.log'}")
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                if response.status == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("prefect server start did not answer within 180 s")
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def _backup(store: Any, bucket: str, topic: str, env: dict[str, str], records: int) -> tuple[float, float]:
    """One backup in its own process under a new prefix of `bucket`: (wall seconds, export
    seconds). Raises unless its manifest holds all `records` records of the topic."""
    prefix = f"run-{uuid.uuid4().hex[:8]}"
    wall, _, manifest = measured_backup(store, _kbackup(), bucket, prefix, topic, "PARQUET", records, env=env)
    parallel = min(CONCURRENCY, len(manifest.partitions)) or 1
    return wall, sum(p.seconds for p in manifest.partitions) / parallel


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5, help="backups per row (the table shows medians)")
    parser.add_argument("--no-readme", action="store_true", help="print the table only")
    args = parser.parse_args()
    from tasks.services.object_store import S3Store

    store = S3Store.from_settings()
    topic = bench_topic_name(args.records, VALUE_SIZE)
    ensure_topic(topic, args.records, VALUE_SIZE)
    empty = bench_topic_name(0, VALUE_SIZE)
    ensure_topic(empty, 0, VALUE_SIZE)
    rows = []
    with scratch_bucket(store, "bench-fixed") as bucket:
        # an object first: the bucket's storage exists before the first measured run
        store.put(bucket, "bench-fixed-cost", b"")
        with tempfile.TemporaryDirectory(prefix="bench-fixed-") as work:
            temporary_home, server_home = Path(work, "temporary-api"), Path(work, "server")
            temporary_home.mkdir()
            server_home.mkdir()
            # The first run in a new PREFECT_HOME creates the temporary API's database (migrations).
            wall, export = _backup(store, bucket, topic, _environment(temporary_home, None), args.records)
            rows.append(
                (
                    "none (temporary API), first run in a new PREFECT_HOME",
                    f"{args.records:,}",
                    1,
                    wall,
                    export,
                )
            )
            with prefect_server(server_home) as api_url:
                for label, api in (
                    ("none (temporary API)", None),
                    ("configured (`prefect server start`)", api_url),
                ):
                    env = _environment(temporary_home if api is None else server_home, api)
                    for data, records, name in (
                        (f"{args.records:,}", args.records, topic),
                        ("empty topic", 0, empty),
                    ):
                        runs = [_backup(store, bucket, name, env, records) for _ in range(args.runs)]
                        wall = statistics.median(w for w, _ in runs)
                        export = statistics.median(e for _, e in runs)
                        rows.append((label, data, args.runs, wall, export))
    table = [
        "| Prefect API | records | runs | wall s (median) | export s | fixed s (wall − export) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    table += [
        f"| {label} | {data} | {runs} | {wall:.2f} | {export:.2f} | {wall - export:.2f} |"
        for label, data, runs, wall, export in rows
    ]
    body = (
        f"Machine: {machine()}; {PARTITIONS} partitions of {VALUE_SIZE} B records, PARQUET envelope, the "
        f"installed `kbackup backup` script with its defaults (verification `sampled`, concurrency {CONCURRENCY}). "
        "Each run backs up under a new prefix of one bucket. Wall time is the whole process, from exec to exit "
        "(its temporary API's start included; its stop is not waited for); "
        "export is the manifest's partition seconds divided by the partitions exported at once. "
        "*Fixed cost of a run*, below, says where these seconds go.\n\n" + "\n".join(table)
    )
    if not args.no_readme:
        write_section("Fixed cost of a small backup", body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
