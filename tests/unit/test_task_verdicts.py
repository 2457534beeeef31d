"""Task protocol v2 on the services side: the committee's verdict (check_result_v2), its two
envelopes, the attesters signing them (one verdict per result, per destination), the majority rule,
and the relayer queueing both envelopes and re-running failed handlers."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import attest
from attest.signing_log import EquivocationError, SignedEntry, SigningLog
from relay.attester import Attester, require_majority
from relay.backoff import Backoff
from relay.collector import CommitteeCollector
from relay.envelope import Envelope
from relay.errors import ConfigError
from relay.interfaces import DeliveryState, DeliveryStatus, Observation
from relay.pipeline import PipelineSettings, Relayer
from relay.protocol import COMMITTEE_DOMAIN, MessageKind
from relay.store import RetryReason, Stage, Store
from relay.tasks import ExecutorRegistry, ProofKind, ProofVerifierRegistry, TaskRequest
from relay.tasks.attestation import (
    REQUEST_NOT_SEEN,
    CommitteeVerdicts,
    FetchError,
    VerdictOutcome,
    VerdictReport,
    check_result_v2,
    derive_verdict,
    verdict_envelopes,
    verdicts_for,
)
from relay.tasks.payloads import ProofVerdict, RefusalReason, TaskRequestV2, TaskResultV2, Verdict
from relay.tasks.sentiment import SentimentExecutor
from tests.support.fakes import FakeChain, FakeCommittee
from relay.ports import free_port

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "tasks_v2.json"
SOL, EVM = 900, 31337
USER = bytes(range(32))  # the requester's board on Solana
REFUND = bytes(range(1, 33))[::-1]
BOARD = bytes(12) + bytes.fromhex("ab" * 20)  # the serving board on EVM
CLAIMANT = bytes(12) + bytes.fromhex("ee" * 20)
PAYOUT = bytes(range(64, 96))  # a Solana key: the requester's chain
WORKER = Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)
TEXT = b"Tessera is a wonderful, reliable bridge!"
BLOCK_TIME = 1_790_000_000
MAX_FEE = 1_000_000


def request_envelope(executor: str = "sentiment", input: bytes | None = TEXT, input_uri: str | None = None) -> Envelope:
    terms = dict(max_fee=MAX_FEE, deadline=2**40, auction_window=1, start_bps=5000, claim_window=30, bond=10**9,
                 refund_to=REFUND)
    if input_uri is not None:
        request = TaskRequestV2(executor, input_hash=b"\x11" * 32, input_uri=input_uri, **terms)
    else:
        request = TaskRequestV2(executor, input=input, **terms)
    return Envelope(MessageKind.TASK_REQUEST, 0, SOL, USER, EVM, BOARD, request.encode())


def result_envelope(request: Envelope, output: bytes, *, executor: str = "sentiment", price: int = 600_000,
                    payout: bytes = PAYOUT, key: Ed25519PrivateKey = WORKER, nonce: int = 0,
                    proof_kind: ProofKind = ProofKind.REEXECUTION, output_uri: str | None = None) -> Envelope:
    result = TaskResultV2.signed(key, request_id=request.message_id, executor=executor, output=output,
                                 claimant=CLAIMANT, payout=payout, price=price, proof_kind=proof_kind,
                                 output_uri=output_uri)
    return Envelope(MessageKind.TASK_RESULT, nonce, EVM, BOARD, SOL, USER, result.encode())


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


async def check(registries, request, result, **options):
    return await check_result_v2(request, result, *registries, no_fetch, **options)


# --- envelopes --------------------------------------------------------------------------------


def test_verdict_envelopes_match_the_vectors() -> None:
    vectors = json.loads(VECTORS.read_text())["verdict_envelopes"]
    result = Envelope.decode(bytes.fromhex(json.loads(VECTORS.read_text())["result_envelope"]["encoded"][2:]))
    verdict = ProofVerdict.decode(bytes.fromhex(vectors["payload"][2:]))
    pair = verdict_envelopes(result, verdict)
    assert "0x" + pair.requester.encode().hex() == vectors["to_requester_board"]["encoded"]
    assert "0x" + pair.serving.encode().hex() == vectors["to_serving_board"]["encoded"]
    assert "0x" + pair.requester.message_id.hex() == vectors["to_requester_board"]["message_id"]


def test_one_payload_two_envelopes_one_per_board() -> None:
    request = request_envelope()
    result = result_envelope(request, right_output())
    pair = verdicts_for(result, BLOCK_TIME, RefusalReason.OUTPUT_MISMATCH)
    assert pair.requester.payload == pair.serving.payload
    assert (pair.requester.dst_domain, pair.requester.dst_receiver) == (SOL, USER)
    assert (pair.serving.dst_domain, pair.serving.dst_receiver) == (EVM, BOARD)
    for env in pair:
        assert (env.kind, env.nonce, env.src_domain, env.src_sender) == (MessageKind.PROOF_ATTESTATION, 0, 0, bytes(32))
    assert pair.requester.message_id != pair.serving.message_id
    verdict = pair.verdict
    assert (verdict.verdict, verdict.reason, verdict.submitted_at, verdict.price) == (
        Verdict.REFUSED, RefusalReason.OUTPUT_MISMATCH, BLOCK_TIME, 600_000)
    # A verdict on another result is not wrapped for this one.
    other = result_envelope(request, right_output(), nonce=1)
    with pytest.raises(Exception, match="does not speak for"):
        verdict_envelopes(other, verdict)


# --- what the committee decides ---------------------------------------------------------------


async def test_correct_result_is_valid(registries) -> None:
    request = request_envelope()
    verdict = await check(registries, request, result_envelope(request, right_output()))
    assert verdict.outcome is VerdictOutcome.VALID and verdict.refusal is None


@pytest.mark.parametrize("case, refusal", [
    ("wrong output", RefusalReason.OUTPUT_MISMATCH),
    ("wrong output, no proof", RefusalReason.OUTPUT_MISMATCH),
    ("signature", RefusalReason.WORKER_SIGNATURE),
    ("executor", RefusalReason.WRONG_EXECUTOR),
    ("payout", RefusalReason.PAYOUT_UNUSABLE),
    ("output unavailable", RefusalReason.OUTPUT_UNAVAILABLE),
    ("tee without verifier", RefusalReason.PROOF_UNSUPPORTED),
])
async def test_faults_of_the_result_are_refused_with_their_reason(registries, case, refusal) -> None:
    request = request_envelope()
    options = {}
    match case:
        case "wrong output":
            result = result_envelope(request, wrong_output())
        case "wrong output, no proof":
            result = result_envelope(request, wrong_output(), proof_kind=ProofKind.NONE)
        case "signature":
            good = TaskResultV2.decode(result_envelope(request, right_output()).payload)
            forged = TaskResultV2(**{**{f: getattr(good, f) for f in good.__slots__}, "price": good.price + 1})
            result = Envelope(MessageKind.TASK_RESULT, 0, EVM, BOARD, SOL, USER, forged.encode())
        case "executor":
            result = result_envelope(request, b"echo me", executor="echo")
        case "payout":
            result = result_envelope(request, right_output())
            options["payout_check"] = lambda domain, payout: "not a system account" if domain == SOL else ""
        case "output unavailable":
            result = result_envelope(request, right_output(), output_uri="https://worker.example/out")
        case _:
            result = result_envelope(request, right_output(), proof_kind=ProofKind.TEE_QUOTE)
    verdict = await check(registries, request, result, **options)
    assert verdict.outcome is VerdictOutcome.REFUSED and verdict.refusal is refusal, verdict


async def test_faults_that_are_not_the_workers_get_no_verdict(registries) -> None:
    request = request_envelope()
    result = result_envelope(request, right_output())
    unseen = await check(registries, None, result)
    assert unseen.outcome is VerdictOutcome.ABSTAIN and unseen.reason.startswith(REQUEST_NOT_SEEN)
    by_uri = request_envelope(input=None, input_uri="https://requester.example/in")
    unreachable = await check(registries, by_uri, result_envelope(by_uri, right_output()))
    assert unreachable.outcome is VerdictOutcome.ABSTAIN and unreachable.reason.startswith("input not available")
    # The output URI not answering yet is retried by the attester before it becomes a refusal.
    later = await check(registries, request, result_envelope(request, right_output(), output_uri="https://w.example/o"),
                        final_attempt=False)
    assert later.outcome is VerdictOutcome.ABSTAIN and later.reason.startswith("output not available")
    v1 = Envelope(MessageKind.TASK_REQUEST, 0, SOL, USER, EVM, BOARD,
                  TaskRequest("sentiment", MAX_FEE, 2**40, input=TEXT).encode())
    answer_to_v1 = result_envelope(v1, right_output())
    assert "v2 result must answer a v2 request" in (await check(registries, v1, answer_to_v1)).reason
    too_dear = await check(registries, request, result_envelope(request, right_output(), price=MAX_FEE + 1))
    assert too_dear.outcome is VerdictOutcome.ABSTAIN and "not one the serving board accepts" in too_dear.reason
    elsewhere = Envelope(MessageKind.TASK_RESULT, 0, EVM, bytes(12) + b"\x01" * 20, SOL, USER, result.payload)
    assert (await check(registries, request, elsewhere)).outcome is VerdictOutcome.ABSTAIN


def test_a_committee_without_a_majority_threshold_is_refused() -> None:
    require_majority(3, 4)
    require_majority(2, 3)
    with pytest.raises(ConfigError, match="majority"):
        require_majority(2, 4)
    with pytest.raises(ConfigError, match="majority"):
        Attester(1, 1, lambda d: b"", {}, SigningLog(":memory:"), threshold=(1, 2))


def test_signing_log_keeps_one_verdict_per_result_and_destination() -> None:
    log = SigningLog(":memory:")
    request = request_envelope()
    result = result_envelope(request, wrong_output())
    valid, refused = verdicts_for(result, BLOCK_TIME), verdicts_for(result, BLOCK_TIME, RefusalReason.OUTPUT_MISMATCH)

    def entry(env: Envelope) -> SignedEntry:
        return SignedEntry(0, 0, env.message_id, 1, b"\x01" * 64, "0xres", 0.0)

    log.record_verdict(result.message_id, SOL, refused.requester.payload, entry(refused.requester))
    assert log.record_verdict(result.message_id, SOL, refused.requester.payload, entry(refused.requester)).message_id \
        == refused.requester.message_id  # the same envelope again: the same entry
    with pytest.raises(EquivocationError):  # the same destination, another envelope
        log.record_verdict(result.message_id, SOL, valid.requester.payload, entry(valid.requester))
    with pytest.raises(EquivocationError):  # the other destination, another verdict
        log.record_verdict(result.message_id, EVM, valid.serving.payload, entry(valid.serving))
    log.record_verdict(result.message_id, EVM, refused.serving.payload, entry(refused.serving))
    assert log.by_message(refused.serving.message_id, 1) is not None
    assert log.signed_verdict(result.message_id, 1) == refused.requester.payload


# --- attesters over HTTP ----------------------------------------------------------------------


def _port() -> int:
    return free_port()  # below the ephemeral range: see relay/ports.py


def _observation(env: Envelope, tx: str, block_time: int | None = BLOCK_TIME) -> Observation:
    return Observation(envelope=env, source_tx=tx, position=1, cursor="1", block_time=block_time)


@pytest.fixture
async def committee(tmp_path: Path, registries):
    ports = [_port() for _ in range(4)]
    committee, shares = attest.deal(4, 3, epoch=1, endpoints=[f"http://127.0.0.1:{p}" for p in ports])
    chains = {SOL: FakeChain("solana", SOL), EVM: FakeChain("evm", EVM)}
    attesters, runners = [], []
    for share, port in zip(shares, ports):
        signer = (lambda s: lambda digest: attest.partial_sign(s, digest).signature)(share)
        attester = Attester(share.index, 1, signer, chains, SigningLog(tmp_path / f"a{share.index}.db"),
                            executors=registries[0], verifiers=registries[1], fetch=no_fetch,
                            fetch_retry_delays=(), threshold=(committee.t, committee.n))
        runner = web.AppRunner(attester.build_app())
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        attesters.append(attester)
        runners.append(runner)
    collector = CommitteeCollector(committee, timeout=2)
    verdicts = CommitteeVerdicts([m.endpoint for m in committee.members], committee.t, timeout=2)
    yield committee, chains, attesters, collector, verdicts
    await collector.close()
    await verdicts.close()
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


@pytest.mark.parametrize("right", [True, False])
async def test_every_member_signs_the_verdict_to_both_boards(committee, right: bool) -> None:
    committee_, chains, attesters, collector, verdicts = committee
    request = request_envelope()
    result = result_envelope(request, right_output() if right else wrong_output())
    await _observe_all(attesters, chains, _observation(request, "0xreq", None), _observation(result, "0xres"))
    expected = verdicts_for(result, BLOCK_TIME, None if right else RefusalReason.OUTPUT_MISMATCH)
    for envelope in expected:
        collected = await collector.collect(envelope, "0xres")
        assert collected.signature is not None and committee_.verify(envelope.digest(1), collected.signature)
    status, body = await _get(f"{committee_.member(2).endpoint}/v1/task-results/0x{result.message_id.hex()}")
    assert status == 200 and body["version"] == 2 and body["status"] == "attested"
    assert body["verdict"] == ("valid" if right else "refused")
    assert body["refusal_reason"] == (None if right else "output_mismatch")
    assert body["attestation_ids"] == {"requester": "0x" + expected.requester.message_id.hex(),
                                       "serving": "0x" + expected.serving.message_id.hex()}
    report = await verdicts.report(result.message_id)
    assert report.agreed == [expected.requester.payload] and report.answers == 4
    # Seen again (another pass, a relayer nudge): no second verdict, nothing new signed.
    await _observe_all(attesters, chains, _observation(result, "0xres"))
    assert attesters[0].signing_log.signed_verdict(result.message_id, 1) == expected.requester.payload


async def test_a_result_before_its_request_gets_its_verdict_once_the_request_is_seen(committee) -> None:
    committee_, chains, attesters, collector, verdicts = committee
    request = request_envelope()
    result = result_envelope(request, right_output())
    await _observe_all(attesters, chains, _observation(result, "0xres"))
    record = attesters[0].signing_log.task_result(result.message_id)
    assert record.status == "abstained" and record.reason.startswith(REQUEST_NOT_SEEN)
    report = await verdicts.report(result.message_id)
    assert report.agreed == [] and not report.hopeless  # not seen yet is not final
    await _observe_all(attesters, chains, _observation(request, "0xreq"))
    assert (await verdicts.report(result.message_id)).agreed == [verdicts_for(result, BLOCK_TIME).requester.payload]


async def test_unreachable_input_gets_no_verdict_from_anyone(committee) -> None:
    committee_, chains, attesters, collector, verdicts = committee
    request = request_envelope(input=None, input_uri="https://requester.example/in")
    result = result_envelope(request, right_output())
    await _observe_all(attesters, chains, _observation(request, "0xreq"), _observation(result, "0xres"))
    report = await verdicts.report(result.message_id)
    assert report.agreed == [] and report.final_without == 4 and report.hopeless
    for envelope in (*verdicts_for(result, BLOCK_TIME), *verdicts_for(result, BLOCK_TIME, RefusalReason.OUTPUT_UNAVAILABLE)):
        assert (await collector.collect(envelope, "0xres")).signature is None


# --- the relayer ------------------------------------------------------------------------------


class _Reports:
    def __init__(self, payload: bytes | None = None) -> None:
        self.payload = payload
        self.calls = 0

    async def report(self, result_id: bytes) -> VerdictReport:
        self.calls += 1
        return VerdictReport([self.payload] if self.payload and self.calls > 1 else [], 0, 4)


async def test_relayer_queues_both_verdict_envelopes_once_the_committee_agrees(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "relayer.db")
    chains = {SOL: FakeChain("solana", SOL), EVM: FakeChain("evm", EVM)}
    request = request_envelope()
    result = result_envelope(request, wrong_output())
    expected = verdicts_for(result, BLOCK_TIME, RefusalReason.OUTPUT_MISMATCH)
    reports = _Reports(expected.requester.payload)
    relayer = Relayer(store, chains, FakeCommittee(), PipelineSettings(verdict_poll=0.01, confirm_poll=0.0),
                      verdicts=reports)
    await relayer.observe(result, "0xres", BLOCK_TIME)
    await relayer.observe(result, "0xres", BLOCK_TIME)  # seen again: followed once
    for task in list(relayer._verdict_tasks.values()):
        await task
    for envelope in expected:
        record = await store.get(envelope.message_id)
        assert record is not None and record.src_domain == COMMITTEE_DOMAIN and record.source_tx == "0xres"
    assert json.loads(await store.get_cursor("verdicts:pending")) == {}
    # The verdict to the serving board goes at once; the one to the requester's board waits for its result.
    await relayer.process_due()
    await relayer.process_due()
    assert expected.serving.message_id in chains[EVM].delivered
    assert expected.requester.message_id not in chains[SOL].delivered
    assert (await store.get(expected.requester.message_id)).reason_code is RetryReason.AWAITING_RESULT
    await store.close()


async def test_relayer_resumes_asking_for_a_verdict_after_a_restart(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "relayer.db")
    chains = {SOL: FakeChain("solana", SOL), EVM: FakeChain("evm", EVM)}
    request = request_envelope()
    result = result_envelope(request, right_output())
    first = Relayer(store, chains, FakeCommittee(), PipelineSettings(verdict_poll=10.0), verdicts=_Reports())
    await first.observe(result, "0xres", BLOCK_TIME)
    for task in list(first._verdict_tasks.values()):
        task.cancel()
    assert result.message_id.hex() in json.loads(await store.get_cursor("verdicts:pending"))
    expected = verdicts_for(result, BLOCK_TIME)
    second = Relayer(store, chains, FakeCommittee(), PipelineSettings(verdict_poll=0.01),
                     verdicts=_Reports(expected.requester.payload))
    await second._resume_verdicts()
    for task in list(second._verdict_tasks.values()):
        await task
    assert await store.get(expected.serving.message_id) is not None
    await store.close()


async def test_relayer_ignores_a_reported_verdict_with_another_block_time(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "relayer.db")
    chains = {SOL: FakeChain("solana", SOL), EVM: FakeChain("evm", EVM)}
    result = result_envelope(request_envelope(), right_output())
    relayer = Relayer(store, chains, FakeCommittee(), verdicts=_Reports())
    assert not await relayer._queue_verdicts(result, "0xres", BLOCK_TIME, [derive_verdict(result, BLOCK_TIME + 1).encode()])
    await store.close()


class _FailingHandlerChain(FakeChain):
    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.retried: list[bytes] = []
        self.handler_fails = True

    async def delivery_status(self, tx_id):
        if tx_id.startswith("retry") and not self.handler_fails:
            return DeliveryStatus(DeliveryState.CONFIRMED)
        return DeliveryStatus(DeliveryState.HANDLER_FAILED, "Reentrancy()")

    async def retry_failed(self, envelope):
        self.retried.append(envelope.message_id)
        return f"retry{len(self.retried)}"


async def test_a_failed_handler_is_retried_never_counted_as_delivered(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "relayer.db")
    evm = _FailingHandlerChain("evm", EVM)
    chains = {SOL: FakeChain("solana", SOL), EVM: evm}
    relayer = Relayer(store, chains, FakeCommittee(),
                      PipelineSettings(backoff=Backoff(base=0.0, cap=0.0, max_attempts=10), confirm_poll=0.0))
    await relayer.observe(Envelope(MessageKind.DATA, 0, SOL, USER, EVM, BOARD, b"hi"), "0xsrc")
    message_id = Envelope(MessageKind.DATA, 0, SOL, USER, EVM, BOARD, b"hi").message_id
    for _ in range(3):  # signed, submitted, the handler failed: retried through retry_failed, never done
        await relayer.process_due()
        record = await store.get(message_id)
        assert record.stage is not Stage.CONFIRMED and record.reason_code is RetryReason.HANDLER_FAILED
    assert evm.retried and set(evm.retried) == {message_id} and len(evm.sent) == 1  # one signed delivery
    evm.handler_fails = False
    await relayer.process_due()
    assert (await store.get(message_id)).stage is Stage.CONFIRMED
    await store.close()
