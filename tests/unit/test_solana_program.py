"""The Tessera Solana program (contracts/solana) built by our own linker, deployed through the
upgradeable BPF loader into LiteSVM (the real Agave runtime), and exercised instruction by instruction."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import struct
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from solders.account import Account
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.system_program import CreateAccountParams, create_account, transfer, TransferParams
from solders.transaction_metadata import TransactionMetadata

from adapters.solana.deploy import PROGRAM_SO_PATH, DeploymentError, deploy_program_litesvm
from adapters.solana.program import (
    BPF_LOADER_UPGRADEABLE_ID,
    Attestation,
    G1Hint,
    ProgramErrorCode,
    committee_address,
    probe_ix,
    programdata_address,
    rotate_committee_ix,
    verify_digest_ix,
    verify_signature_ix,
)
from attest.bn254 import P as FIELD_MODULUS
from relay.envelope import keccak256, message_digest
from relay.protocol import MessageKind
from tests.support.solana import ALICE, BOB, DOMAIN, Chain, custom_error, envelope, rotation_envelope

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "vectors"


def _load_build_module():
    spec = importlib.util.spec_from_file_location("tessera_solana_build", ROOT / "contracts" / "solana" / "build.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


build = _load_build_module()
# `make test` installs clang-16 in a root shell (scripts/ensure-clang.sh), as in CI: there these
# tests must run, and a missing clang fails them. Only elsewhere is a missing clang a skip.
CAN_INSTALL_CLANG = os.geteuid() == 0


@pytest.fixture
def clang() -> str:
    path = build.find_clang()
    if path is None:
        pytest.fail("clang-16 is missing in a root shell, where `make test` installs it: run scripts/ensure-clang.sh "
                    "(apt-get install clang-16), or set TESSERA_CLANG to a clang-16 binary")
    return path


def needs_clang(test):
    skip = pytest.mark.skipif(build.find_clang() is None and not CAN_INSTALL_CLANG,
                              reason="clang-16 is not installed and this is not a root shell, where `make test` "
                                     "would install it: sudo apt-get install clang-16 to run the rebuild checks")
    return skip(pytest.mark.usefixtures("clang")(test))


# --- build -----------------------------------------------------------------------------------


@needs_clang
def test_build_is_reproducible_and_matches_the_committed_program(tmp_path: Path) -> None:
    first = build.build(tmp_path / "a.so")
    second = build.build(tmp_path / "b.so")
    assert first == second
    assert (tmp_path / "a.so").read_bytes() == first
    assert PROGRAM_SO_PATH.read_bytes() == first, (
        "contracts/solana/tessera.so is stale: run `.venv/bin/python contracts/solana/build.py`"
    )


@needs_clang
def test_build_refuses_writable_globals(tmp_path: Path) -> None:
    (tmp_path / "bad.c").write_text("#include <stdint.h>\nuint64_t counter;\n"
                                    "uint64_t entrypoint(const uint8_t *in) { return ++counter + in[0]; }\n")
    with pytest.raises(build.BuildError, match="writable data"):
        build.link(build.compile_sources(tmp_path))


@needs_clang
def test_build_refuses_function_pointers(tmp_path: Path) -> None:
    (tmp_path / "fp.c").write_text(
        "#include <stdint.h>\n"
        "static uint64_t f(uint64_t x) { return x + 1; }\nstatic uint64_t g(uint64_t x) { return x + 2; }\n"
        "uint64_t entrypoint(const uint8_t *in) { uint64_t (*h)(uint64_t) = in[0] ? f : g; return h(in[1]); }\n"
    )
    with pytest.raises(build.BuildError, match="function pointers"):
        build.link(build.compile_sources(tmp_path))


def test_python_error_codes_match_the_c_header() -> None:
    header = (ROOT / "contracts" / "solana" / "src" / "tessera.h").read_text()
    in_c = {name: int(value, 0) for name, value in re.findall(r"\bERR_([A-Z0-9_]+) = (0x[0-9a-f]+|\d+)", header)}
    assert in_c == {code.name: code.value for code in ProgramErrorCode}


def test_committed_program_is_sbpfv3() -> None:
    elf = PROGRAM_SO_PATH.read_bytes()
    assert elf[:4] == b"\x7fELF" and elf[4] == 2 and elf[5] == 1
    e_type, e_machine = struct.unpack_from("<HH", elf, 16)
    (e_flags,) = struct.unpack_from("<I", elf, 48)
    assert (e_type, e_machine, e_flags) == (3, 247, 3)  # ET_DYN, EM_BPF, SBPFv3
    e_phoff, e_phnum = struct.unpack_from("<Q", elf, 32)[0], struct.unpack_from("<H", elf, 56)[0]
    phdrs = [struct.unpack_from("<IIQQQQQ", elf, e_phoff + 56 * i) for i in range(e_phnum)]
    # exactly rodata (PF_R at 0) and text (PF_X at 1 << 32): no PT_DYNAMIC, nothing for the loader to relocate
    assert [(p_type, flags, vaddr, paddr) for p_type, flags, _, vaddr, paddr, _, _ in phdrs] == [
        (1, 4, 0, 0), (1, 1, 1 << 32, 1 << 32)
    ]


# --- deployment + probe ------------------------------------------------------------------------


def test_deploy_through_upgradeable_loader_and_probe(chain: Chain) -> None:
    program = chain.svm.get_account(chain.program_id)
    assert program.owner == BPF_LOADER_UPGRADEABLE_ID and program.executable
    programdata = chain.svm.get_account(programdata_address(chain.program_id))
    assert bytes(programdata.data)[13:45] == bytes(chain.payer.pubkey())  # upgrade authority = deployer

    target = Keypair()
    payload = b"tessera probe \x00\x01\x02" * 7
    create = create_account(CreateAccountParams(
        from_pubkey=chain.payer.pubkey(), to_pubkey=target.pubkey(),
        lamports=chain.svm.minimum_balance_for_rent_exemption(32), space=32, owner=chain.program_id,
    ))
    meta = chain.ok(create, probe_ix(chain.program_id, target.pubkey(), payload), signers=(target,))
    expected = keccak256(payload)
    assert bytes(chain.svm.get_account(target.pubkey()).data) == expected
    assert bytes(meta.return_data().data) == expected
    assert "Program log: tessera: probe" in meta.logs()


def test_probe_refuses_accounts_it_does_not_own(chain: Chain) -> None:
    chain.fails(ProgramErrorCode.WRONG_ACCOUNT_OWNER, probe_ix(chain.program_id, chain.payer.pubkey(), b"x"))


def test_probe_cannot_overwrite_the_committee_config(committee: Chain) -> None:
    config = committee_address(committee.program_id)[0]
    before = bytes(committee.svm.get_account(config).data)
    committee.fails(ProgramErrorCode.WRONG_ACCOUNT_SIZE, probe_ix(committee.program_id, config, b"x"))
    assert bytes(committee.svm.get_account(config).data) == before


def test_hint_matches_the_shared_vectors() -> None:
    for case in _bls_cases():
        if case["valid"]:
            hint = G1Hint.for_digest(_hex(case["digest"]))
            assert (hint.k, hint.y) == (case["k"], _hex(case["h"])[32:])


def test_unknown_instruction(chain: Chain) -> None:
    chain.fails(ProgramErrorCode.UNKNOWN_INSTRUCTION, Instruction(chain.program_id, bytes([200]), []))


# --- BLS vectors -------------------------------------------------------------------------------


def _bls_cases() -> list[dict]:
    return json.loads((VECTORS / "bls_bn254.json").read_text())["cases"]


def _hex(value: str) -> bytes:
    return bytes.fromhex(value.removeprefix("0x"))


def test_every_bls_vector_gets_the_expected_verdict(chain: Chain) -> None:
    cases = _bls_cases()
    assert len(cases) >= 10
    verdicts = {}
    for case in cases:
        h = _hex(case["h"])
        digest = _hex(case["digest"])
        # The vector's H must be what the program recomputes from the digest and k.
        assert int.from_bytes(h[:32], "big") == (int.from_bytes(digest, "big") % FIELD_MODULUS + case["k"]) % FIELD_MODULUS
        hint = G1Hint.for_point(case["k"], int.from_bytes(h[32:], "big"))
        ix = verify_digest_ix(chain.program_id, signature=_hex(case["signature"]), hint=hint, digest=digest,
                              group_key=_hex(case["group_key"]))
        verdicts[case["name"]] = isinstance(chain.send(ix), TransactionMetadata)
    assert verdicts == {case["name"]: case["valid"] for case in cases}


def test_negated_root_with_negated_signature_is_refused(chain: Chain) -> None:
    # (H, sigma) -> (-H, -sigma) passes the pairing; only the principal-root check stops it.
    digest = keccak256(b"malleability")
    signature, hint = ALICE.sign_digest(digest)
    neg = lambda b: ((-int.from_bytes(b, "big")) % FIELD_MODULUS).to_bytes(32, "big")  # noqa: E731
    neg_sig = signature[:32] + neg(signature[32:])
    y = (-int.from_bytes(hint.y, "big")) % FIELD_MODULUS
    chain.ok(verify_digest_ix(chain.program_id, signature=signature, hint=hint, digest=digest, group_key=ALICE.group_key))
    chain.fails(
        ProgramErrorCode.HINT_NOT_CANONICAL,
        verify_digest_ix(chain.program_id, signature=neg_sig, hint=G1Hint.for_point(hint.k, y), digest=digest,
                         group_key=ALICE.group_key),
    )


def test_hint_that_is_not_on_the_curve_is_refused(chain: Chain) -> None:
    digest = keccak256(b"off curve")
    signature, hint = ALICE.sign_digest(digest)
    wrong_k = G1Hint.for_point((hint.k + 1) % 256, int.from_bytes(hint.y, "big"))
    chain.fails(ProgramErrorCode.HINT_NOT_ON_CURVE,
                verify_digest_ix(chain.program_id, signature=signature, hint=wrong_k, digest=digest,
                                 group_key=ALICE.group_key))


# --- committee ---------------------------------------------------------------------------------


def test_init_committee_stores_the_key(committee: Chain) -> None:
    config = committee.config()
    assert config.domain == DOMAIN and config.current_epoch == 1 and config.current_key == ALICE.group_key
    assert (config.current_n, config.current_t) == (3, 2)
    assert config.admin == committee.payer.pubkey() and config.previous_epoch is None
    assert config.bump == committee_address(committee.program_id)[1]
    assert config.updated_at == 1_700_000_000


def test_init_committee_only_once(committee: Chain) -> None:
    result = committee.init_committee(BOB)
    assert custom_error(result) == ProgramErrorCode.CONFIG_ALREADY_INITIALIZED
    assert committee.config().current_key == ALICE.group_key


def test_init_committee_requires_the_upgrade_authority(chain: Chain) -> None:
    stranger = Keypair()
    chain.svm.airdrop(stranger.pubkey(), 10**9)
    assert custom_error(chain.init_committee(admin=stranger)) == ProgramErrorCode.NOT_UPGRADE_AUTHORITY


def test_init_committee_works_when_the_address_was_prefunded(chain: Chain) -> None:
    config = committee_address(chain.program_id)[0]
    chain.ok(transfer(TransferParams(from_pubkey=chain.payer.pubkey(), to_pubkey=config, lamports=1_000_000)))
    assert isinstance(chain.init_committee(), TransactionMetadata)
    assert chain.config().current_key == ALICE.group_key


def test_verify_signature_against_envelope_vectors(committee: Chain) -> None:
    cases = json.loads((VECTORS / "envelope_v1.json").read_text())["cases"]
    for case in cases:
        raw = _hex(case["encoded"])
        attestation = ALICE.attest(raw, 1)
        ix = verify_signature_ix(committee.program_id, attestation, raw)
        if case["dst_domain"] != DOMAIN:
            committee.fails(ProgramErrorCode.WRONG_DESTINATION_DOMAIN, ix)
            continue
        meta = committee.ok(ix)
        assert bytes(meta.return_data().data) == _hex(case["message_id"])
        if case["epoch"] == 1:
            assert message_digest(1, _hex(case["message_id"])) == _hex(case["digest"])
    assert any(case["dst_domain"] == DOMAIN for case in cases)


def test_verify_signature_refusals(committee: Chain) -> None:
    raw = envelope()
    good = ALICE.attest(raw, 1)
    pid = committee.program_id
    committee.ok(verify_signature_ix(pid, good, raw))
    tampered = envelope(payload=b"hellO")
    # the old hint does not hash the tampered envelope; a fresh hint meets the signature of another message
    committee.fails(ProgramErrorCode.HINT_NOT_ON_CURVE, verify_signature_ix(pid, good, tampered))
    rehinted = Attestation.for_envelope(tampered, 1, good.signature)
    committee.fails(ProgramErrorCode.SIGNATURE_INVALID, verify_signature_ix(pid, rehinted, tampered))
    committee.fails(ProgramErrorCode.SIGNATURE_INVALID, verify_signature_ix(pid, BOB.attest(raw, 1), raw))
    committee.fails(ProgramErrorCode.EPOCH_UNKNOWN, verify_signature_ix(pid, ALICE.attest(raw, 2), raw))
    committee.fails(ProgramErrorCode.ENVELOPE_MALFORMED, verify_signature_ix(pid, good, raw[:40]))
    committee.fails(ProgramErrorCode.SIGNATURE_INFINITY,
                    verify_signature_ix(pid, Attestation(1, bytes(64), good.hint), raw))


def test_verify_signature_refuses_a_config_copy_at_another_address(committee: Chain) -> None:
    real = committee.svm.get_account(committee_address(committee.program_id)[0])
    fake = Keypair().pubkey()
    committee.svm.set_account(fake, Account(real.lamports, bytes(real.data), committee.program_id, False, 0))
    raw = envelope()
    ix = verify_signature_ix(committee.program_id, ALICE.attest(raw, 1), raw)
    ix = Instruction(ix.program_id, ix.data, [type(ix.accounts[0])(fake, False, False)])
    committee.fails(ProgramErrorCode.CONFIG_WRONG_ADDRESS, ix)


def test_verify_signature_before_init(chain: Chain) -> None:
    raw = envelope()
    chain.fails(ProgramErrorCode.CONFIG_NOT_INITIALIZED, verify_signature_ix(chain.program_id, ALICE.attest(raw, 1), raw))


# --- rotation ----------------------------------------------------------------------------------


def test_rotation_signed_by_the_current_committee_is_applied(committee: Chain) -> None:
    rotation = rotation_envelope(2, BOB.group_key, grace=600)
    meta = committee.ok(rotate_committee_ix(committee.program_id, ALICE.attest(rotation, 1), rotation))
    assert bytes(meta.return_data().data) == keccak256(rotation)
    config = committee.config()
    assert (config.current_epoch, config.current_key, config.current_n, config.current_t) == (2, BOB.group_key, 4, 3)
    assert (config.previous_epoch, config.previous_key) == (1, ALICE.group_key)
    assert config.previous_valid_until == 1_700_000_000 + 600

    raw = envelope(nonce=7)
    pid = committee.program_id
    committee.ok(verify_signature_ix(pid, BOB.attest(raw, 2), raw))
    committee.ok(verify_signature_ix(pid, ALICE.attest(raw, 1), raw))  # old key, inside the grace period
    committee.set_time(1_700_000_000 + 600)
    committee.ok(verify_signature_ix(pid, ALICE.attest(raw, 1), raw))  # the last second of grace
    committee.set_time(1_700_000_000 + 601)
    committee.fails(ProgramErrorCode.EPOCH_EXPIRED, verify_signature_ix(pid, ALICE.attest(raw, 1), raw))
    committee.ok(verify_signature_ix(pid, BOB.attest(raw, 2), raw))
    # the same rotation again (replay) is refused: its new epoch is no longer current + 1
    committee.fails(ProgramErrorCode.ROTATION_NOT_CURRENT_SIGNER,
                    rotate_committee_ix(pid, ALICE.attest(rotation, 1), rotation))


def test_rotation_chain_forgets_the_epoch_before_previous(committee: Chain) -> None:
    pid = committee.program_id
    to_bob = rotation_envelope(2, BOB.group_key)
    committee.ok(rotate_committee_ix(pid, ALICE.attest(to_bob, 1), to_bob))
    to_alice = rotation_envelope(3, ALICE.group_key)
    committee.ok(rotate_committee_ix(pid, BOB.attest(to_alice, 2), to_alice))
    raw = envelope()
    committee.ok(verify_signature_ix(pid, BOB.attest(raw, 2), raw))
    committee.fails(ProgramErrorCode.EPOCH_UNKNOWN, verify_signature_ix(pid, ALICE.attest(raw, 1), raw))


@pytest.mark.parametrize(
    ("name", "make", "code"),
    [
        ("signed by another key", lambda r: BOB.attest(r, 1), ProgramErrorCode.SIGNATURE_INVALID),
        ("signed under another epoch", lambda r: ALICE.attest(r, 2), ProgramErrorCode.ROTATION_NOT_CURRENT_SIGNER),
    ],
)
def test_rotation_refused_without_the_current_committee(committee: Chain, name: str, make, code) -> None:
    rotation = rotation_envelope(2, BOB.group_key)
    committee.fails(code, rotate_committee_ix(committee.program_id, make(rotation), rotation))
    assert committee.config().current_key == ALICE.group_key


@pytest.mark.parametrize(
    ("rotation", "code"),
    [
        (rotation_envelope(3, BOB.group_key), ProgramErrorCode.ROTATION_WRONG_EPOCH),
        (rotation_envelope(1, BOB.group_key), ProgramErrorCode.ROTATION_WRONG_EPOCH),
        (rotation_envelope(2, BOB.group_key, dst_domain=DOMAIN + 1), ProgramErrorCode.WRONG_DESTINATION_DOMAIN),
        (rotation_envelope(2, BOB.group_key, src_domain=31337), ProgramErrorCode.WRONG_SOURCE_DOMAIN),
        (rotation_envelope(2, BOB.group_key, kind=MessageKind.DATA), ProgramErrorCode.WRONG_MESSAGE_KIND),
        (envelope(kind=MessageKind.COMMITTEE_ROTATION, src_domain=0, payload=b"short"),
         ProgramErrorCode.ROTATION_PAYLOAD_MALFORMED),
        (rotation_envelope(2, bytes(128)), ProgramErrorCode.KEY_INFINITY),
    ],
    ids=["skips an epoch", "goes back", "wrong domain", "wrong source", "wrong kind", "short payload", "infinity key"],
)
def test_rotation_refused_when_malformed(committee: Chain, rotation: bytes, code: ProgramErrorCode) -> None:
    committee.fails(code, rotate_committee_ix(committee.program_id, ALICE.attest(rotation, 1), rotation))
    assert committee.config().current_epoch == 1


def test_verify_signature_fits_the_compute_budget(committee: Chain) -> None:
    raw = envelope(payload=b"x" * 512)
    meta = committee.ok(verify_signature_ix(committee.program_id, ALICE.attest(raw, 1), raw))
    assert meta.compute_units_consumed() <= 100_000


# --- feature sets ------------------------------------------------------------------------------


def test_runs_with_the_mainnet_feature_set() -> None:
    svm = LiteSVM().with_mainnet_features()
    payer = Keypair()
    svm.airdrop(payer.pubkey(), 10 * 10**9)
    program_id = deploy_program_litesvm(svm, payer, PROGRAM_SO_PATH.read_bytes())
    digest = keccak256(b"mainnet features")
    signature, hint = ALICE.sign_digest(digest)
    chain = Chain(svm, payer, program_id)
    chain.ok(verify_digest_ix(program_id, signature=signature, hint=hint, digest=digest, group_key=ALICE.group_key))


def test_every_feature_on_deploys_the_v3_program_and_refuses_the_old_v0_with_a_hint() -> None:
    # With every feature on (SIMD-0500) v0 programs cannot be deployed; the SBPFv3 build can
    # (README.md, "Supported runtimes"; the feature matrix is in test_sbpf_v3.py).
    from solders.solders import FeatureSet

    svm = LiteSVM().with_feature_set(FeatureSet.all_enabled())
    payer = Keypair()
    svm.airdrop(payer.pubkey(), 10 * 10**9)
    with pytest.raises(DeploymentError, match="deactivate-feature"):
        deploy_program_litesvm(svm, payer, (ROOT / "tests" / "fixtures" / "tessera_v0.so").read_bytes())
    program_id = deploy_program_litesvm(svm, payer, PROGRAM_SO_PATH.read_bytes())
    digest = keccak256(b"every feature")
    signature, hint = ALICE.sign_digest(digest)
    Chain(svm, payer, program_id).ok(
        verify_digest_ix(program_id, signature=signature, hint=hint, digest=digest, group_key=ALICE.group_key)
    )


# --- property: the on-chain hash check agrees with the Python one --------------------------------


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(digest=st.binary(min_size=32, max_size=32))
def test_random_digests_verify_and_their_negation_does_not(chain: Chain, digest: bytes) -> None:
    signature, hint = BOB.sign_digest(digest)
    chain.ok(verify_digest_ix(chain.program_id, signature=signature, hint=hint, digest=digest, group_key=BOB.group_key))
    y = (-int.from_bytes(hint.y, "big")) % FIELD_MODULUS
    neg_sig = signature[:32] + ((-int.from_bytes(signature[32:], "big")) % FIELD_MODULUS).to_bytes(32, "big")
    chain.fails(ProgramErrorCode.HINT_NOT_CANONICAL,
                verify_digest_ix(chain.program_id, signature=neg_sig, hint=G1Hint.for_point(hint.k, y), digest=digest,
                                 group_key=BOB.group_key))
