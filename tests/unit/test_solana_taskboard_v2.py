"""Task protocol v2 in the Tessera Solana program (contracts/solana/src/taskboard_v2.c) in LiteSVM:
every instruction and refusal, the attacks of issue 12 that apply to Solana (1, 2, 3, 5, 6, 7, 8),
each performed and shown to do no harm, and the shared vectors tests/vectors/tasks_v2.json through
the program's own decoders — the Solana twin of contracts/evm/test/TaskBoardV2.t.sol."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.transaction_metadata import FailedTransactionMetadata, TransactionMetadata

from adapters.solana.program import (
    SETTLEMENT_GRACE_SECONDS,
    SERVE_LEN,
    TASK_V2_LEN,
    ProgramErrorCode,
    ServeAccount,
    ServeState,
    TaskAccountV2,
    TaskStateV2,
    auction_price_input,
    board_delivery_accounts,
    check_task_payload_v2_ix,
    claim_task_ix,
    deliver_ix,
    expire_claim_ix,
    init_gateway_ix,
    outbox_address,
    OutboxState,
    receipt_address,
    reclaim_v2_ix,
    release_bond_ix,
    request_task_v2_ix,
    result_v2_delivery_accounts,
    send_ix,
    sent_envelopes_of,
    serve_address,
    submit_result_v2_ix,
    task_v2_address,
    taskboard_address,
    verdict_delivery_accounts,
    withdraw_credit_ix,
)
from adapters.solana.taskboard import reclaim_ix, request_task_ix, submit_result_ix
from relay.envelope import Envelope, keccak256
from relay.protocol import COMMITTEE_DOMAIN, MessageKind
from relay.tasks.payloads import (
    AttestationMethod,
    ProofAttestation,
    ProofVerdict,
    RefusalReason,
    TaskRequest,
    TaskRequestV2,
    TaskResult,
    TaskResultV2,
    auction_price,
)
from tests.support.solana import ALICE, DOMAIN, Chain, custom_error, deployed_chain, funded

OTHER_DOMAIN = 31337  # the chain on the other side (EVM in production)
WORKER_BOARD = b"\x00" * 12 + b"\xb0" * 20
REQUESTER_BOARD = b"\x00" * 12 + b"\xa0" * 20
EVM_CLAIMANT = b"\x00" * 12 + b"\xc1" * 20
EVM_PAYOUT = b"\x00" * 12 + b"\xcc" * 20
EVM_REFUND = b"\x00" * 12 + b"\x99" * 20
NOW = 1_700_000_000
ESCROW = 5_000_000  # lamports (requester side: max_fee)
BOND = 2_000_000  # lamports (serving side)
WORKER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
VECTORS = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "tasks_v2.json").read_text())


@pytest.fixture
def board(committee: Chain) -> Chain:
    committee.ok(init_gateway_ix(committee.program_id, committee.payer.pubkey()))
    return committee


def balance(chain: Chain, key: Pubkey) -> int:
    account = chain.svm.get_account(key)
    return 0 if account is None else account.lamports


def board_key(chain: Chain) -> bytes:
    return bytes(taskboard_address(chain.program_id))


def deliver(chain: Chain, env: Envelope, extra: list[AccountMeta]):
    raw = env.encode()
    ix = deliver_ix(chain.program_id, chain.payer.pubkey(), ALICE.attest(raw, 1), raw)
    return chain.send(Instruction(ix.program_id, ix.data, [*ix.accounts, *extra]))


def delivered(chain: Chain, env: Envelope, extra: list[AccountMeta]) -> TransactionMetadata:
    result = deliver(chain, env, extra)
    assert isinstance(result, TransactionMetadata), f"{result.err()}\n" + "\n".join(result.meta().logs())
    return result


def refused_delivery(chain: Chain, env: Envelope, extra: list[AccountMeta], code: ProgramErrorCode) -> None:
    result = deliver(chain, env, extra)
    assert isinstance(result, FailedTransactionMetadata), "expected the delivery to fail"
    assert custom_error(result) == code, f"{result.err()}\n" + "\n".join(result.meta().logs())
    # Nothing written: the message is not consumed, an honest delivery can still land.
    assert chain.svm.get_account(receipt_address(chain.program_id, env.message_id)[0]) is None


def logged(meta: TransactionMetadata, line: str) -> bool:
    return f"Program log: tessera: {line}" in meta.logs()


def ignored(meta: TransactionMetadata, reason: str) -> bool:
    return logged(meta, f"task message ignored: {reason}")


def request_v2(executor: str = "sentiment", max_fee: int = ESCROW, deadline: int = NOW + 600, *,
               refund_to: bytes = EVM_REFUND, bond: int = BOND, auction_window: int = 60, start_bps: int = 5000,
               claim_window: int = 30, data: bytes = b"What a lovely day") -> TaskRequestV2:
    return TaskRequestV2(executor, max_fee, deadline, auction_window, start_bps, claim_window, bond, refund_to,
                         input=data)


# ==== requester side (this chain asks another chain's workers) ===================================


def request_ix(chain: Chain, requester: Keypair, payload: bytes, task_nonce: int = 7,
               dst_domain: int = OTHER_DOMAIN) -> Instruction:
    return request_task_v2_ix(chain.program_id, requester.pubkey(), task_nonce=task_nonce, dst_domain=dst_domain,
                              worker_board=WORKER_BOARD, payload=payload)


def task_of(chain: Chain, address: Pubkey) -> TaskAccountV2:
    account = chain.svm.get_account(address)
    assert account is not None and account.owner == chain.program_id
    return TaskAccountV2.decode(bytes(account.data))


def request(chain: Chain, requester: Keypair, req: TaskRequestV2 | None = None, task_nonce: int = 7
            ) -> tuple[Pubkey, Envelope, TransactionMetadata]:
    meta = chain.ok(request_ix(chain, requester, (req or request_v2()).encode(), task_nonce), signers=(requester,))
    address = task_v2_address(chain.program_id, requester.pubkey(), task_nonce)
    return address, Envelope.decode(task_of(chain, address).envelope), meta


@pytest.fixture
def opened(board: Chain):
    requester = funded(board)
    address, env, _ = request(board, requester)
    return board, address, env, requester


def result_v2(request_id: bytes, payout: bytes, *, price: int = 3_000_000, output: bytes = b'{"label":"positive"}',
              executor: str = "sentiment", claimant: bytes = EVM_CLAIMANT) -> TaskResultV2:
    return TaskResultV2.signed(WORKER_KEY, request_id=request_id, executor=executor, output=output, claimant=claimant,
                               payout=payout, price=price)


def result_env(chain: Chain, result: TaskResultV2, *, nonce: int = 1, src_domain: int = OTHER_DOMAIN,
               src_sender: bytes = WORKER_BOARD) -> Envelope:
    return Envelope(kind=MessageKind.TASK_RESULT, nonce=nonce, src_domain=src_domain, src_sender=src_sender,
                    dst_domain=DOMAIN, dst_receiver=board_key(chain), payload=result.encode())


def verdict_env(chain: Chain, result: TaskResultV2, result_id: bytes, *, submitted_at: int = NOW + 10,
                refusal: RefusalReason | None = None, src_domain: int = COMMITTEE_DOMAIN,
                src_sender: bytes = bytes(32)) -> Envelope:
    verdict = ProofVerdict.for_result(result, result_id, AttestationMethod.REEXECUTION, submitted_at, refusal)
    return Envelope(kind=MessageKind.PROOF_ATTESTATION, nonce=0, src_domain=src_domain, src_sender=src_sender,
                    dst_domain=DOMAIN, dst_receiver=board_key(chain), payload=verdict.encode())


def result_accounts(chain: Chain, env: Envelope, task: Pubkey, requester: Keypair) -> list[AccountMeta]:
    return result_v2_delivery_accounts(chain.program_id, env, task=task, requester=requester.pubkey())


def verdict_accounts(chain: Chain, env: Envelope, task: Pubkey, requester: Keypair) -> list[AccountMeta]:
    return verdict_delivery_accounts(chain.program_id, env, task=task, requester=requester.pubkey())


def test_request_v2_creates_the_task_escrows_max_fee_and_stores_the_envelope(board: Chain) -> None:
    requester = funded(board)
    before = balance(board, requester.pubkey())
    address, env, meta = request(board, requester)
    print(f"RequestTask v2: {meta.compute_units_consumed()} CU")
    # The envelope is in the task account (attack 7), and still logged for today's watchers.
    assert sent_envelopes_of(meta.logs(), board.program_id) == [env.encode()]
    assert bytes(meta.return_data().data) == env.message_id + (0).to_bytes(8, "little")
    assert (env.kind, env.src_domain, env.src_sender, env.dst_domain, env.dst_receiver, env.payload) == (
        MessageKind.TASK_REQUEST, DOMAIN, board_key(board), OTHER_DOMAIN, WORKER_BOARD, request_v2().encode())
    task = task_of(board, address)
    assert (task.state, task.requester, task.task_nonce, task.deadline, task.max_fee) == (
        TaskStateV2.OPEN, requester.pubkey(), 7, NOW + 600, ESCROW)
    assert (task.request_id, task.request_nonce, task.dst_domain, task.worker_board) == (
        env.message_id, 0, OTHER_DOMAIN, WORKER_BOARD)
    assert task.executor.rstrip(b"\0") == b"sentiment" and task.pending_result_id is None and task.result_id is None
    rent = board.svm.minimum_balance_for_rent_exemption(TASK_V2_LEN)
    assert rent <= balance(board, address) - ESCROW <= rent + 1
    assert before - balance(board, requester.pubkey()) >= ESCROW + rent


def test_attack6_a_send_landing_first_does_not_break_request_task(board: Chain) -> None:
    """v1 derived the task address from the outbox nonce: any Send in between failed RequestTask.
    v2's address is the requester's own (requester, task_nonce)."""
    requester = funded(board)
    ix = request_ix(board, requester, request_v2().encode(), task_nonce=0xDEADBEEF)  # built at outbox nonce 0
    for i in range(3):  # an attacker's cheap Sends take nonces 0, 1, 2 first
        board.ok(send_ix(board.program_id, board.payer.pubkey(), dst_domain=OTHER_DOMAIN, receiver=b"\x01" * 32,
                         kind=MessageKind.DATA, payload=bytes([i])))
    meta = board.ok(ix, signers=(requester,))
    task = task_of(board, task_v2_address(board.program_id, requester.pubkey(), 0xDEADBEEF))
    assert task.request_nonce == 3 and bytes(meta.return_data().data)[32:] == (3).to_bytes(8, "little")
    assert Envelope.decode(task.envelope).message_id == task.request_id


def _bad(mutate) -> bytes:
    raw = bytearray(request_v2().encode())
    mutate(raw)
    return bytes(raw)


def _set(raw: bytearray, at: int, value: bytes) -> None:
    raw[at:at + len(value)] = value


@pytest.mark.parametrize("payload, code", [
    (TaskRequest("sentiment", 1, NOW + 60, input=b"x").encode(), ProgramErrorCode.TASK_VERSION_UNSUPPORTED),
    (_bad(lambda r: _set(r, 45, (10_001).to_bytes(2, "big"))), ProgramErrorCode.TASK_TERMS_INVALID),
    (_bad(lambda r: _set(r, 47, bytes(4))), ProgramErrorCode.TASK_TERMS_INVALID),
    (_bad(lambda r: _set(r, 67, bytes(32))), ProgramErrorCode.TASK_TERMS_INVALID),
    (_bad(lambda r: _set(r, 1, b"a b")), ProgramErrorCode.TASK_EXECUTOR_INVALID),
    (_bad(lambda r: _set(r, 17, b"\x01")), ProgramErrorCode.TASK_FEE_TOO_LARGE),
    (request_v2(deadline=NOW).encode(), ProgramErrorCode.TASK_DEADLINE_PASSED),
    (_bad(lambda r: _set(r, 33, b"\x80")), ProgramErrorCode.TASK_PAYLOAD_MALFORMED),
    (request_v2().encode() + b"\0", ProgramErrorCode.TASK_PAYLOAD_MALFORMED),
    (_bad(lambda r: _set(r, 99, b"\x02")), ProgramErrorCode.TASK_PAYLOAD_MALFORMED),
])
def test_request_v2_refusals(board: Chain, payload: bytes, code: ProgramErrorCode) -> None:
    requester = funded(board)
    board.fails(code, request_ix(board, requester, payload), signers=(requester,))
    assert OutboxState.decode(bytes(board.svm.get_account(outbox_address(board.program_id)[0]).data)).next_nonce == 0


def test_request_v2_account_refusals(board: Chain) -> None:
    requester = funded(board)
    payload = request_v2().encode()
    board.fails(ProgramErrorCode.TASK_SAME_DOMAIN, request_ix(board, requester, payload, dst_domain=DOMAIN),
                signers=(requester,))
    wrong = request_ix(board, requester, payload, task_nonce=1)
    wrong = Instruction(wrong.program_id, wrong.data, [wrong.accounts[0],
                                                       AccountMeta(Pubkey.new_unique(), False, True),
                                                       *wrong.accounts[2:]])
    board.fails(ProgramErrorCode.TASK_WRONG_ADDRESS, wrong, signers=(requester,))
    poor = funded(board, ESCROW)
    board.fails(ProgramErrorCode.INSUFFICIENT_LAMPORTS, request_ix(board, poor, payload), signers=(poor,))
    request(board, requester, task_nonce=1)
    board.fails(ProgramErrorCode.TASK_NONCE_USED, request_ix(board, requester, payload, task_nonce=1),
                signers=(requester,))


def test_result_then_valid_verdict_pays_the_price_and_refunds_the_rest(opened) -> None:
    chain, task, req, requester = opened
    payout = funded(chain, 10**8)
    result = result_v2(req.message_id, bytes(payout.pubkey()))
    r_env = result_env(chain, result)
    meta = delivered(chain, r_env, result_accounts(chain, r_env, task, requester))
    assert logged(meta, "task result recorded")
    print(f"Deliver TASK_RESULT v2 to the requester's board: {meta.compute_units_consumed()} CU")
    v_env = verdict_env(chain, result, r_env.message_id)
    payout_before, requester_before = balance(chain, payout.pubkey()), balance(chain, requester.pubkey())
    meta = delivered(chain, v_env, verdict_accounts(chain, v_env, task, requester))
    print(f"Deliver verdict to the requester's board (settles): {meta.compute_units_consumed()} CU")
    assert logged(meta, "task completed")
    assert balance(chain, payout.pubkey()) == payout_before + 3_000_000
    assert balance(chain, requester.pubkey()) == requester_before + ESCROW - 3_000_000
    got = task_of(chain, task)
    assert (got.state, got.result_id, got.payout, got.price, got.refund) == (
        TaskStateV2.COMPLETED, r_env.message_id, bytes(payout.pubkey()), 3_000_000, ESCROW - 3_000_000)
    assert balance(chain, task) - chain.svm.minimum_balance_for_rent_exemption(TASK_V2_LEN) in (0, 1)  # only rent
    # A second verdict (another message) changes nothing.
    again = verdict_env(chain, result, r_env.message_id, submitted_at=NOW + 11)
    assert ignored(delivered(chain, again, verdict_accounts(chain, again, task, requester)),
                   "task already completed or refunded")


def test_attack1_a_verdict_before_its_result_is_kept_and_applied_when_the_result_arrives(opened) -> None:
    chain, task, req, requester = opened
    payout = funded(chain, 10**8)
    result = result_v2(req.message_id, bytes(payout.pubkey()))
    r_env = result_env(chain, result)
    v_env = verdict_env(chain, result, r_env.message_id)
    # Anyone delivers the (public) verdict first: v1 ignored it and burned it for ever.
    meta = delivered(chain, v_env, verdict_accounts(chain, v_env, task, requester))
    assert logged(meta, "task verdict kept until its result arrives")
    kept = task_of(chain, task)
    assert kept.state is TaskStateV2.OPEN and kept.pending_result_id == r_env.message_id
    assert kept.pending_submitted_at == NOW + 10
    before = balance(chain, payout.pubkey())
    meta = delivered(chain, r_env, result_accounts(chain, r_env, task, requester))
    print(f"Deliver TASK_RESULT v2 applying a kept verdict (settles): {meta.compute_units_consumed()} CU")
    assert logged(meta, "task completed")
    assert balance(chain, payout.pubkey()) == before + 3_000_000
    assert task_of(chain, task).state is TaskStateV2.COMPLETED


def test_attack2_a_read_only_or_wrong_payout_fails_the_delivery_and_does_not_consume_it(opened) -> None:
    chain, task, req, requester = opened
    payout = funded(chain, 10**8)
    result = result_v2(req.message_id, bytes(payout.pubkey()))
    r_env = result_env(chain, result)
    delivered(chain, r_env, result_accounts(chain, r_env, task, requester))
    v_env = verdict_env(chain, result, r_env.message_id)
    good = verdict_accounts(chain, v_env, task, requester)
    board_m, task_m, receipt_m, payout_m, requester_m = good
    read_only_payout = AccountMeta(payout_m.pubkey, False, False)
    refused_delivery(chain, v_env, [board_m, task_m, receipt_m, read_only_payout, requester_m],
                     ProgramErrorCode.ACCOUNT_NOT_WRITABLE)
    refused_delivery(chain, v_env, [board_m, task_m, receipt_m, AccountMeta(Pubkey.new_unique(), False, True),
                                    requester_m], ProgramErrorCode.PAYOUT_ACCOUNT_WRONG)
    refused_delivery(chain, v_env, [board_m, task_m, receipt_m, payout_m, AccountMeta(requester.pubkey(), False, False)],
                     ProgramErrorCode.ACCOUNT_NOT_WRITABLE)
    refused_delivery(chain, v_env, [board_m, task_m, receipt_m, payout_m, AccountMeta(Pubkey.new_unique(), False, True)],
                     ProgramErrorCode.RECIPIENT_WRONG)
    refused_delivery(chain, v_env, [board_m, task_m, AccountMeta(Pubkey.new_unique(), False, False), payout_m,
                                    requester_m], ProgramErrorCode.RESULT_RECEIPT_WRONG_ADDRESS)
    refused_delivery(chain, v_env, [board_m, AccountMeta(task, False, False), receipt_m, payout_m, requester_m],
                     ProgramErrorCode.ACCOUNT_NOT_WRITABLE)
    refused_delivery(chain, v_env, [board_m, AccountMeta(Pubkey.new_unique(), False, True), receipt_m, payout_m,
                                    requester_m], ProgramErrorCode.TASK_ACCOUNT_WRONG)
    refused_delivery(chain, v_env, good[:3], ProgramErrorCode.BOARD_ACCOUNTS_MISSING)
    refused_delivery(chain, v_env, [], ProgramErrorCode.BOARD_ACCOUNTS_MISSING)
    # The honest delivery still lands and pays.
    before = balance(chain, payout.pubkey())
    assert logged(delivered(chain, v_env, good), "task completed")
    assert balance(chain, payout.pubkey()) == before + 3_000_000


def test_attack2_when_the_result_arrives_second_its_payout_is_checked_too(opened) -> None:
    chain, task, req, requester = opened
    payout = funded(chain, 10**8)
    result = result_v2(req.message_id, bytes(payout.pubkey()))
    r_env = result_env(chain, result)
    v_env = verdict_env(chain, result, r_env.message_id)
    delivered(chain, v_env, verdict_accounts(chain, v_env, task, requester))  # kept
    good = result_accounts(chain, r_env, task, requester)
    refused_delivery(chain, r_env, [*good[:2], AccountMeta(payout.pubkey(), False, False), good[3]],
                     ProgramErrorCode.ACCOUNT_NOT_WRITABLE)
    refused_delivery(chain, r_env, [*good[:2], AccountMeta(Pubkey.new_unique(), False, True), good[3]],
                     ProgramErrorCode.PAYOUT_ACCOUNT_WRONG)
    refused_delivery(chain, r_env, good[:2], ProgramErrorCode.BOARD_ACCOUNTS_MISSING)
    assert logged(delivered(chain, r_env, good), "task completed")


def test_attack5_an_on_time_result_delivered_after_the_deadline_is_paid(opened) -> None:
    chain, task, req, requester = opened
    payout = funded(chain, 10**8)
    result = result_v2(req.message_id, bytes(payout.pubkey()))
    r_env = result_env(chain, result)
    chain.set_time(NOW + 600 + 900)  # finality + relaying: past the deadline, inside the grace
    delivered(chain, r_env, result_accounts(chain, r_env, task, requester))
    v_env = verdict_env(chain, result, r_env.message_id, submitted_at=NOW + 600)  # submitted at the deadline on B
    before = balance(chain, payout.pubkey())
    assert logged(delivered(chain, v_env, verdict_accounts(chain, v_env, task, requester)), "task completed")
    assert balance(chain, payout.pubkey()) == before + 3_000_000


def test_a_result_submitted_after_the_deadline_is_not_paid_and_the_requester_reclaims(opened) -> None:
    chain, task, req, requester = opened
    payout = funded(chain, 10**8)
    result = result_v2(req.message_id, bytes(payout.pubkey()))
    r_env = result_env(chain, result)
    delivered(chain, r_env, result_accounts(chain, r_env, task, requester))
    v_env = verdict_env(chain, result, r_env.message_id, submitted_at=NOW + 601)
    assert ignored(delivered(chain, v_env, verdict_accounts(chain, v_env, task, requester)),
                   "result submitted after the deadline")
    assert task_of(chain, task).state is TaskStateV2.OPEN
    ix = reclaim_v2_ix(chain.program_id, task, requester.pubkey())
    chain.set_time(NOW + 600 + SETTLEMENT_GRACE_SECONDS)
    chain.fails(ProgramErrorCode.DEADLINE_NOT_PASSED, ix)
    chain.set_time(NOW + 601 + SETTLEMENT_GRACE_SECONDS)
    chain.fails(ProgramErrorCode.NOT_REQUESTER, reclaim_v2_ix(chain.program_id, task, Pubkey.new_unique()))
    before = balance(chain, requester.pubkey())
    assert logged(chain.ok(ix), "task refunded")  # anyone may send it; the requester is paid
    assert balance(chain, requester.pubkey()) == before + ESCROW
    got = task_of(chain, task)
    assert got.state is TaskStateV2.REFUNDED and got.refund == ESCROW
    chain.fails(ProgramErrorCode.TASK_NOT_REFUNDABLE, ix)
    chain.fails(ProgramErrorCode.TASK_NOT_FOUND, reclaim_v2_ix(chain.program_id, outbox_address(chain.program_id)[0],
                                                               requester.pubkey()))


def test_a_refused_result_is_dropped_and_the_next_result_is_paid(opened) -> None:
    chain, task, req, requester = opened
    payout = funded(chain, 10**8)
    bogus = result_v2(req.message_id, bytes(payout.pubkey()), output=b"wrong")
    bogus_env = result_env(chain, bogus)
    delivered(chain, bogus_env, result_accounts(chain, bogus_env, task, requester))
    refusal = verdict_env(chain, bogus, bogus_env.message_id, refusal=RefusalReason.OUTPUT_MISMATCH)
    assert ignored(delivered(chain, refusal, verdict_accounts(chain, refusal, task, requester)),
                   "result refused by the committee; the task stays open")
    honest = result_v2(req.message_id, bytes(payout.pubkey()), price=4_000_000)
    honest_env = result_env(chain, honest, nonce=2)
    delivered(chain, honest_env, result_accounts(chain, honest_env, task, requester))
    valid = verdict_env(chain, honest, honest_env.message_id)
    before = balance(chain, payout.pubkey())
    assert logged(delivered(chain, valid, verdict_accounts(chain, valid, task, requester)), "task completed")
    assert balance(chain, payout.pubkey()) == before + 4_000_000


def test_verdicts_and_results_that_cannot_count_are_ignored(opened) -> None:
    chain, task, req, requester = opened
    payout = funded(chain, 10**8)
    result = result_v2(req.message_id, bytes(payout.pubkey()))
    wrong_board = result_env(chain, result, src_sender=REQUESTER_BOARD)
    assert ignored(delivered(chain, wrong_board, result_accounts(chain, wrong_board, task, requester)),
                   "result not from the worker board the request was sent to")
    r_env = result_env(chain, result, nonce=2)
    delivered(chain, r_env, result_accounts(chain, r_env, task, requester))
    forged = verdict_env(chain, result, r_env.message_id, src_domain=OTHER_DOMAIN, src_sender=WORKER_BOARD)
    assert ignored(delivered(chain, forged, verdict_accounts(chain, forged, task, requester)),
                   "verdict not from the committee")
    other_price = result_v2(req.message_id, bytes(payout.pubkey()), price=1)  # fields differ from the result's
    mismatch = verdict_env(chain, other_price, r_env.message_id)
    assert ignored(delivered(chain, mismatch, verdict_accounts(chain, mismatch, task, requester)),
                   "verdict does not match its result")
    verdict_on_ignored = verdict_env(chain, result, wrong_board.message_id)
    assert ignored(delivered(chain, verdict_on_ignored, verdict_accounts(chain, verdict_on_ignored, task, requester)),
                   "result not from the worker board the request was sent to")
    malformed = bytearray(verdict_env(chain, result, r_env.message_id).payload)
    malformed[210] = 0  # verdict 0
    bad = Envelope(kind=MessageKind.PROOF_ATTESTATION, nonce=0, src_domain=0, src_sender=bytes(32), dst_domain=DOMAIN,
                   dst_receiver=board_key(chain), payload=bytes(malformed))
    assert ignored(delivered(chain, bad, verdict_accounts(chain, bad, task, requester)),
                   "malformed PROOF_ATTESTATION v2")
    assert task_of(chain, task).state is TaskStateV2.OPEN


def test_a_payout_below_rent_exemption_is_held_and_withdrawn_later(board: Chain) -> None:
    requester = funded(board)
    task, req, _ = request(board, requester, request_v2(max_fee=1_000))
    payout = Pubkey.new_unique()  # no account: 600 lamports would leave it rent-paying
    result = result_v2(req.message_id, bytes(payout), price=600)
    r_env = result_env(board, result)
    delivered(board, r_env, result_accounts(board, r_env, task, requester))
    v_env = verdict_env(board, result, r_env.message_id)
    meta = delivered(board, v_env, verdict_accounts(board, v_env, task, requester))
    assert logged(meta, "payment held for Withdraw (recipient below rent exemption)") and logged(meta, "task completed")
    got = task_of(board, task)
    assert got.state is TaskStateV2.COMPLETED and got.payout_credit == 600 and balance(board, payout) == 0
    ix = withdraw_credit_ix(board.program_id, task, payout)
    board.fails(ProgramErrorCode.RECIPIENT_BELOW_RENT, ix)
    board.fails(ProgramErrorCode.NOTHING_TO_WITHDRAW, withdraw_credit_ix(board.program_id, task, Pubkey.new_unique()))
    board.svm.airdrop(payout, 10**7)
    assert logged(board.ok(ix), "credit withdrawn")
    assert balance(board, payout) == 10**7 + 600 and task_of(board, task).payout_credit == 0
    board.fails(ProgramErrorCode.NOTHING_TO_WITHDRAW, ix)


# ==== serving side (another chain's request, served here) =========================================


def incoming(chain: Chain, req: TaskRequestV2, nonce: int = 4) -> Envelope:
    return Envelope(kind=MessageKind.TASK_REQUEST, nonce=nonce, src_domain=OTHER_DOMAIN, src_sender=REQUESTER_BOARD,
                    dst_domain=DOMAIN, dst_receiver=board_key(chain), payload=req.encode())


@pytest.fixture
def served(board: Chain):
    """A TASK_REQUEST v2 from the other chain delivered here at NOW; refund_to is a Solana account."""
    refund = funded(board, 10**8)
    env = incoming(board, request_v2(max_fee=10**15, refund_to=bytes(refund.pubkey())))
    meta = delivered(board, env, board_delivery_accounts(board.program_id, env))
    print(f"Deliver TASK_REQUEST v2 to the board: {meta.compute_units_consumed()} CU")
    return board, env, refund


def serve_of(chain: Chain, request_id: bytes) -> ServeAccount:
    account = chain.svm.get_account(serve_address(chain.program_id, request_id))
    assert account is not None and account.owner == chain.program_id
    return ServeAccount.decode(bytes(account.data))


def claim_ix(chain: Chain, worker: Keypair, env: Envelope, refund: Pubkey, payout: bytes = EVM_PAYOUT) -> Instruction:
    return claim_task_ix(chain.program_id, worker.pubkey(), env.message_id, payout=payout, refund_to=refund)


def claim(chain: Chain, worker: Keypair, env: Envelope, refund: Keypair) -> TransactionMetadata:
    return chain.ok(claim_ix(chain, worker, env, refund.pubkey()), signers=(worker,))


def served_result(env: Envelope, worker: Keypair, price: int, *, output: bytes = b"positive",
                  payout: bytes = EVM_PAYOUT) -> TaskResultV2:
    return result_v2(env.message_id, payout, price=price, output=output, claimant=bytes(worker.pubkey()))


def submit(chain: Chain, worker: Keypair, env: Envelope, result: TaskResultV2) -> TransactionMetadata:
    return chain.ok(submit_result_v2_ix(chain.program_id, worker.pubkey(), env.message_id, result.encode()),
                    signers=(worker,))


def serving_verdict(chain: Chain, result: TaskResultV2, result_id: bytes, refusal: RefusalReason | None = None
                    ) -> Envelope:
    return verdict_env(chain, result, result_id, refusal=refusal)  # dst = (E_r.src_domain, E_r.src_sender) = here


def serving_accounts(chain: Chain, env: Envelope, claimant: Pubkey, refund: Pubkey) -> list[AccountMeta]:
    return verdict_delivery_accounts(chain.program_id, env, claimant=claimant, refund_to=refund)


def test_claim_fixes_claimant_payout_and_auction_price_and_holds_the_bond(served) -> None:
    chain, env, refund = served
    worker = funded(chain)
    chain.set_time(NOW + 15)  # a quarter into the 60 s auction from 50 %
    before = balance(chain, worker.pubkey())
    meta = claim(chain, worker, env, refund)
    print(f"Claim (first: creates the serve account): {meta.compute_units_consumed()} CU")
    price = auction_price(10**15, 5000, 60, NOW, NOW + 15)
    assert price == 625 * 10**12
    assert bytes(meta.return_data().data) == price.to_bytes(16, "little") + (NOW + 45).to_bytes(8, "little")
    s = serve_of(chain, env.message_id)
    assert (s.state, s.claimant, s.payout, s.price, s.claim_deadline, s.bond, s.bond_held, s.claims) == (
        ServeState.CLAIMED, worker.pubkey(), EVM_PAYOUT, price, NOW + 45, BOND, BOND, 1)
    assert (s.src_domain, s.src_board, s.deadline, s.auction_start, s.max_fee, s.refund_to) == (
        OTHER_DOMAIN, REQUESTER_BOARD, NOW + 600, NOW, 10**15, refund.pubkey())
    rent = chain.svm.minimum_balance_for_rent_exemption(SERVE_LEN)
    assert balance(chain, serve_address(chain.program_id, env.message_id)) - BOND in (rent, rent + 1)
    assert before - balance(chain, worker.pubkey()) >= BOND + rent
    # First valid claim wins: exclusivity until the claim deadline.
    rival = funded(chain)
    chain.fails(ProgramErrorCode.ALREADY_CLAIMED, claim_ix(chain, rival, env, refund.pubkey()), signers=(rival,))
    chain.set_time(NOW + 45)
    chain.fails(ProgramErrorCode.ALREADY_CLAIMED, claim_ix(chain, rival, env, refund.pubkey()), signers=(rival,))


def test_claim_refusals(served) -> None:
    chain, env, refund = served
    worker = funded(chain)

    def refused(code: ProgramErrorCode, ix: Instruction, signer: Keypair = worker) -> None:
        chain.fails(code, ix, signers=(signer,))

    refused(ProgramErrorCode.ZERO_PAYOUT, claim_ix(chain, worker, env, refund.pubkey(), payout=bytes(32)))
    refused(ProgramErrorCode.RECIPIENT_WRONG, claim_ix(chain, worker, env, Pubkey.new_unique()))
    ix = claim_ix(chain, worker, env, refund.pubkey())
    refused(ProgramErrorCode.SERVE_WRONG_ADDRESS, Instruction(ix.program_id, ix.data, [
        *ix.accounts[:2], AccountMeta(Pubkey.new_unique(), False, True), *ix.accounts[3:]]))
    refused(ProgramErrorCode.ACCOUNT_NOT_WRITABLE, Instruction(ix.program_id, ix.data, [
        *ix.accounts[:3], AccountMeta(refund.pubkey(), False, False), ix.accounts[4]]))
    refused(ProgramErrorCode.REQUEST_RECEIPT_INVALID, claim_task_ix(
        chain.program_id, worker.pubkey(), keccak256(b"never delivered"), payout=EVM_PAYOUT, refund_to=refund.pubkey()))
    poor = funded(chain, BOND)
    refused(ProgramErrorCode.INSUFFICIENT_LAMPORTS, claim_ix(chain, poor, env, refund.pubkey()), poor)
    v1 = Envelope(kind=MessageKind.TASK_REQUEST, nonce=5, src_domain=OTHER_DOMAIN, src_sender=REQUESTER_BOARD,
                  dst_domain=DOMAIN, dst_receiver=board_key(chain),
                  payload=TaskRequest("sentiment", 10, NOW + 600, input=b"x").encode())
    delivered(chain, v1, board_delivery_accounts(chain.program_id, v1))
    refused(ProgramErrorCode.TASK_VERSION_UNSUPPORTED, claim_ix(chain, worker, v1, refund.pubkey()))
    huge = incoming(chain, request_v2(bond=2**64, refund_to=bytes(refund.pubkey())), nonce=6)
    delivered(chain, huge, board_delivery_accounts(chain.program_id, huge))
    refused(ProgramErrorCode.BOND_TOO_LARGE, claim_ix(chain, worker, huge, refund.pubkey()))
    chain.set_time(NOW + 601)
    refused(ProgramErrorCode.TASK_EXPIRED, ix)
    assert chain.svm.get_account(serve_address(chain.program_id, env.message_id)) is None


def test_submit_result_v2_only_by_the_claimant_and_the_envelope_is_stored(served) -> None:
    chain, env, refund = served
    worker = funded(chain)
    claim(chain, worker, env, refund)
    price = auction_price(10**15, 5000, 60, NOW, NOW)
    result = served_result(env, worker, price)
    meta = submit(chain, worker, env, result)
    print(f"SubmitResult v2: {meta.compute_units_consumed()} CU")
    (raw,) = sent_envelopes_of(meta.logs(), chain.program_id)
    sent = Envelope.decode(raw)
    assert (sent.kind, sent.src_domain, sent.src_sender, sent.dst_domain, sent.dst_receiver, sent.payload) == (
        MessageKind.TASK_RESULT, DOMAIN, board_key(chain), OTHER_DOMAIN, REQUESTER_BOARD, result.encode())
    assert bytes(meta.return_data().data)[:32] == sent.message_id
    s = serve_of(chain, env.message_id)
    assert (s.state, s.result_id, s.result_envelope, s.submitted_at) == (
        ServeState.ANSWERED, sent.message_id, raw, NOW)
    chain.fails(ProgramErrorCode.ALREADY_ANSWERED, submit_result_v2_ix(
        chain.program_id, worker.pubkey(), env.message_id, result.encode()), signers=(worker,))
    rival = funded(chain)
    chain.fails(ProgramErrorCode.RESULT_PENDING, claim_ix(chain, rival, env, refund.pubkey()), signers=(rival,))


def test_attack3_a_copied_result_cannot_be_submitted_or_paid_to_the_copier(served) -> None:
    chain, env, refund = served
    worker, sniper = funded(chain), funded(chain)
    claim(chain, worker, env, refund)
    price = auction_price(10**15, 5000, 60, NOW, NOW)
    honest = served_result(env, worker, price)

    def refused(code: ProgramErrorCode, signer: Keypair, payload: bytes) -> None:
        chain.fails(code, submit_result_v2_ix(chain.program_id, signer.pubkey(), env.message_id, payload),
                    signers=(signer,))

    # The copier lands the claimant's own bytes first: only the claimant may submit.
    refused(ProgramErrorCode.NOT_CLAIMANT, sniper, honest.encode())
    # ... or re-signs them with its own key and payout: still not the claimant.
    copied = result_v2(env.message_id, b"\x00" * 12 + b"\xee" * 20, price=price, output=b"positive",
                       claimant=bytes(sniper.pubkey()))
    refused(ProgramErrorCode.NOT_CLAIMANT, sniper, copied.encode())
    # The claimant itself cannot change what the claim fixed.
    refused(ProgramErrorCode.CLAIM_MISMATCH, worker, served_result(env, worker, price, payout=b"\x01" * 32).encode())
    refused(ProgramErrorCode.CLAIM_MISMATCH, worker, served_result(env, worker, price + 1).encode())
    refused(ProgramErrorCode.CLAIM_MISMATCH, worker, result_v2(env.message_id, EVM_PAYOUT, price=price,
                                                               claimant=bytes(sniper.pubkey())).encode())
    refused(ProgramErrorCode.RESULT_EXECUTOR_MISMATCH, worker,
            result_v2(env.message_id, EVM_PAYOUT, price=price, executor="echo", claimant=bytes(worker.pubkey())).encode())
    refused(ProgramErrorCode.RESULT_REQUEST_MISMATCH, worker,
            result_v2(keccak256(b"x"), EVM_PAYOUT, price=price, claimant=bytes(worker.pubkey())).encode())
    bad_hash = bytearray(honest.encode())
    bad_hash[49] ^= 1
    refused(ProgramErrorCode.RESULT_MALFORMED, worker, bytes(bad_hash))
    refused(ProgramErrorCode.TASK_VERSION_UNSUPPORTED, worker,
            TaskResult.signed(WORKER_KEY, request_id=env.message_id, executor="sentiment", output=b"x",
                              payout=EVM_PAYOUT).encode())
    # v1's permissionless SubmitResult cannot answer a v2 request around the claim either: v1 is retired.
    v1 = TaskResult.signed(WORKER_KEY, request_id=env.message_id, executor="sentiment", output=b"x", payout=EVM_PAYOUT)
    chain.fails(ProgramErrorCode.TASK_V1_RETIRED,
                submit_result_ix(chain.program_id, sniper.pubkey(), env.message_id, v1.encode()), signers=(sniper,))
    submit(chain, worker, env, honest)


def test_submit_refused_without_a_claim_or_after_the_claim_deadline(served) -> None:
    chain, env, refund = served
    worker = funded(chain)
    price = auction_price(10**15, 5000, 60, NOW, NOW)
    result = served_result(env, worker, price)
    ix = submit_result_v2_ix(chain.program_id, worker.pubkey(), env.message_id, result.encode())
    chain.fails(ProgramErrorCode.SERVE_WRONG_ADDRESS, ix, signers=(worker,))  # nobody claimed yet: no serve account
    claim(chain, worker, env, refund)
    chain.set_time(NOW + 31)
    chain.fails(ProgramErrorCode.CLAIM_DEADLINE_PASSED, ix, signers=(worker,))
    chain.ok(expire_claim_ix(chain.program_id, env.message_id, refund.pubkey()))
    chain.fails(ProgramErrorCode.NOT_CLAIMED, ix, signers=(worker,))


def test_an_expired_claim_forfeits_its_bond_and_another_worker_completes(served) -> None:
    chain, env, refund = served
    silent, other = funded(chain), funded(chain)
    claim(chain, silent, env, refund)
    expire = expire_claim_ix(chain.program_id, env.message_id, refund.pubkey())
    chain.set_time(NOW + 30)
    chain.fails(ProgramErrorCode.CLAIM_NOT_EXPIRED, expire)
    chain.set_time(NOW + 31)
    chain.fails(ProgramErrorCode.RECIPIENT_WRONG, expire_claim_ix(chain.program_id, env.message_id, Pubkey.new_unique()))
    before = balance(chain, refund.pubkey())
    meta = chain.ok(expire)  # anyone
    assert logged(meta, "claim expired; bond forfeited to refund_to")
    assert balance(chain, refund.pubkey()) == before + BOND
    s = serve_of(chain, env.message_id)
    assert s.state is ServeState.OPEN and s.claimant is None and s.bond_held == 0
    chain.fails(ProgramErrorCode.NOT_CLAIMED, expire)
    meta = claim(chain, other, env, refund)
    price = auction_price(10**15, 5000, 60, NOW, NOW + 31)
    assert serve_of(chain, env.message_id).price == price and serve_of(chain, env.message_id).claims == 2
    submit(chain, other, env, served_result(env, other, price))


def test_a_claim_replacing_an_expired_one_forfeits_it_first(served) -> None:
    chain, env, refund = served
    silent, other = funded(chain), funded(chain)
    claim(chain, silent, env, refund)
    chain.set_time(NOW + 31)
    before = balance(chain, refund.pubkey())
    meta = claim(chain, other, env, refund)
    print(f"Claim (forfeits an expired claim first): {meta.compute_units_consumed()} CU")
    assert logged(meta, "claim expired; bond forfeited to refund_to")
    assert balance(chain, refund.pubkey()) == before + BOND
    s = serve_of(chain, env.message_id)
    assert s.claimant == other.pubkey() and s.bond_held == BOND and s.claims == 2


def _answered(served):
    chain, env, refund = served
    worker = funded(chain)
    claim(chain, worker, env, refund)
    result = served_result(env, worker, auction_price(10**15, 5000, 60, NOW, NOW))
    meta = submit(chain, worker, env, result)
    (raw,) = sent_envelopes_of(meta.logs(), chain.program_id)
    return chain, env, refund, worker, result, Envelope.decode(raw).message_id


def test_a_valid_verdict_returns_the_bond_and_closes(served) -> None:
    chain, env, refund, worker, result, result_id = _answered(served)
    v_env = serving_verdict(chain, result, result_id)
    before = balance(chain, worker.pubkey())
    meta = delivered(chain, v_env, serving_accounts(chain, v_env, worker.pubkey(), refund.pubkey()))
    print(f"Deliver verdict to the serving board (bond returned): {meta.compute_units_consumed()} CU")
    assert logged(meta, "bond returned")
    assert balance(chain, worker.pubkey()) == before + BOND
    assert serve_of(chain, env.message_id).state is ServeState.CLOSED
    rival = funded(chain)
    chain.fails(ProgramErrorCode.REQUEST_CLOSED, claim_ix(chain, rival, env, refund.pubkey()), signers=(rival,))


def test_attack2_on_the_serving_side_a_read_only_claimant_fails_the_delivery(served) -> None:
    chain, env, refund, worker, result, result_id = _answered(served)
    v_env = serving_verdict(chain, result, result_id)
    good = serving_accounts(chain, v_env, worker.pubkey(), refund.pubkey())
    refused_delivery(chain, v_env, [*good[:2], AccountMeta(worker.pubkey(), False, False), good[3]],
                     ProgramErrorCode.ACCOUNT_NOT_WRITABLE)
    refused_delivery(chain, v_env, [*good[:2], AccountMeta(Pubkey.new_unique(), False, True), good[3]],
                     ProgramErrorCode.RECIPIENT_WRONG)
    refused_delivery(chain, v_env, good[:3], ProgramErrorCode.BOARD_ACCOUNTS_MISSING)
    refusal = serving_verdict(chain, result, result_id, RefusalReason.OUTPUT_MISMATCH)
    good = serving_accounts(chain, refusal, worker.pubkey(), refund.pubkey())
    refused_delivery(chain, refusal, [*good[:3], AccountMeta(refund.pubkey(), False, False)],
                     ProgramErrorCode.ACCOUNT_NOT_WRITABLE)
    assert logged(delivered(chain, v_env, serving_accounts(chain, v_env, worker.pubkey(), refund.pubkey())),
                  "bond returned")


def test_release_bond_when_no_verdict_comes(served) -> None:
    chain, env, refund, worker, result, result_id = _answered(served)
    ix = release_bond_ix(chain.program_id, env.message_id, worker.pubkey())
    chain.set_time(NOW + 600 + SETTLEMENT_GRACE_SECONDS)
    chain.fails(ProgramErrorCode.DEADLINE_NOT_PASSED, ix)
    chain.set_time(NOW + 601 + SETTLEMENT_GRACE_SECONDS)
    chain.fails(ProgramErrorCode.RECIPIENT_WRONG, release_bond_ix(chain.program_id, env.message_id, Pubkey.new_unique()))
    before = balance(chain, worker.pubkey())
    assert logged(chain.ok(ix), "bond released")
    assert balance(chain, worker.pubkey()) == before + BOND
    assert serve_of(chain, env.message_id).state is ServeState.CLOSED
    chain.fails(ProgramErrorCode.NO_RESULT_PENDING, ix)
    late = serving_verdict(chain, result, result_id)
    assert ignored(delivered(chain, late, serving_accounts(chain, late, worker.pubkey(), refund.pubkey())),
                   "verdict is not on the result waiting for one")


def test_attack7_a_padded_submit_result_leaves_its_envelope_readable_from_state(served) -> None:
    """Logs are cut at the runtime's log limit (10 kB; here 400 bytes, as a padded transaction
    would fill it): the TESSERA_SENT line is gone, the envelope is in the serve account."""
    chain, env, refund = served
    worker = funded(chain)
    claim(chain, worker, env, refund)
    result = served_result(env, worker, auction_price(10**15, 5000, 60, NOW, NOW))
    chain.svm.with_log_bytes_limit(400)
    meta = submit(chain, worker, env, result)
    chain.svm.with_log_bytes_limit(10_000)
    assert sent_envelopes_of(meta.logs(), chain.program_id) == [] and "Log truncated" in meta.logs()
    stored = serve_of(chain, env.message_id)
    sent = Envelope.decode(stored.result_envelope)
    assert sent.payload == result.encode() and sent.message_id == stored.result_id == bytes(meta.return_data().data)[:32]
    assert (sent.src_domain, sent.dst_domain, sent.dst_receiver) == (DOMAIN, OTHER_DOMAIN, REQUESTER_BOARD)


def test_attack7_a_padded_request_task_leaves_its_envelope_readable_from_state(board: Chain) -> None:
    requester = funded(board)
    board.svm.with_log_bytes_limit(200)
    meta = board.ok(request_ix(board, requester, request_v2().encode()), signers=(requester,))
    board.svm.with_log_bytes_limit(10_000)
    assert sent_envelopes_of(meta.logs(), board.program_id) == []
    task = task_of(board, task_v2_address(board.program_id, requester.pubkey(), 7))
    assert Envelope.decode(task.envelope).message_id == task.request_id == bytes(meta.return_data().data)[:32]


# ==== both chains: attack 8 end to end ===========================================================


def test_attack8_bogus_first_result_forfeits_its_bond_reopens_and_the_honest_worker_is_paid() -> None:
    """Chain A (domain 900) requests, chain B (domain 901) serves: the same program on two LiteSVMs.
    Envelopes go from one to the other as the relayer would take them: read from the accounts."""
    a = deployed_chain()
    a.init_committee()
    a.ok(init_gateway_ix(a.program_id, a.payer.pubkey()))
    b = deployed_chain()
    b.init_committee(domain=DOMAIN + 1)
    b.ok(init_gateway_ix(b.program_id, b.payer.pubkey()))
    board = bytes(taskboard_address(a.program_id))  # same program id: the same board address on both
    requester, refund = funded(a), funded(b, 10**8)
    payload = request_v2(max_fee=ESCROW, refund_to=bytes(refund.pubkey())).encode()
    a.ok(request_task_v2_ix(a.program_id, requester.pubkey(), task_nonce=1, dst_domain=DOMAIN + 1, worker_board=board,
                            payload=payload), signers=(requester,))
    task = task_v2_address(a.program_id, requester.pubkey(), 1)
    req = Envelope.decode(task_of(a, task).envelope)

    def to(chain: Chain, env: Envelope, extra: list[AccountMeta]) -> TransactionMetadata:
        raw = env.encode()
        ix = deliver_ix(chain.program_id, chain.payer.pubkey(), ALICE.attest(raw, 1), raw)
        return chain.ok(Instruction(ix.program_id, ix.data, [*ix.accounts, *extra]))

    to(b, req, board_delivery_accounts(b.program_id, req))
    bogus_worker, honest_worker = funded(b), funded(b)
    payout = funded(a, 10**8)

    def serve(worker: Keypair, output: bytes) -> tuple[TaskResultV2, Envelope]:
        b.ok(claim_task_ix(b.program_id, worker.pubkey(), req.message_id, payout=bytes(payout.pubkey()),
                           refund_to=refund.pubkey()), signers=(worker,))
        s = serve_of(b, req.message_id)
        result = result_v2(req.message_id, bytes(payout.pubkey()), price=s.price, output=output,
                           claimant=bytes(worker.pubkey()))
        b.ok(submit_result_v2_ix(b.program_id, worker.pubkey(), req.message_id, result.encode()), signers=(worker,))
        r_env = Envelope.decode(serve_of(b, req.message_id).result_envelope)
        to(a, r_env, result_v2_delivery_accounts(a.program_id, r_env, task=task, requester=requester.pubkey()))
        return result, r_env

    def verdicts(result: TaskResultV2, r_env: Envelope, claimant: Keypair, refusal: RefusalReason | None
                 ) -> tuple[TransactionMetadata, TransactionMetadata]:
        verdict = ProofVerdict.for_result(result, r_env.message_id, AttestationMethod.REEXECUTION,
                                          serve_of(b, req.message_id).submitted_at, refusal).encode()
        to_a = Envelope(kind=3, nonce=0, src_domain=0, src_sender=bytes(32), dst_domain=r_env.dst_domain,
                        dst_receiver=r_env.dst_receiver, payload=verdict)
        to_b = Envelope(kind=3, nonce=0, src_domain=0, src_sender=bytes(32), dst_domain=r_env.src_domain,
                        dst_receiver=r_env.src_sender, payload=verdict)
        return (to(a, to_a, verdict_delivery_accounts(a.program_id, to_a, task=task, requester=requester.pubkey())),
                to(b, to_b, verdict_delivery_accounts(b.program_id, to_b, claimant=claimant.pubkey(),
                                                      refund_to=refund.pubkey())))

    b.set_time(NOW + 5)
    bogus, bogus_env = serve(bogus_worker, b"wrong output")
    refund_before = balance(b, refund.pubkey())
    on_a, on_b = verdicts(bogus, bogus_env, bogus_worker, RefusalReason.OUTPUT_MISMATCH)
    assert ignored(on_a, "result refused by the committee; the task stays open")
    assert logged(on_b, "result refused; bond forfeited to refund_to; task reopened")
    assert balance(b, refund.pubkey()) == refund_before + BOND
    assert serve_of(b, req.message_id).state is ServeState.OPEN

    b.set_time(NOW + 40)
    honest, honest_env = serve(honest_worker, b"positive")
    payout_before, worker_before = balance(a, payout.pubkey()), balance(b, honest_worker.pubkey())
    on_a, on_b = verdicts(honest, honest_env, honest_worker, None)
    assert logged(on_a, "task completed") and logged(on_b, "bond returned")
    price = auction_price(ESCROW, 5000, 60, NOW, NOW + 40)
    assert balance(a, payout.pubkey()) == payout_before + price
    assert balance(b, honest_worker.pubkey()) == worker_before + BOND
    assert task_of(a, task).refund == ESCROW - price


# ==== the shared vectors through the program's decoders ==========================================


ERROR_OF = {
    "UnsupportedPayloadVersion": ProgramErrorCode.TASK_VERSION_UNSUPPORTED,
    "PayloadTruncated": None,  # the payload kind's "malformed" code
    "TrailingBytes": None,
    "UnknownDataMode": None,
    "PayloadTooLarge": None,
    "InvalidAuctionTerms": ProgramErrorCode.TASK_TERMS_INVALID,
    "InvalidURI": ProgramErrorCode.TASK_URI_INVALID,
    "InvalidExecutorId": ProgramErrorCode.TASK_EXECUTOR_INVALID,
    "UnknownProofKind": ProgramErrorCode.RESULT_MALFORMED,
    "OutputHashMismatch": ProgramErrorCode.RESULT_MALFORMED,
    "AttestationLength": ProgramErrorCode.VERDICT_MALFORMED,
    "InvalidVerdict": ProgramErrorCode.VERDICT_MALFORMED,
    "UnknownAttestationMethod": ProgramErrorCode.VERDICT_MALFORMED,
}
MALFORMED = {1: ProgramErrorCode.TASK_PAYLOAD_MALFORMED, 2: ProgramErrorCode.RESULT_MALFORMED,
             3: ProgramErrorCode.VERDICT_MALFORMED}


def _hex(value: str) -> bytes:
    return bytes.fromhex(value[2:])


def test_the_v2_vectors_pass_the_programs_decoders(chain: Chain) -> None:
    for kind, key in ((1, "task_requests"), (2, "task_results"), (3, "verdicts")):
        for vector in VECTORS[key]:
            result = chain.send(check_task_payload_v2_ix(chain.program_id, kind, _hex(vector["encoded"])))
            assert isinstance(result, TransactionMetadata), (vector["name"], result)
    for vector in VECTORS["verdict_envelopes"].values():
        if isinstance(vector, dict):
            payload = Envelope.decode(_hex(vector["encoded"])).payload
            assert isinstance(chain.send(check_task_payload_v2_ix(chain.program_id, 3, payload)), TransactionMetadata)


@pytest.mark.parametrize("vector", VECTORS["invalid"], ids=lambda v: f"kind{v['kind']}-{v['name']}")
def test_the_v2_invalid_vectors_are_refused_by_the_programs_decoders(chain: Chain, vector: dict) -> None:
    kind = int(vector["kind"])
    expected = ERROR_OF[vector["error_name"]] or MALFORMED[kind]
    chain.fails(expected, check_task_payload_v2_ix(chain.program_id, kind, _hex(vector["payload"])))


def test_the_auction_price_vectors_in_160_bit_arithmetic(chain: Chain) -> None:
    for vector in VECTORS["auction_prices"]:
        args = [int(vector[k]) for k in ("max_fee", "start_bps", "auction_window", "auction_start", "now")]
        meta = chain.ok(check_task_payload_v2_ix(chain.program_id, 0, auction_price_input(*args)))
        assert int.from_bytes(bytes(meta.return_data().data), "big") == int(vector["price"]), vector["name"]
    chain.fails(ProgramErrorCode.TASK_TERMS_INVALID,
                check_task_payload_v2_ix(chain.program_id, 0, auction_price_input(1, 10_001, 1, 0, 0)))


# ==== task protocol v1 is retired =================================================================


def test_the_v1_task_instructions_are_refused_with_task_v1_retired(opened) -> None:
    chain, address, env, requester = opened
    before = {a: chain.svm.get_account(a) for a in (address, requester.pubkey())}
    payload = TaskRequest("sentiment", 10, NOW + 600, input=b"x").encode()
    for ix in (request_task_ix(chain.program_id, requester.pubkey(), request_id=keccak256(b"v1"),
                               dst_domain=OTHER_DOMAIN, worker_board=WORKER_BOARD, payload=payload),
               submit_result_ix(chain.program_id, requester.pubkey(), env.message_id,
                                TaskResult.signed(WORKER_KEY, request_id=env.message_id, executor="sentiment",
                                                  output=b"x", payout=EVM_PAYOUT).encode()),
               reclaim_ix(chain.program_id, requester.pubkey(), env.message_id)):
        signs = any(meta.is_signer and meta.pubkey == requester.pubkey() for meta in ix.accounts)
        chain.fails(ProgramErrorCode.TASK_V1_RETIRED, ix, signers=(requester,) if signs else ())
    assert {a: chain.svm.get_account(a) for a in before} == before  # nothing written


def test_v1_results_and_attestations_to_the_board_are_ignored_with_the_board_account_only(opened) -> None:
    """A retired v1 TASK_RESULT / PROOF_ATTESTATION is ignored (its own receipt only): no task
    account is read or written, so nothing a v2 task needs is consumed, and a delivery cannot get
    stuck on it."""
    chain, address, env, requester = opened
    task_before = chain.svm.get_account(address)
    result = TaskResult.signed(WORKER_KEY, request_id=env.message_id, executor="sentiment", output=b"x",
                               payout=bytes(requester.pubkey()))
    v1_result = Envelope(kind=MessageKind.TASK_RESULT, nonce=9, src_domain=OTHER_DOMAIN, src_sender=WORKER_BOARD,
                         dst_domain=DOMAIN, dst_receiver=board_key(chain), payload=result.encode())
    attestation = ProofAttestation(env.message_id, v1_result.message_id, keccak256(b"x"), result.worker,
                                   bytes(requester.pubkey()), AttestationMethod.SIGNATURE_ONLY, NOW)
    v1_attestation = Envelope(kind=MessageKind.PROOF_ATTESTATION, nonce=10, src_domain=COMMITTEE_DOMAIN,
                              src_sender=bytes(32), dst_domain=DOMAIN, dst_receiver=board_key(chain),
                              payload=attestation.encode())
    for v1 in (v1_result, v1_attestation):
        extra = board_delivery_accounts(chain.program_id, v1)
        assert extra == [AccountMeta(taskboard_address(chain.program_id), False, False)]
        assert ignored(delivered(chain, v1, extra), "not a task protocol v2 message (v1 is retired)")
    assert chain.svm.get_account(address) == task_before
