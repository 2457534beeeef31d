"""`relay config check --online` on an EVM chain: the contracts a config names are deployed with the
code this checkout builds, and the CommitteeVerifier holds the config's committee.

Code is compared with the forge artifact's `deployedBytecode`: the runtime code differs from it only
where the constructor wrote immutables (the chain's domain, the Gateway's verifier, ...), at the
offsets the artifact lists under `immutableReferences`. Those bytes are zeroed on both sides before
the keccak hashes are compared, so a contract deployed with other constructor arguments still
matches, and any other difference (another version, another contract) does not.
"""

from __future__ import annotations

import json

from web3 import AsyncHTTPProvider, AsyncWeb3

from adapters.checks import committee_problems
from adapters.evm.deploy import OUT_DIR, contract
from attest.committee import Committee
from relay.config import EvmChain
from relay.envelope import keccak256

# Names under [chains.<evm>.contracts] that are not their contract's name.
_ARTIFACT_OF = {"MarketPool": "ConstantProductPool", "MarketBase": "MockToken", "MarketQuote": "MockToken"}


def artifact_name(key: str) -> str:
    if key.startswith("Aggregator:"):  # adapters/evm/feeds.py aggregator_key
        return "TesseraAggregator"
    return _ARTIFACT_OF.get(key, key)


def _deployed_artifact(name: str) -> tuple[bytes, list[tuple[int, int]]] | None:
    """The artifact's runtime code and its immutables' (offset, length), or None without an artifact."""
    path = OUT_DIR / f"{name}.sol" / f"{name}.json"
    if not path.is_file():
        return None
    deployed = json.loads(path.read_text())["deployedBytecode"]
    code = bytes.fromhex(deployed["object"].removeprefix("0x"))
    spans = [(ref["start"], ref["length"]) for refs in deployed.get("immutableReferences", {}).values() for ref in refs]
    return code, spans


def _masked(code: bytes, spans: list[tuple[int, int]]) -> bytes:
    masked = bytearray(code)
    for start, length in spans:
        masked[start:start + length] = bytes(length)
    return bytes(masked)


def code_problem(key: str, address: str, onchain: bytes) -> str | None:
    """Why the code at `address` is not the contract `key` names (None when it is)."""
    where = f"contracts.{key} ({address})"
    if not onchain:
        return f"{where}: no contract at this address: deploy it (`relay deploy`) or fix the address"
    artifact = _deployed_artifact(artifact_name(key))
    if artifact is None:
        return None  # a contract this checkout does not build: that code exists is all that can be said
    expected, spans = artifact
    if len(onchain) != len(expected) or keccak256(_masked(onchain, spans)) != keccak256(_masked(expected, spans)):
        return (f"{where}: the code there is not {artifact_name(key)} as contracts/evm builds it (keccak "
                f"0x{keccak256(_masked(onchain, spans)).hex()[:16]}.. vs 0x{keccak256(_masked(expected, spans)).hex()[:16]}.., "
                "immutables masked): a wrong address, or a deployment of another version")
    return None


async def deployment_problems(name: str, chain: EvmChain, committee: Committee | None) -> list[str]:
    """Every contract of `chain` checked against its artifact, the Gateway's verifier against the
    CommitteeVerifier, and the verifier's current committee against `committee`. Uses rpc_urls[0]."""
    prefix = f"chains.{name}."
    problems: list[str] = []
    w3 = AsyncWeb3(AsyncHTTPProvider(chain.rpc_urls[0]))
    try:
        codes: dict[str, bytes] = {}
        for key, address in chain.contracts.items():
            codes[key] = bytes(await w3.eth.get_code(w3.to_checksum_address(address)))
            if (problem := code_problem(key, address, codes[key])) is not None:
                problems.append(prefix + problem)
        verifier = chain.contracts.get("CommitteeVerifier")
        good = lambda key: key in codes and codes[key] and not any(p.startswith(f"{prefix}contracts.{key} ") for p in problems)  # noqa: E731
        if verifier is not None and good("Gateway"):
            linked = await contract(w3, "Gateway", chain.contracts["Gateway"]).functions.verifier().call()
            if linked.lower() != verifier.lower():
                problems.append(f"{prefix}contracts.Gateway ({chain.contracts['Gateway']}) verifies with {linked}, "
                                f"not contracts.CommitteeVerifier {verifier}")
        if verifier is not None and good("CommitteeVerifier") and committee is not None:
            epoch, _, _, group_key = await contract(w3, "CommitteeVerifier", verifier).functions.currentCommittee().call()
            problems += committee_problems(f"{prefix}contracts.CommitteeVerifier ({verifier})", epoch, bytes(group_key),
                                           committee)
    finally:
        await w3.provider.disconnect()
    return problems
