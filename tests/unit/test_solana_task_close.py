"""CloseTask (42) / CloseServe (43) on the Tessera Solana program in LiteSVM (issue 15 item 4: task and
serve accounts' rent comes back once settled), with every refusal performed as an attack: close before
settlement, by a stranger before the retention period, with a credit unwithdrawn, lamports sent to
another account than the payer, a re-request with the closed task nonce, a re-claim of a closed
request, and results / verdicts delivered again after the close (they pay nothing). Late deliveries to a
closed record (no-ops) and the attacks on them: tests/unit/test_solana_task_late_delivery.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from solders.instruction import AccountMeta, Instruction
from solders.pubkey import Pubkey

from adapters.solana.program import (
    RECEIPT_STATUS_SERVE_CLOSED,
    SERVE_LEN,
    TASK_RETENTION_SECONDS,
    TASK_TOMBSTONE_LEN,
    TASK_V2_LEN,
    DeliveryReceipt,
    ProgramErrorCode,
    ServeState,
    TaskStateV2,
    board_delivery_accounts,
    close_serve_ix,
    close_task_ix,
    closed_serve_verdict_accounts,
    expire_claim_ix,
    receipt_address,
    reclaim_v2_ix,
    release_bond_ix,
    serve_address,
    withdraw_credit_ix,
)
from adapters.solana.taskboard import SolanaTaskBoardV2
from relay.config import SolanaChain
from relay.envelope import Envelope
from relay.protocol import MessageKind
from tests.support.solana import DOMAIN, Chain, custom_error, funded
from tests.unit.test_sbpf_v3 import FEATURE_SETS, deploy, v3_program
from tests.unit.test_sbpf_v3 import NOW as SBPF_NOW
from tests.unit.test_solana_taskboard_v2 import (  # noqa: F401 - board, opened, served: fixtures
    NOW,
    SETTLEMENT_GRACE_SECONDS,
    _answered,
    balance,
    board,
    claim,
    claim_ix,
    deliver,
    delivered,
    incoming,
    logged,
    opened,
    refused_delivery,
    request,
    request_ix,
    request_v2,
    result_accounts,
    result_env,
    result_v2,
    served,
    serve_of,
    serving_accounts,
    serving_verdict,
    task_of,
    verdict_accounts,
    verdict_env,
)

E = ProgramErrorCode


def _completed(opened):
    """The requester-side task of `opened`, settled by a result and a valid verdict."""
    chain, task, req, requester = opened
    payout = funded(chain, 10**8)
    result = result_v2(req.message_id, bytes(payout.pubkey()))
    r_env = result_env(chain, result)
    delivered(chain, r_env, result_accounts(chain, r_env, task, requester))
    v_env = verdict_env(chain, result, r_env.message_id)
    assert logged(delivered(chain, v_env, verdict_accounts(chain, v_env, task, requester)), "task completed")
    return chain, task, req, requester, payout, result, r_env


def _tombstone(chain: Chain, address: Pubkey, request_id: bytes) -> bool:
    """CloseTask's tombstone of `request_id` at `address`: the magic and the request id, at its rent minimum."""
    account = chain.svm.get_account(address)
    return (account is not None and account.owner == chain.program_id
            and bytes(account.data) == b"TESSTOMB" + request_id
            and account.lamports == chain.svm.minimum_balance_for_rent_exemption(TASK_TOMBSTONE_LEN))


def _kept(chain: Chain) -> int:
    """The lamports a tombstone keeps (its rent-exempt minimum)."""
    return chain.svm.minimum_balance_for_rent_exemption(TASK_TOMBSTONE_LEN)


# ==== requester side: CloseTask ==================================================================


def test_close_task_before_settlement_is_refused(opened) -> None:
    chain, task, _, requester = opened
    chain.fails(E.TASK_NOT_SETTLED, close_task_ix(chain.program_id, requester.pubkey(), task, requester.pubkey()),
                signers=(requester,))
    chain.set_time(NOW + 10**7)  # however late: an open task holds the escrow
    chain.fails(E.TASK_NOT_SETTLED, close_task_ix(chain.program_id, chain.payer.pubkey(), task, requester.pubkey()))


