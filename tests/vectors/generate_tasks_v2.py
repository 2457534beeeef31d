"""Generate the AI-task payload vectors of task protocol v2 (TASK_REQUEST v2 with its auction
terms, TASK_RESULT v2 with its claim and Ed25519 worker signature, PROOF_ATTESTATION v2 verdicts
valid and refused, auction prices, the envelopes that carry them, and malformed payloads every
decoder must reject). Deterministic: fixed Ed25519 seeds, deterministic signatures (RFC 8032).

    .venv/bin/python tests/vectors/generate_tasks_v2.py [--out DIR]

Schema: docs/PROTOCOL.md ("AI-task payloads v2", "Test vectors v2").
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
from relay.protocol import COMMITTEE_DOMAIN, MAX_PAYLOAD_LEN, TAG_RESULT_V2, U32_MAX, U64_MAX, MessageKind  # noqa: E402
from relay.tasks.payloads import (  # noqa: E402
    BPS,
    MAX_INLINE_INPUT_LEN_V2,
    MAX_INLINE_OUTPUT_LEN_V2,
    U128_MAX,
    AttestationMethod,
    ProofKind,
    ProofVerdict,
    RefusalReason,
    TaskRequestV2,
    TaskResultV2,
    auction_price,
    encode_executor_id,
    result_signing_digest_v2,
)
from relay.tasks.sentiment import SentimentExecutor  # noqa: E402

HERE = Path(__file__).resolve().parent
FILE = "tasks_v2.json"

EVM_DOMAIN = 31337
SOLANA_DOMAIN = 900


def hx(data: bytes) -> str:
    return "0x" + data.hex()


def seed(label: str) -> bytes:
    return keccak256(b"tessera task vectors v2: " + label.encode())


REQUESTER_BOARD = address_to_bytes32("0x5FbDB2315678afecb367f032bb643d1a8ab0ee42")  # EVM board (chain A)
SERVING_BOARD = seed("solana task board")  # Solana board (chain B)
EVM_PAYOUT = address_to_bytes32("0x70997970C51812dc3A010C7d01b50e0d17dc79C8")
EVM_CLAIMANT = address_to_bytes32("0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC")
SOLANA_CLAIMANT = seed("a solana claimant key")
SOLANA_REFUND = seed("the requester's solana account")
EVM_REFUND = address_to_bytes32("0x90F79bf6EB2c4f870365E785982E1f101E93b906")


def request_cases() -> list[tuple[str, TaskRequestV2]]:
    def req(executor: str, max_fee: int, deadline: int, window: int, bps: int, claim: int, bond: int, refund: bytes,
            **input_: Any) -> TaskRequestV2:
        return TaskRequestV2(executor, max_fee, deadline, window, bps, claim, bond, refund, **input_)

    return [
        ("sentiment, inline text, 1 s auction from 50 %",
         req("sentiment", 10**15, 1_800_000_000, 1, 5_000, 30, 10**7, SOLANA_REFUND, input=b"I love this bridge!")),
        ("echo, empty input, fixed price (window 0), zero bond",
         req("echo", 0, 0, 0, 0, 1, 0, EVM_REFUND, input=b"")),
        ("16-character executor, every integer at its maximum",
         req("abcdefghijklmnop", U128_MAX, U64_MAX, U32_MAX, BPS, U32_MAX, U128_MAX, SOLANA_REFUND, input=b"\x00\xff")),
        ("largest inline input (payload = 512 bytes)",
         req("echo", 1, 2, 60, 1, 5, 1, EVM_REFUND, input=bytes((i * 13 + 5) % 256 for i in range(MAX_INLINE_INPUT_LEN_V2)))),
        ("hash + https URI, 10 min auction from 20 %",
         req("http", 5 * 10**17, 1_800_000_600, 600, 2_000, 120, 5 * 10**15, EVM_REFUND,
             input_hash=keccak256(b"Summarise this document."), input_uri="https://example.org/in/1.txt")),
        ("hash + ipfs URI", req("embed", 7, 1_800_000_000, 10, 9_999, 60, 3, SOLANA_REFUND,
                                input_hash=keccak256(b"embed me"), input_uri="ipfs://bafybeigdyrztk6fq3a7z5s2k4u")),
    ]


def request_json(name: str, req: TaskRequestV2) -> dict[str, Any]:
    return {
        "name": name,
        "executor": req.executor,
        "executor_bytes": hx(encode_executor_id(req.executor)),
        "max_fee": str(req.max_fee),
        "deadline": req.deadline,
        "auction_window": req.auction_window,
        "start_bps": req.start_bps,
        "claim_window": req.claim_window,
        "bond": str(req.bond),
        "refund_to": hx(req.refund_to),
        "input_mode": int(req.input_mode),
        "input": None if req.input is None else hx(req.input),
        "input_hash": None if req.input_hash is None else hx(req.input_hash),
        "input_uri": req.input_uri,
        "encoded": hx(req.encode()),
    }


def auction_cases() -> list[dict[str, Any]]:
    """(max_fee, start_bps, window, start, now) → price, including the floor divisions and the
    160-bit intermediate product (u128 max_fee times a u32 window)."""
    specs = [
        ("before the start counts as the start", 10**15, 5_000, 1, 1_000, 999),
        ("at the start", 10**15, 5_000, 1, 1_000, 1_000),
        ("1 s window, after it", 10**15, 5_000, 1, 1_000, 1_001),
        ("one third through, floors", 1_000, 0, 3, 0, 1),
        ("start price floors (1 wei at 50 %)", 1, 5_000, 10, 0, 0),
        ("window 0 is max_fee at once", 777, 0, 0, 50, 50),
        ("start_bps 10000 is max_fee throughout", 10**18, BPS, 600, 0, 1),
        ("long after the window", 10**18, 2_000, 600, 0, 10**9),
        ("u128 max fee, u32 max window, half way (160-bit product)", U128_MAX, 1, U32_MAX, 0, U32_MAX // 2),
        ("u128 max fee, one second before the end", U128_MAX, 0, U32_MAX, 5, 5 + U32_MAX - 1),
    ]
    return [
        {"name": n, "max_fee": str(m), "start_bps": b, "auction_window": w, "auction_start": s, "now": t,
         "price": str(auction_price(m, b, w, s, t))}
        for n, m, b, w, s, t in specs
    ]


def result_cases(request_id: bytes) -> list[tuple[str, str, TaskResultV2, bytes]]:
    sentiment_out = SentimentExecutor().analyse(b"I love this bridge!")
    specs = [
        ("sentiment, inline output, no proof, Solana claimant, EVM payout", "worker A", "sentiment", sentiment_out,
         SOLANA_CLAIMANT, EVM_PAYOUT, 750_000_000_000_000, None, ProofKind.NONE, b""),
        ("echo, empty output, re-execution, EVM claimant, Solana payout", "worker B", "echo", b"", EVM_CLAIMANT,
         seed("a solana payout key"), 0, None, ProofKind.REEXECUTION, b""),
        ("http, output by URI, TEE quote, price u128 max", "worker C", "http",
         b"A long model answer that travels by URI." * 20, EVM_CLAIMANT, EVM_PAYOUT, U128_MAX,
         "https://results.example.org/out/1.json", ProofKind.TEE_QUOTE, bytes(range(200))),
        ("largest inline output (payload = 512 bytes)", "worker B", "echo",
         bytes((i * 31 + 7) % 256 for i in range(MAX_INLINE_OUTPUT_LEN_V2)), EVM_CLAIMANT, EVM_PAYOUT, 1, None,
         ProofKind.NONE, b""),
    ]
    cases = []
    for name, worker, executor, output, claimant, payout, price, uri, kind, proof in specs:
        key = Ed25519PrivateKey.from_private_bytes(seed(worker))
        result = TaskResultV2.signed(key, request_id=request_id, executor=executor, output=output, claimant=claimant,
                                     payout=payout, price=price, output_uri=uri, proof_kind=kind, proof=proof)
        cases.append((name, worker, result, output))
    return cases


def result_json(name: str, worker: str, r: TaskResultV2, output: bytes) -> dict[str, Any]:
    return {
        "name": name,
        "worker_seed": hx(seed(worker)),
        "request_id": hx(r.request_id),
        "executor": r.executor,
        "output_hash": hx(r.output_hash),
        "output_bytes": hx(output),
        "worker": hx(r.worker),
        "claimant": hx(r.claimant),
        "payout": hx(r.payout),
        "price": str(r.price),
        "signing_message": hx(TAG_RESULT_V2 + r.request_id + r.output_hash + encode_executor_id(r.executor)
                              + r.claimant + r.payout + r.price.to_bytes(16, "big")),
        "signing_digest": hx(result_signing_digest_v2(r.request_id, r.output_hash, r.executor, r.claimant, r.payout,
                                                      r.price)),
        "signature": hx(r.signature),
        "proof_kind": int(r.proof_kind),
        "proof": hx(r.proof),
        "output_mode": int(r.output_mode),
        "output": None if r.output is None else hx(r.output),
        "output_uri": r.output_uri,
        "encoded": hx(r.encode()),
    }


def verdict_json(name: str, v: ProofVerdict) -> dict[str, Any]:
    return {
        "name": name,
        "request_id": hx(v.request_id),
        "result_id": hx(v.result_id),
        "output_hash": hx(v.output_hash),
        "worker": hx(v.worker),
        "claimant": hx(v.claimant),
        "payout": hx(v.payout),
        "price": str(v.price),
        "method": int(v.method),
        "verdict": int(v.verdict),
        "reason": int(v.reason),
        "submitted_at": v.submitted_at,
        "encoded": hx(v.encode()),
    }


def invalid_cases(request: bytes, uri_request: bytes, result: bytes, verdict: bytes, refused: bytes,
                  v1_request: bytes, v1_result: bytes, v1_attestation: bytes) -> list[dict[str, Any]]:
    """Payloads every v2 decoder must reject: `error` is a fragment of the Python message,
    `error_name` the refusal's name (the Solidity library's custom error)."""

    def patched(data: bytes, offset: int, value: bytes) -> bytes:
        out = bytearray(data)
        out[offset:offset + len(value)] = value
        return bytes(out)

    ftp = uri_request.replace(b"https://example.org/in/1.txt", b"ftp://aaexample.org/in/1.txt")
    assert len(ftp) == len(uri_request)
    specs: list[tuple[int, str, bytes, str, str]] = [
        (1, "version byte 1", patched(request, 0, b"\x01"), "version byte 1", "UnsupportedPayloadVersion"),
        (1, "a v1 request", v1_request, "version byte", "UnsupportedPayloadVersion"),
        (1, "truncated inside the terms", request[:60], "truncated", "PayloadTruncated"),
        (1, "inline length runs past the end", request[:-1], "truncated", "PayloadTruncated"),
        (1, "trailing byte", request + b"\x00", "trailing", "TrailingBytes"),
        (1, "start_bps 10001", patched(request, 45, (BPS + 1).to_bytes(2, "big")), "start_bps", "InvalidAuctionTerms"),
        (1, "claim_window 0", patched(request, 47, bytes(4)), "claim_window", "InvalidAuctionTerms"),
        (1, "refund_to zero", patched(request, 67, bytes(32)), "refund_to", "InvalidAuctionTerms"),
        (1, "input mode 2", patched(request, 99, b"\x02"), "input mode 2", "UnknownDataMode"),
        (1, "ftp URI scheme", ftp, "scheme", "InvalidURI"),
        (1, "zero byte inside the executor id", patched(request, 3, b"\x00"), "zero byte", "InvalidExecutorId"),
        (1, "payload over 512 bytes", request[:100] + (MAX_INLINE_INPUT_LEN_V2 + 1).to_bytes(2, "big")
         + bytes(MAX_INLINE_INPUT_LEN_V2 + 1), "limit is 512", "PayloadTooLarge"),
        (2, "a v1 result", v1_result, "version byte", "UnsupportedPayloadVersion"),
        (2, "version byte 3", patched(result, 32, b"\x03"), "version byte 3", "UnsupportedPayloadVersion"),
        (2, "output mode 7", patched(result, 260, b"\x07"), "output mode 7", "UnknownDataMode"),
        (2, "proof kind 4", patched(result, 257, b"\x04"), "proof kind 4", "UnknownProofKind"),
        (2, "inline output does not hash to output_hash", patched(result, len(result) - 1, bytes([result[-1] ^ 1])),
         "output_hash", "OutputHashMismatch"),
        (2, "truncated inside the signature", result[:200], "truncated", "PayloadTruncated"),
        (2, "trailing byte", result + b"\x00", "trailing", "TrailingBytes"),
        (3, "a v1 attestation (170 bytes)", v1_attestation, "must be 220", "AttestationLength"),
        (3, "219 bytes", verdict[:-1], "must be 220", "AttestationLength"),
        (3, "version byte 1", patched(verdict, 32, b"\x01"), "version byte 1", "UnsupportedPayloadVersion"),
        (3, "verdict 0", patched(verdict, 210, b"\x00"), "verdict 0", "InvalidVerdict"),
        (3, "verdict 3", patched(verdict, 210, b"\x03"), "verdict 3", "InvalidVerdict"),
        (3, "method 0", patched(verdict, 209, b"\x00"), "method 0", "UnknownAttestationMethod"),
        (3, "valid with a refusal reason", patched(verdict, 211, b"\x04"), "reason 4", "InvalidVerdict"),
        (3, "refused without a reason", patched(refused, 211, b"\x00"), "reason 0", "InvalidVerdict"),
        (3, "refusal reason 8", patched(refused, 211, b"\x08"), "reason 8", "InvalidVerdict"),
    ]
    return [{"kind": k, "name": n, "payload": hx(p), "error": e, "error_name": s} for k, n, p, e, s in specs]


def build() -> dict[str, Any]:
    requests = request_cases()
    # Chain A (EVM, the requester's board) sends the first request to chain B (Solana, the serving board).
    request_env = Envelope(MessageKind.TASK_REQUEST, 4, EVM_DOMAIN, REQUESTER_BOARD, SOLANA_DOMAIN, SERVING_BOARD,
                           requests[0][1].encode())
    request_id = request_env.message_id
    results = result_cases(request_id)
    result_env = Envelope(MessageKind.TASK_RESULT, 9, SOLANA_DOMAIN, SERVING_BOARD, EVM_DOMAIN, REQUESTER_BOARD,
                         results[0][2].encode())
    result_id = result_env.message_id
    valid = ProofVerdict.for_result(results[0][2], result_id, AttestationMethod.SIGNATURE_ONLY, 1_799_999_990)
    refused = ProofVerdict.for_result(results[0][2], result_id, AttestationMethod.REEXECUTION, 1_799_999_990,
                                      RefusalReason.OUTPUT_MISMATCH)
    verdicts = [
        ("valid, signature only", valid),
        ("refused: output mismatch on re-execution", refused),
        ("refused: bad worker signature, submitted_at u64 max",
         ProofVerdict.for_result(results[2][2], result_id, AttestationMethod.PLUGGABLE_VERIFIER, U64_MAX,
                                 RefusalReason.WORKER_SIGNATURE)),
        ("valid, re-execution, price 0", ProofVerdict.for_result(results[1][2], result_id,
                                                                AttestationMethod.REEXECUTION, 0)),
    ]

    def committee_envelope(payload: bytes, dst_domain: int, dst: bytes) -> dict[str, str]:
        env = Envelope(MessageKind.PROOF_ATTESTATION, 0, COMMITTEE_DOMAIN, bytes(32), dst_domain, dst, payload)
        return {"encoded": hx(env.encode()), "message_id": hx(env.message_id)}

    v1 = json.loads((HERE / "tasks_v1.json").read_text())
    return {
        "description": "Tessera AI-task payloads, task protocol v2 (docs/PROTOCOL.md, 'AI-task payloads v2'). "
        "Generated by tests/vectors/generate_tasks_v2.py; do not edit by hand.",
        "payload_version": 2,
        "result_tag": TAG_RESULT_V2.decode(),
        "max_payload_len": MAX_PAYLOAD_LEN,
        "request_envelope": {"encoded": hx(request_env.encode()), "message_id": hx(request_id)},
        "result_envelope": {"encoded": hx(result_env.encode()), "message_id": hx(result_id)},
        # One verdict, one envelope per destination: same payload, different dst, different message id.
        "verdict_envelopes": {
            "payload": hx(valid.encode()),
            "to_requester_board": committee_envelope(valid.encode(), EVM_DOMAIN, REQUESTER_BOARD),
            "to_serving_board": committee_envelope(valid.encode(), SOLANA_DOMAIN, SERVING_BOARD),
        },
        "task_requests": [request_json(n, r) for n, r in requests],
        "auction_prices": auction_cases(),
        "task_results": [result_json(*case) for case in results],
        "verdicts": [verdict_json(n, v) for n, v in verdicts],
        "invalid": invalid_cases(
            requests[0][1].encode(), requests[4][1].encode(), results[0][2].encode(), valid.encode(), refused.encode(),
            bytes.fromhex(v1["task_requests"][0]["encoded"][2:]), bytes.fromhex(v1["task_results"][0]["encoded"][2:]),
            bytes.fromhex(v1["proof_attestations"][0]["encoded"][2:]),
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help=f"directory to write {FILE} to")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / FILE).write_text(json.dumps(build(), indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {args.out / FILE}")


if __name__ == "__main__":
    main()
