"""The Solana side of the tests: a py-ecc BLS signer independent of attest/ (ALICE, BOB), the
LiteSVM harness running the Tessera program (`Chain`; the `chain` and `committee` fixtures in
tests/unit/conftest.py build it with `deployed_chain` and `with_committee`), envelopes to this chain's
domain, and funded keypairs on LiteSVM or on a Solana localnet over RPC."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property

from py_ecc.optimized_bn128 import G2, FQ, field_modulus, multiply, normalize
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solders.clock import Clock
from solders.compute_budget import set_compute_unit_limit
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.pubkey import Pubkey
from solders.transaction import Transaction
from solders.transaction_metadata import FailedTransactionMetadata, TransactionMetadata

from adapters.solana.deploy import PROGRAM_SO_PATH, deploy_program_litesvm
from adapters.solana.program import (
    Attestation,
    CommitteeConfig,
    G1Hint,
    ProgramErrorCode,
    committee_address,
    init_committee_ix,
)
from relay.envelope import Envelope, keccak256, message_digest
from relay.payloads import CommitteeRotation
from relay.protocol import COMMITTEE_DOMAIN, MessageKind

DOMAIN = 900  # this Solana chain's Tessera domain in these tests
CU_LIMIT = 400_000


# --- BLS helpers (py-ecc reference, independent of attest/) ----------------------------------


def g2_bytes(point) -> bytes:
    x, y = normalize(point)
    return b"".join(int(c).to_bytes(32, "big") for c in (x.coeffs[1], x.coeffs[0], y.coeffs[1], y.coeffs[0]))


@dataclass(frozen=True)
class Signer:
    secret: int

    @cached_property
    def group_key(self) -> bytes:
        return g2_bytes(multiply(G2, self.secret))

    def sign_digest(self, digest: bytes) -> tuple[bytes, G1Hint]:
        hint = G1Hint.for_digest(digest)
        x = (int.from_bytes(digest, "big") % field_modulus + hint.k) % field_modulus
        point = (FQ(x), FQ(int.from_bytes(hint.y, "big")), FQ(1))
        sx, sy = normalize(multiply(point, self.secret))
        return int(sx).to_bytes(32, "big") + int(sy).to_bytes(32, "big"), hint

    def attest(self, envelope: bytes, epoch: int) -> Attestation:
        signature, hint = self.sign_digest(message_digest(epoch, keccak256(envelope)))
        return Attestation(epoch, signature, hint)


ALICE = Signer(0x1234567890ABCDEF1234567890ABCDEF)
BOB = Signer(0xFEDCBA0987654321FEDCBA0987654321)


# --- LiteSVM harness -------------------------------------------------------------------------


@dataclass
class Chain:
    svm: LiteSVM
    payer: Keypair
    program_id: Pubkey

    def send(self, *instructions: Instruction, signers: tuple[Keypair, ...] = ()):
        tx = Transaction.new_signed_with_payer(
            [set_compute_unit_limit(CU_LIMIT), *instructions],
            self.payer.pubkey(),
            [self.payer, *signers],
            self.svm.latest_blockhash(),
        )
        result = self.svm.send_transaction(tx)
        self.svm.expire_blockhash()  # identical retries must not collide as AlreadyProcessed
        return result

    def ok(self, *instructions: Instruction, signers: tuple[Keypair, ...] = ()) -> TransactionMetadata:
        result = self.send(*instructions, signers=signers)
        assert isinstance(result, TransactionMetadata), f"{result.err()}\n" + "\n".join(result.meta().logs())
        return result

    def fails(self, code: ProgramErrorCode, *instructions: Instruction, signers: tuple[Keypair, ...] = ()) -> None:
        result = self.send(*instructions, signers=signers)
        assert isinstance(result, FailedTransactionMetadata), "expected the transaction to fail"
        assert custom_error(result) == code, f"{result.err()}\n" + "\n".join(result.meta().logs())

    def set_time(self, unix_timestamp: int) -> None:
        clock = self.svm.get_clock()
        self.svm.set_clock(Clock(clock.slot, clock.epoch_start_timestamp, clock.epoch, clock.leader_schedule_epoch, unix_timestamp))

    def config(self) -> CommitteeConfig:
        account = self.svm.get_account(committee_address(self.program_id)[0])
        assert account is not None and account.owner == self.program_id
        return CommitteeConfig.decode(bytes(account.data))

    def init_committee(self, signer: Signer = ALICE, epoch: int = 1, domain: int = DOMAIN, admin: Keypair | None = None):
        admin = admin or self.payer
        ix = init_committee_ix(
            self.program_id,
            admin.pubkey(),
            domain=domain,
            epoch=epoch,
            n=3,
            t=2,
            group_key=signer.group_key,
        )
        return self.send(ix, signers=(admin,) if admin != self.payer else ())


def custom_error(result: FailedTransactionMetadata) -> int | None:
    err = result.err()
    inner = getattr(err, "err", None)
    return getattr(inner, "code", None)


# The program id of `deployed_chain`: fixed, so rotation envelopes (whose dst_receiver must be the
# program) can be written before a chain exists.
PROGRAM_KEYPAIR = Keypair.from_seed(b"tessera unit-test program".ljust(32, b"\0"))
PROGRAM_ID = PROGRAM_KEYPAIR.pubkey()


def deployed_chain() -> Chain:
    """A fresh LiteSVM with a funded payer, the Tessera program deployed through the upgradeable
    loader at PROGRAM_ID and the clock at 1_700_000_000."""
    svm = LiteSVM()
    payer = Keypair()
    svm.airdrop(payer.pubkey(), 100 * 10**9)
    program_id = deploy_program_litesvm(svm, payer, PROGRAM_SO_PATH.read_bytes(), PROGRAM_KEYPAIR)
    svm.set_clock(Clock(svm.get_clock().slot, 1_700_000_000, 0, 0, 1_700_000_000))
    return Chain(svm, payer, program_id)


def with_committee(chain: Chain) -> Chain:
    """`chain` with its committee initialised: ALICE's key, epoch 1, 2-of-3, domain DOMAIN."""
    result = chain.init_committee()
    assert isinstance(result, TransactionMetadata), "\n".join(result.meta().logs())
    return chain


