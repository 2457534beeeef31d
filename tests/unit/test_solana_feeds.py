"""UpdateFeed (tag 48) of the Tessera Solana program in LiteSVM (the real Agave runtime, the committed
tessera.so deployed through the upgradeable loader): the shared vectors' signed round creates the feed
account, newer rounds update it, and stale, tampered, mis-signed or malformed reports are refused."""

from __future__ import annotations

import base64
import dataclasses
import json
import random
import re
import struct
from pathlib import Path

import pytest
from solders.account import Account
from solders.clock import Clock
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.pubkey import Pubkey
from solders.transaction_metadata import TransactionMetadata

import attest
from adapters.solana.feeds import (
    FEED_ACCOUNT_LEN,
    FEED_EVENT_TAG,
    FeedAccount,
    FeedAccountError,
    feed_address,
    feed_attestation,
    raw_update_feed_ix,
    update_feed_ix,
)
from adapters.solana.deploy import PROGRAM_SO_PATH, deploy_program_litesvm
from adapters.solana.program import Attestation, G1Hint, ProgramErrorCode, init_committee_ix, rotate_committee_ix
from relay.envelope import keccak256, message_digest
from relay.feeds.report import FeedReport
from relay.feeds.signed import SignedReport
from tests.support.solana import DOMAIN, Chain, rotation_envelope

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "feeds_v1.json").read_text())
SIGNED_ROUND = VECTORS["signed_round"]
NOW_S = 1_800_000_000


def vector_report() -> FeedReport:
    return FeedReport.decode(bytes.fromhex(SIGNED_ROUND["report"]["encoded"][2:]))


def vector_signed() -> SignedReport:
    return SignedReport(vector_report(), SIGNED_ROUND["committee"]["epoch"],
                        bytes.fromhex(SIGNED_ROUND["signature"][2:]))


@dataclasses.dataclass
class Dealt:
    committee: attest.Committee
    shares: list[attest.KeyShare]

    def sign_digest(self, digest: bytes) -> bytes:
        partials = [attest.partial_sign(share, digest) for share in self.shares[: self.committee.t]]
        result = attest.combine(self.committee, digest, partials)
        assert result.ok
        return result.signature

    def sign(self, report: FeedReport) -> SignedReport:
        return SignedReport(report, self.committee.epoch, self.sign_digest(report.digest(self.committee.epoch)))


@pytest.fixture(scope="module")
def vector_committee() -> Dealt:
    # The generator's dealer (tests/vectors/generate_feeds.py): same seed, same committee.
    committee, shares = attest.deal(4, 3, epoch=1, rng=random.Random(20261123))
    assert "0x" + committee.group_key.hex() == SIGNED_ROUND["committee"]["group_key"]
    return Dealt(committee, shares)


@pytest.fixture(scope="module")
def next_committee() -> Dealt:
    committee, shares = attest.deal(4, 3, epoch=2, rng=random.Random(6))
    return Dealt(committee, shares)


@pytest.fixture
def chain() -> Chain:
    return make_chain(LiteSVM())


def make_chain(svm: LiteSVM) -> Chain:
    payer = Keypair()
    svm.airdrop(payer.pubkey(), 100 * 10**9)
    program_id = deploy_program_litesvm(svm, payer, PROGRAM_SO_PATH.read_bytes())
    svm.set_clock(Clock(svm.get_clock().slot, NOW_S, 0, 0, NOW_S))
    chain = Chain(svm, payer, program_id)
    group_key = bytes.fromhex(SIGNED_ROUND["committee"]["group_key"][2:])
    chain.ok(init_committee_ix(program_id, payer.pubkey(), domain=DOMAIN, epoch=1, n=4, t=3, group_key=group_key))
    return chain


def feed_account(chain: Chain, feed_id: str = "ETH/USD") -> FeedAccount | None:
    account = chain.svm.get_account(feed_address(chain.program_id, feed_id)[0])
    if account is None or account.owner != chain.program_id:
        return None
    return FeedAccount.decode(bytes(account.data))


def program_units(chain: Chain, meta: TransactionMetadata) -> int:
    for line in meta.logs():
        match = re.search(rf"Program {chain.program_id} consumed (\d+) of", line)
        if match:
            return int(match.group(1))
    raise AssertionError("no compute-unit line for the program")


def push(chain: Chain, signed: SignedReport) -> TransactionMetadata:
    return chain.ok(update_feed_ix(chain.program_id, chain.payer.pubkey(), signed))


