"""The Prefect API of a `kbackup` run when none is configured (no PREFECT_API_URL).

Prefect would start its own temporary server (`SubprocessASGIServer`) the first time a flow needs
an API, wait for it, and stop it at exit. `TemporaryApi` starts the same server — Prefect's API app
under uvicorn, in ephemeral mode, with the same database — with three differences:

- it is started before this process imports Prefect, so that the server's start (about 2.5 s of
  imports and app set-up, in its own process) overlaps the command's own imports and work, and is
  waited for only just before the flow starts (`wait_ready`);
- this module imports neither Prefect nor its server: importing `prefect.server.api.server` in the
  command's own process, only to reuse that class, cost 1–2 s of the run;
- the server process asks Linux for a parent-death signal: it gets SIGTERM the moment `kbackup`
  dies, however it dies (a SIGKILLed run leaves no server behind);
- it skips the block-type registration check (0.7 s of its start, measured alone) and `kbackup`
  does not wait for it to exit (0.2 s alone, 0.05-0.07 s of a run).

Its start (2.7-3.6 s measured alone on the two-core test machine: about 2 s of imports, 0.3 s
building the app) is what a run without an API waits for; its database is the one in
PREFECT_HOME, kept between runs (its migrations take 0.02-0.08 s once it exists).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

_PR_SET_PDEATHSIG = 1
# uvicorn's exit status when it cannot start, e.g. because the port was taken meanwhile.
_UVICORN_STARTUP_FAILURE = 3
_PORT_ATTEMPTS = 5
_DEFAULT_STARTUP_TIMEOUT_S = 120.0
_STOP_TIMEOUT_S = 5.0


def _die_with_parent() -> None:
    """preexec_fn: have Linux send this process SIGTERM when its parent exits (and take the
    signals kbackup blocks for its own handling)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _prefect_package_dir() -> Path:
    """Where the `prefect` package is installed, without importing it (uvicorn's --app-dir)."""
    import importlib.util

    spec = importlib.util.find_spec("prefect")
    if spec is None or spec.origin is None:
        raise RuntimeError("prefect is not installed")
    return Path(spec.origin).parent.parent


def api_maybe_configured(environ: dict[str, str] | None = None) -> bool:
    """A cheap guess, before Prefect is imported, whether a Prefect API is configured: the
    environment or the profiles file names one. A wrong guess only costs time — the command asks
    Prefect's own settings afterwards, and stops a server it started for nothing."""
    env = os.environ if environ is None else environ
    if env.get("PREFECT_API_URL"):
        return True
    home = Path(env.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    profiles = Path(env.get("PREFECT_PROFILES_PATH") or home / "profiles.toml").expanduser()
    try:
        return "PREFECT_API_URL" in profiles.read_text()
    except OSError:
        return False


class TemporaryApi:
    """Prefect's temporary API server, in a child process that dies with kbackup."""

    def __init__(self) -> None:
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.address}/api"

    def start(self) -> None:
        """Start the server process and return at once (see `wait_ready`); it is stopped at exit,
        after Prefect's own exit handlers have sent the run's last logs and events."""
        self.port = _free_port()
        self.process = self._run_uvicorn_command()
        atexit.register(self.stop)

    def _run_uvicorn_command(self) -> subprocess.Popen[bytes]:
        # The command and environment of SubprocessASGIServer._run_uvicorn_command (Prefect 3.9):
        # the API app without the UI, in ephemeral mode; plus the parent-death signal. Prefect's
        # settings reach the server the way they reach this process: the same environment, working
        # directory and profiles.
        return subprocess.Popen(
            args=[
                sys.executable,
                "-m",
                "uvicorn",
                "--app-dir",
                str(_prefect_package_dir()),
                "--factory",
                "prefect.server.api.server:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "error",
                "--lifespan",
                "on",
            ],
            env={
                # Block types are registered into the database by every other server start
                # (`prefect server start` included); this server's runs use no blocks. Skipping it
                # saves 0.7 s of the server's start (measured alone): the check whether it is
                # needed imports every installed Prefect collection (prefect-dask: dask and
                # distributed). An explicit setting still wins.
                "PREFECT_API_BLOCKS_REGISTER_ON_START": "false",
                "PREFECT_MEMOIZE_BLOCK_AUTO_REGISTRATION": "false",
                **os.environ,
                "PREFECT_UI_ENABLED": "0",
                "PREFECT__SERVER_EPHEMERAL": "1",
                "PREFECT__SERVER_FINAL": "1",
            },
            preexec_fn=_die_with_parent,
            # Its own session: a Ctrl-C in the terminal reaches kbackup, which stops its run and
            # then this server, not the server first.
            start_new_session=True,
        )

    def _healthy(self) -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            connection.request("GET", "/api/health")
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until the server answers its health check (PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        default 120 s); a server that could not bind its port is started again on another."""
        if timeout is None:
            timeout = float(
                os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", _DEFAULT_STARTUP_TIMEOUT_S)
            )
        deadline = time.monotonic() + timeout
        attempts = 1
        while True:
            assert self.process is not None, "start() first"
            status = self.process.poll()
            if status == _UVICORN_STARTUP_FAILURE and attempts < _PORT_ATTEMPTS:
                attempts += 1
                self.port = _free_port()
                self.process = self._run_uvicorn_command()
                continue
            if status is not None:
                self.process = None
                raise RuntimeError(
                    f"the temporary Prefect API server exited with status {status} while starting"
                )
            if self._healthy():
                return
            if time.monotonic() >= deadline:
                self.stop()
                raise RuntimeError(
                    f"the temporary Prefect API server did not answer at {self.address} within {timeout:.0f} s"
                )
            time.sleep(0.05)

    def stop(self, wait: bool = False) -> None:
        """Stop the server: SIGTERM, on which uvicorn ends its requests and Prefect's services write
        the events they hold. By default this returns at once (it is called last, at exit, once the
        run's logs and events were sent; the server finishes on its own, in its own session; waiting
        took 0.2 s). With `wait`, SIGKILL if it is not gone after
        5 s. Safe to call more than once."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        print(f"kbackup: stopping the temporary Prefect API on {self.address}", file=sys.stderr, flush=True)
        process.terminate()
        if not wait:
            return
        try:
            process.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
