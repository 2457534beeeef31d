"""tests/support/reaper.py: a server started outside the test process tree is stopped once the test
process is gone, even when it was SIGKILLed."""

from __future__ import annotations

import subprocess
import sys
import time

from tests.support.reaper import reap_when_gone


def _gone(proc: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return True
        time.sleep(0.05)
    return False


def test_the_server_of_a_killed_run_is_stopped() -> None:
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    server = subprocess.Popen(["sleep", "120"], start_new_session=True)
    try:
        reap_when_gone([["kill", str(server.pid)]], owner_pid=owner.pid)
        time.sleep(1.5)
        assert server.poll() is None  # the owner lives: the server is left alone
        owner.kill()
        owner.wait()
        assert _gone(server, 5.0), "the watchdog did not stop the server of a killed run"
    finally:
        for proc in (owner, server):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
