"""The task board of the Tessera Solana program (RequestTask, SubmitResult, Reclaim, Deliver to the
board) in LiteSVM: the real Agave runtime, the committed tessera.so, deliveries signed by a committee
key — the Solana twin of contracts/evm/test/TaskBoard.t.sol."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.transaction_metadata import FailedTransactionMetadata, TransactionMetadata

from adapters.solana.program import (
    OutboxState,
    ProgramErrorCode,
    deliver_ix,
    init_gateway_ix,
    outbox_address,
    receipt_address,
    sent_envelopes_of,
)
from adapters.solana.program import answered_address, board_delivery_accounts, task_address, taskboard_address
from adapters.solana.taskboard import (
    ANSWERED_LEN,
    TASK_LEN,
    AnsweredAccount,
    TaskAccount,
    reclaim_ix,
    request_task_ix,
    submit_result_ix,
)
from relay.envelope import Envelope, keccak256
from relay.protocol import COMMITTEE_DOMAIN, MessageKind
from relay.interfaces import TaskState
from relay.tasks.payloads import AttestationMethod, ProofAttestation, TaskRequest, TaskResult
from tests.support.solana import ALICE, DOMAIN, Chain, custom_error, funded

OTHER_DOMAIN = 31337  # the chain on the other side (an EVM chain in production)
WORKER_BOARD = b"\x00" * 12 + b"\xb0" * 20  # the TaskBoard contract there
REQUESTER_BOARD = b"\x00" * 12 + b"\xa0" * 20
NOW = 1_700_000_000  # the chain fixture's clock
ESCROW = 5_000_000  # lamports
WORKER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


@pytest.fixture
def board(committee: Chain) -> Chain:
    committee.ok(init_gateway_ix(committee.program_id, committee.payer.pubkey()))
    return committee


def balance(chain: Chain, key: Pubkey) -> int:
    account = chain.svm.get_account(key)
    return 0 if account is None else account.lamports


def next_nonce(chain: Chain) -> int:
    return OutboxState.decode(bytes(chain.svm.get_account(outbox_address(chain.program_id)[0]).data)).next_nonce


def task_request(executor: str = "sentiment", max_fee: int = ESCROW, deadline: int = NOW + 600,
                 data: bytes = b"What a lovely day") -> TaskRequest:
    return TaskRequest(executor, max_fee, deadline, input=data)


def request_envelope(chain: Chain, payload: bytes, nonce: int | None = None) -> Envelope:
    return Envelope(kind=MessageKind.TASK_REQUEST, nonce=next_nonce(chain) if nonce is None else nonce,
                    src_domain=DOMAIN, src_sender=bytes(taskboard_address(chain.program_id)), dst_domain=OTHER_DOMAIN,
                    dst_receiver=WORKER_BOARD, payload=payload)


def request_ix(chain: Chain, requester: Keypair, payload: bytes, request_id: bytes | None = None) -> Instruction:
    request_id = request_id or request_envelope(chain, payload).message_id
    return request_task_ix(chain.program_id, requester.pubkey(), request_id=request_id, dst_domain=OTHER_DOMAIN,
                           worker_board=WORKER_BOARD, payload=payload)


def request(chain: Chain, requester: Keypair, req: TaskRequest | None = None) -> tuple[Envelope, TransactionMetadata]:
    payload = (req or task_request()).encode()
    env = request_envelope(chain, payload)
    return env, chain.ok(request_ix(chain, requester, payload), signers=(requester,))


def task(chain: Chain, request_id: bytes) -> TaskAccount:
    account = chain.svm.get_account(task_address(chain.program_id, request_id))
    assert account is not None and account.owner == chain.program_id
    return TaskAccount.decode(bytes(account.data))


def board_envelope(chain: Chain, kind: int, payload: bytes, *, src_domain: int = OTHER_DOMAIN,
                   src_sender: bytes = WORKER_BOARD, nonce: int = 1) -> Envelope:
    return Envelope(kind=kind, nonce=nonce, src_domain=src_domain, src_sender=src_sender, dst_domain=DOMAIN,
                    dst_receiver=bytes(taskboard_address(chain.program_id)), payload=payload)


def deliver_to_board(chain: Chain, env: Envelope, extra: list[AccountMeta] | None = None):
    raw = env.encode()
    ix = deliver_ix(chain.program_id, chain.payer.pubkey(), ALICE.attest(raw, 1), raw)
    extra = board_delivery_accounts(chain.program_id, env) if extra is None else extra
    return chain.send(Instruction(ix.program_id, ix.data, [*ix.accounts, *extra]))


def delivered(chain: Chain, env: Envelope) -> TransactionMetadata:
    result = deliver_to_board(chain, env)
    assert isinstance(result, TransactionMetadata), f"{result.err()}\n" + "\n".join(result.meta().logs())
    assert chain.svm.get_account(receipt_address(chain.program_id, env.message_id)[0]) is not None
    return result


def result_for(request_id: bytes, payout: Pubkey, executor: str = "sentiment", output: bytes = b'{"label":"positive"}'
               ) -> TaskResult:
    return TaskResult.signed(WORKER_KEY, request_id=request_id, executor=executor, output=output, payout=bytes(payout))


def ignored(meta: TransactionMetadata, reason: str) -> bool:
    return f"Program log: tessera: task message ignored: {reason}" in meta.logs()


# --- RequestTask ---------------------------------------------------------------------------------


def test_request_creates_the_task_with_escrow_and_logs_the_envelope(board: Chain) -> None:
    requester = funded(board)
    before = balance(board, requester.pubkey())
    env, meta = request(board, requester)
    assert sent_envelopes_of(meta.logs(), board.program_id) == [env.encode()]  # what SolanaAdapter.watch reads
    assert bytes(meta.return_data().data) == env.message_id + (0).to_bytes(8, "little")
    assert next_nonce(board) == 1
    address = task_address(board.program_id, env.message_id)
    account = board.svm.get_account(address)
    rent = board.svm.minimum_balance_for_rent_exemption(TASK_LEN)
    assert len(account.data) == TASK_LEN and rent <= account.lamports - ESCROW <= rent + 1
    assert before - balance(board, requester.pubkey()) >= ESCROW + rent
    got = task(board, env.message_id)
    assert (got.state, got.requester, got.deadline, got.escrow, got.executor) == (
        TaskState.OPEN, requester.pubkey(), NOW + 600, ESCROW, "sentiment")
    assert (got.dst_domain, got.worker_board, got.request_id, got.created_at) == (
        OTHER_DOMAIN, WORKER_BOARD, env.message_id, NOW)
    status = got.status()
    assert status.state is TaskState.OPEN and status.result_id is None
    print(f"RequestTask: {meta.compute_units_consumed()} CU")


def test_request_by_reference_and_a_zero_fee(board: Chain) -> None:
    requester = funded(board)
    req = TaskRequest.by_reference("embed", 0, NOW + 60, b"big input", "ipfs://bafy/input.bin")
    env, _ = request(board, requester, req)
    got = task(board, env.message_id)
    assert got.escrow == 0 and got.executor == "embed"


def test_request_at_a_stale_nonce_is_refused_as_a_wrong_task_address(board: Chain) -> None:
    requester = funded(board)
    payload = task_request().encode()
    stale = request_envelope(board, payload, nonce=0).message_id
    request(board, requester)  # takes nonce 0
    board.fails(ProgramErrorCode.TASK_WRONG_ADDRESS, request_ix(board, requester, payload, stale), signers=(requester,))
    assert next_nonce(board) == 1  # the failed transaction sent nothing


def test_a_requester_short_of_lamports_is_refused_by_name(board: Chain) -> None:
    poor = funded(board, ESCROW)  # the escrow, but not the task account's rent on top
    board.fails(ProgramErrorCode.INSUFFICIENT_LAMPORTS, request_ix(board, poor, task_request().encode()),
                signers=(poor,))
    assert next_nonce(board) == 0


def _bad_request(mutate) -> bytes:
    raw = bytearray(task_request().encode())
    mutate(raw)
    return bytes(raw)


def _set(raw: bytearray, at: int, value: bytes) -> None:
    raw[at:at + len(value)] = value


def _by_reference(uri: bytes) -> bytes:
    head = TaskRequest.by_reference("echo", 1, NOW + 60, b"x", "https://a").encode()[:73]
    return head + len(uri).to_bytes(2, "big") + uri


@pytest.mark.parametrize("payload, code", [
    (_bad_request(lambda r: _set(r, 0, b"senti ment\x00")), ProgramErrorCode.TASK_EXECUTOR_INVALID),
    (_bad_request(lambda r: _set(r, 0, b"\x00" * 16)), ProgramErrorCode.TASK_EXECUTOR_INVALID),
    (_bad_request(lambda r: _set(r, 0, b"ab\x00c")), ProgramErrorCode.TASK_EXECUTOR_INVALID),
    (_bad_request(lambda r: _set(r, 16, b"\x01")), ProgramErrorCode.TASK_FEE_TOO_LARGE),
    (task_request(deadline=NOW).encode(), ProgramErrorCode.TASK_DEADLINE_PASSED),
    (_bad_request(lambda r: _set(r, 32, b"\x80")), ProgramErrorCode.TASK_PAYLOAD_MALFORMED),
    (task_request().encode() + b"\x00", ProgramErrorCode.TASK_PAYLOAD_MALFORMED),
    (task_request().encode()[:-1], ProgramErrorCode.TASK_PAYLOAD_MALFORMED),
    (task_request().encode()[:42], ProgramErrorCode.TASK_PAYLOAD_MALFORMED),
    (_bad_request(lambda r: _set(r, 40, b"\x02")), ProgramErrorCode.TASK_PAYLOAD_MALFORMED),
    (_by_reference(b"ftp://x"), ProgramErrorCode.TASK_URI_INVALID),
    (_by_reference(b"https://"), ProgramErrorCode.TASK_URI_INVALID),
    (_by_reference(b"https://a b"), ProgramErrorCode.TASK_URI_INVALID),
    (_by_reference(b"ipfs://a\x7f"), ProgramErrorCode.TASK_URI_INVALID),
    (_by_reference(b"ar://" + b"a" * 252), ProgramErrorCode.TASK_URI_INVALID),
])
def test_malformed_requests_are_refused_with_their_error(board: Chain, payload: bytes, code: ProgramErrorCode) -> None:
    requester = funded(board)
    board.fails(code, request_ix(board, requester, payload), signers=(requester,))
    assert next_nonce(board) == 0


# --- delivery of results and attestations to the requester's board ----------------------------


@pytest.fixture
def opened(board: Chain) -> tuple[Chain, Envelope, Keypair]:
    requester = funded(board)
    env, _ = request(board, requester)
    return board, env, requester


def test_result_then_attestation_pays_the_escrow_to_the_payout_account(opened) -> None:
    chain, req, _ = opened
    payout = funded(chain, 10**8)
    result = result_for(req.message_id, payout.pubkey())
    result_env = board_envelope(chain, MessageKind.TASK_RESULT, result.encode())
    meta = delivered(chain, result_env)
    assert "Program log: tessera: task result recorded" in meta.logs()
    print(f"Deliver TASK_RESULT to the board: {meta.compute_units_consumed()} CU")
    got = task(chain, req.message_id)
    assert got.state is TaskState.RESULT_RECEIVED
    assert (got.result_id, got.output_hash, got.worker, got.payout) == (
        result_env.message_id, result.output_hash, result.worker, bytes(payout.pubkey()))

    task_before = balance(chain, task_address(chain.program_id, req.message_id))
    payout_before = balance(chain, payout.pubkey())
    attestation = ProofAttestation.for_result(result, result_env.message_id, AttestationMethod.REEXECUTION, NOW)
    att_env = board_envelope(chain, MessageKind.PROOF_ATTESTATION, attestation.encode(),
                             src_domain=COMMITTEE_DOMAIN, src_sender=bytes(32))
    meta = delivered(chain, att_env)
    assert "Program log: tessera: task completed" in meta.logs()
    print(f"Deliver PROOF_ATTESTATION to the board: {meta.compute_units_consumed()} CU")
    assert balance(chain, payout.pubkey()) == payout_before + ESCROW
    assert balance(chain, task_address(chain.program_id, req.message_id)) == task_before - ESCROW
    assert task(chain, req.message_id).state is TaskState.COMPLETED

    # A second attestation (another message id) changes nothing.
    again = board_envelope(chain, MessageKind.PROOF_ATTESTATION, attestation.encode(), src_domain=COMMITTEE_DOMAIN,
                           src_sender=bytes(32), nonce=2)
    assert ignored(delivered(chain, again), "task already completed or refunded")
    assert balance(chain, payout.pubkey()) == payout_before + ESCROW


def test_a_result_from_another_sender_or_domain_is_ignored(opened) -> None:
    chain, req, _ = opened
    result = result_for(req.message_id, Pubkey.new_unique())
    wrong_sender = board_envelope(chain, MessageKind.TASK_RESULT, result.encode(), src_sender=REQUESTER_BOARD)
    assert ignored(delivered(chain, wrong_sender), "result not from the worker board the request was sent to")
    wrong_domain = board_envelope(chain, MessageKind.TASK_RESULT, result.encode(), src_domain=OTHER_DOMAIN + 1)
    assert ignored(delivered(chain, wrong_domain), "result not from the worker board the request was sent to")
    assert task(chain, req.message_id).state is TaskState.OPEN


def test_results_that_cannot_count_are_ignored_and_the_delivery_still_succeeds(opened) -> None:
    chain, req, _ = opened
    payout = Pubkey.new_unique()
    other_executor = result_for(req.message_id, payout, executor="echo")
    assert ignored(delivered(chain, board_envelope(chain, MessageKind.TASK_RESULT, other_executor.encode(), nonce=1)),
                   "result names another executor than the request")
    garbage = req.message_id + b"\x01" * 40
    assert ignored(delivered(chain, board_envelope(chain, MessageKind.TASK_RESULT, garbage, nonce=2)),
                   "malformed TASK_RESULT")
    short = board_envelope(chain, MessageKind.TASK_RESULT, b"short", nonce=3)
    assert ignored(delivered(chain, short), "malformed TASK_RESULT")
    unknown = result_for(keccak256(b"no such request"), payout)
    assert ignored(delivered(chain, board_envelope(chain, MessageKind.TASK_RESULT, unknown.encode(), nonce=4)),
                   "result for an unknown request")
    data = board_envelope(chain, MessageKind.DATA, b"hello board", nonce=5)
    assert ignored(delivered(chain, data), "kind not handled by the task board")
    chain.set_time(NOW + 601)
    late = result_for(req.message_id, payout)
    assert ignored(delivered(chain, board_envelope(chain, MessageKind.TASK_RESULT, late.encode(), nonce=6)),
                   "result after the deadline")
    assert task(chain, req.message_id).state is TaskState.OPEN


@pytest.fixture
def answered_task(opened):
    chain, req, requester = opened
    payout = funded(chain, 10**8)
    result = result_for(req.message_id, payout.pubkey())
    result_env = board_envelope(chain, MessageKind.TASK_RESULT, result.encode())
    delivered(chain, result_env)
    return chain, req, requester, payout, result, result_env


def _attestation_env(chain: Chain, attestation: ProofAttestation, **kw) -> Envelope:
    fields = dict(src_domain=COMMITTEE_DOMAIN, src_sender=bytes(32), nonce=9)
    fields.update(kw)
    return board_envelope(chain, MessageKind.PROOF_ATTESTATION, attestation.encode(), **fields)


def test_an_attestation_not_from_the_committee_is_ignored(answered_task) -> None:
    chain, req, _, payout, result, result_env = answered_task
    attestation = ProofAttestation.for_result(result, result_env.message_id, AttestationMethod.SIGNATURE_ONLY, NOW)
    before = balance(chain, payout.pubkey())
    assert ignored(delivered(chain, _attestation_env(chain, attestation, src_domain=OTHER_DOMAIN)),
                   "attestation not from the committee")
    assert ignored(delivered(chain, _attestation_env(chain, attestation, src_sender=b"\x01" * 32)),
                   "attestation not from the committee")
    assert balance(chain, payout.pubkey()) == before
    assert task(chain, req.message_id).state is TaskState.RESULT_RECEIVED


def test_a_mismatching_attestation_is_ignored(answered_task) -> None:
    chain, req, _, payout, result, result_env = answered_task
    good = ProofAttestation.for_result(result, result_env.message_id, AttestationMethod.REEXECUTION, NOW)
    for nonce, field in enumerate(("result_id", "output_hash", "worker")):
        wrong = ProofAttestation(**{**{f: getattr(good, f) for f in good.__slots__}, field: b"\x07" * 32})
        assert ignored(delivered(chain, _attestation_env(chain, wrong, nonce=10 + nonce)),
                       "attestation does not match the recorded result")
    assert task(chain, req.message_id).state is TaskState.RESULT_RECEIVED


def test_an_attestation_before_any_result_is_ignored(opened) -> None:
    chain, req, _ = opened
    payout = Pubkey.new_unique()
    result = result_for(req.message_id, payout)
    attestation = ProofAttestation.for_result(result, keccak256(b"result"), AttestationMethod.REEXECUTION, NOW)
    assert ignored(delivered(chain, _attestation_env(chain, attestation)), "attestation before any result")
    assert task(chain, req.message_id).state is TaskState.OPEN


def test_a_payout_account_left_below_rent_exemption_is_not_paid_and_the_requester_reclaims(board: Chain) -> None:
    requester = funded(board)
    env, _ = request(board, requester, task_request(max_fee=1000))
    payout = Pubkey.new_unique()  # no account: 1,000 lamports would leave it rent-paying
    result = result_for(env.message_id, payout)
    result_env = board_envelope(board, MessageKind.TASK_RESULT, result.encode())
    delivered(board, result_env)
    attestation = ProofAttestation.for_result(result, result_env.message_id, AttestationMethod.REEXECUTION, NOW)
    assert ignored(delivered(board, _attestation_env(board, attestation)),
                   "payout account would stay below the rent-exempt minimum; fund it before the attestation lands")
    assert balance(board, payout) == 0
    board.set_time(NOW + 600 + 301)
    board.ok(reclaim_ix(board.program_id, requester.pubkey(), env.message_id))
    assert task(board, env.message_id).state is TaskState.REFUNDED


def test_deliveries_to_the_board_without_their_accounts_fail_distinctly(answered_task) -> None:
    chain, req, _, payout, result, result_env = answered_task
    attestation = ProofAttestation.for_result(result, result_env.message_id, AttestationMethod.REEXECUTION, NOW)
    env = _attestation_env(chain, attestation)
    metas = board_delivery_accounts(chain.program_id, env)
    assert len(metas) == 3

    def fails(code: ProgramErrorCode, extra: list[AccountMeta]) -> None:
        result = deliver_to_board(chain, env, extra)
        assert isinstance(result, FailedTransactionMetadata) and custom_error(result) == code, result

    fails(ProgramErrorCode.BOARD_ACCOUNTS_MISSING, [])
    fails(ProgramErrorCode.BOARD_ACCOUNTS_MISSING, metas[:2])
    fails(ProgramErrorCode.BOARD_WRONG_ADDRESS, [AccountMeta(Pubkey.new_unique(), False, False), *metas[1:]])
    fails(ProgramErrorCode.TASK_WRONG_ADDRESS, [metas[0], AccountMeta(Pubkey.new_unique(), False, True), metas[2]])
    fails(ProgramErrorCode.PAYOUT_ACCOUNT_WRONG, [*metas[:2], AccountMeta(Pubkey.new_unique(), False, True)])
    fails(ProgramErrorCode.ACCOUNT_NOT_WRITABLE, [metas[0], AccountMeta(metas[1].pubkey, False, False), metas[2]])
    assert chain.svm.get_account(receipt_address(chain.program_id, env.message_id)[0]) is None  # retryable
    delivered(chain, env)
    assert task(chain, req.message_id).state is TaskState.COMPLETED


# --- Reclaim ---------------------------------------------------------------------------------------


def test_reclaim_only_after_the_deadline_and_only_once(opened) -> None:
    chain, req, requester = opened
    ix = reclaim_ix(chain.program_id, requester.pubkey(), req.message_id)
    chain.fails(ProgramErrorCode.DEADLINE_NOT_PASSED, ix)
    chain.set_time(NOW + 600)
    chain.fails(ProgramErrorCode.DEADLINE_NOT_PASSED, ix)
    chain.fails(ProgramErrorCode.NOT_REQUESTER, reclaim_ix(chain.program_id, Pubkey.new_unique(), req.message_id))
    chain.set_time(NOW + 601)
    before = balance(chain, requester.pubkey())
    meta = chain.ok(ix)  # anyone may call it (the payer here); the money goes to the requester
    assert "Program log: tessera: task refunded" in meta.logs()
    assert balance(chain, requester.pubkey()) == before + ESCROW
    got = task(chain, req.message_id)
    assert got.state is TaskState.REFUNDED and got.updated_at == NOW + 601
    chain.fails(ProgramErrorCode.TASK_NOT_REFUNDABLE, ix)
    # A result arriving after the refund finds the task closed.
    late = board_envelope(chain, MessageKind.TASK_RESULT, result_for(req.message_id, Pubkey.new_unique()).encode())
    assert ignored(delivered(chain, late), "request already has a result or is closed")


def test_reclaim_waits_the_grace_period_once_a_result_was_recorded(answered_task) -> None:
    chain, req, requester, *_ = answered_task
    ix = reclaim_ix(chain.program_id, requester.pubkey(), req.message_id)
    chain.set_time(NOW + 601)
    chain.fails(ProgramErrorCode.DEADLINE_NOT_PASSED, ix)
    chain.set_time(NOW + 600 + 301)
    chain.ok(ix)
    assert task(chain, req.message_id).state is TaskState.REFUNDED


def test_reclaim_refuses_an_account_that_is_not_a_task(board: Chain) -> None:
    board.fails(ProgramErrorCode.TASK_NOT_FOUND, reclaim_ix(board.program_id, board.payer.pubkey(), bytes(32)))
    fake = Instruction(board.program_id, bytes([34]), [AccountMeta(board.payer.pubkey(), False, True),
                                                       AccountMeta(outbox_address(board.program_id)[0], False, True)])
    board.fails(ProgramErrorCode.TASK_NOT_FOUND, fake)


# --- serving side: SubmitResult -----------------------------------------------------------------


@pytest.fixture
def served(board: Chain) -> tuple[Chain, Envelope]:
    """A TASK_REQUEST from the other chain's board delivered to this board."""
    payload = task_request().encode()
    env = Envelope(kind=MessageKind.TASK_REQUEST, nonce=4, src_domain=OTHER_DOMAIN, src_sender=REQUESTER_BOARD,
                   dst_domain=DOMAIN, dst_receiver=bytes(taskboard_address(board.program_id)), payload=payload)
    meta = delivered(board, env)
    print(f"Deliver TASK_REQUEST to the board: {meta.compute_units_consumed()} CU")
    return board, env


