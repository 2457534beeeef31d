"""The attester's signing log on SQLite and PostgreSQL, and two replicas of one member sharing a
PostgreSQL log: driven concurrently (separate processes) with conflicting requests, they never sign
two different envelopes for one (source, nonce, epoch), nor two attestations for one result."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from attest.signing_log import EquivocationError, SignedEntry, SigningLog, SigningLogError
from tests.support.postgres import PostgresServer


@pytest.fixture(params=["sqlite", "postgresql"])
def log_location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "attester.db")
    return request.getfixturevalue("postgres").create_database("signing")


def entry(nonce: int, variant: int, epoch: int = 1) -> SignedEntry:
    """The envelope `variant` for (source 7, nonce): its id starts with the variant byte."""
    return SignedEntry(src_domain=7, nonce=nonce, message_id=bytes([variant]) + nonce.to_bytes(31, "big"), epoch=epoch,
                       partial=bytes([variant]) * 64, source_tx=f"0x{variant}", signed_at=1.0)


def test_one_envelope_per_nonce_and_epoch_survives_a_reopen(log_location: str) -> None:
    log = SigningLog(log_location, member=3)
    assert log.record(entry(0, 1)) == entry(0, 1)
    with pytest.raises(EquivocationError):
        log.record(entry(0, 2))
    assert log.record(entry(0, 2, epoch=2)) == entry(0, 2, epoch=2)  # a new epoch is a new slot
    log.close()
    reopened = SigningLog(log_location, member=3)
    try:
        assert reopened.record(entry(0, 1)) == entry(0, 1)  # the same envelope again: the same partial
        with pytest.raises(EquivocationError):
            reopened.check(7, 0, entry(0, 9).message_id, 1)
        assert [r[:2] for r in reopened.refusals()] == [(7, 0), (7, 0)]  # both refusals were kept
        assert reopened.by_message(entry(0, 1).message_id, 1) == entry(0, 1)
    finally:
        reopened.close()


def test_a_log_refuses_another_member(log_location: str) -> None:
    SigningLog(log_location, member=1).close()
    with pytest.raises(SigningLogError, match="belongs to committee member 1"):
        SigningLog(log_location, member=2)


def test_chain_identity_and_forgetting_a_chain(log_location: str) -> None:
    log = SigningLog(log_location)
    try:
        log.record(entry(0, 1))
        log.set_cursor("watch:7", "133")
        log.set_chain_identity(7, "evm:31337:0xaa")
        assert log.chain_identity(7) == "evm:31337:0xaa"
        assert log.forget_chain(7) == 1
        assert log.chain_identity(7) is None and log.get_cursor("watch:7") is None
        assert log.record(entry(0, 2)) == entry(0, 2)  # the new chain's nonce 0
    finally:
        log.close()


def _replica(url: str, variant: int, nonces: int, start: multiprocessing.synchronize.Event,
             ready: multiprocessing.Queue, results: multiprocessing.Queue) -> None:
    """One replica of member 1: asks to sign `variant`'s envelope for every nonce, and an attestation
    of `variant` for every result, as fast as it can once both replicas are ready."""
    log = SigningLog(url, member=1)
    signed, refused = [], 0
    ready.put(variant)
    start.wait()
    for nonce in range(nonces):
        try:
            signed.append(("nonce", nonce, log.record(entry(nonce, variant)).message_id))
        except EquivocationError:
            refused += 1
        result_id = nonce.to_bytes(32, "big")
        try:
            signed.append(("result", nonce, log.record_attestation(result_id, entry(nonce, variant + 10)).message_id))
        except EquivocationError:
            refused += 1
    log.close()
    results.put((variant, signed, refused))


def test_two_replicas_asked_for_conflicting_signatures_sign_at_most_one(postgres: PostgresServer) -> None:
    url = postgres.create_database("standby")
    SigningLog(url, member=1).close()  # the schema, made once
    context = multiprocessing.get_context("spawn")
    start, ready, results = context.Event(), context.Queue(), context.Queue()
    nonces = 150
    procs = [context.Process(target=_replica, args=(url, variant, nonces, start, ready, results)) for variant in (1, 2)]
    for p in procs:
        p.start()
    assert {ready.get(timeout=60) for _ in procs} == {1, 2}
    start.set()
    outcomes = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    # What each replica was handed back, per slot: one envelope across both replicas, never two.
    served: dict[tuple[str, int], set[bytes]] = {}
    for _variant, signed, _refused in outcomes:
        for kind, slot, message_id in signed:
            served.setdefault((kind, slot), set()).add(message_id)
    assert all(len(ids) == 1 for ids in served.values()), "two different envelopes signed for one slot"
    # Every slot was signed once and refused (or answered with the winner's partial) by the other.
    assert len(served) == 2 * nonces
    assert sum(refused for _v, _s, refused in outcomes) == 2 * nonces
    # Each replica asked for every slot (both released by one start event, so they race; which one
    # wins a slot depends on scheduling, and on a loaded machine one may win them all — the property
    # is that the other then gets the winner's answer or a refusal, never its own second signature).
    for _variant, signed, refused in outcomes:
        assert len(signed) + refused == 2 * nonces
    log = SigningLog(url, member=1)
    try:
        for nonce in range(nonces):
            assert log.by_nonce(7, nonce, 1).message_id in served[("nonce", nonce)]
    finally:
        log.close()
