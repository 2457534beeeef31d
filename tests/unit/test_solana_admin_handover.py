"""The Solana program's two-step admin handover (ProposeAdmin 53 / AcceptAdmin 54) in LiteSVM with the
built tessera.so, each defence performed as an attack: a stranger proposing or accepting, the
candidate acting before it accepts, the old admin acting after the handover (pause, fees, another
proposal), a replaced candidate accepting, a cancelled proposal, accepting with nothing pending, a
lookalike config naming the attacker as candidate. The migration: a config initialized before the
handover existed (336 bytes) grows by 32 bytes on the first proposal, the admin paying the rent.
`relay deploy`'s side: --owner / --upgrade-authority that nobody could sign for are refused, and the
upgrade authority handed over from a keypair file goes through SetAuthorityChecked (the loader
refuses it unless the new authority signs)."""

from __future__ import annotations

import json

import pytest
from solders.account import Account
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.pubkey import Pubkey
from solders.transaction_metadata import FailedTransactionMetadata

from adapters.solana.deploy import (PROGRAM_SO_PATH, deploy_program_litesvm, programdata_authority,
                                    set_authority_checked_ix)
from adapters.solana.deployment import _owner, _upgrade_authority
from adapters.solana.fee_program import set_beneficiary_ix
from adapters.solana.program import (CONFIG_LEN, CONFIG_LEN_WITH_PENDING, ProgramErrorCode, ProgramInstruction,
                                     accept_admin_ix, committee_address, pause_ix, programdata_address,
                                     propose_admin_ix)
from relay.deployment import DeploymentError
from tests.support.solana import PROGRAM_KEYPAIR, Chain, funded, with_committee

E = ProgramErrorCode


def _config_bytes(chain: Chain) -> bytes:
    account = chain.svm.get_account(committee_address(chain.program_id)[0])
    assert account is not None
    return bytes(account.data)


def _config_lamports(chain: Chain) -> int:
    account = chain.svm.get_account(committee_address(chain.program_id)[0])
    assert account is not None
    return account.lamports


def _propose(chain: Chain, signer: Keypair, candidate: Pubkey | None):
    return propose_admin_ix(chain.program_id, signer.pubkey(), candidate)


def _hand_over(chain: Chain) -> Keypair:
    """The deployer (chain.payer) hands the admin over to a new key; returns it."""
    new_admin = funded(chain)
    chain.ok(_propose(chain, chain.payer, new_admin.pubkey()))
    chain.ok(accept_admin_ix(chain.program_id, new_admin.pubkey()), signers=(new_admin,))
    return new_admin


def test_a_stranger_cannot_propose(committee: Chain) -> None:
    stranger = funded(committee)
    committee.fails(E.NOT_ADMIN, _propose(committee, stranger, stranger.pubkey()), signers=(stranger,))
    assert len(_config_bytes(committee)) == CONFIG_LEN  # nothing grew
    # Not as a cancel either, and not by naming the admin without its signature.
    committee.fails(E.NOT_ADMIN, _propose(committee, stranger, None), signers=(stranger,))
    # The admin's key named without its signature (an admin that is not the fee payer).
    admin = _hand_over(committee)
    unsigned = propose_admin_ix(committee.program_id, admin.pubkey(), stranger.pubkey())
    unsigned.accounts = [AccountMeta(admin.pubkey(), False, True), *unsigned.accounts[1:]]
    committee.fails(E.ACCOUNT_NOT_SIGNER, unsigned)
    assert committee.config().pending_admin is None and committee.config().admin == admin.pubkey()


def test_a_stranger_cannot_accept_and_the_candidate_has_no_power_before_accepting(committee: Chain) -> None:
    candidate, stranger = funded(committee), funded(committee)
    committee.ok(_propose(committee, committee.payer, candidate.pubkey()))
    assert committee.config().pending_admin == candidate.pubkey()
    committee.fails(E.NOT_PENDING_ADMIN, accept_admin_ix(committee.program_id, stranger.pubkey()), signers=(stranger,))
    # The candidate's key named without its signature.
    forged = accept_admin_ix(committee.program_id, candidate.pubkey())
    forged.accounts = [AccountMeta(candidate.pubkey(), False, False), *forged.accounts[1:]]
    committee.fails(E.ACCOUNT_NOT_SIGNER, forged)
    # Until it accepts, the candidate is nobody: the admin keeps every power.
    committee.fails(E.NOT_ADMIN, pause_ix(committee.program_id, candidate.pubkey()), signers=(candidate,))
    committee.ok(pause_ix(committee.program_id, committee.payer.pubkey()))
    committee.ok(pause_ix(committee.program_id, committee.payer.pubkey(), paused=False))
    assert committee.config().admin == committee.payer.pubkey()