def test_submit_result_sends_it_back_to_the_requesting_board_once(served) -> None:
    chain, req = served
    worker = funded(chain)
    payout = b"\x00" * 12 + b"\xcc" * 20  # an EVM payout address: the requester's chain pays
    result = TaskResult.signed(WORKER_KEY, request_id=req.message_id, executor="sentiment", output=b"positive",
                               payout=payout)
    broke = funded(chain, 1000)  # cannot pay the answered account's rent
    chain.fails(ProgramErrorCode.INSUFFICIENT_LAMPORTS,
                submit_result_ix(chain.program_id, broke.pubkey(), req.message_id, result.encode()), signers=(broke,))
    ix = submit_result_ix(chain.program_id, worker.pubkey(), req.message_id, result.encode())
    meta = chain.ok(ix, signers=(worker,))
    print(f"SubmitResult: {meta.compute_units_consumed()} CU")
    (raw,) = sent_envelopes_of(meta.logs(), chain.program_id)
    sent = Envelope.decode(raw)
    assert (sent.kind, sent.src_domain, sent.src_sender, sent.dst_domain, sent.dst_receiver, sent.payload) == (
        MessageKind.TASK_RESULT, DOMAIN, bytes(taskboard_address(chain.program_id)), OTHER_DOMAIN, REQUESTER_BOARD,
        result.encode())
    assert bytes(meta.return_data().data)[:32] == sent.message_id
    account = chain.svm.get_account(answered_address(chain.program_id, req.message_id))
    assert len(account.data) == ANSWERED_LEN
    marker = AnsweredAccount.decode(bytes(account.data))
    assert (marker.request_id, marker.result_id, marker.submitter, marker.answered_at) == (
        req.message_id, sent.message_id, worker.pubkey(), NOW)
    other = funded(chain)
    second = submit_result_ix(chain.program_id, other.pubkey(), req.message_id, result.encode())
    chain.fails(ProgramErrorCode.ALREADY_ANSWERED, second, signers=(other,))