def later(report: FeedReport, rounds: int = 1, **changes: int) -> FeedReport:
    fields = {"round": report.round + rounds, "observed_at": report.observed_at + 1000 * rounds,
              "published_at": report.published_at + 1000 * rounds, **changes}
    return dataclasses.replace(report, **fields)


# --- first update, layout -----------------------------------------------------------------------


def test_the_vectors_signed_round_creates_the_feed_account(chain: Chain, vector_committee: Dealt) -> None:
    signed = vector_signed()
    assert signed.verify(vector_committee.committee)
    meta = push(chain, signed)
    print(f"\nUpdateFeed, first update (creates the account): {program_units(chain, meta)} CU")

    address, bump = feed_address(chain.program_id, "ETH/USD")
    account = chain.svm.get_account(address)
    assert account.owner == chain.program_id and len(account.data) == FEED_ACCOUNT_LEN
    assert account.lamports >= chain.svm.minimum_balance_for_rent_exemption(FEED_ACCOUNT_LEN)
    stored = FeedAccount.decode(bytes(account.data))
    assert stored.report == signed.report  # every field of the report, as signed
    assert stored.signed.verify(vector_committee.committee)  # anyone can re-verify the stored report
    clock = chain.svm.get_clock()
    assert (stored.bump, stored.epoch, stored.update_count) == (bump, 1, 1)
    assert (stored.updated_slot, stored.updated_unix) == (clock.slot, NOW_S)
    assert stored.price_i128 == signed.report.price and stored.confidence_u128 == signed.report.confidence

    # The documented offsets (README.md "Feeds"), read without the decoder.
    raw = bytes(account.data)
    report = signed.report.encode()
    assert raw[:8] == b"TESSFEED" and raw[8] == 1 and raw[9] == bump
    assert (raw[10], raw[11], raw[12]) == (8, 4, 0b11)
    assert struct.unpack_from("<I", raw, 16)[0] == 1
    assert raw[24:56] == report[:32]
    assert struct.unpack_from("<QQQ", raw, 56) == (11, signed.report.observed_at, signed.report.published_at)
    assert raw[104:120] == signed.report.price.to_bytes(16, "little", signed=True)
    assert raw[136:168] == report[40:72] and raw[168:200] == report[72:104]
    assert raw[200:264] == signed.signature

    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    assert f"Program data: {b64(FEED_EVENT_TAG)} {b64(report)}" in meta.logs()
    assert bytes(meta.return_data().data) == keccak256(report)


def test_newer_rounds_update_the_account(chain: Chain, vector_committee: Dealt) -> None:
    push(chain, vector_signed())
    report = vector_report()
    for step, price in enumerate((345_000_000_000, -7, 2**200), start=1):
        newer = later(report, step, price=price)
        meta = push(chain, vector_committee.sign(newer))
        stored = feed_account(chain)
        assert stored.report == newer and stored.update_count == step + 1
    print(f"\nUpdateFeed, existing account: {program_units(chain, meta)} CU")
    # 2**200 has no i128 copy: the flag says so, the 256-bit field holds it.
    assert stored.price == 2**200 and stored.price_i128 is None
    assert chain.svm.get_account(feed_address(chain.program_id, "ETH/USD")[0]).data[12] == 0b10


_BOUNDARIES = [
    (-(2**255), 0), (2**255 - 1, 2**256 - 1), (-(2**127), 2**128 - 1), (2**127 - 1, 2**128),
    (2**127, 0), (-(2**127) - 1, 1), (-1, 0), (0, 0),
]


def test_the_integer_copies_hold_exactly_the_values_that_fit(chain: Chain, vector_committee: Dealt) -> None:
    report = vector_report()
    for step, (price, confidence) in enumerate(_BOUNDARIES, start=1):
        push(chain, vector_committee.sign(later(report, step, price=price, confidence=confidence)))
        stored = feed_account(chain)
        assert (stored.price, stored.confidence) == (price, confidence)
        assert stored.price_i128 == (price if -(2**127) <= price < 2**127 else None)
        assert stored.confidence_u128 == (confidence if confidence < 2**128 else None)


def test_updates_run_with_the_mainnet_feature_set(vector_committee: Dealt) -> None:
    chain = make_chain(LiteSVM().with_mainnet_features())
    push(chain, vector_signed())
    push(chain, vector_committee.sign(later(vector_report())))
    assert feed_account(chain).report == later(vector_report())


