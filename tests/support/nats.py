"""A nats-server with JetStream for the tests: started by the tests themselves (never a system
service) on free ports, storing its streams in a temporary directory, stopped at the end of the run.

    def test_x(nats_server):                     # the session fixture (registered in tests/conftest.py)
        stream = nats_server.stream_settings()   # a stream and subject of this test's own

`make test` installs nats-server (Debian) when it is missing (scripts/ensure-nats.sh)."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.reaper import reap_when_gone
from relay.devstack import free_port
from relay.feeds.jetstream import StreamSettings

_names = itertools.count(1)


class NatsServer:
    def __init__(self, store_dir: Path, port: int | None = None, monitor_port: int | None = None) -> None:
        self.store_dir = store_dir
        self.port = port or free_port()
        self.monitor_port = monitor_port or free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = store_dir / "nats-server.log"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> "NatsServer":
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        if not os.path.exists(binary):
            pytest.fail("nats-server is not installed: run `make test` (it installs it) or apt-get install nats-server")
        self.store_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [binary, "-js", "-sd", str(self.store_dir / "jetstream"), "-a", "127.0.0.1", "-p", str(self.port),
                 "-m", str(self.monitor_port)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        # Its own session: stopped by the watchdog if the run is killed (and only if that pid is still it).
        reap_when_gone([["sh", "-c", f"grep -qa -- {self.store_dir} /proc/{self.proc.pid}/cmdline && kill {self.proc.pid}"]])
        deadline = time.monotonic() + timeout
        health = f"http://127.0.0.1:{self.monitor_port}/healthz?js-enabled-only=true"
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(health, timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"nats-server did not become healthy in {timeout}s: {self.log_tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stream_settings(self, name: str | None = None) -> StreamSettings:
        """A stream and subject prefix no other test uses (the server is shared by the whole run)."""
        name = name or f"T{os.getpid()}_{next(_names)}"
        return StreamSettings((self.url,), stream=f"FEEDS_{name}", subject=f"test.{name.lower()}")


@contextmanager
def running_nats() -> Iterator[NatsServer]:
    with tempfile.TemporaryDirectory(prefix="tessera-nats-") as tmp:
        server = NatsServer(Path(tmp)).start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    """One nats-server -js for the whole run, in a temporary directory, on free ports."""
    with running_nats() as server:
        yield server