def test_submit_result_refuses_late_mismatching_or_malformed_results(served) -> None:
    chain, req = served
    worker = funded(chain)
    payout = b"\x00" * 12 + b"\xcc" * 20

    def refused(code: ProgramErrorCode, payload: bytes, request_id: bytes = req.message_id) -> None:
        chain.fails(code, submit_result_ix(chain.program_id, worker.pubkey(), request_id, payload), signers=(worker,))

    good = TaskResult.signed(WORKER_KEY, request_id=req.message_id, executor="sentiment", output=b"ok", payout=payout)
    refused(ProgramErrorCode.RESULT_EXECUTOR_MISMATCH,
            TaskResult.signed(WORKER_KEY, request_id=req.message_id, executor="echo", output=b"ok",
                              payout=payout).encode())
    other_id = keccak256(b"another")
    refused(ProgramErrorCode.RESULT_REQUEST_MISMATCH,
            TaskResult.signed(WORKER_KEY, request_id=other_id, executor="sentiment", output=b"ok",
                              payout=payout).encode())
    refused(ProgramErrorCode.REQUEST_RECEIPT_INVALID,
            TaskResult.signed(WORKER_KEY, request_id=other_id, executor="sentiment", output=b"ok",
                              payout=payout).encode(), request_id=other_id)
    bad_hash = bytearray(good.encode())
    bad_hash[48] ^= 1  # output_hash no longer keccak256(inline output)
    refused(ProgramErrorCode.RESULT_MALFORMED, bytes(bad_hash))
    refused(ProgramErrorCode.RESULT_MALFORMED, good.encode() + b"\x00")
    refused(ProgramErrorCode.RESULT_MALFORMED, good.encode()[:200])
    zero_payout = TaskResult.signed(WORKER_KEY, request_id=req.message_id, executor="sentiment", output=b"ok",
                                    payout=bytes(32))
    refused(ProgramErrorCode.RESULT_MALFORMED, zero_payout.encode())
    chain.set_time(NOW + 601)
    refused(ProgramErrorCode.TASK_EXPIRED, good.encode())
    assert chain.svm.get_account(answered_address(chain.program_id, req.message_id)) is None


