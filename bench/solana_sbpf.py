"""The Solana program as SBPFv0 (the last v0 build, tests/fixtures/tessera_v0.so) vs SBPFv3 (built now
by contracts/solana/build.py), in one run: program size and the compute units of VerifySignature,
Deliver, RequestTask v2 and UpdateFeed. The v0 fixture predates task protocol v2 (its RequestTask is
v1's, which the current build refuses: v1 is retired), so RequestTask v2 has no v0 figure ("n/a").

Both builds are deployed under the same program id and payer (in two LiteSVM instances with the mainnet
feature set, where v0 still deploys), so PDA bump searches, which depend on the program id, cost the
same in both; each instruction gets the same input. CU use is deterministic for a given input.

    .venv/bin/python bench/solana_sbpf.py [--features default|mainnet]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from solders.clock import Clock  # noqa: E402
from solders.compute_budget import set_compute_unit_limit  # noqa: E402
from solders.instruction import Instruction  # noqa: E402
from solders.keypair import Keypair  # noqa: E402
from solders.litesvm import LiteSVM  # noqa: E402
from solders.transaction import Transaction  # noqa: E402
from solders.transaction_metadata import FailedTransactionMetadata  # noqa: E402

from adapters.solana.feeds import update_feed_ix  # noqa: E402
from adapters.solana.deploy import deploy_program_litesvm  # noqa: E402
from adapters.solana.program import (  # noqa: E402
    Attestation,
    ProgramErrorCode,
    deliver_ix,
    init_committee_ix,
    init_gateway_ix,
    program_error_code,
    request_task_v2_ix,
    verify_signature_ix,
)
from attest.bls import public_key, sign  # noqa: E402
from contracts.solana import build  # noqa: E402
from relay.envelope import Envelope, keccak256, message_digest  # noqa: E402
from relay.feeds.report import FeedReport  # noqa: E402
from relay.feeds.signed import SignedReport  # noqa: E402
from relay.protocol import MessageKind  # noqa: E402
from relay.tasks.payloads import TaskRequestV2  # noqa: E402

V0_FIXTURE = ROOT / "tests" / "fixtures" / "tessera_v0.so"
DOMAIN, OTHER_DOMAIN = 900, 31337
NOW = 1_800_000_000
SECRET = 0x5EC12E7
PROGRAM_SEED = bytes(range(32))  # the same program id for both builds
PAYER_SEED = bytes(range(32, 64))


class UnknownInstruction(RuntimeError):
    """The build does not have the instruction (the v0 fixture predates task protocol v2)."""


def _units(svm: LiteSVM, payer: Keypair, program_id, ix: Instruction, signers: tuple[Keypair, ...] = ()) -> int:
    tx = Transaction.new_signed_with_payer([set_compute_unit_limit(400_000), ix], payer.pubkey(), [payer, *signers],
                                           svm.latest_blockhash())
    result = svm.send_transaction(tx)
    svm.expire_blockhash()
    if isinstance(result, FailedTransactionMetadata):
        if program_error_code(result.err()) == ProgramErrorCode.UNKNOWN_INSTRUCTION:
            raise UnknownInstruction(ix.data[:1].hex())
        raise RuntimeError(f"{result.err()}\n" + "\n".join(result.meta().logs()))
    for line in result.logs():  # the program's own figure (the compute-budget instruction excluded)
        match = re.fullmatch(rf"Program {program_id} consumed (\d+) of \d+ compute units", line)
        if match:
            return int(match.group(1))
    raise RuntimeError("no compute-unit line for the program")


def _attestation(envelope: bytes) -> Attestation:
    return Attestation.for_envelope(envelope, 1, sign(SECRET, message_digest(1, keccak256(envelope))))


def measure(so_bytes: bytes, features: str) -> dict[str, int | None]:
    svm = LiteSVM() if features == "default" else LiteSVM().with_mainnet_features()
    payer = Keypair.from_seed(PAYER_SEED)
    svm.airdrop(payer.pubkey(), 100 * 10**9)
    program_id = deploy_program_litesvm(svm, payer, so_bytes, Keypair.from_seed(PROGRAM_SEED))
    svm.set_clock(Clock(svm.get_clock().slot, NOW, 0, 0, NOW))
    run = lambda ix, *signers: _units(svm, payer, program_id, ix, signers)  # noqa: E731
    run(init_committee_ix(program_id, payer.pubkey(), domain=DOMAIN, epoch=1, n=3, t=2, group_key=public_key(SECRET)))
    run(init_gateway_ix(program_id, payer.pubkey()))

    figures: dict[str, int | None] = {}
    verify = Envelope(kind=MessageKind.DATA, nonce=1, src_domain=OTHER_DOMAIN, src_sender=b"\x11" * 32,
                      dst_domain=DOMAIN, dst_receiver=b"\x22" * 32, payload=b"x" * 32).encode()
    figures["VerifySignature (32 B payload)"] = run(verify_signature_ix(program_id, _attestation(verify), verify))
    incoming = Envelope(kind=MessageKind.DATA, nonce=2, src_domain=OTHER_DOMAIN, src_sender=b"\x11" * 32,
                        dst_domain=DOMAIN, dst_receiver=b"\x22" * 32, payload=b"x" * 512).encode()
    figures["Deliver (512 B payload)"] = run(deliver_ix(program_id, payer.pubkey(), _attestation(incoming), incoming))
    requester = Keypair.from_seed(bytes(range(64, 96)))
    svm.airdrop(requester.pubkey(), 10**9)
    payload = TaskRequestV2("sentiment", 5_000_000, NOW + 600, 60, 5000, 30, 1_000_000, b"\x11" * 32,
                            input=b"What a lovely day").encode()
    try:
        figures["RequestTask v2 (17 B inline input)"] = run(
            request_task_v2_ix(program_id, requester.pubkey(), task_nonce=1, dst_domain=OTHER_DOMAIN,
                               worker_board=b"\x00" * 12 + b"\xb0" * 20, payload=payload), requester)
    except UnknownInstruction:
        figures["RequestTask v2 (17 B inline input)"] = None
    vectors = json.loads((ROOT / "tests" / "vectors" / "feeds_v1.json").read_text())
    report = FeedReport.decode(bytes.fromhex(vectors["signed_round"]["report"]["encoded"].removeprefix("0x")))
    signed = SignedReport(report, 1, sign(SECRET, report.digest(1)))
    figures["UpdateFeed (creates the account)"] = run(update_feed_ix(program_id, payer.pubkey(), signed))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", choices=("default", "mainnet"), default="mainnet")
    args = parser.parse_args(argv)
    v0 = V0_FIXTURE.read_bytes()
    if build.find_clang() is not None:
        v3, v3_source = build.build(out=None), "built now by contracts/solana/build.py"
    else:
        v3, v3_source = (ROOT / "contracts" / "solana" / "tessera.so").read_bytes(), "committed tessera.so (no clang-16)"
    print(f"SBPFv0: {V0_FIXTURE.relative_to(ROOT)}; SBPFv3: {v3_source}; LiteSVM, {args.features} features\n")
    results = {"v0": measure(v0, args.features), "v3": measure(v3, args.features)}
    print("| | SBPFv0 | SBPFv3 | change |")
    print("|---|---|---|---|")
    print(f"| program size (bytes) | {len(v0):,} | {len(v3):,} | {len(v3) - len(v0):+,} ({(len(v3) / len(v0) - 1) * 100:+.1f} %) |")
    for name in results["v0"]:
        a, b = results["v0"][name], results["v3"][name]
        if a is None or b is None:
            print(f"| {name}, CU | {'n/a' if a is None else f'{a:,}'} | {'n/a' if b is None else f'{b:,}'} | n/a |")
        else:
            print(f"| {name}, CU | {a:,} | {b:,} | {b - a:+,} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
