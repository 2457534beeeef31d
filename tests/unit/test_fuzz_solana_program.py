"""The C program's instruction parsers through LiteSVM: random and mutated instruction data for every
instruction tag, with random account lists (random keys, signer/writable flags, accounts owned by
the wrong program, accounts in the wrong place), end in one of the program's own error codes, never
in a crash of the program (an access violation, an abort, a runaway loop) and never in a write
that should not happen.

The tags are read from contracts/solana/src/tessera.h when the test runs, so an instruction added
to the program is fuzzed without a change here. Each example runs on a fresh chain: the committee
and the gateway initialised, a message delivered, a v2 task requested."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from hypothesis import event, given, settings
from hypothesis import strategies as st
from solders.account import Account
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.transaction_metadata import FailedTransactionMetadata, TransactionMetadata

from adapters.solana.feeds import feed_address, update_feed_ix
from adapters.solana.program import (
    ProgramErrorCode,
    ProgramInstruction,
    answered_address,
    check_task_payload_v2_ix,
    claim_task_ix,
    committee_address,
    deliver_ix,
    expire_claim_ix,
    init_committee_ix,
    init_gateway_ix,
    outbox_address,
    probe_ix,
    programdata_address,
    receipt_address,
    reclaim_v2_ix,
    release_bond_ix,
    request_task_v2_ix,
    rotate_committee_ix,
    send_ix,
    serve_address,
    submit_result_v2_ix,
    task_v2_address,
    verify_digest_ix,
    verify_signature_ix,
    withdraw_credit_ix,
)
from adapters.solana.taskboard import reclaim_ix, request_task_ix, submit_result_ix
from relay.envelope import keccak256
from relay.feeds.report import FeedReport
from relay.feeds.signed import SignedReport
from relay.protocol import MessageKind
from relay.tasks.payloads import TaskRequestV2
from tests.support import solana
from tests.support.fuzzing import VECTORS, budget
from tests.support.solana import ALICE, BOB, DOMAIN

SYSTEM_PROGRAM = Pubkey.from_string("11111111111111111111111111111111")
SYSVAR_CLOCK = Pubkey.from_string("SysvarC1ock11111111111111111111111111111111")
SYSVAR_RENT = Pubkey.from_string("SysvarRent111111111111111111111111111111111")
TESSERA_H = Path(__file__).resolve().parents[2] / "contracts" / "solana" / "src" / "tessera.h"


def program_tags() -> dict[str, int]:
    """Every `IX_<NAME> = <n>` of the program's instruction enum."""
    return {name: int(value) for name, value in re.findall(r"\bIX_(\w+)\s*=\s*(\d+)", TESSERA_H.read_text())}


TAGS = program_tags()


def test_the_program_and_its_python_encoders_name_the_same_instructions() -> None:
    assert TAGS, f"no IX_ constants found in {TESSERA_H}"
    assert TAGS == {i.name: int(i) for i in ProgramInstruction}


# --- what examples start from (signatures made once: the program id is fixed) -----------------

_DELIVERED = solana.envelope(kind=MessageKind.DATA, payload=b"delivered once")
_UNDELIVERED = solana.envelope(kind=MessageKind.DATA, payload=b"never delivered", nonce=1)
_ROTATION = solana.rotation_envelope(2, BOB.group_key)
_REPORT = FeedReport("ETH/USD", 1, 3_456_10000000, 5_000000, 8, 3, 1_699_999_999_000, 1_700_000_000_000)
_REPORT_SIG, _ = ALICE.sign_digest(_REPORT.digest(1))
_SIGNED_REPORT = SignedReport(_REPORT, 1, _REPORT_SIG)
_DIGEST = keccak256(b"a digest")
_DIGEST_SIG, _DIGEST_HINT = ALICE.sign_digest(_DIGEST)
_ATTESTATIONS = {env: ALICE.attest(env, 1) for env in (_DELIVERED, _UNDELIVERED, _ROTATION)}
_TASKS_V1 = json.loads((VECTORS / "tasks_v1.json").read_text())
_TASKS_V2 = json.loads((VECTORS / "tasks_v2.json").read_text())


def _hex(value: str) -> bytes:
    return bytes.fromhex(value.removeprefix("0x"))