def test_submit_result_refuses_a_receipt_that_is_not_a_request_to_the_board(board: Chain) -> None:
    worker = funded(board)
    # A TASK_RESULT delivered to the board has a valid receipt, but is not a request.
    not_request = board_envelope(board, MessageKind.TASK_RESULT, b"x" * 10)
    delivered(board, not_request)
    result = TaskResult.signed(WORKER_KEY, request_id=not_request.message_id, executor="sentiment", output=b"ok",
                               payout=b"\x01" * 32)
    board.fails(ProgramErrorCode.NOT_A_BOARD_REQUEST,
                submit_result_ix(board.program_id, worker.pubkey(), not_request.message_id, result.encode()),
                signers=(worker,))


# --- SolanaTaskBoard.from_config ------------------------------------------------------------------


def test_from_config_picks_the_keypair_of_the_role(tmp_path, monkeypatch) -> None:
    from relay.config import parse_config

    from adapters.registry import driver_named
    from adapters.solana.driver import SolanaDriver
    from adapters.solana.taskboard import SolanaTaskBoard, SolanaTaskBoardError
    from relay.errors import ConfigError

    program_id = str(Pubkey.new_unique())
    sender, worker = Keypair(), Keypair()
    (tmp_path / "worker.json").write_text(str(list(bytes(worker))))
    monkeypatch.setenv("TB_SENDER", str(sender))
    chains = {
        "solana": {"kind": "solana", "domain": DOMAIN, "rpc_urls": ["http://127.0.0.1:1"], "program_id": program_id,
                   "sender": {"env": "TB_SENDER"}},
        "evm": {"kind": "evm", "domain": OTHER_DOMAIN, "chain_id": OTHER_DOMAIN, "rpc_urls": ["http://127.0.0.1:2"]},
    }
    config = parse_config({"chains": chains})
    chain = config.chains["solana"]
    requester = SolanaTaskBoard.from_config("solana", chain)
    assert requester.signer.pubkey() == sender.pubkey()
    assert requester.address == bytes(taskboard_address(Pubkey.from_string(program_id)))
    assert requester.domain == DOMAIN
    with pytest.raises(SolanaTaskBoardError, match=r"\[worker\] solana_keypair"):
        SolanaTaskBoard.from_config("solana", chain, role="worker")
    assert SolanaTaskBoard.from_config("solana", chain, role="worker", keypair=worker).signer == worker
    worker_section = {"solana_keypair": {"file": str(tmp_path / "worker.json")}}
    with_worker = parse_config({"chains": chains, "worker": worker_section})
    from_section = driver_named(with_worker, "solana").serving_board(with_worker, with_worker.worker)
    assert isinstance(from_section, SolanaTaskBoard) and from_section.signer.pubkey() == worker.pubkey()
    # Which board class serves a chain is the registry's answer, not the board's.
    assert not isinstance(driver_named(config, "evm"), SolanaDriver)
    with pytest.raises(ConfigError, match="no chain 'x'"):
        driver_named(config, "x")


