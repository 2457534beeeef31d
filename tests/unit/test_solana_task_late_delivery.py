"""A TASK_RESULT or verdict delivered to Solana after its record was closed (CloseTask / CloseServe) on
the Tessera Solana program in LiteSVM. It used to fail for ever (TASK_ACCOUNT_WRONG) and the relayer
retried it until its dead letter. Now the program tells "closed for exactly this request" from "the
caller passed the wrong account":

* requester side: CloseTask leaves a 40-byte tombstone (magic + request id); a late result or verdict
  naming the tombstone of its own request is recorded as a no-op (receipt written, nothing paid);
* serving side: a late verdict naming the re-derived ["serve", request_id] address of its own request
  with that request's receipt marked SERVE_CLOSED is recorded as a no-op.

Every other account is refused as before, without writing the receipt (the genuine delivery can
still land): each attack below is performed. A 0-byte tombstone of the previous CloseTask still
refuses the nonce and (no request id in it) still refuses late deliveries."""

from __future__ import annotations

import pytest
from solders.account import Account
from solders.compute_budget import set_compute_unit_limit
from solders.instruction import AccountMeta, Instruction
from solders.pubkey import Pubkey
from solders.system_program import ID as SYSTEM_PROGRAM_ID

from adapters.solana.program import (
    RECEIPT_STATUS_SERVE_CLOSED,
    TASK_TOMBSTONE_LEN,
    DeliveryReceipt,
    ProgramErrorCode,
    board_delivery_accounts,
    close_serve_ix,
    close_task_ix,
    closed_serve_verdict_accounts,
    closed_task_delivery_accounts,
    deliver_ix,
    deliver_with_proof_ix,
    is_task_tombstone,
    outbox_address,
    receipt_address,
    reclaim_v2_ix,
    release_bond_ix,
    serve_address,
    taskboard_address,
)
from adapters.solana.tx import PACKET_DATA_SIZE, transaction_size
from relay.batch import Batch
from relay.envelope import Envelope
from relay.tasks.payloads import RefusalReason
from tests.support.solana import ALICE, Chain, custom_error, funded
from tests.unit.test_solana_batch import verify
from tests.unit.test_solana_taskboard_v2 import (  # noqa: F401 - board, served: fixtures
    NOW,
    SETTLEMENT_GRACE_SECONDS,
    _answered,
    balance,
    board,
    claim_ix,
    deliver,
    delivered,
    ignored,
    incoming,
    refused_delivery,
    request,
    request_ix,
    request_v2,
    result_accounts,
    result_env,
    result_v2,
    served,
    serving_accounts,
    serving_verdict,
    verdict_accounts,
    verdict_env,
)

E = ProgramErrorCode
TASK_CLOSED = "its task was closed (CloseTask)"
SERVE_CLOSED = "its serve account was closed (CloseServe)"
CU_LIMIT = 400_000  # what the relayer's Deliver sets (a compute-budget instruction in the transaction)


def _closed_task(chain: Chain, task_nonce: int = 7):
    """A request from here, refunded after deadline + grace and closed by its requester: the late case
    (the worker answered on time on the serving chain, the result and verdict travel slowly)."""
    requester = funded(chain)
    chain.set_time(NOW)
    task, req, _ = request(chain, requester, request_v2(deadline=NOW + 600), task_nonce=task_nonce)
    chain.set_time(NOW + 601 + SETTLEMENT_GRACE_SECONDS)
    chain.ok(reclaim_v2_ix(chain.program_id, task, requester.pubkey()))
    chain.ok(close_task_ix(chain.program_id, requester.pubkey(), task, requester.pubkey()), signers=(requester,))
    account = chain.svm.get_account(task)
    assert account.owner == chain.program_id and is_task_tombstone(bytes(account.data), req.message_id)
    return task, req, requester


def _late_result(chain: Chain, req: Envelope, nonce: int = 1):
    payout = funded(chain, 10**8)
    result = result_v2(req.message_id, bytes(payout.pubkey()))
    return result, result_env(chain, result, nonce=nonce), payout


