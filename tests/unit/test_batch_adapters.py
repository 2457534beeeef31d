"""The batch calldata encoders of adapters/evm/gateway.py against the Gateway ABI (forge artifact), and
the Solana ones against the program's layout (contracts/solana/README.md "Batches and closing")."""

from __future__ import annotations

import struct

from eth_abi import decode as abi_decode
from solders.pubkey import Pubkey
from web3 import AsyncWeb3

from adapters.evm.deploy import ensure_built, load_artifact
from adapters.evm.gateway import deliver_batch_data, deliver_with_proof_data, verify_root_data
from adapters.solana.program import (
    ProgramInstruction,
    close_receipt_ix,
    deliver_with_proof_ix,
    replay_address,
    root_address,
)
from relay.batch import Batch
from relay.envelope import Envelope
from relay.protocol import MessageKind


def _batch() -> Batch:
    return Batch.of([Envelope(MessageKind.DATA, n, 7, bytes(32), 8, b"\x01" * 32, bytes([n])) for n in range(5)])


def test_evm_encoders_follow_the_gateway_abi() -> None:
    ensure_built()
    gateway = AsyncWeb3().eth.contract(abi=load_artifact("Gateway").abi)
    batch = _batch()
    signature = bytes(range(64))
    data = bytes.fromhex(deliver_batch_data(gateway, batch, 3, signature)[2:])
    root, epoch, sig, envs = abi_decode(["bytes32", "uint32", "bytes", "bytes[]"], data[4:])
    assert (root, epoch, sig, list(envs)) == (batch.root, 3, signature, [e.encode() for e in batch.envelopes])
    data = bytes.fromhex(verify_root_data(gateway, batch, 3, signature)[2:])
    assert abi_decode(["bytes32", "uint32", "uint32", "uint32", "bytes"], data[4:]) == (batch.root, 7, 5, 3, signature)
    data = bytes.fromhex(deliver_with_proof_data(gateway, batch, 4)[2:])
    env, index, proof, root = abi_decode(["bytes", "uint32", "bytes32[]", "bytes32"], data[4:])
    assert (env, index, list(proof), root) == (batch.envelopes[4].encode(), 4, batch.proof(4), batch.root)


def test_solana_encoders_follow_the_program_layout() -> None:
    program = Pubkey.new_unique()
    payer = Pubkey.new_unique()
    batch = _batch()
    ix = deliver_with_proof_ix(program, payer, batch.root, 2, batch.proof(2), batch.envelopes[2].encode())
    data = bytes(ix.data)
    assert data[:3] == bytes([ProgramInstruction.DELIVER_WITH_PROOF, 2, len(batch.proof(2))])
    assert data[3:3 + 32 * data[2]] == b"".join(batch.proof(2))
    assert data[3 + 32 * data[2]:] == batch.envelopes[2].encode()
    assert ix.accounts[1].pubkey == root_address(program, batch.root)
    assert ix.accounts[4].pubkey == replay_address(program, 7, 2)
    assert replay_address(program, 7, 8191) == replay_address(program, 7, 0) != replay_address(program, 7, 8192)
    assert replay_address(program, 7, 0) == Pubkey.find_program_address(
        [b"replay", struct.pack("<I", 7), struct.pack("<Q", 0)], program)[0]
    close = close_receipt_ix(program, payer, batch.envelopes[2], payer)
    assert [m.is_writable for m in close.accounts] == [True, True, True, True, False]
