"""Feed sources against a loopback aiohttp server replaying recorded ticker bodies, and file replay."""

from __future__ import annotations

import asyncio
import socket
from decimal import Decimal
from pathlib import Path

import pytest
from aiohttp import web

from relay.feeds import (
    FeedConfig,
    FileSource,
    FileSourceConfig,
    HttpJsonSource,
    HttpJsonSourceConfig,
    NotEnoughSourcesError,
    SourceError,
    build_source,
    build_sources,
    gather_quotes,
    own_observation,
    parse_feeds,
    register_source,
    source_kinds,
)
from relay.feeds.sources import extract

TICKERS = Path(__file__).resolve().parents[1] / "fixtures" / "tickers"
# The recorded bodies were captured at 2026-11-23T11:02:03.123Z; the tests' clock sits just after.
CAPTURED = 1795431723.123
CLOCK = lambda: CAPTURED + 2.0  # noqa: E731


def _ticker(name: str) -> bytes:
    return (TICKERS / name).read_bytes()


GARBAGE: dict[str, tuple[int, bytes]] = {
    "/html": (200, b"<html><body>502 Bad Gateway</body></html>"),
    "/missing": (200, b'{"data":{"base":"BTC","currency":"USD"}}'),
    "/text-price": (200, b'{"data":{"amount":"about ninety thousand"}}'),
    "/negative": (200, b'{"data":{"amount":"-97013.5"}}'),
    "/zero": (200, b'{"data":{"amount":0}}'),
    "/nan-string": (200, b'{"data":{"amount":"NaN"}}'),
    "/nan-literal": (200, b'{"data":{"amount":NaN}}'),
    "/bool": (200, b'{"data":{"amount":true}}'),
    "/object": (200, b'{"data":{"amount":{"value":"1"}}}'),
    "/short-list": (200, b'{"result":{"XXBTZUSD":{"c":[]}}}'),
    "/stale": (200, b'{"price":"97000.1","time":"2026-11-23T10:50:00Z"}'),
    "/future": (200, b'{"price":"97000.1","time":"2026-11-23T11:10:00Z"}'),
    "/bad-time": (200, b'{"price":"97000.1","time":"yesterday"}'),
    "/error-500": (500, b'{"message":"internal error"}'),
    "/big-but-fine": (200, b'{"pad":"' + b"y" * 500_000 + b'","price":"42.5"}'),
    "/huge": (200, b'{"price":"1","pad":"' + b"x" * (1 << 21) + b'"}'),
}


