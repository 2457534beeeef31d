"""Servers a test run starts outside its own process tree (pg_ctl daemonises PostgreSQL; nats-server
runs in its own session) outlive a run that is killed (SIGKILL, a CI timeout) unless something else
stops them: `reap_when_gone` leaves a small watchdog that waits for the test process to end and then
runs the cleanup command. On a normal exit the fixtures have already stopped the server, and the
cleanup finds nothing to do."""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Sequence


def reap_when_gone(cleanup: Sequence[Sequence[str]], owner_pid: int | None = None) -> subprocess.Popen:
    """Runs each command of `cleanup` (errors ignored) once `owner_pid` (this process) has exited."""
    pid = owner_pid or os.getpid()
    commands = "; ".join(shlex.join(list(c)) + " >/dev/null 2>&1" for c in cleanup)
    script = f"while kill -0 {pid} 2>/dev/null; do sleep 1; done; {commands}"
    return subprocess.Popen(["sh", "-c", script], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
