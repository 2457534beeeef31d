from pathlib import Path

import pytest

from relay.config import dump_config, load_config, parse_config
from relay.errors import ConfigError

GOOD = """
[chains.evm]
kind = "evm"
domain = 31337
chain_id = 31337
rpc_urls = ["http://127.0.0.1:8545", "http://127.0.0.1:8546"]
confirmations = 2
contracts = { gateway = "0x5FbDB2315678afecb367f032d93F642f64180aa3" }

[chains.solana]
kind = "solana"
domain = 13375
rpc_urls = ["http://127.0.0.1:8899"]
ws_urls = ["ws://127.0.0.1:8900"]
program_id = "Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo"

[committee]
file = "committee.toml"
"""


def test_valid_config_loads_and_resolves_relative_paths(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(GOOD)
    config = load_config(path)
    assert config.chains["evm"].rpc_urls[1].endswith("8546")
    assert config.committee.file == tmp_path / "committee.toml"
    assert config.chain_by_domain(13375)[0] == "solana"
    dump_config(config, tmp_path / "again.toml")
    assert load_config(tmp_path / "again.toml").chains == config.chains


@pytest.mark.parametrize(
    "mutation, fragment",
    [
        (lambda s: s.replace('domain = 13375', 'domain = 31337'), "also used by chains.evm"),
        (lambda s: s.replace('"http://127.0.0.1:8899"', '"127.0.0.1:8899"'), "chains.solana.solana.rpc_urls"),
        (lambda s: s.replace('0x5FbDB2315678afecb367f032d93F642f64180aa3', '0x1234'), "gateway: '0x1234'"),
        (lambda s: s.replace('kind = "solana"', 'kind = "cosmos"'), "chains.solana"),
        (lambda s: s.replace('confirmations = 2', 'confirmations = -1'), "confirmations"),
        (lambda s: s + "\nunknown_key = 1\n", "unknown_key"),
        (lambda s: s.replace("Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo", "not-base58!"), "base58"),
    ],
)
def test_invalid_config_names_the_field(tmp_path: Path, mutation, fragment: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(mutation(GOOD))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert fragment in str(info.value)
    assert str(path) in str(info.value)


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[chains\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)
    with pytest.raises(ConfigError, match="relay localnet up"):
        load_config(tmp_path / "missing.toml")


def test_key_ref_needs_exactly_one_source() -> None:
    base = {"kind": "evm", "domain": 1, "chain_id": 1, "rpc_urls": ["http://x"]}
    with pytest.raises(ConfigError, match="exactly one of `file` or `env`"):
        parse_config({"chains": {"a": {**base, "signer": {}}}})
    with pytest.raises(ConfigError, match="exactly one"):
        parse_config({"chains": {"a": {**base, "signer": {"file": "k", "env": "K"}}}})


def test_shipped_example_configs_are_valid() -> None:
    examples = sorted(Path(__file__).resolve().parents[2].joinpath("configs").glob("*.toml"))
    assert examples, "configs/ ships at least one example"
    for path in examples:
        config = load_config(path)
        assert config.chains and config.committee is not None
        assert config.committee.share_path(2).name == "share-2.json"


def test_feeds_live_in_the_main_config_with_paths_relative_to_it(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(GOOD + """
[feeds."ETH/USD"]
description = "Ether in US dollars"
decimals = 8
deviation_bps = 50
heartbeat_s = 60
min_sources = 1
tolerance_bps = 100
sources = [{ kind = "file", path = "recordings/eth.csv" }]
""")
    config = load_config(path)
    feed = config.feeds["ETH/USD"]
    assert feed.id == "ETH/USD" and feed.decimals == 8
    assert feed.sources[0].path == tmp_path / "recordings/eth.csv"
