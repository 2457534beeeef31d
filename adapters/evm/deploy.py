"""Build the Solidity contracts with forge and deploy them from their artifacts with web3.py.

Artifacts are forge's own output (`contracts/evm/out/<File>.sol/<Contract>.json`); a build runs
when one is missing or a source is newer than the last build this module made.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eth_abi import decode as abi_decode
from eth_utils import function_abi_to_4byte_selector

from relay.log import get_logger

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from web3 import AsyncWeb3
    from web3.types import TxReceipt


def _log() -> Any:
    # Resolved per call: a logger bound at import time would ignore a configure_logging() run later.
    return get_logger("evm.deploy")


REPO_ROOT = Path(__file__).resolve().parents[2]
EVM_PROJECT = REPO_ROOT / "contracts/evm"
OUT_DIR = EVM_PROJECT / "out"
FORGE_BIN = REPO_ROOT / "node_modules/@foundry-rs/forge-linux-amd64/bin/forge"
_BUILD_STAMP = OUT_DIR / ".tessera-build-stamp"
_RECEIPT_TIMEOUT = 60.0


class EvmDeployError(RuntimeError):
    """Building, loading or deploying a contract failed."""


class ForgeNotInstalledError(EvmDeployError):
    def __init__(self, binary: Path) -> None:
        super().__init__(f"forge binary not found at {binary}: run `make setup` (npm ci) to install forge")


class BuildError(EvmDeployError):
    """forge build failed; the message carries its output."""


class ArtifactNotFoundError(EvmDeployError):
    pass


class TransactionReverted(EvmDeployError):
    def __init__(self, what: str, reason: str, receipt: Any = None) -> None:
        super().__init__(f"{what} reverted: {reason}")
        self.reason = reason
        self.receipt = receipt


@dataclass(frozen=True, slots=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: str  # 0x-hex creation code
    deployed_bytecode: str


# --- build --------------------------------------------------------------------------------


def _sources() -> list[Path]:
    files = [p for p in (EVM_PROJECT / "src").rglob("*.sol")]
    return files + [EVM_PROJECT / "foundry.toml", EVM_PROJECT / "tools/solc"]


def _artifact_path(name: str) -> Path | None:
    direct = OUT_DIR / f"{name}.sol" / f"{name}.json"
    if direct.is_file():
        return direct
    matches = sorted(OUT_DIR.glob(f"*.sol/{name}.json"))
    return matches[0] if matches else None


def needs_build() -> bool:
    if not _BUILD_STAMP.exists():
        return True
    built_at = _BUILD_STAMP.stat().st_mtime
    for source in _sources():
        if source.exists() and source.stat().st_mtime > built_at:
            return True
    return any(_artifact_path(p.stem) is None for p in (EVM_PROJECT / "src").glob("*.sol"))


def ensure_built(force: bool = False) -> None:
    """Runs `forge build` in contracts/evm when artifacts are missing or older than the sources."""
    if not force and not needs_build():
        return
    if not FORGE_BIN.is_file() or not os.access(FORGE_BIN, os.X_OK):
        raise ForgeNotInstalledError(FORGE_BIN)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    # Test sessions and `relay localnet up` may build at the same time; forge does not lock its output.
    with open(OUT_DIR / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not force and not needs_build():
            return
        _log().info("building contracts", project=str(EVM_PROJECT))
        result = subprocess.run(
            [str(FORGE_BIN), "build"], cwd=EVM_PROJECT, capture_output=True, text=True, timeout=600
        )
        if result.returncode != 0:
            raise BuildError(
                f"forge build failed in {EVM_PROJECT} (exit {result.returncode}):\n{result.stdout}{result.stderr}"
            )
        _BUILD_STAMP.touch()


def load_artifact(name: str) -> Artifact:
    path = _artifact_path(name)
    if path is None:
        raise ArtifactNotFoundError(
            f"no forge artifact for contract {name!r} under {OUT_DIR}: is it in contracts/evm/src? "
            "ensure_built() (or `forge build` in contracts/evm) creates it"
        )
    data = json.loads(path.read_text())
    bytecode = data["bytecode"]["object"]
    if data["bytecode"].get("linkReferences"):
        raise EvmDeployError(f"{name} needs linked libraries; Tessera's contracts use internal libraries only")
    return Artifact(
        name=name,
        abi=data["abi"],
        bytecode=bytecode if bytecode.startswith("0x") else "0x" + bytecode,
        deployed_bytecode=data["deployedBytecode"]["object"],
    )


# --- revert reasons -----------------------------------------------------------------------


def decode_revert(abi: list[dict[str, Any]], data: str | bytes | None) -> str:
    """A readable revert reason: custom errors from the ABI by name, Error(string), Panic(uint)."""
    if data is None:
        return "no revert data (out of gas, or a failing precompile without a reason)"
    if isinstance(data, dict):  # some nodes nest it
        data = data.get("data")
    raw = bytes.fromhex(data.removeprefix("0x")) if isinstance(data, str) else bytes(data)
    if len(raw) < 4:
        return f"revert data 0x{raw.hex()}" if raw else "reverted without data"
    selector, body = raw[:4], raw[4:]
    if selector == bytes.fromhex("08c379a0"):
        return f"Error({abi_decode(['string'], body)[0]!r})"
    if selector == bytes.fromhex("4e487b71"):
        return f"Panic(0x{abi_decode(['uint256'], body)[0]:02x})"
    for entry in abi:
        if entry.get("type") != "error":
            continue
        if function_abi_to_4byte_selector(entry) == selector:
            types = [i["type"] for i in entry.get("inputs", [])]
            try:
                values = abi_decode(types, body) if types else ()
            except Exception:  # noqa: BLE001 - malformed body: still name the error
                return f"{entry['name']}(<undecodable 0x{body.hex()}>)"
            shown = ", ".join("0x" + v.hex() if isinstance(v, bytes) else str(v) for v in values)
            return f"{entry['name']}({shown})"
    return f"unknown error 0x{raw.hex()}"


def revert_data(error: BaseException) -> str | None:
    """The revert data web3 attached to a ContractLogicError, if any."""
    data = getattr(error, "data", None)
    if isinstance(data, dict):
        data = data.get("data")
    return data if isinstance(data, str) else None


# --- transactions -------------------------------------------------------------------------


def _as_account(w3: "AsyncWeb3", account: "LocalAccount | str") -> "LocalAccount":
    return w3.eth.account.from_key(account) if isinstance(account, str) else account


async def _send(w3: "AsyncWeb3", account: "LocalAccount", tx: dict[str, Any], what: str, abi: list[dict[str, Any]]) -> "TxReceipt":
    from web3.exceptions import ContractLogicError

    tx.setdefault("from", account.address)
    tx.setdefault("chainId", await w3.eth.chain_id)
    tx.setdefault("nonce", await w3.eth.get_transaction_count(account.address, "pending"))
    if "gas" not in tx:
        try:
            tx["gas"] = await w3.eth.estimate_gas(tx)
        except ContractLogicError as exc:
            raise TransactionReverted(what, decode_revert(abi, revert_data(exc))) from exc
    if "gasPrice" not in tx and "maxFeePerGas" not in tx:
        base = (await w3.eth.get_block("latest")).get("baseFeePerGas")
        if base is None:
            tx["gasPrice"] = await w3.eth.gas_price
        else:
            tip = await w3.eth.max_priority_fee
            tx["maxPriorityFeePerGas"] = tip
            tx["maxFeePerGas"] = 2 * base + tip
    signed = account.sign_transaction(tx)
    tx_hash = await w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = await w3.eth.wait_for_transaction_receipt(tx_hash, timeout=_RECEIPT_TIMEOUT)
    if receipt["status"] != 1:
        reason = await _replay_reason(w3, tx, receipt, abi)
        raise TransactionReverted(what, reason, receipt)
    return receipt


async def _replay_reason(w3: "AsyncWeb3", tx: dict[str, Any], receipt: Any, abi: list[dict[str, Any]]) -> str:
    # Receipts carry no revert data: re-run the call at the block it failed in.
    from web3.exceptions import ContractLogicError

    call = {k: v for k, v in tx.items() if k in ("from", "to", "data", "value", "gas")}
    try:
        await w3.eth.call(call, block_identifier=receipt["blockNumber"])
    except ContractLogicError as exc:
        return decode_revert(abi, revert_data(exc))
    except Exception as exc:  # noqa: BLE001 - the reason is a courtesy, the revert is the fact
        return f"status 0 in transaction 0x{bytes(receipt['transactionHash']).hex()} ({exc})"
    return f"status 0 in transaction 0x{bytes(receipt['transactionHash']).hex()} (gas used {receipt['gasUsed']})"


async def deploy(w3: "AsyncWeb3", account: "LocalAccount | str", name: str, *ctor_args: Any, **tx: Any) -> str:
    """Deploys contract `name` from its forge artifact; returns its checksum address."""
    artifact = load_artifact(name)
    signer = _as_account(w3, account)
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    data = factory.constructor(*ctor_args).data_in_transaction
    receipt = await _send(w3, signer, {"data": data, **tx}, f"deployment of {name}", artifact.abi)
    address = receipt["contractAddress"]
    if not address:
        raise EvmDeployError(f"deployment of {name} mined without a contract address (receipt {receipt})")
    _log().info("contract deployed", contract=name, address=address, gas_used=receipt["gasUsed"])
    return address


def contract(w3: "AsyncWeb3", name: str, address: str) -> Any:
    return w3.eth.contract(address=address, abi=load_artifact(name).abi)


async def transact(w3: "AsyncWeb3", account: "LocalAccount | str", function: Any, **tx: Any) -> "TxReceipt":
    """Sends a state-changing (or view) contract call as a real transaction and waits for it."""
    signer = _as_account(w3, account)
    params = {"to": function.address, "data": function._encode_transaction_data(), **tx}
    return await _send(w3, signer, params, f"{function.fn_name} on {function.address}", function.contract_abi)