# --- differential: the program's TASK_REQUEST checks against the Python decoder --------------------


def _python_accepts(payload: bytes) -> bool:
    try:
        request = TaskRequest.decode(payload)
    except Exception:  # noqa: BLE001 - any refusal of the reference decoder
        return False
    return request.max_fee < 2**64 and NOW < request.deadline < 2**63


_SEEDS = [
    task_request().encode(),
    task_request(executor="a", data=b"").encode(),
    TaskRequest.by_reference("embed", 7, NOW + 60, b"content", "ipfs://bafy/x").encode(),
    TaskRequest.by_reference("abcdefghijklmnop", 2**40, NOW + 1, b"c", "ar://" + "z" * 251).encode(),
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.sampled_from(_SEEDS), flips=st.lists(st.tuples(st.integers(0, 600), st.integers(0, 255)), max_size=3),
       cut=st.none() | st.integers(0, 600), tail=st.just(b"") | st.binary(max_size=3))
def test_request_checks_agree_with_the_python_decoder(board: Chain, seed: bytes, flips, cut: int | None,
                                                      tail: bytes) -> None:
    raw = bytearray(seed)
    for at, value in flips:
        if at < len(raw):
            raw[at] = value
    payload = bytes(raw[:cut] if cut is not None else raw) + tail
    requester = board.payer
    before = balance(board, requester.pubkey())  # before the send: an accepted request spends max_fee
    result = board.send(request_ix(board, requester, payload))
    accepted = isinstance(result, TransactionMetadata)
    event("accepted" if accepted else f"refused {ProgramErrorCode(custom_error(result)).name}")
    if _python_accepts(payload):
        affordable = TaskRequest.decode(payload).max_fee + 10**7 < before
        if affordable:
            assert accepted, f"program refused a valid request: {custom_error(result):#x} {payload.hex()}"
        else:
            assert custom_error(result) == ProgramErrorCode.INSUFFICIENT_LAMPORTS
    elif accepted:
        # The documented leniency: URIs are checked for ASCII only (UTF-8 validity and non-ASCII
        # whitespace are the off-chain decoders' business).
        assert payload[40] == 1 and any(b >= 0x80 for b in payload[75:]), payload.hex()
