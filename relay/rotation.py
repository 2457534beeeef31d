"""Committee rotation (`relay committee rotate`, docs/DEPLOY.md "Rotating the committee").

The outgoing committee (epoch E) signs one COMMITTEE_ROTATION envelope per chain (docs/PROTOCOL.md:
source domain 0 and sender 0, destination the chain's verifier: the EVM CommitteeVerifier, the
Solana program) naming committee E+1 and a grace period; each chain's verifier installs E+1 and
keeps accepting epoch E's signatures until the grace ends.

An attester signs a rotation only to the committee its operator approved in its own config
(`[committee] next`, the next committee's public file): the epoch must be its own plus one and the
size, threshold and group key exactly the approved committee's, the grace at most MAX_GRACE_S. So a
relayer, or whoever reaches the attesters' HTTP port, cannot make the committee hand the chains to
another key; with `[committee] next_grace_s` only that grace, so nobody can stretch the outgoing
key's life (the key a rotation may be replacing because it leaked). This module holds the envelope,
the attester's check and route, and the operator's side: collecting t partials and combining them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from dataclasses import dataclass

import aiohttp
from aiohttp import web

import attest
from attest.committee import Committee
from attest.threshold import PartialSignature
from relay.envelope import Envelope, EnvelopeError
from relay.errors import TesseraError
from relay.log import get_logger
from relay.payloads import CommitteeRotation
from relay.protocol import COMMITTEE_DOMAIN, MessageKind

MAX_GRACE_S = 30 * 24 * 3600  # an old key valid longer than a month after its replacement is a liability
ROUTE = "/v1/rotations"

log = get_logger("rotation")


class RotationError(TesseraError):
    """A rotation that cannot be signed, collected or delivered; the message says why and what to do."""


def rotation_envelope(dst_domain: int, verifier: bytes, new: Committee, grace_seconds: int) -> Envelope:
    """The COMMITTEE_ROTATION to committee `new` for the chain of `dst_domain` whose verifier is
    `verifier` (32 bytes: a left-padded EVM address, a Solana program id)."""
    if not 0 <= grace_seconds <= MAX_GRACE_S:
        raise RotationError(f"grace of {grace_seconds}s: give 0..{MAX_GRACE_S} seconds (at most 30 days)")
    payload = CommitteeRotation(new.epoch, new.n, new.t, new.group_key, grace_seconds).encode()
    return Envelope(kind=MessageKind.COMMITTEE_ROTATION, nonce=0, src_domain=COMMITTEE_DOMAIN, src_sender=bytes(32),
                    dst_domain=dst_domain, dst_receiver=verifier, payload=payload)


def check_rotation(envelope: Envelope, epoch: int, approved: Committee | None, domains: Collection[int],
                   grace_s: int | None = None) -> CommitteeRotation:
    """What an attester of epoch `epoch` checks before signing `envelope`; raises RotationError.
    `grace_s` (`[committee] next_grace_s`): the only grace the operator approves."""
    if approved is None:
        raise RotationError("this attester approves no next committee: its operator sets [committee] next to the "
                            "next committee's public file and restarts it")
    if envelope.kind != MessageKind.COMMITTEE_ROTATION:
        raise RotationError(f"not a COMMITTEE_ROTATION envelope (kind {envelope.kind})")
    if envelope.src_domain != COMMITTEE_DOMAIN or envelope.src_sender != bytes(32):
        raise RotationError("a rotation comes from the committee: source domain 0 and sender 0")
    if envelope.dst_domain not in domains:
        raise RotationError(f"destination domain {envelope.dst_domain} is none of this attester's chains "
                            f"({', '.join(map(str, sorted(domains)))})")
    try:
        rotation = CommitteeRotation.decode(envelope.payload)
    except EnvelopeError as exc:
        raise RotationError(f"the rotation payload does not decode: {exc}") from None
    if rotation.new_epoch != epoch + 1 or approved.epoch != epoch + 1:
        raise RotationError(f"this attester signs for epoch {epoch} and approves epoch {approved.epoch}; the rotation "
                            f"names epoch {rotation.new_epoch} (it must be {epoch + 1})")
    if (rotation.n, rotation.t, rotation.group_key) != (approved.n, approved.t, approved.group_key):
        raise RotationError(f"the rotation names another committee ({rotation.t}-of-{rotation.n}, key "
                            f"0x{rotation.group_key[:8].hex()}..) than the one this attester approves "
                            f"({approved.t}-of-{approved.n}, key 0x{approved.group_key[:8].hex()}..)")
    if rotation.grace_seconds > MAX_GRACE_S:
        raise RotationError(f"grace of {rotation.grace_seconds}s is longer than {MAX_GRACE_S}s")
    if grace_s is not None and rotation.grace_seconds != grace_s:
        # A longer grace keeps the outgoing key (maybe the leaked one the rotation replaces) valid longer.
        raise RotationError(f"grace of {rotation.grace_seconds}s: this attester approves {grace_s}s "
                            "([committee] next_grace_s); rotate with --grace " + str(grace_s))
    return rotation


def rotation_routes(index: int, epoch: int, sign: Callable[[bytes], bytes], approved: Committee | None,
                    domains: Collection[int], grace_s: int | None = None) -> list[web.RouteDef]:
    """The attester's `POST /v1/rotations` ({"envelope": hex}): its partial signature over the
    rotation's digest under its epoch, or 403 with the reason it refuses."""

    async def sign_rotation(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            envelope = Envelope.decode(bytes.fromhex(str(body["envelope"]).removeprefix("0x")))
        except EnvelopeError as exc:
            return web.json_response({"error": f"the envelope does not decode: {exc}"}, status=400)
        except (ValueError, TypeError, LookupError, RecursionError):
            return web.json_response({"error": 'body must be {"envelope": "0x<COMMITTEE_ROTATION envelope>"}'},
                                     status=400)
        try:
            rotation = check_rotation(envelope, epoch, approved, domains, grace_s)
        except RotationError as exc:
            log.warning("rotation refused", member=index, error=str(exc))
            return web.json_response({"error": f"refused: {exc}"}, status=403)
        signature = sign(envelope.digest(epoch))
        log.info("rotation signed", member=index, epoch=epoch, new_epoch=rotation.new_epoch, dst=envelope.dst_domain,
                 grace_s=rotation.grace_seconds)
        return web.json_response({"member": index, "epoch": epoch, "message_id": "0x" + envelope.message_id.hex(),
                                  "signature": "0x" + signature.hex()})

    return [web.post(ROUTE, sign_rotation)]


@dataclass(frozen=True, slots=True)
class ChainCommittee:
    """What a chain's verifier holds: its current committee and, after a rotation, the previous
    epoch and the chain time (unix seconds) until which its signatures are still accepted."""

    epoch: int
    n: int
    t: int
    group_key: bytes
    previous_epoch: int | None
    previous_valid_until: int
    chain_time: int  # the chain's clock now (latest block timestamp, Solana Clock sysvar)


@dataclass(frozen=True, slots=True)
class SignedRotation:
    envelope: Envelope
    epoch: int  # the outgoing committee's, under which the signature is made
    signature: bytes
    signers: tuple[int, ...]


async def collect_rotation(committee: Committee, envelope: Envelope, timeout: float = 10.0) -> SignedRotation:
    """Ask every member of the outgoing `committee` to sign `envelope`, check each partial against the
    member's public share, and combine t of them; RotationError naming every member's answer when
    fewer than t sign."""
    digest = envelope.digest(committee.epoch)
    answers: dict[int, str] = {}

    async def ask(session: aiohttp.ClientSession, index: int, endpoint: str) -> PartialSignature | None:
        url = f"{endpoint.rstrip('/')}{ROUTE}"
        try:
            async with session.post(url, json={"envelope": "0x" + envelope.encode().hex()}) as response:
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            answers[index] = f"unreachable at {url} ({exc or type(exc).__name__})"
            return None
        if response.status != 200:
            answers[index] = str(body.get("error") if isinstance(body, dict) else body)
            return None
        try:
            partial = PartialSignature(index, bytes.fromhex(str(body["signature"]).removeprefix("0x")))
        except (ValueError, KeyError, TypeError):
            answers[index] = "answered without a signature"
            return None
        if int(body.get("epoch", -1)) != committee.epoch or not attest.verify_partial(committee, partial, digest):
            answers[index] = f"its partial does not verify under member {index}'s public share of epoch {committee.epoch}"
            return None
        answers[index] = "signed"
        return partial

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        found = await asyncio.gather(*(ask(session, m.index, m.endpoint) for m in committee.members))
    partials = [p for p in found if p is not None]
    if len(partials) < committee.t:
        detail = "; ".join(f"member {i}: {a}" for i, a in sorted(answers.items()))
        raise RotationError(f"only {len(partials)} of the {committee.t} signatures a rotation needs: {detail}")
    result = attest.combine(committee, digest, partials)
    if not result.ok or result.signature is None:
        raise RotationError(f"the partials do not combine into a valid signature: {result.reason}")
    return SignedRotation(envelope, committee.epoch, result.signature, tuple(result.signers))
