"""Generate the AI-task payload vectors (TASK_REQUEST, TASK_RESULT with its Ed25519 worker
signature, PROOF_ATTESTATION, and malformed payloads every decoder must reject). Deterministic:
keys come from fixed seeds and Ed25519 signatures are deterministic (RFC 8032), so re-running
produces a byte-identical file.

    .venv/bin/python tests/vectors/generate_tasks.py [--out DIR]

Schema: docs/PROTOCOL.md ("AI-task payloads", "Test vectors").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from relay.envelope import Envelope, address_to_bytes32, keccak256  # noqa: E402
from relay.protocol import MAX_PAYLOAD_LEN, U64_MAX, MessageKind  # noqa: E402
from relay.tasks.sentiment import SentimentExecutor  # noqa: E402
from relay.tasks.payloads import (  # noqa: E402
    MAX_INLINE_INPUT_LEN,
    MAX_URI_LEN,
    TAG_RESULT,
    U128_MAX,
    AttestationMethod,
    ProofAttestation,
    ProofKind,
    TaskRequest,
    TaskResult,
    encode_executor_id,
    result_signing_digest,
    worker_public_key,
)

HERE = Path(__file__).resolve().parent
FILE = "tasks_v1.json"


def hx(data: bytes) -> str:
    return "0x" + data.hex()


def seed(label: str) -> bytes:
    return keccak256(b"tessera task vectors: " + label.encode())


EVM_PAYOUT = address_to_bytes32("0x70997970C51812dc3A010C7d01b50e0d17dc79C8")
SOLANA_PAYOUT = seed("a solana payout key")
# A realistic request id: the message id of the envelope carrying the first request below.
REQUESTER = address_to_bytes32("0x5FbDB2315678afecb367f032bb643d1a8ab0ee42")


def request_cases() -> list[tuple[str, TaskRequest]]:
    return [
        ("sentiment, inline text", TaskRequest("sentiment", 10**15, 1_800_000_000, input=b"I love this bridge!")),
        ("echo, empty inline input", TaskRequest("echo", 0, 0, input=b"")),
        ("16-character executor id, u128/u64 maxima", TaskRequest("abcdefghijklmnop", U128_MAX, U64_MAX, input=b"\x00\xff")),
        (
            "largest inline input (payload = 512 bytes)",
            TaskRequest("echo", 1, 2, input=bytes((i * 13 + 5) % 256 for i in range(MAX_INLINE_INPUT_LEN))),
        ),
        (
            "hash + https URI",
            TaskRequest.by_reference("http", 5 * 10**17, 1_800_000_600, b"Summarise this document.", "https://example.org/in/1.txt"),
        ),
        ("hash + ipfs URI", TaskRequest.by_reference("embed", 7, 1_800_000_000, b"embed me", "ipfs://bafybeigdyrztk6fq3a7z5s2k4u")),
        ("hash + ar URI", TaskRequest.by_reference("sentiment", 7, 1_800_000_000, b"x", "ar://Zm9vYmFy")),
        (
            "hash + longest URI (256 bytes, UTF-8)",
            TaskRequest.by_reference("echo", 1, 1, b"long", "http://e.example/" + "é" * ((MAX_URI_LEN - 17) // 2) + "a"),
        ),
    ]


def request_json(name: str, req: TaskRequest) -> dict[str, Any]:
    return {
        "name": name,
        "executor": req.executor,
        "executor_bytes": hx(encode_executor_id(req.executor)),
        "max_fee": req.max_fee,
        "deadline": req.deadline,
        "input_mode": int(req.input_mode),
        "input": None if req.input is None else hx(req.input),
        "input_hash": None if req.input_hash is None else hx(req.input_hash),
        "input_uri": req.input_uri,
        "encoded": hx(req.encode()),
    }


def result_cases(request_id: bytes) -> list[tuple[str, str, TaskResult, bytes]]:
    """(name, worker seed label, result, output bytes whose hash is output_hash)."""
    sentiment_out = SentimentExecutor().analyse(b"I love this bridge!")  # the real output for request 0
    specs = [
        ("sentiment, inline output, no proof", "worker A", "sentiment", sentiment_out, EVM_PAYOUT, None, ProofKind.NONE, b""),
        ("echo, empty output, re-execution", "worker B", "echo", b"", SOLANA_PAYOUT, None, ProofKind.REEXECUTION, b""),
        (
            "http, output by URI, TEE quote",
            "worker C",
            "http",
            b"A long model answer that travels by URI." * 20,
            EVM_PAYOUT,
            "https://results.example.org/out/1.json",
            ProofKind.TEE_QUOTE,
            bytes(range(200)),
        ),
        ("embed, output by ipfs URI, zk proof", "worker A", "embed", b"\x3f\x80\x00\x00" * 384, SOLANA_PAYOUT, "ipfs://bafkreia", ProofKind.ZK_PROOF, b"\x01" * 32),
        (
            "largest inline output (payload = 512 bytes)",
            "worker B",
            "echo",
            bytes((i * 31 + 7) % 256 for i in range(MAX_PAYLOAD_LEN - 214)),
            EVM_PAYOUT,
            None,
            ProofKind.NONE,
            b"",
        ),
    ]
    cases = []
    for name, worker, executor, output, payout, uri, kind, proof in specs:
        key = Ed25519PrivateKey.from_private_bytes(seed(worker))
        result = TaskResult.signed(
            key, request_id=request_id, executor=executor, output=output, payout=payout,
            output_uri=uri, proof_kind=kind, proof=proof,
        )
        cases.append((name, worker, result, output))
    return cases


def result_json(name: str, worker: str, result: TaskResult, output: bytes) -> dict[str, Any]:
    return {
        "name": name,
        "worker_seed": hx(seed(worker)),
        "request_id": hx(result.request_id),
        "executor": result.executor,
        "output_hash": hx(result.output_hash),
        "output_bytes": hx(output),
        "worker": hx(result.worker),
        "payout": hx(result.payout),
        "signing_message": hx(TAG_RESULT + result.request_id + result.output_hash + encode_executor_id(result.executor)
                              + result.payout),
        "signing_digest": hx(result_signing_digest(result.request_id, result.output_hash, result.executor, result.payout)),
        "signature": hx(result.signature),
        "proof_kind": int(result.proof_kind),
        "proof": hx(result.proof),
        "output_mode": int(result.output_mode),
        "output": None if result.output is None else hx(result.output),
        "output_uri": result.output_uri,
        "encoded": hx(result.encode()),
    }


def attestation_json(name: str, att: ProofAttestation) -> dict[str, Any]:
    return {
        "name": name,
        "request_id": hx(att.request_id),
        "result_id": hx(att.result_id),
        "output_hash": hx(att.output_hash),
        "worker": hx(att.worker),
        "payout": hx(att.payout),
        "method": int(att.method),
        "verdict": att.verdict,
        "checked_at": att.checked_at,
        "encoded": hx(att.encode()),
    }


def invalid_cases(request: bytes, result: bytes, attestation: bytes) -> list[dict[str, Any]]:
    """Payloads every decoder must reject; `error` is a fragment of the Python message."""
    inline_req = bytearray(request)
    bad_mode = bytearray(request)
    bad_mode[40] = 2
    ftp = TaskRequest.by_reference("echo", 1, 1, b"x", "https://a.example/x").encode()
    ftp = ftp.replace(b"https://a.example/x", b"ftp://aaa.example/x")  # same length
    mid_zero = bytearray(request)
    mid_zero[2] = 0  # "se\0timent": zero inside the executor id
    bad_result_mode = bytearray(result)
    bad_result_mode[211] = 7  # output mode (no proof bytes in the first result)
    bad_proof_kind = bytearray(result)
    bad_proof_kind[208] = 4
    tampered_output = bytearray(result)
    tampered_output[-1] ^= 1
    bad_verdict = bytearray(attestation)
    bad_verdict[161] = 0
    bad_method = bytearray(attestation)
    bad_method[160] = 4
    oversize = TaskRequest("echo", 0, 0, input=b"").encode()[:41] + (MAX_INLINE_INPUT_LEN + 1).to_bytes(2, "big") + b"\x00" * (MAX_INLINE_INPUT_LEN + 1)
    specs = [
        (1, "truncated inside the header", bytes(inline_req[:30]), "truncated"),
        (1, "inline length runs past the end", bytes(inline_req[:-1]), "truncated"),
        (1, "trailing byte", bytes(inline_req) + b"\x00", "trailing"),
        (1, "input mode 2", bytes(bad_mode), "input mode 2"),
        (1, "ftp URI scheme", ftp, "scheme"),
        (1, "zero byte inside the executor id", bytes(mid_zero), "zero byte"),
        (1, "payload over 512 bytes", oversize, "limit is 512"),
        (2, "output mode 7", bytes(bad_result_mode), "output mode 7"),
        (2, "proof kind 4", bytes(bad_proof_kind), "proof kind 4"),
        (2, "inline output does not hash to output_hash", bytes(tampered_output), "output_hash"),
        (2, "trailing byte", result + b"\x00", "trailing"),
        (3, "verdict 0", bytes(bad_verdict), "verdict 0"),
        (3, "method 4", bytes(bad_method), "method 4"),
        (3, "169 bytes", attestation[:-1], "must be 170"),
    ]
    return [{"kind": k, "name": n, "payload": hx(p), "error": e} for k, n, p, e in specs]


def build() -> dict[str, Any]:
    requests = request_cases()
    first_envelope = Envelope(MessageKind.TASK_REQUEST, 0, 31337, REQUESTER, 900, seed("solana gateway"), requests[0][1].encode())
    request_id = first_envelope.message_id
    results = result_cases(request_id)
    result_envelope = Envelope(MessageKind.TASK_RESULT, 0, 900, seed("solana gateway"), 31337, REQUESTER, results[0][2].encode())
    result_id = result_envelope.message_id
    attestations = [
        ("signature only, EVM payout", ProofAttestation.for_result(results[0][2], result_id, AttestationMethod.SIGNATURE_ONLY, 1_800_000_123)),
        ("re-execution, Solana payout", ProofAttestation.for_result(results[1][2], result_id, AttestationMethod.REEXECUTION, 0)),
        ("pluggable verifier, checked_at u64 max", ProofAttestation.for_result(results[2][2], result_id, AttestationMethod.PLUGGABLE_VERIFIER, U64_MAX)),
    ]
    return {
        "description": "Tessera v1 AI-task payloads (docs/PROTOCOL.md, 'AI-task payloads'). "
        "Generated by tests/vectors/generate_tasks.py; do not edit by hand.",
        "result_tag": TAG_RESULT.decode(),
        "request_envelope": {"encoded": hx(first_envelope.encode()), "message_id": hx(request_id)},
        "result_envelope": {"encoded": hx(result_envelope.encode()), "message_id": hx(result_id)},
        "task_requests": [request_json(n, r) for n, r in requests],
        "task_results": [result_json(*case) for case in results],
        "proof_attestations": [attestation_json(n, a) for n, a in attestations],
        "invalid": invalid_cases(requests[0][1].encode(), results[0][2].encode(), attestations[0][1].encode()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="directory to write tasks_v1.json to")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / FILE).write_text(json.dumps(build(), indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {args.out / FILE}")


if __name__ == "__main__":
    main()
