"""Attesters sign batch roots (POST /v1/roots) only over messages they saw final themselves, and the
relayer's collector combines those partials (docs/PROTOCOL.md "Batch attestations"). In-process
attester HTTP servers with real BN254 keys; fake chains."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

import attest
from attest.signing_log import SigningLog
from relay.attester import Attester
from relay.batch import Batch
from relay.collector import CommitteeCollector
from relay.interfaces import Observation
from relay.ports import free_port
from tests.support.fakes import DST, SRC, FakeChain, envelope

SLOW = 30.0


class SourceChain(FakeChain):
    """A source chain whose transactions the attesters can re-read themselves."""

    def __init__(self) -> None:
        super().__init__("evm", SRC)
        self.txs: dict[str, list[Observation]] = {}

    async def reobserve(self, source_tx):
        return self.txs.get(source_tx, [])


@pytest.fixture
async def committee(tmp_path: Path):
    ports = [free_port() for _ in range(4)]
    committee, shares = attest.deal(4, 3, epoch=1, endpoints=[f"http://127.0.0.1:{p}" for p in ports])
    source = SourceChain()
    attesters, runners = [], []
    for share, port in zip(shares, ports):
        signer = (lambda s: lambda digest: attest.partial_sign(s, digest).signature)(share)
        attester = Attester(share.index, 1, signer, {SRC: source, DST: FakeChain("solana", DST)},
                            SigningLog(tmp_path / f"a{share.index}.db"))
        runner = web.AppRunner(attester.build_app())
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        attesters.append(attester)
        runners.append(runner)
    yield committee, source, attesters
    for runner in runners:
        await runner.cleanup()
    for a in attesters:
        a.signing_log.close()


def _seen(attesters: list[Attester], source: SourceChain, envelopes) -> None:
    for i, env in enumerate(envelopes):
        for a in attesters:
            a.attest(Observation(env, f"0xtx{env.nonce}", 10 + i, str(10 + i)), source)


async def _post(endpoint: str, body: object) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{endpoint}/v1/roots", json=body) as resp:
            return resp.status, await resp.json()


def _body(envelopes, source_txs=None) -> dict:
    body = {"src_domain": SRC, "dst_domain": DST, "envelopes": ["0x" + e.encode().hex() for e in envelopes]}
    if source_txs is not None:
        body["source_txs"] = source_txs
    return body


async def test_root_of_messages_every_member_saw_is_signed_and_recorded(committee) -> None:
    group, source, attesters = committee
    envelopes = [envelope(n) for n in range(5)]
    _seen(attesters, source, envelopes)
    batch = Batch.of(envelopes)
    collector = CommitteeCollector(group, timeout=SLOW)
    try:
        collected = await collector.collect_root(batch, [f"0xtx{e.nonce}" for e in envelopes])
    finally:
        await collector.close()
    assert collected.signature is not None and collected.epoch == 1
    # The combined signature is the committee's over the root digest (what both chains verify) ...
    assert group.verify(batch.digest(1), collected.signature)
    # ... and over nothing else: not the digest of one of its messages.
    assert not group.verify(envelopes[0].digest(1), collected.signature)
    # Every member that answered recorded the root with its message ids in order.
    recorded = [a.signing_log.signed_roots() for a in attesters]
    assert sum(1 for r in recorded if r) >= group.t
    for roots in recorded:
        for root, epoch, src, dst, ids in roots:
            assert (root, epoch, src, dst, ids) == (batch.root, 1, SRC, DST, batch.message_ids)


async def test_attack_a_root_with_one_message_never_seen_is_refused_by_every_member(committee) -> None:
    group, source, attesters = committee
    envelopes = [envelope(n) for n in range(4)]
    _seen(attesters, source, envelopes)
    unseen = envelope(4)  # a valid envelope that no source transaction carries
    batch = Batch.of([*envelopes, unseen])
    for member in group.members:
        # Even with a source transaction named for it, the member reads its own chain and finds nothing.
        status, body = await _post(member.endpoint, _body(batch.envelopes, [f"0xtx{e.nonce}" for e in envelopes]
                                                           + ["0xinvented"]))
        assert status == 404
        assert "has not observed 1 of the batch's 5 messages final" in body["error"]
        assert body["missing"] == ["0x" + unseen.message_id.hex()]
    collector = CommitteeCollector(group, timeout=SLOW)
    try:
        collected = await collector.collect_root(batch, ["0xtx0", "0xtx1", "0xtx2", "0xtx3", "0xinvented"])
    finally:
        await collector.close()
    assert collected.signature is None and collected.reason.startswith("0/3 valid partials")
    assert all(not a.signing_log.signed_roots() for a in attesters)


async def test_attack_a_forged_envelope_in_a_signed_slot_is_refused_as_a_conflict(committee) -> None:
    group, source, attesters = committee
    envelopes = [envelope(n) for n in range(3)]
    _seen(attesters, source, envelopes)
    # Same source and nonce as message 2, another payload: an envelope the gateway never emitted.
    forged = replace(envelopes[2], payload=b"pay the attacker")
    batch = Batch.of([envelopes[0], envelopes[1], forged])
    status, body = await _post(group.members[0].endpoint, _body(batch.envelopes))
    assert status == 409 and f"nonce 2 was signed for message 0x{envelopes[2].message_id.hex()}" in body["error"]
    collector = CommitteeCollector(group, timeout=SLOW)
    try:
        collected = await collector.collect_root(batch, [])
    finally:
        await collector.close()
    assert collected.signature is None and len(collected.refused) == 4
    assert all(not a.signing_log.signed_roots() for a in attesters)
    # The slot still belongs to the real message alone (one signature per source, nonce, epoch).
    for a in attesters:
        assert a.signing_log.by_nonce(SRC, 2, 1).message_id == envelopes[2].message_id


async def test_a_member_that_had_not_seen_a_message_reads_its_source_tx_then_signs(committee) -> None:
    group, source, attesters = committee
    envelopes = [envelope(n) for n in range(3)]
    _seen(attesters, source, envelopes[:2])
    late = envelopes[2]
    source.txs["0xlate"] = [Observation(late, "0xlate", 30, "30")]
    batch = Batch.of(envelopes)
    status, body = await _post(group.members[1].endpoint, _body(envelopes, ["0xtx0", "0xtx1", "0xlate"]))
    assert status == 200, body
    assert body["root"] == "0x" + batch.root.hex() and body["leaf_count"] == 3
    # It signed the late message itself on the way (its slot is now taken by it).
    assert attesters[1].signing_log.by_message(late.message_id, 1) is not None


async def test_malformed_root_requests_get_400_saying_what_is_wrong(committee) -> None:
    group, source, attesters = committee
    endpoint = group.members[0].endpoint
    env = envelope(0)
    other_lane = envelope(1, src=SRC, dst=SRC + 1)
    cases = [
        ({"src_domain": SRC}, "body must be"),
        (_body([]), "not a batch"),
        ({**_body([env]), "envelopes": ["0xzz"]}, "body must be"),
        ({**_body([env]), "envelopes": ["0x0102"]}, "an envelope does not decode"),
        (_body([env, other_lane]), "lane mismatch"),
        ({**_body([env]), "dst_domain": DST + 5}, "the request names"),
        (_body([env, env]), "twice in one batch"),
        (_body([env], ["0xa", "0xb"]), "body must be"),
    ]
    for body, expected in cases:
        status, answer = await _post(endpoint, body)
        assert status == 400, (body, answer)
        assert expected in answer["error"], (expected, answer)