def _balances(chain: Chain, *keys: Pubkey) -> list[int]:
    return [balance(chain, key) for key in keys]


def _receipt_written(chain: Chain, env: Envelope) -> bool:
    return chain.svm.get_account(receipt_address(chain.program_id, env.message_id)[0]) is not None


def _deliver_size(chain: Chain, env: Envelope, extra: list[AccountMeta]) -> int:
    raw = env.encode()
    ix = deliver_ix(chain.program_id, chain.payer.pubkey(), ALICE.attest(raw, 1), raw)
    return transaction_size([set_compute_unit_limit(CU_LIMIT), Instruction(ix.program_id, ix.data,
                                                                           [*ix.accounts, *extra])],
                            chain.payer.pubkey())


def _no_op(chain: Chain, env: Envelope, extra: list[AccountMeta], reason: str, watched: list[Pubkey]) -> int:
    """Delivers `env` as a no-op: it lands, its receipt is written, the log names the closed record,
    no watched account's lamports move; then the same message again is refused ALREADY_DELIVERED.
    Returns the delivery's compute units."""
    before = _balances(chain, *watched)
    meta = delivered(chain, env, extra)
    assert ignored(meta, reason), meta.logs()
    assert _receipt_written(chain, env)
    assert _balances(chain, *watched) == before
    assert custom_error(deliver(chain, env, extra)) == E.ALREADY_DELIVERED
    assert _balances(chain, *watched) == before
    return meta.compute_units_consumed()


# ==== requester side: the tombstone of a closed task ==============================================


def test_a_late_result_and_verdict_to_a_closed_task_are_delivered_once_as_no_ops(board: Chain, capsys) -> None:
    task, req, requester = _closed_task(board)
    result, r_env, payout = _late_result(board, req)
    watched = [task, payout.pubkey(), requester.pubkey()]
    # The relayer's accounts when it finds only the tombstone: [board, tombstone].
    accounts = closed_task_delivery_accounts(board.program_id, task)
    result_cu = _no_op(board, r_env, accounts, TASK_CLOSED, watched)
    v_env = verdict_env(board, result, r_env.message_id)
    verdict_cu = _no_op(board, v_env, accounts, TASK_CLOSED, watched)
    # A relayer that still has the task cached builds the live layout (the tombstone is at the task's
    # address): the program takes the tombstone whatever follows it.
    result2, r_env2, payout2 = _late_result(board, req, nonce=2)
    _no_op(board, r_env2, result_accounts(board, r_env2, task, requester), TASK_CLOSED, [*watched, payout2.pubkey()])
    v_env2 = verdict_env(board, result2, r_env2.message_id)
    _no_op(board, v_env2, verdict_accounts(board, v_env2, task, requester), TASK_CLOSED, [*watched, payout2.pubkey()])
    # The tombstone is untouched and still refuses the task nonce.
    assert is_task_tombstone(bytes(board.svm.get_account(task).data), req.message_id)
    board.fails(E.TASK_NONCE_USED, request_ix(board, requester, request_v2(deadline=NOW + 10**6).encode()),
                signers=(requester,))
    sizes = (_deliver_size(board, r_env, accounts), _deliver_size(board, v_env, accounts))
    assert max(sizes) <= PACKET_DATA_SIZE
    with capsys.disabled():
        print(f"\nlate delivery to a closed task (no-op): TASK_RESULT {result_cu} CU, verdict {verdict_cu} CU; "
              f"transactions {sizes[0]} / {sizes[1]} bytes; tombstone rent "
              f"{board.svm.minimum_balance_for_rent_exemption(TASK_TOMBSTONE_LEN):,} lamports "
              f"(0-byte: {board.svm.minimum_balance_for_rent_exemption(0):,})")


