"""Compute units and transaction sizes of the Solana task board (contracts/solana/src/taskboard.c).

Deploys contracts/solana/tessera.so into LiteSVM, initializes the committee and the gateway, then
runs one task through both roles and measures each instruction (the program's own "consumed" line):
RequestTask, Deliver of a TASK_REQUEST / TASK_RESULT / PROOF_ATTESTATION to the board, SubmitResult,
Reclaim, and a plain Deliver (not to the board) for comparison.

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
from solders.instruction import Instruction  # noqa: E402
from solders.keypair import Keypair  # noqa: E402
from solders.litesvm import LiteSVM  # noqa: E402
from solders.transaction import Transaction  # noqa: E402

from adapters.solana.deploy import deploy_program_litesvm, load_program_bytes  # noqa: E402
from adapters.solana.program import (  # noqa: E402
    OutboxState,
    board_delivery_accounts,
    deliver_ix,
    init_committee_ix,
    init_gateway_ix,
    outbox_address,
    taskboard_address,
)
from adapters.solana.taskboard import reclaim_ix, request_task_ix, submit_result_ix  # noqa: E402
from attest.bls import public_key  # noqa: E402
from bench.solana_verify_cu import _attest, _program_units  # noqa: E402
from relay.envelope import Envelope  # noqa: E402
from relay.protocol import COMMITTEE_DOMAIN, MessageKind  # noqa: E402
from relay.tasks.payloads import AttestationMethod, ProofAttestation, TaskRequest, TaskResult  # noqa: E402

DOMAIN = 900
OTHER = 31337
SECRET = 0x5EC12E7
NOW = 1_700_000_000
WORKER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(32))


def _size(svm: LiteSVM, payer: Keypair, ix: Instruction, signers: list[Keypair]) -> int:
    tx = Transaction.new_signed_with_payer([set_compute_unit_limit(200_000), ix], payer.pubkey(), [payer, *signers],
                                           svm.latest_blockhash())
    return len(bytes(tx))


def main() -> int:
    svm = LiteSVM()
    payer = Keypair()
    svm.airdrop(payer.pubkey(), 100 * 10**9)
    so = load_program_bytes()
    program_id = deploy_program_litesvm(svm, payer, so)
    clock = svm.get_clock()
    svm.set_clock(Clock(clock.slot, NOW, 0, 0, NOW))
    for ix in (init_committee_ix(program_id, payer.pubkey(), domain=DOMAIN, epoch=1, n=3, t=2,
                                 group_key=public_key(SECRET)), init_gateway_ix(program_id, payer.pubkey())):
        _program_units(svm, payer, ix, [])
    board = bytes(taskboard_address(program_id))
    rows: list[tuple[str, int, int]] = []

    def measure(name: str, ix: Instruction, signers: list[Keypair] = []) -> None:  # noqa: B006
        size = _size(svm, payer, ix, signers)
        rows.append((name, _program_units(svm, payer, ix, signers), size))

    def deliver(name: str, env: Envelope) -> None:
        raw = env.encode()
        ix = deliver_ix(program_id, payer.pubkey(), _attest(SECRET, raw, 1), raw)
        measure(name, Instruction(program_id, ix.data, [*ix.accounts, *board_delivery_accounts(program_id, env)]))

    # Requester side: a request from this chain, then its result and attestation delivered back.
    for label, request in (("inline 17 B", TaskRequest("sentiment", 10**6, NOW + 600, input=b"What a lovely day")),
                           ("inline 469 B", TaskRequest("echo", 10**6, NOW + 600, input=b"x" * 469))):
        payload = request.encode()
        nonce = OutboxState.decode(bytes(svm.get_account(outbox_address(program_id)[0]).data)).next_nonce
        env = Envelope(kind=MessageKind.TASK_REQUEST, nonce=nonce, src_domain=DOMAIN, src_sender=board,
                       dst_domain=OTHER, dst_receiver=b"\x00" * 12 + b"\xb0" * 20, payload=payload)
        measure(f"RequestTask ({label})", request_task_ix(program_id, payer.pubkey(), request_id=env.message_id,
                                                           dst_domain=OTHER, worker_board=env.dst_receiver,
                                                           payload=payload))
        if label.startswith("inline 17"):
            requested = env
        else:
            unanswered = env
    payout = Keypair()
    svm.airdrop(payout.pubkey(), 10**9)
    result = TaskResult.signed(WORKER_KEY, request_id=requested.message_id, executor="sentiment",
                               output=b'{"label":"positive"}', payout=bytes(payout.pubkey()))
    result_env = Envelope(kind=MessageKind.TASK_RESULT, nonce=0, src_domain=OTHER, src_sender=requested.dst_receiver,
                          dst_domain=DOMAIN, dst_receiver=board, payload=result.encode())
    deliver("Deliver TASK_RESULT to the board (recorded)", result_env)
    attestation = ProofAttestation.for_result(result, result_env.message_id, AttestationMethod.REEXECUTION, NOW)
    deliver("Deliver PROOF_ATTESTATION to the board (paid)", Envelope(
        kind=MessageKind.PROOF_ATTESTATION, nonce=0, src_domain=COMMITTEE_DOMAIN, src_sender=bytes(32),
        dst_domain=DOMAIN, dst_receiver=board, payload=attestation.encode()))

    # Serving side: a request from the other chain delivered here, answered with the largest result.
    incoming = Envelope(kind=MessageKind.TASK_REQUEST, nonce=1, src_domain=OTHER,
                        src_sender=b"\x00" * 12 + b"\xa0" * 20, dst_domain=DOMAIN, dst_receiver=board,
                        payload=TaskRequest("echo", 10**15, NOW + 600, input=b"y" * 469).encode())
    deliver("Deliver TASK_REQUEST to the board (payload 512 B)", incoming)
    big = TaskResult.signed(WORKER_KEY, request_id=incoming.message_id, executor="echo", output=b"z" * 298,
                            payout=b"\x00" * 12 + b"\xcc" * 20)
    assert len(big.encode()) == 512
    measure("SubmitResult (payload 512 B)", submit_result_ix(program_id, payer.pubkey(), incoming.message_id,
                                                            big.encode()))
    big_result_env = Envelope(kind=MessageKind.TASK_RESULT, nonce=2, src_domain=OTHER,
                              src_sender=requested.dst_receiver, dst_domain=DOMAIN, dst_receiver=board,
                              payload=TaskResult.signed(WORKER_KEY, request_id=requested.message_id, executor="echo",
                                                        output=b"z" * 298, payout=b"\x01" * 32).encode())
    deliver("Deliver TASK_RESULT to the board (512 B, ignored)", big_result_env)
    deliver("Deliver DATA elsewhere (not the board, 32 B)", Envelope(
        kind=MessageKind.DATA, nonce=3, src_domain=OTHER, src_sender=b"\x11" * 32, dst_domain=DOMAIN,
        dst_receiver=b"\x22" * 32, payload=b"p" * 32))

    svm.set_clock(Clock(svm.get_clock().slot, NOW + 601, 0, 0, NOW + 601))
    # The 469-byte request (no result recorded): refundable right after its deadline.
    measure("Reclaim", reclaim_ix(program_id, payer.pubkey(), unanswered.message_id))

    print(f"Tessera Solana task board ({len(so)} bytes), compute units (LiteSVM, default features) and "
          "transaction bytes (with a compute-budget instruction; limit 1,232):")
    width = max(len(name) for name, _, _ in rows)
    for name, units, size in rows:
        print(f"  {name:<{width}}  {units:>7,} CU  {size:>5,} B")
    worst = max(size for _, _, size in rows)
    return 0 if worst <= 1232 else 1


if __name__ == "__main__":
    sys.exit(main())
