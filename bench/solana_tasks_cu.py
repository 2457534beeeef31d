"""Compute units and transaction sizes of the Solana task board, task protocol v2
(contracts/solana/src/taskboard_v2.c; v1 is retired).

Deploys contracts/solana/tessera.so into LiteSVM, initializes the committee and the gateway, then
runs one task through both roles and measures each instruction (the program's own "consumed" line):
requester side RequestTask v2, Deliver of a TASK_RESULT v2 (recorded) and of its verdict (paid),
Reclaim v2; serving side Deliver of a TASK_REQUEST v2, Claim (first, and one replacing an expired
claim), ExpireClaim, SubmitResult v2 (512-byte payload), Deliver of the verdict (bond returned); and
a plain Deliver (not to the board) for comparison.

    .venv/bin/python bench/solana_tasks_cu.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from solders.clock import Clock  # noqa: E402
from solders.compute_budget import set_compute_unit_limit  # noqa: E402
from solders.instruction import AccountMeta, Instruction  # noqa: E402
from solders.keypair import Keypair  # noqa: E402
from solders.litesvm import LiteSVM  # noqa: E402
from solders.transaction import Transaction  # noqa: E402

from adapters.solana.deploy import deploy_program_litesvm, load_program_bytes  # noqa: E402
from adapters.solana.program import (  # noqa: E402
    SETTLEMENT_GRACE_SECONDS,
    ServeAccount,
    TaskAccountV2,
    board_delivery_accounts,
    claim_task_ix,
    deliver_ix,
    expire_claim_ix,
    init_committee_ix,
    init_gateway_ix,
    reclaim_v2_ix,
    request_task_v2_ix,
    result_v2_delivery_accounts,
    serve_address,
    submit_result_v2_ix,
    task_v2_address,
    taskboard_address,
    verdict_delivery_accounts,
)
from attest.bls import public_key  # noqa: E402
from bench.solana_verify_cu import _attest, _program_units  # noqa: E402
from relay.envelope import Envelope  # noqa: E402
from relay.protocol import COMMITTEE_DOMAIN, MessageKind  # noqa: E402
from relay.tasks.payloads import (  # noqa: E402
    MAX_INLINE_INPUT_LEN_V2,
    MAX_INLINE_OUTPUT_LEN_V2,
    AttestationMethod,
    ProofVerdict,
    TaskRequestV2,
    TaskResultV2,
)

DOMAIN = 900
OTHER = 31337
SECRET = 0x5EC12E7
NOW = 1_700_000_000
WORKER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(32))
OTHER_BOARD = b"\x00" * 12 + b"\xb0" * 20  # the board on the other (EVM) chain
EVM_ACCOUNT = b"\x00" * 12 + b"\xcc" * 20
BOND = 2_000_000


def _size(svm: LiteSVM, payer: Keypair, ix: Instruction, signers: list[Keypair]) -> int:
    tx = Transaction.new_signed_with_payer([set_compute_unit_limit(200_000), ix], payer.pubkey(), [payer, *signers],
                                           svm.latest_blockhash())
    return len(bytes(tx))


def _request(executor: str, max_fee: int, data: bytes, refund_to: bytes) -> TaskRequestV2:
    return TaskRequestV2(executor, max_fee, NOW + 600, 60, 5000, 30, BOND, refund_to, input=data)


def main() -> int:
    svm = LiteSVM()
    payer = Keypair()
    svm.airdrop(payer.pubkey(), 100 * 10**9)
    so = load_program_bytes()
    program_id = deploy_program_litesvm(svm, payer, so)

    def set_time(t: int) -> None:
        svm.set_clock(Clock(svm.get_clock().slot, t, 0, 0, t))

    set_time(NOW)
    for ix in (init_committee_ix(program_id, payer.pubkey(), domain=DOMAIN, epoch=1, n=3, t=2,
                                 group_key=public_key(SECRET)), init_gateway_ix(program_id, payer.pubkey())):
        _program_units(svm, payer, ix, [])
    board = bytes(taskboard_address(program_id))
    rows: list[tuple[str, int, int]] = []

    def funded(lamports: int = 10**9) -> Keypair:
        key = Keypair()
        svm.airdrop(key.pubkey(), lamports)
        return key

    def measure(name: str, ix: Instruction, signers: list[Keypair] = []) -> None:  # noqa: B006
        size = _size(svm, payer, ix, signers)
        rows.append((name, _program_units(svm, payer, ix, signers), size))

    def deliver(name: str, env: Envelope, extra: list[AccountMeta]) -> None:
        raw = env.encode()
        ix = deliver_ix(program_id, payer.pubkey(), _attest(SECRET, raw, 1), raw)
        measure(name, Instruction(program_id, ix.data, [*ix.accounts, *extra]))

    def verdict(result: TaskResultV2, result_env: Envelope, dst_domain: int, dst_receiver: bytes,
                submitted_at: int) -> Envelope:
        payload = ProofVerdict.for_result(result, result_env.message_id, AttestationMethod.REEXECUTION,
                                          submitted_at, None).encode()
        return Envelope(kind=MessageKind.PROOF_ATTESTATION, nonce=0, src_domain=COMMITTEE_DOMAIN,
                        src_sender=bytes(32), dst_domain=dst_domain, dst_receiver=dst_receiver, payload=payload)

    # Requester side: requests from this chain, then one's result and verdict delivered back.
    requester = funded()
    tasks = {}
    for nonce, (label, request) in enumerate((
            ("inline 17 B", _request("sentiment", 10**6, b"What a lovely day", EVM_ACCOUNT)),
            (f"inline {MAX_INLINE_INPUT_LEN_V2} B", _request("echo", 10**6, b"x" * MAX_INLINE_INPUT_LEN_V2,
                                                             EVM_ACCOUNT)))):
        measure(f"RequestTask v2 ({label})", request_task_v2_ix(
            program_id, requester.pubkey(), task_nonce=nonce, dst_domain=OTHER, worker_board=OTHER_BOARD,
            payload=request.encode()), [requester])
        address = task_v2_address(program_id, requester.pubkey(), nonce)
        tasks[nonce] = (address, Envelope.decode(TaskAccountV2.decode(bytes(svm.get_account(address).data)).envelope))
    (task, requested), (unanswered, _) = tasks[0], tasks[1]
    payout = funded()
    result = TaskResultV2.signed(WORKER_KEY, request_id=requested.message_id, executor="sentiment",
                                 output=b'{"label":"positive"}', claimant=EVM_ACCOUNT,
                                 payout=bytes(payout.pubkey()), price=600_000)
    result_env = Envelope(kind=MessageKind.TASK_RESULT, nonce=0, src_domain=OTHER, src_sender=OTHER_BOARD,
                          dst_domain=DOMAIN, dst_receiver=board, payload=result.encode())
    deliver("Deliver TASK_RESULT v2 to the board (recorded)", result_env,
            result_v2_delivery_accounts(program_id, result_env, task=task, requester=requester.pubkey()))
    to_requester = verdict(result, result_env, DOMAIN, board, NOW + 10)
    deliver("Deliver verdict to the requester's board (paid)", to_requester,
            verdict_delivery_accounts(program_id, to_requester, task=task, requester=requester.pubkey()))

    # Serving side: a request from the other chain delivered here, claimed (an expired claim
    # forfeited, then replaced), answered with the largest inline result, and its verdict.
    refund = funded()
    incoming = Envelope(kind=MessageKind.TASK_REQUEST, nonce=1, src_domain=OTHER,
                        src_sender=b"\x00" * 12 + b"\xa0" * 20, dst_domain=DOMAIN, dst_receiver=board,
                        payload=_request("echo", 10**15, b"y" * MAX_INLINE_INPUT_LEN_V2,
                                         bytes(refund.pubkey())).encode())
    deliver(f"Deliver TASK_REQUEST v2 to the board (payload {len(incoming.payload)} B)", incoming,
            board_delivery_accounts(program_id, incoming))
    silent, worker, late = funded(), funded(), funded()
    measure("Claim (first: creates the serve account)", claim_task_ix(
        program_id, silent.pubkey(), incoming.message_id, payout=EVM_ACCOUNT, refund_to=refund.pubkey()), [silent])
    set_time(NOW + 31)
    measure("ExpireClaim (bond forfeited to refund_to)",
            expire_claim_ix(program_id, incoming.message_id, refund.pubkey()))
    measure("Claim (re-opened task)", claim_task_ix(
        program_id, late.pubkey(), incoming.message_id, payout=EVM_ACCOUNT, refund_to=refund.pubkey()), [late])
    set_time(NOW + 62)
    measure("Claim (forfeits an expired claim first)", claim_task_ix(
        program_id, worker.pubkey(), incoming.message_id, payout=EVM_ACCOUNT, refund_to=refund.pubkey()), [worker])
    serve = ServeAccount.decode(bytes(svm.get_account(serve_address(program_id, incoming.message_id)).data))
    big = TaskResultV2.signed(WORKER_KEY, request_id=incoming.message_id, executor="echo",
                              output=b"z" * MAX_INLINE_OUTPUT_LEN_V2, claimant=bytes(worker.pubkey()),
                              payout=EVM_ACCOUNT, price=serve.price)
    measure(f"SubmitResult v2 (payload {len(big.encode())} B)",
            submit_result_v2_ix(program_id, worker.pubkey(), incoming.message_id, big.encode()), [worker])
    serve = ServeAccount.decode(bytes(svm.get_account(serve_address(program_id, incoming.message_id)).data))
    sent = Envelope.decode(serve.result_envelope)
    to_server = verdict(big, sent, sent.src_domain, sent.src_sender, serve.submitted_at)
    deliver("Deliver verdict to the serving board (bond returned)", to_server,
            verdict_delivery_accounts(program_id, to_server, claimant=worker.pubkey(), refund_to=refund.pubkey()))
    deliver("Deliver DATA elsewhere (not the board, 32 B)", Envelope(
        kind=MessageKind.DATA, nonce=3, src_domain=OTHER, src_sender=b"\x11" * 32, dst_domain=DOMAIN,
        dst_receiver=b"\x22" * 32, payload=b"p" * 32), [])

    # The unanswered request: refundable after its deadline + the settlement grace.
    set_time(NOW + 601 + SETTLEMENT_GRACE_SECONDS)
    measure("Reclaim v2", reclaim_v2_ix(program_id, unanswered, requester.pubkey()))

    print(f"Tessera Solana task board v2 ({len(so)} bytes), compute units (LiteSVM, default features) and "
          "transaction bytes (with a compute-budget instruction; limit 1,232):")
    width = max(len(name) for name, _, _ in rows)
    for name, units, size in rows:
        print(f"  {name:<{width}}  {units:>7,} CU  {size:>5,} B")
    worst = max(size for _, _, size in rows)
    return 0 if worst <= 1232 else 1


if __name__ == "__main__":
    sys.exit(main())