def test_late_deliveries_naming_another_account_than_their_own_tombstone_are_refused(board: Chain) -> None:
    """The attacks: consume a genuine late result / verdict without applying it by naming some other
    account. Each is refused and writes no receipt; the genuine delivery lands afterwards."""
    task, req, requester = _closed_task(board, task_nonce=7)
    other_task, other_req, _ = _closed_task(board, task_nonce=8)  # another request's tombstone
    board.set_time(NOW)
    live_requester = funded(board)
    live_task, live_req, _ = request(board, live_requester, request_v2(deadline=NOW + 600), task_nonce=9)
    result, r_env, payout = _late_result(board, req)
    v_env = verdict_env(board, result, r_env.message_id)
    board_meta = AccountMeta(taskboard_address(board.program_id), False, False)

    def naming(account: Pubkey) -> list[AccountMeta]:
        return [board_meta, AccountMeta(account, False, True)]

    # A tombstone of a lookalike: the magic and this request id, owned by someone else (the system
    # program, another program); and a program account of the same length that is not a tombstone
    # (the outbox: 40 bytes).
    forged = [Pubkey.new_unique(), Pubkey.new_unique()]
    for key, owner in zip(forged, (SYSTEM_PROGRAM_ID, Pubkey.new_unique())):
        board.svm.set_account(key, Account(10**7, b"TESSTOMB" + req.message_id, owner, False, 0))
    outbox = outbox_address(board.program_id)[0]
    assert len(bytes(board.svm.get_account(outbox).data)) == TASK_TOMBSTONE_LEN
    wrong = [other_task, live_task, outbox, *forged, Pubkey.new_unique(), requester.pubkey(),
             serve_address(board.program_id, req.message_id)]
    for env in (r_env, v_env):
        for account in wrong:
            refused_delivery(board, env, naming(account), E.TASK_ACCOUNT_WRONG)
        # Ours but read-only (a record is passed writable), or no record at all.
        refused_delivery(board, env, [board_meta, AccountMeta(task, False, False)], E.ACCOUNT_NOT_WRITABLE)
        refused_delivery(board, env, [board_meta], E.BOARD_ACCOUNTS_MISSING)
    # The live task of another request in the live layout, with the right payout and requester.
    refused_delivery(board, r_env, result_accounts(board, r_env, live_task, live_requester), E.TASK_ACCOUNT_WRONG)
    refused_delivery(board, v_env, verdict_accounts(board, v_env, live_task, live_requester), E.TASK_ACCOUNT_WRONG)
    # Another request's tombstone for a result of that other request's id but delivered here: fine
    # only for its own request (the tombstone's request id is compared, not its address).
    other_result, other_env, _ = _late_result(board, other_req, nonce=3)
    refused_delivery(board, other_env, naming(task), E.TASK_ACCOUNT_WRONG)
    assert logged_no_op(board, other_env, naming(other_task))
    # The genuine deliveries were not consumed by any of the above.
    assert logged_no_op(board, r_env, naming(task)) and logged_no_op(board, v_env, naming(task))
    assert balance(board, payout.pubkey()) == 10**8


def logged_no_op(chain: Chain, env: Envelope, extra: list[AccountMeta]) -> bool:
    return ignored(delivered(chain, env, extra), TASK_CLOSED)


def test_a_zero_byte_tombstone_of_the_previous_close_task_still_refuses_the_nonce_and_late_deliveries(
        board: Chain) -> None:
    """Tombstones made before this change are 0 bytes (no request id): the nonce stays used, and a
    late delivery to one still fails TASK_ACCOUNT_WRONG (retried until its dead letter, as before) —
    the program cannot tell it from any other empty account of its own."""
    task, req, requester = _closed_task(board)
    account = board.svm.get_account(task)
    legacy = board.svm.minimum_balance_for_rent_exemption(0)
    board.svm.set_account(task, Account(legacy, b"", account.owner, False, account.rent_epoch))  # as the old CloseTask left it
    board.fails(E.TASK_NONCE_USED, request_ix(board, requester, request_v2(deadline=NOW + 10**6).encode()),
                signers=(requester,))
    result, r_env, _ = _late_result(board, req)
    refused_delivery(board, r_env, closed_task_delivery_accounts(board.program_id, task), E.TASK_ACCOUNT_WRONG)
    refused_delivery(board, r_env, result_accounts(board, r_env, task, requester), E.TASK_ACCOUNT_WRONG)
    v_env = verdict_env(board, result, r_env.message_id)
    refused_delivery(board, v_env, closed_task_delivery_accounts(board.program_id, task), E.TASK_ACCOUNT_WRONG)


