"""Proof attestations: the derived envelope, the checks attesters run before co-signing it, the
attester's background check and HTTP answers, and the relayer's side (queueing, refusals)."""

from __future__ import annotations

import asyncio
import sqlite3
import struct
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import attest
import relay.attester as attester_module
from relay.attester import Attester
from attest.signing_log import SigningLog
from relay.interfaces import Observation
from relay.collector import CommitteeCollector
from relay.envelope import Envelope, keccak256
from relay.pipeline import PipelineSettings, Relayer
from relay.backoff import Backoff
from relay.protocol import COMMITTEE_DOMAIN, MessageKind
from relay.store import Stage, Store
from relay.tasks import AttestationMethod, ExecutorRegistry, ProofKind, ProofVerifierRegistry, TaskRequest, TaskResult
from relay.tasks.attestation import (
    REQUEST_NOT_SEEN,
    AttestationError,
    FetchError,
    attestation_for,
    check_result,
    derive_attestation,
    method_for,
)
from relay.tasks.sentiment import SentimentExecutor
from tests.support.fakes import FakeChain, FakeCommittee
from relay.ports import free_port

SOL, EVM = 900, 31337
USER = bytes(range(32))  # the requester on Solana
BOARD = bytes(12) + bytes.fromhex("ab" * 20)  # the board (or EOA) on EVM that workers answer from
PAYOUT = bytes(12) + bytes.fromhex("cd" * 20)
WORKER = Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)
TEXT = b"Tessera is a wonderful, reliable bridge!"
BLOCK_TIME = 1_790_000_000


def request_envelope(executor: str = "sentiment", input: bytes = TEXT, nonce: int = 0) -> Envelope:
    payload = TaskRequest(executor, max_fee=10**6, deadline=2**40, input=input).encode()
    return Envelope(MessageKind.TASK_REQUEST, nonce, SOL, USER, EVM, BOARD, payload)


def result_envelope(request: Envelope, output: bytes, *, executor: str = "sentiment",
                    proof_kind: ProofKind = ProofKind.REEXECUTION, src: tuple[int, bytes] = (EVM, BOARD),
                    key: Ed25519PrivateKey = WORKER, output_uri: str | None = None, nonce: int = 0) -> Envelope:
    result = TaskResult.signed(key, request_id=request.message_id, executor=executor, output=output, payout=PAYOUT,
                               proof_kind=proof_kind, output_uri=output_uri)
    return Envelope(MessageKind.TASK_RESULT, nonce, src[0], src[1], SOL, USER, result.encode())


def right_output(text: bytes = TEXT) -> bytes:
    return SentimentExecutor().analyse(text)


def wrong_output() -> bytes:
    return right_output().replace(b'"positive"', b'"negative"')


@pytest.fixture(scope="module")
def registries() -> tuple[ExecutorRegistry, ProofVerifierRegistry]:
    executors = ExecutorRegistry.load()
    return executors, ProofVerifierRegistry.load(executors, plugins=[])


async def no_fetch(uri: str, max_bytes: int) -> bytes:
    raise FetchError(f"no network in this test ({uri})")


# --- derivation ------------------------------------------------------------------------------


def test_derivation_is_deterministic_and_follows_the_protocol_doc() -> None:
    request = request_envelope()
    result = result_envelope(request, right_output())
    first = derive_attestation(result, BLOCK_TIME, AttestationMethod.REEXECUTION)
    assert first == derive_attestation(Envelope.decode(result.encode()), BLOCK_TIME, 2)
    assert first == attestation_for(result, BLOCK_TIME)  # method from proof kind 1
    raw = first.encode()
    # Header: version 1, kind 3, nonce 0, src (0, 32 zero bytes), dst = the result's destination.
    assert raw[0] == 1 and raw[1] == 3
    assert struct.unpack(">QI", raw[2:14]) == (0, COMMITTEE_DOMAIN)
    assert raw[14:46] == bytes(32)
    assert struct.unpack(">I", raw[46:50]) == (SOL,) and raw[50:82] == USER
    payload = raw[82:]
    decoded = TaskResult.decode(result.payload)
    assert len(payload) == 170
    assert payload[0:32] == request.message_id
    assert payload[32:64] == result.message_id
    assert payload[64:96] == keccak256(right_output()) == decoded.output_hash
    assert payload[96:128] == decoded.worker and payload[128:160] == PAYOUT
    assert payload[160] == 2 and payload[161] == 1
    assert int.from_bytes(payload[162:170], "big") == BLOCK_TIME
    # A different block time (a reorg into another block) is a different attestation.
    assert derive_attestation(result, BLOCK_TIME + 1, 2).message_id != first.message_id


