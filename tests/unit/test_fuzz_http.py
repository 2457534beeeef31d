"""Every HTTP endpoint of the attester, the relayer, the worker and the feed server against
malformed, oversized and wrongly typed requests: the answer is a 4xx (or a 2xx) that says what was
wrong, never a 5xx, and the server keeps serving (its /health answers after every request).

The apps are built in-process from fakes and served by aiohttp's TestServer."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from attest.signing_log import SignedEntry, SigningLog
from relay.api import build_app as relayer_app
from relay.attester import Attester
from relay.backoff import Backoff
from relay.daemons.worker import _build_app as worker_app
from relay.envelope import keccak256
from relay.feeds.server import FeedServer
from relay.pipeline import PipelineSettings, Relayer
from relay.store import Store
from relay.tasks.executors import ExecutorRegistry
from relay.tasks.worker import WorkerV2
from relay.tasks.worker_store import WorkerStore
from tests.support.committee import Dealt
from tests.support.fakes import DST, SRC, FakeChain, FakeCommittee, envelope
from tests.support.feeds import make_server
from tests.support.fuzzing import DEEP_JSON, budget, default_recursion_limit, json_values

pytestmark = pytest.mark.timeout(300)

# The client is a function-scoped fixture shared by every example of a test: that is the point
# (one server sees every request in turn and must keep serving).
FUZZ = settings(max_examples=budget(200), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]

# --- what a request is made of ------------------------------------------------------------------

_segment = st.one_of(
    st.text(max_size=80),
    st.binary(max_size=40).map(bytes.hex),
    st.binary(min_size=32, max_size=32).map(lambda b: "0x" + b.hex()),
    st.sampled_from(["ETH/USD", "BTC/USD", "0x", "..", "%00", "²³", "0x" + "zz" * 32, "9" * 5000]),
    st.sampled_from([envelope(n).message_id for n in (0, 1)]).map(lambda m: "0x" + m.hex()),  # known to the servers
)
_query_value = st.one_of(
    st.text(max_size=30),
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["", "²", "1e9", "-1", "0", "1001", "ETH/USD", "ETH/USD,BTC/USD", "ETH/USD:1", '{"ETH/USD": 1}',
                     '{"ETH/USD": -1}', '{"nope": 1}', "{", "[1]", "9" * 5000, "ETH/USD:²"]),
)
_query = st.dictionaries(st.sampled_from(["limit", "from_round", "ids", "id", "since", "x"]), _query_value, max_size=3)
_content_type = st.sampled_from([
    None, "application/json", "application/json; charset=utf-8", "application/json; charset=bogus",
    "application/json; charset=utf-16", "text/plain", "application/octet-stream", "multipart/form-data; boundary=x",
])
_last_event_id = st.none() | st.sampled_from(["ETH/USD:1", "ETH/USD:²", "nope:1", ":", "ETH/USD:" + "9" * 5000]) | \
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)


@dataclass(frozen=True)
class Body:
    data: bytes | None

    def __repr__(self) -> str:  # keeps hypothesis' failure report short
        if self.data is None:
            return "Body(None)"
        return f"Body({self.data[:120]!r}{'...' if len(self.data) > 120 else ''})"


def _json_body(value: object) -> Body:
    return Body(json.dumps(value).encode())


def bodies(*plausible: st.SearchStrategy[object], limit: int) -> st.SearchStrategy[Body]:
    """No body, random bytes, random JSON, JSON too deep to parse, a body over the server's limit,
    or something close to what the endpoint wants (`plausible`)."""
    options: list[st.SearchStrategy[Body]] = [
        st.just(Body(None)),
        st.binary(max_size=200).map(Body),
        json_values.map(_json_body),
        st.sampled_from([Body(DEEP_JSON.encode()), Body(b"\xff\xfe{"), Body(b"Infinity"), Body(b"[1e999]"),
                         Body(b"x" * (limit + 1)), Body(b'{"a":' * 2000 + b"1" + b"}" * 2000)]),
    ]
    options += [p.map(_json_body) for p in plausible]
    return st.one_of(options)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Body


def requests(routes: list[tuple[str, str]], body: st.SearchStrategy[Body]) -> st.SearchStrategy[Request]:
    """A request to one of `routes` ((method, path with at most one `{}`)): mostly its own method,
    sometimes another; the `{}` filled with a random, URL-quoted segment."""

    @st.composite
    def build(draw) -> Request:
        method, template = draw(st.sampled_from(routes))
        if draw(st.integers(0, 4)) == 0:
            method = draw(st.sampled_from(METHODS))
        path = template.replace("{}", quote(draw(_segment), safe="")) if "{}" in template else template
        headers = {}
        content_type = draw(_content_type)
        if content_type:
            headers["Content-Type"] = content_type
        last_event = draw(_last_event_id)
        if last_event:
            headers["Last-Event-ID"] = last_event
        return Request(method, path, draw(_query), headers, draw(body))

    return build()


async def assert_refused_cleanly(client: TestClient, request: Request, health: str = "/health") -> None:
    """The request gets a non-5xx answer (a 4xx carries a message) and /health still answers 200."""
    async with client.request(request.method, request.path, params=request.query, headers=request.headers,
                              data=request.body.data, allow_redirects=False) as resp:
        text = await resp.read()
        status, content_type = resp.status, resp.content_type
    assert status < 500, f"{request}: {status} {text[:300]!r}"
    if 400 <= status < 500 and request.method != "HEAD":
        assert text.strip(), f"{request}: {status} without a message"
        if content_type == "application/json":
            reply = json.loads(text)
            message = reply.get("error") or reply.get("reason") if isinstance(reply, dict) else None
            assert isinstance(message, str) and message, f"{request}: {status} JSON without an error message: {text!r}"
    async with client.get(health) as resp:
        assert resp.status == 200, f"after {request}: {health} answered {resp.status}"


# --- the attester -------------------------------------------------------------------------------

ATTESTER_ROUTES = [("GET", "/health"), ("GET", "/v1/partials/{}"), ("GET", "/v1/task-results/{}"),
                   ("POST", "/v1/observe"), ("POST", "/v1/roots"), ("GET", "/{}")]
_observe_body = st.fixed_dictionaries({"src_domain": st.sampled_from([SRC, DST, 0, -1, 2**64]) | json_values,
                                       "source_tx": st.sampled_from(["0xsrc", "", "zz"]) | json_values})


@pytest.fixture
async def attester_client(tmp_path: Path) -> AsyncIterator[TestClient]:
    signing_log = SigningLog(tmp_path / "attester.db")
    attester = Attester(1, 1, lambda digest: b"\x07" * 64, {SRC: FakeChain("evm", SRC), DST: FakeChain("solana", DST)},
                        signing_log, observe_rate=1e9)
    signed = envelope(1)
    signing_log.record(SignedEntry(src_domain=SRC, nonce=1, message_id=signed.message_id, epoch=1, partial=b"\x07" * 64,
                                   source_tx="0xsrc", signed_at=0.0))
    async with TestClient(TestServer(attester.build_app())) as client:
        yield client


@FUZZ
@given(request=requests(ATTESTER_ROUTES, bodies(_observe_body, limit=16 * 1024)))
@example(request=Request("POST", "/v1/observe", {}, {}, Body(b'{"src_domain": Infinity, "source_tx": "0x"}')))
@example(request=Request("POST", "/v1/observe", {}, {"Content-Type": "application/json; charset=bogus"},
                         Body(b'{"src_domain": 1, "source_tx": "0x"}')))
async def test_attester_endpoints_refuse_bad_requests_cleanly(attester_client: TestClient, request: Request) -> None:
    await assert_refused_cleanly(attester_client, request)


async def test_attester_refuses_json_nested_too_deep(attester_client: TestClient) -> None:
    with default_recursion_limit():
        await assert_refused_cleanly(attester_client, Request("POST", "/v1/observe", {}, {}, Body(DEEP_JSON.encode())))


# --- the relayer --------------------------------------------------------------------------------

RELAYER_ROUTES = [("GET", "/health"), ("GET", "/metrics"), ("GET", "/v1/messages"), ("GET", "/v1/messages/{}"),
                  ("POST", "/v1/messages/{}/retry"), ("GET", "/{}")]


@pytest.fixture
async def relayer_client(store: Store) -> AsyncIterator[TestClient]:
    settings_ = PipelineSettings(backoff=Backoff(base=0.0, jitter=0.0, max_attempts=2), confirm_poll=0.0)
    relayer = Relayer(store, {SRC: FakeChain("evm", SRC), DST: FakeChain("solana", DST)}, FakeCommittee(ready=False),
                      settings_)
    await relayer.observe(envelope(0), "0xsrc")
    async with TestClient(TestServer(relayer_app(relayer))) as client:
        yield client


@FUZZ
@given(request=requests(RELAYER_ROUTES, bodies(json_values, limit=64 * 1024)))
@example(request=Request("GET", "/v1/messages", {"limit": "9" * 5000}, {}, Body(None)))
@example(request=Request("GET", "/v1/messages", {"limit": "²"}, {}, Body(None)))
async def test_relayer_endpoints_refuse_bad_requests_cleanly(relayer_client: TestClient, request: Request) -> None:
    await assert_refused_cleanly(relayer_client, request)


# --- the worker ---------------------------------------------------------------------------------

WORKER_ROUTES = [("GET", "/health"), ("GET", "/metrics"), ("GET", "/v1/outputs/{}"), ("GET", "/{}")]


class _Board:
    """Only what the worker's HTTP face reads of its board."""

    name, domain, address = "fake", 900, b"\x0b" * 32

    async def close(self) -> None: ...


