"""The Solana task board reads the envelopes delivered to it from both delivery instructions: a
relayer that batches delivers a lane's messages with DeliverWithProof, and a worker that only read
Deliver never saw the requests of a batch (EVM->Solana tasks requested together were never claimed)."""

from __future__ import annotations

from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.transaction import VersionedTransaction

from adapters.solana.program import deliver_with_proof_ix
from adapters.solana.taskboard import delivered_envelopes
from relay.batch import merkle_proof
from relay.envelope import Envelope
from relay.protocol import MessageKind


def _envelope(nonce: int) -> Envelope:
    return Envelope(version=1, kind=MessageKind.TASK_REQUEST, src_domain=31337, dst_domain=13375, nonce=nonce,
                    src_sender=b"\x11" * 32, dst_receiver=b"\x22" * 32, payload=b"request %d" % nonce)


def test_envelopes_of_deliver_with_proof_are_found_in_order() -> None:
    program, payer = Keypair().pubkey(), Keypair()
    envelopes = [_envelope(n) for n in range(5)]
    ids = [e.message_id for e in envelopes]
    ixs = [deliver_with_proof_ix(program, payer.pubkey(), b"\x33" * 32, i, merkle_proof(ids, i), envelopes[i].encode())
           for i in (1, 3)]
    message = MessageV0.try_compile(payer.pubkey(), ixs, [], Hash.default())
    tx = VersionedTransaction(message, [payer])
    assert delivered_envelopes(tx, program) == [envelopes[1].encode(), envelopes[3].encode()]
    assert delivered_envelopes(tx, Keypair().pubkey()) == []  # another program's instructions: nothing