def test_feeds_have_their_own_accounts(chain: Chain, vector_committee: Dealt) -> None:
    push(chain, vector_signed())
    btc = dataclasses.replace(vector_report(), feed_id="BTC/USD", round=1, price=9_700_000_000_000)
    push(chain, vector_committee.sign(btc))
    assert feed_account(chain, "BTC/USD").report == btc
    assert feed_account(chain, "ETH/USD").report == vector_report()


# --- refusals -----------------------------------------------------------------------------------


def test_same_or_older_round_is_refused(chain: Chain, vector_committee: Dealt) -> None:
    push(chain, vector_signed())
    report = vector_report()
    ix = lambda r: update_feed_ix(chain.program_id, chain.payer.pubkey(), vector_committee.sign(r))  # noqa: E731
    chain.fails(ProgramErrorCode.FEED_STALE_ROUND, update_feed_ix(chain.program_id, chain.payer.pubkey(),
                                                                   vector_signed()))
    chain.fails(ProgramErrorCode.FEED_STALE_ROUND, ix(dataclasses.replace(report, round=10)))
    # A higher round observed earlier than the stored one is not newer either.
    chain.fails(ProgramErrorCode.FEED_STALE_ROUND, ix(later(report, 1, observed_at=report.observed_at - 1)))
    assert feed_account(chain).report == report and feed_account(chain).update_count == 1
    # Same observed_at with a higher round is accepted (observed_at >= stored).
    push(chain, vector_committee.sign(later(report, 1, observed_at=report.observed_at)))


def test_a_tampered_report_is_refused(chain: Chain) -> None:
    signed = vector_signed()
    tampered = dataclasses.replace(signed.report, price=signed.report.price + 1)
    # A relayer that recomputes the hint for the edited report: the pairing fails.
    attestation = Attestation(1, signed.signature, G1Hint.for_digest(tampered.digest(1)))
    chain.fails(ProgramErrorCode.SIGNATURE_INVALID,
                raw_update_feed_ix(chain.program_id, chain.payer.pubkey(), attestation, tampered.encode()))
    # One that keeps the original hint: it does not hash the edited report.
    chain.fails(ProgramErrorCode.HINT_NOT_ON_CURVE,
                raw_update_feed_ix(chain.program_id, chain.payer.pubkey(), feed_attestation(signed), tampered.encode()))
    assert feed_account(chain) is None  # nothing created


def test_wrong_epoch_and_bad_hint_are_refused(chain: Chain) -> None:
    signed = vector_signed()
    report = signed.report.encode()
    # Epoch 2 is unknown to the chain.
    relabelled = Attestation(2, signed.signature, G1Hint.for_digest(signed.report.digest(2)))
    chain.fails(ProgramErrorCode.EPOCH_UNKNOWN, raw_update_feed_ix(chain.program_id, chain.payer.pubkey(), relabelled, report))
    # The hint of another epoch's digest does not hash this one.
    other = Attestation(1, signed.signature, G1Hint.for_digest(signed.report.digest(0)))
    chain.fails(ProgramErrorCode.HINT_NOT_ON_CURVE, raw_update_feed_ix(chain.program_id, chain.payer.pubkey(), other, report))
    # The negated root (y not the principal square root).
    hint = feed_attestation(signed).hint
    negated = G1Hint.for_point(hint.k, 21888242871839275222246405745257275088696311157297823662689037894645226208583
                               - int.from_bytes(hint.y, "big"))
    chain.fails(ProgramErrorCode.HINT_NOT_CANONICAL, raw_update_feed_ix(
        chain.program_id, chain.payer.pubkey(), Attestation(1, signed.signature, negated), report))
    assert feed_account(chain) is None


def test_a_decimals_change_is_refused(chain: Chain, vector_committee: Dealt) -> None:
    push(chain, vector_signed())
    chain.fails(ProgramErrorCode.FEED_DECIMALS_CHANGED, update_feed_ix(
        chain.program_id, chain.payer.pubkey(), vector_committee.sign(later(vector_report(), decimals=9))))


_FIELD_ERRORS = {
    "length": ProgramErrorCode.FEED_REPORT_MALFORMED,
    "feed_id": ProgramErrorCode.FEED_ID_INVALID,
    "decimals": ProgramErrorCode.FEED_DECIMALS_INVALID,
    "observations": ProgramErrorCode.FEED_NO_OBSERVATIONS,
}