def test_close_task_returns_the_rent_to_the_requester_and_replay_survives(opened, capsys) -> None:
    chain, task, req, requester, payout, result, r_env = _completed(opened)
    stranger = funded(chain)
    # A stranger before the retention period, whatever recipient it names.
    chain.fails(E.CLOSE_TOO_EARLY, close_task_ix(chain.program_id, stranger.pubkey(), task, requester.pubkey()),
                signers=(stranger,))
    # The requester closing, but naming another account for the lamports (or none that can take them).
    chain.fails(E.RECIPIENT_WRONG, close_task_ix(chain.program_id, requester.pubkey(), task, stranger.pubkey()),
                signers=(requester,))
    ro = close_task_ix(chain.program_id, requester.pubkey(), task, requester.pubkey())
    chain.fails(E.ACCOUNT_NOT_WRITABLE, Instruction(ro.program_id, ro.data, [  # a read-only recipient
        ro.accounts[0], ro.accounts[1], AccountMeta(requester.pubkey(), False, False)]), signers=(requester,))
    held = balance(chain, task)
    assert held - chain.svm.minimum_balance_for_rent_exemption(TASK_V2_LEN) in (0, 1)
    before = balance(chain, requester.pubkey())
    meta = chain.ok(close_task_ix(chain.program_id, requester.pubkey(), task, requester.pubkey()),
                    signers=(requester,))
    assert logged(meta, "task closed")
    kept = _kept(chain)
    assert balance(chain, requester.pubkey()) == before + held - kept
    assert _tombstone(chain, task, req.message_id)
    with capsys.disabled():
        print(f"\nCloseTask {meta.compute_units_consumed()} CU; {held - kept:,} of {held:,} lamports back "
              f"({kept:,} stay in the {TASK_TOMBSTONE_LEN}-byte tombstone, "
              f"{kept - chain.svm.minimum_balance_for_rent_exemption(0):,} more than a 0-byte one)")
    # Replay: the same (requester, task_nonce) cannot request again.
    chain.fails(E.TASK_NONCE_USED, request_ix(chain, requester, request_v2().encode()), signers=(requester,))
    # The settled result and verdict delivered again: their receipts exist.
    v_env = verdict_env(chain, result, r_env.message_id)
    refused_payout = balance(chain, payout.pubkey())
    assert custom_error(deliver(chain, v_env, verdict_accounts(chain, v_env, task, requester))) == E.ALREADY_DELIVERED
    # Another verdict message on the same result (a new envelope), another result message: the
    # tombstone of their own request takes them as no-ops (the relayer's cached accounts, the task's
    # address first), paying nothing.
    again = verdict_env(chain, result, r_env.message_id, submitted_at=NOW + 11)
    assert logged(delivered(chain, again, verdict_accounts(chain, again, task, requester)),
                  "task message ignored: its task was closed (CloseTask)")
    other = result_env(chain, result, nonce=2)
    assert logged(delivered(chain, other, result_accounts(chain, other, task, requester)),
                  "task message ignored: its task was closed (CloseTask)")
    assert balance(chain, payout.pubkey()) == refused_payout
    assert _tombstone(chain, task, req.message_id)
    # Nothing else takes the tombstone for a task; closing twice is refused.
    chain.fails(E.TASK_NOT_FOUND, withdraw_credit_ix(chain.program_id, task, requester.pubkey()))
    chain.fails(E.TASK_NOT_FOUND, reclaim_v2_ix(chain.program_id, task, requester.pubkey()))
    chain.fails(E.TASK_NOT_FOUND, close_task_ix(chain.program_id, requester.pubkey(), task, requester.pubkey()),
                signers=(requester,))


def test_close_task_with_a_credit_unwithdrawn_is_refused(board: Chain) -> None:
    requester = funded(board)
    task, req, _ = request(board, requester, request_v2(max_fee=1_000))
    payout = Pubkey.new_unique()  # no account: the 600-lamport price is held as a credit
    result = result_v2(req.message_id, bytes(payout), price=600)
    r_env = result_env(board, result)
    delivered(board, r_env, result_accounts(board, r_env, task, requester))
    v_env = verdict_env(board, result, r_env.message_id)
    delivered(board, v_env, verdict_accounts(board, v_env, task, requester))
    assert task_of(board, task).payout_credit == 600
    close = close_task_ix(board.program_id, requester.pubkey(), task, requester.pubkey())
    board.fails(E.CREDITS_OUTSTANDING, close, signers=(requester,))
    board.set_time(NOW + TASK_RETENTION_SECONDS * 10)  # the retention period does not lift it
    board.fails(E.CREDITS_OUTSTANDING, close_task_ix(board.program_id, board.payer.pubkey(), task, requester.pubkey()))
    board.svm.airdrop(payout, 10**7)
    board.ok(withdraw_credit_ix(board.program_id, task, payout))
    assert balance(board, payout) == 10**7 + 600
    board.ok(close, signers=(requester,))
    assert _tombstone(board, task, req.message_id)


