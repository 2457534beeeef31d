"""AI-task payload codecs: layouts, strict decoding, worker signatures, and the shared vectors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.envelope import EnvelopeError, keccak256
from relay.protocol import MAX_PAYLOAD_LEN
from relay.tasks.payloads import (
    ATTESTATION_LEN,
    MAX_INLINE_INPUT_LEN,
    TAG_RESULT,
    AttestationMethod,
    DataMode,
    InvalidURIError,
    PayloadTooLargeError,
    ProofAttestation,
    ProofKind,
    TaskPayloadError,
    TaskRequest,
    TaskResult,
    WorkerSignatureError,
    encode_executor_id,
    result_signing_digest,
    sign_result,
    verify_worker_signature,
    worker_public_key,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
ROOT = VECTORS.parents[1]
DOC = json.loads((VECTORS / "tasks_v1.json").read_text())
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
RID = keccak256(b"request")
PAYOUT = b"\x00" * 12 + bytes.fromhex("70997970c51812dc3a010c7d01b50e0d17dc79c8")


def b(value: str) -> bytes:
    return bytes.fromhex(value[2:])


# --- strategies --------------------------------------------------------------------------------

executor_ids = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=16)
uris = st.builds(
    lambda scheme, rest: scheme + rest,
    st.sampled_from(["https://", "http://", "ipfs://", "ar://"]),
    st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp")), min_size=1, max_size=60),
)
u128 = st.integers(0, 2**128 - 1)
u64 = st.integers(0, 2**64 - 1)
b32 = st.binary(min_size=32, max_size=32)


@st.composite
def requests(draw: st.DrawFn) -> TaskRequest:
    executor, fee, deadline = draw(executor_ids), draw(u128), draw(u64)
    if draw(st.booleans()):
        return TaskRequest(executor, fee, deadline, input=draw(st.binary(max_size=MAX_INLINE_INPUT_LEN)))
    return TaskRequest(executor, fee, deadline, input_hash=draw(b32), input_uri=draw(uris))


@st.composite
def results(draw: st.DrawFn) -> TaskResult:
    kind = draw(st.sampled_from(list(ProofKind)))
    proof = b"" if kind is ProofKind.NONE else draw(st.binary(max_size=120))
    output = draw(st.binary(max_size=160))
    uri = draw(st.one_of(st.none(), uris))
    return TaskResult(
        request_id=draw(b32), executor=draw(executor_ids), output_hash=keccak256(output), worker=draw(b32),
        payout=draw(b32), signature=draw(st.binary(min_size=64, max_size=64)), proof_kind=kind, proof=proof,
        output=None if uri else output, output_uri=uri,
    )


attestations = st.builds(
    ProofAttestation, b32, b32, b32, b32, b32, st.sampled_from(list(AttestationMethod)), u64
)


# --- round trips ---------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(requests())
def test_task_request_round_trip(request: TaskRequest) -> None:
    encoded = request.encode()
    assert len(encoded) <= MAX_PAYLOAD_LEN
    assert TaskRequest.decode(encoded) == request


@settings(max_examples=300, deadline=None)
@given(results())
def test_task_result_round_trip(result: TaskResult) -> None:
    assert TaskResult.decode(result.encode()) == result


@settings(max_examples=200, deadline=None)
@given(attestations)
def test_proof_attestation_round_trip(att: ProofAttestation) -> None:
    encoded = att.encode()
    assert len(encoded) == ATTESTATION_LEN
    assert ProofAttestation.decode(encoded) == att


@settings(max_examples=500, deadline=None)
@given(st.sampled_from([TaskRequest, TaskResult, ProofAttestation]), st.binary(max_size=600))
def test_decoding_arbitrary_bytes_rejects_or_is_canonical(cls: type, data: bytes) -> None:
    # Either a clear protocol error, or the bytes are the one canonical encoding of what decoded.
    try:
        decoded = cls.decode(data)
    except EnvelopeError:
        return
    assert decoded.encode() == data


# --- layouts -------------------------------------------------------------------------------------


def test_task_request_layout_is_packed_big_endian() -> None:
    encoded = TaskRequest("sentiment", 2**100 + 5, 1_800_000_000, input=b"hi").encode()
    assert encoded[:16] == b"sentiment" + b"\x00" * 7
    assert int.from_bytes(encoded[16:32], "big") == 2**100 + 5
    assert int.from_bytes(encoded[32:40], "big") == 1_800_000_000
    assert encoded[40] == DataMode.INLINE
    assert encoded[41:] == b"\x00\x02hi"
    by_ref = TaskRequest("echo", 0, 0, input_hash=b"\x11" * 32, input_uri="ar://x").encode()
    assert by_ref[40] == DataMode.URI and by_ref[41:73] == b"\x11" * 32 and by_ref[73:] == b"\x00\x06ar://x"


def test_task_result_layout_and_signature_fields() -> None:
    result = TaskResult.signed(KEY, request_id=RID, executor="echo", output=b"out", payout=PAYOUT,
                               proof_kind=ProofKind.REEXECUTION, proof=b"pp")
    encoded = result.encode()
    assert encoded[:32] == RID
    assert encoded[32:48] == encode_executor_id("echo")
    assert encoded[48:80] == keccak256(b"out")
    assert encoded[80:112] == worker_public_key(KEY)
    assert encoded[112:144] == PAYOUT
    assert encoded[144:208] == result.signature
    assert encoded[208] == ProofKind.REEXECUTION and encoded[209:213] == b"\x00\x02pp"
    assert encoded[213] == DataMode.INLINE and encoded[214:] == b"\x00\x03out"
    digest = keccak256(TAG_RESULT + RID + keccak256(b"out") + encode_executor_id("echo") + PAYOUT)
    assert result_signing_digest(RID, keccak256(b"out"), "echo", PAYOUT) == digest
    KEY.public_key().verify(result.signature, digest)  # raises if the signed message differs


def test_largest_inline_input_fits_exactly_and_one_more_byte_refuses_with_advice() -> None:
    assert len(TaskRequest("echo", 0, 0, input=b"\x01" * MAX_INLINE_INPUT_LEN).encode()) == MAX_PAYLOAD_LEN
    with pytest.raises(PayloadTooLargeError, match="hash \\+ URI"):
        TaskRequest("echo", 0, 0, input=b"\x01" * (MAX_INLINE_INPUT_LEN + 1)).encode()
    big = TaskResult.signed(KEY, request_id=RID, executor="echo", output=b"\x02" * 299, payout=PAYOUT)
    with pytest.raises(PayloadTooLargeError, match="512"):
        big.encode()
    TaskResult.signed(KEY, request_id=RID, executor="echo", output=b"\x02" * 298, payout=PAYOUT).encode()


# --- malformed input ------------------------------------------------------------------------------


def valid_payloads() -> list[tuple[type, bytes]]:
    return [
        (TaskRequest, TaskRequest("sentiment", 1, 2, input=b"hello").encode()),
        (TaskRequest, TaskRequest("echo", 1, 2, input_hash=b"\x01" * 32, input_uri="ipfs://cid").encode()),
        (TaskResult, TaskResult.signed(KEY, request_id=RID, executor="echo", output=b"o", payout=PAYOUT).encode()),
        (TaskResult, TaskResult.signed(KEY, request_id=RID, executor="echo", output=b"o", payout=PAYOUT,
                                       output_uri="https://x.example/o", proof_kind=ProofKind.ZK_PROOF, proof=b"z").encode()),
        (ProofAttestation, ProofAttestation(RID, RID, RID, RID, PAYOUT, AttestationMethod.REEXECUTION, 5).encode()),
    ]


@pytest.mark.parametrize("cls,data", valid_payloads(), ids=lambda v: getattr(v, "__name__", ""))
def test_every_truncation_and_any_trailing_byte_is_rejected(cls: type, data: bytes) -> None:
    for cut in range(len(data)):
        with pytest.raises(TaskPayloadError, match="truncated|must be|length|trailing|output_hash|URI|zero byte|executor"):
            cls.decode(data[:cut])
    with pytest.raises(TaskPayloadError, match="trailing|must be 170"):
        cls.decode(data + b"\x00")


def test_truncation_message_names_the_field() -> None:
    data = TaskRequest("sentiment", 1, 2, input=b"hello").encode()
    with pytest.raises(TaskPayloadError, match="deadline needs 8 bytes at offset 32"):
        TaskRequest.decode(data[:35])
    with pytest.raises(TaskPayloadError, match="input needs 5 bytes"):
        TaskRequest.decode(data[:-1])


@pytest.mark.parametrize("mode", [2, 3, 255])
def test_bad_modes_are_rejected(mode: int) -> None:
    req = bytearray(TaskRequest("echo", 1, 2, input=b"x").encode())
    req[40] = mode
    with pytest.raises(TaskPayloadError, match=f"input mode {mode} is unknown"):
        TaskRequest.decode(bytes(req))
    res = bytearray(TaskResult.signed(KEY, request_id=RID, executor="echo", output=b"o", payout=PAYOUT).encode())
    res[211] = mode
    with pytest.raises(TaskPayloadError, match=f"output mode {mode} is unknown"):
        TaskResult.decode(bytes(res))


@pytest.mark.parametrize(
    "uri,fragment",
    [
        ("ftp://host/file", "unsupported scheme"),
        ("file:///etc/passwd", "unsupported scheme"),
        ("HTTPS://upper.example", "unsupported scheme"),
        ("data:text/plain,hi", "unsupported scheme"),
        ("https://", "names nothing"),
        ("https://a b", "whitespace"),
        ("ipfs://cid\n", "whitespace"),
        ("https://x.example/" + "a" * 239, "257 bytes"),
        ("ar://" + "é" * 126, "257 bytes"),
    ],
)
def test_bad_uris_are_rejected_on_encode_and_decode(uri: str, fragment: str) -> None:
    with pytest.raises(InvalidURIError, match=fragment):
        TaskRequest("echo", 1, 2, input_hash=b"\x00" * 32, input_uri=uri)
    good = TaskRequest("echo", 1, 2, input_hash=b"\x00" * 32, input_uri="https://ok").encode()
    raw = uri.encode()
    forged = good[:73] + len(raw).to_bytes(2, "big") + raw
    if len(forged) <= MAX_PAYLOAD_LEN:
        with pytest.raises(InvalidURIError, match=fragment):
            TaskRequest.decode(forged)


def test_longest_uri_is_accepted() -> None:
    uri = "https://x.example/" + "a" * 238
    assert len(uri) == 256
    assert TaskRequest.decode(TaskRequest("echo", 1, 2, input_hash=b"\x00" * 32, input_uri=uri).encode()).input_uri == uri


def test_invalid_utf8_uri_is_rejected() -> None:
    good = TaskRequest("echo", 1, 2, input_hash=b"\x00" * 32, input_uri="https://ok").encode()
    with pytest.raises(InvalidURIError, match="UTF-8"):
        TaskRequest.decode(good[:73] + b"\x00\x0ahttps://\xff\xfe")


@pytest.mark.parametrize(
    "executor,fragment",
    [("", "1 to 16"), ("a" * 17, "1 to 16"), ("sentiment analysis"[:16], "without spaces"), ("séntiment", "ASCII")],
)
def test_bad_executor_ids_are_rejected(executor: str, fragment: str) -> None:
    with pytest.raises(TaskPayloadError, match=fragment):
        TaskRequest(executor, 1, 2, input=b"")


def test_executor_id_decoding_is_canonical() -> None:
    data = bytearray(TaskRequest("echo", 1, 2, input=b"").encode())
    data[5] = ord("x")  # "echo\0x": a zero inside, not only as padding
    with pytest.raises(TaskPayloadError, match="zero byte inside"):
        TaskRequest.decode(bytes(data))
    with pytest.raises(TaskPayloadError, match="1 to 16"):
        TaskRequest.decode(b"\x00" * 16 + bytes(data[16:]))


def test_value_range_and_consistency_checks() -> None:
    with pytest.raises(TaskPayloadError, match="uint128"):
        TaskRequest("echo", 2**128, 0, input=b"")
    with pytest.raises(TaskPayloadError, match="uint64"):
        TaskRequest("echo", 0, -1, input=b"")
    with pytest.raises(TaskPayloadError, match="not both"):
        TaskRequest("echo", 0, 0, input=b"", input_hash=b"\x00" * 32, input_uri="ar://x")
    with pytest.raises(TaskPayloadError, match="both input_hash and input_uri"):
        TaskRequest("echo", 0, 0, input_hash=b"\x00" * 32)
    with pytest.raises(TaskPayloadError, match="no proof bytes"):
        TaskResult.signed(KEY, request_id=RID, executor="echo", output=b"", payout=PAYOUT, proof=b"p")
    with pytest.raises(TaskPayloadError, match="exactly one"):
        TaskResult(RID, "echo", keccak256(b""), RID, PAYOUT, b"\x00" * 64)
    with pytest.raises(TaskPayloadError, match="keccak256 of the inline output"):
        TaskResult(RID, "echo", keccak256(b"a"), RID, PAYOUT, b"\x00" * 64, output=b"b")
    with pytest.raises(TaskPayloadError, match="payout must be 32 bytes"):
        TaskResult(RID, "echo", keccak256(b""), RID, PAYOUT[12:], b"\x00" * 64, output=b"")
    with pytest.raises(TaskPayloadError, match="do not co-sign invalid"):
        ProofAttestation(RID, RID, RID, RID, PAYOUT, AttestationMethod.REEXECUTION, 0, verdict=0)
    with pytest.raises(TaskPayloadError, match="method 0 is unknown"):
        ProofAttestation(RID, RID, RID, RID, PAYOUT, 0, 0)  # type: ignore[arg-type]


def test_errors_are_envelope_errors() -> None:
    assert issubclass(TaskPayloadError, EnvelopeError) and issubclass(InvalidURIError, TaskPayloadError)
    assert issubclass(PayloadTooLargeError, TaskPayloadError) and issubclass(WorkerSignatureError, TaskPayloadError)


# --- worker signatures ----------------------------------------------------------------------------


def test_worker_signature_verifies_and_binds_every_signed_field() -> None:
    result = TaskResult.signed(KEY, request_id=RID, executor="sentiment", output=b"{}", payout=PAYOUT)
    result.verify_signature()
    verify_worker_signature(result.worker, result.signature, RID, keccak256(b"{}"), "sentiment", PAYOUT)
    other = Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)
    thief = b"\x66" * 32
    cases = [
        (result.worker, result.signature, keccak256(b"other request"), result.output_hash, "sentiment", PAYOUT),
        (result.worker, result.signature, RID, keccak256(b"other output"), "sentiment", PAYOUT),
        (result.worker, result.signature, RID, result.output_hash, "echo", PAYOUT),
        (result.worker, result.signature, RID, result.output_hash, "sentiment", thief),  # payout swapped
        (worker_public_key(other), result.signature, RID, result.output_hash, "sentiment", PAYOUT),
        (result.worker, sign_result(other, RID, result.output_hash, "sentiment", PAYOUT), RID, result.output_hash,
         "sentiment", PAYOUT),
        (result.worker, bytes(64), RID, result.output_hash, "sentiment", PAYOUT),
    ]
    for worker, signature, request_id, output_hash, executor, payout in cases:
        with pytest.raises(WorkerSignatureError, match="does not verify"):
            verify_worker_signature(worker, signature, request_id, output_hash, executor, payout)


def test_signature_over_a_decoded_result_still_verifies() -> None:
    result = TaskResult.signed(KEY, request_id=RID, executor="http", output=b"long" * 100, payout=PAYOUT,
                               output_uri="ipfs://bafy", proof_kind=ProofKind.TEE_QUOTE, proof=b"quote")
    TaskResult.decode(result.encode()).verify_signature()


# --- shared vectors -------------------------------------------------------------------------------


def test_vector_file_covers_what_other_implementations_need() -> None:
    reqs, ress, atts = DOC["task_requests"], DOC["task_results"], DOC["proof_attestations"]
    assert {c["input_mode"] for c in reqs} == {0, 1}
    assert any(len(b(c["encoded"])) == MAX_PAYLOAD_LEN for c in reqs)
    assert any(len(b(c["encoded"])) == MAX_PAYLOAD_LEN for c in ress)
    assert {c["proof_kind"] for c in ress} == {0, 1, 2, 3} and {c["output_mode"] for c in ress} == {0, 1}
    assert {c["method"] for c in atts} == {1, 2, 3}
    assert {c["kind"] for c in DOC["invalid"]} == {1, 2, 3}
    assert b(DOC["request_envelope"]["encoded"])[1] == 1 and ress[0]["request_id"] == DOC["request_envelope"]["message_id"]


@pytest.mark.parametrize("case", DOC["task_requests"], ids=lambda c: c["name"])
def test_task_request_vectors(case: dict) -> None:
    decoded = TaskRequest.decode(b(case["encoded"]))
    assert decoded.executor == case["executor"] and encode_executor_id(decoded.executor) == b(case["executor_bytes"])
    assert (decoded.max_fee, decoded.deadline, int(decoded.input_mode)) == (case["max_fee"], case["deadline"], case["input_mode"])
    assert decoded.input == (None if case["input"] is None else b(case["input"]))
    assert decoded.input_hash == (None if case["input_hash"] is None else b(case["input_hash"]))
    assert decoded.input_uri == case["input_uri"]
    assert decoded.encode() == b(case["encoded"])


@pytest.mark.parametrize("case", DOC["task_results"], ids=lambda c: c["name"])
def test_task_result_vectors(case: dict) -> None:
    decoded = TaskResult.decode(b(case["encoded"]))
    assert decoded.output_hash == keccak256(b(case["output_bytes"])) == b(case["output_hash"])
    assert decoded.signature == b(case["signature"]) and decoded.worker == b(case["worker"])
    assert keccak256(b(case["signing_message"])) == b(case["signing_digest"])
    assert result_signing_digest(decoded.request_id, decoded.output_hash, decoded.executor,
                                 decoded.payout) == b(case["signing_digest"])
    decoded.verify_signature()
    key = Ed25519PrivateKey.from_private_bytes(b(case["worker_seed"]))
    assert worker_public_key(key) == decoded.worker
    assert sign_result(key, decoded.request_id, decoded.output_hash, decoded.executor, decoded.payout) == decoded.signature
    assert (int(decoded.proof_kind), decoded.proof, int(decoded.output_mode)) == (case["proof_kind"], b(case["proof"]), case["output_mode"])
    assert decoded.output_uri == case["output_uri"]


@pytest.mark.parametrize("case", DOC["proof_attestations"], ids=lambda c: c["name"])
def test_proof_attestation_vectors(case: dict) -> None:
    decoded = ProofAttestation.decode(b(case["encoded"]))
    fields = ("request_id", "result_id", "output_hash", "worker", "payout")
    assert all(getattr(decoded, f) == b(case[f]) for f in fields)
    assert (int(decoded.method), decoded.verdict, decoded.checked_at) == (case["method"], case["verdict"], case["checked_at"])
    assert decoded.encode() == b(case["encoded"])


@pytest.mark.parametrize("case", DOC["invalid"], ids=lambda c: f"kind{c['kind']}-{c['name']}")
def test_invalid_vectors_are_rejected(case: dict) -> None:
    cls = {1: TaskRequest, 2: TaskResult, 3: ProofAttestation}[case["kind"]]
    with pytest.raises(TaskPayloadError, match=case["error"]):
        cls.decode(b(case["payload"]))


def test_generator_reproduces_the_vector_file(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(VECTORS / "generate_tasks.py"), "--out", str(tmp_path)],
        check=True, cwd=ROOT, capture_output=True,
    )
    assert (tmp_path / "tasks_v1.json").read_bytes() == (VECTORS / "tasks_v1.json").read_bytes()
