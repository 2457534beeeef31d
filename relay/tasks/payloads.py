"""AI-task payload layouts: TASK_REQUEST, TASK_RESULT, PROOF_ATTESTATION (docs/PROTOCOL.md,
"AI-task payloads" for v1, "AI-task payloads v2" for the claim-and-auction protocol of
docs/TASKS.md). All integers big-endian, fields packed, like the envelope.

Every payload fits `MAX_PAYLOAD_LEN`; inputs and outputs that do not travel as hash + URI.
v2 payloads carry a version byte (2) where a v1 payload can never hold that value: first in a
request (a v1 request starts with a printable executor byte), right after the request id in a
result (a v1 result has its executor's first byte there); a v2 verdict is 220 bytes, a v1
attestation 170. `task_payload_version` tells them apart.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from relay.envelope import EnvelopeError, keccak256
from relay.protocol import MAX_PAYLOAD_LEN, TAG_RESULT, TAG_RESULT_V2, TASK_PAYLOAD_V2, U32_MAX, U64_MAX, MessageKind

EXECUTOR_ID_LEN = 16
MAX_URI_LEN = 256
URI_SCHEMES = ("https://", "http://", "ipfs://", "ar://")
U16_MAX = 2**16 - 1
U128_MAX = 2**128 - 1

# Fixed parts, so other implementations can check their offsets against ours.
REQUEST_HEADER_LEN = EXECUTOR_ID_LEN + 16 + 8 + 1  # executor, max_fee, deadline, input_mode = 41
RESULT_HEADER_LEN = 32 + EXECUTOR_ID_LEN + 32 + 32 + 32 + 64 + 1  # up to and including proof_kind = 209
ATTESTATION_LEN = 32 * 5 + 1 + 1 + 8  # 170
# Largest inline input of a TASK_REQUEST: header, u16 length.
MAX_INLINE_INPUT_LEN = MAX_PAYLOAD_LEN - REQUEST_HEADER_LEN - 2  # 469

_ATTESTATION = struct.Struct(">32s32s32s32s32sBBQ")
assert _ATTESTATION.size == ATTESTATION_LEN


class TaskPayloadError(EnvelopeError):
    """A task payload (or its bytes) does not follow the AI-task layouts of wire protocol v1."""


class PayloadTooLargeError(TaskPayloadError):
    """An encoded payload would exceed MAX_PAYLOAD_LEN."""


class InvalidURIError(TaskPayloadError):
    """A URI is not one the protocol carries (scheme, length, characters)."""


class WorkerSignatureError(TaskPayloadError):
    """A TASK_RESULT's worker signature does not verify."""


class DataMode(enum.IntEnum):
    """How an input (TASK_REQUEST) or an output (TASK_RESULT) travels."""

    INLINE = 0
    URI = 1  # TASK_REQUEST: input hash + URI; TASK_RESULT: URI (the hash is output_hash)


class ProofKind(enum.IntEnum):
    NONE = 0
    REEXECUTION = 1
    TEE_QUOTE = 2
    ZK_PROOF = 3


class AttestationMethod(enum.IntEnum):
    SIGNATURE_ONLY = 1
    REEXECUTION = 2
    PLUGGABLE_VERIFIER = 3


VERDICT_VALID = 1


# --- field helpers ---------------------------------------------------------------------------


def encode_executor_id(executor: str) -> bytes:
    raw = check_executor_id(executor)
    return raw + b"\x00" * (EXECUTOR_ID_LEN - len(raw))


def decode_executor_id(raw: bytes) -> str:
    name = raw.rstrip(b"\x00")
    if b"\x00" in name:
        raise TaskPayloadError("executor id has a zero byte inside it; only trailing zero padding is allowed")
    try:
        text = name.decode("ascii")
    except UnicodeDecodeError:
        raise TaskPayloadError("executor id must be ASCII") from None
    check_executor_id(text)
    return text


def check_executor_id(executor: str) -> bytes:
    if not isinstance(executor, str):
        raise TaskPayloadError("executor id must be a str such as 'sentiment'")
    try:
        raw = executor.encode("ascii")
    except UnicodeEncodeError:
        raise TaskPayloadError(f"executor id {executor!r} must be ASCII") from None
    if not 1 <= len(raw) <= EXECUTOR_ID_LEN:
        raise TaskPayloadError(f"executor id {executor!r} must be 1 to {EXECUTOR_ID_LEN} ASCII characters")
    if not all(0x21 <= b <= 0x7E for b in raw):
        raise TaskPayloadError(f"executor id {executor!r} must be printable ASCII without spaces")
    return raw


