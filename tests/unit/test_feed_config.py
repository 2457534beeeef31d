"""[feeds.<id>] tables: valid configs load, bad ones name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.errors import ConfigError
from relay.feeds import FileSourceConfig, HttpJsonSourceConfig, PushPolicy, load_feeds, parse_feeds

GOOD = """
[chains.evm]
kind = "evm"
domain = 31337
chain_id = 31337
rpc_urls = ["http://127.0.0.1:8545"]

[feeds."ETH/USD"]
description = "Ether in US dollars"
decimals = 8
deviation_bps = 50
heartbeat_s = 3600
min_sources = 2
tolerance_bps = 100
sources = [
  { kind = "http_json", name = "coinbase", url = "https://api.coinbase.com/v2/prices/ETH-USD/spot", price_path = "data.amount" },
  { kind = "http_json", url = "https://api.kraken.com/0/public/Ticker?pair=ETHUSD", price_path = "result.XETHZUSD.c.0", timeout_s = 1.5 },
  { kind = "file", path = "recordings/eth.jsonl", loop = false },
]

[feeds.BTC-USD]
decimals = 8
[[feeds.BTC-USD.sources]]
kind = "evm_pool"
chain = "evm"
pool = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
"""


def test_feeds_load_and_resolve_recording_paths(tmp_path: Path) -> None:
    path = tmp_path / "tessera.toml"
    path.write_text(GOOD)
    feeds = load_feeds(path)
    assert list(feeds) == ["ETH/USD", "BTC-USD"]
    eth = feeds["ETH/USD"]
    assert eth.id == "ETH/USD" and eth.decimals == 8 and eth.min_sources == 2
    assert isinstance(eth.sources[0], HttpJsonSourceConfig) and eth.sources[1].timeout_s == 1.5
    assert isinstance(eth.sources[2], FileSourceConfig)
    assert eth.sources[2].path == tmp_path / "recordings" / "eth.jsonl"
    assert eth.source_names() == ["coinbase", "http_json[1]", "file[2]"]
    assert PushPolicy.for_feed(eth) == PushPolicy(deviation_bps=50, heartbeat_s=3600)
    btc = feeds["BTC-USD"]
    assert btc.sources[0].kind == "evm_pool" and btc.tolerance_bps == 100  # defaults


def _feed(**overrides) -> dict:
    feed = {"decimals": 8, "sources": [{"kind": "http_json", "url": "https://x.example/t", "price_path": "price"}]}
    feed.update(overrides)
    return feed


@pytest.mark.parametrize(
    "key, table, where, text",
    [
        ("x" * 33, _feed(), "feeds." + "x" * 33 + ".id", "1..32 printable ASCII"),
        ("ÉTH/USD", _feed(), "feeds.ÉTH/USD.id", "printable ASCII"),
        (" ETH", _feed(), "feeds. ETH.id", "without surrounding spaces"),
        ("ETH/USD", _feed(decimals=19), "feeds.ETH/USD.decimals", "less than or equal to 18"),
        ("ETH/USD", _feed(decimals=-1), "feeds.ETH/USD.decimals", "greater than or equal to 0"),
        ("ETH/USD", _feed(sources=[]), "feeds.ETH/USD.sources", "at least 1 item"),
        ("ETH/USD", _feed(min_sources=2), "feeds.ETH/USD", "min_sources: 2 exceeds the 1 configured sources"),
        ("ETH/USD", _feed(tolerance_bps=20_000), "feeds.ETH/USD.tolerance_bps", "less than or equal to 10000"),
        ("ETH/USD", _feed(heartbeat_s=0), "feeds.ETH/USD.heartbeat_s", "greater than or equal to 1"),
        ("ETH/USD", _feed(deviation_bps=0), "feeds.ETH/USD.deviation_bps", "greater than or equal to 1"),
        ("ETH/USD", _feed(colour="blue"), "feeds.ETH/USD.colour", "Extra inputs are not permitted"),
        ("ETH/USD", _feed(sources=[{"kind": "websocket"}]), "feeds.ETH/USD.sources.0", "does not match any of the expected tags"),
        ("ETH/USD", _feed(sources=[{"kind": "http_json", "url": "ftp://x", "price_path": "p"}]),
         "feeds.ETH/USD.sources.0.http_json.url", "is not an http/https URL"),
        ("ETH/USD", _feed(sources=[{"kind": "http_json", "url": "https://x", "price_path": "data..amount"}]),
         "feeds.ETH/USD.sources.0.http_json.price_path", "is not a JSON path"),
        ("ETH/USD", _feed(sources=[{"kind": "http_json", "url": "https://x", "price_path": "p", "timeout_s": 0}]),
         "feeds.ETH/USD.sources.0.http_json.timeout_s", "greater than 0"),
        ("ETH/USD", _feed(sources=[{"kind": "file", "path": "rec.txt"}]),
         "feeds.ETH/USD.sources.0.file", "cannot tell the format of rec.txt"),
        ("ETH/USD", _feed(sources=[{"kind": "evm_pool", "chain": "evm", "pool": "0x12"}]),
         "feeds.ETH/USD.sources.0.evm_pool.pool", "is not a 0x-prefixed 20-byte address"),
        ("ETH/USD", _feed(id="BTC/USD"), "feeds: ETH/USD.id", "differs from the table key"),
        ("ETH/USD", _feed(sources=[{"kind": "http_json", "name": "a", "url": "https://x", "price_path": "p"},
                                   {"kind": "http_json", "name": "a", "url": "https://y", "price_path": "p"}]),
         "feeds.ETH/USD", "names must be unique"),
    ],
)
def test_bad_feed_names_the_field(key: str, table: dict, where: str, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_feeds({"feeds": {key: table}}, "tessera.toml")
    message = str(info.value)
    assert message.startswith("tessera.toml is not a valid Tessera config:")
    assert where in message, message
    assert text in message, message


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_feeds(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[feeds.ETH/USD]\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_feeds(bad)


def test_no_feeds_is_fine() -> None:
    assert parse_feeds({"chains": {}}) == {}