@pytest.mark.parametrize("case", VECTORS["invalid_reports"], ids=lambda case: case["name"])
def test_reports_the_decoders_reject_are_refused(chain: Chain, case: dict) -> None:
    raw = bytes.fromhex(case["encoded"][2:])
    # Signed by nobody: the encoding checks come first, each with its own error.
    attestation = Attestation(1, bytes(64), G1Hint.for_digest(keccak256(raw)))
    chain.fails(_FIELD_ERRORS[case["field"]], raw_update_feed_ix(chain.program_id, chain.payer.pubkey(), attestation, raw))


def test_the_feed_account_must_be_the_feeds_pda(chain: Chain, vector_committee: Dealt) -> None:
    signed = vector_signed()
    other = feed_address(chain.program_id, "BTC/USD")[0]
    chain.fails(ProgramErrorCode.FEED_WRONG_ADDRESS, raw_update_feed_ix(
        chain.program_id, chain.payer.pubkey(), feed_attestation(signed), signed.report.encode(), feed=other))
    # An account of this program at the PDA that is not a feed (cannot happen through the program;
    # planted here) is refused rather than overwritten.
    address = feed_address(chain.program_id, "ETH/USD")[0]
    chain.svm.set_account(address, Account(10**9, bytes(FEED_ACCOUNT_LEN), chain.program_id, False, 0))
    chain.fails(ProgramErrorCode.FEED_ACCOUNT_INVALID, update_feed_ix(chain.program_id, chain.payer.pubkey(), signed))


def test_a_prefunded_feed_address_does_not_block_the_first_update(chain: Chain) -> None:
    from solders.system_program import TransferParams, transfer

    address = feed_address(chain.program_id, "ETH/USD")[0]
    chain.ok(transfer(TransferParams(from_pubkey=chain.payer.pubkey(), to_pubkey=address, lamports=1_000_000)))
    push(chain, vector_signed())
    assert feed_account(chain).report == vector_report()


# --- committee rotation -------------------------------------------------------------------------


def test_the_previous_committee_is_accepted_within_its_grace_period(
    chain: Chain, vector_committee: Dealt, next_committee: Dealt
) -> None:
    push(chain, vector_signed())
    rotation = rotation_envelope(2, next_committee.committee.group_key, grace=600, receiver=chain.program_id)
    signature = vector_committee.sign_digest(message_digest(1, keccak256(rotation)))
    chain.ok(rotate_committee_ix(chain.program_id, Attestation.for_envelope(rotation, 1, signature), rotation))
    assert chain.config().current_epoch == 2

    report = vector_report()
    push(chain, vector_committee.sign(later(report, 1)))  # epoch 1, within grace
    push(chain, next_committee.sign(later(report, 2)))  # epoch 2
    assert feed_account(chain).epoch == 2
    chain.set_time(NOW_S + 601)
    chain.fails(ProgramErrorCode.EPOCH_EXPIRED, update_feed_ix(
        chain.program_id, chain.payer.pubkey(), vector_committee.sign(later(report, 3))))
    push(chain, next_committee.sign(later(report, 4)))
    assert feed_account(chain).round == report.round + 4


# --- decoder ------------------------------------------------------------------------------------


def test_the_decoder_refuses_what_is_not_a_feed_account(chain: Chain) -> None:
    push(chain, vector_signed())
    raw = bytes(chain.svm.get_account(feed_address(chain.program_id, "ETH/USD")[0]).data)
    with pytest.raises(FeedAccountError, match="TESSFEED"):
        FeedAccount.decode(raw[:-1])
    with pytest.raises(FeedAccountError, match="TESSFEED"):
        FeedAccount.decode(b"TESSCOMM" + raw[8:])
    with pytest.raises(FeedAccountError, match="version 2"):
        FeedAccount.decode(raw[:8] + b"\x02" + raw[9:])
    with pytest.raises(FeedAccountError, match="feed id"):
        FeedAccount.decode(raw[:24] + bytes(32) + raw[56:])


def test_feed_address_takes_the_id_or_its_padded_bytes() -> None:
    program_id = Pubkey.new_unique()
    assert feed_address(program_id, "ETH/USD") == feed_address(program_id, b"ETH/USD".ljust(32, b"\0"))
    assert feed_address(program_id, "ETH/USD") == Pubkey.find_program_address(
        [b"feed", b"ETH/USD".ljust(32, b"\0")], program_id)
    with pytest.raises(ValueError):
        feed_address(program_id, b"ETH/USD")


