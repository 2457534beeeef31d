"""The gateway instructions of the Tessera Solana program (InitGateway, Send, Deliver) in LiteSVM:
the real Agave runtime, the committed tessera.so deployed through the upgradeable loader."""

from __future__ import annotations

import base64

import pytest
from solders.compute_budget import set_compute_unit_limit
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.system_program import TransferParams, transfer
from solders.transaction import Transaction
from solders.transaction_metadata import TransactionMetadata

from adapters.solana.program import (
    OUTBOX_LEN,
    RECEIPT_HEADER_LEN,
    SENT_EVENT_TAG,
    DeliveryReceipt,
    OutboxState,
    ProgramErrorCode,
    deliver_ix,
    init_gateway_ix,
    outbox_address,
    receipt_address,
    send_ix,
    sent_envelopes,
    sent_envelopes_of,
)
from relay.envelope import Envelope, keccak256
from relay.protocol import MAX_PAYLOAD_LEN, MessageKind
from tests.support.solana import ALICE, BOB, CU_LIMIT, DOMAIN, Chain, envelope

OTHER_DOMAIN = 31337
RECEIVER = bytes(range(32))


@pytest.fixture
def gateway(committee: Chain) -> Chain:
    committee.ok(init_gateway_ix(committee.program_id, committee.payer.pubkey()))
    return committee


def outbox(chain: Chain) -> OutboxState:
    account = chain.svm.get_account(outbox_address(chain.program_id)[0])
    assert account is not None and account.owner == chain.program_id
    return OutboxState.decode(bytes(account.data))


def receipt(chain: Chain, message_id: bytes) -> DeliveryReceipt | None:
    account = chain.svm.get_account(receipt_address(chain.program_id, message_id)[0])
    if account is None or account.owner != chain.program_id:
        return None
    return DeliveryReceipt.decode(bytes(account.data))


def send(chain: Chain, sender: Keypair, payload: bytes = b"task", kind: int = MessageKind.TASK_REQUEST,
         dst_domain: int = OTHER_DOMAIN) -> TransactionMetadata:
    ix = send_ix(chain.program_id, sender.pubkey(), dst_domain=dst_domain, receiver=RECEIVER, kind=kind,
                 payload=payload)
    return chain.ok(ix, signers=(sender,) if sender != chain.payer else ())


# --- InitGateway -------------------------------------------------------------------------------


def test_init_gateway_creates_the_outbox_at_nonce_zero(gateway: Chain) -> None:
    address = outbox_address(gateway.program_id)[0]
    account = gateway.svm.get_account(address)
    assert len(account.data) == OUTBOX_LEN
    assert account.lamports >= gateway.svm.minimum_balance_for_rent_exemption(OUTBOX_LEN)
    state = outbox(gateway)
    assert (state.next_nonce, state.bump) == (0, outbox_address(gateway.program_id)[1])


def test_init_gateway_only_once_and_only_by_the_upgrade_authority(committee: Chain) -> None:
    stranger = Keypair()
    committee.svm.airdrop(stranger.pubkey(), 10**9)
    committee.fails(ProgramErrorCode.NOT_UPGRADE_AUTHORITY, init_gateway_ix(committee.program_id, stranger.pubkey()),
                    signers=(stranger,))
    committee.ok(init_gateway_ix(committee.program_id, committee.payer.pubkey()))
    committee.fails(ProgramErrorCode.OUTBOX_ALREADY_INITIALIZED,
                    init_gateway_ix(committee.program_id, committee.payer.pubkey()))


def test_init_gateway_works_when_the_outbox_address_was_prefunded(committee: Chain) -> None:
    address = outbox_address(committee.program_id)[0]
    committee.ok(transfer(TransferParams(from_pubkey=committee.payer.pubkey(), to_pubkey=address,
                                       lamports=committee.svm.minimum_balance_for_rent_exemption(0))))
    committee.ok(init_gateway_ix(committee.program_id, committee.payer.pubkey()))
    assert outbox(committee).next_nonce == 0


# --- Send --------------------------------------------------------------------------------------


def test_send_numbers_envelopes_logs_them_and_returns_id_and_nonce(gateway: Chain) -> None:
    sender = Keypair()
    gateway.svm.airdrop(sender.pubkey(), 10**9)
    for nonce in range(3):
        payload = f"request {nonce}".encode()
        meta = send(gateway, sender, payload)
        expected = Envelope(kind=MessageKind.TASK_REQUEST, nonce=nonce, src_domain=DOMAIN,
                            src_sender=bytes(sender.pubkey()), dst_domain=OTHER_DOMAIN, dst_receiver=RECEIVER,
                            payload=payload)
        b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
        line = f"Program data: {b64(SENT_EVENT_TAG)} {b64(expected.encode())}"
        assert line in meta.logs()
        assert sent_envelopes_of(meta.logs(), gateway.program_id) == [expected.encode()]
        returned = bytes(meta.return_data().data)
        assert returned == expected.message_id + nonce.to_bytes(8, "little")
        assert outbox(gateway).next_nonce == nonce + 1
    assert outbox(gateway).last_sent_at == gateway.svm.get_clock().unix_timestamp


