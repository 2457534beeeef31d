"""The feed-root encoders of adapters/evm/feeds.py against the FeedStore ABI (forge artifact), and the
Solana ones against the program's layout (contracts/solana/README.md "Feed roots"). The Solana
instructions also run in LiteSVM (tests/unit/test_solana_feeds_multi.py), the EVM call in forge
(contracts/evm/test/FeedsMulti.t.sol)."""

from __future__ import annotations

from eth_abi import decode as abi_decode
from eth_utils import keccak
from solders.pubkey import Pubkey
from web3 import AsyncWeb3

from adapters.evm.deploy import ensure_built, load_artifact
from adapters.evm.feeds import update_feeds_args, update_feeds_data
from adapters.solana.feeds import (
    close_feed_root_ix,
    feed_address,
    feed_root_address,
    feed_root_attestation,
    update_feeds_ix,
    update_feeds_with_proofs_ix,
    verify_feed_root_ix,
)
from adapters.solana.program import ProgramInstruction
from attest.bn254 import hash_to_g1_hint
from relay.feeds.multi import FeedRoot, SignedFeedRoot
from relay.feeds.report import FeedReport

SIG_TUPLE = "(bytes32,uint32,uint32,bytes,uint8,uint256,uint256)"


def _signed(n: int = 5) -> SignedFeedRoot:
    reports = [FeedReport(f"F{i}", 3, 100 + i, 1, 8, 3, 1_000, 2_000) for i in range(n)]
    return SignedFeedRoot(FeedRoot.of(reports), 7, bytes(range(64)))


def test_evm_update_feeds_follows_the_feedstore_abi() -> None:
    ensure_built()
    store = AsyncWeb3().eth.contract(abi=load_artifact("FeedStore").abi)
    signed = _signed()
    selector = keccak(text=f"updateFeeds({SIG_TUPLE},bytes[],uint256[],bytes32[][])")[:4]
    data = bytes.fromhex(update_feeds_data(store, signed)[2:])
    assert data[:4] == selector
    sig, reports, indices, proofs = abi_decode([SIG_TUPLE, "bytes[]", "uint256[]", "bytes32[][]"], data[4:])
    k, y, y_sqrt = hash_to_g1_hint(signed.digest)
    assert sig == (signed.root.root, 5, 7, signed.signature, k, y, y_sqrt)
    assert list(reports) == [r.encode() for r in signed.root.reports] and not indices and not proofs
    data = bytes.fromhex(update_feeds_data(store, signed, ["F3", "F0"], hinted=False)[2:])
    sig, reports, indices, proofs = abi_decode([SIG_TUPLE, "bytes[]", "uint256[]", "bytes32[][]"], data[4:])
    assert sig[4:] == (0, 0, 0)
    assert list(indices) == [3, 0]
    assert list(reports) == [signed.root.reports[3].encode(), signed.root.reports[0].encode()]
    assert [list(p) for p in proofs] == [signed.root.proof(3), signed.root.proof(0)]
    assert update_feeds_args(signed, ["F4"])[2] == [4]


def test_solana_encoders_follow_the_program_layout() -> None:
    program = Pubkey.new_unique()
    payer = Pubkey.new_unique()
    signed = _signed(3)
    att = feed_root_attestation(signed).encode()
    ix = update_feeds_ix(program, payer, signed)
    assert bytes(ix.data) == bytes([ProgramInstruction.FEED_UPDATE_MANY]) + att + b"\x03" + b"".join(
        r.encode() for r in signed.root.reports)
    assert [m.pubkey for m in ix.accounts[3:]] == [feed_address(program, f"F{i}")[0] for i in range(3)]
    assert all(m.is_writable for m in ix.accounts[3:]) and ix.accounts[0].is_signer
    ix = verify_feed_root_ix(program, payer, feed_root_attestation(signed), 3, signed.root.root)
    assert bytes(ix.data) == bytes([ProgramInstruction.FEED_VERIFY_ROOT]) + att + b"\x03" + signed.root.root
    assert ix.accounts[2].pubkey == feed_root_address(program, signed.root.root)[0]
    items = [(2, signed.root.proof(2), signed.root.reports[2].encode())]
    ix = update_feeds_with_proofs_ix(program, payer, signed.root.root, items)
    proof = signed.root.proof(2)
    assert bytes(ix.data) == bytes([ProgramInstruction.FEED_UPDATE_WITH_PROOFS, 1, 2, len(proof)]) + b"".join(
        proof) + signed.root.reports[2].encode()
    assert ix.accounts[3].pubkey == feed_address(program, "F2")[0]
    ix = close_feed_root_ix(program, payer, signed.root.root, payer)
    assert bytes(ix.data) == bytes([ProgramInstruction.FEED_CLOSE_ROOT]) and ix.accounts[0].is_signer
