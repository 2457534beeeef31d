"""The Solana program's pause switch (Pause 24 / Unpause 25) in LiteSVM with the built tessera.so:
only the committee config's admin may flip it; while paused, Send, Deliver, VerifyRoot and
DeliverWithProof (of a root verified before the pause too) fail with GATEWAY_PAUSED; Unpause restores."""

from __future__ import annotations

from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair

from adapters.solana.program import (
    ProgramErrorCode,
    deliver_ix,
    deliver_with_proof_ix,
    init_gateway_ix,
    pause_ix,
    send_ix,
    verify_root_ix,
)
from relay.batch import Batch
from relay.protocol import MessageKind
from tests.support.solana import ALICE, Chain, funded
from tests.unit.test_solana_batch import lane, root_attestation

E = ProgramErrorCode
OTHER_DOMAIN = 31337


def _gateway(committee: Chain) -> Chain:
    committee.ok(init_gateway_ix(committee.program_id, committee.payer.pubkey()))
    return committee


def _send(chain: Chain):
    return send_ix(chain.program_id, chain.payer.pubkey(), dst_domain=OTHER_DOMAIN, receiver=bytes(32),
                   kind=MessageKind.DATA, payload=b"hello")


def _deliver(chain: Chain, envelope: bytes):
    return deliver_ix(chain.program_id, chain.payer.pubkey(), ALICE.attest(envelope, 1), envelope)


def _verify(chain: Chain, batch: Batch):
    return verify_root_ix(chain.program_id, chain.payer.pubkey(), root_attestation(batch), src_domain=batch.src_domain,
                          leaf_count=len(batch.envelopes), root=batch.root)


def _prove(chain: Chain, batch: Batch, i: int):
    return deliver_with_proof_ix(chain.program_id, chain.payer.pubkey(), batch.root, i, batch.proof(i),
                                 batch.envelopes[i].encode())


def test_pause_by_anyone_but_the_admin_is_refused(committee: Chain) -> None:
    chain = _gateway(committee)
    intruder = funded(chain)
    chain.fails(E.NOT_ADMIN, pause_ix(chain.program_id, intruder.pubkey()), signers=(intruder,))
    chain.fails(E.NOT_ADMIN, pause_ix(chain.program_id, intruder.pubkey(), paused=False), signers=(intruder,))
    # A lookalike config account owned by someone else is not the program's config.
    fake = Instruction(chain.program_id, bytes([24]), [AccountMeta(intruder.pubkey(), True, False),
                                                       AccountMeta(Keypair().pubkey(), False, True)])
    chain.fails(E.CONFIG_NOT_INITIALIZED, fake, signers=(intruder,))
    chain.ok(_send(chain))  # still running


def test_send_deliver_and_verify_root_are_refused_while_paused(committee: Chain) -> None:
    chain = _gateway(committee)
    batch = Batch.of(lane(3, src=OTHER_DOMAIN))
    chain.ok(_verify(chain, batch))  # a root verified before the pause
    chain.ok(_prove(chain, batch, 0))
    chain.ok(pause_ix(chain.program_id, chain.payer.pubkey()))
    chain.ok(pause_ix(chain.program_id, chain.payer.pubkey()))  # idempotent

    chain.fails(E.GATEWAY_PAUSED, _send(chain))
    single = lane(1, first_nonce=50, src=OTHER_DOMAIN)[0].encode()
    chain.fails(E.GATEWAY_PAUSED, _deliver(chain, single))
    later = Batch.of(lane(2, first_nonce=10, src=OTHER_DOMAIN))
    chain.fails(E.GATEWAY_PAUSED, _verify(chain, later))  # no new root: nothing newly signed lands
    chain.fails(E.GATEWAY_PAUSED, _prove(chain, batch, 1))  # nor does a root verified before the pause

    chain.ok(pause_ix(chain.program_id, chain.payer.pubkey(), paused=False))
    chain.ok(_send(chain))
    chain.ok(_deliver(chain, single))
    chain.ok(_verify(chain, later))
    chain.ok(_prove(chain, later, 0))
    chain.ok(_prove(chain, batch, 1))