def test_send_of_every_ordinary_kind_and_a_full_payload(gateway: Chain) -> None:
    for kind in (MessageKind.TASK_REQUEST, MessageKind.TASK_RESULT, MessageKind.PROOF_ATTESTATION, MessageKind.DATA):
        meta = send(gateway, gateway.payer, b"\xab" * MAX_PAYLOAD_LEN, kind=kind)
        (raw,) = sent_envelopes(meta.logs())
        assert Envelope.decode(raw).kind == kind and len(Envelope.decode(raw).payload) == MAX_PAYLOAD_LEN
    assert outbox(gateway).next_nonce == 4


@pytest.mark.parametrize("kind", [0, MessageKind.COMMITTEE_ROTATION, 6, 255])
def test_send_refuses_rotations_and_unknown_kinds(gateway: Chain, kind: int) -> None:
    ix = send_ix(gateway.program_id, gateway.payer.pubkey(), dst_domain=OTHER_DOMAIN, receiver=RECEIVER, kind=kind,
                 payload=b"x")
    gateway.fails(ProgramErrorCode.WRONG_MESSAGE_KIND, ix)
    assert outbox(gateway).next_nonce == 0


def test_send_refuses_a_payload_over_the_limit(gateway: Chain) -> None:
    ix = send_ix(gateway.program_id, gateway.payer.pubkey(), dst_domain=OTHER_DOMAIN, receiver=RECEIVER,
                 kind=MessageKind.DATA, payload=b"\x00" * (MAX_PAYLOAD_LEN + 1))
    gateway.fails(ProgramErrorCode.PAYLOAD_TOO_LONG, ix)


def test_send_requires_the_sender_signature_and_an_initialized_outbox(committee: Chain) -> None:
    ix = send_ix(committee.program_id, committee.payer.pubkey(), dst_domain=OTHER_DOMAIN, receiver=RECEIVER,
                 kind=MessageKind.DATA, payload=b"")
    committee.fails(ProgramErrorCode.OUTBOX_NOT_INITIALIZED, ix)
    committee.ok(init_gateway_ix(committee.program_id, committee.payer.pubkey()))
    someone = Pubkey.new_unique()
    unsigned = send_ix(committee.program_id, someone, dst_domain=OTHER_DOMAIN, receiver=RECEIVER,
                       kind=MessageKind.DATA, payload=b"")
    metas = [AccountMeta(someone, False, False), *unsigned.accounts[1:]]
    committee.fails(ProgramErrorCode.ACCOUNT_NOT_SIGNER, Instruction(committee.program_id, unsigned.data, metas))


def test_send_refuses_a_fake_outbox_or_config(gateway: Chain) -> None:
    fake = Keypair()
    gateway.svm.airdrop(fake.pubkey(), 10**9)
    ix = send_ix(gateway.program_id, gateway.payer.pubkey(), dst_domain=OTHER_DOMAIN, receiver=RECEIVER,
                 kind=MessageKind.DATA, payload=b"")
    fake_outbox = [ix.accounts[0], AccountMeta(fake.pubkey(), False, True), ix.accounts[2]]
    gateway.fails(ProgramErrorCode.OUTBOX_NOT_INITIALIZED, Instruction(gateway.program_id, ix.data, fake_outbox))
    fake_config = [ix.accounts[0], ix.accounts[1], AccountMeta(fake.pubkey(), False, False)]
    gateway.fails(ProgramErrorCode.CONFIG_NOT_INITIALIZED, Instruction(gateway.program_id, ix.data, fake_config))


# --- Deliver -----------------------------------------------------------------------------------


def incoming(payload: bytes = b"result", kind: int = MessageKind.TASK_RESULT, dst_domain: int = DOMAIN,
             nonce: int = 7) -> bytes:
    return envelope(kind=kind, dst_domain=dst_domain, payload=payload, nonce=nonce, src_domain=OTHER_DOMAIN)


def deliver_tx(chain: Chain, env: bytes, signer=ALICE, epoch: int = 1) -> Transaction:
    ix = deliver_ix(chain.program_id, chain.payer.pubkey(), signer.attest(env, epoch), env)
    return Transaction.new_signed_with_payer([set_compute_unit_limit(CU_LIMIT), ix], chain.payer.pubkey(),
                                             [chain.payer], chain.svm.latest_blockhash())