def funded(chain: Chain, lamports: int = 10**9) -> Keypair:
    """A new keypair holding `lamports` on the LiteSVM chain."""
    key = Keypair()
    chain.svm.airdrop(key.pubkey(), lamports)
    return key


async def airdropped(client: AsyncClient, lamports: int = 10 * 10**9, poll: float = 0.05) -> Keypair:
    """A new keypair holding `lamports` on a Solana localnet behind `client`, airdrop confirmed."""
    keypair = Keypair()
    signature = (await client.request_airdrop(keypair.pubkey(), lamports)).value
    await client.confirm_transaction(signature, Confirmed, sleep_seconds=poll)
    return keypair


def envelope(kind: int = MessageKind.TASK_REQUEST, dst_domain: int = DOMAIN, payload: bytes = b"hello", nonce: int = 0,
             src_domain: int = 31337) -> bytes:
    return Envelope(
        kind=kind,
        nonce=nonce,
        src_domain=src_domain,
        src_sender=b"\x00" * 12 + b"\x11" * 20,
        dst_domain=dst_domain,
        dst_receiver=b"\x22" * 32,
        payload=payload,
    ).encode()


def rotation_envelope(new_epoch: int, key: bytes, grace: int = 3600, dst_domain: int = DOMAIN,
                      src_domain: int = COMMITTEE_DOMAIN, kind: int = MessageKind.COMMITTEE_ROTATION, *,
                      receiver: Pubkey = PROGRAM_ID, src_sender: bytes = bytes(32)) -> bytes:
    """A rotation as the committee writes it: sender zero, receiver the program (`receiver`)."""
    payload = CommitteeRotation(new_epoch=new_epoch, n=4, t=3, group_key=key, grace_seconds=grace).encode()
    return Envelope(kind=kind, nonce=0, src_domain=src_domain, src_sender=src_sender, dst_domain=dst_domain,
                    dst_receiver=bytes(receiver), payload=payload).encode()


class MovableClock:
    """Stands in for the `time` module inside the Solana localnet's ledger (an in-process server):
    its slots' block times and the Clock sysvar are real time plus `offset`, so a test moves the
    chain's clock past a retention or grace period without waiting (the `movable_clock` fixture in
    tests/conftest.py installs it)."""

    def __init__(self) -> None:
        self.offset = 0

    def time(self) -> float:
        return time.time() + self.offset
