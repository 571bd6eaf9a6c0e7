"""A stack of our own for fault tests: a second Kafka broker, SeaweedFS server and schema registry
started by the project's scripts/stack-up.sh in a temporary stack folder on free ports, so that a
test can kill, freeze and restart them (by the pids in its `pids/` folder) without disturbing the
shared stack the other tests use. Stopped by scripts/stack-down.sh."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PORT_VARIABLES = (
    "KBACKUP_STACK_KAFKA_PORT",
    "KBACKUP_STACK_CONTROLLER_PORT",
    "KBACKUP_STACK_SASL_PORT",
    "KBACKUP_STACK_S3_PORT",
    "KBACKUP_STACK_WEED_MASTER_PORT",
    "KBACKUP_STACK_WEED_VOLUME_PORT",
    "KBACKUP_STACK_WEED_FILER_PORT",
    "KBACKUP_STACK_REGISTRY_PORT",
    "KBACKUP_STACK_REGISTRY_MANAGEMENT_PORT",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line.startswith("export ") and "=" in line:
            name, value = line[len("export ") :].split("=", 1)
            values[name] = value
    return values


@dataclass
class OwnStack:
    """A running Kafka + SeaweedFS (+ schema registry) of this test session's own."""

    stack_dir: Path
    script_env: dict[str, str]
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def start(cls, stack_dir: Path) -> OwnStack:
        # SeaweedFS derives its gRPC ports from the HTTP ports (+10000): keep those below 55535.
        # Each port and its +10000 must differ from every other's: Kafka's controller once got
        # the port SeaweedFS's master then took for gRPC, and died with "Address already in use".
        ports: dict[str, str] = {}
        taken: set[int] = set()
        for name in PORT_VARIABLES:
            port = _port_below(55_000, taken)
            ports[name] = str(port)
            taken |= {port, port + 10_000}
        script_env = {**os.environ, "KBACKUP_STACK_DIR": str(stack_dir), **ports}
        stack = cls(stack_dir=stack_dir, script_env=script_env)
        try:
            stack.up()
        except BaseException:
            stack.down()  # what did start must not outlive the failed start
            raise
        return stack

    def up(self) -> None:
        """Start whatever is not running (stack-up.sh is idempotent) and wait until both answer."""
        subprocess.run(
            [str(REPO / "scripts" / "stack-up.sh")],
            env=self.script_env,
            check=True,
            timeout=300,
            capture_output=True,
        )
        self.env = read_env_file(self.stack_dir / "env")

    def down(self) -> None:
        subprocess.run(
            [str(REPO / "scripts" / "stack-down.sh")], env=self.script_env, timeout=300, capture_output=True
        )

    def pid(self, service: str) -> int:
        return int((self.stack_dir / "pids" / f"{service}.pid").read_text())

    def kill(self, service: str) -> None:
        """SIGKILL the service (`kafka`, `seaweedfs` or `registry`) and wait until it is gone."""
        pid = self.pid(service)
        os.kill(pid, signal.SIGCONT)  # a frozen process must be able to die
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        raise AssertionError(f"{service} (pid {pid}) did not die")

    def freeze(self, service: str) -> None:
        os.kill(self.pid(service), signal.SIGSTOP)

    def thaw(self, service: str) -> None:
        os.kill(self.pid(service), signal.SIGCONT)


def _port_below(limit: int, taken: Collection[int] = ()) -> int:
    """A free port below `limit` whose +10000 is free too, neither of them in `taken`."""
    while True:
        port = free_port()
        if port < limit and port not in taken and port + 10_000 not in taken and is_free(port + 10_000):
            return port


def is_free(port: int) -> bool:
    """Whether a socket can bind 127.0.0.1:`port` now."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
