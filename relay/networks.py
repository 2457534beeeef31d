"""Known public chains, so a config says `network = "base-sepolia"` instead of typing numbers.

The data lives in relay/networks.toml (shipped in the package, sources cited there). A
`[chains.<name>]` table that names a network gets the network's kind, chain id, domain and finality
default; whatever the table sets itself wins. `relay config check --online` compares the chain an
endpoint serves with the network's chain id (EVM) or genesis hash (Solana).
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from relay.errors import ConfigError

NETWORKS_FILE = Path(__file__).with_name("networks.toml")


class UnknownNetwork(ConfigError):
    pass


@dataclass(frozen=True, slots=True)
class Network:
    name: str
    kind: Literal["evm", "solana"]
    domain: int
    finality: int | str  # EVM: confirmations or "finalized"; Solana: the commitment level
    explorer: str
    chain_id: int | None = None  # EVM only
    cluster: str | None = None  # Solana only
    genesis: str | None = None  # Solana only: the cluster's genesis hash (base58)
    aliases: tuple[str, ...] = ()
    testnet: bool = False

    def chain_defaults(self) -> dict[str, Any]:
        """The `[chains.<name>]` fields this network stands for (a table's own fields override them)."""
        if self.kind == "evm":
            confirmations = None if self.finality == "finalized" else int(self.finality)
            return {"kind": "evm", "chain_id": self.chain_id, "domain": self.domain, "confirmations": confirmations}
        return {"kind": "solana", "domain": self.domain, "commitment": self.finality}


def _parse(name: str, table: dict[str, Any]) -> Network:
    try:
        network = Network(name=name, aliases=tuple(table.pop("aliases", ())), **table)
    except TypeError as exc:
        raise ConfigError(f"{NETWORKS_FILE}: networks.{name}: {exc}") from None
    if network.kind == "evm" and network.chain_id is None:
        raise ConfigError(f"{NETWORKS_FILE}: networks.{name}: an EVM network needs chain_id")
    if network.kind == "solana" and network.genesis is None:
        raise ConfigError(f"{NETWORKS_FILE}: networks.{name}: a Solana network needs genesis")
    return network


@cache
def known_networks() -> dict[str, Network]:
    """Every known network by its name (aliases not included)."""
    data = tomllib.loads(NETWORKS_FILE.read_text())
    return {name: _parse(name, dict(table)) for name, table in data["networks"].items()}


@cache
def _by_any_name() -> dict[str, Network]:
    names: dict[str, Network] = {}
    for network in known_networks().values():
        for alias in (network.name, *network.aliases):
            names[alias] = network
    return names


def network_named(name: str) -> Network:
    """The network called `name` (or one of its aliases); an unknown name raises UnknownNetwork
    listing the closest known names."""
    network = _by_any_name().get(name.strip().lower())
    if network is not None:
        return network
    close = difflib.get_close_matches(name.lower(), list(_by_any_name()), n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    raise UnknownNetwork(f"unknown network {name!r}; {hint}known networks: {', '.join(sorted(known_networks()))} "
                         f"(relay/networks.toml), or leave `network` out and set kind, domain and chain_id yourself")


def network_for_chain_id(chain_id: int) -> Network | None:
    """The known EVM network with this chain id, if any."""
    return next((n for n in known_networks().values() if n.kind == "evm" and n.chain_id == chain_id), None)
