"""What the explorer shows, as JSON: a message with its journey (source tx -> final -> signed ->
delivered -> confirmed), its payload decoded, and a task assembled from the messages that carry it
(request, result with the claim, attestation or verdict, settlement).

Task payloads are read by message kind and payload version through the codecs in
relay/tasks/payloads.py (`_DECODERS`), so a new protocol version is one line here."""

from __future__ import annotations

import dataclasses
import enum
import time
from collections.abc import Callable, Mapping
from typing import Any

from relay.envelope import EnvelopeError
from relay.protocol import COMMITTEE_DOMAIN, MessageKind
from relay.store import MessageRecord, Stage, Store
from relay.tasks.payloads import (ProofAttestation, ProofVerdict, TaskPayloadError, TaskRequest, TaskRequestV2,
                                  TaskResult, TaskResultV2, task_payload_version)

# (kind, payload version) -> decoder; the task view follows whatever these return.
_DECODERS: dict[tuple[MessageKind, int], Callable[[bytes], Any]] = {
    (MessageKind.TASK_REQUEST, 1): TaskRequest.decode,
    (MessageKind.TASK_REQUEST, 2): TaskRequestV2.decode,
    (MessageKind.TASK_RESULT, 1): TaskResult.decode,
    (MessageKind.TASK_RESULT, 2): TaskResultV2.decode,
    (MessageKind.PROOF_ATTESTATION, 1): ProofAttestation.decode,
    (MessageKind.PROOF_ATTESTATION, 2): ProofVerdict.decode,
}
TASK_KINDS = (MessageKind.TASK_REQUEST, MessageKind.TASK_RESULT, MessageKind.PROOF_ATTESTATION)
TASK_SCAN_LIMIT = 2000  # messages looked through for a task's results and attestations
_MAX_TEXT = 2000  # characters of an inline input/output shown
_JS_SAFE_INT = 2**53  # larger integers travel as decimal strings (wei amounts)