def test_method_follows_the_proof_kind_only() -> None:
    assert [method_for(k) for k in ProofKind] == [1, 2, 3, 3]
    with pytest.raises(AttestationError, match="only TASK_RESULT"):
        derive_attestation(request_envelope(), BLOCK_TIME, 1)
    broken = Envelope(MessageKind.TASK_RESULT, 0, EVM, BOARD, SOL, USER, b"\x00" * 10)
    with pytest.raises(AttestationError, match="does not decode"):
        attestation_for(broken, BLOCK_TIME)


# --- check_result ----------------------------------------------------------------------------


async def test_correct_sentiment_result_is_accepted_by_re_execution(registries) -> None:
    request = request_envelope()
    check = await check_result(request, result_envelope(request, right_output()), *registries, no_fetch)
    assert check.ok, check.reason
    assert check.method is AttestationMethod.REEXECUTION


async def test_wrong_sentiment_output_is_refused_naming_the_mismatch(registries) -> None:
    request = request_envelope()
    ok, method, reason = await check_result(request, result_envelope(request, wrong_output()), *registries, no_fetch)
    assert not ok and method == 2
    assert "re-execution gave different bytes" in reason and "sentiment" in reason
    # Claiming no proof does not dodge the check: a deterministic executor is always re-run.
    no_proof = result_envelope(request, wrong_output(), proof_kind=ProofKind.NONE)
    ok, method, reason = await check_result(request, no_proof, *registries, no_fetch)
    assert not ok and method == 1 and reason.startswith("output mismatch on re-execution")


async def test_bad_worker_signature_is_refused(registries) -> None:
    request = request_envelope()
    good = TaskResult.decode(result_envelope(request, right_output()).payload)
    forged = TaskResult(good.request_id, good.executor, good.output_hash, good.worker, bytes(12) + b"\xee" * 20,
                        good.signature, good.proof_kind, good.proof, good.output)  # payout swapped
    env = Envelope(MessageKind.TASK_RESULT, 0, EVM, BOARD, SOL, USER, forged.encode())
    ok, _, reason = await check_result(request, env, *registries, no_fetch)
    assert not ok and "worker signature does not verify" in reason


async def test_wrong_board_wrong_requester_and_executor_mismatch_are_refused(registries) -> None:
    request = request_envelope()
    other_board = result_envelope(request, right_output(), src=(EVM, bytes(12) + b"\x99" * 20))
    ok, _, reason = await check_result(request, other_board, *registries, no_fetch)
    assert not ok and reason.startswith("wrong source board")
    back_elsewhere = Envelope(MessageKind.TASK_RESULT, 0, EVM, BOARD, SOL, bytes(32),
                              result_envelope(request, right_output()).payload)
    ok, _, reason = await check_result(request, back_elsewhere, *registries, no_fetch)
    assert not ok and reason.startswith("wrong destination")
    echo = result_envelope(request, TEXT, executor="echo")
    ok, _, reason = await check_result(request, echo, *registries, no_fetch)
    assert not ok and "executor mismatch" in reason and "'sentiment'" in reason and "'echo'" in reason


async def test_unknown_request_is_refused_as_not_seen(registries) -> None:
    request = request_envelope()
    ok, _, reason = await check_result(None, result_envelope(request, right_output()), *registries, no_fetch)
    assert not ok and reason.startswith(REQUEST_NOT_SEEN) and request.message_id.hex() in reason


async def test_http_result_is_attested_on_the_worker_signature_only(registries) -> None:
    request = request_envelope("http", b'{"messages": [{"role": "user", "content": "hi"}]}')
    result = result_envelope(request, b"Hello! How can I help?", executor="http", proof_kind=ProofKind.NONE)
    check = await check_result(request, result, *registries, no_fetch)
    assert check.ok, check.reason
    assert check.method is AttestationMethod.SIGNATURE_ONLY