# ==== serving side: a serve account deleted by CloseServe ==========================================


def _closed_serve(served):
    """A request served here: answered, no verdict by deadline + grace, the bond released and the serve
    account closed by its claimant. Then the committee's verdict arrives late."""
    chain, env, refund, worker, result, result_id = _answered(served)
    chain.set_time(NOW + 601 + SETTLEMENT_GRACE_SECONDS)  # (the request's deadline: NOW + 600)
    chain.ok(release_bond_ix(chain.program_id, env.message_id, worker.pubkey()))
    chain.ok(close_serve_ix(chain.program_id, worker.pubkey(), env.message_id, worker.pubkey()), signers=(worker,))
    assert balance(chain, serve_address(chain.program_id, env.message_id)) == 0
    receipt = DeliveryReceipt.decode(bytes(chain.svm.get_account(receipt_address(chain.program_id,
                                                                                 env.message_id)[0]).data))
    assert receipt.status == RECEIPT_STATUS_SERVE_CLOSED
    return chain, env, refund, worker, result, result_id


@pytest.mark.parametrize("refusal", [None, "refused"])
def test_a_late_verdict_after_close_serve_is_delivered_once_as_a_no_op(served, refusal, capsys) -> None:
    """A valid verdict would have returned the bond, a refusal forfeited it: after the close (the bond
    was released) either is recorded and moves nothing."""
    chain, env, refund, worker, result, result_id = _closed_serve(served)
    v_env = serving_verdict(chain, result, result_id, RefusalReason.OUTPUT_MISMATCH if refusal else None)
    serve = serve_address(chain.program_id, env.message_id)
    accounts = closed_serve_verdict_accounts(chain.program_id, v_env)
    assert [a.pubkey for a in accounts[1:]] == [serve, receipt_address(chain.program_id, env.message_id)[0]]
    cu = _no_op(chain, v_env, accounts, SERVE_CLOSED, [serve, worker.pubkey(), refund.pubkey()])
    # Still closed for good: the receipt keeps its mark, nobody re-creates the serve account.
    rival = funded(chain)
    chain.set_time(NOW)
    chain.fails(E.REQUEST_CLOSED, claim_ix(chain, rival, env, refund.pubkey()), signers=(rival,))
    size = _deliver_size(chain, v_env, accounts)
    live = _deliver_size(chain, v_env, serving_accounts(chain, v_env, worker.pubkey(), refund.pubkey()))
    assert size <= live <= PACKET_DATA_SIZE
    with capsys.disabled():
        print(f"\nlate verdict after CloseServe (no-op, {'refused' if refusal else 'valid'}): {cu} CU; "
              f"transaction {size} bytes (the live serving verdict's: {live})")


