import asyncio
from pathlib import Path
from unittest import mock

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from relay.api import _authorize_operator, build_app
from relay.backoff import Backoff
from relay.cli import main
from relay.config import dump_config, parse_config
from relay.interfaces import EndpointHealth
from relay.pipeline import PipelineSettings, Relayer
from relay.store import Stage, Store
from tests.support.fakes import DST, SRC, FakeChain, FakeCommittee, envelope

FAST = PipelineSettings(backoff=Backoff(base=0.0, jitter=0.0, max_attempts=2), confirm_poll=0.0)


@pytest.fixture
async def relayer(tmp_path: Path):
    store = await Store.open(tmp_path / "relayer.db")
    r = Relayer(store, {SRC: FakeChain("evm", SRC), DST: FakeChain("solana", DST)}, FakeCommittee(ready=False), FAST)
    yield r
    await store.close()


async def test_health_metrics_status_and_retry_over_http(relayer: Relayer) -> None:
    env = envelope(0)
    await relayer.observe(env, "0xsrc")
    await relayer.process_due()
    await relayer.process_due()  # second failure exhausts max_attempts=2 -> dead
    async with TestClient(TestServer(build_app(relayer))) as client:
        health = await client.get("/health")
        assert health.status == 200 and (await health.json())["chains"]["evm"][0]["healthy"] is True
        metrics = await (await client.get("/metrics")).text()
        assert 'tessera_messages{reason="waiting_for_signatures",stage="dead"} 1.0' in metrics
        assert 'tessera_dead_letters_total{reason="waiting_for_signatures"} 1.0' in metrics
        listing = await (await client.get("/v1/messages")).json()
        assert listing[0]["stage"] == "dead" and listing[0]["next_attempt_in_s"] is None
        one = await client.get(f"/v1/messages/0x{env.message_id.hex()}")
        body = await one.json()
        assert body["reason"].startswith("retries exhausted") and body["reason_code"] == "waiting_for_signatures"
        assert (await client.get("/v1/messages/0x1234")).status == 400
        assert (await client.get("/v1/messages/" + "00" * 32)).status == 404
        retried = await client.post(f"/v1/messages/{env.message_id.hex()}/retry")
        body = await retried.json()
        assert body["stage"] == "observed" and body["attempts"] == 0 and body["reason"].startswith("manual retry")
        assert body["reason_code"] == "manual_retry"


def test_cli_status_and_retry_read_the_store(tmp_path: Path, capsys) -> None:
    env = envelope(7)

    async def setup() -> None:
        store = await Store.open(tmp_path / "relayer.db")
        r = Relayer(store, {SRC: FakeChain("evm", SRC), DST: FakeChain("solana", DST)}, FakeCommittee(ready=False), FAST)
        await r.observe(env, "0xsrc")
        await r.process_due()
        await store.close()

    asyncio.run(setup())
    config = parse_config({
        "chains": {"evm": {"kind": "evm", "domain": SRC, "chain_id": SRC, "rpc_urls": ["http://127.0.0.1:1"]}},
        "relayer": {"db": str(tmp_path / "relayer.db")},
    })
    dump_config(config, tmp_path / "config.toml")
    assert main(["status", "--config", str(tmp_path / "config.toml")]) == 0
    table = capsys.readouterr().out
    assert "observed=1" in table and f"0x{env.message_id.hex()[:12]}" in table and "waiting for signatures" in table
    assert "why: waiting_for_signatures=1" in table
    assert main(["status", env.message_id.hex()[:10], "--config", str(tmp_path / "config.toml")]) == 0
    assert "stage: observed" in capsys.readouterr().out
    assert main(["retry", "0x" + env.message_id.hex(), "--config", str(tmp_path / "config.toml")]) == 0
    assert "due now" in capsys.readouterr().out
    assert main(["status", "ffff", "--config", str(tmp_path / "config.toml")]) == 1
    assert "no message with id ffff" in capsys.readouterr().err


class _Unhealthy(FakeChain):
    """Every endpoint of this chain is failing."""

    def health(self):
        return [EndpointHealth(url=f"fake://{self.name}/{n}", healthy=False, total_errors=3, last_error="timed out")
                for n in (1, 2)]


async def test_health_answers_503_when_a_chain_has_no_healthy_endpoint(store: Store) -> None:
    healthy = Relayer(store, {SRC: FakeChain("evm", SRC), DST: FakeChain("solana", DST)}, FakeCommittee(), FAST)
    sick = Relayer(store, {SRC: FakeChain("evm", SRC), DST: _Unhealthy("solana", DST)}, FakeCommittee(), FAST)
    async with TestClient(TestServer(build_app(healthy))) as client:
        async with client.get("/health") as resp:
            assert resp.status == 200 and (await resp.json())["ok"] is True
    async with TestClient(TestServer(build_app(sick))) as client:
        async with client.get("/health") as resp:
            body = await resp.json()
            assert resp.status == 503 and body["ok"] is False
            assert body["chains"]["solana"][0] == {"url": "fake://solana/1", "healthy": False, "errors": 3,
                                                   "last_error": "timed out"}


def _mocked(peer: str, headers: dict | None = None):
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (peer, 40000) if name == "peername" else default
    return make_mocked_request("POST", "/v1/messages/00/retry", headers=headers or {}, transport=transport)


def test_operator_routes_answer_only_locally_without_a_token() -> None:
    _authorize_operator(_mocked("127.0.0.1"), None)
    _authorize_operator(_mocked("::1"), None)
    with pytest.raises(web.HTTPForbidden) as refused:
        _authorize_operator(_mocked("203.0.113.7"), None)
    assert "admin_token" in refused.value.text


def test_operator_routes_need_the_token_when_one_is_set() -> None:
    with pytest.raises(web.HTTPUnauthorized):
        _authorize_operator(_mocked("127.0.0.1"), "s3cret")  # a token binds local callers too
    with pytest.raises(web.HTTPUnauthorized):
        _authorize_operator(_mocked("203.0.113.7", {"Authorization": "Bearer wrong"}), "s3cret")
    _authorize_operator(_mocked("203.0.113.7", {"Authorization": "Bearer s3cret"}), "s3cret")


async def test_retry_over_http_with_an_admin_token(relayer: Relayer) -> None:
    env = envelope(3)
    await relayer.observe(env, "0xsrc")
    async with TestClient(TestServer(build_app(relayer, admin_token="s3cret"))) as client:
        refused = await client.post(f"/v1/messages/{env.message_id.hex()}/retry")
        assert refused.status == 401 and "admin_token" in (await refused.json())["error"]
        assert (await client.get("/health")).status == 200  # read-only routes stay open
        allowed = await client.post(f"/v1/messages/{env.message_id.hex()}/retry",
                                    headers={"Authorization": "Bearer s3cret"})
        assert allowed.status == 200 and (await allowed.json())["reason_code"] == "manual_retry"
