"""Accounts written by the program before an upgrade must stay usable after it (the README's upgrade
path keeps every account). Attack/regression: CloseServe grew the serve layout 988 -> 1,020 bytes
(rent payer at 988); a serve account created by the previous program (988 bytes) holding a bond
must still release it, take its verdict and let its credits be withdrawn, not freeze them."""

from __future__ import annotations

from solders.account import Account

from adapters.solana.program import (
    ProgramErrorCode,
    ServeAccount,
    close_serve_ix,
    release_bond_ix,
    serve_address,
)
from tests.support.solana import funded
from tests.unit.test_solana_taskboard_v2 import (  # noqa: F401 - board, served: fixtures
    BOND,
    NOW,
    SETTLEMENT_GRACE_SECONDS,
    _answered,
    balance,
    board,
    delivered,
    logged,
    served,
    serving_accounts,
    serving_verdict,
)

E = ProgramErrorCode
LEGACY_SERVE_LEN = 988  # the serve layout before CloseServe (no rent payer)



def _as_legacy(chain, request_id: bytes) -> None:
    """Rewrites the serve account as the previous program left it: 988 bytes, same lamports."""
    address = serve_address(chain.program_id, request_id)
    account = chain.svm.get_account(address)
    assert len(account.data) == 1020
    chain.svm.set_account(address, Account(account.lamports, bytes(account.data)[:LEGACY_SERVE_LEN],
                                           account.owner, account.executable, account.rent_epoch))


def test_a_pre_upgrade_serve_account_still_releases_its_bond(served) -> None:
    chain, env, refund, worker, result, result_id = _answered(served)
    _as_legacy(chain, env.message_id)
    chain.set_time(NOW + 601 + SETTLEMENT_GRACE_SECONDS)
    before = balance(chain, worker.pubkey())
    assert logged(chain.ok(release_bond_ix(chain.program_id, env.message_id, worker.pubkey())), "bond released")
    assert balance(chain, worker.pubkey()) == before + BOND
    legacy = ServeAccount.decode(bytes(chain.svm.get_account(serve_address(chain.program_id, env.message_id)).data))
    assert legacy.rent_payer is None and legacy.bond_held == 0
    # It has no rent payer: CloseServe refuses it rather than pay the lamports to a key read past its end.
    chain.fails(E.SERVE_WRONG_ADDRESS, close_serve_ix(chain.program_id, worker.pubkey(), env.message_id,
                                                       worker.pubkey()), signers=(worker,))


def test_a_pre_upgrade_serve_account_still_takes_its_verdict(served) -> None:
    chain, env, refund, worker, result, result_id = _answered(served)
    _as_legacy(chain, env.message_id)
    v_env = serving_verdict(chain, result, result_id)
    before = balance(chain, worker.pubkey())
    assert logged(delivered(chain, v_env, serving_accounts(chain, v_env, worker.pubkey(), refund.pubkey())),
                  "bond returned")
    assert balance(chain, worker.pubkey()) == before + BOND


# ==== root accounts: a closed root revived in the same transaction, a pre-upgrade (v1) root =========

from solders.system_program import TransferParams, transfer  # noqa: E402

from adapters.solana.program import close_root_ix, root_address  # noqa: E402
from relay.batch import Batch  # noqa: E402
from tests.unit.test_solana_batch import gateway, lamports, lane, prove, verify  # noqa: E402,F401

ROOT_RETENTION_SECONDS = 86_400
ROOT_LEN_V1 = 132


