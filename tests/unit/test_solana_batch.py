"""Batches and closing on the Tessera Solana program (contracts/solana/src/batch.c) in LiteSVM:
VerifyRoot, DeliverWithProof, CloseRoot, CloseReceipt with its replay bitmap, the shared tree
vectors through the stateless CheckBatch, every refusal, the CU per message and the lamports a
delivery leaves locked once closed."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from solders.compute_budget import set_compute_unit_limit
from solders.account import Account
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.transaction import Transaction
from solders.transaction_metadata import TransactionMetadata

from adapters.solana.gateway import DELIVER_WITH_PROOF_CU_LIMIT, proof_delivery_cu_limit
from adapters.solana.tx import PACKET_DATA_SIZE, transaction_size
from adapters.solana.program import (
    RECEIPT_RETENTION_SECONDS,
    SYSTEM_PROGRAM_ID,
    REPLAY_ACCOUNT_LEN,
    ROOT_ACCOUNT_LEN,
    ROOT_RETENTION_SECONDS,
    Attestation,
    G1Hint,
    ProgramErrorCode,
    RootAccount,
    check_batch_digest_ix,
    check_batch_proof_ix,
    close_receipt_ix,
    close_root_ix,
    committee_address,
    deliver_ix,
    deliver_with_proof_ix,
    init_gateway_ix,
    pause_ix,
    receipt_address,
    replay_address,
    replay_bit_set,
    root_address,
    taskboard_address,
    verify_root_ix,
)
from relay.batch import MAX_BATCH_DEPTH, Batch, merkle_proof, merkle_root
from relay.envelope import Envelope
from adapters.solana.rpc import SolanaAdapterError
from relay.protocol import MAX_PAYLOAD_LEN, MessageKind
from tests.support.solana import ALICE, BOB, CU_LIMIT, DOMAIN, Chain, funded

E = ProgramErrorCode
VECTORS = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "batch_v1.json").read_text())
SRC = 31337
SENDER = b"\x00" * 12 + b"\x11" * 20


def _b(value: str) -> bytes:
    return bytes.fromhex(value.removeprefix("0x"))


@pytest.fixture
def gateway(committee: Chain) -> Chain:
    committee.ok(init_gateway_ix(committee.program_id, committee.payer.pubkey()))
    return committee


def lane(count: int, *, first_nonce: int = 0, src: int = SRC, receiver: bytes = b"\x22" * 32,
         payload: bytes = b"batched") -> list[Envelope]:
    return [Envelope(MessageKind.DATA, first_nonce + i, src, SENDER, DOMAIN, receiver, payload + bytes([i]))
            for i in range(count)]


def root_attestation(batch: Batch, signer=ALICE, epoch: int = 1, dst: int = DOMAIN) -> Attestation:
    from relay.batch import root_digest
    signature, hint = signer.sign_digest(root_digest(epoch, batch.src_domain, dst, len(batch.envelopes), batch.root))
    return Attestation(epoch, signature, hint)


def verify(chain: Chain, batch: Batch, attestation: Attestation | None = None, payer: Keypair | None = None):
    payer = payer or chain.payer
    ix = verify_root_ix(chain.program_id, payer.pubkey(), attestation or root_attestation(batch),
                        src_domain=batch.src_domain, leaf_count=len(batch.envelopes), root=batch.root)
    return ix, (payer,) if payer != chain.payer else ()


def prove(chain: Chain, batch: Batch, i: int, *, root: bytes | None = None, proof=None, envelope: bytes | None = None):
    return deliver_with_proof_ix(chain.program_id, chain.payer.pubkey(), root or batch.root, i,
                                 batch.proof(i) if proof is None else proof,
                                 envelope or batch.envelopes[i].encode())


def lamports(chain: Chain, key: Pubkey) -> int:
    account = chain.svm.get_account(key)
    return 0 if account is None else account.lamports


def exists(chain: Chain, key: Pubkey) -> bool:
    account = chain.svm.get_account(key)
    return account is not None and account.owner == chain.program_id and account.lamports > 0


# --- the tree in C, against the shared vectors ---------------------------------------------------


def _return_data(chain: Chain, ix) -> bytes:
    meta = chain.ok(ix)
    return bytes(meta.return_data().data)


def test_tree_vectors_through_check_batch(chain: Chain) -> None:
    for tree in VECTORS["trees"]:
        ids = [_b(i) for i in tree["message_ids"]]
        for case in tree["proofs"]:
            got = _return_data(chain, check_batch_proof_ix(chain.program_id, ids[case["index"]], case["index"],
                                                           len(ids), [_b(p) for p in case["proof"]]))
            assert got == _b(tree["root"]), f"tree of {len(ids)}, leaf {case['index']}"


def test_digest_vectors_through_check_batch(chain: Chain) -> None:
    for case in VECTORS["digests"]:
        got = _return_data(chain, check_batch_digest_ix(chain.program_id, case["epoch"], case["src_domain"],
                                                        case["dst_domain"], case["leaf_count"], _b(case["root"])))
        assert got == _b(case["digest"])


def test_invalid_proof_vectors_never_give_their_root(chain: Chain) -> None:
    for case in VECTORS["invalid_proofs"]:
        result = chain.send(check_batch_proof_ix(chain.program_id, _b(case["message_id"]), case["index"],
                                                 case["leaf_count"], [_b(p) for p in case["proof"]]))
        if isinstance(result, TransactionMetadata):
            assert bytes(result.return_data().data) != _b(case["root"]), case["reason"]


# --- VerifyRoot + DeliverWithProof ----------------------------------------------------------------


def test_verify_root_once_then_every_message_with_its_proof(gateway: Chain, capsys) -> None:
    batch = Batch.of(lane(64))
    ix, signers = verify(gateway, batch)
    meta = gateway.ok(ix, signers=signers)
    root_cu = meta.compute_units_consumed()
    state = RootAccount.decode(bytes(gateway.svm.get_account(root_address(gateway.program_id, batch.root)).data))
    assert (state.src_domain, state.dst_domain, state.leaf_count, state.epoch, state.root) == (SRC, DOMAIN, 64, 1,
                                                                                               batch.root)
    assert state.payer == gateway.payer.pubkey()
    gateway.fails(E.ROOT_ALREADY_VERIFIED, ix, signers=signers)
    cus = []
    for i in range(64):
        meta = gateway.ok(prove(gateway, batch, i))
        cus.append(meta.compute_units_consumed())
        assert exists(gateway, receipt_address(gateway.program_id, batch.envelopes[i].message_id)[0])
    with capsys.disabled():
        print(f"\nSolana VerifyRoot {root_cu} CU; DeliverWithProof at batch 64: mean {sum(cus) / len(cus):,.0f} CU, "
              f"max {max(cus):,} CU per message (program + compute-budget instruction)")
    assert max(cus) <= 15_000, "target: <= 15k CU per message after its root is verified"
    gateway.fails(E.ALREADY_DELIVERED, prove(gateway, batch, 5))


def test_forged_or_misdirected_root_signatures_are_refused(gateway: Chain) -> None:
    from relay.batch import root_digest
    batch = Batch.of(lane(3))
    ix, _ = verify(gateway, batch, root_attestation(batch, signer=BOB))
    gateway.fails(E.SIGNATURE_INVALID, ix)

    def presented(signed_digest: bytes, *, src: int = SRC, count: int = 3) -> None:
        # ALICE's genuine signature of `signed_digest`, with the (public) hint of what is presented
        signature, _ = ALICE.sign_digest(signed_digest)
        hint = G1Hint.for_digest(root_digest(1, src, DOMAIN, count, batch.root))
        gateway.fails(E.SIGNATURE_INVALID, verify_root_ix(gateway.program_id, gateway.payer.pubkey(),
                                                          Attestation(1, signature, hint), src_domain=src,
                                                          leaf_count=count, root=batch.root))

    presented(root_digest(1, SRC, DOMAIN + 1, 3, batch.root))  # signed for another destination
    presented(root_digest(1, SRC, DOMAIN, 3, batch.root), src=SRC + 1)  # presented as another lane
    presented(root_digest(1, SRC, DOMAIN, 3, batch.root), count=4)  # or another size
    presented(batch.envelopes[0].digest(1))  # a message signature is not a root signature
    gateway.fails(E.BATCH_SIZE_INVALID, verify_root_ix(gateway.program_id, gateway.payer.pubkey(),
                                                       root_attestation(batch), src_domain=SRC, leaf_count=65,
                                                       root=batch.root))
    # no root account was created, so nothing can be delivered against it
    gateway.fails(E.ROOT_NOT_VERIFIED, prove(gateway, batch, 0))
    gateway.ok(verify(gateway, batch)[0])


def test_proof_for_another_root_is_refused(gateway: Chain) -> None:
    a = Batch.of(lane(8))
    b = Batch.of(lane(8, first_nonce=100))
    for batch in (a, b):
        ix, _ = verify(gateway, batch)
        gateway.ok(ix)
    # b's message with its valid proof, named against root a
    gateway.fails(E.PROOF_INVALID, prove(gateway, b, 3, root=a.root, proof=b.proof(3)))
    # a's proof for b's message, against a
    gateway.fails(E.PROOF_INVALID, prove(gateway, a, 3, envelope=b.envelopes[3].encode()))
    # right message, wrong index; a tampered sibling; a proof one hash short or long
    gateway.fails(E.PROOF_INVALID, deliver_with_proof_ix(gateway.program_id, gateway.payer.pubkey(), a.root, 2,
                                                         a.proof(3), a.envelopes[3].encode()))
    bent = a.proof(3)
    bent[1] = bytes([bent[1][0] ^ 1]) + bent[1][1:]
    gateway.fails(E.PROOF_INVALID, prove(gateway, a, 3, proof=bent))
    gateway.fails(E.PROOF_INVALID, prove(gateway, a, 3, proof=a.proof(3)[:-1]))
    gateway.fails(E.PROOF_INVALID, prove(gateway, a, 3, proof=[*a.proof(3), a.proof(3)[0]]))
    gateway.fails(E.BATCH_SIZE_INVALID, deliver_with_proof_ix(gateway.program_id, gateway.payer.pubkey(), a.root, 8,
                                                              a.proof(3), a.envelopes[3].encode()))
    gateway.ok(prove(gateway, a, 3))


def test_lane_mismatch_is_refused(gateway: Chain) -> None:
    batch = Batch.of(lane(2))
    ix, _ = verify(gateway, batch)
    gateway.ok(ix)
    stranger = lane(1, src=SRC + 1)[0]
    gateway.fails(E.LANE_MISMATCH, prove(gateway, batch, 0, envelope=stranger.encode()))


def test_a_message_replayed_through_a_second_batch_is_refused(gateway: Chain) -> None:
    a = Batch.of(lane(4))
    b = Batch.of([*lane(2, first_nonce=50), a.envelopes[1]])
    for batch in (a, b):
        ix, _ = verify(gateway, batch)
        gateway.ok(ix)
    gateway.ok(prove(gateway, a, 1))
    gateway.fails(E.ALREADY_DELIVERED, prove(gateway, b, 2))
    # and once a's receipt of it is closed, through b's root again, or through Deliver with its own signature
    env = a.envelopes[1]
    gateway.set_time(1_700_000_000 + RECEIPT_RETENTION_SECONDS + 1)
    gateway.ok(close_receipt_ix(gateway.program_id, gateway.payer.pubkey(), env, gateway.payer.pubkey()))
    gateway.fails(E.DELIVERED_AND_CLOSED, prove(gateway, b, 2))
    gateway.fails(E.DELIVERED_AND_CLOSED, deliver_ix(gateway.program_id, gateway.payer.pubkey(),
                                                     ALICE.attest(env.encode(), 1), env.encode()))


# --- CloseReceipt ---------------------------------------------------------------------------------


def test_close_receipt_returns_the_rent_to_the_relayer_and_keeps_the_message_delivered(gateway: Chain,
                                                                                         capsys) -> None:
    receiver = funded(gateway)
    relayer = funded(gateway, 10**10)
    batch = Batch.of(lane(3, receiver=bytes(receiver.pubkey()), payload=b"x" * 400))
    ix, _ = verify(gateway, batch)
    gateway.ok(ix)
    env = batch.envelopes[0]
    before = lamports(gateway, relayer.pubkey())
    gateway.ok(deliver_with_proof_ix(gateway.program_id, relayer.pubkey(), batch.root, 0, batch.proof(0),
                                     env.encode()), signers=(relayer,))
    receipt = receipt_address(gateway.program_id, env.message_id)[0]
    rent = lamports(gateway, receipt)
    assert lamports(gateway, relayer.pubkey()) == before - rent  # the chain payer pays the fee
    stranger = funded(gateway)
    gateway.fails(E.CLOSE_TOO_EARLY, close_receipt_ix(gateway.program_id, stranger.pubkey(), env, relayer.pubkey()),
                  signers=(stranger,))
    gateway.fails(E.RECIPIENT_WRONG, close_receipt_ix(gateway.program_id, receiver.pubkey(), env,
                                                      stranger.pubkey()), signers=(receiver,))
    # the receiver closes at once (it read the receipt); it pays the first bitmap of the window
    mid = lamports(gateway, relayer.pubkey())
    gateway.ok(close_receipt_ix(gateway.program_id, receiver.pubkey(), env, relayer.pubkey()), signers=(receiver,))
    assert not exists(gateway, receipt)
    assert lamports(gateway, relayer.pubkey()) == mid + rent, "the rent goes back to the relayer"
    bitmap = gateway.svm.get_account(replay_address(gateway.program_id, SRC, env.nonce))
    assert len(bitmap.data) == REPLAY_ACCOUNT_LEN and replay_bit_set(bytes(bitmap.data), env.nonce)
    assert not replay_bit_set(bytes(bitmap.data), env.nonce + 1)
    # a closed receipt replayed: refused, through the root and through Deliver
    gateway.fails(E.DELIVERED_AND_CLOSED, prove(gateway, batch, 0))
    gateway.fails(E.DELIVERED_AND_CLOSED, deliver_ix(gateway.program_id, gateway.payer.pubkey(),
                                                     ALICE.attest(env.encode(), 1), env.encode()))
    gateway.fails(E.NOT_A_RECEIPT, close_receipt_ix(gateway.program_id, receiver.pubkey(), env, relayer.pubkey()),
                  signers=(receiver,))
    # after the retention period anyone may close; the rent still goes to the relayer
    gateway.ok(prove(gateway, batch, 1))
    gateway.set_time(1_700_000_000 + RECEIPT_RETENTION_SECONDS)
    payer_before = lamports(gateway, gateway.payer.pubkey())
    gateway.ok(close_receipt_ix(gateway.program_id, stranger.pubkey(), batch.envelopes[1], gateway.payer.pubkey()),
               signers=(stranger,))
    assert lamports(gateway, gateway.payer.pubkey()) > payer_before
    # what stays locked per delivered message once receipts are closed: 1/8192 of a bitmap
    locked = bitmap.lamports / 8192
    with capsys.disabled():
        print(f"\nSolana rent per delivery: receipt {rent:,} lamports (402-byte envelope), returned on close; "
              f"locked after close {locked:,.0f} lamports ({100 * locked / rent:.3f} %)")
    assert locked <= 0.01 * rent


def test_deliver_needs_the_replay_bitmap_of_its_window(gateway: Chain) -> None:
    env = lane(1, first_nonce=8192 * 3 + 5)[0].encode()
    ix = deliver_ix(gateway.program_id, gateway.payer.pubkey(), ALICE.attest(env, 1), env)
    assert ix.accounts[4].pubkey == replay_address(gateway.program_id, SRC, 8192 * 3 + 5)
    missing = ix.accounts[:4]
    from solders.instruction import Instruction
    gateway.fails(E.NOT_ENOUGH_ACCOUNTS, Instruction(ix.program_id, ix.data, missing))
    other = [*missing, AccountMeta(replay_address(gateway.program_id, SRC, 0), False, False)]
    gateway.fails(E.REPLAY_WRONG_ADDRESS, Instruction(ix.program_id, ix.data, other))
    gateway.ok(ix)


def test_committee_and_board_receipts_are_not_closable(gateway: Chain) -> None:
    committee_msg = Envelope(MessageKind.DATA, 0, 0, bytes(32), DOMAIN, b"\x22" * 32, b"from the committee")
    raw = committee_msg.encode()
    ix = deliver_ix(gateway.program_id, gateway.payer.pubkey(), ALICE.attest(raw, 1), raw)
    assert len(ix.accounts) == 4, "committee messages carry no bitmap"
    gateway.ok(ix)
    gateway.set_time(1_700_000_000 + RECEIPT_RETENTION_SECONDS + 1)
    gateway.fails(E.RECEIPT_NOT_CLOSABLE, close_receipt_ix(gateway.program_id, gateway.payer.pubkey(), committee_msg,
                                                           gateway.payer.pubkey()))
    to_board = Envelope(MessageKind.DATA, 9, SRC, SENDER, DOMAIN, bytes(taskboard_address(gateway.program_id)), b"")
    assert len(deliver_ix(gateway.program_id, gateway.payer.pubkey(), ALICE.attest(to_board.encode(), 1),
                          to_board.encode()).accounts) == 4


# --- CloseRoot ------------------------------------------------------------------------------------


def test_close_root_returns_its_rent_and_a_closed_root_delivers_nothing(gateway: Chain) -> None:
    verifier = funded(gateway, 10**10)
    batch = Batch.of(lane(4))
    ix, signers = verify(gateway, batch, payer=verifier)
    gateway.ok(ix, signers=signers)
    root = root_address(gateway.program_id, batch.root)
    rent = lamports(gateway, root)
    assert rent == gateway.svm.minimum_balance_for_rent_exemption(ROOT_ACCOUNT_LEN)
    gateway.ok(prove(gateway, batch, 0))
    stranger = funded(gateway)
    gateway.fails(E.CLOSE_TOO_EARLY, close_root_ix(gateway.program_id, stranger.pubkey(), batch.root,
                                                   verifier.pubkey()), signers=(stranger,))
    gateway.fails(E.RECIPIENT_WRONG, close_root_ix(gateway.program_id, verifier.pubkey(), batch.root,
                                                   stranger.pubkey()), signers=(verifier,))
    # closed and then used in the same transaction: zeroed, refused
    gateway.fails(E.ROOT_NOT_VERIFIED, close_root_ix(gateway.program_id, verifier.pubkey(), batch.root,
                                                     verifier.pubkey()), prove(gateway, batch, 1),
                  signers=(verifier,))
    before = lamports(gateway, verifier.pubkey())
    gateway.ok(close_root_ix(gateway.program_id, verifier.pubkey(), batch.root, verifier.pubkey()),
               signers=(verifier,))
    assert lamports(gateway, verifier.pubkey()) == before + rent
    assert not exists(gateway, root)
    # a root account reused after close
    gateway.fails(E.ROOT_NOT_VERIFIED, prove(gateway, batch, 1))
    gateway.fails(E.ROOT_NOT_VERIFIED, close_root_ix(gateway.program_id, verifier.pubkey(), batch.root,
                                                     verifier.pubkey()), signers=(verifier,))
    # verified again (a fresh pairing), it delivers the rest; delivered ones stay delivered
    gateway.ok(verify(gateway, batch)[0])
    gateway.fails(E.ALREADY_DELIVERED, prove(gateway, batch, 0))
    gateway.ok(prove(gateway, batch, 1))
    # anyone may close once the retention period has passed; the rent goes to the payer
    gateway.set_time(1_700_000_000 + ROOT_RETENTION_SECONDS)
    gateway.ok(close_root_ix(gateway.program_id, stranger.pubkey(), batch.root, gateway.payer.pubkey()),
               signers=(stranger,))


# --- transaction size -----------------------------------------------------------------------------


def test_the_largest_delivery_with_proof_fits_one_packet(gateway: Chain, capsys) -> None:
    """A 512-byte payload to the task board with the most accounts a board delivery takes (9: payer,
    root, receipt, system program, board, task, payout, requester, committee config) and the deepest
    proof: 1,264 bytes with a compute-budget instruction (over 1,232), 1,224 without it. The adapter
    (proof_delivery_cu_limit) drops the compute-budget instruction exactly then; a DATA delivery keeps it."""
    board = taskboard_address(gateway.program_id)
    env = Envelope(MessageKind.TASK_RESULT, 1, SRC, SENDER, DOMAIN, bytes(board), b"\x07" * MAX_PAYLOAD_LEN)
    ids = [env.message_id] + [bytes([i]) * 32 for i in range(1, 64)]
    proof = merkle_proof(ids, 0)
    assert len(proof) == MAX_BATCH_DEPTH
    extra = [AccountMeta(board, False, False)] + [AccountMeta(Pubkey.new_unique(), False, True) for _ in range(3)]
    ix = deliver_with_proof_ix(gateway.program_id, gateway.payer.pubkey(), merkle_root(ids), 0, proof, env.encode(),
                               extra)
    assert len(ix.accounts) == 9
    payer = gateway.payer.pubkey()
    with_budget = transaction_size([set_compute_unit_limit(CU_LIMIT), ix], payer)
    bare = transaction_size([ix], payer)
    with capsys.disabled():
        print(f"\nlargest DeliverWithProof transaction: {bare} bytes, {with_budget} with a compute-budget "
              "instruction (limit 1,232)")
    assert bare <= PACKET_DATA_SIZE < with_budget
    assert proof_delivery_cu_limit(ix, payer) is None
    assert struct.unpack_from("<B", bytes(ix.data), 2)[0] == MAX_BATCH_DEPTH
    # The same payload as a DATA message (replay bitmap instead of the board's 4 accounts) keeps it.
    data_env = Envelope(MessageKind.DATA, 1, SRC, SENDER, DOMAIN, b"\x22" * 32, b"\x07" * MAX_PAYLOAD_LEN)
    data_ix = deliver_with_proof_ix(gateway.program_id, payer, merkle_root(ids), 0, proof, data_env.encode())
    assert proof_delivery_cu_limit(data_ix, payer) == DELIVER_WITH_PROOF_CU_LIMIT
    # One byte more than any allowed delivery would not fit either way: refused before sending.
    too_big = deliver_with_proof_ix(gateway.program_id, payer, merkle_root(ids), 0, proof, env.encode() + b"\0" * 9,
                                    extra)
    with pytest.raises(SolanaAdapterError, match="over the 1232-byte limit"):
        proof_delivery_cu_limit(too_big, payer)


def test_the_largest_delivery_with_proof_lands_without_a_compute_budget_instruction(gateway: Chain) -> None:
    """What proof_delivery_cu_limit's None means: the runtime's default CU limit carries a
    DeliverWithProof of a 512-byte payload at depth 6."""
    batch = Batch.of(lane(64, payload=b"\x07" * (MAX_PAYLOAD_LEN - 1)))
    ix, signers = verify(gateway, batch)
    gateway.ok(ix, signers=signers)
    tx = Transaction.new_signed_with_payer([prove(gateway, batch, 63)], gateway.payer.pubkey(), [gateway.payer],
                                           gateway.svm.latest_blockhash())
    assert len(bytes(tx)) <= PACKET_DATA_SIZE
    result = gateway.svm.send_transaction(tx)
    assert isinstance(result, TransactionMetadata), "\n".join(result.meta().logs())
    assert exists(gateway, receipt_address(gateway.program_id, batch.envelopes[63].message_id)[0])


# --- the pause switch gates DeliverWithProof -----------------------------------------------------


def test_a_paused_gateway_refuses_delivery_with_proof_and_unpause_lets_it_land(gateway: Chain) -> None:
    batch = Batch.of(lane(3))
    ix, signers = verify(gateway, batch)
    gateway.ok(ix, signers=signers)  # a root verified before the pause
    gateway.ok(prove(gateway, batch, 0))
    gateway.ok(pause_ix(gateway.program_id, gateway.payer.pubkey()))
    gateway.fails(E.GATEWAY_PAUSED, prove(gateway, batch, 1))
    assert not exists(gateway, receipt_address(gateway.program_id, batch.envelopes[1].message_id)[0])
    gateway.ok(pause_ix(gateway.program_id, gateway.payer.pubkey(), paused=False))
    gateway.ok(prove(gateway, batch, 1))
    gateway.ok(prove(gateway, batch, 2))


def _with_config(ix: Instruction, config: Pubkey | None) -> Instruction:
    """`ix` with its last account (the committee config) replaced by `config`, or dropped (None)."""
    accounts = list(ix.accounts[:-1])
    assert ix.accounts[-1].pubkey == committee_address(ix.program_id)[0]
    if config is not None:
        accounts.append(AccountMeta(config, False, False))
    return Instruction(ix.program_id, ix.data, accounts)


def test_delivery_with_proof_while_paused_cannot_dodge_the_config_check(gateway: Chain) -> None:
    """The relayer chooses the accounts: while paused, no lookalike of the config with its paused
    byte 0 gets a message through — not one owned by the program at another address, not one owned
    by another program (the real config's bytes copied), not leaving the config out or putting
    another account last."""
    batch = Batch.of(lane(2))
    ix, signers = verify(gateway, batch)
    gateway.ok(ix, signers=signers)
    gateway.ok(pause_ix(gateway.program_id, gateway.payer.pubkey()))
    real = gateway.svm.get_account(committee_address(gateway.program_id)[0])
    unpaused = bytearray(bytes(real.data))
    unpaused[11] = 0  # CFG_PAUSED
    mine, foreign = Pubkey.new_unique(), Pubkey.new_unique()
    gateway.svm.set_account(mine, Account(real.lamports, bytes(unpaused), gateway.program_id, False, 0))
    gateway.svm.set_account(foreign, Account(real.lamports, bytes(unpaused), SYSTEM_PROGRAM_ID, False, 0))
    honest = prove(gateway, batch, 0)
    gateway.fails(E.CONFIG_WRONG_ADDRESS, _with_config(honest, mine))
    gateway.fails(E.CONFIG_NOT_INITIALIZED, _with_config(honest, foreign))
    # Without the config, the replay bitmap is last: it is not the config (and 4 accounts are too few).
    gateway.fails(E.CONFIG_NOT_INITIALIZED, _with_config(honest, None))
    gateway.fails(E.NOT_ENOUGH_ACCOUNTS, Instruction(honest.program_id, honest.data, list(honest.accounts[:4])))
    # The config somewhere else and another account last.
    moved = [*honest.accounts[:4], honest.accounts[5], honest.accounts[4]]
    gateway.fails(E.CONFIG_NOT_INITIALIZED, Instruction(honest.program_id, honest.data, moved))
    gateway.fails(E.GATEWAY_PAUSED, honest)
    assert not exists(gateway, receipt_address(gateway.program_id, batch.envelopes[0].message_id)[0])
    gateway.ok(pause_ix(gateway.program_id, gateway.payer.pubkey(), paused=False))
    # Unpaused, the lookalikes are refused all the same; the real config delivers.
    gateway.fails(E.CONFIG_WRONG_ADDRESS, _with_config(honest, mine))
    gateway.fails(E.CONFIG_NOT_INITIALIZED, _with_config(honest, foreign))
    gateway.ok(honest)