def _value(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.name.lower()
    if isinstance(value, bool) or value is None or isinstance(value, str | float):
        return value
    if isinstance(value, int):
        return value if abs(value) < _JS_SAFE_INT else str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        return "0x" + data.hex()
    return str(value)


def _address(raw: bytes) -> str:
    """A 32-byte account as people write it: an EVM address (left-padded to 32) as its 20 bytes."""
    return "0x" + (raw[12:] if len(raw) == 32 and not any(raw[:12]) else raw).hex()


def _inline_text(data: bytes) -> str | None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text[:_MAX_TEXT] if text.isprintable() or "\n" in text else None


def decode_payload(kind: int, payload: bytes) -> tuple[Any | None, dict]:
    """(the decoded payload or None, its JSON). A payload that does not decode shows its size and
    the decoder's complaint instead of failing the page."""
    try:
        kind = MessageKind(kind)
    except ValueError:
        return None, {"bytes": len(payload), "error": f"unknown message kind {kind}"}
    if kind not in TASK_KINDS:
        return None, {"bytes": len(payload), "text": _inline_text(payload), "hex": "0x" + payload[:256].hex()}
    try:
        version = task_payload_version(kind, payload)
        decoded = _DECODERS[(kind, version)](payload)
    except (TaskPayloadError, KeyError) as exc:
        return None, {"bytes": len(payload), "error": str(exc)}
    fields: dict[str, Any] = {"version": version}
    for f in dataclasses.fields(decoded):
        raw = getattr(decoded, f.name)
        fields[f.name] = _value(raw)
        if f.name in ("input", "output") and isinstance(raw, bytes):
            fields[f.name + "_text"] = _inline_text(raw)
    if kind == MessageKind.PROOF_ATTESTATION and isinstance(fields.get("verdict"), int):  # v1: a number
        fields["verdict"] = "valid" if fields["verdict"] == 1 else "refused"
    return decoded, fields


def task_id_of(record: MessageRecord, decoded: Any | None) -> bytes | None:
    """The task a message belongs to: a request is its own task; results and attestations name it."""
    if record.kind == MessageKind.TASK_REQUEST:
        return record.message_id
    return getattr(decoded, "request_id", None)


def _chain(chains: Mapping[int, str], domain: int) -> str:
    return "committee" if domain == COMMITTEE_DOMAIN else chains.get(domain, f"domain {domain}")


def journey(record: MessageRecord, chains: Mapping[int, str]) -> list[dict]:
    """The steps of a message, each done (with its time), current, or still to come."""
    dead = record.stage is Stage.DEAD
    steps = [
        {"step": "sent", "title": f"Sent on {_chain(chains, record.src_domain)}", "tx": record.source_tx,
         "chain": _chain(chains, record.src_domain), "at": None, "done": True},
        {"step": "final", "title": "Final on the source chain", "at": record.observed_at, "done": True},
        {"step": "signed", "title": "Signed by the committee", "at": record.signed_at,
         "epoch": record.epoch, "done": record.signed_at is not None},
        {"step": "submitted", "title": f"Delivery sent to {_chain(chains, record.dst_domain)}",
         "tx": record.dest_tx, "chain": _chain(chains, record.dst_domain), "at": record.submitted_at,
         "done": record.submitted_at is not None or record.stage is Stage.CONFIRMED},
        {"step": "confirmed", "title": "Delivered and final", "at": record.confirmed_at,
         "done": record.stage is Stage.CONFIRMED},
    ]
    if record.stage is Stage.CONFIRMED and record.dest_tx is None:
        steps[3]["title"] = f"Delivered to {_chain(chains, record.dst_domain)} by another relayer"
    current = next((s for s in steps if not s["done"]), None)
    if current is not None:
        current["current"] = True
        if record.reason:
            current["detail"] = record.reason
        if dead:
            current["failed"] = True
    return steps


def message_json(record: MessageRecord, chains: Mapping[int, str]) -> dict:
    now = time.time()
    try:
        payload = record.decoded.payload
    except EnvelopeError:
        payload = b""
    decoded, payload_json = decode_payload(record.kind, payload)
    task_id = task_id_of(record, decoded)
    try:
        kind_name = MessageKind(record.kind).name
    except ValueError:
        kind_name = f"KIND_{record.kind}"
    return {
        "message_id": "0x" + record.message_id.hex(),
        "kind": kind_name,
        "src_domain": record.src_domain, "src_chain": _chain(chains, record.src_domain),
        "dst_domain": record.dst_domain, "dst_chain": _chain(chains, record.dst_domain),
        "nonce": record.nonce,
        "stage": record.stage.value,
        "reason": record.reason,
        "reason_code": record.reason_code.value if record.reason_code else None,
        "attempts": record.attempts,
        "next_attempt_in_s": (None if record.next_attempt_at == float("inf")
                              else round(max(0.0, record.next_attempt_at - now), 3)),
        "source_tx": record.source_tx,
        "dest_tx": record.dest_tx,
        "epoch": record.epoch,
        "observed_at": record.observed_at, "signed_at": record.signed_at,
        "submitted_at": record.submitted_at, "confirmed_at": record.confirmed_at,
        "updated_at": record.updated_at,
        "task_id": "0x" + task_id.hex() if task_id else None,
        "payload": payload_json,
        "journey": journey(record, chains),
    }


def _settlement(request: MessageRecord | None, decoded_request: Any | None,
                attestations: list[tuple[MessageRecord, Any]], chains: Mapping[int, str]) -> dict:
    """What happened to the escrow, as far as the relayer's store tells: the requester's board pays
    when a valid attestation is delivered to it; a refusal pays nothing; with none by the deadline
    the requester may reclaim (a chain read the relayer does not make: `handle.status()`)."""
    if request is None:
        return {"state": "unknown", "detail": "the request is not in this relayer's store"}
    to_requester = [(r, d) for r, d in attestations if r.dst_domain == request.src_domain]
    for record, verdict in to_requester:
        valid = getattr(verdict, "valid", None)
        valid = valid if isinstance(valid, bool) else getattr(verdict, "verdict", 1) == 1
        if record.stage is Stage.CONFIRMED:
            if valid:
                return {"state": "paid", "at": record.confirmed_at,
                        "detail": f"valid attestation delivered to {_chain(chains, request.src_domain)}: the board "
                                  f"paid the worker's payout {_address(getattr(verdict, 'payout', b''))}"}
            return {"state": "refused", "at": record.confirmed_at,
                    "detail": f"the committee refused the result ({_value(getattr(verdict, 'reason', 'refused'))}): "
                              "nothing paid; the requester reclaims after the deadline"}
    deadline = getattr(decoded_request, "deadline", None)
    if deadline is not None and time.time() > deadline:
        return {"state": "refundable", "detail": "deadline passed with no attested result delivered: the requester "
                                                 "can reclaim the escrow (refunded once reclaimed on-chain)"}
    if to_requester:
        return {"state": "settling", "detail": "attestation on its way to the requester's board"}
    return {"state": "open", "detail": "escrowed until an attested result is delivered or the deadline passes"}


async def task_json(store: Store, task_id: bytes, chains: Mapping[int, str]) -> dict | None:
    """The task `task_id` (its TASK_REQUEST's message id) from the messages that carry it."""
    request = await store.get(task_id)
    if request is not None and request.kind != MessageKind.TASK_REQUEST:
        request = None
    results: list[tuple[MessageRecord, Any]] = []
    attestations: list[tuple[MessageRecord, Any]] = []
    for record in await store.listing(TASK_SCAN_LIMIT):
        if record.kind not in (MessageKind.TASK_RESULT, MessageKind.PROOF_ATTESTATION):
            continue
        decoded, _ = decode_payload(record.kind, record.decoded.payload)
        if decoded is None or getattr(decoded, "request_id", None) != task_id:
            continue
        (results if record.kind == MessageKind.TASK_RESULT else attestations).append((record, decoded))
    if request is None and not results and not attestations:
        return None
    decoded_request = decode_payload(request.kind, request.decoded.payload)[0] if request else None
    claims = [{"result_id": "0x" + r.message_id.hex(), "claimant": _value(d.claimant), "price": _value(d.price)}
              for r, d in results if hasattr(d, "claimant")]
    return {
        "task_id": "0x" + task_id.hex(),
        "requester_chain": _chain(chains, request.src_domain) if request else None,
        "serving_chain": _chain(chains, request.dst_domain) if request else None,
        "request": message_json(request, chains) if request else None,
        "claims": claims,  # protocol v2: the claimant and its price travel in the result
        "results": [message_json(r, chains) for r, _ in results],
        "attestations": [message_json(r, chains) for r, _ in attestations],
        "settlement": _settlement(request, decoded_request, attestations, chains),
    }
