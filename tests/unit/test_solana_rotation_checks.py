"""RotateCommittee and InitCommittee refuse what CommitteeVerifier (EVM) refuses: a rotation whose
src_sender is not the committee's (zero) or whose dst_receiver is not this program, and a group key
outside G2 — stored, such a key would fail every later verification (the committee locked out).

The Solana runtime has no G2 scalar multiplication, but its alt_bn128 pairing syscall validates its
G2 input (on the twist and in the order-r subgroup) like the EVM 0x08 precompile; the program stores a
key only after one pairing with it succeeds. The key below is on the twist but outside the subgroup
(tests/vectors/bls_bn254.json), so these tests also pin that behaviour of the runtime."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from adapters.solana.program import ProgramErrorCode, init_committee_ix, rotate_committee_ix, verify_signature_ix
from attest.bn254 import P as FIELD_MODULUS, NotInSubgroupError, decode_g2, is_on_g2_curve
from tests.support.solana import ALICE, BOB, DOMAIN, PROGRAM_ID, Chain, envelope, rotation_envelope

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "bls_bn254.json"


def outside_g2() -> bytes:
    case = next(c for c in json.loads(VECTORS.read_text())["cases"] if "outside the G2 subgroup" in c["name"])
    key = bytes.fromhex(case["group_key"].removeprefix("0x"))
    words = [int.from_bytes(key[i:i + 32], "big") for i in range(0, 128, 32)]
    assert is_on_g2_curve(((words[1], words[0]), (words[3], words[2])))  # on the twist ...
    with pytest.raises(NotInSubgroupError):  # ... but not in G2
        decode_g2(key)
    return key


def rotate(committee: Chain, rotation: bytes):
    return rotate_committee_ix(committee.program_id, ALICE.attest(rotation, 1), rotation)


def assert_unchanged(committee: Chain) -> None:
    config = committee.config()
    assert (config.current_epoch, config.current_key) == (1, ALICE.group_key)


def test_the_committee_deployment_is_the_receiver(committee: Chain) -> None:
    assert committee.program_id == PROGRAM_ID
    committee.ok(rotate(committee, rotation_envelope(2, BOB.group_key)))
    assert committee.config().current_key == BOB.group_key


def test_rotation_from_a_nonzero_sender_is_refused(committee: Chain) -> None:
    """A user-written 'rotation' carries the user as its sender; the committee's own has zero."""
    rotation = rotation_envelope(2, BOB.group_key, src_sender=b"\x00" * 12 + b"\x11" * 20)
    committee.fails(ProgramErrorCode.WRONG_SOURCE_SENDER, rotate(committee, rotation))
    assert_unchanged(committee)


@pytest.mark.parametrize("receiver", [Keypair().pubkey(), None], ids=["another program", "zero"])
def test_rotation_for_another_receiver_is_refused(committee: Chain, receiver) -> None:
    """A rotation the committee signed for another deployment on the same domain cannot be replayed here."""
    rotation = rotation_envelope(2, BOB.group_key, receiver=receiver or Pubkey.default())
    committee.fails(ProgramErrorCode.WRONG_DESTINATION_RECEIVER, rotate(committee, rotation))
    assert_unchanged(committee)


def test_rotation_to_a_key_outside_g2_is_refused(committee: Chain) -> None:
    rotation = rotation_envelope(2, outside_g2())
    committee.fails(ProgramErrorCode.KEY_NOT_IN_SUBGROUP, rotate(committee, rotation))
    assert_unchanged(committee)
    raw = envelope()
    committee.ok(verify_signature_ix(committee.program_id, ALICE.attest(raw, 1), raw))  # still verifying


@pytest.mark.parametrize(
    ("key", "code"),
    [
        (FIELD_MODULUS.to_bytes(32, "big") + BOB.group_key[32:], ProgramErrorCode.KEY_OUT_OF_RANGE),
        (b"\x00" * 64 + b"\x01" * 64, ProgramErrorCode.KEY_NOT_IN_SUBGROUP),  # not even on the twist
    ],
    ids=["coordinate >= p", "off the twist"],
)
def test_rotation_to_a_malformed_key_is_refused(committee: Chain, key: bytes, code: ProgramErrorCode) -> None:
    committee.fails(code, rotate(committee, rotation_envelope(2, key)))
    assert_unchanged(committee)


def test_rotation_refusals_need_the_committee_signature_first(committee: Chain) -> None:
    """A key outside G2 in a rotation nobody signed is refused as unsigned, not as a bad key: the
    extra pairing is spent only on rotations the current committee really signed."""
    rotation = rotation_envelope(2, outside_g2())
    committee.fails(ProgramErrorCode.SIGNATURE_INVALID,
                    rotate_committee_ix(committee.program_id, BOB.attest(rotation, 1), rotation))


def test_init_committee_refuses_a_key_outside_g2(chain: Chain) -> None:
    ix = init_committee_ix(chain.program_id, chain.payer.pubkey(), domain=DOMAIN, epoch=1, n=3, t=2,
                           group_key=outside_g2())
    chain.fails(ProgramErrorCode.KEY_NOT_IN_SUBGROUP, ix)


def test_rotation_with_its_subgroup_check_fits_the_compute_budget(committee: Chain) -> None:
    meta = committee.ok(rotate(committee, rotation_envelope(2, BOB.group_key)))
    print(f"\nRotateCommittee with the subgroup check: {meta.compute_units_consumed()} CU")
    assert meta.compute_units_consumed() <= 200_000  # the default per-instruction limit
