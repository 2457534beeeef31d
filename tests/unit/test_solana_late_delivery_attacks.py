"""Attacks on the no-op late deliveries (CloseTask tombstone / CloseServe mark) performed against the
Tessera Solana program in LiteSVM, by a caller who controls who delivers, which accounts are passed,
transaction order and what it creates itself. Each tries to get a GENUINE result or verdict of a LIVE
record consumed as a no-op (or to revive a tombstone); each is refused without writing the receipt, and
the genuine delivery then lands and pays. See tests/unit/test_solana_task_late_delivery.py for the
no-op deliveries themselves and docs/SECURITY.md for the rows these tests back."""

from __future__ import annotations

from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.system_program import CreateAccountParams, create_account

from adapters.solana.program import (
    TASK_TOMBSTONE_LEN,
    ProgramErrorCode,
    board_delivery_accounts,
    close_serve_ix,
    close_task_ix,
    closed_serve_verdict_accounts,
    closed_task_delivery_accounts,
    deliver_with_proof_ix,
    is_task_tombstone,
    probe_ix,
    receipt_address,
    reclaim_v2_ix,
    release_bond_ix,
    serve_address,
    taskboard_address,
    withdraw_credit_ix,
)
from adapters.solana.tx import PACKET_DATA_SIZE
from relay.batch import Batch
from relay.envelope import Envelope
from tests.support.solana import funded
from tests.unit.test_solana_batch import verify
from tests.unit.test_solana_task_late_delivery import CU_LIMIT, TASK_CLOSED, _closed_serve, _closed_task, _deliver_size
from tests.unit.test_solana_taskboard_v2 import (  # noqa: F401 - board, served: fixtures
    BOND,
    NOW,
    SETTLEMENT_GRACE_SECONDS,
    _answered,
    balance,
    board,
    delivered,
    ignored,
    incoming,
    logged,
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


def _board_meta(chain) -> AccountMeta:
    return AccountMeta(taskboard_address(chain.program_id), False, False)


def _own_zeroed_account(chain, space: int) -> Pubkey:
    """What anyone can make: a fresh account created through the system program with this program as
    owner (its data is zeroed; only this program may write it afterwards)."""
    fresh = Keypair()
    chain.ok(create_account(CreateAccountParams(
        from_pubkey=chain.payer.pubkey(), to_pubkey=fresh.pubkey(),
        lamports=chain.svm.minimum_balance_for_rent_exemption(space), space=space, owner=chain.program_id)),
        signers=(fresh,))
    account = chain.svm.get_account(fresh.pubkey())
    assert account.owner == chain.program_id and bytes(account.data) == bytes(space)
    return fresh.pubkey()


def test_a_live_tasks_genuine_result_and_verdict_cannot_be_consumed_as_no_ops(board) -> None:
    """The requester's task is live (Open). The attacker delivers its genuine result and valid verdict
    first, with every closed-record layout it can build: the live task where a tombstone goes (no payout
    or requester after it), the request's (never created) serve address with a serve-closed receipt of
    another request served here, another request's real tombstone, accounts it created owned by this
    program (40 zeroed bytes; a 32-byte Probe target holding a hash it chose), duplicates of the task.
    All refused before the receipt; then the genuine result and verdict land and pay the worker."""
    chain = board
    chain.set_time(NOW)
    requester = funded(chain)
    task, req, _ = request(chain, requester, request_v2(deadline=NOW + 600), task_nonce=11)
    payout = funded(chain, 10**8)
    result = result_v2(req.message_id, bytes(payout.pubkey()))
    r_env = result_env(chain, result, nonce=21)
    v_env = verdict_env(chain, result, r_env.message_id)
    # Another request's closed task (a real tombstone) and another request served here and closed.
    other_task, _, _ = _closed_task(chain, task_nonce=12)
    chain.set_time(NOW)
    refund = funded(chain, 10**8)
    other_env = incoming(chain, request_v2(max_fee=10**15, refund_to=bytes(refund.pubkey())), nonce=31)
    delivered(chain, other_env, board_delivery_accounts(chain.program_id, other_env))
    _closed_serve((chain, other_env, refund))
    other_receipt = receipt_address(chain.program_id, other_env.message_id)[0]
    chain.set_time(NOW + 20)
    zeroed = _own_zeroed_account(chain, TASK_TOMBSTONE_LEN)
    # Probe writes only into 32-byte accounts: never a 40-byte one, so it cannot forge a tombstone.
    chain.fails(E.WRONG_ACCOUNT_SIZE, probe_ix(chain.program_id, zeroed, b"TESSTOMB" + req.message_id))
    probed = _own_zeroed_account(chain, 32)
    chain.ok(probe_ix(chain.program_id, probed, b"anything"))
    board_meta = _board_meta(chain)

    def naming(*accounts: Pubkey) -> list[AccountMeta]:
        return [board_meta, *(AccountMeta(a, False, True) for a in accounts)]

    serve_x = serve_address(chain.program_id, req.message_id)
    for env in (r_env, v_env):
        # The live task in the tombstone layout: it is live, so the live layout's accounts are required.
        refused_delivery(chain, env, closed_task_delivery_accounts(chain.program_id, task), E.BOARD_ACCOUNTS_MISSING)
        refused_delivery(chain, env, naming(task, task), E.BOARD_ACCOUNTS_MISSING)
        for wrong in (other_task, zeroed, probed):
            refused_delivery(chain, env, naming(wrong), E.TASK_ACCOUNT_WRONG)
        # The request's serve address (empty: never created) with another request's serve-closed receipt.
        refused_delivery(chain, env, [board_meta, AccountMeta(serve_x, False, True),
                                      AccountMeta(other_receipt, False, False)],
                         E.TASK_ACCOUNT_WRONG)
    # The live task with the serve-closed layout of another request after it.
    refused_delivery(chain, v_env, [board_meta, AccountMeta(other_task, False, True),
                                    AccountMeta(other_receipt, False, False)], E.TASK_ACCOUNT_WRONG)
    # The genuine deliveries still land: the result is recorded, the verdict settles and pays.
    before = balance(chain, payout.pubkey())
    meta = delivered(chain, r_env, result_accounts(chain, r_env, task, requester))
    assert logged(meta, "task result recorded")
    meta = delivered(chain, v_env, verdict_accounts(chain, v_env, task, requester))
    assert logged(meta, "task completed")
    assert balance(chain, payout.pubkey()) == before + result.price


def test_a_live_serve_accounts_genuine_verdict_cannot_be_consumed_as_a_no_op(served) -> None:
    """The serve account is live (Answered, the worker's bond held). The attacker delivers the genuine
    valid verdict first with the closed-serve layout (the live serve address with the request's own
    receipt, unmarked; with another request's marked receipt), another request's tombstone, or a
    program account it created. All refused before the receipt; the genuine verdict then returns the
    bond."""
    chain, env, refund, worker, result, result_id = _answered(served)
    v_env = serving_verdict(chain, result, result_id)
    chain_board = _board_meta(chain)
    other_task, _, _ = _closed_task(chain, task_nonce=13)
    chain.set_time(NOW)
    other_env = incoming(chain, request_v2(max_fee=10**15, refund_to=bytes(refund.pubkey())), nonce=41)
    delivered(chain, other_env, board_delivery_accounts(chain.program_id, other_env))
    _closed_serve((chain, other_env, refund))
    chain.set_time(NOW + 20)
    serve = serve_address(chain.program_id, env.message_id)
    own_receipt = receipt_address(chain.program_id, env.message_id)[0]
    other_receipt = receipt_address(chain.program_id, other_env.message_id)[0]
    zeroed = _own_zeroed_account(chain, TASK_TOMBSTONE_LEN)
    attempts = [
        # The live serve account where the closed one goes: it is live, so claimant + refund_to are required.
        (closed_serve_verdict_accounts(chain.program_id, v_env), E.BOARD_ACCOUNTS_MISSING),
        ([chain_board, AccountMeta(serve, False, True), AccountMeta(other_receipt, False, False)],
         E.BOARD_ACCOUNTS_MISSING),
        ([chain_board, AccountMeta(other_task, False, True)], E.TASK_ACCOUNT_WRONG),
        ([chain_board, AccountMeta(zeroed, False, True), AccountMeta(own_receipt, False, False)], E.TASK_ACCOUNT_WRONG),
        ([chain_board, AccountMeta(serve_address(chain.program_id, other_env.message_id), False, True),
          AccountMeta(other_receipt, False, False)], E.TASK_ACCOUNT_WRONG),
    ]
    for accounts, code in attempts:
        refused_delivery(chain, v_env, accounts, code)
    before = balance(chain, worker.pubkey())
    meta = delivered(chain, v_env, serving_accounts(chain, v_env, worker.pubkey(), refund.pubkey()))
    assert logged(meta, "bond returned") and balance(chain, worker.pubkey()) == before + BOND


def test_a_tombstone_cannot_be_revived_closed_again_or_drained(board) -> None:
    """Lamports sent to a tombstone do not make its address usable again: RequestTask with the same
    (requester, task_nonce) still fails TASK_NONCE_USED; CloseTask, Reclaim and Withdraw naming it fail
    TASK_NOT_FOUND (nothing takes its lamports); its bytes stay the tombstone's; late deliveries still
    land on it as no-ops."""
    task, req, requester = _closed_task(board, task_nonce=17)
    data = bytes(board.svm.get_account(task).data)
    board.svm.airdrop(task, 5 * 10**9)
    lamports = balance(board, task)
    board.fails(E.TASK_NONCE_USED, request_ix(board, requester, request_v2(deadline=NOW + 10**6).encode(), 17),
                signers=(requester,))
    board.fails(E.TASK_NOT_FOUND, close_task_ix(board.program_id, requester.pubkey(), task, requester.pubkey()),
                signers=(requester,))
    board.fails(E.TASK_NOT_FOUND, reclaim_v2_ix(board.program_id, task, requester.pubkey()))
    board.fails(E.TASK_NOT_FOUND, withdraw_credit_ix(board.program_id, task, requester.pubkey()))
    assert bytes(board.svm.get_account(task).data) == data and is_task_tombstone(data, req.message_id)
    assert balance(board, task) == lamports
    payout = funded(board, 10**8)
    r_env = result_env(board, result_v2(req.message_id, bytes(payout.pubkey())), nonce=5)
    assert ignored(delivered(board, r_env, closed_task_delivery_accounts(board.program_id, task)), TASK_CLOSED)
    assert balance(board, task) == lamports


def test_a_live_serving_verdict_proven_by_a_batch_root_is_not_a_no_op_and_a_closed_one_is(served) -> None:
    """DeliverWithProof drops the committee config (last) before the board's checks: a caller passing
    [board, serve address] + config (so the config stands where the receipt would) is refused; with the
    live serve account, the closed-serve layout is refused and the live one returns the bond. On a
    closed serve account a proven late verdict is a no-op."""
    chain, env, refund, worker, result, result_id = _answered(served)
    live_v = serving_verdict(chain, result, result_id)
    # Another request served here and closed, whose late verdict travels in the same batch.
    chain.set_time(NOW)
    other_env = incoming(chain, request_v2(max_fee=10**15, refund_to=bytes(refund.pubkey())), nonce=51)
    delivered(chain, other_env, board_delivery_accounts(chain.program_id, other_env))
    closed = _answered((chain, other_env, refund))
    chain.set_time(NOW + 20)
    late_v = serving_verdict(chain, closed[4], closed[5])
    batch = Batch.of([live_v, late_v])
    ix, signers = verify(chain, batch)
    chain.ok(ix, signers=signers)

    def prove(i: int, extra: list[AccountMeta]) -> Instruction:
        return deliver_with_proof_ix(chain.program_id, chain.payer.pubkey(), batch.root, i, batch.proof(i),
                                     batch.envelopes[i].encode(), extra)

    def receipt_written(e: Envelope) -> bool:
        return chain.svm.get_account(receipt_address(chain.program_id, e.message_id)[0]) is not None

    board_meta = _board_meta(chain)
    serve = serve_address(chain.program_id, env.message_id)
    chain.fails(E.BOARD_ACCOUNTS_MISSING, prove(0, [board_meta, AccountMeta(serve, False, True)]))
    chain.fails(E.BOARD_ACCOUNTS_MISSING, prove(0, closed_serve_verdict_accounts(chain.program_id, live_v)))
    assert not receipt_written(live_v)
    before = balance(chain, worker.pubkey())
    meta = chain.ok(prove(0, serving_accounts(chain, live_v, worker.pubkey(), refund.pubkey())))
    assert logged(meta, "bond returned") and balance(chain, worker.pubkey()) == before + BOND
    # The other serve account: bond released after deadline + grace, closed; its verdict proven late.
    other_worker = closed[3]
    chain.set_time(NOW + 601 + SETTLEMENT_GRACE_SECONDS)
    chain.ok(release_bond_ix(chain.program_id, other_env.message_id, other_worker.pubkey()))
    chain.ok(close_serve_ix(chain.program_id, other_worker.pubkey(), other_env.message_id, other_worker.pubkey()),
             signers=(other_worker,))
    other_serve = serve_address(chain.program_id, other_env.message_id)
    chain.fails(E.TASK_ACCOUNT_WRONG, prove(1, [board_meta, AccountMeta(other_serve, False, True)]))
    assert not receipt_written(late_v)
    watched = [other_worker.pubkey(), refund.pubkey()]
    held = [balance(chain, k) for k in watched]
    meta = chain.ok(prove(1, closed_serve_verdict_accounts(chain.program_id, late_v)))
    assert ignored(meta, "its serve account was closed (CloseServe)") and receipt_written(late_v)
    assert [balance(chain, k) for k in watched] == held
    chain.fails(E.ALREADY_DELIVERED, prove(1, closed_serve_verdict_accounts(chain.program_id, late_v)))
    assert CU_LIMIT >= meta.compute_units_consumed()


def test_no_op_late_deliveries_stay_within_the_documented_compute_and_size(served, capsys) -> None:
    """The figures docs/TASKS.md and contracts/solana/README.md give for a no-op delivery, measured over
    many messages (the pairing's hash-to-curve and the receipt / serve PDAs' bump searches vary with the
    message id): every one far below the relayer's CU limit and within one 1,232-byte packet."""
    chain, env, refund, worker, result, result_id = _closed_serve(served)
    task, req, _ = _closed_task(chain, task_nonce=19)
    tomb = closed_task_delivery_accounts(chain.program_id, task)
    payout = funded(chain, 10**8)
    cus: dict[str, list[int]] = {"result": [], "verdict": [], "serve": []}
    sizes: list[int] = []
    for i in range(12):
        late = result_v2(req.message_id, bytes(payout.pubkey()), price=1_000 + i)
        r_env = result_env(chain, late, nonce=100 + i)
        v_env = verdict_env(chain, late, r_env.message_id, submitted_at=NOW + i)
        s_env = verdict_env(chain, result, result_id, submitted_at=NOW + 10 + i)
        s_accounts = closed_serve_verdict_accounts(chain.program_id, s_env)
        for name, e, accounts in (("result", r_env, tomb), ("verdict", v_env, tomb), ("serve", s_env, s_accounts)):
            meta = delivered(chain, e, accounts)
            assert ignored(meta, TASK_CLOSED if name != "serve" else "its serve account was closed (CloseServe)")
            cus[name].append(meta.compute_units_consumed())
            sizes.append(_deliver_size(chain, e, accounts))
    assert max(max(v) for v in cus.values()) <= 100_000 < CU_LIMIT
    assert max(sizes) <= PACKET_DATA_SIZE
    with capsys.disabled():
        print("\nno-op late deliveries over 12 messages each: " + ", ".join(
            f"{name} {min(v):,}-{max(v):,} CU" for name, v in cus.items()) + f"; {min(sizes)}-{max(sizes)} bytes")