@pytest.fixture
async def worker_client(tmp_path: Path) -> AsyncIterator[TestClient]:
    store = await WorkerStore.open(tmp_path / "worker.db")
    worker = WorkerV2(_Board(), ExecutorRegistry.load({}), Ed25519PrivateKey.generate(), {SRC: b"\x00" * 32},  # type: ignore[arg-type]
                      store)
    output = b"an output served by URI"
    await store.add(b"\x01" * 32, SRC, "echo", envelope(3).encode(), "0xdelivery", position=1, deadline=2**40)
    await store.executed(b"\x01" * 32, output, keccak256(output), b"result")
    try:
        async with TestClient(TestServer(worker_app(worker))) as client:
            yield client
    finally:
        await store.close()


@FUZZ
@given(request=requests(WORKER_ROUTES, bodies(limit=1024**2)))
async def test_worker_endpoints_refuse_bad_requests_cleanly(worker_client: TestClient, request: Request) -> None:
    await assert_refused_cleanly(worker_client, request)


async def test_worker_serves_a_stored_output(worker_client: TestClient) -> None:
    output = b"an output served by URI"
    async with worker_client.get(f"/v1/outputs/0x{keccak256(output).hex()}") as resp:
        assert resp.status == 200 and await resp.read() == output


# --- the feed server ----------------------------------------------------------------------------