def test_deliver_records_the_envelope_in_a_receipt(gateway: Chain) -> None:
    env = incoming(b"\x42" * MAX_PAYLOAD_LEN)
    tx = deliver_tx(gateway, env)
    size = len(bytes(tx))
    result = gateway.svm.send_transaction(tx)
    assert isinstance(result, TransactionMetadata), "\n".join(result.meta().logs())
    message_id = keccak256(env)
    assert bytes(result.return_data().data) == message_id
    got = receipt(gateway, message_id)
    clock = gateway.svm.get_clock()
    assert got is not None
    assert got.envelope == env and got.message_id == message_id
    assert (got.slot, got.unix_time, got.relayer, got.status) == (clock.slot, clock.unix_timestamp,
                                                                 gateway.payer.pubkey(), 1)
    account = gateway.svm.get_account(receipt_address(gateway.program_id, message_id)[0])
    assert len(account.data) == RECEIPT_HEADER_LEN + len(env)
    minimum = gateway.svm.minimum_balance_for_rent_exemption(len(account.data))
    assert minimum <= account.lamports <= minimum + 1  # the program computes rent in integers, rounding up
    # Measured figures (README.md): a 512-byte payload with a compute-budget instruction.
    units = result.compute_units_consumed()
    print(f"deliver: {units} CU, transaction {size} bytes")
    assert units <= 100_000
    assert size <= 1232


def test_deliver_twice_is_refused_as_already_delivered(gateway: Chain) -> None:
    env = incoming()
    gateway.ok(deliver_ix(gateway.program_id, gateway.payer.pubkey(), ALICE.attest(env, 1), env))
    before = bytes(gateway.svm.get_account(receipt_address(gateway.program_id, keccak256(env))[0]).data)
    gateway.fails(ProgramErrorCode.ALREADY_DELIVERED,
                  deliver_ix(gateway.program_id, gateway.payer.pubkey(), ALICE.attest(env, 1), env))
    after = bytes(gateway.svm.get_account(receipt_address(gateway.program_id, keccak256(env))[0]).data)
    assert before == after


def test_deliver_refuses_a_forged_signature(gateway: Chain) -> None:
    env = incoming()
    gateway.fails(ProgramErrorCode.SIGNATURE_INVALID,
                  deliver_ix(gateway.program_id, gateway.payer.pubkey(), BOB.attest(env, 1), env))
    assert receipt(gateway, keccak256(env)) is None


def test_deliver_refuses_an_envelope_for_another_domain(gateway: Chain) -> None:
    env = incoming(dst_domain=DOMAIN + 1)
    gateway.fails(ProgramErrorCode.WRONG_DESTINATION_DOMAIN,
                  deliver_ix(gateway.program_id, gateway.payer.pubkey(), ALICE.attest(env, 1), env))


def test_deliver_refuses_a_rotation(gateway: Chain) -> None:
    env = incoming(kind=MessageKind.COMMITTEE_ROTATION)
    gateway.fails(ProgramErrorCode.WRONG_MESSAGE_KIND,
                  deliver_ix(gateway.program_id, gateway.payer.pubkey(), ALICE.attest(env, 1), env))


def test_deliver_refuses_a_payload_over_the_limit(gateway: Chain) -> None:
    env = incoming(b"") + b"\x01" * (MAX_PAYLOAD_LEN + 1)
    gateway.fails(ProgramErrorCode.ENVELOPE_MALFORMED,
                  deliver_ix(gateway.program_id, gateway.payer.pubkey(), ALICE.attest(env, 1), env))


def test_deliver_refuses_an_unknown_epoch(gateway: Chain) -> None:
    env = incoming()
    gateway.fails(ProgramErrorCode.EPOCH_UNKNOWN,
                  deliver_ix(gateway.program_id, gateway.payer.pubkey(), ALICE.attest(env, 2), env))


def test_deliver_refuses_a_receipt_at_another_address(gateway: Chain) -> None:
    env = incoming()
    ix = deliver_ix(gateway.program_id, gateway.payer.pubkey(), ALICE.attest(env, 1), env)
    wrong = receipt_address(gateway.program_id, keccak256(b"another message"))[0]
    metas = [ix.accounts[0], ix.accounts[1], AccountMeta(wrong, False, True), ix.accounts[3]]
    gateway.fails(ProgramErrorCode.RECEIPT_WRONG_ADDRESS, Instruction(gateway.program_id, ix.data, metas))


def test_a_prefunded_receipt_address_does_not_block_delivery(gateway: Chain) -> None:
    env = incoming()
    address = receipt_address(gateway.program_id, keccak256(env))[0]
    gateway.ok(transfer(TransferParams(from_pubkey=gateway.payer.pubkey(), to_pubkey=address,
                                     lamports=gateway.svm.minimum_balance_for_rent_exemption(0))))
    gateway.ok(deliver_ix(gateway.program_id, gateway.payer.pubkey(), ALICE.attest(env, 1), env))
    assert receipt(gateway, keccak256(env)).envelope == env