def check_uri(uri: str) -> bytes:
    if not isinstance(uri, str):
        raise InvalidURIError("URI must be a str")
    raw = uri.encode("utf-8")
    if len(raw) > MAX_URI_LEN:
        raise InvalidURIError(f"URI is {len(raw)} bytes of UTF-8; the limit is {MAX_URI_LEN}")
    scheme = next((s for s in URI_SCHEMES if uri.startswith(s)), None)
    if scheme is None:
        raise InvalidURIError(
            f"URI {uri[:40]!r} has an unsupported scheme; use one of " + ", ".join(URI_SCHEMES)
        )
    if len(uri) == len(scheme):
        raise InvalidURIError(f"URI {uri!r} names nothing after the scheme")
    # Whitespace and control characters make a URI ambiguous between implementations.
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in uri):
        raise InvalidURIError(f"URI {uri[:40]!r} contains whitespace or control characters; percent-encode them")
    return raw


def _check_bytes(name: str, value: object, length: int) -> None:
    if not isinstance(value, bytes) or len(value) != length:
        raise TaskPayloadError(f"{name} must be {length} bytes")


def _check_uint(name: str, value: object, maximum: int, bits: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
        raise TaskPayloadError(f"{name} {value!r} does not fit in uint{bits}")


def _u16_prefixed(name: str, data: bytes) -> bytes:
    if len(data) > U16_MAX:
        raise TaskPayloadError(f"{name} is {len(data)} bytes; a u16 length allows {U16_MAX}")
    return len(data).to_bytes(2, "big") + data


def _check_size(kind: str, encoded: bytes) -> bytes:
    if len(encoded) > MAX_PAYLOAD_LEN:
        raise PayloadTooLargeError(
            f"{kind} payload would be {len(encoded)} bytes; the limit is {MAX_PAYLOAD_LEN}. "
            "Send large inputs and outputs as hash + URI instead of inline"
        )
    return encoded


class _Reader:
    """Reads packed fields and names the one that is missing when the bytes run out."""

    def __init__(self, kind: str, data: bytes) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TaskPayloadError(f"{kind} payload must be bytes")
        data = bytes(data)
        if len(data) > MAX_PAYLOAD_LEN:
            raise PayloadTooLargeError(f"{kind} payload is {len(data)} bytes; the limit is {MAX_PAYLOAD_LEN}")
        self.kind = kind
        self.data = data
        self.offset = 0

    def take(self, n: int, field: str) -> bytes:
        end = self.offset + n
        if end > len(self.data):
            raise TaskPayloadError(
                f"{self.kind} payload is truncated: {field} needs {n} bytes at offset {self.offset}, "
                f"only {len(self.data) - self.offset} left"
            )
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def uint(self, n: int, field: str) -> int:
        return int.from_bytes(self.take(n, field), "big")

    def prefixed(self, field: str) -> bytes:
        length = self.uint(2, f"{field} length")
        return self.take(length, field)

    def finish(self) -> None:
        if self.offset != len(self.data):
            raise TaskPayloadError(
                f"{self.kind} payload has {len(self.data) - self.offset} trailing bytes after offset {self.offset}"
            )


def _mode(kind: str, field: str, value: int) -> DataMode:
    try:
        return DataMode(value)
    except ValueError:
        raise TaskPayloadError(f"{kind} {field} {value} is unknown; expected 0 (inline) or 1 (URI)") from None


def _decode_uri(raw: bytes) -> str:
    try:
        uri = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidURIError("URI is not valid UTF-8") from None
    check_uri(uri)
    return uri


# --- TASK_REQUEST (kind 1) -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskRequest:
    """TASK_REQUEST payload. Inline input, or input_hash + input_uri; the request id is the
    message id of the envelope that carries it."""

    executor: str
    max_fee: int  # smallest unit of the source chain's native token
    deadline: int  # unix seconds
    input: bytes | None = None
    input_hash: bytes | None = None
    input_uri: str | None = None

    def __post_init__(self) -> None:
        check_executor_id(self.executor)
        _check_uint("max_fee", self.max_fee, U128_MAX, 128)
        _check_uint("deadline", self.deadline, U64_MAX, 64)
        if self.input is not None:
            if self.input_hash is not None or self.input_uri is not None:
                raise TaskPayloadError("a task request carries either inline input or input_hash + input_uri, not both")
            if not isinstance(self.input, bytes):
                raise TaskPayloadError("input must be bytes")
        else:
            if self.input_hash is None or self.input_uri is None:
                raise TaskPayloadError("a task request needs inline input, or both input_hash and input_uri")
            _check_bytes("input_hash", self.input_hash, 32)
            check_uri(self.input_uri)

    @classmethod
    def by_reference(cls, executor: str, max_fee: int, deadline: int, content: bytes, uri: str) -> "TaskRequest":
        return cls(executor, max_fee, deadline, input_hash=keccak256(content), input_uri=uri)

    @property
    def input_mode(self) -> DataMode:
        return DataMode.INLINE if self.input is not None else DataMode.URI

    def encode(self) -> bytes:
        head = (
            encode_executor_id(self.executor)
            + self.max_fee.to_bytes(16, "big")
            + self.deadline.to_bytes(8, "big")
            + bytes([self.input_mode])
        )
        if self.input is not None:
            body = _u16_prefixed("input", self.input)
        else:
            assert self.input_hash is not None and self.input_uri is not None
            body = self.input_hash + _u16_prefixed("input_uri", check_uri(self.input_uri))
        return _check_size("TASK_REQUEST", head + body)

    @classmethod
    def decode(cls, data: bytes) -> "TaskRequest":
        r = _Reader("TASK_REQUEST", data)
        executor = decode_executor_id(r.take(EXECUTOR_ID_LEN, "executor"))
        max_fee = r.uint(16, "max_fee")
        deadline = r.uint(8, "deadline")
        mode = _mode("TASK_REQUEST", "input mode", r.uint(1, "input mode"))
        if mode is DataMode.INLINE:
            request = cls(executor, max_fee, deadline, input=r.prefixed("input"))
        else:
            input_hash = r.take(32, "input_hash")
            request = cls(executor, max_fee, deadline, input_hash=input_hash, input_uri=_decode_uri(r.prefixed("input_uri")))
        r.finish()
        return request


# --- TASK_RESULT (kind 2) --------------------------------------------------------------------


def result_signing_digest(request_id: bytes, output_hash: bytes, executor: str, payout: bytes) -> bytes:
    """What a worker signs: keccak256("TESSERA/v1/RESULT" ‖ request_id ‖ output_hash ‖ executor[16] ‖
    payout[32]). The payout is signed so nobody can replay a worker's result with their own address."""
    _check_bytes("request_id", request_id, 32)
    _check_bytes("output_hash", output_hash, 32)
    _check_bytes("payout", payout, 32)
    return keccak256(TAG_RESULT + request_id + output_hash + encode_executor_id(executor) + payout)


def worker_public_key(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def sign_result(private_key: Ed25519PrivateKey, request_id: bytes, output_hash: bytes, executor: str,
                payout: bytes) -> bytes:
    return private_key.sign(result_signing_digest(request_id, output_hash, executor, payout))


def verify_worker_signature(
    worker: bytes, signature: bytes, request_id: bytes, output_hash: bytes, executor: str, payout: bytes
) -> None:
    """Raise WorkerSignatureError unless `signature` is the worker's Ed25519 signature of the result."""
    _check_bytes("worker", worker, 32)
    _check_bytes("worker signature", signature, 64)
    try:
        key = Ed25519PublicKey.from_public_bytes(worker)
        key.verify(signature, result_signing_digest(request_id, output_hash, executor, payout))
    except (InvalidSignature, ValueError):
        raise WorkerSignatureError(
            f"worker signature does not verify for worker {worker.hex()} and request {request_id.hex()}; "
            "the result was not signed by this worker key, or a signed field was changed"
        ) from None


@dataclass(frozen=True, slots=True)
class TaskResult:
    """TASK_RESULT payload. Inline output (whose keccak256 must equal output_hash) or output_uri."""

    request_id: bytes
    executor: str
    output_hash: bytes  # keccak256 of the output bytes, wherever they travel
    worker: bytes  # the worker's Ed25519 public key
    payout: bytes  # payout address on the requester's chain: EVM left-padded or Solana key
    signature: bytes  # Ed25519 by `worker` over result_signing_digest(...)
    proof_kind: ProofKind = ProofKind.NONE
    proof: bytes = b""
    output: bytes | None = None
    output_uri: str | None = None

    def __post_init__(self) -> None:
        _check_bytes("request_id", self.request_id, 32)
        check_executor_id(self.executor)
        _check_bytes("output_hash", self.output_hash, 32)
        _check_bytes("worker", self.worker, 32)
        _check_bytes("payout", self.payout, 32)
        _check_bytes("worker signature", self.signature, 64)
        try:
            object.__setattr__(self, "proof_kind", ProofKind(self.proof_kind))
        except ValueError:
            raise TaskPayloadError(
                f"proof kind {self.proof_kind} is unknown; expected 0 none, 1 re-execution, 2 TEE quote, 3 zk proof"
            ) from None
        if not isinstance(self.proof, bytes):
            raise TaskPayloadError("proof must be bytes")
        if self.proof_kind is ProofKind.NONE and self.proof:
            raise TaskPayloadError("proof kind 0 (none) carries no proof bytes; set the proof kind or drop the proof")
        if (self.output is None) == (self.output_uri is None):
            raise TaskPayloadError("a task result carries either inline output or output_uri, exactly one")
        if self.output is not None:
            if not isinstance(self.output, bytes):
                raise TaskPayloadError("output must be bytes")
            if keccak256(self.output) != self.output_hash:
                raise TaskPayloadError("output_hash is not keccak256 of the inline output")
        else:
            assert self.output_uri is not None
            check_uri(self.output_uri)

    @classmethod
    def signed(
        cls,
        private_key: Ed25519PrivateKey,
        *,
        request_id: bytes,
        executor: str,
        output: bytes,
        payout: bytes,
        output_uri: str | None = None,
        proof_kind: ProofKind = ProofKind.NONE,
        proof: bytes = b"",
    ) -> "TaskResult":
        """Build and sign a result; with output_uri the output travels by reference (only its hash inline)."""
        output_hash = keccak256(output)
        return cls(
            request_id=request_id,
            executor=executor,
            output_hash=output_hash,
            worker=worker_public_key(private_key),
            payout=payout,
            signature=sign_result(private_key, request_id, output_hash, executor, payout),
            proof_kind=proof_kind,
            proof=proof,
            output=None if output_uri is not None else output,
            output_uri=output_uri,
        )

    @property
    def output_mode(self) -> DataMode:
        return DataMode.INLINE if self.output is not None else DataMode.URI

    def verify_signature(self) -> None:
        verify_worker_signature(self.worker, self.signature, self.request_id, self.output_hash, self.executor,
                                self.payout)

    def encode(self) -> bytes:
        head = (
            self.request_id
            + encode_executor_id(self.executor)
            + self.output_hash
            + self.worker
            + self.payout
            + self.signature
            + bytes([self.proof_kind])
            + _u16_prefixed("proof", self.proof)
            + bytes([self.output_mode])
        )
        if self.output is not None:
            body = _u16_prefixed("output", self.output)
        else:
            assert self.output_uri is not None
            body = _u16_prefixed("output_uri", check_uri(self.output_uri))
        return _check_size("TASK_RESULT", head + body)

    @classmethod
    def decode(cls, data: bytes) -> "TaskResult":
        r = _Reader("TASK_RESULT", data)
        request_id = r.take(32, "request_id")
        executor = decode_executor_id(r.take(EXECUTOR_ID_LEN, "executor"))
        output_hash = r.take(32, "output_hash")
        worker = r.take(32, "worker")
        payout = r.take(32, "payout")
        signature = r.take(64, "worker signature")
        proof_kind = r.uint(1, "proof kind")
        proof = r.prefixed("proof")
        mode = _mode("TASK_RESULT", "output mode", r.uint(1, "output mode"))
        raw = r.prefixed("output" if mode is DataMode.INLINE else "output_uri")
        r.finish()
        return cls(
            request_id=request_id,
            executor=executor,
            output_hash=output_hash,
            worker=worker,
            payout=payout,
            signature=signature,
            proof_kind=proof_kind,  # type: ignore[arg-type]  # validated (and converted) in __post_init__
            proof=proof,
            output=raw if mode is DataMode.INLINE else None,
            output_uri=_decode_uri(raw) if mode is DataMode.URI else None,
        )


# --- PROOF_ATTESTATION (kind 3) --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProofAttestation:
    """PROOF_ATTESTATION payload: the committee's statement that a result's proof was checked.
    Attesters only co-sign valid results, so the verdict is always 1 (valid)."""

    request_id: bytes
    result_id: bytes  # message id of the TASK_RESULT envelope
    output_hash: bytes
    worker: bytes
    payout: bytes
    method: AttestationMethod
    checked_at: int  # unix seconds
    verdict: int = VERDICT_VALID

    def __post_init__(self) -> None:
        for name in ("request_id", "result_id", "output_hash", "worker", "payout"):
            _check_bytes(name, getattr(self, name), 32)
        try:
            object.__setattr__(self, "method", AttestationMethod(self.method))
        except ValueError:
            raise TaskPayloadError(
                f"attestation method {self.method} is unknown; expected 1 signature only, 2 re-execution, "
                "3 pluggable verifier"
            ) from None
        if self.verdict != VERDICT_VALID:
            raise TaskPayloadError(
                f"attestation verdict {self.verdict} is not 1 (valid); attesters do not co-sign invalid results"
            )
        _check_uint("checked_at", self.checked_at, U64_MAX, 64)

    @classmethod
    def for_result(
        cls, result: TaskResult, result_id: bytes, method: AttestationMethod, checked_at: int
    ) -> "ProofAttestation":
        return cls(result.request_id, result_id, result.output_hash, result.worker, result.payout, method, checked_at)

    def encode(self) -> bytes:
        return _ATTESTATION.pack(
            self.request_id, self.result_id, self.output_hash, self.worker, self.payout,
            self.method, self.verdict, self.checked_at,
        )

    @classmethod
    def decode(cls, data: bytes) -> "ProofAttestation":
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TaskPayloadError("PROOF_ATTESTATION payload must be bytes")
        if len(data) != ATTESTATION_LEN:
            raise TaskPayloadError(f"PROOF_ATTESTATION payload is {len(data)} bytes; it must be {ATTESTATION_LEN}")
        request_id, result_id, output_hash, worker, payout, method, verdict, checked_at = _ATTESTATION.unpack(bytes(data))
        return cls(request_id, result_id, output_hash, worker, payout, method, checked_at, verdict)  # type: ignore[arg-type]


# === Task protocol v2 (docs/PROTOCOL.md, "AI-task payloads v2"; docs/TASKS.md) ================
#
# A request is auctioned on the serving board (reverse Dutch auction: the price rises from
# start_bps/10000 · max_fee to max_fee over auction_window seconds of the serving chain's clock);
# a worker claims it with a bond, and only that claimant's result — carrying the claimant's account,
# payout and claim price — can be paid. The committee answers every result with a verdict (valid
# or refused) addressed to both boards.

BPS = 10_000  # start_bps is in basis points of max_fee
# version, executor, max_fee, deadline, auction_window, start_bps, claim_window, bond, refund_to, input_mode
REQUEST_V2_HEADER_LEN = 1 + EXECUTOR_ID_LEN + 16 + 8 + 4 + 2 + 4 + 16 + 32 + 1  # 100
MAX_INLINE_INPUT_LEN_V2 = MAX_PAYLOAD_LEN - REQUEST_V2_HEADER_LEN - 2  # 410
# request_id, version, executor, output_hash, worker, claimant, payout, price, signature, proof_kind
RESULT_V2_HEADER_LEN = 32 + 1 + EXECUTOR_ID_LEN + 32 * 4 + 16 + 64 + 1  # 258
MAX_INLINE_OUTPUT_LEN_V2 = MAX_PAYLOAD_LEN - RESULT_V2_HEADER_LEN - 2 - 1 - 2  # 249 (no proof)
VERDICT_LEN = 32 + 1 + 32 * 5 + 16 + 1 + 1 + 1 + 8  # 220

_VERDICT = struct.Struct(">32sB32s32s32s32s32s16sBBBQ")
assert _VERDICT.size == VERDICT_LEN
assert VERDICT_LEN != ATTESTATION_LEN


class Verdict(enum.IntEnum):
    """The committee's verdict on a result (PROOF_ATTESTATION v2, offset 210)."""

    VALID = 1
    REFUSED = 2


class RefusalReason(enum.IntEnum):
    """Why the committee refused a result (offset 211). Only faults of the result itself are
    refusals — they forfeit the claimant's bond. Never renumber: boards log the byte."""

    NONE = 0  # the verdict is VALID
    WORKER_SIGNATURE = 1  # the Ed25519 signature does not verify over the v2 signing digest
    WRONG_EXECUTOR = 2  # the result names another executor than the request
    OUTPUT_UNAVAILABLE = 3  # the output URI did not serve bytes hashing to output_hash
    OUTPUT_MISMATCH = 4  # re-execution gave other bytes (or out of the executor's tolerance)
    PROOF_INVALID = 5  # the proof verifier for the result's proof kind refused it
    PROOF_UNSUPPORTED = 6  # no verifier for the proof kind the worker chose is installed
    PAYOUT_UNUSABLE = 7  # payout is not an address on the requester's chain


def task_payload_version(kind: MessageKind | int, data: bytes) -> int:
    """1 or 2: which codec reads this task payload (the decoder still checks everything).

    Requests: v2 starts with 0x02, a v1 request with a printable executor byte. Results: v2 has
    0x02 right after the request id, where a v1 result has its executor's first (printable) byte.
    Attestations: a v2 verdict is 220 bytes, a v1 attestation 170."""
    data = bytes(data)
    try:
        kind = MessageKind(kind)
    except ValueError:
        raise TaskPayloadError(f"message kind {kind} is unknown; task payloads travel in kinds 1, 2 and 3") from None
    match kind:
        case MessageKind.TASK_REQUEST:
            return 2 if data[:1] == bytes([TASK_PAYLOAD_V2]) else 1
        case MessageKind.TASK_RESULT:
            return 2 if len(data) > 32 and data[32] == TASK_PAYLOAD_V2 else 1
        case MessageKind.PROOF_ATTESTATION:
            return 2 if len(data) == VERDICT_LEN else 1
        case other:
            raise TaskPayloadError(f"message kind {int(other)} carries no task payload")


def auction_price(max_fee: int, start_bps: int, auction_window: int, auction_start: int, now: int) -> int:
    """The claim price at `now` (serving chain's clock) of a request whose auction started at
    `auction_start` (the block time of its delivery to the serving board): rises linearly from
    floor(max_fee · start_bps / 10000) to max_fee over auction_window seconds, then stays at
    max_fee. Integer arithmetic, floor at each division, identical on every board."""
    start = max_fee * start_bps // BPS
    if auction_window == 0:
        return max_fee
    elapsed = min(max(now - auction_start, 0), auction_window)
    return start + (max_fee - start) * elapsed // auction_window


def _version(r: _Reader, kind: str) -> None:
    offset = r.offset
    got = r.uint(1, "version")
    if got != TASK_PAYLOAD_V2:
        raise TaskPayloadError(
            f"{kind} v2 payload has version byte {got} at offset {offset}; expected {TASK_PAYLOAD_V2} "
            "(a v1 payload? read it with the v1 codec)"
        )


def _check_bps(name: str, value: object) -> None:
    _check_uint(name, value, BPS, 16)


# --- TASK_REQUEST v2 (kind 1) ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskRequestV2:
    """TASK_REQUEST v2: the v1 request plus the auction and claim terms. The request id is the
    message id of the envelope that carries it."""

    executor: str
    max_fee: int  # requester chain's smallest unit: the most the requester pays
    deadline: int  # unix seconds on the serving chain's clock: last moment to claim or submit
    auction_window: int  # seconds over which the price rises to max_fee (0: max_fee at once)
    start_bps: int  # price at the auction start, in basis points of max_fee (0..10000)
    claim_window: int  # seconds a claimant has to submit after its claim (capped at the deadline)
    bond: int  # serving chain's smallest unit: what a claimant posts
    refund_to: bytes  # the requester's account on the serving chain: receives forfeited bonds
    input: bytes | None = None
    input_hash: bytes | None = None
    input_uri: str | None = None

    def __post_init__(self) -> None:
        check_executor_id(self.executor)
        _check_uint("max_fee", self.max_fee, U128_MAX, 128)
        _check_uint("deadline", self.deadline, U64_MAX, 64)
        _check_uint("auction_window", self.auction_window, U32_MAX, 32)
        _check_bps("start_bps", self.start_bps)
        _check_uint("claim_window", self.claim_window, U32_MAX, 32)
        if self.claim_window == 0:
            raise TaskPayloadError("claim_window is 0: a claimant needs at least one second to submit")
        _check_uint("bond", self.bond, U128_MAX, 128)
        _check_bytes("refund_to", self.refund_to, 32)
        if self.refund_to == bytes(32):
            raise TaskPayloadError(
                "refund_to is zero: forfeited bonds would be burned; give the requester's account on the serving chain"
            )
        if self.input is not None:
            if self.input_hash is not None or self.input_uri is not None:
                raise TaskPayloadError("a task request carries either inline input or input_hash + input_uri, not both")
            if not isinstance(self.input, bytes):
                raise TaskPayloadError("input must be bytes")
        else:
            if self.input_hash is None or self.input_uri is None:
                raise TaskPayloadError("a task request needs inline input, or both input_hash and input_uri")
            _check_bytes("input_hash", self.input_hash, 32)
            check_uri(self.input_uri)

    @property
    def input_mode(self) -> DataMode:
        return DataMode.INLINE if self.input is not None else DataMode.URI

    def price_at(self, auction_start: int, now: int) -> int:
        return auction_price(self.max_fee, self.start_bps, self.auction_window, auction_start, now)

    def encode(self) -> bytes:
        head = (
            bytes([TASK_PAYLOAD_V2])
            + encode_executor_id(self.executor)
            + self.max_fee.to_bytes(16, "big")
            + self.deadline.to_bytes(8, "big")
            + self.auction_window.to_bytes(4, "big")
            + self.start_bps.to_bytes(2, "big")
            + self.claim_window.to_bytes(4, "big")
            + self.bond.to_bytes(16, "big")
            + self.refund_to
            + bytes([self.input_mode])
        )
        if self.input is not None:
            body = _u16_prefixed("input", self.input)
        else:
            assert self.input_hash is not None and self.input_uri is not None
            body = self.input_hash + _u16_prefixed("input_uri", check_uri(self.input_uri))
        return _check_size("TASK_REQUEST v2", head + body)

    @classmethod
    def decode(cls, data: bytes) -> "TaskRequestV2":
        r = _Reader("TASK_REQUEST v2", data)
        _version(r, "TASK_REQUEST")
        executor = decode_executor_id(r.take(EXECUTOR_ID_LEN, "executor"))
        terms = dict(
            max_fee=r.uint(16, "max_fee"),
            deadline=r.uint(8, "deadline"),
            auction_window=r.uint(4, "auction_window"),
            start_bps=r.uint(2, "start_bps"),
            claim_window=r.uint(4, "claim_window"),
            bond=r.uint(16, "bond"),
            refund_to=r.take(32, "refund_to"),
        )
        mode = _mode("TASK_REQUEST v2", "input mode", r.uint(1, "input mode"))
        if mode is DataMode.INLINE:
            request = cls(executor, input=r.prefixed("input"), **terms)  # type: ignore[arg-type]
        else:
            input_hash = r.take(32, "input_hash")
            uri = _decode_uri(r.prefixed("input_uri"))
            request = cls(executor, input_hash=input_hash, input_uri=uri, **terms)  # type: ignore[arg-type]
        r.finish()
        return request


# --- TASK_RESULT v2 (kind 2) -------------------------------------------------------------------


def result_signing_digest_v2(request_id: bytes, output_hash: bytes, executor: str, claimant: bytes, payout: bytes,
                             price: int) -> bytes:
    """What a v2 worker signs: keccak256("TESSERA/v2/RESULT" ‖ request_id ‖ output_hash ‖
    executor[16] ‖ claimant[32] ‖ payout[32] ‖ price u128). The tag differs from v1's so a v1
    signature never verifies as v2."""
    _check_bytes("request_id", request_id, 32)
    _check_bytes("output_hash", output_hash, 32)
    _check_bytes("claimant", claimant, 32)
    _check_bytes("payout", payout, 32)
    _check_uint("price", price, U128_MAX, 128)
    return keccak256(TAG_RESULT_V2 + request_id + output_hash + encode_executor_id(executor) + claimant + payout
                     + price.to_bytes(16, "big"))


@dataclass(frozen=True, slots=True)
class TaskResultV2:
    """TASK_RESULT v2: a v1 result plus the claim it answers (claimant account on the serving
    chain, payout on the requester's chain, claim price). The serving board sends it only from
    the claimant, with exactly the claim's claimant, payout and price."""

    request_id: bytes
    executor: str
    output_hash: bytes
    worker: bytes  # Ed25519 public key
    claimant: bytes  # the claiming account on the serving chain (EVM address left-padded, Solana key)
    payout: bytes  # on the requester's chain
    price: int  # the claim price, requester chain's smallest unit
    signature: bytes  # Ed25519 by worker over result_signing_digest_v2(...)
    proof_kind: ProofKind = ProofKind.NONE
    proof: bytes = b""
    output: bytes | None = None
    output_uri: str | None = None

    def __post_init__(self) -> None:
        _check_bytes("request_id", self.request_id, 32)
        check_executor_id(self.executor)
        _check_bytes("output_hash", self.output_hash, 32)
        _check_bytes("worker", self.worker, 32)
        _check_bytes("claimant", self.claimant, 32)
        _check_bytes("payout", self.payout, 32)
        _check_uint("price", self.price, U128_MAX, 128)
        _check_bytes("worker signature", self.signature, 64)
        try:
            object.__setattr__(self, "proof_kind", ProofKind(self.proof_kind))
        except ValueError:
            raise TaskPayloadError(
                f"proof kind {self.proof_kind} is unknown; expected 0 none, 1 re-execution, 2 TEE quote, 3 zk proof"
            ) from None
        if not isinstance(self.proof, bytes):
            raise TaskPayloadError("proof must be bytes")
        if self.proof_kind is ProofKind.NONE and self.proof:
            raise TaskPayloadError("proof kind 0 (none) carries no proof bytes; set the proof kind or drop the proof")
        if (self.output is None) == (self.output_uri is None):
            raise TaskPayloadError("a task result carries either inline output or output_uri, exactly one")
        if self.output is not None:
            if not isinstance(self.output, bytes):
                raise TaskPayloadError("output must be bytes")
            if keccak256(self.output) != self.output_hash:
                raise TaskPayloadError("output_hash is not keccak256 of the inline output")
        else:
            assert self.output_uri is not None
            check_uri(self.output_uri)

    @classmethod
    def signed(
        cls,
        private_key: Ed25519PrivateKey,
        *,
        request_id: bytes,
        executor: str,
        output: bytes,
        claimant: bytes,
        payout: bytes,
        price: int,
        output_uri: str | None = None,
        proof_kind: ProofKind = ProofKind.NONE,
        proof: bytes = b"",
    ) -> "TaskResultV2":
        output_hash = keccak256(output)
        digest = result_signing_digest_v2(request_id, output_hash, executor, claimant, payout, price)
        return cls(
            request_id=request_id, executor=executor, output_hash=output_hash, worker=worker_public_key(private_key),
            claimant=claimant, payout=payout, price=price, signature=private_key.sign(digest),
            proof_kind=proof_kind, proof=proof,
            output=None if output_uri is not None else output, output_uri=output_uri,
        )

    @property
    def output_mode(self) -> DataMode:
        return DataMode.INLINE if self.output is not None else DataMode.URI

    def signing_digest(self) -> bytes:
        return result_signing_digest_v2(self.request_id, self.output_hash, self.executor, self.claimant, self.payout,
                                        self.price)

    def verify_signature(self) -> None:
        """Raise WorkerSignatureError unless `signature` is `worker`'s over the v2 digest."""
        try:
            Ed25519PublicKey.from_public_bytes(self.worker).verify(self.signature, self.signing_digest())
        except (InvalidSignature, ValueError):
            raise WorkerSignatureError(
                f"v2 worker signature does not verify for worker {self.worker.hex()} and request "
                f"{self.request_id.hex()}; the result was not signed by this key, or a signed field "
                "(output hash, executor, claimant, payout, price) was changed"
            ) from None

    def encode(self) -> bytes:
        head = (
            self.request_id
            + bytes([TASK_PAYLOAD_V2])
            + encode_executor_id(self.executor)
            + self.output_hash
            + self.worker
            + self.claimant
            + self.payout
            + self.price.to_bytes(16, "big")
            + self.signature
            + bytes([self.proof_kind])
            + _u16_prefixed("proof", self.proof)
            + bytes([self.output_mode])
        )
        if self.output is not None:
            body = _u16_prefixed("output", self.output)
        else:
            assert self.output_uri is not None
            body = _u16_prefixed("output_uri", check_uri(self.output_uri))
        return _check_size("TASK_RESULT v2", head + body)

    @classmethod
    def decode(cls, data: bytes) -> "TaskResultV2":
        r = _Reader("TASK_RESULT v2", data)
        request_id = r.take(32, "request_id")
        _version(r, "TASK_RESULT")
        executor = decode_executor_id(r.take(EXECUTOR_ID_LEN, "executor"))
        output_hash = r.take(32, "output_hash")
        worker = r.take(32, "worker")
        claimant = r.take(32, "claimant")
        payout = r.take(32, "payout")
        price = r.uint(16, "price")
        signature = r.take(64, "worker signature")
        proof_kind = r.uint(1, "proof kind")
        proof = r.prefixed("proof")
        mode = _mode("TASK_RESULT v2", "output mode", r.uint(1, "output mode"))
        raw = r.prefixed("output" if mode is DataMode.INLINE else "output_uri")
        r.finish()
        return cls(
            request_id=request_id, executor=executor, output_hash=output_hash, worker=worker, claimant=claimant,
            payout=payout, price=price, signature=signature,
            proof_kind=proof_kind,  # type: ignore[arg-type]  # validated (and converted) in __post_init__
            proof=proof,
            output=raw if mode is DataMode.INLINE else None,
            output_uri=_decode_uri(raw) if mode is DataMode.URI else None,
        )


# --- PROOF_ATTESTATION v2: the committee's verdict (kind 3) ------------------------------------


@dataclass(frozen=True, slots=True)
class ProofVerdict:
    """PROOF_ATTESTATION v2: the committee's verdict on one TASK_RESULT v2, derived from the result
    envelope and its block, signed once per destination (the requester's board: pay or not; the
    serving board: return or forfeit the bond). Valid verdicts have reason NONE, refusals a reason."""

    request_id: bytes
    result_id: bytes  # message id of the TASK_RESULT envelope
    output_hash: bytes
    worker: bytes
    claimant: bytes
    payout: bytes
    price: int
    method: AttestationMethod
    verdict: Verdict
    reason: RefusalReason
    submitted_at: int  # block time of the result on the serving chain (its clock decides timeliness)

    def __post_init__(self) -> None:
        for name in ("request_id", "result_id", "output_hash", "worker", "claimant", "payout"):
            _check_bytes(name, getattr(self, name), 32)
        _check_uint("price", self.price, U128_MAX, 128)
        try:
            object.__setattr__(self, "method", AttestationMethod(self.method))
        except ValueError:
            raise TaskPayloadError(
                f"attestation method {self.method} is unknown; expected 1 signature only, 2 re-execution, "
                "3 pluggable verifier"
            ) from None
        try:
            object.__setattr__(self, "verdict", Verdict(self.verdict))
        except ValueError:
            raise TaskPayloadError(f"verdict {self.verdict} is unknown; expected 1 valid or 2 refused") from None
        try:
            object.__setattr__(self, "reason", RefusalReason(self.reason))
        except ValueError:
            raise TaskPayloadError(f"refusal reason {self.reason} is unknown; expected 0 to 7") from None
        if (self.verdict is Verdict.VALID) != (self.reason is RefusalReason.NONE):
            raise TaskPayloadError(
                f"verdict {int(self.verdict)} with refusal reason {int(self.reason)}: a valid verdict has "
                "reason 0, a refusal a reason from 1 to 7"
            )
        _check_uint("submitted_at", self.submitted_at, U64_MAX, 64)

    @classmethod
    def for_result(cls, result: TaskResultV2, result_id: bytes, method: AttestationMethod, submitted_at: int,
                   refusal: RefusalReason | None = None) -> "ProofVerdict":
        """The verdict on `result`: valid when `refusal` is None, else refused for that reason."""
        verdict = Verdict.VALID if refusal is None else Verdict.REFUSED
        return cls(result.request_id, result_id, result.output_hash, result.worker, result.claimant, result.payout,
                   result.price, method, verdict, refusal or RefusalReason.NONE, submitted_at)

    @property
    def valid(self) -> bool:
        return self.verdict is Verdict.VALID

    def encode(self) -> bytes:
        return _VERDICT.pack(
            self.request_id, TASK_PAYLOAD_V2, self.result_id, self.output_hash, self.worker, self.claimant,
            self.payout, self.price.to_bytes(16, "big"), self.method, self.verdict, self.reason, self.submitted_at,
        )

    @classmethod
    def decode(cls, data: bytes) -> "ProofVerdict":
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TaskPayloadError("PROOF_ATTESTATION v2 payload must be bytes")
        if len(data) != VERDICT_LEN:
            raise TaskPayloadError(f"PROOF_ATTESTATION v2 payload is {len(data)} bytes; it must be {VERDICT_LEN}")
        (request_id, version, result_id, output_hash, worker, claimant, payout, price, method, verdict, reason,
         submitted_at) = _VERDICT.unpack(bytes(data))
        if version != TASK_PAYLOAD_V2:
            raise TaskPayloadError(
                f"PROOF_ATTESTATION v2 payload has version byte {version} at offset 32; expected {TASK_PAYLOAD_V2}"
            )
        return cls(request_id, result_id, output_hash, worker, claimant, payout, int.from_bytes(price, "big"),
                   method, verdict, reason, submitted_at)  # type: ignore[arg-type]  # validated in __post_init__
