"""The ledger around LiteSVM: commitments, account versions, blockhash window, history cap, index."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, strategies as st
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction
from solders.transaction_status import TransactionErrorFieldless

from adapters.solana_localnet.codec import DecodeError, b58decode, b58encode
from adapters.solana_localnet.errors import LocalnetError
from adapters.solana_localnet.ledger import (
    CONFIRMED,
    FINALIZED,
    MAX_PROCESSING_AGE,
    PROCESSED,
    Ledger,
    LedgerConfig,
    PreflightFailed,
    SignatureVerificationFailed,
    extract_memo,
)

MEMO = Pubkey.from_string("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr")


def make_ledger(**kw: int) -> Ledger:
    return Ledger(LedgerConfig(**{"finality_slots": 3, **kw}))


def send_memo(ledger: Ledger, payer: Keypair, text: bytes, blockhash: Hash | None = None, preflight: bool = True):
    blockhash = blockhash or ledger.latest_blockhash(PROCESSED)[0]
    ix = Instruction(MEMO, text, [AccountMeta(payer.pubkey(), True, False)])
    tx = VersionedTransaction(Message.new_with_blockhash([ix], payer.pubkey(), blockhash), [payer])
    return ledger.submit(tx, preflight=preflight)


@given(st.binary(max_size=80))
def test_base58_roundtrip(data: bytes) -> None:
    assert b58decode(b58encode(data)) == data


def test_base58_agrees_with_solders() -> None:
    for _ in range(20):
        key = Keypair().pubkey()
        assert b58encode(bytes(key)) == str(key)
        assert b58decode(str(key)) == bytes(key)
    sig = Keypair().sign_message(os.urandom(10))
    assert b58encode(bytes(sig)) == str(sig)
    with pytest.raises(DecodeError):
        b58decode("0OIl")


def test_config_rejects_impossible_values() -> None:
    with pytest.raises(LocalnetError, match="--finality-slots"):
        LedgerConfig(finality_slots=0)
    with pytest.raises(LocalnetError, match="--slot-ms"):
        LedgerConfig(slot_ms=0)


def test_commitments_trail_processed() -> None:
    ledger = make_ledger()
    payer = Keypair()
    sig = ledger.airdrop(payer.pubkey(), 10**9)
    record = ledger.record(sig)
    assert record.slot == ledger.slot(PROCESSED) == 1
    assert ledger.commitment_of(record.slot) == PROCESSED
    assert ledger.get_account(payer.pubkey(), PROCESSED).lamports == 10**9
    assert ledger.get_account(payer.pubkey(), CONFIRMED) is None
    assert ledger.get_account(payer.pubkey(), FINALIZED) is None
    ledger.advance_slot()
    assert ledger.commitment_of(record.slot) == CONFIRMED
    assert ledger.confirmations(record) == 1
    assert ledger.get_account(payer.pubkey(), CONFIRMED).lamports == 10**9
    assert ledger.get_account(payer.pubkey(), FINALIZED) is None
    for _ in range(2):
        ledger.advance_slot()
    assert ledger.commitment_of(record.slot) == FINALIZED
    assert ledger.confirmations(record) is None
    assert ledger.get_account(payer.pubkey(), FINALIZED).lamports == 10**9


def test_reads_at_each_commitment_see_their_own_slot() -> None:
    ledger = make_ledger(finality_slots=4)
    key = Keypair().pubkey()
    balances = []
    for _ in range(4):
        ledger.airdrop(key, 10**9)
        balances.append(ledger.get_account(key, PROCESSED).lamports)
        ledger.advance_slot()
    # Now slots 1..4 each added 1 SOL; processed = 5, confirmed = 4, finalized = 1.
    assert ledger.get_account(key, PROCESSED).lamports == 4 * 10**9
    assert ledger.get_account(key, CONFIRMED).lamports == 4 * 10**9
    assert ledger.get_account(key, FINALIZED).lamports == 10**9
    assert [ledger.account_at_slot(key, s).lamports for s in (1, 2, 3)] == balances[:3]
    program_view = dict(ledger.program_accounts(Pubkey.default(), FINALIZED))
    assert program_view[key].lamports == 10**9
    for _ in range(4):
        ledger.advance_slot()
    assert ledger.get_account(key, FINALIZED).lamports == 4 * 10**9


def test_blockhashes_expire_after_150_slots() -> None:
    ledger = make_ledger()
    payer = Keypair()
    ledger.airdrop(payer.pubkey(), 10**10)
    old_hash, last_valid = ledger.latest_blockhash(PROCESSED)
    assert last_valid == ledger.slot(PROCESSED) + MAX_PROCESSING_AGE
    for _ in range(MAX_PROCESSING_AGE):
        ledger.advance_slot()
    assert ledger.is_blockhash_valid(old_hash, PROCESSED)
    _, record = send_memo(ledger, payer, b"just in time", old_hash)
    assert record is not None and record.err is None
    ledger.advance_slot()
    assert not ledger.is_blockhash_valid(old_hash, PROCESSED)
    with pytest.raises(PreflightFailed) as caught:
        send_memo(ledger, payer, b"too late", old_hash)
    assert caught.value.err == TransactionErrorFieldless.BlockhashNotFound
    # Without preflight a validator drops it silently: a signature comes back, nothing lands.
    sig, record = send_memo(ledger, payer, b"too late", old_hash, preflight=False)
    assert record is None and ledger.record(sig) is None


def test_duplicates_and_bad_signatures_are_refused() -> None:
    ledger = make_ledger()
    payer = Keypair()
    ledger.airdrop(payer.pubkey(), 10**10)
    blockhash = ledger.latest_blockhash(PROCESSED)[0]
    send_memo(ledger, payer, b"once", blockhash)
    with pytest.raises(PreflightFailed) as caught:
        send_memo(ledger, payer, b"once", blockhash)
    assert caught.value.err == TransactionErrorFieldless.AlreadyProcessed
    ix = Instruction(MEMO, b"forged", [])
    message = Message.new_with_blockhash([ix], payer.pubkey(), blockhash)
    forged = VersionedTransaction.populate(message, [Keypair().sign_message(bytes(message))])
    with pytest.raises(SignatureVerificationFailed):
        ledger.submit(forged, preflight=True)


def test_same_airdrop_twice_in_one_slot_lands_twice() -> None:
    ledger = make_ledger()
    key = Keypair().pubkey()
    first = ledger.airdrop(key, 10**9)
    second = ledger.airdrop(key, 10**9)
    assert first != second
    assert ledger.get_account(key, PROCESSED).lamports == 2 * 10**9


def test_history_is_capped_and_the_index_follows() -> None:
    ledger = make_ledger(max_transactions=3)
    key = Keypair().pubkey()
    sigs = []
    for _ in range(5):
        sigs.append(ledger.airdrop(key, 10**9))
        ledger.advance_slot()
    assert [ledger.record(s) is not None for s in sigs] == [False, False, True, True, True]
    found = ledger.signatures_for_address(key, before=None, until=None, limit=10, commitment=CONFIRMED)
    assert [r.signature for r in found] == sigs[:1:-1]
    page = ledger.signatures_for_address(key, before=sigs[4], until=None, limit=1, commitment=CONFIRMED)
    assert [r.signature for r in page] == [sigs[3]]
    page = ledger.signatures_for_address(key, before=None, until=sigs[2], limit=10, commitment=CONFIRMED)
    assert [r.signature for r in page] == [sigs[4], sigs[3]]
    finalized = ledger.signatures_for_address(key, before=None, until=None, limit=10, commitment=FINALIZED)
    assert all(r.slot <= ledger.slot(FINALIZED) for r in finalized)
    faucet_index = ledger.signatures_for_address(
        ledger.faucet.pubkey(), before=None, until=None, limit=10, commitment=CONFIRMED
    )
    assert len(faucet_index) == 3
    unknown = ledger.signatures_for_address(key, before=Signature.default(), until=None, limit=10, commitment=CONFIRMED)
    assert unknown == []


def test_failed_transaction_is_recorded_with_fee() -> None:
    ledger = make_ledger()
    payer = Keypair()
    ledger.airdrop(payer.pubkey(), 10**9)
    blockhash = ledger.latest_blockhash(PROCESSED)[0]
    ix = transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=Keypair().pubkey(), lamports=10**12))
    tx = VersionedTransaction(Message.new_with_blockhash([ix], payer.pubkey(), blockhash), [payer])
    sig, record = ledger.submit(tx, preflight=False)
    assert record is not None and record.err is not None
    assert record.post_balances[0] == record.pre_balances[0] - 5000
    # An unfunded fee payer fails before execution: not recorded, as on a validator.
    stranger = Keypair()
    _, dropped = send_memo(ledger, stranger, b"who pays?", preflight=False)
    assert dropped is None


def test_memo_format_matches_agave() -> None:
    payer = Keypair()
    ixs = [
        Instruction(MEMO, b"first", [AccountMeta(payer.pubkey(), True, False)]),
        Instruction(MEMO, b"\xff", []),
    ]
    tx = VersionedTransaction(Message.new_with_blockhash(ixs, payer.pubkey(), Hash.default()), [payer])
    assert extract_memo(tx) == "[5] first; [1] (unparseable)"


def test_listener_events_follow_commitments() -> None:
    ledger = make_ledger(finality_slots=2)
    events: list[tuple] = []

    class Recorder:
        def on_transaction(self, record):  # noqa: ANN001
            events.append(("tx", record.slot))

        def on_slot(self, slot, parent, root):  # noqa: ANN001
            events.append(("slot", slot, parent, root))

        def on_commitment(self, commitment, slot):  # noqa: ANN001
            events.append((commitment, slot))

    ledger.add_listener(Recorder())
    ledger.airdrop(Keypair().pubkey(), 10**9)
    ledger.advance_slot()
    ledger.advance_slot()
    assert events == [
        ("tx", 1),
        ("slot", 2, 1, 0),
        (CONFIRMED, 1),
        ("slot", 3, 2, 1),
        (CONFIRMED, 2),
        (FINALIZED, 1),
    ]


def test_airdrop_beyond_the_faucet_is_refused() -> None:
    ledger = make_ledger()
    with pytest.raises(LocalnetError, match="exceeds the faucet"):
        ledger.airdrop(Keypair().pubkey(), 2**63)
    big = ledger.airdrop(Keypair().pubkey(), 100_000_000 * 10**9)
    assert ledger.record(big).err is None
