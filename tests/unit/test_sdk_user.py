"""The SDK as a user builds it: from RPC URLs + deployment addresses or a known network name, no key
to read, the user's own signer per client or per call, never the relayer's; full service URLs;
message / find / the blocking client. Chains are fakes here; tests/e2e/test_sdk_user.py runs the
same against real chains."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from eth_account import Account
from solders.keypair import Keypair

from relay.config import parse_config
from relay.envelope import Envelope
from relay.interfaces import MessageStatus, Observation
from relay.ports import free_port
from relay.sdk import (MessageNotFoundError, MissingSignerError, SdkError, SyncTesseraClient, TesseraClient,
                       UnknownChainError, evm_chain, solana_chain)

GATEWAY = "0x" + "11" * 20
PROGRAM = "Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo"


def _chains() -> dict:
    return {"base": evm_chain("https://sepolia.base.org", network="base-sepolia", gateway=GATEWAY,
                              task_board="0x" + "22" * 20),
            "sol": solana_chain("https://api.devnet.solana.com", network="solana-devnet", program_id=PROGRAM)}


def _envelope(dst_domain: int = 1399811151, nonce: int = 0) -> Envelope:
    return Envelope(kind=4, nonce=nonce, src_domain=84532, src_sender=bytes(32), dst_domain=dst_domain,
                    dst_receiver=bytes(32), payload=b"hi")


def test_a_network_name_fills_in_kind_chain_id_domain_and_addresses_land_where_the_adapters_read_them() -> None:
    client = TesseraClient.connect(_chains())
    base, sol = client.config.chains["base"], client.config.chains["sol"]
    assert (base.kind, base.chain_id, base.domain) == ("evm", 84532, 84532)
    assert base.contracts == {"Gateway": GATEWAY, "TaskBoardV2": "0x" + "22" * 20}
    assert (sol.kind, sol.domain, sol.program_id) == ("solana", 1399811151, PROGRAM)
    assert client.relayer_url is None and client.feeds_urls == []  # nothing guessed from a listen address


def test_chain_tables_without_a_network_need_their_numbers() -> None:
    with pytest.raises(SdkError, match="give network=.*or chain_id="):
        evm_chain("http://127.0.0.1:8545", gateway=GATEWAY)
    with pytest.raises(SdkError, match="give network=.*or domain="):
        solana_chain("http://127.0.0.1:8899", program_id=PROGRAM)
    table = evm_chain("http://127.0.0.1:8545", gateway=GATEWAY, chain_id=31337)
    assert table["domain"] == 31337
    with pytest.raises(SdkError, match="rpc_urls: 'ws://x' is not a http/https URL; give the full URL"):
        evm_chain("ws://x", gateway=GATEWAY, chain_id=1)
    with pytest.raises(SdkError, match=r"chains\.base\.network: unknown network 'base-sepolai'; did you mean"):
        TesseraClient.connect({"base": {**_chains()["base"], "network": "base-sepolai"}})


def test_service_urls_are_taken_whole_and_must_be_urls() -> None:
    client = TesseraClient.connect(_chains(), relayer_url="https://relayer.example.org/",
                                   feeds_url=["https://feeds-a.example.org", "https://feeds-b.example.org"])
    assert client.relayer_url == "https://relayer.example.org"
    assert client.feeds_urls == ["https://feeds-a.example.org", "https://feeds-b.example.org"]
    with pytest.raises(SdkError, match=r"relayer_url: '127\.0\.0\.1:7300' is not a http/https URL; give the full URL"):
        TesseraClient.connect(_chains(), relayer_url="127.0.0.1:7300")


def test_missing_services_say_which_option_to_pass() -> None:
    client = TesseraClient.connect(_chains())
    with pytest.raises(SdkError, match="relayer_url="):
        client.relayer_api()
    with pytest.raises(SdkError, match="feeds_url="):
        client.feeds
    with pytest.raises(SdkError, match="committee="):
        client.committee


def test_connect_reads_no_key_files_and_refuses_signers_for_unknown_chains() -> None:
    table = {**_chains()["base"], "sender": {"file": "keys/user.key", "allow_raw": True}}
    with pytest.raises(SdkError, match=r"names sender: connect\(\) reads no key files; pass your own key as signers="):
        TesseraClient.connect({"base": table})
    with pytest.raises(UnknownChainError, match="signers for 'evm': no such chain; known: base, sol"):
        TesseraClient.connect(_chains(), signers={"evm": Account.create()})


async def test_sending_without_a_key_says_what_is_missing_after_checking_the_request() -> None:
    client = TesseraClient.connect(_chains())
    with pytest.raises(SdkError, match="receiver must be 32 bytes"):
        await client.send("base", "sol", bytes(31), b"")
    with pytest.raises(MissingSignerError, match=r"sending a message on chain 'base' needs a key.*pass signer="):
        await client.send("base", "sol", bytes(32), b"hi")
    with pytest.raises(MissingSignerError, match="requesting a task on chain 'sol' needs a key"):
        await client.request_task(src="sol", dst="base", executor="echo", input=b"x", max_fee=1)


async def test_a_signer_of_the_wrong_kind_is_refused_naming_the_type_the_chain_needs() -> None:
    client = TesseraClient.connect(_chains(), signers={"base": Keypair(), "sol": Account.create()})
    with pytest.raises(SdkError, match="'base' is an EVM chain: its signer must be an eth_account LocalAccount"):
        await client.send("base", "sol", bytes(32), b"hi")
    with pytest.raises(SdkError, match="'sol' is a Solana chain: its signer must be a solders Keypair"):
        await client.send("sol", "base", bytes(32), b"hi")


class _Adapter:
    """A gateway adapter that records who sent what; statuses and observations are scripted."""

    def __init__(self, domain: int, signer=None, statuses=None, observations=None, refuse: str | None = None) -> None:
        self.domain, self.signer = domain, signer
        self.statuses = statuses or {}
        self.observations = observations or {}
        self.refuse = refuse
        self.sent: list[tuple] = []
        self.started = self.closed = False

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.closed = True

    async def send_message(self, dst_domain, receiver, kind, payload):
        self.sent.append((dst_domain, payload))
        return _envelope(dst_domain), f"tx-by-{self.signer}"

    async def message_status(self, message_id, envelope=None):
        return self.statuses.get(message_id, MessageStatus.NOT_DELIVERED)

    async def delivery_tx(self, message_id):
        return "0xdelivery"

    async def is_delivered(self, message_id, envelope=None):
        return self.statuses.get(message_id) is MessageStatus.DELIVERED

    async def reobserve(self, source_tx):
        if self.refuse:
            raise ValueError(self.refuse)
        return self.observations.get(source_tx, [])


class _Driver:
    def __init__(self, domain: int) -> None:
        self.domain = domain
        self.made: list[_Adapter] = []

    def messaging(self, *, role="relayer", with_signer=True, signer=None):
        assert role == "sender", "the SDK asked for the relayer's adapter"
        adapter = _Adapter(self.domain, signer=signer if signer is not None else "config-sender")
        self.made.append(adapter)
        return adapter


async def test_the_call_signer_wins_over_the_clients_and_the_relayers_signer_is_never_used() -> None:
    mine, theirs = Account.create(), Account.create()
    config = parse_config({"chains": {
        "evm": {"kind": "evm", "domain": 31337, "chain_id": 31337, "rpc_urls": ["http://127.0.0.1:9"],
                "contracts": {"Gateway": GATEWAY}, "signer": {"file": "relayer.key", "allow_raw": True}},
        "sol": {"kind": "solana", "domain": 5, "rpc_urls": ["http://127.0.0.1:9"], "program_id": PROGRAM}}})
    # An operator config whose chain has only the relayer's signer: the SDK drops it, so it cannot send.
    client = TesseraClient(config)
    assert client.config.chains["evm"].signer is None
    with pytest.raises(MissingSignerError, match="chain 'evm' needs a key"):
        await client.send("evm", "sol", bytes(32), b"x")
    client = TesseraClient(config, signers={"evm": mine})
    driver = client._drivers["evm"] = _Driver(31337)
    client._adapters["sol"] = _Adapter(5)
    assert (await client.send("evm", "sol", bytes(32), b"a")).source_tx == f"tx-by-{mine}"
    assert (await client.send("evm", "sol", bytes(32), b"b", signer=theirs)).source_tx == f"tx-by-{theirs}"
    assert (await client.send("evm", "sol", bytes(32), b"c")).source_tx == f"tx-by-{mine}"
    assert len(driver.made) == 2 and all(a.started for a in driver.made)  # one started adapter per signer, reused
    await client.close()
    assert all(a.closed for a in driver.made)


async def _relayer(records: dict[str, dict]) -> tuple[web.AppRunner, str]:
    async def message(request: web.Request) -> web.Response:
        record = records.get(request.match_info["id"])
        return web.json_response(record or {"error": "unknown message id"}, status=200 if record else 404)

    app = web.Application()
    app.router.add_get("/v1/messages/{id}", message)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


async def test_message_asks_the_destination_and_the_relayer_and_refuses_a_relayer_that_lies() -> None:
    env, other = _envelope(), _envelope(nonce=1)
    delivered, failed = _envelope(nonce=2), _envelope(nonce=3)
    records = {"0x" + env.message_id.hex(): {"envelope": "0x" + env.encode().hex(), "stage": "submitted",
                                             "reason": None, "attempts": 1, "source_tx": "0xsrc"},
               "0x" + other.message_id.hex(): {"envelope": "0x" + env.encode().hex(), "stage": "submitted"}}
    runner, url = await _relayer(records)
    try:
        client = TesseraClient.connect(_chains(), relayer_url=url)
        client._adapters["base"] = _Adapter(84532)
        client._adapters["sol"] = _Adapter(1399811151, statuses={delivered.message_id: MessageStatus.DELIVERED,
                                                                  failed.message_id: MessageStatus.HANDLER_FAILED})
        info = await client.message("0x" + env.message_id.hex())
        assert (info.chain, info.status, info.stage, info.source_tx, info.envelope) == (
            "sol", MessageStatus.NOT_DELIVERED, "submitted", "0xsrc", env)
        assert not info.delivered and info.delivery_tx is None
        # Unknown to the relayer: the chains are asked, every one of them.
        info = await client.message(delivered.message_id)
        assert info.delivered and (info.chain, info.delivery_tx, info.stage) == ("sol", "0xdelivery", None)
        assert (await client.message(failed.message_id)).failed
        with pytest.raises(SdkError, match="does not hash to .*do not trust that relayer"):
            await client.message(other.message_id)
        with pytest.raises(SdkError, match="a message id is 32 bytes, not 3"):
            await client.message(b"abc")
    finally:
        await runner.cleanup()
    # Without a relayer, and with one that is down: the chains still answer.
    for relayer_url in (None, url):
        client = TesseraClient.connect(_chains(), relayer_url=relayer_url)
        client._adapters["base"] = _Adapter(84532)
        client._adapters["sol"] = _Adapter(1399811151, statuses={delivered.message_id: MessageStatus.DELIVERED})
        info = await client.message(delivered.message_id)
        assert info.delivered and info.chain == "sol"
        assert (info.relayer_error is None) == (relayer_url is None)


async def test_find_reads_the_source_transaction_on_whichever_chain_knows_it() -> None:
    env = _envelope()
    client = TesseraClient.connect(_chains())
    client._adapters["base"] = _Adapter(84532, observations={"0xabc": [Observation(env, "0xabc", 7, "7")]})
    client._adapters["sol"] = _Adapter(1399811151, refuse="'0xabc' is not a base58 Solana transaction signature")
    (found,) = await client.find("0xabc")
    assert (found.envelope, found.source_chain, found.source_tx) == (env, "base", "0xabc")
    with pytest.raises(MessageNotFoundError, match=r"no final message from transaction 0xdef on base, sol after 0s.*"
                                                   r"sol: ValueError: '0xabc' is not a base58"):
        await client.find("0xdef", timeout=0)
    with pytest.raises(UnknownChainError):
        await client.find("0xabc", chain="evm", timeout=0)


def test_the_blocking_client_offers_message_find_tasks_and_feeds() -> None:
    env = _envelope()
    from tests.support.committee import deal

    client = TesseraClient.connect(_chains(), feeds_url="http://127.0.0.1:9", committee=deal(epoch=3).committee)
    client._adapters["base"] = _Adapter(84532, observations={"0xabc": [Observation(env, "0xabc", 7, "7")]})
    client._adapters["sol"] = _Adapter(1399811151, statuses={env.message_id: MessageStatus.DELIVERED})
    with SyncTesseraClient(client=client) as sync:
        assert sync.find("0xabc")[0].envelope == env
        assert sync.message(env.message_id).delivered
        with pytest.raises(MissingSignerError):
            sync.request_task(src="base", dst="sol", executor="echo", input=b"x", max_fee=1)
        assert type(sync.feeds).__name__ == "_Blocking" and callable(sync.feeds.latest)
        assert not sync.verify(env, 3, bytes(64))
    assert all(a.closed for a in client._adapters.values())


def test_blocking_views_turn_coroutines_and_async_iterators_into_plain_calls() -> None:
    from relay.sdk import _Blocking

    class Handle:
        async def result(self, timeout: float = 1.0) -> str:
            await asyncio.sleep(0)
            return f"done in {timeout}"

        async def events(self):
            for stage in ("requested", "claimed", "completed"):
                yield stage

    runner = asyncio.Runner()
    try:
        handle = _Blocking(Handle(), runner)
        assert handle.result(timeout=2) == "done in 2"
        assert list(handle.events()) == ["requested", "claimed", "completed"]
    finally:
        runner.close()


def test_attester_urls_override_the_committee_files_endpoints(tmp_path) -> None:
    from tests.support.committee import deal

    dealt = deal(n=3, t=2)
    dealt.committee.save(tmp_path / "committee.toml")
    client = TesseraClient.connect(_chains(), committee=tmp_path / "committee.toml",
                                   attester_urls={2: "https://attester-2.example.org/"})
    endpoints = {m.index: m.endpoint for m in client.committee.members}
    assert endpoints[2] == "https://attester-2.example.org"
    assert endpoints[1] == dealt.committee.member(1).endpoint
    with pytest.raises(SdkError, match=r"attester_urls for member\(s\) \[9\]: the committee's members are \[1, 2, 3\]"):
        TesseraClient.connect(_chains(), committee=dealt.committee, attester_urls={9: "https://x"})


def test_feeds_accept_the_outgoing_committee_only_during_the_grace(tmp_path) -> None:
    import time

    from tests.support.committee import deal

    old, new = deal(epoch=1).committee, deal(epoch=2).committee
    old.save(tmp_path / "old.toml")
    new.save(tmp_path / "new.toml")
    for until, epochs in ((int(time.time()) + 3600, {1, 2}), (int(time.time()) - 1, {2})):
        client = TesseraClient.connect(_chains(), committee=tmp_path / "new.toml", previous_committee=tmp_path / "old.toml",
                                       previous_valid_until=until, feeds_url="https://feeds.example.org")
        assert set(client.feeds.committees) == epochs


def test_the_blocking_client_has_every_public_call_of_the_async_one() -> None:
    public = {n for n, v in vars(TesseraClient).items() if not n.startswith("_") and callable(v)
              and n not in {"connect", "from_config", "start", "close"}}
    missing = {n for n in public if not callable(getattr(SyncTesseraClient, n, None))}
    # Those not written out are reached through __getattr__, run to completion on the client's loop.
    client = TesseraClient.connect(_chains())
    client._adapters["base"] = _Adapter(84532)
    client._adapters["sol"] = _Adapter(1399811151)
    with SyncTesseraClient(client=client) as sync:
        for name in missing:
            assert callable(getattr(sync, name)), name
        assert sync.is_delivered(_envelope()) is False  # through the fake destination's status
        with pytest.raises(SdkError, match="relayer_url="):
            sync.relayer_api()  # a plain method of the async client, reached through __getattr__
        with pytest.raises(AttributeError):
            sync._private_thing