def test_a_stranger_closes_a_refunded_task_after_retention_and_the_rent_still_goes_to_the_requester(opened) -> None:
    chain, task, req, requester = opened
    settled_at = NOW + 601 + SETTLEMENT_GRACE_SECONDS
    chain.set_time(settled_at)
    chain.ok(reclaim_v2_ix(chain.program_id, task, requester.pubkey()))
    assert task_of(chain, task).state is TaskStateV2.REFUNDED
    stranger = funded(chain)
    chain.set_time(settled_at + TASK_RETENTION_SECONDS - 1)
    chain.fails(E.CLOSE_TOO_EARLY, close_task_ix(chain.program_id, stranger.pubkey(), task, requester.pubkey()),
                signers=(stranger,))
    chain.set_time(settled_at + TASK_RETENTION_SECONDS)
    for wrong in (stranger.pubkey(), chain.payer.pubkey(), Pubkey.new_unique()):
        chain.fails(E.RECIPIENT_WRONG, close_task_ix(chain.program_id, stranger.pubkey(), task, wrong),
                    signers=(stranger,))
    held, before = balance(chain, task), balance(chain, requester.pubkey())
    chain.ok(close_task_ix(chain.program_id, stranger.pubkey(), task, requester.pubkey()), signers=(stranger,))
    assert balance(chain, requester.pubkey()) == before + held - _kept(chain)
    assert _tombstone(chain, task, req.message_id)
    chain.fails(E.TASK_NONCE_USED, request_ix(chain, requester, request_v2(deadline=settled_at + 10**6).encode()),
                signers=(requester,))


# ==== serving side: CloseServe ===================================================================


def test_close_serve_before_settlement_is_refused(served) -> None:
    chain, env, refund = served
    worker = funded(chain)
    claim(chain, worker, env, refund)
    close = close_serve_ix(chain.program_id, worker.pubkey(), env.message_id, worker.pubkey())
    chain.fails(E.TASK_NOT_SETTLED, close, signers=(worker,))  # claimed: the bond is held
    chain.set_time(NOW + 10**6)
    chain.fails(E.TASK_NOT_SETTLED, close, signers=(worker,))  # an expired claim still holds the bond


def test_close_serve_while_answered_is_refused(served) -> None:
    chain, env, refund, worker, result, result_id = _answered(served)
    chain.fails(E.TASK_NOT_SETTLED, close_serve_ix(chain.program_id, worker.pubkey(), env.message_id,
                                                    worker.pubkey()), signers=(worker,))


def test_close_serve_returns_the_rent_to_the_first_claimant_and_replay_survives(served, capsys) -> None:
    chain, env, refund, worker, result, result_id = _answered(served)
    v_env = serving_verdict(chain, result, result_id)
    assert logged(delivered(chain, v_env, serving_accounts(chain, v_env, worker.pubkey(), refund.pubkey())),
                  "bond returned")
    serve = serve_address(chain.program_id, env.message_id)
    assert serve_of(chain, env.message_id).rent_payer == worker.pubkey()
    stranger = funded(chain)
    chain.fails(E.CLOSE_TOO_EARLY, close_serve_ix(chain.program_id, stranger.pubkey(), env.message_id,
                                                   worker.pubkey()), signers=(stranger,))
    for wrong in (stranger.pubkey(), refund.pubkey()):
        chain.fails(E.RECIPIENT_WRONG, close_serve_ix(chain.program_id, worker.pubkey(), env.message_id, wrong),
                    signers=(worker,))
    # Another delivery receipt in place of the request's.
    bad = close_serve_ix(chain.program_id, worker.pubkey(), env.message_id, worker.pubkey())
    chain.fails(E.REQUEST_RECEIPT_INVALID, Instruction(bad.program_id, bad.data, [
        *bad.accounts[:3], AccountMeta(receipt_address(chain.program_id, v_env.message_id)[0], False, True)]),
        signers=(worker,))
    held = balance(chain, serve)
    assert held - chain.svm.minimum_balance_for_rent_exemption(SERVE_LEN) in (0, 1)
    before = balance(chain, worker.pubkey())
    meta = chain.ok(close_serve_ix(chain.program_id, worker.pubkey(), env.message_id, worker.pubkey()),
                    signers=(worker,))
    assert logged(meta, "serve account closed")
    assert balance(chain, worker.pubkey()) == before + held  # every lamport: the account is gone
    assert chain.svm.get_account(serve) is None or balance(chain, serve) == 0
    receipt = DeliveryReceipt.decode(bytes(chain.svm.get_account(receipt_address(chain.program_id,
                                                                                 env.message_id)[0]).data))
    assert receipt.status == RECEIPT_STATUS_SERVE_CLOSED
    with capsys.disabled():
        print(f"\nCloseServe {meta.compute_units_consumed()} CU; {held:,} lamports back (all of them)")
    # Replay: nobody can claim the request again (it would re-create the account and re-open it).
    rival = funded(chain)
    chain.fails(E.REQUEST_CLOSED, claim_ix(chain, rival, env, refund.pubkey()), signers=(rival,))
    chain.fails(E.REQUEST_CLOSED, claim_ix(chain, worker, env, refund.pubkey()), signers=(worker,))
    # The settled verdict again: its receipt exists. A new verdict envelope on that result with the
    # live layout (claimant where the request's receipt goes): refused; with the request's receipt
    # (marked closed): a no-op. The bond is not paid twice.
    accounts = serving_accounts(chain, v_env, worker.pubkey(), refund.pubkey())
    assert custom_error(deliver(chain, v_env, accounts)) == E.ALREADY_DELIVERED
    worker_before = balance(chain, worker.pubkey())
    again = Envelope(MessageKind.PROOF_ATTESTATION, 1, v_env.src_domain, v_env.src_sender, v_env.dst_domain,
                     v_env.dst_receiver, v_env.payload)
    refused_delivery(chain, again, serving_accounts(chain, again, worker.pubkey(), refund.pubkey()),
                     E.TASK_ACCOUNT_WRONG)
    assert logged(delivered(chain, again, closed_serve_verdict_accounts(chain.program_id, again)),
                  "task message ignored: its serve account was closed (CloseServe)")
    assert balance(chain, worker.pubkey()) == worker_before
    chain.fails(E.SERVE_WRONG_ADDRESS, release_bond_ix(chain.program_id, env.message_id, worker.pubkey()))
    chain.fails(E.SERVE_WRONG_ADDRESS, close_serve_ix(chain.program_id, worker.pubkey(), env.message_id,
                                                       worker.pubkey()), signers=(worker,))