_V1_REQUEST = _hex(_TASKS_V1["task_requests"][0]["encoded"])
_V1_RESULT = _hex(_TASKS_V1["task_results"][0]["encoded"])
# Escrows 0.005 SOL (the vectors' requests escrow more than a test account holds), open past the clock.
_V2_REQUEST = TaskRequestV2("sentiment", 5_000_000, 1_700_000_600, 60, 5000, 30, 1_000_000, b"\x66" * 32,
                            input=b"I love this bridge!").encode()
_V2_RESULT = _hex(_TASKS_V2["task_results"][0]["encoded"])
_V2_VERDICT = _hex(_TASKS_V2["verdicts"][0]["encoded"])
_REQUESTER_NONCE = 7


@dataclass
class Setup:
    chain: solana.Chain
    signers: dict[Pubkey, Keypair]  # keys the test can sign for
    pool: list[Pubkey]  # accounts an instruction may name
    seeds: list[Instruction]  # well-formed instructions of every kind, mutated by the examples
    exact: set[bytes]  # instruction data that may succeed although it writes committee-signed state


def setup() -> Setup:
    chain = solana.with_committee(solana.deployed_chain())
    pid, payer = chain.program_id, chain.payer
    other = solana.funded(chain)
    chain.ok(init_gateway_ix(pid, payer.pubkey()))
    chain.ok(deliver_ix(pid, payer.pubkey(), _ATTESTATIONS[_DELIVERED], _DELIVERED))
    chain.ok(request_task_v2_ix(pid, other.pubkey(), task_nonce=_REQUESTER_NONCE, dst_domain=DOMAIN + 1,
                                worker_board=b"\x33" * 32, payload=_V2_REQUEST), signers=(other,))
    task = task_v2_address(pid, other.pubkey(), _REQUESTER_NONCE)
    delivered_id = keccak256(_DELIVERED)

    # Accounts in the wrong hands: a program-owned account of the probe's size, a copy of the
    # committee config owned by another program, an account owned by the program with junk in it.
    probe_target, imposter, junk = Pubkey.new_unique(), Pubkey.new_unique(), Pubkey.new_unique()
    config = chain.svm.get_account(committee_address(pid)[0])
    chain.svm.set_account(probe_target, Account(10**7, bytes(32), pid, False, 0))
    chain.svm.set_account(imposter, Account(config.lamports, bytes(config.data), Pubkey.new_unique(), False, 0))
    chain.svm.set_account(junk, Account(10**7, bytes(range(256)) * 2, pid, False, 0))

    pool = [
        payer.pubkey(), other.pubkey(), pid, committee_address(pid)[0], outbox_address(pid)[0], programdata_address(pid),
        SYSTEM_PROGRAM, SYSVAR_CLOCK, SYSVAR_RENT, receipt_address(pid, delivered_id)[0], task,
        serve_address(pid, delivered_id), answered_address(pid, delivered_id), feed_address(pid, "ETH/USD")[0],
        probe_target, imposter, junk, Pubkey.new_unique(), Pubkey.new_unique(),
    ]
    seeds = [
        init_committee_ix(pid, payer.pubkey(), domain=DOMAIN, epoch=1, n=3, t=2, group_key=ALICE.group_key),
        rotate_committee_ix(pid, _ATTESTATIONS[_ROTATION], _ROTATION),
        verify_signature_ix(pid, _ATTESTATIONS[_UNDELIVERED], _UNDELIVERED),
        verify_digest_ix(pid, signature=_DIGEST_SIG, hint=_DIGEST_HINT, digest=_DIGEST, group_key=ALICE.group_key),
        init_gateway_ix(pid, payer.pubkey()),
        send_ix(pid, other.pubkey(), dst_domain=31337, receiver=b"\x44" * 32, kind=MessageKind.DATA, payload=b"hi"),
        deliver_ix(pid, payer.pubkey(), _ATTESTATIONS[_UNDELIVERED], _UNDELIVERED),
        deliver_ix(pid, payer.pubkey(), _ATTESTATIONS[_DELIVERED], _DELIVERED),
        request_task_ix(pid, other.pubkey(), request_id=b"\x05" * 32, dst_domain=31337, worker_board=b"\x33" * 32,
                        payload=_V1_REQUEST),
        submit_result_ix(pid, other.pubkey(), delivered_id, _V1_RESULT),
        reclaim_ix(pid, other.pubkey(), delivered_id),
        request_task_v2_ix(pid, other.pubkey(), task_nonce=_REQUESTER_NONCE + 1, dst_domain=DOMAIN + 1,
                           worker_board=b"\x33" * 32, payload=_V2_REQUEST),
        claim_task_ix(pid, other.pubkey(), delivered_id, payout=b"\x55" * 32, refund_to=payer.pubkey()),
        submit_result_v2_ix(pid, other.pubkey(), delivered_id, _V2_RESULT),
        expire_claim_ix(pid, delivered_id, payer.pubkey()),
        release_bond_ix(pid, delivered_id, other.pubkey()),
        reclaim_v2_ix(pid, task, other.pubkey()),
        withdraw_credit_ix(pid, task, other.pubkey()),
        *(check_task_payload_v2_ix(pid, kind, payload) for kind, payload in
          [(0, bytes(38)), (1, _V2_REQUEST), (2, _V2_RESULT), (3, _V2_VERDICT)]),
        update_feed_ix(pid, payer.pubkey(), _SIGNED_REPORT),
        probe_ix(pid, probe_target, b"probe"),
    ]
    exact = {bytes(ix.data) for ix in seeds}
    return Setup(chain, {payer.pubkey(): payer, other.pubkey(): other}, pool, seeds, exact)


