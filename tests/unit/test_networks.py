"""The chain registry (relay/networks.toml) and `network = "..."` in a config's chain tables."""

from __future__ import annotations

import pytest

from relay.config import EvmChain, SolanaChain, parse_config
from relay.errors import ConfigError
from relay.networks import UnknownNetwork, known_networks, network_for_chain_id, network_named

RPC = ["https://rpc.example.invalid"]


def test_registry_holds_the_supported_public_networks():
    networks = known_networks()
    expected_evm = {"ethereum": 1, "sepolia": 11155111, "holesky": 17000, "base": 8453, "base-sepolia": 84532,
                    "arbitrum-one": 42161, "arbitrum-sepolia": 421614, "optimism": 10, "op-sepolia": 11155420,
                    "polygon": 137, "polygon-amoy": 80002}
    for name, chain_id in expected_evm.items():
        assert (networks[name].kind, networks[name].chain_id, networks[name].domain) == ("evm", chain_id, chain_id)
        assert networks[name].explorer.startswith("https://")
    genesis = {"solana-mainnet": "5eykt4UsFv8P8NJdTREpY1vzqKqZKvdpKuc147dw2N9d",
               "solana-devnet": "EtWTRABZaYq6iMfeYKouRu166VU2xqa1wcaWoxPkrZBG",
               "solana-testnet": "4uhcVJyU9pJkvQyS88uRDiswHXSCkY3zQawwpjk2NsNY"}
    for name, hash_ in genesis.items():
        assert (networks[name].kind, networks[name].genesis, networks[name].finality) == ("solana", hash_, "finalized")
    # Domains are unique: two networks never share one.
    domains = [n.domain for n in networks.values()]
    assert len(domains) == len(set(domains))
    assert network_named("arbitrum") is networks["arbitrum-one"]  # an alias
    assert network_for_chain_id(84532) is networks["base-sepolia"]


def test_unknown_network_lists_close_matches():
    with pytest.raises(UnknownNetwork, match="did you mean 'base-sepolia'"):
        network_named("base-sepola")
    with pytest.raises(UnknownNetwork, match="known networks: arbitrum-one, arbitrum-sepolia, base"):
        network_named("zzz")


def test_a_chain_table_names_a_network_instead_of_numbers():
    config = parse_config({"chains": {
        "base": {"network": "base-sepolia", "rpc_urls": RPC},
        "sol": {"network": "solana-devnet", "rpc_urls": RPC},
    }})
    base, sol = config.chains["base"], config.chains["sol"]
    assert isinstance(base, EvmChain) and (base.chain_id, base.domain, base.confirmations) == (84532, 84532, None)
    assert base.network == "base-sepolia"
    assert isinstance(sol, SolanaChain) and (sol.domain, sol.commitment) == (1399811151, "finalized")


def test_explicit_fields_override_the_network():
    config = parse_config({"chains": {
        "base": {"network": "base-sepolia", "rpc_urls": RPC, "confirmations": 12},
        "sol": {"network": "solana-devnet", "rpc_urls": RPC, "domain": 7, "commitment": "confirmed"},
    }})
    assert config.chains["base"].confirmations == 12
    assert (config.chains["sol"].domain, config.chains["sol"].commitment) == (7, "confirmed")


def test_a_table_contradicting_its_network_is_refused():
    with pytest.raises(ConfigError, match=r"chains\.base\.network: unknown network 'base-sepola'.*did you mean"):
        parse_config({"chains": {"base": {"network": "base-sepola", "rpc_urls": RPC}}})
    with pytest.raises(ConfigError, match=r"chains\.base\.chain_id = 1 contradicts network 'base-sepolia'"):
        parse_config({"chains": {"base": {"network": "base-sepolia", "chain_id": 1, "rpc_urls": RPC}}})
    with pytest.raises(ConfigError, match=r"chains\.base\.kind = 'solana' contradicts"):
        parse_config({"chains": {"base": {"network": "base-sepolia", "kind": "solana", "rpc_urls": RPC}}})


def test_evm_domain_other_than_chain_id_needs_the_opt_in():
    table = {"kind": "evm", "domain": 5, "chain_id": 31337, "rpc_urls": RPC}
    with pytest.raises(ConfigError, match=r"chains\.a\.domain 5 differs from chain_id 31337.*allow_domain_mismatch"):
        parse_config({"chains": {"a": table}})
    config = parse_config({"chains": {"a": {**table, "allow_domain_mismatch": True}}})
    assert config.chains["a"].domain == 5
    # A named network with another domain is the same case.
    with pytest.raises(ConfigError, match="differs from chain_id 84532"):
        parse_config({"chains": {"b": {"network": "base-sepolia", "domain": 9, "rpc_urls": RPC}}})