def test_the_committee_config_must_be_the_committee_pda(chain: Chain) -> None:
    impostor = feed_address(chain.program_id, "BTC/USD")[0]
    chain.fails(ProgramErrorCode.CONFIG_NOT_INITIALIZED,
                update_feed_ix(chain.program_id, chain.payer.pubkey(), vector_signed(), committee_config=impostor))


# --- the push target's configuration -----------------------------------------------------------


def _config(tmp_path: Path, **chain: object):
    from relay.config import parse_config

    base = {"kind": "solana", "domain": 903, "rpc_urls": ["http://127.0.0.1:1"], "program_id": str(Pubkey.new_unique())}
    return parse_config({"chains": {"sol": {**base, **chain}, "evm": {
        "kind": "evm", "domain": 31337, "chain_id": 31337, "rpc_urls": ["http://127.0.0.1:2"]}}})


async def test_the_target_from_config_takes_the_given_key_then_sender_then_signer(tmp_path: Path) -> None:
    from adapters.registry import driver_named
    from adapters.solana.driver import SolanaDriver
    from adapters.solana.feeds import SolanaFeedTarget
    from relay.config import FeedPushSection, KeyRef
    from relay.errors import ConfigError

    keys = {}
    for name in ("pusher", "sender", "signer"):
        keys[name] = Keypair()
        (tmp_path / f"{name}.json").write_text(json.dumps(list(bytes(keys[name]))))
    ref = lambda name: {"file": str(tmp_path / f"{name}.json")}  # noqa: E731
    config = _config(tmp_path, sender=ref("sender"), signer=ref("signer"))
    for payer, expected in ((KeyRef(**ref("pusher")), "pusher"), (None, "sender")):
        async with SolanaFeedTarget.from_config("sol", config.chains["sol"], payer) as target:
            assert target.payer.pubkey() == keys[expected].pubkey() and target.name == "sol"
    async with SolanaFeedTarget.from_config("sol", _config(tmp_path, signer=ref("signer")).chains["sol"]) as target:
        assert target.payer.pubkey() == keys["signer"].pubkey()

    with pytest.raises(ConfigError, match="no key to pay for feed updates on sol"):
        SolanaFeedTarget.from_config("sol", _config(tmp_path).chains["sol"])
    # Which target class serves a chain is the registry's answer (adapters.registry), not the target's.
    async with driver_named(config, "sol").feed_target(config, FeedPushSection()) as target:
        assert isinstance(target, SolanaFeedTarget) and target.payer.pubkey() == keys["sender"].pubkey()
    assert not isinstance(driver_named(config, "evm"), SolanaDriver)
    with pytest.raises(ConfigError, match="program_id is not set"):
        SolanaFeedTarget.from_config("sol", _config(tmp_path, program_id=None, signer=ref("signer")).chains["sol"])
    (tmp_path / "bad.json").write_text("[1, 2, 3]")
    with pytest.raises(ConfigError, match="not a Solana keypair"):
        SolanaFeedTarget.from_config("sol", config.chains["sol"], KeyRef(file=tmp_path / "bad.json"))


async def test_confirmation_gives_up_retryably_when_the_blockhash_expires_or_time_runs_out() -> None:
    from types import SimpleNamespace

    from solders.signature import Signature

    from adapters.solana.feeds import FeedPushError, SolanaFeedTarget

    target = SolanaFeedTarget(["http://127.0.0.1:9"], Keypair(), Pubkey.default(), Pubkey.default(),
                              confirm_timeout_s=0.3)
    height = {"now": 101}
    calls: list[str] = []

    async def fake_call(what: str, fn) -> SimpleNamespace:
        calls.append(what)
        if what == "getSignatureStatuses":  # through a client, as the pool calls it: never landed
            async def statuses(signatures, search_transaction_history):
                return SimpleNamespace(value=[None] * len(signatures))
            return await fn(SimpleNamespace(get_signature_statuses=statuses))
        return SimpleNamespace(value=height["now"])

    target.rpc.call = fake_call  # type: ignore[method-assign]
    try:
        with pytest.raises(FeedPushError, match="expired unlanded") as expired:
            await target._confirm(Signature.default(), 100)
        assert expired.value.retryable
        height["now"] = 50  # still valid, but nothing lands before confirm_timeout_s
        with pytest.raises(FeedPushError, match="not confirmed within") as slow:
            await target._confirm(Signature.default(), 100)
        assert slow.value.retryable and calls.count("getSignatureStatuses") > 2
    finally:
        await target.close()