# Instructions that change state only with the committee's signature or the upgrade authority: a
# success with data that is not one of the seeds' is an accepted forgery.
GUARDED = {TAGS[name] for name in ("INIT_COMMITTEE", "ROTATE_COMMITTEE", "INIT_GATEWAY", "DELIVER", "FEED_UPDATE")}
# Instructions that write nothing.
READ_ONLY = {TAGS[name] for name in ("VERIFY_SIGNATURE", "VERIFY_DIGEST", "TASK_CHECK_PAYLOAD_V2")}
PROGRAM_ERRORS = {int(code) for code in ProgramErrorCode}


# --- examples -----------------------------------------------------------------------------------


ACCOUNT_ACTIONS = ("signer", "writable", "replace", "drop", "repeat")


@dataclass(frozen=True)
class Plan:
    """How an example changes a seed instruction."""

    seed: int
    tag: int | None  # replaces the first data byte
    data: bytes | None  # replaces the data (None: the seed's, with `edits`, `cut`, `tail`)
    edits: tuple[tuple[int, int], ...]  # (offset, byte) overwrites
    cut: int | None  # keep this many bytes
    tail: bytes  # appended
    accounts: tuple[tuple[int, bool, bool], ...] | None  # a new list: (pool index, signer, writable)
    account_edits: tuple[tuple[int, str, int], ...]  # (position, action, pool index) on the seed's list


@st.composite
def plans(draw) -> Plan:
    """Mostly a seed changed in a few places (so the parsers get deep), sometimes random."""
    mode = draw(st.integers(0, 9))
    tag = draw(st.sampled_from(sorted(TAGS.values()))) if mode == 7 else draw(st.integers(0, 255)) if mode == 8 else None
    data = draw(st.binary(max_size=400)) if mode == 9 else None
    edits = tuple(draw(st.lists(st.tuples(st.integers(0, 1023), st.integers(0, 255)), max_size=3)))
    cut = draw(st.integers(1, 600)) if draw(st.integers(0, 3)) == 3 else None
    tail = draw(st.just(b"") | st.binary(max_size=8))
    accounts = None
    if draw(st.integers(0, 4)) == 4:
        accounts = tuple(draw(st.lists(st.tuples(st.integers(0, 63), st.booleans(), st.booleans()), max_size=8)))
    account_edits = tuple(draw(st.lists(st.tuples(st.integers(0, 7), st.sampled_from(ACCOUNT_ACTIONS),
                                                  st.integers(0, 63)), max_size=3)))
    return Plan(draw(st.integers(0, 63)), tag, data, edits, cut, tail, accounts, account_edits)


