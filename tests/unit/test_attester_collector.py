"""Attester daemons (in-process HTTP servers, fake chains) and the relayer's collector."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import attest
import relay.attester as attester_module
from relay.attester import Attester
from attest.signing_log import EquivocationError, SignedEntry, SigningLog
from relay.interfaces import Observation
from relay.collector import CommitteeCollector
from relay.envelope import Envelope
from tests.support.fakes import DST, SRC, FakeChain, envelope
from relay.ports import free_port


# No test here waits for the collector's timeout (a dead member is refused at once): a generous one
# keeps a loaded machine from turning a slow honest answer into "unreachable".
SLOW = 30.0


def _port() -> int:
    return free_port()  # below the ephemeral range: see relay/ports.py


class SourceChain(FakeChain):
    """A source chain whose transactions the attesters can re-read themselves."""

    def __init__(self) -> None:
        super().__init__("evm", SRC)
        self.txs: dict[str, list[Observation]] = {}

    async def reobserve(self, source_tx):
        return self.txs.get(source_tx, [])


@pytest.fixture
async def committee_up(tmp_path: Path):
    ports = [_port() for _ in range(4)]
    committee, shares = attest.deal(4, 3, epoch=1, endpoints=[f"http://127.0.0.1:{p}" for p in ports])
    source = SourceChain()
    attesters, runners = [], []
    for share, port in zip(shares, ports):
        if share.index == 4:
            continue  # member 4 is down
        signer = (lambda s: lambda digest: attest.partial_sign(s, digest).signature)(share)
        attester = Attester(share.index, 1, signer, {SRC: source, DST: FakeChain("solana", DST)},
                            SigningLog(tmp_path / f"a{share.index}.db"))
        if share.index == 3:
            app = web.Application()  # member 3 answers garbage: a valid point that is not its partial

            async def garbage(request):
                return web.json_response({"member": 3, "epoch": 1, "message_id": request.match_info["m"],
                                          "signature": "0x" + attest.sign(12345, b"\x00" * 32).hex()})
            app.router.add_get("/v1/partials/{m}", garbage)
        else:
            app = attester.build_app()
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        attesters.append(attester)
        runners.append(runner)
    yield committee, source, attesters
    for runner in runners:
        await runner.cleanup()
    for a in attesters:
        a.signing_log.close()


async def test_one_down_and_one_lying_is_below_threshold_and_both_are_named(committee_up) -> None:
    committee, source, attesters = committee_up
    env = envelope(0)
    observation = Observation(env, "0xtx", 5, "5")
    for a in attesters:
        a.attest(observation, source)
    collector = CommitteeCollector(committee, timeout=SLOW)
    try:
        first = await collector.collect(env, "0xtx")
        # Only members 1 and 2 are honest and up: 2 < t = 3. The liar is named, the dead one explained.
        assert first.signature is None
        assert first.faulty == {3: "invalid partial signature"}
        assert "member 4: unreachable" in first.reason and first.reason.startswith("2/3 valid partials")
    finally:
        await collector.close()


async def test_attester_only_signs_what_it_observes_itself(committee_up) -> None:
    committee, source, attesters = committee_up
    honest = attesters[0]
    env = envelope(1)
    collector = CommitteeCollector(committee, timeout=SLOW)
    try:
        # The relayer claims a transaction the attesters cannot find on their chain: nothing is signed.
        result = await collector.collect(env, "0xinvented")
        assert result.signature is None and "has not observed it final yet" in result.reason
        assert honest.signing_log.by_message(env.message_id, 1) is None
        # Once the source chain really holds it, a hint makes them look, and they sign.
        source.txs["0xreal"] = [Observation(env, "0xreal", 7, "7")]
        await collector.collect(env, "0xreal")
        assert honest.signing_log.by_message(env.message_id, 1) is not None
    finally:
        await collector.close()


async def _run_committee(env: Envelope, liar: int | None):
    committee, shares = attest.deal(4, 3, epoch=1, endpoints=["http://127.0.0.1:1"] * 4)
    ports = [_port() for _ in shares]
    committee = committee.model_copy(update={"members": [
        m.model_copy(update={"endpoint": f"http://127.0.0.1:{p}"}) for m, p in zip(committee.members, ports)]})
    source = SourceChain()
    runners = []
    for share, port in zip(shares, ports):
        if share.index == liar:
            signer = lambda digest: attest.sign(999, digest)  # well-formed, but not its share
        else:
            signer = (lambda s: lambda digest: attest.partial_sign(s, digest).signature)(share)
        attester = Attester(share.index, 1, signer, {SRC: source, DST: FakeChain("solana", DST)}, SigningLog(":memory:"))
        attester.attest(Observation(env, "0xtx", 1, "1"), source)
        runner = web.AppRunner(attester.build_app())
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
    return committee, runners


@pytest.mark.parametrize("liar", [None, 1, 4])
async def test_committee_combines_a_valid_signature_and_names_a_liar(liar: int | None) -> None:
    env = envelope(2)
    committee, runners = await _run_committee(env, liar)
    collector = CommitteeCollector(committee, timeout=SLOW)
    try:
        result = await collector.collect(env, "0xtx")
        assert result.signature is not None
        assert committee.verify(env.digest(1), result.signature)
        # The fast path may finish before the liar's answer arrives; if its partial was used, it is
        # named (the below-threshold test above names a liar deterministically).
        assert set(result.faulty) <= ({liar} if liar else set())
    finally:
        await collector.close()
        for runner in runners:
            await runner.cleanup()


def test_signing_log_refuses_a_second_envelope_for_the_same_nonce(tmp_path: Path) -> None:
    log = SigningLog(tmp_path / "log.db")
    env_a = envelope(0)
    env_b = Envelope(kind=4, nonce=0, src_domain=SRC, src_sender=b"\x01" * 32, dst_domain=DST,
                     dst_receiver=b"\x02" * 32, payload=b"forked history")
    entry = SignedEntry(SRC, 0, env_a.message_id, 1, b"\x01" * 64, "0xa", 0.0)
    assert log.record(entry) == entry
    assert log.record(entry) == entry  # idempotent
    with pytest.raises(EquivocationError, match="already signed"):
        log.record(SignedEntry(SRC, 0, env_b.message_id, 1, b"\x02" * 64, "0xb", 0.0))
    log.close()
    reopened = SigningLog(tmp_path / "log.db")  # survives a restart
    with pytest.raises(EquivocationError):
        reopened.check(SRC, 0, env_b.message_id, 1)
    assert len(reopened.refusals()) == 2


def test_attester_refuses_foreign_source_domain_and_unknown_destination(tmp_path: Path) -> None:
    source = SourceChain()
    attester = Attester(1, 1, lambda d: b"\x00" * 64, {SRC: source, DST: FakeChain("solana", DST)}, SigningLog(":memory:"))
    wrong_src = envelope(0, src=999)
    assert attester.attest(Observation(wrong_src, "0x", 1, "1"), source) is None
    unknown_dst = envelope(0, dst=4242)
    assert attester.attest(Observation(unknown_dst, "0x", 1, "1"), source) is None
    assert attester.attest(Observation(envelope(0), "0x", 1, "1"), source) is not None


async def test_a_late_honest_member_completes_the_set_after_a_liar_was_dropped(monkeypatch) -> None:
    """1, 2 and the liar 3 answer first (combination fails, 3 is named); 4 answers late: 1, 2, 4 is a
    new set of the same size and must still be tried."""
    env = envelope(3)
    committee, shares = attest.deal(4, 3, epoch=1, endpoints=["http://127.0.0.1:1"] * 4)
    ports = [_port() for _ in shares]
    committee = committee.model_copy(update={"members": [
        m.model_copy(update={"endpoint": f"http://127.0.0.1:{p}"}) for m, p in zip(committee.members, ports)]})
    runners = []
    liar_dropped = asyncio.Event()
    combine = attest.combine

    def combine_and_tell(*args, **kwargs):
        result = combine(*args, **kwargs)
        if 3 in result.faulty:
            liar_dropped.set()
        return result

    monkeypatch.setattr(attest, "combine", combine_and_tell)
    for share, port in zip(shares, ports):
        partial = attest.sign(999, env.digest(1)) if share.index == 3 else attest.partial_sign(share, env.digest(1)).signature

        async def answer(request, partial=partial, index=share.index):
            if index == 4:
                await liar_dropped.wait()  # late: only once 1, 2 and the liar were combined and the liar dropped
            return web.json_response({"member": index, "epoch": 1, "message_id": request.match_info["m"],
                                      "signature": "0x" + partial.hex()})
        app = web.Application()
        app.router.add_get("/v1/partials/{m}", answer)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
    collector = CommitteeCollector(committee, timeout=SLOW)
    try:
        result = await collector.collect(env, "0xtx")
        assert result.signature is not None, result.reason
        assert committee.verify(env.digest(1), result.signature)
        assert set(result.faulty) == {3}
    finally:
        await collector.close()
        for runner in runners:
            await runner.cleanup()


async def test_observe_requests_beyond_the_rate_limit_get_429(monkeypatch) -> None:
    # The limiter's clock stands still: every request falls in the same one-second window, however slow the machine.
    monkeypatch.setattr(attester_module, "time", SimpleNamespace(monotonic=lambda: 1000.0, time=time.time))
    attester = Attester(1, 1, lambda d: b"\x00" * 64, {SRC: SourceChain(), DST: FakeChain("solana", DST)},
                        SigningLog(":memory:"), observe_rate=2)
    async with TestClient(TestServer(attester.build_app())) as client:
        answers = []
        for _ in range(3):
            async with client.post("/v1/observe", json={"src_domain": SRC, "source_tx": "0xtx"}) as resp:
                answers.append((resp.status, await resp.json()))
    assert [status for status, _ in answers] == [200, 200, 429]
    assert answers[2][1]["error"] == "too many observe requests; retry later"
