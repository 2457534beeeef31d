"""Attack: after its retention period anyone closes a feed root (its rent goes to its payer) and, in the
same transaction, transfers rent back into the closed address, so the account survives as a zeroed
program-owned account. VerifyFeedRoot used to refuse it for good (FEED_ROOT_ALREADY_VERIFIED) while
UpdateFeedsWithProofs refuses it (FEED_ROOT_NOT_VERIFIED): the signed root could never be used again.
The batch-root twin is in tests/unit/test_solana_legacy_accounts.py."""

from __future__ import annotations

from solders.keypair import Keypair
from solders.system_program import TransferParams, transfer

from adapters.solana.feeds import FEED_ROOT_ACCOUNT_LEN, close_feed_root_ix, feed_root_address
from adapters.solana.program import ProgramErrorCode
from tests.unit.test_solana_feeds_multi import chain, proofs_ix, signed_root, verify_ix  # noqa: F401 - fixture

E = ProgramErrorCode


def test_a_closed_feed_root_refunded_in_the_same_transaction_can_be_verified_again(chain) -> None:
    signed = signed_root("four feeds")
    chain.ok(verify_ix(chain, signed))
    address = feed_root_address(chain.program_id, signed.root.root)[0]
    chain.set_time(chain.svm.get_clock().unix_timestamp + 86_400)
    attacker = Keypair()
    chain.svm.airdrop(attacker.pubkey(), 10**9)
    rent = chain.svm.minimum_balance_for_rent_exemption(FEED_ROOT_ACCOUNT_LEN)
    chain.ok(close_feed_root_ix(chain.program_id, attacker.pubkey(), signed.root.root, chain.payer.pubkey()),
             transfer(TransferParams(from_pubkey=attacker.pubkey(), to_pubkey=address, lamports=rent)),
             signers=(attacker,))
    zombie = chain.svm.get_account(address)
    assert zombie.owner == chain.program_id and not any(bytes(zombie.data))
    chain.fails(E.FEED_ROOT_NOT_VERIFIED, proofs_ix(chain, signed, [0]))
    chain.ok(verify_ix(chain, signed))
    chain.ok(proofs_ix(chain, signed, [0]))
    held = chain.svm.get_balance(address)
    before = chain.svm.get_balance(chain.payer.pubkey())
    chain.ok(close_feed_root_ix(chain.program_id, chain.payer.pubkey(), signed.root.root, chain.payer.pubkey()))
    assert chain.svm.get_balance(chain.payer.pubkey()) == before + held - 5000
