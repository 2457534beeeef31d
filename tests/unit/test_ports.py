"""relay.ports hands out ports the kernel never gives an outgoing connection, each once."""

from __future__ import annotations

import socket

import pytest

from relay.ports import _ceiling, free_port, free_port_block, port_range


def test_ports_come_from_below_the_ephemeral_range_and_are_never_repeated() -> None:
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    low, high = port_range()
    assert all(low <= p < high <= _ceiling() for p in ports)
    base = free_port_block(4)
    assert not set(range(base, base + 4)) & set(ports)


def test_a_port_someone_listens_on_is_skipped() -> None:
    taken = free_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", taken + 1))
        holder.listen()
        # The next port in the walk is busy: the allocator moves past it.
        assert free_port() != taken + 1


def test_the_ceiling_is_the_kernels_ephemeral_floor() -> None:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        assert _ceiling() == max(int(f.read().split()[0]), 12000)


def test_a_narrowed_range_is_kept_and_a_malformed_one_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESSERA_PORT_RANGE", "23000-23100")
    assert all(23000 <= free_port() < 23100 for _ in range(20))
    monkeypatch.setenv("TESSERA_PORT_RANGE", "23000")
    with pytest.raises(ValueError, match="TESSERA_PORT_RANGE='23000': expected LOW-HIGH"):
        free_port()
