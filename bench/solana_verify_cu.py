"""Compute units the Tessera Solana program spends per instruction (target: VerifySignature <= 100k).

Deploys contracts/solana/tessera.so through the upgradeable loader into LiteSVM (the Agave runtime
embedded in solders), initializes a committee, then measures each instruction once (CU use is
deterministic for a given input).

    .venv/bin/python bench/solana_verify_cu.py
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from solders.clock import Clock  # noqa: E402
from solders.instruction import Instruction  # noqa: E402
from solders.keypair import Keypair  # noqa: E402
from solders.litesvm import LiteSVM  # noqa: E402
from solders.transaction import Transaction  # noqa: E402
from solders.transaction_metadata import FailedTransactionMetadata  # noqa: E402

from adapters.solana.deploy import deploy_program_litesvm, load_program_bytes  # noqa: E402
from adapters.solana.program import (  # noqa: E402
    Attestation,
    G1Hint,
    init_committee_ix,
    rotate_committee_ix,
    verify_digest_ix,
    verify_signature_ix,
)
from attest.bls import public_key, sign  # noqa: E402
from relay.envelope import Envelope, keccak256, message_digest  # noqa: E402
from relay.payloads import CommitteeRotation  # noqa: E402
from relay.protocol import COMMITTEE_DOMAIN, MessageKind  # noqa: E402

DOMAIN = 900
SECRET_1 = 0x5EC12E7
SECRET_2 = 0x5EC12E8


def _program_units(svm: LiteSVM, payer: Keypair, ix: Instruction, signers: list[Keypair]) -> int:
    tx = Transaction.new_signed_with_payer([ix], payer.pubkey(), [payer, *signers], svm.latest_blockhash())
    result = svm.send_transaction(tx)
    svm.expire_blockhash()
    if isinstance(result, FailedTransactionMetadata):
        raise SystemExit(f"instruction failed: {result.err()}\n" + "\n".join(result.meta().logs()))
    # The program's own line ("consumed X of Y"), not the transaction total.
    for line in result.logs():
        match = re.search(rf"Program {ix.program_id} consumed (\d+) of", line)
        if match:
            return int(match.group(1))
    return result.compute_units_consumed()


def _attest(secret: int, raw: bytes, epoch: int) -> Attestation:
    digest = message_digest(epoch, keccak256(raw))
    return Attestation(epoch, sign(secret, digest), G1Hint.for_digest(digest))


def main() -> int:
    svm = LiteSVM()
    payer = Keypair()
    svm.airdrop(payer.pubkey(), 100 * 10**9)
    so = load_program_bytes()
    program_id = deploy_program_litesvm(svm, payer, so)
    clock = svm.get_clock()
    svm.set_clock(Clock(clock.slot, 1_700_000_000, 0, 0, 1_700_000_000))
    key_1, key_2 = public_key(SECRET_1), public_key(SECRET_2)

    rows: list[tuple[str, int]] = []
    init = init_committee_ix(
        program_id, payer.pubkey(), domain=DOMAIN, epoch=1, n=3, t=2, group_key=key_1,
    )
    rows.append(("InitCommittee (PDA creation through CPI)", _program_units(svm, payer, init, [])))

    for payload_len in (32, 256, 512):
        raw = Envelope(
            kind=MessageKind.TASK_REQUEST, nonce=1, src_domain=31337, src_sender=bytes(12) + b"\x11" * 20,
            dst_domain=DOMAIN, dst_receiver=b"\x22" * 32, payload=b"p" * payload_len,
        ).encode()
        ix = verify_signature_ix(program_id, _attest(SECRET_1, raw, 1), raw)
        rows.append((f"VerifySignature (payload {payload_len} B)", _program_units(svm, payer, ix, [])))

    digest = keccak256(b"bench digest")
    ix = verify_digest_ix(program_id, signature=sign(SECRET_1, digest), hint=G1Hint.for_digest(digest),
                          digest=digest, group_key=key_1)
    rows.append(("VerifyDigest", _program_units(svm, payer, ix, [])))

    payload = CommitteeRotation(new_epoch=2, n=4, t=3, group_key=key_2, grace_seconds=3600).encode()
    rotation = Envelope(
        kind=MessageKind.COMMITTEE_ROTATION, nonce=0, src_domain=COMMITTEE_DOMAIN, src_sender=bytes(32),
        dst_domain=DOMAIN, dst_receiver=bytes(program_id), payload=payload,
    ).encode()
    ix = rotate_committee_ix(program_id, _attest(SECRET_1, rotation, 1), rotation)
    rows.append(("RotateCommittee", _program_units(svm, payer, ix, [])))

    print(f"Tessera Solana program ({len(so)} bytes), compute units per instruction (LiteSVM, default features):")
    width = max(len(name) for name, _ in rows)
    for name, units in rows:
        print(f"  {name:<{width}}  {units:>7,} CU")
    verify = max(units for name, units in rows if name.startswith("VerifySignature"))
    print(f"VerifySignature worst case {verify:,} CU: {'within' if verify <= 100_000 else 'OVER'} the 100k target")
    return 0 if verify <= 100_000 else 1


if __name__ == "__main__":
    sys.exit(main())
