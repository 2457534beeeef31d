"""The Solana program as SBPFv3 (issue 18): contracts/solana/build.py links clang-16 `-mcpu=v2` objects
into an SBPFv3 ELF (contracts/solana/linker/) so that the program stays deployable and upgradable once
a cluster activates SIMD-0500 (no more v0-v2 deployments or upgrades).

* the program's instructions (VerifySignature over the shared envelope vectors, the gateway's Deliver,
  RequestTask, UpdateFeed) under LiteSVM's default features, mainnet features + only SIMD-0500, and
  every feature except SIMD-0460 (which breaks any call with accounts in LiteSVM, v3 or not:
  /work/shared/SOLANA_PROGRAM.md);
* an operator's path: the v0 program (tests/fixtures/tessera_v0.so) deployed before SIMD-0500, the
  feature activated, then upgraded in place to the v3 build: same program id, its accounts still
  read and used by the new code;
* the linker's refusals (a syscall not on the allow-list, writable data), on objects compiled by clang-16
  from tiny C files and on hand-made ELF objects.

Helpers come from the library (adapters.solana.*, attest, relay), not from other test modules.
"""

from __future__ import annotations

import importlib.util
import json
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from solders.clock import Clock
from solders.compute_budget import set_compute_unit_limit
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.litesvm import FeatureSet, LiteSVM
from solders.pubkey import Pubkey
from solders.system_program import ID as SYSTEM_PROGRAM_ID
from solders.system_program import CreateAccountParams, create_account
from solders.sysvar import CLOCK, RENT
from solders.transaction import Transaction
from solders.transaction_metadata import FailedTransactionMetadata, TransactionMetadata

import attest
from adapters.solana.feeds import FeedAccount, feed_address, update_feed_ix
from adapters.solana.deploy import (
    PROGRAM_SO_PATH,
    DeploymentError,
    deploy_program_litesvm,
    initialize_buffer_ix,
    write_ix,
)
from adapters.solana.program import (
    BPF_LOADER_UPGRADEABLE_ID,
    Attestation,
    CommitteeConfig,
    DeliveryReceipt,
    OutboxState,
    ProgramErrorCode,
    committee_address,
    deliver_ix,
    init_committee_ix,
    init_gateway_ix,
    outbox_address,
    programdata_address,
    receipt_address,
    verify_signature_ix,
)
from adapters.solana.program import (
    TaskAccountV2,
    TaskStateV2,
    request_task_v2_ix,
    task_address,
    task_v2_address,
    taskboard_address,
)
from adapters.solana.taskboard import TaskAccount, request_task_ix
from relay.envelope import Envelope, keccak256, message_digest
from relay.feeds.report import FeedReport
from relay.feeds.signed import SignedReport
from relay.protocol import MessageKind
from relay.interfaces import TaskState
from relay.tasks.payloads import TaskRequest, TaskRequestV2

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "vectors"
V0_FIXTURE = ROOT / "tests" / "fixtures" / "tessera_v0.so"

SIMD_0500 = Pubkey.from_string("B8JJXCy5amZyWG9r7EnUYLwzXSXTxG7GZ1qZ1qggo83g")  # no v0-v2 deployments/upgrades
SIMD_0460 = Pubkey.from_string("7VgiehxNxu53KdxgLspGQY8myE6f7UokaWa4jsGcaSz")

DOMAIN = 900
OTHER_DOMAIN = 31337
WORKER_BOARD = b"\x00" * 12 + b"\xb0" * 20
NOW = 1_800_000_000
CU_LIMIT = 400_000
SECRET = 0x5EC2E70F7E55E2A5B9FF3  # the committee's (single) key in these tests
GROUP_KEY = attest.public_key(SECRET)
EF_SBPF_V3 = 3


