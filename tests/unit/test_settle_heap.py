"""relay.lifecycle.settle_heap: a daemon started from the CLI freezes its start-up heap out of the
GC's reach; the same daemon run in-process (tests, library users) leaves the process alone.
Each case runs in a fresh interpreter so the pytest process is never frozen."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_settle_heap_does_nothing_outside_a_daemon_process() -> None:
    out = _run("""
        import gc
        from relay.lifecycle import settle_heap
        print(settle_heap(), gc.get_freeze_count())
    """)
    assert out == "False 0"


def test_settle_heap_freezes_the_startup_heap_of_a_cli_daemon() -> None:
    out = _run("""
        import gc
        import relay.daemons.messaging, relay.feeds.node  # what an attester imports
        from relay.lifecycle import own_process, settle_heap
        own_process()
        froze = settle_heap()
        gc.collect()
        print(froze, gc.get_freeze_count(), len(gc.get_objects()))
    """)
    froze, frozen, tracked = out.split()
    assert froze == "True"
    # The imported modules' objects are frozen; what the collector still tracks is a small remainder.
    assert int(frozen) > 20_000
    assert int(tracked) < int(frozen) // 10


def test_the_cli_marks_its_process_as_the_daemons_own() -> None:
    out = _run("""
        from relay import cli, lifecycle
        try:
            cli.main(["--help"])
        except SystemExit:
            pass
        print(lifecycle._own_process)
    """)
    assert out.endswith("True")
