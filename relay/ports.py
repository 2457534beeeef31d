"""Free TCP ports for the processes a localnet, a test or a benchmark starts.

A port asked from the kernel (`bind(("127.0.0.1", 0))`) comes from the ephemeral range
(`/proc/sys/net/ipv4/ip_local_port_range`, 32768-60999 on Linux), which is also where every
outgoing connection takes its local port. Between the moment a port is picked and the moment the
child process binds it, any client connection on the machine can take it ("address already in
use": a CI run failed that way). Ports are therefore handed out from *below* the ephemeral range,
where the kernel never assigns one on its own, walking from a random start so that two processes
handing out ports at once (two test runs) rarely meet, and never handing out the same port twice
in one process. `TESSERA_PORT_RANGE=LOW-HIGH` narrows the range, so that processes handing out
ports at the same time (the test suite's parallel workers, tests/conftest.py) each get their own.
"""

from __future__ import annotations

import os
import random
import socket
import threading
from pathlib import Path

__all__ = ["free_port", "free_port_block", "port_is_free", "port_range"]

_LOWEST = 10000
_lock = threading.Lock()
_handed_out: set[int] = set()
_cursor: int | None = None


def _ceiling() -> int:
    """The first port of the kernel's ephemeral range (32768 if it cannot be read)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return max(low, _LOWEST + 2000)


def port_range() -> tuple[int, int]:
    """[low, high): below the ephemeral range, narrowed by TESSERA_PORT_RANGE=LOW-HIGH if set."""
    low, high = _LOWEST, _ceiling()
    narrowed = os.environ.get("TESSERA_PORT_RANGE")
    if narrowed:
        try:
            a, b = (int(x) for x in narrowed.split("-"))
        except ValueError:
            raise ValueError(f"TESSERA_PORT_RANGE={narrowed!r}: expected LOW-HIGH, e.g. 10000-20000") from None
        if not 1024 <= a < b <= 65536:
            raise ValueError(f"TESSERA_PORT_RANGE={narrowed!r}: expected 1024 <= LOW < HIGH <= 65536")
        low, high = a, b
    return low, high


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As servers do (aiohttp, anvil): connections in TIME_WAIT from a previous run do not
        # block a new listener, only a live socket does.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def free_port_block(count: int = 1, host: str = "127.0.0.1") -> int:
    """The first of `count` consecutive free ports below the ephemeral range; each is handed out once."""
    global _cursor
    lowest, ceiling = port_range()
    span = ceiling - lowest
    with _lock:
        if _cursor is None or not lowest <= _cursor < ceiling:
            _cursor = lowest + random.randrange(span)
        for _ in range(span):
            base = _cursor
            _cursor += count
            if _cursor + count >= ceiling:
                _cursor = lowest
            if base + count >= ceiling:
                continue
            ports = range(base, base + count)
            if any(p in _handed_out for p in ports):
                continue
            if all(port_is_free(host, p) for p in ports):
                _handed_out.update(ports)
                return base
    raise OSError(f"no block of {count} free ports between {lowest} and {ceiling}; stop leftover servers")


def free_port(host: str = "127.0.0.1") -> int:
    """A free port below the ephemeral range, never handed out before by this process."""
    return free_port_block(1, host)
