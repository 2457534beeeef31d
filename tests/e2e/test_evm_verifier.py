"""CommitteeVerifier on a real anvil: the shared BLS vectors through eth_call, a real verify
transaction (gas recorded), and a committee rotation signed with py-ecc for the deployed address."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.exceptions import ContractLogicError

import attest
from adapters.evm import deploy as evm_deploy
from adapters.evm.rpc import decode_revert, revert_data
from attest.bn254 import P
from adapters.evm.devnet import AnvilProcess, free_port
from attest.bn254 import hash_to_g1_hint
from relay.envelope import Envelope, address_to_bytes32, message_digest
from relay.payloads import CommitteeRotation
from relay.protocol import COMMITTEE_DOMAIN, MessageKind

pytestmark = pytest.mark.e2e

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "bls_bn254.json"
DOMAIN = 31337
GRACE = 600
SECRET_1 = 0xA11CE
SECRET_2 = 0xB0B


def _sign(secret: int, digest: bytes) -> bytes:
    return attest.sign(secret, digest)


def _public_key(secret: int) -> bytes:
    return attest.public_key(secret)


def _b(value: str) -> bytes:
    return bytes.fromhex(value.removeprefix("0x"))


@pytest.fixture(scope="module")
def node() -> Iterator[AnvilProcess]:
    evm_deploy.ensure_built()
    with AnvilProcess(port=free_port()) as process:
        yield process


@pytest.fixture
def w3(node: AnvilProcess) -> AsyncWeb3:
    return AsyncWeb3(AsyncHTTPProvider(node.rpc_url))


async def _deploy_verifier(w3: AsyncWeb3, node: AnvilProcess, group_key: bytes, epoch: int = 1) -> Any:
    address = await evm_deploy.deploy(w3, node.private_keys[0], "CommitteeVerifier", DOMAIN, epoch, 4, 3, group_key)
    return evm_deploy.contract(w3, "CommitteeVerifier", address)


async def _reverts(call: Any) -> str | None:
    try:
        await call.call()
    except ContractLogicError as exc:
        return decode_revert(call.contract_abi, revert_data(exc))
    return None


async def test_every_bls_vector_through_eth_call(w3: AsyncWeb3, node: AnvilProcess) -> None:
    cases = json.loads(VECTORS.read_text())["cases"]
    assert len(cases) >= 20
    valid_key = next(_b(c["group_key"]) for c in cases if c["valid"])
    verifier = await _deploy_verifier(w3, node, valid_key)
    checked_installed = 0
    for case in cases:
        digest, key, sig = _b(case["digest"]), _b(case["group_key"]), _b(case["signature"])
        x, y, k = await verifier.functions.hashToG1(digest).call()
        assert x.to_bytes(32, "big") + y.to_bytes(32, "big") == _b(case["h"]), case["name"]
        assert k == case["k"], case["name"]

        reason = await _reverts(verifier.functions.verifyDigestWithKey(digest, key, sig))
        assert (reason is None) == case["valid"], f"{case['name']}: {reason}"
        if key == valid_key:
            # The same verdict through the installed committee (epoch 1).
            reason = await _reverts(verifier.functions.verifyDigest(digest, 1, sig))
            assert (reason is None) == case["valid"], f"{case['name']} (installed key): {reason}"
            checked_installed += 1
    assert checked_installed >= 10


async def test_verify_transaction_gas(w3: AsyncWeb3, node: AnvilProcess, record_property: Any) -> None:
    verifier = await _deploy_verifier(w3, node, _public_key(SECRET_1))
    envelope = Envelope(
        MessageKind.TASK_REQUEST, 0, 900, b"\x22" * 32, DOMAIN, address_to_bytes32(verifier.address), b"model=vader;input=hi"
    ).encode()
    signature = _sign(SECRET_1, message_digest(1, Envelope.decode(envelope).message_id))
    call = verifier.functions.verify(envelope, 1, signature)
    assert await call.call() == Envelope.decode(envelope).message_id

    # The estimate must be enough for the success path (verification reverts, never returns false).
    estimate = await w3.eth.estimate_gas({"to": verifier.address, "data": call._encode_transaction_data()})
    receipt = await evm_deploy.transact(w3, node.private_keys[1], call, gas=estimate)
    assert receipt["status"] == 1
    gas = receipt["gasUsed"]
    record_property("verify_tx_gas", gas)
    print(f"verify transaction gas: {gas} (estimate {estimate})")
    assert 120_000 < gas < 175_000

    with pytest.raises(evm_deploy.TransactionReverted, match=r"InvalidSignature\(\)"):
        await evm_deploy.transact(w3, node.private_keys[1], verifier.functions.verify(envelope + b"\x00", 1, signature))


async def test_every_bls_vector_with_a_hint(w3: AsyncWeb3, node: AnvilProcess) -> None:
    cases = json.loads(VECTORS.read_text())["cases"]
    valid_key = next(_b(c["group_key"]) for c in cases if c["valid"])
    verifier = await _deploy_verifier(w3, node, valid_key)
    checked = 0
    for case in (c for c in cases if _b(c["group_key"]) == valid_key):
        digest, sig = _b(case["digest"]), _b(case["signature"])
        k, y, y_sqrt = hash_to_g1_hint(digest)
        assert (k, y.to_bytes(32, "big")) == (case["k"], _b(case["h"])[32:]), case["name"]
        reason = await _reverts(verifier.functions.verifyDigestWithHint(digest, 1, sig, k, y, y_sqrt))
        assert (reason is None) == case["valid"], f"{case['name']}: {reason}"
        checked += 1
    assert checked >= 10


async def test_hinted_verify_transaction_and_bent_hints(w3: AsyncWeb3, node: AnvilProcess, record_property: Any) -> None:
    verifier = await _deploy_verifier(w3, node, _public_key(SECRET_1))
    # Nonce chosen so the unhinted hash needs increments (the hint saves one modexp per step).
    for nonce in range(64):
        env = Envelope(MessageKind.TASK_REQUEST, nonce, 900, b"\x22" * 32, DOMAIN, address_to_bytes32(verifier.address), b"hi")
        digest = message_digest(1, env.message_id)
        k, y, y_sqrt = hash_to_g1_hint(digest)
        if k >= 2:
            break
    assert k >= 2, "no envelope needing two increments among 64 nonces"
    envelope, signature = env.encode(), _sign(SECRET_1, digest)
    hinted = verifier.functions.verifyWithHint(envelope, 1, signature, k, y, y_sqrt)
    assert await hinted.call() == env.message_id
    estimate = await w3.eth.estimate_gas({"to": verifier.address, "data": hinted._encode_transaction_data()})
    receipt = await evm_deploy.transact(w3, node.private_keys[1], hinted, gas=estimate)
    plain = await evm_deploy.transact(w3, node.private_keys[1], verifier.functions.verify(envelope, 1, signature))
    record_property("verify_with_hint_tx_gas", receipt["gasUsed"])
    print(f"k={k}: verifyWithHint transaction {receipt['gasUsed']} gas, verify {plain['gasUsed']}")
    assert receipt["status"] == 1 and receipt["gasUsed"] <= 150_000
    assert receipt["gasUsed"] < plain["gasUsed"] - 4_000 * k

    sx, sy = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    neg_sig = sx.to_bytes(32, "big") + (P - sy).to_bytes(32, "big")
    bent = {
        "wrong k": (signature, k - 1, y, y_sqrt, "HintNotOnCurve"),
        "negated sigma and y": (neg_sig, k, P - y, pow(P - y, (P + 1) // 4, P), "HintNotCanonical()"),
        "y not the principal root": (signature, k, P - y, y_sqrt, "HintNotCanonical()"),
        "y >= p": (signature, k, y + P, y_sqrt, "HintOutOfRange()"),
        "y_sqrt >= p": (signature, k, y, y_sqrt + P, "HintOutOfRange()"),
    }
    for name, (sig, k_, y_, root, error) in bent.items():
        reason = await _reverts(verifier.functions.verifyWithHint(envelope, 1, sig, k_, y_, root))
        assert reason is not None and reason.startswith(error), f"{name}: {reason}"
    with pytest.raises(evm_deploy.TransactionReverted, match=r"HintNotCanonical\(\)"):
        await evm_deploy.transact(
            w3, node.private_keys[1], verifier.functions.verifyWithHint(envelope, 1, neg_sig, k, P - y, 1), gas=200_000
        )


def _rotation(verifier_address: str, new_epoch: int, key: bytes, *, dst_domain: int = DOMAIN) -> bytes:
    payload = CommitteeRotation(new_epoch=new_epoch, n=4, t=3, group_key=key, grace_seconds=GRACE).encode()
    return Envelope(
        MessageKind.COMMITTEE_ROTATION, 0, COMMITTEE_DOMAIN, bytes(32), dst_domain,
        address_to_bytes32(verifier_address), payload,
    ).encode()


async def test_rotation_and_grace_period_on_anvil(w3: AsyncWeb3, node: AnvilProcess) -> None:
    key1, key2 = _public_key(SECRET_1), _public_key(SECRET_2)
    verifier = await _deploy_verifier(w3, node, key1)
    relayer = node.private_keys[2]

    rotation = _rotation(verifier.address, 2, key2)
    rotation_id = Envelope.decode(rotation).message_id
    with pytest.raises(evm_deploy.TransactionReverted, match=r"InvalidSignature\(\)"):
        await evm_deploy.transact(w3, relayer, verifier.functions.rotate(rotation, _sign(SECRET_2, message_digest(1, rotation_id))))
    elsewhere = _rotation(verifier.address, 2, key2, dst_domain=DOMAIN + 1)
    with pytest.raises(evm_deploy.TransactionReverted, match=r"WrongDestination"):
        await evm_deploy.transact(
            w3, relayer,
            verifier.functions.rotate(elsewhere, _sign(SECRET_1, message_digest(1, Envelope.decode(elsewhere).message_id))),
        )

    receipt = await evm_deploy.transact(w3, relayer, verifier.functions.rotate(rotation, _sign(SECRET_1, message_digest(1, rotation_id))))
    (event,) = verifier.events.CommitteeRotated().process_receipt(receipt)
    block = await w3.eth.get_block(receipt["blockNumber"])
    assert event["args"]["previousEpoch"] == 1 and event["args"]["newEpoch"] == 2
    assert event["args"]["groupKey"] == key2
    assert event["args"]["previousValidUntil"] == block["timestamp"] + GRACE
    print(f"rotate transaction gas: {receipt['gasUsed']}")

    message = Envelope(MessageKind.DATA, 1, 900, b"\x33" * 32, DOMAIN, b"\x44" * 32, b"ETH/USD:1").encode()
    message_id = Envelope.decode(message).message_id
    old_sig, new_sig = _sign(SECRET_1, message_digest(1, message_id)), _sign(SECRET_2, message_digest(2, message_id))
    assert await verifier.functions.verify(message, 2, new_sig).call() == message_id
    assert await verifier.functions.verify(message, 1, old_sig).call() == message_id

    await w3.provider.make_request("evm_increaseTime", [GRACE + 1])
    await w3.provider.make_request("evm_mine", [])
    reason = await _reverts(verifier.functions.verify(message, 1, old_sig))
    assert reason is not None and reason.startswith("EpochExpired(1, ")
    assert await verifier.functions.verify(message, 2, new_sig).call() == message_id