def test_an_unclaimed_serve_account_past_its_deadline_closes_once_its_credit_is_withdrawn(board: Chain) -> None:
    """Open past the deadline (nobody can claim) is settled; a forfeited bond refund_to could not take
    yet (a credit) blocks the close until withdrawn; a stranger waits out the retention period after
    the deadline, and the rent goes to the first claimant whatever account the stranger names."""
    refund_to = Pubkey.new_unique()  # no account: a 600-lamport forfeit is held as a credit
    env = incoming(board, request_v2(max_fee=10**15, bond=600, refund_to=bytes(refund_to)))
    delivered(board, env, board_delivery_accounts(board.program_id, env))
    first = funded(board)
    board.ok(claim_ix(board, first, env, refund_to), signers=(first,))
    board.set_time(NOW + 31)
    board.ok(expire_claim_ix(board.program_id, env.message_id, refund_to))
    s = serve_of(board, env.message_id)
    assert s.state is ServeState.OPEN and s.refund_credit == 600 and s.rent_payer == first.pubkey()
    stranger = funded(board)
    close = close_serve_ix(board.program_id, stranger.pubkey(), env.message_id, first.pubkey())
    board.fails(E.TASK_NOT_SETTLED, close, signers=(stranger,))  # still claimable before the deadline
    board.fails(E.TASK_NOT_SETTLED, close_serve_ix(board.program_id, first.pubkey(), env.message_id, first.pubkey()),
                signers=(first,))
    board.set_time(NOW + 601)
    board.fails(E.CREDITS_OUTSTANDING, close, signers=(stranger,))
    board.svm.airdrop(refund_to, 10**7)
    board.ok(withdraw_credit_ix(board.program_id, serve_address(board.program_id, env.message_id), refund_to))
    board.fails(E.CLOSE_TOO_EARLY, close, signers=(stranger,))
    board.set_time(NOW + 600 + TASK_RETENTION_SECONDS)
    board.fails(E.RECIPIENT_WRONG, close_serve_ix(board.program_id, stranger.pubkey(), env.message_id,
                                                   stranger.pubkey()), signers=(stranger,))
    held, before = balance(board, serve_address(board.program_id, env.message_id)), balance(board, first.pubkey())
    board.ok(close, signers=(stranger,))
    assert balance(board, first.pubkey()) == before + held
    board.fails(E.REQUEST_CLOSED, claim_ix(board, stranger, env, refund_to), signers=(stranger,))


def test_close_needs_a_signer(opened) -> None:
    chain, task, req, requester, *_ = _completed(opened)
    ix = close_task_ix(chain.program_id, requester.pubkey(), task, requester.pubkey())
    unsigned = Instruction(ix.program_id, ix.data, [AccountMeta(requester.pubkey(), False, True), *ix.accounts[1:]])
    chain.fails(E.ACCOUNT_NOT_SIGNER, unsigned)
    assert task_of(chain, task).state is TaskStateV2.COMPLETED