def test_late_serving_verdicts_naming_anything_but_their_closed_serve_address_and_receipt_are_refused(
        served) -> None:
    """The attacks on the serving side, each refused without writing the receipt: a system account at
    an address that is not the request's serve PDA (with the right receipt), the right address with a
    serve-closed receipt of another request, with the request's receipt not marked (a request never
    claimed), with another receipt of this program (the verdict's own result), without the receipt, or
    a read-only serve address."""
    chain, env, refund, worker, result, result_id = _closed_serve(served)
    v_env = serving_verdict(chain, result, result_id)
    board_meta = AccountMeta(taskboard_address(chain.program_id), False, False)
    serve = serve_address(chain.program_id, env.message_id)
    own_receipt = receipt_address(chain.program_id, env.message_id)[0]
    # Another request served here, also closed (its receipt carries the mark too).
    chain.set_time(NOW)
    other_env = incoming(chain, request_v2(max_fee=10**15, refund_to=bytes(refund.pubkey())), nonce=5)
    delivered(chain, other_env, board_delivery_accounts(chain.program_id, other_env))
    other = _closed_serve((chain, other_env, refund))
    assert other[1].message_id != env.message_id
    other_serve = serve_address(chain.program_id, other_env.message_id)
    other_receipt = receipt_address(chain.program_id, other_env.message_id)[0]
    # A request delivered here and never claimed: its receipt is not marked.
    idle_env = incoming(chain, request_v2(max_fee=10**15, refund_to=bytes(refund.pubkey())), nonce=6)
    delivered(chain, idle_env, board_delivery_accounts(chain.program_id, idle_env))
    idle_receipt = receipt_address(chain.program_id, idle_env.message_id)[0]
    stranger = Pubkey.new_unique()
    chain.svm.airdrop(stranger, 10**7)  # a system account
    chain.svm.airdrop(serve, 10**7)  # someone funds the closed address: still the derived one, still closed

    def accounts(record: Pubkey, receipt: Pubkey | None, writable: bool = True) -> list[AccountMeta]:
        return [board_meta, AccountMeta(record, False, writable),
                *([AccountMeta(receipt, False, False)] if receipt is not None else [])]

    for record, receipt in ((stranger, own_receipt), (other_serve, own_receipt), (other_serve, other_receipt),
                            (serve, other_receipt), (serve, idle_receipt), (serve, serve), (serve, stranger),
                            (serve, receipt_address(chain.program_id, result_id)[0]), (serve, None),
                            (own_receipt, own_receipt)):
        refused_delivery(chain, v_env, accounts(record, receipt), E.TASK_ACCOUNT_WRONG)
    refused_delivery(chain, v_env, accounts(serve, own_receipt, writable=False), E.ACCOUNT_NOT_WRITABLE)
    # The genuine one still lands (a no-op), even with the closed address funded meanwhile.
    before = _balances(chain, serve, worker.pubkey(), refund.pubkey())
    assert ignored(delivered(chain, v_env, accounts(serve, own_receipt)), SERVE_CLOSED)
    assert _balances(chain, serve, worker.pubkey(), refund.pubkey()) == before


def test_a_late_result_delivered_with_a_batch_proof_is_a_no_op_too(board: Chain) -> None:
    """DeliverWithProof runs the same account checks and handling: a late result proven by a verified
    batch root lands once as a no-op on its own tombstone; another account is refused first."""
    task, req, requester = _closed_task(board)
    _, env_a, payout = _late_result(board, req, nonce=1)
    _, env_b, _ = _late_result(board, req, nonce=2)
    batch = Batch.of([env_a, env_b])
    ix, signers = verify(board, batch)
    board.ok(ix, signers=signers)

    def prove(i: int, extra: list[AccountMeta]) -> Instruction:
        return deliver_with_proof_ix(board.program_id, board.payer.pubkey(), batch.root, i, batch.proof(i),
                                     batch.envelopes[i].encode(), extra)

    board_meta = AccountMeta(taskboard_address(board.program_id), False, False)
    board.fails(E.TASK_ACCOUNT_WRONG, prove(0, [board_meta, AccountMeta(Pubkey.new_unique(), False, True)]))
    assert not _receipt_written(board, env_a)
    before = _balances(board, task, payout.pubkey(), requester.pubkey())
    for i, env in enumerate(batch.envelopes):
        meta = board.ok(prove(i, closed_task_delivery_accounts(board.program_id, task)))
        assert ignored(meta, TASK_CLOSED) and _receipt_written(board, env)
        board.fails(E.ALREADY_DELIVERED, prove(i, closed_task_delivery_accounts(board.program_id, task)))
    assert _balances(board, task, payout.pubkey(), requester.pubkey()) == before