FEED_ROUTES = [("POST", "/v1/reports"), ("GET", "/v1/feeds"), ("GET", "/v1/feeds/{}/latest"),
               ("GET", "/v1/feeds/{}/history"), ("GET", "/v1/stream"), ("GET", "/openapi.json"), ("GET", "/health"),
               ("GET", "/metrics"), ("GET", "/{}")]


@pytest.fixture
async def feed_server(dealt: Dealt) -> AsyncIterator[tuple[FeedServer, TestClient]]:
    server = make_server(dealt, keepalive_s=0.2)
    async with TestClient(TestServer(server.app)) as client:
        yield server, client


def _signed_reports(dealt: Dealt) -> st.SearchStrategy[object]:
    """Reports the committee signed (valid, or with one field changed), for POST /v1/reports."""
    reports = [dealt.sign(round_=r, feed_id=f).to_json() for r in (1, 2) for f in ("ETH/USD", "BTC/USD")]
    return st.sampled_from(reports) | st.builds(
        lambda report, key, value: {**report, key: value},
        st.sampled_from(reports), st.sampled_from(sorted(reports[0])), json_values,
    )


@pytest.fixture(scope="module")
def signed_reports(dealt: Dealt) -> st.SearchStrategy[object]:
    return _signed_reports(dealt)