def _load_build_module():
    spec = importlib.util.spec_from_file_location("tessera_solana_build_v3", ROOT / "contracts" / "solana" / "build.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


build = _load_build_module()
from contracts.solana import linker  # noqa: E402 (importable once build.py put the repository root on the path)


# --- feature sets ---------------------------------------------------------------------------------


def mainnet_with_simd_0500() -> LiteSVM:
    features = LiteSVM.mainnet_feature_set()
    assert not features.is_active(SIMD_0500)
    features.activate(SIMD_0500, 0)
    return LiteSVM().with_feature_set(features)


def all_but_simd_0460() -> LiteSVM:
    features = FeatureSet.all_enabled()
    features.deactivate(SIMD_0460)
    return LiteSVM().with_feature_set(features)


FEATURE_SETS: dict[str, Callable[[], LiteSVM]] = {
    "default": LiteSVM,
    "mainnet+SIMD-0500": mainnet_with_simd_0500,
    "all-but-SIMD-0460": all_but_simd_0460,
}


@pytest.fixture(params=list(FEATURE_SETS))
def features(request) -> str:
    return request.param


# --- harness --------------------------------------------------------------------------------------


def attestation(envelope: bytes, epoch: int = 1) -> Attestation:
    return Attestation.for_envelope(envelope, epoch, attest.sign(SECRET, message_digest(epoch, keccak256(envelope))))


def failed_code(result: FailedTransactionMetadata) -> int | None:
    return getattr(getattr(result.err(), "err", None), "code", None)


@dataclass
class Program:
    svm: LiteSVM
    payer: Keypair
    program_id: Pubkey

    def send(self, *instructions: Instruction, signers: tuple[Keypair, ...] = ()):
        tx = Transaction.new_signed_with_payer([set_compute_unit_limit(CU_LIMIT), *instructions], self.payer.pubkey(),
                                               [self.payer, *signers], self.svm.latest_blockhash())
        result = self.svm.send_transaction(tx)
        self.svm.expire_blockhash()
        return result

    def ok(self, *instructions: Instruction, signers: tuple[Keypair, ...] = ()) -> TransactionMetadata:
        result = self.send(*instructions, signers=signers)
        assert isinstance(result, TransactionMetadata), f"{result.err()}\n" + "\n".join(result.meta().logs())
        return result

    def fails(self, code: int, *instructions: Instruction) -> None:
        result = self.send(*instructions)
        assert isinstance(result, FailedTransactionMetadata), "expected the transaction to fail"
        assert failed_code(result) == code, f"{result.err()}\n" + "\n".join(result.meta().logs())

    def account(self, address: Pubkey) -> bytes:
        account = self.svm.get_account(address)
        assert account is not None and account.owner == self.program_id
        return bytes(account.data)

    def setup(self) -> "Program":
        """InitCommittee (epoch 1, GROUP_KEY) and InitGateway: what every instruction below needs."""
        self.ok(init_committee_ix(self.program_id, self.payer.pubkey(), domain=DOMAIN, epoch=1, n=3, t=2,
                                  group_key=GROUP_KEY))
        self.ok(init_gateway_ix(self.program_id, self.payer.pubkey()))
        return self


def deploy(svm: LiteSVM, so_bytes: bytes) -> Program:
    payer = Keypair()
    svm.airdrop(payer.pubkey(), 100 * 10**9)
    program_id = deploy_program_litesvm(svm, payer, so_bytes)
    svm.set_clock(Clock(svm.get_clock().slot, NOW, 0, 0, NOW))
    return Program(svm, payer, program_id)


def v3_program() -> bytes:
    return PROGRAM_SO_PATH.read_bytes()


# --- the instructions, one function each (also run on the upgraded program below) ----------------


def check_verify_signature_vectors(program: Program) -> None:
    cases = json.loads((VECTORS / "envelope_v1.json").read_text())["cases"]
    verified = 0
    for case in cases:
        raw = bytes.fromhex(case["encoded"].removeprefix("0x"))
        ix = verify_signature_ix(program.program_id, attestation(raw), raw)
        if case["dst_domain"] != DOMAIN:
            program.fails(ProgramErrorCode.WRONG_DESTINATION_DOMAIN, ix)
            continue
        meta = program.ok(ix)
        assert bytes(meta.return_data().data) == bytes.fromhex(case["message_id"].removeprefix("0x"))
        verified += 1
    assert verified > 0
    # a signature by another key is refused with its own error
    raw = bytes.fromhex(cases[0]["encoded"].removeprefix("0x"))
    forged = Attestation.for_envelope(raw, 1, attest.sign(SECRET + 1, message_digest(1, keccak256(raw))))
    if cases[0]["dst_domain"] == DOMAIN:
        program.fails(ProgramErrorCode.SIGNATURE_INVALID, verify_signature_ix(program.program_id, forged, raw))


def incoming(nonce: int, payload: bytes = b"result") -> bytes:
    return Envelope(kind=MessageKind.DATA, nonce=nonce, src_domain=OTHER_DOMAIN, src_sender=b"\x00" * 12 + b"\x11" * 20,
                    dst_domain=DOMAIN, dst_receiver=b"\x22" * 32, payload=payload).encode()


def deliver(program: Program, env: bytes) -> TransactionMetadata:
    meta = program.ok(deliver_ix(program.program_id, program.payer.pubkey(), attestation(env), env))
    message_id = keccak256(env)
    assert bytes(meta.return_data().data) == message_id
    receipt = DeliveryReceipt.decode(program.account(receipt_address(program.program_id, message_id)[0]))
    assert (receipt.envelope, receipt.message_id, receipt.relayer) == (env, message_id, program.payer.pubkey())
    return meta


def request_task(program: Program) -> tuple[bytes, TransactionMetadata]:
    """A task protocol v1 RequestTask: only the v0 fixture serves it (the current build refuses it
    with TASK_V1_RETIRED)."""
    requester = Keypair()
    program.svm.airdrop(requester.pubkey(), 10**9)
    outbox = OutboxState.decode(program.account(outbox_address(program.program_id)[0]))
    payload = TaskRequest("sentiment", 5_000_000, NOW + 600, input=b"What a lovely day").encode()
    env = Envelope(kind=MessageKind.TASK_REQUEST, nonce=outbox.next_nonce, src_domain=DOMAIN,
                   src_sender=bytes(taskboard_address(program.program_id)), dst_domain=OTHER_DOMAIN,
                   dst_receiver=WORKER_BOARD, payload=payload)
    meta = program.ok(request_task_ix(program.program_id, requester.pubkey(), request_id=env.message_id,
                                      dst_domain=OTHER_DOMAIN, worker_board=WORKER_BOARD, payload=payload),
                      signers=(requester,))
    task = TaskAccount.decode(program.account(task_address(program.program_id, env.message_id)))
    assert (task.state, task.requester, task.escrow, task.request_id) == (
        TaskState.OPEN, requester.pubkey(), 5_000_000, env.message_id)
    return env.message_id, meta


def request_task_v2(program: Program) -> tuple[bytes, TransactionMetadata]:
    requester = Keypair()
    program.svm.airdrop(requester.pubkey(), 10**9)
    outbox = OutboxState.decode(program.account(outbox_address(program.program_id)[0]))
    payload = TaskRequestV2("sentiment", 5_000_000, NOW + 600, 60, 5000, 30, 1_000_000, b"\x11" * 32,
                            input=b"What a lovely day").encode()
    env = Envelope(kind=MessageKind.TASK_REQUEST, nonce=outbox.next_nonce, src_domain=DOMAIN,
                   src_sender=bytes(taskboard_address(program.program_id)), dst_domain=OTHER_DOMAIN,
                   dst_receiver=WORKER_BOARD, payload=payload)
    meta = program.ok(request_task_v2_ix(program.program_id, requester.pubkey(), task_nonce=1,
                                         dst_domain=OTHER_DOMAIN, worker_board=WORKER_BOARD, payload=payload),
                      signers=(requester,))
    task = TaskAccountV2.decode(program.account(task_v2_address(program.program_id, requester.pubkey(), 1)))
    assert (task.state, task.requester, task.max_fee, task.request_id) == (
        TaskStateV2.OPEN, requester.pubkey(), 5_000_000, env.message_id)
    return env.message_id, meta


def vector_report() -> FeedReport:
    vectors = json.loads((VECTORS / "feeds_v1.json").read_text())
    return FeedReport.decode(bytes.fromhex(vectors["signed_round"]["report"]["encoded"].removeprefix("0x")))


def update_feed(program: Program, report: FeedReport) -> TransactionMetadata:
    signed = SignedReport(report, 1, attest.sign(SECRET, report.digest(1)))
    meta = program.ok(update_feed_ix(program.program_id, program.payer.pubkey(), signed))
    feed = FeedAccount.decode(program.account(feed_address(program.program_id, report.feed_id)[0]))
    assert feed.report == report
    return meta


# --- the v3 build under the three feature sets ------------------------------------------------------


def test_committed_program_is_the_v3_format() -> None:
    elf = v3_program()
    assert struct.unpack_from("<I", elf, 48)[0] == EF_SBPF_V3
    assert struct.unpack_from("<HHH", elf, 52) == (64, 56, 2)  # e_ehsize, e_phentsize, e_phnum
    (p_type0, flags0, off0, vaddr0, _, filesz0, memsz0, _) = struct.unpack_from("<IIQQQQQQ", elf, 64)
    (p_type1, flags1, off1, vaddr1, _, filesz1, memsz1, _) = struct.unpack_from("<IIQQQQQQ", elf, 120)
    assert (p_type0, flags0, vaddr0, off0) == (1, 4, 0, 176)  # rodata: PF_R at 0, right after the headers
    assert (p_type1, flags1, vaddr1, off1) == (1, 1, 1 << 32, off0 + filesz0)  # text: PF_X at 1 << 32, contiguous
    assert filesz0 == memsz0 and filesz1 == memsz1 and filesz0 % 8 == 0 and filesz1 % 8 == 0
    assert elf[off0] == 0  # rodata byte 0 unused: nothing lives at NULL
    text = elf[off1 : off1 + filesz1]
    calls = {(text[pc + 1] >> 4, struct.unpack_from("<I", text, pc + 4)[0]) for pc in range(0, len(text), 8)
             if text[pc] == 0x85}
    syscalls = {imm for src, imm in calls if src == 0}
    assert linker.syscall_hash("sol_log_") == 0x207559BD
    assert 0x207559BD in syscalls  # the program logs
    assert syscalls <= {linker.syscall_hash(name) for name in build.ALLOWED_SYSCALLS}
    assert {src for src, _ in calls} == {0, 1}


def test_murmur3_matches_the_runtimes_syscall_ids() -> None:
    hash_ = linker.murmur3_32
    assert hash_(b"sol_log_") == 0x207559BD and hash_(b"abort") == 0xB6FC1A11
    assert hash_(b"") == 0 and hash_(b"", seed=1) == 0x514E28B7  # the reference implementation's test values


def test_verify_signature_over_the_shared_vectors(features: str) -> None:
    program = deploy(FEATURE_SETS[features](), v3_program()).setup()
    check_verify_signature_vectors(program)
    config = CommitteeConfig.decode(program.account(committee_address(program.program_id)[0]))
    assert (config.domain, config.current_epoch, config.current_key) == (DOMAIN, 1, GROUP_KEY)


def test_deliver_writes_a_receipt_and_refuses_a_replay(features: str) -> None:
    program = deploy(FEATURE_SETS[features](), v3_program()).setup()
    env = incoming(7, b"\x42" * 512)
    deliver(program, env)
    program.fails(ProgramErrorCode.ALREADY_DELIVERED,
                  deliver_ix(program.program_id, program.payer.pubkey(), attestation(env), env))


def test_request_task_opens_the_task_with_its_escrow(features: str) -> None:
    program = deploy(FEATURE_SETS[features](), v3_program()).setup()
    request_id, meta = request_task_v2(program)
    assert bytes(meta.return_data().data) == request_id + (0).to_bytes(8, "little")
    program.fails(ProgramErrorCode.TASK_V1_RETIRED, request_task_ix(  # task protocol v1 is retired
        program.program_id, program.payer.pubkey(), request_id=b"\x05" * 32, dst_domain=OTHER_DOMAIN,
        worker_board=WORKER_BOARD, payload=TaskRequest("sentiment", 1, NOW + 600, input=b"x").encode()))


def test_update_feed_stores_the_signed_report(features: str) -> None:
    program = deploy(FEATURE_SETS[features](), v3_program()).setup()
    report = vector_report()
    update_feed(program, report)
    stale = SignedReport(report, 1, attest.sign(SECRET, report.digest(1)))
    program.fails(ProgramErrorCode.FEED_STALE_ROUND, update_feed_ix(program.program_id, program.payer.pubkey(), stale))


# --- SIMD-0500 and the v0 build ----------------------------------------------------------------------


def test_simd_0500_refuses_to_deploy_the_v0_build() -> None:
    with pytest.raises(DeploymentError, match="InvalidAccountData"):
        deploy(mainnet_with_simd_0500(), V0_FIXTURE.read_bytes())


def _write_buffer(program: Program, so_bytes: bytes) -> Pubkey:
    """A loader-v3 buffer holding so_bytes, its authority the payer (what `solana program write-buffer` does)."""
    buffer = Keypair()
    size = 37 + len(so_bytes)  # UpgradeableLoaderState::Buffer metadata + the program
    program.ok(create_account(CreateAccountParams(
        from_pubkey=program.payer.pubkey(), to_pubkey=buffer.pubkey(),
        lamports=program.svm.minimum_balance_for_rent_exemption(size), space=size, owner=BPF_LOADER_UPGRADEABLE_ID,
    )), initialize_buffer_ix(buffer.pubkey(), program.payer.pubkey()), signers=(buffer,))
    chunk = 900
    for offset in range(0, len(so_bytes), chunk):
        program.ok(write_ix(buffer.pubkey(), program.payer.pubkey(), offset, so_bytes[offset : offset + chunk]))
    return buffer.pubkey()


def extend_program_ix(program_id: Pubkey, payer: Pubkey, additional: int) -> Instruction:
    """UpgradeableLoaderInstruction::ExtendProgram (tag 6), as `solana program extend` sends it while
    ExtendProgramChecked is not active: a build larger than the ProgramData account (deployed at 2x
    the v0 size) needs room first."""
    return Instruction(BPF_LOADER_UPGRADEABLE_ID, struct.pack("<II", 6, additional), [
        AccountMeta(programdata_address(program_id), False, True),
        AccountMeta(program_id, False, True),
        AccountMeta(SYSTEM_PROGRAM_ID, False, False),
        AccountMeta(payer, True, True),
    ])


def upgrade_ix(program_id: Pubkey, buffer: Pubkey, authority: Pubkey, spill: Pubkey) -> Instruction:
    """UpgradeableLoaderInstruction::Upgrade (tag 3), as `solana program deploy --program-id` sends it."""
    return Instruction(BPF_LOADER_UPGRADEABLE_ID, struct.pack("<I", 3), [
        AccountMeta(programdata_address(program_id), False, True),
        AccountMeta(program_id, False, True),
        AccountMeta(buffer, False, True),
        AccountMeta(spill, False, True),
        AccountMeta(RENT, False, False),
        AccountMeta(CLOCK, False, False),
        AccountMeta(authority, True, False),
    ])


def test_a_v0_deployment_is_upgraded_to_v3_after_simd_0500_and_keeps_its_id_and_accounts() -> None:
    features = LiteSVM.mainnet_feature_set()
    svm = LiteSVM().with_feature_set(features)  # mainnet today: SIMD-0500 not active
    old = deploy(svm, V0_FIXTURE.read_bytes()).setup()
    old_env = incoming(1)
    deliver(old, old_env)
    old_request, _ = request_task(old)
    update_feed(old, vector_report())
    accounts_before = {
        address: old.account(address)
        for address in (committee_address(old.program_id)[0], outbox_address(old.program_id)[0],
                        receipt_address(old.program_id, keccak256(old_env))[0],
                        task_address(old.program_id, old_request),
                        feed_address(old.program_id, vector_report().feed_id)[0])
    }

    # The cluster activates SIMD-0500: the deployed v0 program keeps running, but cannot be upgraded
    # to v0 bytes any more (nor deployed anew).
    features.activate(SIMD_0500, 0)
    svm.with_feature_set(features)
    svm.warp_to_slot(svm.get_clock().slot + 1)
    svm.set_clock(Clock(svm.get_clock().slot, NOW, 0, 0, NOW))
    deliver(old, incoming(2))
    spill = Keypair().pubkey()
    refused = old.send(upgrade_ix(old.program_id, _write_buffer(old, V0_FIXTURE.read_bytes()), old.payer.pubkey(),
                                  spill))
    assert isinstance(refused, FailedTransactionMetadata) and "InvalidAccountData" in str(refused.err())

    # The operator's upgrade: write the v3 build to a buffer, then Upgrade (same program id).
    v3 = v3_program()
    room = len(svm.get_account(programdata_address(old.program_id)).data) - 45
    if len(v3) > room:  # the v3 build outgrew the 2x allocation of the v0 deployment: extend first
        old.ok(extend_program_ix(old.program_id, old.payer.pubkey(), max(len(v3) - room, 10_240)))  # the loader's minimum
        svm.warp_to_slot(svm.get_clock().slot + 1)
        svm.set_clock(Clock(svm.get_clock().slot, NOW, 0, 0, NOW))
    old.ok(upgrade_ix(old.program_id, _write_buffer(old, v3), old.payer.pubkey(), spill))
    svm.warp_to_slot(svm.get_clock().slot + 1)  # the new code is visible from the next slot
    svm.set_clock(Clock(svm.get_clock().slot, NOW, 0, 0, NOW))
    new = old  # same svm, payer (upgrade authority) and program id
    programdata = svm.get_account(programdata_address(new.program_id))
    assert bytes(programdata.data)[45 : 45 + len(v3)] == v3  # ProgramData metadata (45 bytes), then the ELF
    assert struct.unpack_from("<I", bytes(programdata.data), 45 + 48)[0] == EF_SBPF_V3
    assert bytes(programdata.data)[13:45] == bytes(new.payer.pubkey())  # still the same upgrade authority

    # The accounts the v0 code wrote are untouched, and the v3 code reads and extends them.
    for address, data in accounts_before.items():
        assert new.account(address) == data, address
    check_verify_signature_vectors(new)  # reads the committee config written by v0
    new.fails(ProgramErrorCode.ALREADY_DELIVERED,  # reads v0's receipt
              deliver_ix(new.program_id, new.payer.pubkey(), attestation(old_env), old_env))
    deliver(new, incoming(3))
    request_id, meta = request_task_v2(new)  # continues v0's outbox numbering (v1 is retired)
    assert bytes(meta.return_data().data)[32:] == (1).to_bytes(8, "little")
    assert request_id != old_request
    report = vector_report()
    update_feed(new, FeedReport(report.feed_id, report.round + 1, report.price + 1, report.confidence,
                                report.decimals, report.observations, report.observed_at + 1000,
                                report.published_at + 1000))  # updates v0's feed account


# --- the linker's refusals ------------------------------------------------------------------------


def compile_snippet(tmp_path: Path, source: str) -> list[tuple[str, bytes]]:
    (tmp_path / "snippet.c").write_text(source)
    return build.compile_sources(tmp_path)


def test_clang_16_is_installed_for_the_linker_tests() -> None:
    # The refusal tests below compile C: they must run, not be skipped (scripts/ensure-clang.sh installs it).
    assert build.find_clang() is not None, "clang-16 is missing: run `bash scripts/ensure-clang.sh` as root"


def test_linker_refuses_a_syscall_that_is_not_on_the_allow_list(tmp_path: Path) -> None:
    objects = compile_snippet(tmp_path, (
        "#include <stdint.h>\n"
        "uint64_t sol_big_mod_exp(const uint8_t *params, uint8_t *out);\n"
        "uint64_t entrypoint(const uint8_t *in) { uint8_t out[32]; return sol_big_mod_exp(in, out) + out[0]; }\n"
    ))
    with pytest.raises(build.BuildError, match=r"`sol_big_mod_exp`.*not an allowed syscall.*ALLOWED_SYSCALLS"):
        build.link(objects)


def test_linker_refuses_writable_data_and_bss(tmp_path: Path) -> None:
    for declaration, section in (("uint64_t counter = 5;", ".data"), ("uint64_t counter;", ".bss")):
        objects = compile_snippet(tmp_path, (
            f"#include <stdint.h>\n{declaration}\n"
            "uint64_t entrypoint(const uint8_t *in) { counter += in[0]; return counter; }\n"
        ))
        with pytest.raises(build.BuildError, match=rf"writable data in {section}"):
            build.link(objects)


def test_a_small_allowed_program_links_runs_and_logs_under_every_feature_set(tmp_path: Path) -> None:
    # A table of pointers inside rodata (R_BPF_64_ABS64), lddw of rodata tables (R_BPF_64_64), a call
    # to a static function (pc-relative already, no relocation) and a syscall.
    objects = compile_snippet(tmp_path, (
        "#include <stdint.h>\n"
        "void sol_log_(const char *message, uint64_t len);\n"
        "static const char *const words[] = {\"zero\", \"one\", \"two\"};\n"
        "static const uint64_t lengths[] = {4, 3, 3};\n"
        "__attribute__((noinline)) static uint64_t pick(const uint8_t *in) {\n"
        "  /* no accounts: u64 count, u64 data length, data */\n"
        "  return *(const uint64_t *)(in + 8) ? in[16] % 3 : 0; }\n"
        "uint64_t entrypoint(const uint8_t *in) { uint64_t i = pick(in); sol_log_(words[i], lengths[i]);\n"
        "  return words[i] == 0; }\n"
    ))
    elf = build.link(objects)
    assert elf == build.link(objects)  # reproducible
    for name, make in FEATURE_SETS.items():
        program = deploy(make(), elf)
        for data, word in ((b"", "zero"), (b"\x02", "two"), (b"\x04", "one")):
            meta = program.ok(Instruction(program.program_id, data, []))
            assert f"Program log: {word}" in meta.logs(), (name, meta.logs())


# --- hand-made relocatable objects (no compiler involved) ---------------------------------------------


def relocatable_object(call_target: str, *, writable: bool = False) -> bytes:
    """An ET_REL EM_BPF object: `entrypoint: call <call_target>; exit`, with an R_BPF_64_32 relocation
    against the undefined symbol; `writable` adds a one-word SHF_WRITE .data section."""
    text = bytes([0x85, 0x10, 0, 0]) + struct.pack("<i", -1) + bytes([0x95]) + bytes(7)
    strtab = b"\0entrypoint\0" + call_target.encode() + b"\0"
    sym = struct.Struct("<IBBHQQ")
    symtab = sym.pack(0, 0, 0, 0, 0, 0) + sym.pack(1, 0x12, 0, 1, 0, len(text)) + sym.pack(12, 0x10, 0, 0, 0, 0)
    rel = struct.pack("<QQ", 0, (2 << 32) | 10)
    names = [".text", ".rel.text", ".symtab", ".strtab", ".shstrtab", ".data"]
    shstrtab = b"\0" + b"".join(n.encode() + b"\0" for n in names)
    at = {n: shstrtab.index(n.encode() + b"\0") for n in names}
    data = struct.pack("<Q", 7)
    # (name, type, flags, body, link, info, align, entsize)
    sections = [
        (".text", 1, 2 | 4, text, 0, 0, 8, 0),
        (".rel.text", 9, 0, rel, 3, 1, 8, 16),
        (".symtab", 2, 0, symtab, 4, 2, 8, sym.size),
        (".strtab", 3, 0, strtab, 0, 0, 1, 0),
        (".shstrtab", 3, 0, shstrtab, 0, 0, 1, 0),
    ] + ([(".data", 1, 1 | 2, data, 0, 0, 8, 0)] if writable else [])
    body = bytearray(64)
    headers = [bytes(64)]
    for name, sh_type, flags, content, link, info, align, entsize in sections:
        body += bytes(-len(body) % 8)
        headers.append(struct.pack("<IIQQQQIIQQ", at[name], sh_type, flags, 0, len(body), len(content), link, info,
                                   align, entsize))
        body += content
    body += bytes(-len(body) % 8)
    shoff = len(body)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    body[:64] = struct.pack("<16sHHIQQQIHHHHHH", ident, 1, 247, 1, 0, 0, shoff, 0, 64, 0, 0, 64, len(headers), 5)
    return bytes(body) + b"".join(headers)


def test_hand_made_object_calling_an_allowed_syscall_links_to_a_static_call() -> None:
    elf = build.link([("hand.o", relocatable_object("abort"))])
    text_off = struct.unpack_from("<Q", elf, 120 + 8)[0]
    assert elf[text_off] == 0x85 and elf[text_off + 1] >> 4 == 0  # call, src = 0: a static syscall
    assert struct.unpack_from("<I", elf, text_off + 4)[0] == 0xB6FC1A11  # murmur3_32("abort")
    assert struct.unpack_from("<Q", elf, 24)[0] == 1 << 32  # e_entry: the first instruction of the text


def test_hand_made_objects_with_an_unknown_syscall_or_writable_data_are_refused() -> None:
    with pytest.raises(build.BuildError, match=r"`sol_get_fees_sysvar`.*not an allowed syscall.*linker/syscalls.py"):
        build.link([("hand.o", relocatable_object("sol_get_fees_sysvar"))])
    with pytest.raises(build.BuildError, match=r"hand.o: writable data in \.data"):
        build.link([("hand.o", relocatable_object("abort", writable=True))])


# --- the allow-list against the runtime -------------------------------------------------------------


def test_every_allowed_syscall_is_registered_and_an_unknown_one_fails_only_when_called(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Why the allow-list exists: SBPFv3 deploys a call to an unregistered syscall and fails only when it
    # runs ("unsupported BPF instruction"). Every allowed name must therefore be registered: calling each
    # one with junk arguments may fail, but never with that error.
    unknown = ["sol_big_mod_exp", "sol_remaining_compute_units"]  # not registered in this runtime
    names = sorted(linker.ALLOWED_SYSCALLS) + unknown
    for module in (linker.syscalls, linker.relocate):  # let the unknown names through, for this build only
        monkeypatch.setattr(module, "ALLOWED_SYSCALLS", frozenset(names))
    source = "#include <stdint.h>\n" + "".join(
        f"uint64_t {name}(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t);\n" for name in names
    ) + "uint64_t entrypoint(const uint8_t *in) {\n  uint64_t heap = 0x300000000ULL;\n  switch (in[16]) {\n" + "".join(
        f"  case {i}: {name}(heap, 0, heap, 0, heap); return 0;\n" for i, name in enumerate(names)
    ) + "  }\n  return 0;\n}\n"
    elf = build.link(compile_snippet(tmp_path, source))
    for features, make in FEATURE_SETS.items():
        program = deploy(make(), elf)
        for i, name in enumerate(names):
            result = program.send(Instruction(program.program_id, bytes([i]), []))
            logs = "\n".join(result.logs() if isinstance(result, TransactionMetadata) else result.meta().logs())
            assert ("unsupported BPF instruction" in logs) == (name in unknown), (features, name, logs)


def test_with_simd_0460_on_litesvm_fails_every_call_with_accounts_v3_and_spl_memo_alike() -> None:
    # Why "all features" is tested without SIMD-0460: with it, LiteSVM cannot set up any program call
    # that passes accounts, for the v3 build as for the preloaded SPL Memo (a LiteSVM matter, not a
    # format one). If this starts passing, add FeatureSet.all_enabled() to FEATURE_SETS.
    program = deploy(LiteSVM().with_feature_set(FeatureSet.all_enabled()), v3_program())
    init = program.send(init_committee_ix(program.program_id, program.payer.pubkey(), domain=DOMAIN, epoch=1, n=3,
                                          t=2, group_key=GROUP_KEY))
    memo = program.send(Instruction(Pubkey.from_string("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr"), b"hello",
                                    [AccountMeta(program.payer.pubkey(), True, False)]))
    for result in (init, memo):
        assert isinstance(result, FailedTransactionMetadata)
        assert "ProgramEnvironmentSetupFailure" in str(result.err()), result.err()