async def test_output_by_uri_is_fetched_and_hash_checked(registries) -> None:
    request = request_envelope()
    env = result_envelope(request, right_output(), output_uri="https://results.example/1")
    served: dict[str, bytes] = {"https://results.example/1": right_output()}

    async def fetch(uri: str, max_bytes: int) -> bytes:
        return served[uri]

    assert (await check_result(request, env, *registries, fetch)).ok
    served["https://results.example/1"] = wrong_output()
    ok, _, reason = await check_result(request, env, *registries, fetch)
    assert not ok and "does not hash to the output_hash" in reason
    ok, _, reason = await check_result(request, env, *registries, no_fetch)
    assert not ok and reason.startswith("output not available")


async def test_http_fetch_is_bounded_and_says_what_went_wrong() -> None:
    from relay.tasks.attestation import http_fetch

    async def data(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * int(request.match_info["n"]))

    async def streamed(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()  # no Content-Length: the bound must hold while reading
        await resp.prepare(request)
        for _ in range(8):
            await resp.write(b"y" * 1000)
        return resp

    app = web.Application()
    app.router.add_get("/data/{n}", data)
    app.router.add_get("/stream", streamed)
    runner = web.AppRunner(app)
    await runner.setup()
    port = _port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}"
    try:
        assert await http_fetch(f"{base}/data/100", 100) == b"x" * 100
        with pytest.raises(FetchError, match="more than 99 bytes"):
            await http_fetch(f"{base}/data/100", 99)
        with pytest.raises(FetchError, match="more than 5000 bytes"):
            await http_fetch(f"{base}/stream", 5000)
        assert len(await http_fetch(f"{base}/stream", 8000)) == 8000
        with pytest.raises(FetchError, match="HTTP 404"):
            await http_fetch(f"{base}/nothing", 10)
        with pytest.raises(FetchError, match="only http"):
            await http_fetch("ipfs://bafy", 10)
    finally:
        await runner.cleanup()


async def test_tee_proof_without_a_plugin_is_refused_with_what_to_install(registries) -> None:
    request = request_envelope()
    result = TaskResult.signed(WORKER, request_id=request.message_id, executor="sentiment", output=right_output(),
                               payout=PAYOUT, proof_kind=ProofKind.TEE_QUOTE, proof=b"quote")
    env = Envelope(MessageKind.TASK_RESULT, 0, EVM, BOARD, SOL, USER, result.encode())
    ok, method, reason = await check_result(request, env, *registries, no_fetch)
    assert not ok and method == 3 and "no verifier for proof kind 2" in reason


# --- the attester ----------------------------------------------------------------------------


def _port() -> int:
    return free_port()  # below the ephemeral range: see relay/ports.py


def _observation(env: Envelope, tx: str, block_time: int | None = BLOCK_TIME) -> Observation:
    return Observation(envelope=env, source_tx=tx, position=1, cursor="1", block_time=block_time)


@pytest.fixture
async def committee(tmp_path: Path, registries):
    """Four in-process attesters serving HTTP on fake chains, and a collector for them."""
    ports = [_port() for _ in range(4)]
    committee, shares = attest.deal(4, 3, epoch=1, endpoints=[f"http://127.0.0.1:{p}" for p in ports])
    chains = {SOL: FakeChain("solana", SOL), EVM: FakeChain("evm", EVM)}
    attesters, runners = [], []
    for share, port in zip(shares, ports):
        signer = (lambda s: lambda digest: attest.partial_sign(s, digest).signature)(share)
        attester = Attester(share.index, 1, signer, chains, SigningLog(tmp_path / f"a{share.index}.db"),
                            executors=registries[0], verifiers=registries[1], fetch=no_fetch)
        runner = web.AppRunner(attester.build_app())
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        attesters.append(attester)
        runners.append(runner)
    collector = CommitteeCollector(committee, timeout=2)
    yield committee, chains, attesters, collector
    await collector.close()
    for runner in runners:
        await runner.cleanup()
    for a in attesters:
        a.signing_log.close()


async def _observe_all(attesters, chains, *observations: Observation) -> None:
    for attester in attesters:
        for o in observations:
            attester.attest(o, chains[o.envelope.src_domain])
    for attester in attesters:
        await attester.wait_checks()