@FUZZ
@given(data=st.data())
async def test_feed_server_endpoints_refuse_bad_requests_cleanly(feed_server, signed_reports, data) -> None:
    server, client = feed_server
    request = data.draw(requests(FEED_ROUTES, bodies(signed_reports, limit=16 * 1024)), label="request")
    if request.path == "/v1/stream" and request.method == "GET":
        # A stream that opens streams for ever: its status is the answer.
        async with client.request("GET", request.path, params=request.query, headers=request.headers) as resp:
            status = resp.status
            text = b"" if status == 200 else await resp.read()
        assert status < 500, f"{request}: {status} {text[:300]!r}"
        if status >= 400:
            assert json.loads(text)["error"]
        async with client.get("/health") as resp:
            assert resp.status == 200
        return
    await assert_refused_cleanly(client, request)


async def test_feed_server_deep_json_and_bad_headers(feed_server) -> None:
    _, client = feed_server
    with default_recursion_limit():
        await assert_refused_cleanly(client, Request("POST", "/v1/reports", {}, {}, Body(DEEP_JSON.encode())))
        await assert_refused_cleanly(client, Request("GET", "/v1/stream", {"since": "{" + DEEP_JSON[:3000]}, {},
                                                     Body(None)))
    for request in [
        Request("POST", "/v1/reports", {}, {"Content-Type": "application/json; charset=bogus"}, Body(b"{}")),
        Request("GET", "/v1/stream", {}, {"Last-Event-ID": "ETH/USD:²"}, Body(None)),
        Request("GET", "/v1/stream", {"since": "ETH/USD:²"}, {}, Body(None)),
        Request("GET", "/v1/feeds/ETH%2FUSD/history", {"from_round": "²"}, {}, Body(None)),
    ]:
        await assert_refused_cleanly(client, request)


_ws_text = st.one_of(
    json_values.map(json.dumps),
    st.text(max_size=60),
    st.sampled_from([DEEP_JSON, '{"op": "subscribe", "ids": "ETH/USD"}', '{"op": "subscribe", "ids": [1]}',
                     '{"op": "subscribe", "ids": ["nope"]}', '{"op": "subscribe", "since": "ETH/USD:²"}',
                     '{"op": "subscribe", "since": {"ETH/USD": -1}}', '{"op": "unsubscribe"}', '{"op": 1}']),
    st.fixed_dictionaries({"op": st.sampled_from(["subscribe", "unsubscribe"]),
                           "ids": st.just(["ETH/USD"]) | json_values, "since": json_values}).map(json.dumps),
)


class Frames(list):
    def __repr__(self) -> str:  # keeps hypothesis' failure report short
        return "Frames(" + ", ".join(repr(m[:80]) + ("..." if len(m) > 80 else "") for m in self) + ")"


@settings(FUZZ, max_examples=budget(60))
@given(messages=st.lists(_ws_text | st.binary(max_size=20), min_size=1, max_size=4).map(Frames))
async def test_feed_server_websocket_answers_bad_commands_and_stays_open(feed_server, messages) -> None:
    await _websocket_answers(feed_server, messages)


async def test_feed_server_websocket_answers_json_nested_too_deep(feed_server) -> None:
    with default_recursion_limit():
        await _websocket_answers(feed_server, Frames([DEEP_JSON]))


async def _websocket_answers(feed_server, messages: Frames) -> None:
    _, client = feed_server
    async with client.ws_connect("/v1/ws") as ws:
        for message in messages:
            if isinstance(message, bytes):
                await ws.send_bytes(message)
            else:
                await ws.send_str(message)
        # Still open and still answering: a valid command gets its reply after whatever came before.
        await ws.send_str(json.dumps({"op": "unsubscribe", "ids": ["BTC/USD"]}))
        while True:
            reply = await ws.receive(timeout=10)
            assert reply.type == aiohttp.WSMsgType.TEXT, f"{messages}: the server closed the socket ({reply})"
            event = json.loads(reply.data)
            assert event.get("type") in ("error", "subscribed", "unsubscribed", "report", "live", "stale", "gap")
            if event["type"] == "error":
                assert event["message"]
            if event == {"type": "unsubscribed", "ids": ["BTC/USD"]}:
                break
