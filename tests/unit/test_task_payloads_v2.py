"""Task protocol v2 payload codecs: layouts, strict decoding, the auction price, the worker's v2
signature, verdicts, v1/v2 separation, and the shared vectors (tests/vectors/tasks_v2.json)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from relay.envelope import Envelope, keccak256
from relay.protocol import COMMITTEE_DOMAIN, MAX_PAYLOAD_LEN, TAG_RESULT_V2, MessageKind
from relay.tasks.payloads import (
    BPS,
    MAX_INLINE_INPUT_LEN_V2,
    MAX_INLINE_OUTPUT_LEN_V2,
    VERDICT_LEN,
    AttestationMethod,
    PayloadTooLargeError,
    ProofAttestation,
    ProofKind,
    ProofVerdict,
    RefusalReason,
    TaskPayloadError,
    TaskRequest,
    TaskRequestV2,
    TaskResult,
    TaskResultV2,
    Verdict,
    WorkerSignatureError,
    auction_price,
    encode_executor_id,
    sign_result,
    task_payload_version,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
ROOT = VECTORS.parents[1]
DOC = json.loads((VECTORS / "tasks_v2.json").read_text())
V1 = json.loads((VECTORS / "tasks_v1.json").read_text())
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
RID = keccak256(b"request")
PAYOUT = b"\x00" * 12 + bytes.fromhex("70997970c51812dc3a010c7d01b50e0d17dc79c8")
CLAIMANT = b"\x00" * 12 + bytes.fromhex("3c44cdddb6a900fa2b585dd299e03d12fa4293bc")
REFUND = b"\x00" * 12 + b"\x99" * 20


def b(value: str) -> bytes:
    return bytes.fromhex(value[2:])


def request(**changes: object) -> TaskRequestV2:
    fields: dict[str, object] = dict(executor="echo", max_fee=10**18, deadline=1_800_000_000, auction_window=60,
                                     start_bps=5_000, claim_window=30, bond=10**16, refund_to=REFUND, input=b"hi")
    fields.update(changes)
    return TaskRequestV2(**fields)  # type: ignore[arg-type]


def result(**changes: object) -> TaskResultV2:
    fields: dict[str, object] = dict(request_id=RID, executor="echo", output=b"hi", claimant=CLAIMANT, payout=PAYOUT,
                                     price=7 * 10**17)
    fields.update(changes)
    return TaskResultV2.signed(KEY, **fields)  # type: ignore[arg-type]


# --- strategies --------------------------------------------------------------------------------

executor_ids = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=16)
uris = st.builds(lambda s, rest: s + rest, st.sampled_from(["https://", "http://", "ipfs://", "ar://"]),
                 st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp")), min_size=1,
                         max_size=60))
u128, u64, u32 = st.integers(0, 2**128 - 1), st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1)
b32 = st.binary(min_size=32, max_size=32)
nonzero_b32 = b32.filter(lambda x: any(x))


@st.composite
def requests(draw: st.DrawFn) -> TaskRequestV2:
    terms = dict(executor=draw(executor_ids), max_fee=draw(u128), deadline=draw(u64), auction_window=draw(u32),
                 start_bps=draw(st.integers(0, BPS)), claim_window=draw(st.integers(1, 2**32 - 1)), bond=draw(u128),
                 refund_to=draw(nonzero_b32))
    if draw(st.booleans()):
        return TaskRequestV2(**terms, input=draw(st.binary(max_size=MAX_INLINE_INPUT_LEN_V2)))  # type: ignore[arg-type]
    return TaskRequestV2(**terms, input_hash=draw(b32), input_uri=draw(uris))  # type: ignore[arg-type]


@st.composite
def results(draw: st.DrawFn) -> TaskResultV2:
    kind = draw(st.sampled_from(list(ProofKind)))
    proof = b"" if kind is ProofKind.NONE else draw(st.binary(max_size=100))
    output = draw(st.binary(max_size=120))
    uri = draw(st.one_of(st.none(), uris))
    return TaskResultV2(request_id=draw(b32), executor=draw(executor_ids), output_hash=keccak256(output),
                        worker=draw(b32), claimant=draw(b32), payout=draw(b32), price=draw(u128),
                        signature=draw(st.binary(min_size=64, max_size=64)), proof_kind=kind, proof=proof,
                        output=None if uri else output, output_uri=uri)


@st.composite
def verdicts(draw: st.DrawFn) -> ProofVerdict:
    reason = draw(st.sampled_from(list(RefusalReason)))
    return ProofVerdict(draw(b32), draw(b32), draw(b32), draw(b32), draw(b32), draw(b32), draw(u128),
                        draw(st.sampled_from(list(AttestationMethod))),
                        Verdict.VALID if reason is RefusalReason.NONE else Verdict.REFUSED, reason, draw(u64))


# --- round trips and layouts -------------------------------------------------------------------


@given(requests())
def test_request_round_trip(req: TaskRequestV2) -> None:
    encoded = req.encode()
    assert encoded[0] == 2 and len(encoded) <= MAX_PAYLOAD_LEN
    assert TaskRequestV2.decode(encoded) == req
    assert task_payload_version(MessageKind.TASK_REQUEST, encoded) == 2


@given(results())
def test_result_round_trip(res: TaskResultV2) -> None:
    encoded = res.encode()
    assert encoded[:32] == res.request_id and encoded[32] == 2
    assert TaskResultV2.decode(encoded) == res
    assert task_payload_version(MessageKind.TASK_RESULT, encoded) == 2


@given(verdicts())
def test_verdict_round_trip(v: ProofVerdict) -> None:
    encoded = v.encode()
    assert len(encoded) == VERDICT_LEN and encoded[32] == 2
    assert ProofVerdict.decode(encoded) == v
    assert task_payload_version(MessageKind.PROOF_ATTESTATION, encoded) == 2


@given(st.sampled_from([TaskRequestV2, TaskResultV2, ProofVerdict]), st.binary(max_size=600))
def test_arbitrary_bytes_are_rejected_or_canonical(cls: type, data: bytes) -> None:
    try:
        decoded = cls.decode(data)
    except TaskPayloadError:
        return
    assert decoded.encode() == data


def test_request_layout_is_packed_big_endian() -> None:
    encoded = request(input=b"xyz").encode()
    assert encoded == (
        b"\x02" + encode_executor_id("echo") + (10**18).to_bytes(16, "big") + (1_800_000_000).to_bytes(8, "big")
        + (60).to_bytes(4, "big") + (5_000).to_bytes(2, "big") + (30).to_bytes(4, "big")
        + (10**16).to_bytes(16, "big") + REFUND + b"\x00" + b"\x00\x03xyz"
    )


def test_result_layout_and_signed_fields() -> None:
    res = result()
    encoded = res.encode()
    assert encoded[:33] == RID + b"\x02"
    assert encoded[33:49] == encode_executor_id("echo")
    assert encoded[49:81] == keccak256(b"hi")
    assert encoded[113:145] == CLAIMANT and encoded[145:177] == PAYOUT
    assert int.from_bytes(encoded[177:193], "big") == 7 * 10**17
    assert encoded[193:257] == res.signature
    assert encoded[257:] == b"\x00" + b"\x00\x00" + b"\x00" + b"\x00\x02hi"


def test_limits_fit_exactly_and_one_more_byte_refuses() -> None:
    assert len(request(input=bytes(MAX_INLINE_INPUT_LEN_V2)).encode()) == MAX_PAYLOAD_LEN
    with pytest.raises(PayloadTooLargeError, match="hash \\+ URI"):
        request(input=bytes(MAX_INLINE_INPUT_LEN_V2 + 1)).encode()
    assert len(result(output=bytes(MAX_INLINE_OUTPUT_LEN_V2)).encode()) == MAX_PAYLOAD_LEN
    with pytest.raises(PayloadTooLargeError):
        result(output=bytes(MAX_INLINE_OUTPUT_LEN_V2 + 1)).encode()


@pytest.mark.parametrize(("changes", "fragment"), [
    ({"start_bps": BPS + 1}, "start_bps"),
    ({"claim_window": 0}, "claim_window"),
    ({"claim_window": 2**32}, "claim_window"),
    ({"auction_window": -1}, "auction_window"),
    ({"bond": 2**128}, "bond"),
    ({"max_fee": 2**128}, "max_fee"),
    ({"refund_to": bytes(32)}, "refund_to"),
    ({"refund_to": b"\x01" * 20}, "refund_to"),
    ({"input_hash": bytes(32), "input_uri": "https://a.example/x"}, "not both"),
])
def test_request_terms_are_checked_naming_the_field(changes: dict, fragment: str) -> None:
    with pytest.raises(TaskPayloadError, match=fragment):
        request(**changes)


def test_truncation_names_the_field() -> None:
    encoded = request().encode()
    with pytest.raises(TaskPayloadError, match="claim_window needs 4 bytes at offset 47"):
        TaskRequestV2.decode(encoded[:49])
    with pytest.raises(TaskPayloadError, match="price needs 16 bytes at offset 177"):
        TaskResultV2.decode(result().encode()[:180])


def test_verdict_and_reason_must_agree() -> None:
    res = result()
    valid = ProofVerdict.for_result(res, keccak256(b"r"), AttestationMethod.REEXECUTION, 5)
    assert valid.valid and valid.reason is RefusalReason.NONE
    refused = ProofVerdict.for_result(res, keccak256(b"r"), AttestationMethod.REEXECUTION, 5,
                                      RefusalReason.OUTPUT_MISMATCH)
    assert not refused.valid and refused.verdict is Verdict.REFUSED
    assert (refused.claimant, refused.payout, refused.price) == (CLAIMANT, PAYOUT, 7 * 10**17)
    with pytest.raises(TaskPayloadError, match="reason 0"):
        ProofVerdict(*[RID] * 6, 1, AttestationMethod.SIGNATURE_ONLY, Verdict.REFUSED, RefusalReason.NONE, 0)
    with pytest.raises(TaskPayloadError, match="reason 2"):
        ProofVerdict(*[RID] * 6, 1, AttestationMethod.SIGNATURE_ONLY, Verdict.VALID, RefusalReason.WRONG_EXECUTOR, 0)


# --- the auction -------------------------------------------------------------------------------


@given(u128, st.integers(0, BPS), u32, u64, st.integers(0, 2**33), st.integers(0, 2**33))
def test_auction_price_rises_monotonically_from_start_to_max(max_fee: int, bps: int, window: int, start: int,
                                                             a: int, c: int) -> None:
    early, late = sorted((start + a - 2**32, start + c - 2**32))
    p_early = auction_price(max_fee, bps, window, start, early)
    p_late = auction_price(max_fee, bps, window, start, late)
    assert max_fee * bps // BPS <= p_early <= p_late <= max_fee
    assert auction_price(max_fee, bps, window, start, start + window) == max_fee


def test_auction_price_vectors() -> None:
    for case in DOC["auction_prices"]:
        got = auction_price(int(case["max_fee"]), case["start_bps"], case["auction_window"], case["auction_start"],
                            case["now"])
        assert got == int(case["price"]), case["name"]


# --- signatures: what sniping would need -------------------------------------------------------


def test_v2_signature_binds_claimant_payout_and_price() -> None:
    res = result()
    res.verify_signature()
    for field, value in (("claimant", b"\x01" * 32), ("payout", b"\x02" * 32), ("price", 1),
                         ("output_hash", keccak256(b"other"))):
        copy = TaskResultV2(**{**{f: getattr(res, f) for f in res.__slots__}, field: value,  # type: ignore[attr-defined]
                               "output": None, "output_uri": "https://copier.example/out"})
        with pytest.raises(WorkerSignatureError, match="claimant, payout, price"):
            copy.verify_signature()


def test_a_v1_signature_never_verifies_as_v2() -> None:
    res = result()
    v1_sig = sign_result(KEY, RID, res.output_hash, "echo", PAYOUT)
    forged = TaskResultV2(**{**{f: getattr(res, f) for f in res.__slots__}, "signature": v1_sig})  # type: ignore[attr-defined]
    with pytest.raises(WorkerSignatureError):
        forged.verify_signature()


# --- v1 and v2 cannot be confused --------------------------------------------------------------


def test_v1_and_v2_payloads_are_told_apart_and_refused_by_the_other_codec() -> None:
    pairs = [("task_requests", MessageKind.TASK_REQUEST, TaskRequest, TaskRequestV2),
             ("task_results", MessageKind.TASK_RESULT, TaskResult, TaskResultV2)]
    for key, kind, v1_codec, v2_codec in pairs:
        for case in V1[key]:
            data = b(case["encoded"])
            assert task_payload_version(kind, data) == 1
            with pytest.raises(TaskPayloadError, match="version byte"):
                v2_codec.decode(data)
        for case in DOC[key]:
            data = b(case["encoded"])
            assert task_payload_version(kind, data) == 2
            with pytest.raises(TaskPayloadError, match="printable ASCII"):
                v1_codec.decode(data)
    for case in V1["proof_attestations"]:
        assert task_payload_version(MessageKind.PROOF_ATTESTATION, b(case["encoded"])) == 1
        with pytest.raises(TaskPayloadError, match="must be 220"):
            ProofVerdict.decode(b(case["encoded"]))
    for case in DOC["verdicts"]:
        with pytest.raises(TaskPayloadError, match="must be 170"):
            ProofAttestation.decode(b(case["encoded"]))
    with pytest.raises(TaskPayloadError, match="no task payload"):
        task_payload_version(MessageKind.DATA, b"")


# --- the shared vectors ------------------------------------------------------------------------


def test_vector_file_covers_what_other_implementations_need() -> None:
    assert DOC["payload_version"] == 2 and DOC["result_tag"] == TAG_RESULT_V2.decode()
    assert len(DOC["task_requests"]) >= 6 and len(DOC["task_results"]) >= 4 and len(DOC["verdicts"]) >= 4
    assert {c["kind"] for c in DOC["invalid"]} == {1, 2, 3} and len(DOC["invalid"]) >= 25
    assert {c["verdict"] for c in DOC["verdicts"]} == {1, 2}
    assert any(int(c["max_fee"]) == 2**128 - 1 and c["auction_window"] == 2**32 - 1 for c in DOC["auction_prices"])


@pytest.mark.parametrize("case", DOC["task_requests"], ids=lambda c: c["name"])
def test_request_vectors(case: dict) -> None:
    req = TaskRequestV2.decode(b(case["encoded"]))
    assert (req.executor, req.max_fee, req.deadline) == (case["executor"], int(case["max_fee"]), case["deadline"])
    assert (req.auction_window, req.start_bps, req.claim_window, req.bond, req.refund_to) == (
        case["auction_window"], case["start_bps"], case["claim_window"], int(case["bond"]), b(case["refund_to"]))
    assert req.input == (case["input"] and b(case["input"]))
    assert req.input_uri == case["input_uri"]
    assert req.encode() == b(case["encoded"])


@pytest.mark.parametrize("case", DOC["task_results"], ids=lambda c: c["name"])
def test_result_vectors(case: dict) -> None:
    res = TaskResultV2.decode(b(case["encoded"]))
    key = Ed25519PrivateKey.from_private_bytes(b(case["worker_seed"]))
    again = TaskResultV2.signed(key, request_id=res.request_id, executor=res.executor, output=b(case["output_bytes"]),
                                claimant=res.claimant, payout=res.payout, price=res.price,
                                output_uri=res.output_uri, proof_kind=res.proof_kind, proof=res.proof)
    assert again == res and again.encode() == b(case["encoded"])
    assert keccak256(b(case["signing_message"])) == b(case["signing_digest"]) == res.signing_digest()
    assert (res.claimant, res.payout, res.price) == (b(case["claimant"]), b(case["payout"]), int(case["price"]))
    res.verify_signature()


@pytest.mark.parametrize("case", DOC["verdicts"], ids=lambda c: c["name"])
def test_verdict_vectors(case: dict) -> None:
    v = ProofVerdict.decode(b(case["encoded"]))
    assert (int(v.verdict), int(v.reason), int(v.method), v.submitted_at, v.price) == (
        case["verdict"], case["reason"], case["method"], case["submitted_at"], int(case["price"]))
    assert v.encode() == b(case["encoded"])


def test_envelope_vectors_and_one_verdict_envelope_per_destination() -> None:
    for name in ("request_envelope", "result_envelope"):
        env = Envelope.decode(b(DOC[name]["encoded"]))
        assert env.message_id == b(DOC[name]["message_id"])
    request_env = Envelope.decode(b(DOC["request_envelope"]["encoded"]))
    result_env = Envelope.decode(b(DOC["result_envelope"]["encoded"]))
    assert TaskResultV2.decode(result_env.payload).request_id == request_env.message_id
    ve = DOC["verdict_envelopes"]
    to_requester = Envelope.decode(b(ve["to_requester_board"]["encoded"]))
    to_server = Envelope.decode(b(ve["to_serving_board"]["encoded"]))
    for env, (domain, receiver) in ((to_requester, (result_env.dst_domain, result_env.dst_receiver)),
                                    (to_server, (result_env.src_domain, result_env.src_sender))):
        assert (env.src_domain, env.src_sender, env.nonce) == (COMMITTEE_DOMAIN, bytes(32), 0)
        assert (env.dst_domain, env.dst_receiver) == (domain, receiver)
        assert env.payload == b(ve["payload"])
        assert ProofVerdict.decode(env.payload).result_id == result_env.message_id
    assert to_requester.message_id != to_server.message_id


@pytest.mark.parametrize("case", DOC["invalid"], ids=lambda c: f'{c["kind"]}: {c["name"]}')
def test_invalid_vectors_are_rejected(case: dict) -> None:
    codec = {1: TaskRequestV2, 2: TaskResultV2, 3: ProofVerdict}[case["kind"]]
    with pytest.raises(TaskPayloadError, match=case["error"]):
        codec.decode(b(case["payload"]))


def test_generator_reproduces_the_vector_file(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(VECTORS / "generate_tasks_v2.py"), "--out", str(tmp_path)],
                   check=True, cwd=ROOT, capture_output=True)
    assert (tmp_path / "tasks_v2.json").read_bytes() == (VECTORS / "tasks_v2.json").read_bytes()