def test_a_closed_root_refunded_in_the_same_transaction_can_be_verified_again(gateway) -> None:
    """Attack: after the retention period anyone closes a root (its rent goes to its payer) and, in the
    same transaction, transfers rent into the closed address: the account survives as a zeroed
    program-owned account. VerifyRoot used to refuse it for good (ROOT_ALREADY_VERIFIED) while
    DeliverWithProof refuses it (ROOT_NOT_VERIFIED): the batch's undelivered messages were stuck."""
    verifier = funded(gateway, 10**10)
    batch = Batch.of(lane(4))
    ix, signers = verify(gateway, batch, payer=verifier)
    gateway.ok(ix, signers=signers)
    gateway.ok(prove(gateway, batch, 0))
    root = root_address(gateway.program_id, batch.root)
    clock = gateway.svm.get_clock()
    gateway.set_time(clock.unix_timestamp + ROOT_RETENTION_SECONDS + 1)
    attacker = funded(gateway, 10**10)
    rent = gateway.svm.minimum_balance_for_rent_exemption(164)
    gateway.ok(close_root_ix(gateway.program_id, attacker.pubkey(), batch.root, verifier.pubkey()),
               transfer(TransferParams(from_pubkey=attacker.pubkey(), to_pubkey=root, lamports=rent)),
               signers=(attacker,))
    zombie = gateway.svm.get_account(root)
    assert zombie.owner == gateway.program_id and not any(bytes(zombie.data))
    gateway.fails(E.ROOT_NOT_VERIFIED, prove(gateway, batch, 1))
    # The relayer verifies the root again and delivers the rest; delivered ones stay delivered.
    payer_before = lamports(gateway, gateway.payer.pubkey())
    gateway.ok(verify(gateway, batch)[0])
    assert lamports(gateway, gateway.payer.pubkey()) <= payer_before  # paid nothing back to itself
    gateway.fails(E.ALREADY_DELIVERED, prove(gateway, batch, 0))
    gateway.ok(prove(gateway, batch, 1))
    # Its (new) payer gets every lamport back, the attacker's included.
    held = lamports(gateway, root)
    before = lamports(gateway, gateway.payer.pubkey())
    gateway.ok(close_root_ix(gateway.program_id, gateway.payer.pubkey(), batch.root, gateway.payer.pubkey()))
    assert lamports(gateway, gateway.payer.pubkey()) == before + held - 5000


def test_a_pre_upgrade_v1_root_can_be_closed_and_verified_again(gateway) -> None:
    """A root verified by the previous program (132 bytes, version 1, no config) is refused by
    DeliverWithProof; CloseRoot used to refuse it too, so its rent was locked and its root could never
    be verified again (VerifyRoot: ROOT_ALREADY_VERIFIED)."""
    verifier = funded(gateway, 10**10)
    batch = Batch.of(lane(2))
    ix, signers = verify(gateway, batch, payer=verifier)
    gateway.ok(ix, signers=signers)
    root = root_address(gateway.program_id, batch.root)
    account = gateway.svm.get_account(root)
    data = bytearray(bytes(account.data)[:ROOT_LEN_V1])
    data[8] = 1
    gateway.svm.set_account(root, Account(account.lamports, bytes(data), account.owner, account.executable,
                                          account.rent_epoch))
    gateway.fails(E.ROOT_NOT_VERIFIED, prove(gateway, batch, 0))
    stranger = funded(gateway)
    gateway.fails(E.CLOSE_TOO_EARLY, close_root_ix(gateway.program_id, stranger.pubkey(), batch.root,
                                                   verifier.pubkey()), signers=(stranger,))
    before = lamports(gateway, verifier.pubkey())
    gateway.ok(close_root_ix(gateway.program_id, verifier.pubkey(), batch.root, verifier.pubkey()),
               signers=(verifier,))
    assert lamports(gateway, verifier.pubkey()) == before + account.lamports
    gateway.ok(verify(gateway, batch)[0])
    gateway.ok(prove(gateway, batch, 0))


def test_a_closed_v1_root_refunded_in_the_same_transaction_is_grown_back_to_a_v2_root(gateway) -> None:
    """The revived account can be shorter than a root (a v1 root's 132 bytes): VerifyRoot grows it."""
    verifier = funded(gateway, 10**10)
    batch = Batch.of(lane(2, first_nonce=50))
    ix, signers = verify(gateway, batch, payer=verifier)
    gateway.ok(ix, signers=signers)
    root = root_address(gateway.program_id, batch.root)
    account = gateway.svm.get_account(root)
    data = bytearray(bytes(account.data)[:ROOT_LEN_V1])
    data[8] = 1
    v1_rent = gateway.svm.minimum_balance_for_rent_exemption(ROOT_LEN_V1)
    gateway.svm.set_account(root, Account(v1_rent, bytes(data), account.owner, account.executable, account.rent_epoch))
    gateway.ok(close_root_ix(gateway.program_id, verifier.pubkey(), batch.root, verifier.pubkey()),
               transfer(TransferParams(from_pubkey=verifier.pubkey(), to_pubkey=root, lamports=v1_rent)),
               signers=(verifier,))
    assert len(gateway.svm.get_account(root).data) == ROOT_LEN_V1
    gateway.ok(verify(gateway, batch)[0])
    revived = gateway.svm.get_account(root)
    assert len(revived.data) == 164 and revived.lamports == gateway.svm.minimum_balance_for_rent_exemption(164)
    gateway.ok(prove(gateway, batch, 0))
    gateway.ok(prove(gateway, batch, 1))