def build(s: Setup, plan: Plan) -> tuple[Instruction, tuple[Keypair, ...]]:
    seed = s.seeds[plan.seed % len(s.seeds)]
    data = bytearray(plan.data if plan.data is not None else bytes(seed.data))
    for offset, value in plan.edits:  # after the tag (a new tag is `plan.tag`'s job)
        if len(data) > 1:
            data[1 + offset % (len(data) - 1)] = value
    if plan.cut is not None:
        data = data[: plan.cut]
    data += plan.tail
    if plan.tag is not None:
        data[:1] = bytes([plan.tag])
    if plan.accounts is not None:
        metas = [AccountMeta(s.pool[i % len(s.pool)], signer, writable) for i, signer, writable in plan.accounts]
    else:
        metas = list(seed.accounts)
    for position, action, index in plan.account_edits:
        if not metas:
            break
        at = position % len(metas)
        meta = metas[at]
        match action:
            case "signer":
                metas[at] = AccountMeta(meta.pubkey, not meta.is_signer, meta.is_writable)
            case "writable":
                metas[at] = AccountMeta(meta.pubkey, meta.is_signer, not meta.is_writable)
            case "replace":
                metas[at] = AccountMeta(s.pool[index % len(s.pool)], meta.is_signer, meta.is_writable)
            case "drop":
                del metas[at]
            case "repeat":
                metas.insert(index % (len(metas) + 1), meta)
    # Only keys the test holds can sign; the others lose the flag (the transaction could not be signed).
    metas = [AccountMeta(m.pubkey, m.is_signer and m.pubkey in s.signers, m.is_writable) for m in metas]
    signers = tuple({m.pubkey: s.signers[m.pubkey] for m in metas
                     if m.is_signer and m.pubkey != s.chain.payer.pubkey()}.values())
    return Instruction(s.chain.program_id, bytes(data), metas), signers


def _snapshot(s: Setup, keys) -> dict[Pubkey, tuple[int, bytes, Pubkey] | None]:
    out = {}
    for key in keys:
        account = s.chain.svm.get_account(key)
        out[key] = None if account is None else (account.lamports, bytes(account.data), account.owner)
    return out


@settings(max_examples=budget(300), deadline=None)
@given(plan=plans())
def test_random_instructions_end_in_a_program_error_and_write_nothing_they_should_not(plan: Plan) -> None:
    s = setup()
    ix, signers = build(s, plan)
    tag = ix.data[0] if ix.data else None
    owned = [k for k in {*s.pool, *(m.pubkey for m in ix.accounts)}
             if (a := s.chain.svm.get_account(k)) is not None and a.owner == s.chain.program_id]
    before = _snapshot(s, owned)
    result = s.chain.send(ix, signers=signers)
    logs = "\n".join(result.meta().logs() if isinstance(result, FailedTransactionMetadata) else result.logs())
    if isinstance(result, FailedTransactionMetadata):
        code = solana.custom_error(result)
        event(f"refused: {ProgramErrorCode(code).name if code in PROGRAM_ERRORS else result.err()}")
        assert code in PROGRAM_ERRORS, f"tag {tag}: not a program error: {result.err()}\n{logs}"
        assert _snapshot(s, owned) == before
        return
    assert isinstance(result, TransactionMetadata)
    event(f"accepted: tag {tag}")
    if tag in GUARDED:
        assert bytes(ix.data) in s.exact, f"tag {tag}: accepted data no committee signed:\n{ix}\n{logs}"
    if tag in READ_ONLY:
        assert _snapshot(s, owned) == before, f"tag {tag} wrote to the program's accounts:\n{ix}"


def test_every_tag_reaches_the_program() -> None:
    """Each tag with no data and no accounts gets the program's own refusal (not UNKNOWN_INSTRUCTION)."""
    s = setup()
    for name, tag in TAGS.items():
        result = s.chain.send(Instruction(s.chain.program_id, bytes([tag]), []))
        if isinstance(result, TransactionMetadata):
            assert tag in READ_ONLY | {TAGS["PROBE"]}, name
            continue
        assert solana.custom_error(result) not in (None, ProgramErrorCode.UNKNOWN_INSTRUCTION), (name, result.err())