async def _get(url: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.json()


async def test_attesters_co_sign_a_valid_result_and_serve_its_status(committee) -> None:
    committee_, chains, attesters, collector = committee
    request = request_envelope()
    result = result_envelope(request, right_output())
    await _observe_all(attesters, chains, _observation(request, "0xreq", None), _observation(result, "0xres"))
    attestation = attestation_for(result, BLOCK_TIME)
    collected = await collector.collect(attestation, "0xres")
    assert collected.signature is not None and not collected.refused
    assert committee_.verify(attestation.digest(1), collected.signature)
    status, body = await _get(f"{committee_.member(1).endpoint}/v1/task-results/0x{result.message_id.hex()}")
    assert status == 200 and body["status"] == "attested" and body["method"] == 2
    assert body["attestation_id"] == "0x" + attestation.message_id.hex()
    # The result itself is still signed as an ordinary message (the requester's board needs it).
    assert (await collector.collect(result, "0xres")).signature is not None
    # Seen again (another watcher pass, a relayer nudge): nothing new is signed.
    await _observe_all(attesters, chains, _observation(result, "0xres"))
    assert attesters[0].signing_log.by_message(attestation.message_id, 1) is not None


async def test_wrong_output_is_refused_by_every_member_with_the_reason(committee) -> None:
    committee_, chains, attesters, collector = committee
    request = request_envelope()
    result = result_envelope(request, wrong_output())
    await _observe_all(attesters, chains, _observation(request, "0xreq"), _observation(result, "0xres"))
    attestation = attestation_for(result, BLOCK_TIME)
    collected = await collector.collect(attestation, "0xres")
    assert collected.signature is None
    assert sorted(collected.refused) == [1, 2, 3, 4]
    assert all("re-execution gave different bytes" in why for why in collected.refused.values())
    status, body = await _get(f"{committee_.member(2).endpoint}/v1/partials/0x{attestation.message_id.hex()}")
    assert status == 403 and body["error"].startswith("refused: sentiment: re-execution gave different bytes")
    status, body = await _get(f"{committee_.member(2).endpoint}/v1/task-results/0x{result.message_id.hex()}")
    assert body["status"] == "refused" and "different bytes" in body["reason"]


async def test_result_seen_before_its_request_is_checked_again_when_it_arrives(committee) -> None:
    _, chains, attesters, collector = committee
    request = request_envelope()
    result = result_envelope(request, right_output())
    await _observe_all(attesters, chains, _observation(result, "0xres"))
    record = attesters[0].signing_log.task_result(result.message_id)
    assert record is not None and record.status == "refused" and record.reason.startswith(REQUEST_NOT_SEEN)
    await _observe_all(attesters, chains, _observation(request, "0xreq"))
    assert attesters[0].signing_log.task_result(result.message_id).status == "attested"
    assert (await collector.collect(attestation_for(result, BLOCK_TIME), "0xres")).signature is not None


async def test_one_attestation_per_result_even_if_its_block_time_changes(committee) -> None:
    _, chains, attesters, _ = committee
    request = request_envelope()
    result = result_envelope(request, right_output())
    await _observe_all(attesters, chains, _observation(request, "0xreq"), _observation(result, "0xres"))
    attester = attesters[0]
    first = attestation_for(result, BLOCK_TIME)
    # The same result reported again with another block time (a reorg): the record keeps the first.
    await _observe_all([attester], chains, _observation(result, "0xres2", BLOCK_TIME + 12))
    assert attester.signing_log.task_result(result.message_id).attestation_id == first.message_id
    assert attester.signing_log.by_message(attestation_for(result, BLOCK_TIME + 12).message_id, 1) is None


async def test_pending_checks_resume_after_a_restart(tmp_path: Path, registries) -> None:
    request = request_envelope()
    result = result_envelope(request, right_output())
    chains = {SOL: FakeChain("solana", SOL), EVM: FakeChain("evm", EVM)}
    log = SigningLog(tmp_path / "a.db")
    first = Attester(1, 1, lambda d: b"\x01" * 64, chains, log, executors=registries[0], verifiers=registries[1])
    first.attest(_observation(request, "0xreq"), chains[SOL])  # no running checks: called without a loop
    await asyncio.to_thread(first.attest, _observation(result, "0xres"), chains[EVM])
    assert log.task_result(result.message_id).status == "pending"
    second = Attester(1, 1, lambda d: b"\x01" * 64, chains, log, executors=registries[0], verifiers=registries[1])
    stop = asyncio.Event()
    running = asyncio.create_task(second.run(stop))  # schedules the pending check first
    for _ in range(500):
        if log.task_result(result.message_id).status != "pending":
            break
        await asyncio.sleep(0.01)
    stop.set()
    await running
    assert log.task_result(result.message_id).status == "attested"
    log.close()


# --- the relayer -----------------------------------------------------------------------------


class _Refusing:
    async def collect(self, env, source_tx):
        from relay.pipeline import Collected

        if env.src_domain == COMMITTEE_DOMAIN:
            return Collected(signature=None, epoch=1, reason="0/3 valid partials (4 refused)",
                             refused={1: "sentiment: re-execution gave different bytes (79 vs 79)"})
        return Collected(signature=b"\x05" * 64, epoch=1)


async def test_relayer_queues_the_attestation_and_dead_letters_refusals(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "relayer.db")
    chains = {SOL: FakeChain("solana", SOL), EVM: FakeChain("evm", EVM)}
    relayer = Relayer(store, chains, _Refusing(),
                      PipelineSettings(backoff=Backoff(base=0.001, cap=0.001, max_attempts=2), confirm_poll=0.0))
    request = request_envelope()
    results = [result_envelope(request, wrong_output(), nonce=n) for n in range(2)]
    for result in results:
        await relayer.observe(result, "0xres", BLOCK_TIME)
    await relayer.observe(results[0], "0xres", BLOCK_TIME)  # seen again: nothing new
    attestations = [attestation_for(r, BLOCK_TIME) for r in results]
    # Two attestations with src (0, nonce 0) live side by side: the committee has no nonce sequence.
    for attestation in attestations:
        record = await store.get(attestation.message_id)
        assert record is not None and record.kind == 3 and record.source_tx == "0xres"
    assert await store.missing_nonces(COMMITTEE_DOMAIN) == []
    for _ in range(8):
        await relayer.process_due()
        await asyncio.sleep(0.01)
    record = await store.get(attestations[0].message_id)
    assert record.stage is Stage.DEAD
    assert "refused by member 1: sentiment: re-execution gave different bytes" in record.reason
    assert (await store.get(results[0].message_id)).stage is Stage.CONFIRMED
    # Without a block time nothing can be derived: only the result is queued.
    late = result_envelope(request, right_output(), nonce=5)
    await relayer.observe(late, "0xlate", None)
    assert (await store.get(attestation_for(late, BLOCK_TIME).message_id)) is None
    await store.close()


async def test_old_store_with_a_table_wide_unique_nonce_is_migrated(tmp_path: Path) -> None:
    from relay import store as store_module

    path = tmp_path / "old.db"
    old_schema = store_module._SCHEMA.replace(
        "    updated_at      REAL NOT NULL\n);", "    updated_at      REAL NOT NULL,\n    UNIQUE (src_domain, nonce)\n);")
    old_schema = old_schema.split("-- One message per")[0]
    with sqlite3.connect(path) as conn:
        conn.executescript(old_schema)
    store = await Store.open(path)
    request = request_envelope()
    await store.add_observed(request, "0xa")
    await store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP INDEX messages_by_nonce")
        conn.execute("ALTER TABLE messages RENAME TO tmp")
        conn.executescript(old_schema)
        conn.execute("INSERT INTO messages SELECT * FROM tmp")
        conn.execute("DROP TABLE tmp")
    store = await Store.open(path)  # migrates, keeping the rows
    assert (await store.get(request.message_id)) is not None
    results = [result_envelope(request, right_output(), nonce=n) for n in range(2)]
    for result in results:
        assert await store.add_observed(attestation_for(result, BLOCK_TIME), "0xr")
    assert not await store.add_observed(Envelope(MessageKind.DATA, 0, SOL, USER, EVM, BOARD, b"x"), "0xdup")
    await store.close()


async def test_an_attestation_is_submitted_only_after_its_result_landed(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "relayer.db")
    sol = FakeChain("solana", SOL)
    chains = {SOL: sol, EVM: FakeChain("evm", EVM)}
    relayer = Relayer(store, chains, FakeCommittee(),
                      PipelineSettings(backoff=Backoff(base=0.0, jitter=0.0, max_attempts=20), confirm_poll=0.0,
                                       order_poll=0.0))
    request = request_envelope()
    result = result_envelope(request, right_output())
    attestation = attestation_for(result, BLOCK_TIME)
    await relayer.observe(result, "0xres", BLOCK_TIME)
    sol.submit_error = RuntimeError("solana is congested")  # the result cannot land for now
    for _ in range(5):
        await relayer.process_due()
    record = await store.get(attestation.message_id)
    assert record.stage is Stage.READY and record.attempts == 0  # waiting is not a failed attempt
    assert record.reason == f"waiting for its result 0x{result.message_id.hex()} to be delivered first"
    assert all(d.envelope.kind != 3 for d in sol.sent.values())
    sol.submit_error = None
    for _ in range(8):
        await relayer.process_due()
    kinds = [d.envelope.kind for d in sol.sent.values()]
    assert kinds == [2, 3]  # the result first, then its attestation
    assert (await store.get(attestation.message_id)).stage is Stage.CONFIRMED
    await store.close()


async def test_an_unreachable_output_uri_is_tried_again_before_refusing(tmp_path: Path, registries) -> None:
    request = request_envelope()
    result = result_envelope(request, right_output(), output_uri="https://results.example/r")
    chains = {SOL: FakeChain("solana", SOL), EVM: FakeChain("evm", EVM)}
    calls: list[str] = []

    async def flaky(uri: str, max_bytes: int) -> bytes:
        calls.append(uri)
        if len(calls) < 2:
            raise FetchError("GET https://results.example/r failed: ServerDisconnectedError")
        return right_output()

    log = SigningLog(":memory:")
    attester = Attester(1, 1, lambda d: b"\x01" * 64, chains, log, executors=registries[0], verifiers=registries[1],
                        fetch=flaky, fetch_retry_delays=(0.01, 0.01))
    await _observe_all([attester], chains, _observation(request, "0xreq"), _observation(result, "0xres"))
    assert len(calls) == 2 and log.task_result(result.message_id).status == "attested"

    down = result_envelope(request, right_output(), output_uri="https://results.example/gone", nonce=1)
    calls.clear()
    attester._fetch = no_fetch
    await _observe_all([attester], chains, _observation(down, "0xdown"))
    record = log.task_result(down.message_id)
    assert record.status == "refused" and record.reason.startswith("output not available: no network")
    log.close()


async def test_an_unreachable_output_uri_is_tried_twice_more_after_2_and_8_s(monkeypatch, registries) -> None:
    """docs/TASKS.md: "A URI that does not answer is tried twice more (after 2 s and 8 s) before the
    refusal is recorded." The attester's waits are recorded instead of slept."""
    slept: list[float] = []

    class InstantSleep:
        def __getattr__(self, name):
            return getattr(asyncio, name)

        async def sleep(self, delay: float) -> None:
            slept.append(delay)

    monkeypatch.setattr(attester_module, "asyncio", InstantSleep())
    request = request_envelope()
    down = result_envelope(request, right_output(), output_uri="https://results.example/gone")
    chains = {SOL: FakeChain("solana", SOL), EVM: FakeChain("evm", EVM)}
    calls: list[str] = []

    async def unreachable(uri: str, max_bytes: int) -> bytes:
        calls.append(uri)
        raise FetchError(f"GET {uri} failed: ServerDisconnectedError")

    log = SigningLog(":memory:")
    attester = Attester(1, 1, lambda d: b"\x01" * 64, chains, log, executors=registries[0], verifiers=registries[1],
                        fetch=unreachable)  # the default retry delays
    await _observe_all([attester], chains, _observation(request, "0xreq"), _observation(down, "0xdown"))
    record = log.task_result(down.message_id)
    assert record.status == "refused" and record.reason.startswith("output not available")
    assert calls == ["https://results.example/gone"] * 3 and slept == [2.0, 8.0]
    log.close()