def test_after_the_handover_the_old_admin_is_refused_and_the_new_one_acts(committee: Chain) -> None:
    old = committee.payer
    new_admin = _hand_over(committee)
    state = committee.config()
    assert state.admin == new_admin.pubkey() and state.pending_admin is None
    pid = committee.program_id
    committee.fails(E.NOT_ADMIN, pause_ix(pid, old.pubkey()))
    committee.fails(E.NOT_ADMIN, set_beneficiary_ix(pid, old.pubkey(), old.pubkey()))
    committee.fails(E.NOT_ADMIN, _propose(committee, old, old.pubkey()))  # no taking it back
    committee.fails(E.NO_ADMIN_PENDING, accept_admin_ix(pid, old.pubkey()))  # nor by replaying the accept
    committee.ok(pause_ix(pid, new_admin.pubkey()), signers=(new_admin,))
    assert committee.config().paused
    committee.ok(pause_ix(pid, new_admin.pubkey(), paused=False), signers=(new_admin,))
    committee.ok(set_beneficiary_ix(pid, new_admin.pubkey(), new_admin.pubkey()), signers=(new_admin,))
    # The new admin can hand it on (here back) with the same two steps.
    committee.ok(_propose(committee, new_admin, old.pubkey()), signers=(new_admin,))
    committee.ok(accept_admin_ix(pid, old.pubkey()))
    assert committee.config().admin == old.pubkey()
    committee.fails(E.NOT_ADMIN, pause_ix(pid, new_admin.pubkey()), signers=(new_admin,))


def test_a_replaced_candidate_cannot_accept(committee: Chain) -> None:
    first, second = funded(committee), funded(committee)
    committee.ok(_propose(committee, committee.payer, first.pubkey()))
    committee.ok(_propose(committee, committee.payer, second.pubkey()))
    assert committee.config().pending_admin == second.pubkey()
    committee.fails(E.NOT_PENDING_ADMIN, accept_admin_ix(committee.program_id, first.pubkey()), signers=(first,))
    committee.ok(accept_admin_ix(committee.program_id, second.pubkey()), signers=(second,))
    assert committee.config().admin == second.pubkey()
    committee.fails(E.NO_ADMIN_PENDING, accept_admin_ix(committee.program_id, first.pubkey()), signers=(first,))


def test_proposing_the_zero_key_cancels(committee: Chain) -> None:
    candidate = funded(committee)
    committee.ok(_propose(committee, committee.payer, candidate.pubkey()))
    committee.ok(_propose(committee, committee.payer, None))
    assert committee.config().pending_admin is None
    assert _config_bytes(committee)[336:368] == bytes(32)
    committee.fails(E.NO_ADMIN_PENDING, accept_admin_ix(committee.program_id, candidate.pubkey()), signers=(candidate,))
    assert committee.config().admin == committee.payer.pubkey()


def test_accept_with_nothing_pending_is_refused(committee: Chain) -> None:
    # A config as InitCommittee creates it (336 bytes): no room, nothing pending.
    assert len(_config_bytes(committee)) == CONFIG_LEN
    stranger = funded(committee)
    committee.fails(E.NO_ADMIN_PENDING, accept_admin_ix(committee.program_id, stranger.pubkey()), signers=(stranger,))
    committee.fails(E.NO_ADMIN_PENDING, accept_admin_ix(committee.program_id, committee.payer.pubkey()))
    # Cancelling when nothing was ever proposed changes nothing (and grows nothing).
    committee.ok(_propose(committee, committee.payer, None))
    assert len(_config_bytes(committee)) == CONFIG_LEN


def test_a_lookalike_config_naming_the_attacker_is_not_the_config(committee: Chain) -> None:
    # The attacker writes its own account with the config's magic, its key as pending admin: the
    # program trusts the config only at its PDA address.
    attacker = funded(committee)
    fake = Keypair().pubkey()
    real = _config_bytes(committee)
    forged = bytearray(real) + bytes(attacker.pubkey())
    committee.svm.set_account(fake, Account(10**9, bytes(forged), committee.program_id, False, 0))
    ix = Instruction(committee.program_id, bytes([ProgramInstruction.ACCEPT_ADMIN]),
                     [AccountMeta(attacker.pubkey(), True, False), AccountMeta(fake, False, True)])
    committee.fails(E.CONFIG_WRONG_ADDRESS, ix, signers=(attacker,))
    assert committee.config().admin == committee.payer.pubkey()