# ==== the tombstone's resize under every supported feature set ===================================


@pytest.mark.parametrize("features", list(FEATURE_SETS))
def test_close_task_shrinks_to_a_tombstone_under_each_supported_feature_set(features: str) -> None:
    """CloseTask resizes the task account to its 40-byte tombstone through the serialized input; the runtimes of
    contracts/solana/README.md "Supported runtimes" (LiteSVM default, mainnet + SIMD-0500, every
    feature but SIMD-0460) all take it."""
    program = deploy(FEATURE_SETS[features](), v3_program()).setup()
    chain = Chain(program.svm, program.payer, program.program_id)
    requester = funded(chain)
    task, req, _ = request(chain, requester, request_v2(deadline=SBPF_NOW + 600), task_nonce=3)
    chain.set_time(SBPF_NOW + 601 + SETTLEMENT_GRACE_SECONDS)
    chain.ok(reclaim_v2_ix(chain.program_id, task, requester.pubkey()))
    chain.ok(close_task_ix(chain.program_id, requester.pubkey(), task, requester.pubkey()), signers=(requester,))
    assert _tombstone(chain, task, req.message_id)
    chain.fails(E.TASK_NONCE_USED, request_ix(chain, requester, request_v2(deadline=SBPF_NOW + 10**5).encode(),
                                              task_nonce=3), signers=(requester,))


# ==== SolanaTaskBoardV2.close_settled, against LiteSVM ===========================================


def _board_client(chain: Chain, signer) -> SolanaTaskBoardV2:
    """The SDK's board with its chain reads and writes served by LiteSVM (no RPC node)."""
    config = SolanaChain(kind="solana", domain=DOMAIN, rpc_urls=["http://127.0.0.1:1"], program_id=str(chain.program_id))
    client = SolanaTaskBoardV2("solana", config, signer)

    async def account_data(address: Pubkey) -> bytes | None:
        account = chain.svm.get_account(address)
        return bytes(account.data) if account is not None and account.owner == chain.program_id else None

    async def chain_time() -> int:
        return chain.svm.get_clock().unix_timestamp

    async def call(method: str, fn):
        assert method == "getProgramAccounts", method
        return SimpleNamespace(value=[])  # (the closed task is no longer a 948-byte task account)

    async def transact(instructions, cu_limit, action, refusal) -> str:
        return str(chain.ok(*instructions, signers=(signer,)).signature())

    client._account_data = account_data  # type: ignore[method-assign]
    client.chain_time = chain_time  # type: ignore[method-assign]
    client.rpc.call = call  # type: ignore[method-assign]
    client._transact = transact  # type: ignore[method-assign]
    return client


async def test_close_settled_closes_what_the_signer_may_close(opened, served) -> None:
    chain, task, req, requester, *_ = _completed(opened)
    stranger_board = _board_client(chain, funded(chain))
    stranger_board._tasks[req.message_id] = task
    assert await stranger_board.close_settled(req.message_id) == []  # retention running: skipped
    mine = _board_client(chain, requester)
    mine._tasks[req.message_id] = task
    before, held = balance(chain, requester.pubkey()), balance(chain, task)
    assert len(await mine.close_settled(req.message_id)) == 1
    assert _tombstone(chain, task, req.message_id)
    assert balance(chain, requester.pubkey()) == before + held - _kept(chain)
    assert await mine.close_settled(req.message_id) == []  # nothing left to close
    assert (await mine.task_status(req.message_id)).state.name == "NONE"

    _, env, refund, worker, result, result_id = _answered(served)
    worker_board = _board_client(chain, worker)
    assert await worker_board.close_settled(env.message_id) == []  # answered: not settled
    v_env = serving_verdict(chain, result, result_id)
    delivered(chain, v_env, serving_accounts(chain, v_env, worker.pubkey(), refund.pubkey()))
    held = balance(chain, serve_address(chain.program_id, env.message_id))
    before = balance(chain, worker.pubkey())
    assert len(await worker_board.close_settled(env.message_id, serving_only=True)) == 1
    assert balance(chain, worker.pubkey()) == before + held
    assert await worker_board.serve_account(env.message_id) is None
    # Closed, the request reads as closed (the receipt's mark), not as open for a new claim.
    closed = await worker_board.claim_status(env.message_id)
    assert closed.state.name == "CLOSED" and closed.claims == 0 and closed.claimant is None
