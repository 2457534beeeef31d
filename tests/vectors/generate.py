"""Generate the shared test vectors (envelope, BLS on BN254, threshold BLS) with the py-ecc
reference backend. Deterministic: every secret comes from a fixed seed, so re-running produces
byte-identical files.

    .venv/bin/python tests/vectors/generate.py [--out DIR]

Schemas: docs/CRYPTO.md ("Test vectors").
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from attest.backend import get_backend, set_default_backend  # noqa: E402
from attest.bls import lagrange_at, public_key, sign  # noqa: E402
from attest.bn254 import (  # noqa: E402
    G2_GENERATOR,
    P,
    R,
    TWIST_B,
    encode_g1,
    encode_g2,
    hash_to_g1,
    is_in_g2_subgroup,
    is_on_g1_curve,
    is_on_g2_curve,
)
from attest.threshold import deal, partial_sign, combine_signatures  # noqa: E402
from relay.envelope import Envelope, address_to_bytes32, keccak256  # noqa: E402
from relay.payloads import CommitteeRotation  # noqa: E402
from relay.protocol import COMMITTEE_DOMAIN, MAX_PAYLOAD_LEN, U32_MAX, U64_MAX, MessageKind  # noqa: E402

HERE = Path(__file__).resolve().parent
BACKEND = "pyecc"


def hx(data: bytes) -> str:
    return "0x" + data.hex()


def write(path: Path, document: dict[str, Any]) -> None:
    path.write_text(json.dumps(document, indent=2) + "\n")


# --- envelope_v1.json ---------------------------------------------------------------------


def envelope_cases() -> list[dict[str, Any]]:
    evm_a = address_to_bytes32("0x5FbDB2315678afecb367f032bb643d1a8ab0ee42")
    evm_b = address_to_bytes32("0x000000000000000000000000000000000000dEaD")
    solana_key = keccak256(b"tessera vectors: a solana public key")  # any 32 bytes is a valid pubkey form
    rotation = CommitteeRotation(
        new_epoch=2, n=4, t=3, group_key=encode_g2(G2_GENERATOR), grace_seconds=86_400
    ).encode()
    max_payload = bytes((i * 7 + 3) % 256 for i in range(MAX_PAYLOAD_LEN))
    specs: list[tuple[Envelope, int]] = [
        (Envelope(MessageKind.TASK_REQUEST, 0, 31337, evm_a, 900, solana_key, b"\x01model=vader;input=hello"), 1),
        (Envelope(MessageKind.TASK_RESULT, 1, 900, solana_key, 31337, evm_a, b"\x02" + bytes(range(64))), 1),
        (Envelope(MessageKind.PROOF_ATTESTATION, 2, 31337, evm_b, 900, solana_key, keccak256(b"proof")), 7),
        (Envelope(MessageKind.DATA, 3, 900, solana_key, 31337, evm_b, b"ETH/USD:3141.59"), 1),
        (Envelope(MessageKind.COMMITTEE_ROTATION, 0, COMMITTEE_DOMAIN, bytes(32), 31337, evm_a, rotation), 1),
        (Envelope(MessageKind.DATA, 4, 31337, evm_a, 900, solana_key, b""), 0),
        (Envelope(MessageKind.TASK_REQUEST, 5, 31337, evm_a, 900, solana_key, max_payload), U32_MAX),
        (Envelope(MessageKind.TASK_RESULT, U64_MAX, U32_MAX, b"\xff" * 32, U32_MAX, b"\xff" * 32, b"\xff"), U32_MAX),
        (Envelope(MessageKind.DATA, 0, 0, bytes(32), 0, bytes(32), b""), 0),
        (Envelope(MessageKind.PROOF_ATTESTATION, 2**32, 1, evm_a, 2, evm_b, b"\x00" * 33), 2**31),
    ]
    cases = []
    for env, epoch in specs:
        cases.append(
            {
                "version": env.version,
                "kind": int(env.kind),
                "nonce": env.nonce,
                "src_domain": env.src_domain,
                "src_sender": hx(env.src_sender),
                "dst_domain": env.dst_domain,
                "dst_receiver": hx(env.dst_receiver),
                "payload": hx(env.payload),
                "encoded": hx(env.encode()),
                "message_id": hx(env.message_id),
                "epoch": epoch,
                "digest": hx(env.digest(epoch)),
            }
        )
    return cases


# --- bls_bn254.json -----------------------------------------------------------------------


def _digest_with_k(min_k: int) -> bytes:
    for seed in range(100_000):
        digest = keccak256(b"tessera vectors: k search " + seed.to_bytes(4, "big"))
        if hash_to_g1(digest)[1] >= min_k:
            return digest
    raise RuntimeError(f"no digest with k >= {min_k} in the search range")


def _fp2_sqrt(a: tuple[int, int]) -> tuple[int, int] | None:
    # Complex method for Fp[u]/(u^2+1): sqrt(a0 + a1 u) from the square root of the norm.
    a0, a1 = a
    norm = (a0 * a0 + a1 * a1) % P
    s = pow(norm, (P + 1) // 4, P)
    if s * s % P != norm:
        return None
    half = pow(2, P - 2, P)
    for cand in ((a0 + s) * half % P, (a0 - s) * half % P):
        x0 = pow(cand, (P + 1) // 4, P)
        if x0 * x0 % P != cand:
            continue
        if x0 == 0:
            continue
        x1 = a1 * pow(2 * x0, P - 2, P) % P
        if ((x0 * x0 - x1 * x1) % P, 2 * x0 * x1 % P) == (a0 % P, a1 % P):
            return (x0, x1)
    return None


def _twist_point_outside_g2() -> tuple[tuple[int, int], tuple[int, int]]:
    """A point of E'(Fp2) that is not in the order-r subgroup (the twist's cofactor is ~p)."""
    for x0 in range(1, 1000):
        x = (x0, 1)
        x2 = ((x[0] * x[0] - x[1] * x[1]) % P, 2 * x[0] * x[1] % P)
        x3 = ((x2[0] * x[0] - x2[1] * x[1]) % P, (x2[0] * x[1] + x2[1] * x[0]) % P)
        rhs = ((x3[0] + TWIST_B[0]) % P, (x3[1] + TWIST_B[1]) % P)
        y = _fp2_sqrt(rhs)
        if y is None:
            continue
        point = (x, y)
        assert is_on_g2_curve(point)
        if not is_in_g2_subgroup(point):
            return point
    raise RuntimeError("no twist point outside G2 found")


def bls_cases() -> list[dict[str, Any]]:
    rng = random.Random(0x7E55E4A)
    sk = rng.randrange(1, R)
    other_sk = rng.randrange(1, R)
    pk = public_key(sk, BACKEND)
    other_pk = public_key(other_sk, BACKEND)

    cases: list[dict[str, Any]] = []

    def case(name: str, digest: bytes, group_key: bytes, signature: bytes, valid: bool) -> None:
        h, k = hash_to_g1(digest)
        cases.append(
            {
                "name": name,
                "digest": hx(digest),
                "h": hx(encode_g1(h)),
                "k": k,
                "group_key": hx(group_key),
                "signature": hx(signature),
                "valid": valid,
            }
        )

    env = Envelope(MessageKind.TASK_REQUEST, 0, 31337, bytes(12) + b"\x11" * 20, 900, b"\x22" * 32, b"hello")
    digests = {
        "envelope digest (epoch 1)": env.digest(1),
        "digest 0x00..00": bytes(32),
        "digest 0xff..ff (>= p, reduced mod p)": b"\xff" * 32,
        "digest = p (reduces to x = 0)": P.to_bytes(32, "big"),
        "digest with k >= 2": _digest_with_k(2),
        "digest with k >= 3": _digest_with_k(3),
        "digest with k >= 4": _digest_with_k(4),
    }
    for i in range(3):
        digests[f"random digest {i}"] = keccak256(b"tessera vectors: digest " + bytes([i]))
    for name, digest in digests.items():
        case(f"valid: {name}", digest, pk, sign(sk, digest, BACKEND), True)
    signed = {name: sign(sk, d, BACKEND) for name, d in digests.items()}

    base = digests["random digest 0"]
    sig = signed["random digest 0"]
    sx, sy = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    pk_words = [int.from_bytes(pk[i : i + 32], "big") for i in range(0, 128, 32)]
    assert sx + P < 2**256 and pk_words[0] + P < 2**256 and sy + P < 2**256

    case("invalid: wrong message (signature of another digest)", digests["random digest 1"], pk, sig, False)
    case("invalid: wrong key (signed by another secret)", base, pk, sign(other_sk, base, BACKEND), False)
    case("invalid: right signature, another group key", base, other_pk, sig, False)
    case("invalid: signature negated (-sigma)", base, pk, sx.to_bytes(32, "big") + ((-sy) % P).to_bytes(32, "big"), False)
    off_curve = sx.to_bytes(32, "big") + ((sy + 1) % P).to_bytes(32, "big")
    assert not is_on_g1_curve((sx, (sy + 1) % P))
    case("invalid: signature not on the curve (y + 1)", base, pk, off_curve, False)
    case("invalid: signature = infinity (64 zero bytes)", base, pk, bytes(64), False)
    case("invalid: signature x >= p (x + p, same point mod p)", base, pk, (sx + P).to_bytes(32, "big") + sig[32:], False)
    case("invalid: signature y >= p (y + p, same point mod p)", base, pk, sig[:32] + (sy + P).to_bytes(32, "big"), False)
    case("invalid: group key = infinity (128 zero bytes)", base, bytes(128), sig, False)
    outside = _twist_point_outside_g2()
    case("invalid: group key on the twist but outside the G2 subgroup", base, encode_g2(outside), sig, False)
    bad_pk = bytearray(pk)
    bad_pk[127] ^= 1
    bad_words = [int.from_bytes(bad_pk[i : i + 32], "big") for i in range(0, 128, 32)]
    assert not is_on_g2_curve(((bad_words[1], bad_words[0]), (bad_words[3], bad_words[2])))
    case("invalid: group key not on the twist curve (y_re flipped bit)", base, bytes(bad_pk), sig, False)
    case(
        "invalid: group key x_im >= p (x_im + p)",
        base,
        (pk_words[0] + P).to_bytes(32, "big") + pk[32:],
        sig,
        False,
    )
    case("invalid: group key with swapped Fp2 halves (not EIP-197 order)", base, pk[32:64] + pk[:32] + pk[96:] + pk[64:96], sig, False)
    return cases


# --- threshold_bn254.json -----------------------------------------------------------------


def threshold_committees() -> list[dict[str, Any]]:
    digests = [
        Envelope(MessageKind.DATA, 0, 31337, bytes(12) + b"\x33" * 20, 900, b"\x44" * 32, b"feed").digest(1),
        _digest_with_k(3),
        keccak256(b"tessera vectors: threshold digest"),
    ]
    out = []
    for n, t, seed in ((1, 1, 11), (3, 2, 12), (4, 3, 13), (5, 5, 14), (10, 7, 15)):
        rng = random.Random(seed)
        committee, shares = deal(n, t, epoch=1, rng=rng, backend=BACKEND)
        # The group secret is recomputed from the shares (the dealer does not return it).
        lam = lagrange_at(list(range(1, t + 1)))
        group_secret = sum(l * s.scalar for l, s in zip(lam, shares[:t])) % R
        signatures = []
        for digest in digests:
            h, k = hash_to_g1(digest)
            partials = [partial_sign(s, digest, BACKEND) for s in shares]
            subsets = [list(range(1, t + 1)), list(range(n - t + 1, n + 1))]
            if n > t:
                subsets.append(sorted(random.Random(seed * 1000 + k).sample(range(1, n + 1), t)))
            combos = []
            for subset in subsets:
                chosen = [partials[i - 1] for i in subset]
                combos.append(
                    {
                        "signers": subset,
                        "lagrange": [hx(c.to_bytes(32, "big")) for c in lagrange_at(subset)],
                        "signature": hx(combine_signatures(chosen, BACKEND)),
                    }
                )
            expected = sign(group_secret, digest, BACKEND)
            assert all(c["signature"] == hx(expected) for c in combos)
            signatures.append(
                {
                    "digest": hx(digest),
                    "h": hx(encode_g1(h)),
                    "k": k,
                    "partials": [{"index": p.index, "signature": hx(p.signature)} for p in partials],
                    "combinations": combos,
                    "signature": hx(expected),
                }
            )
        out.append(
            {
                "name": f"{t}-of-{n}",
                "epoch": committee.epoch,
                "n": n,
                "t": t,
                "group_secret": hx(group_secret.to_bytes(32, "big")),
                "group_key": hx(committee.group_key),
                "members": [
                    {
                        "index": s.index,
                        "secret_share": hx(s.to_bytes()),
                        "public_share": hx(committee.public_share(s.index)),
                        "endpoint": committee.member(s.index).endpoint,
                    }
                    for s in shares
                ],
                "signatures": signatures,
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="directory for the JSON files (default: next to this script)")
    args = parser.parse_args(argv)
    set_default_backend(BACKEND)  # committee validation inside deal() uses the default backend too
    args.out.mkdir(parents=True, exist_ok=True)
    write(args.out / "envelope_v1.json", {"cases": envelope_cases()})
    write(args.out / "bls_bn254.json", {"curve": "bn254", "scheme": "min-sig, try-and-increment hash", "cases": bls_cases()})
    write(args.out / "threshold_bn254.json", {"committees": threshold_committees()})
    print(f"wrote envelope_v1.json, bls_bn254.json, threshold_bn254.json to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