def test_migration_the_first_proposal_grows_an_existing_config_and_keeps_every_field(committee: Chain) -> None:
    before, lamports_before = _config_bytes(committee), _config_lamports(committee)
    assert len(before) == CONFIG_LEN
    candidate = funded(committee)
    # The growth's rent moves through the system program: another program in its place is refused.
    wrong_system = propose_admin_ix(committee.program_id, committee.payer.pubkey(), candidate.pubkey())
    wrong_system.accounts = [*wrong_system.accounts[:2], AccountMeta(Keypair().pubkey(), False, False)]
    committee.fails(E.WRONG_SYSTEM_PROGRAM, wrong_system)
    result = committee.ok(_propose(committee, committee.payer, candidate.pubkey()))
    print(f"\nProposeAdmin growing the config: {result.compute_units_consumed():,} CU")
    after = _config_bytes(committee)
    assert len(after) == CONFIG_LEN_WITH_PENDING
    assert after[:CONFIG_LEN] == before  # every field as it was
    assert after[CONFIG_LEN:] == bytes(candidate.pubkey())
    rent = committee.svm.minimum_balance_for_rent_exemption(CONFIG_LEN_WITH_PENDING)
    assert _config_lamports(committee) >= rent > lamports_before
    # A second proposal does not grow or charge again.
    result = committee.ok(_propose(committee, committee.payer, committee.payer.pubkey()))
    print(f"ProposeAdmin (room already there): {result.compute_units_consumed():,} CU")
    assert len(_config_bytes(committee)) == CONFIG_LEN_WITH_PENDING and _config_lamports(committee) == rent
    result = committee.ok(accept_admin_ix(committee.program_id, committee.payer.pubkey()))
    print(f"AcceptAdmin: {result.compute_units_consumed():,} CU")
    # The grown config serves every other instruction as before.
    committee.ok(pause_ix(committee.program_id, committee.payer.pubkey()))
    assert committee.config().paused and committee.config().current_epoch == 1


def test_the_handover_runs_with_the_mainnet_feature_set() -> None:
    svm = LiteSVM().with_mainnet_features()
    payer = Keypair()
    svm.airdrop(payer.pubkey(), 10 * 10**9)
    chain = with_committee(Chain(svm, payer, deploy_program_litesvm(svm, payer, PROGRAM_SO_PATH.read_bytes(),
                                                                     PROGRAM_KEYPAIR)))
    new_admin = _hand_over(chain)
    chain.fails(E.NOT_ADMIN, pause_ix(chain.program_id, payer.pubkey()))
    chain.ok(pause_ix(chain.program_id, new_admin.pubkey()), signers=(new_admin,))


# --- relay deploy's side -----------------------------------------------------------------------


def test_deploy_refuses_an_owner_or_upgrade_authority_nobody_can_sign_for(tmp_path) -> None:
    with pytest.raises(DeploymentError, match="is an EVM address; give the base58 public key"):
        _owner("0x" + "ab" * 20, "sol")
    pda = Pubkey.find_program_address([b"vault"], Keypair().pubkey())[0]
    with pytest.raises(DeploymentError, match="could never accept the program's admin"):
        _owner(str(pda), "sol")
    with pytest.raises(DeploymentError, match="is not on the ed25519 curve"):
        _upgrade_authority(str(pda))
    with pytest.raises(DeploymentError, match="neither a base58 Solana public key nor a keypair file"):
        _upgrade_authority(str(tmp_path / "missing.json"))
    key = Keypair()
    assert _owner(str(key.pubkey()), "sol") == key.pubkey()
    assert _upgrade_authority(str(key.pubkey())) == (key.pubkey(), None)
    (tmp_path / "authority.json").write_text(json.dumps(list(bytes(key))))
    assert _upgrade_authority(str(tmp_path / "authority.json")) == (key.pubkey(), key)


def test_set_authority_checked_needs_the_new_authority_to_sign(chain: Chain) -> None:
    programdata = programdata_address(chain.program_id)
    meant = Keypair()
    # A key named without its signature (a typo, or a key nobody holds) is refused by the loader.
    unsigned = set_authority_checked_ix(programdata, chain.payer.pubkey(), meant.pubkey())
    unsigned.accounts = [*unsigned.accounts[:2], AccountMeta(meant.pubkey(), False, False)]
    result = chain.send(unsigned)
    assert isinstance(result, FailedTransactionMetadata) and "MissingRequiredSignature" in str(result.err())
    chain.ok(set_authority_checked_ix(programdata, chain.payer.pubkey(), meant.pubkey()), signers=(meant,))
    account = chain.svm.get_account(programdata)
    assert account is not None and programdata_authority(bytes(account.data)) == meant.pubkey()