@pytest.fixture
async def server():
    release = asyncio.Event()  # lets the slow handler finish at teardown instead of sleeping on

    async def handle(request: web.Request) -> web.Response:
        path = request.path
        if path.startswith("/tickers/"):
            return web.Response(body=_ticker(path.removeprefix("/tickers/")), content_type="application/json")
        if path == "/slow":
            await asyncio.wait_for(release.wait(), 5)
            return web.Response(body=b'{"price":"1"}')
        status, body = GARBAGE[path]
        return web.Response(status=status, body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # loopback only, a free port
    site = web.SockSite(runner, sock)
    await site.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    release.set()
    await runner.cleanup()


def _http(base: str, path: str, price_path: str, **extra) -> HttpJsonSource:
    cfg = HttpJsonSourceConfig(kind="http_json", url=base + path, price_path=price_path, **extra)
    return HttpJsonSource(cfg, name=path, clock=CLOCK)


@pytest.mark.parametrize(
    "fixture, price_path, ts_path, ts_format, price, timestamp",
    [
        ("coinbase_spot_btc_usd.json", "data.amount", None, "unix_s", "97013.575", int((CAPTURED + 2) * 1000)),
        ("coinbase_exchange_ticker_btc_usd.json", "price", "time", "iso8601", "97015.21", 1795431723123),
        ("kraken_ticker_xxbtzusd.json", "result.XXBTZUSD.c.0", None, "unix_s", "97012.10000", int((CAPTURED + 2) * 1000)),
        ("kraken_ticker_xxbtzusd.json", "result.XXBTZUSD.a[0]", None, "unix_s", "97012.10000", int((CAPTURED + 2) * 1000)),
        ("binance_ticker_24hr_btcusdt.json", "lastPrice", "closeTime", "unix_ms", "97010.01000000", 1795431723123),
        ("binance_ticker_price_ethusdt.json", "price", None, "unix_s", "3456.78000000", int((CAPTURED + 2) * 1000)),
    ],
)
async def test_http_json_reads_recorded_exchange_tickers(server, fixture, price_path, ts_path, ts_format, price, timestamp):
    source = _http(server, f"/tickers/{fixture}", price_path, timestamp_path=ts_path, timestamp_format=ts_format)
    try:
        quote = await source.fetch()
    finally:
        await source.close()
    assert quote.price == Decimal(price)  # every digit the exchange sent, no float rounding
    assert str(quote.price) == price
    assert quote.timestamp == timestamp


@pytest.mark.parametrize(
    "path, price_path, extra, reason",
    [
        ("/html", "data.amount", {}, "body is not JSON"),
        ("/missing", "data.amount", {}, "no key 'amount' at data"),
        ("/text-price", "data.amount", {}, "'about ninety thousand' is not a number"),
        ("/negative", "data.amount", {}, "not a positive price"),
        ("/zero", "data.amount", {}, "not a positive price"),
        ("/nan-string", "data.amount", {}, "not a finite number"),
        ("/nan-literal", "data.amount", {}, "non-JSON number NaN"),
        ("/bool", "data.amount", {}, "bool True, not a number"),
        ("/object", "data.amount", {}, "dict"),
        ("/short-list", "result.XXBTZUSD.c.0", {}, "is a list of 0"),
        ("/stale", "price", {"timestamp_path": "time", "timestamp_format": "iso8601"}, "stale: 725.1 s old"),
        ("/future", "price", {"timestamp_path": "time", "timestamp_format": "iso8601"}, "in the future"),
        ("/bad-time", "price", {"timestamp_path": "time", "timestamp_format": "iso8601"}, "not a iso8601 timestamp"),
        ("/error-500", "price", {}, "answered HTTP 500"),
        ("/slow", "price", {"timeout_s": 0.2}, "timed out after 0.2 s"),
        ("/huge", "price", {}, "body exceeds 1048576 bytes"),
    ],
)
async def test_http_json_garbage_raises_source_error_with_reason(server, path, price_path, extra, reason):
    source = _http(server, path, price_path, **extra)
    try:
        with pytest.raises(SourceError, match=None) as info:
            await source.fetch()
    finally:
        await source.close()
    assert reason in str(info.value)


async def test_http_json_reads_a_body_of_many_chunks(server) -> None:
    source = _http(server, "/big-but-fine", "price")
    try:
        assert (await source.fetch()).price == Decimal("42.5")
    finally:
        await source.close()


async def test_http_json_connection_refused_is_a_source_error() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    source = _http(f"http://127.0.0.1:{port}", "/", "price")
    try:
        with pytest.raises(SourceError, match="failed: ClientConnectorError"):
            await source.fetch()
    finally:
        await source.close()


async def test_gather_skips_and_reports_failing_sources_then_observes(server) -> None:
    feeds = parse_feeds(
        {
            "feeds": {
                "BTC/USD": {
                    "decimals": 8,
                    "min_sources": 2,
                    "sources": [
                        {"kind": "http_json", "name": "coinbase", "url": f"{server}/tickers/coinbase_spot_btc_usd.json", "price_path": "data.amount"},
                        {"kind": "http_json", "name": "kraken", "url": f"{server}/tickers/kraken_ticker_xxbtzusd.json", "price_path": "result.XXBTZUSD.c.0"},
                        {"kind": "http_json", "name": "binance", "url": f"{server}/tickers/binance_ticker_24hr_btcusdt.json",
                         "price_path": "lastPrice", "timestamp_path": "closeTime", "timestamp_format": "unix_ms"},
                        {"kind": "http_json", "name": "broken", "url": f"{server}/html", "price_path": "price"},
                    ],
                }
            }
        }
    )
    feed = feeds["BTC/USD"]
    sources = build_sources(feed, clock=CLOCK)
    try:
        got = await gather_quotes(sources)
    finally:
        for s in sources.values():
            await s.close()
    assert sorted(got.quotes) == ["binance", "coinbase", "kraken"]
    assert list(got.failures) == ["broken"] and "not JSON" in got.failures["broken"]
    obs = own_observation(feed, 7, member=2, quotes=got.quotes, failures=got.failures)
    # 97010.01, 97012.10, 97013.575 -> median 97012.10 at 8 decimals
    assert obs.price == 9_701_210_000_000
    assert obs.round == 7 and obs.member == 2 and obs.decimals == 8
    assert obs.timestamp == 1795431725123  # two arrival stamps (clock) and Binance's closeTime
    with pytest.raises(NotEnoughSourcesError, match="1 of 4 sources answered, min_sources is 2.*broken: "):
        own_observation(feed, 7, 2, {"coinbase": got.quotes["coinbase"]}, got.failures)


def test_extract_paths() -> None:
    body = {"data": [{"price": "1.5"}, {"price": "2"}], "r": {"0": "key not index"}}
    assert extract(body, "data[1].price") == "2"
    assert extract(body, "data.0.price") == "1.5"
    assert extract(body, "r.0") == "key not index"
    with pytest.raises(SourceError, match="'x' is not an index"):
        extract(body, "data.x")
    with pytest.raises(SourceError, match="is a str, not an object"):
        extract(body, "data.0.price.deeper")


# --- file replay -----------------------------------------------------------------------------------


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_file_csv_replays_in_time_and_loops() -> None:
    clock = FakeClock(2_000_000_000.0)
    cfg = FileSourceConfig(kind="file", path=TICKERS / "btc_usd_recording.csv", loop=True)
    source = build_source(cfg, "recorded", clock=clock)
    assert isinstance(source, FileSource)
    seen = []
    for step in [0, 0.5, 1.0, 2.2, 5.0, 5.9, 6.0, 7.0]:  # six 1-s records: the loop restarts at 6 s
        clock.now = 2_000_000_000.0 + step
        seen.append(str((await source.fetch()).price))
    assert seen == ["97001.5", "97001.5", "97003.25", "97002.0", "97012.5", "97012.5", "97001.5", "97003.25"]
    clock.now = 2_000_000_000.0 + 7.5
    quote = await source.fetch()
    assert quote.timestamp == 2_000_000_000_000 + 7_000  # re-stamped on today's clock


async def test_file_jsonl_without_loop_goes_stale_after_the_end() -> None:
    clock = FakeClock(1_000.0)
    cfg = FileSourceConfig(kind="file", path=TICKERS / "eth_usd_recording.jsonl", loop=False, speed=2.0, max_age_s=10)
    source = FileSource(cfg, "eth", clock=clock)
    assert (await source.fetch()).price == Decimal("3456.10")  # the replay starts at the first fetch
    clock.now = 1_000.0 + 1.0  # 2 s into the recording at double speed
    assert (await source.fetch()).price == Decimal("3456.35")
    clock.now = 1_000.0 + 3.5
    assert (await source.fetch()).price == Decimal("3457.05")
    clock.now = 1_000.0 + 3.0 + 10.5  # last record stamped at 3 s, now 10.5 s later
    with pytest.raises(SourceError, match="stale"):
        await source.fetch()


@pytest.mark.parametrize(
    "content, suffix, reason",
    [
        ("timestamp,price\n1,abc\n", ".csv", ":2 price 'abc' is not a number; fix the recording"),
        ("timestamp,price\n1,-5\n", ".csv", "not a positive price"),
        ("timestamp,value\n1,5\n", ".csv", "needs fields 'timestamp' and 'price'"),
        ("timestamp,price\n", ".csv", "holds no records"),
        ("timestamp,price\n5,1\n3,1\n", ".csv", "not in time order"),
        ('{"timestamp": 1, "price": "1"}\nnot json\n', ".jsonl", ":2: not JSON"),
        ('{"timestamp": 1, "price": NaN}\n', ".jsonl", "non-JSON number NaN"),
    ],
)
def test_file_garbage_is_rejected_with_line(tmp_path: Path, content: str, suffix: str, reason: str) -> None:
    path = tmp_path / f"rec{suffix}"
    path.write_text(content)
    with pytest.raises(SourceError) as info:
        FileSource(FileSourceConfig(kind="file", path=path), "rec")
    assert reason in str(info.value)


def test_registry_knows_kinds_and_evm_pool_comes_from_adapters(monkeypatch) -> None:
    from relay.feeds import sources

    # Another test in this process may have registered the adapters' evm_pool already.
    monkeypatch.setattr(sources, "_FACTORIES", {k: v for k, v in sources._FACTORIES.items() if k != "evm_pool"})
    assert {"file", "http_json"} <= set(source_kinds())
    feed = FeedConfig.model_validate(
        {"id": "ETH/USDC", "decimals": 8, "sources": [{"kind": "evm_pool", "chain": "evm", "pool": "0x" + "11" * 20}]}
    )
    with pytest.raises(SourceError, match="comes with adapters/"):
        build_sources(feed)

    class Fixed:
        def __init__(self, config, name, **_):
            self.name = name

        async def fetch(self):
            raise SourceError("not wired")

        async def close(self):
            return None

    register_source("evm_pool", Fixed)
    try:
        assert build_sources(feed)["evm_pool[0]"].name == "evm_pool[0]"
    finally:
        from relay.feeds import sources as module

        module._FACTORIES.pop("evm_pool")
