"""A PostgreSQL server of the test run's own: `initdb` + `pg_ctl` in a temporary directory, on a free
port (TCP on 127.0.0.1, its unix socket in that directory), stopped and deleted at the end. Never a
system service. PostgreSQL refuses to run as root: as root the server runs as the `postgres` system
user the Debian package creates (or `tessera-pg`, made here if that is missing) through `runuser`.

`scripts/ensure-postgres.sh` (run by `make test`) installs the binaries when they are missing.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from relay.ports import free_port
from tests.support.reaper import reap_when_gone

SUPERUSER = "tessera"


class PostgresMissing(RuntimeError):
    pass


def bin_dir() -> Path:
    """Where initdb and pg_ctl are: Debian's /usr/lib/postgresql/<version>/bin (newest), else PATH."""
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                      key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    if versions:
        return Path(versions[-1]).parent
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise PostgresMissing("PostgreSQL is not installed (no initdb): run scripts/ensure-postgres.sh, or "
                          "apt-get install postgresql")


def _run_as() -> list[str]:
    """The command prefix that runs the server binaries as a user PostgreSQL accepts."""
    if os.geteuid() != 0:
        return []
    for name in ("postgres", "tessera-pg"):
        try:
            pwd.getpwnam(name)
            return ["runuser", "-u", name, "--"]
        except KeyError:
            continue
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "tessera-pg"],
                   check=True, capture_output=True)
    return ["runuser", "-u", "tessera-pg", "--"]


def _free_port() -> int:
    return free_port()  # below the ephemeral range: see relay/ports.py


@dataclass
class PostgresServer:
    root: Path
    port: int
    _bin: Path
    _as: list[str]
    _names: itertools.count = field(default_factory=lambda: itertools.count(1))

    @classmethod
    def start(cls) -> "PostgresServer":
        binaries, run_as = bin_dir(), _run_as()
        root = Path(tempfile.mkdtemp(prefix="tessera-pg-"))
        if run_as:
            shutil.chown(root, user=run_as[2])
        server = cls(root, _free_port(), binaries, run_as)
        data = root / "data"
        server._run("initdb", "-D", str(data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-sync",
                    "--no-instructions")
        options = (f"-p {server.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300")
        server._run("pg_ctl", "-D", str(data), "-o", options, "-l", str(root / "server.log"), "-w", "-t", "60", "start")
        # pg_ctl daemonises the server: if this run is killed, the watchdog stops and deletes it.
        reap_when_gone([[*run_as, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                        ["rm", "-rf", str(root)]])
        return server

    def _run(self, tool: str, *args: str) -> None:
        result = subprocess.run([*self._as, str(self._bin / tool), *args], capture_output=True, text=True)
        if result.returncode != 0:
            log = self.root / "server.log"
            raise RuntimeError(f"{tool} failed ({result.returncode}): {result.stderr or result.stdout}"
                               + (f"\nserver log:\n{log.read_text()[-2000:]}" if log.exists() else ""))

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "t") -> str:
        """A new, empty database; returns its URL."""
        name = f"{prefix}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
