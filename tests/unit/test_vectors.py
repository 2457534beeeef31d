"""The shared vector files: they agree with the Python implementation on both backends, and the
generator reproduces them byte for byte."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from attest.bls import lagrange_at, sign, verify
from attest.bn254 import P, BN254Error, decode_g1, decode_g2, encode_g1, hash_to_g1, hex_to_bytes
from attest.threshold import PartialSignature, combine_signatures
from relay.envelope import Envelope, message_digest
from relay.ports import free_port
from relay.protocol import MAX_PAYLOAD_LEN

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
ROOT = VECTORS.parents[1]


def load(name: str) -> dict:
    return json.loads((VECTORS / name).read_text())


BLS = load("bls_bn254.json")["cases"]
ENVELOPES = load("envelope_v1.json")["cases"]
THRESHOLD = load("threshold_bn254.json")["committees"]
b = hex_to_bytes


def test_vector_files_cover_what_the_other_implementations_need() -> None:
    assert {c["kind"] for c in ENVELOPES} == {1, 2, 3, 4, 5}
    assert any(c["payload"] == "0x" for c in ENVELOPES)
    assert any(len(b(c["payload"])) == MAX_PAYLOAD_LEN for c in ENVELOPES)
    assert {0, 2**32 - 1} <= {c["epoch"] for c in ENVELOPES}
    assert any(c["nonce"] == 2**64 - 1 and c["src_domain"] == 2**32 - 1 for c in ENVELOPES)
    assert max(c["k"] for c in BLS) >= 3 and any(c["k"] >= 2 for c in BLS)
    names = " ".join(c["name"] for c in BLS if not c["valid"])
    for fragment in ("wrong message", "wrong key", "not on the curve", "signature = infinity",
                     "group key = infinity", "outside the G2 subgroup", ">= p"):
        assert fragment in names
    assert {(c["n"], c["t"]) for c in THRESHOLD} >= {(1, 1), (5, 5), (10, 7)}


@pytest.mark.parametrize("case", ENVELOPES, ids=lambda c: f"kind{c['kind']}-nonce{c['nonce']}-epoch{c['epoch']}")
def test_envelope_vectors(case: dict) -> None:
    env = Envelope(
        kind=case["kind"], nonce=case["nonce"], src_domain=case["src_domain"], src_sender=b(case["src_sender"]),
        dst_domain=case["dst_domain"], dst_receiver=b(case["dst_receiver"]), payload=b(case["payload"]),
        version=case["version"],
    )
    assert env.encode() == b(case["encoded"])
    assert Envelope.decode(b(case["encoded"])) == env
    assert env.message_id == b(case["message_id"])
    assert message_digest(case["epoch"], env.message_id) == b(case["digest"])


@pytest.mark.parametrize("case", BLS, ids=lambda c: c["name"])
def test_bls_vectors_fast_backend(case: dict) -> None:
    h, k = hash_to_g1(b(case["digest"]))
    assert (encode_g1(h), k) == (b(case["h"]), case["k"])
    assert verify(b(case["group_key"]), b(case["digest"]), b(case["signature"]), "zksnake") is case["valid"]


def _reaches_pairing(case: dict) -> bool:
    try:
        decode_g2(b(case["group_key"]))
        decode_g1(b(case["signature"]))
    except BN254Error:
        return False
    return True


# py-ecc pairings cost ~0.5 s each: every invalid case, plus a few valid ones (k = 0, 2, >= 3).
_PYECC_CASES = [c for c in BLS if not c["valid"]] + [
    next(c for c in BLS if c["valid"] and c["k"] == k) for k in (0, 2)
] + [max((c for c in BLS if c["valid"]), key=lambda c: c["k"])]


@pytest.mark.parametrize("case", _PYECC_CASES, ids=lambda c: c["name"])
def test_bls_vectors_reference_backend(case: dict) -> None:
    assert verify(b(case["group_key"]), b(case["digest"]), b(case["signature"]), "pyecc") is case["valid"]


def test_invalid_vectors_fail_for_an_onchain_visible_reason() -> None:
    # Either the precompile's decoding rejects them, or the pairing check does; the pairing-check
    # ones are well-formed points, so the verdict cannot depend on a lenient decoder.
    for case in BLS:
        if not case["valid"] and _reaches_pairing(case):
            assert verify(b(case["group_key"]), b(case["digest"]), b(case["signature"]), "zksnake") is False


@pytest.mark.parametrize("backend", ["zksnake", "pyecc"])
def test_threshold_vectors(backend: str) -> None:
    # py-ecc: one committee (its group operations are slow but pairing-free here)
    committees = THRESHOLD if backend == "zksnake" else [c for c in THRESHOLD if (c["n"], c["t"]) == (4, 3)]
    for committee in committees:
        group_secret = int.from_bytes(b(committee["group_secret"]), "big")
        shares = {m["index"]: int.from_bytes(b(m["secret_share"]), "big") for m in committee["members"]}
        for entry in committee["signatures"]:
            digest = b(entry["digest"])
            for p in entry["partials"]:
                assert sign(shares[p["index"]], digest, backend) == b(p["signature"])
            by_index = {p["index"]: PartialSignature(p["index"], b(p["signature"])) for p in entry["partials"]}
            for combo in entry["combinations"]:
                assert [int(c, 16) for c in combo["lagrange"]] == lagrange_at(combo["signers"])
                combined = combine_signatures([by_index[i] for i in combo["signers"]], backend)
                assert combined == b(combo["signature"]) == b(entry["signature"])
            assert sign(group_secret, digest, backend) == b(entry["signature"])
            if backend == "zksnake":
                assert verify(b(committee["group_key"]), digest, b(entry["signature"]), backend)


def test_generator_reproduces_the_files_byte_for_byte(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(VECTORS / "generate.py"), "--out", str(tmp_path)], check=True, cwd=ROOT,
        capture_output=True, timeout=120,
    )
    for name in ("envelope_v1.json", "bls_bn254.json", "threshold_bn254.json"):
        assert (tmp_path / name).read_bytes() == (VECTORS / name).read_bytes(), name


ANVIL = ROOT / "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"


@pytest.mark.e2e
def test_bls_vectors_against_the_evm_pairing_precompile() -> None:
    # The verdict of every case, recomputed by a real EVM (anvil's precompile 0x08): the valid ones
    # return 1, the invalid ones return 0 or make the precompile fail (bad encodings).
    import time
    import urllib.request

    from attest.bls import NEG_G2
    from attest.bn254 import encode_g2

    if not ANVIL.exists():
        pytest.fail(f"{ANVIL} is missing: run `npm install` at the repository root")
    port = free_port()
    proc = subprocess.Popen([str(ANVIL), "--port", str(port), "--silent"], stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"

    def rpc(method: str, params: list) -> dict:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
        request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    try:
        for _ in range(100):
            try:
                rpc("eth_chainId", [])
                break
            except OSError:
                time.sleep(0.1)
        neg_g2 = encode_g2(NEG_G2)
        for case in BLS:
            data = b(case["signature"]) + neg_g2 + b(case["h"]) + b(case["group_key"])
            reply = rpc("eth_call", [{"to": "0x" + "00" * 19 + "08", "data": "0x" + data.hex()}, "latest"])
            accepted = reply.get("result") == "0x" + "00" * 31 + "01"
            assert accepted is case["valid"], (case["name"], reply)
            # y of H is the modexp precompile's β^((p+1)/4), as a Solidity hashToG1 computes it.
            x = int.from_bytes(b(case["h"])[:32], "big")
            beta = (x**3 + 3) % P
            modexp = b"".join(v.to_bytes(32, "big") for v in (32, 32, 32, beta, (P + 1) // 4, P))
            reply = rpc("eth_call", [{"to": "0x" + "00" * 19 + "05", "data": "0x" + modexp.hex()}, "latest"])
            assert reply["result"] == "0x" + b(case["h"])[32:].hex(), case["name"]
            assert x == (int.from_bytes(b(case["digest"]), "big") + case["k"]) % P
    finally:
        proc.terminate()
        proc.wait(timeout=10)
