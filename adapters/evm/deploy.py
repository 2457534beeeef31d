"""Build the Solidity contracts with forge and deploy them from their artifacts with web3.py.

Artifacts are forge's own output (`contracts/evm/out/<File>.sol/<Contract>.json`); a build runs
when one is missing or a source is newer than the last build this module made.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import AsyncWeb3
from web3.exceptions import ContractLogicError

from adapters.evm.rpc import decode_revert, direct, error_entries, revert_data, to_hex
from adapters.evm.tx import TxManager
from relay.log import get_logger


def _log() -> Any:
    # Resolved per call: a logger bound at import time would ignore a configure_logging() run later.
    return get_logger("evm.deploy")


REPO_ROOT = Path(__file__).resolve().parents[2]
EVM_PROJECT = REPO_ROOT / "contracts/evm"
OUT_DIR = EVM_PROJECT / "out"
FORGE_BIN = REPO_ROOT / "node_modules/@foundry-rs/forge-linux-amd64/bin/forge"
_BUILD_STAMP = OUT_DIR / ".tessera-build-stamp"
_RECEIPT_TIMEOUT = 60.0
# While set, every mined receipt of this module's transactions is appended to it (adapters/evm/deployment.py
# reports gas per contract with it).
GAS_METER: ContextVar[list[Any] | None] = ContextVar("evm_deploy_gas_meter", default=None)


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


# --- transactions -------------------------------------------------------------------------


def _as_account(account: LocalAccount | str) -> LocalAccount:
    return Account.from_key(account) if isinstance(account, str) else account


async def _send(w3: AsyncWeb3, account: LocalAccount, to: str | None, data: str, what: str,
                abi: list[dict[str, Any]], *, gas: int | None, value: int) -> Any:
    """Sends through one client and waits for the receipt; a refusal (when estimating, or a mined
    revert replayed) raises TransactionReverted with the decoded reason."""
    txs = TxManager(direct(w3), account, name="deploy")
    try:
        tx = await txs.transaction(to, data, value, gas=gas)
    except ContractLogicError as exc:
        raise TransactionReverted(what, decode_revert(abi, revert_data(exc))) from exc
    mined = await txs.wait(await txs.send(tx), _RECEIPT_TIMEOUT)
    receipt = mined.receipt
    if (meter := GAS_METER.get()) is not None:  # `relay deploy` counts what each step spent
        meter.append(receipt)
    if receipt["status"] != 1:
        try:
            reverted, revert = await txs.replay(tx, int(receipt["blockNumber"]))
            detail = f"gas used {receipt['gasUsed']}"
        except Exception as exc:  # noqa: BLE001 - the reason is a courtesy, the revert is the fact
            reverted, revert, detail = False, None, str(exc)
        reason = (decode_revert(abi, revert) if reverted
                  else f"status 0 in transaction {to_hex(receipt['transactionHash'])} ({detail})")
        raise TransactionReverted(what, reason, receipt)
    return receipt


async def deploy(w3: AsyncWeb3, account: LocalAccount | str, name: str, *ctor_args: Any,
                 gas: int | None = None, value: int = 0) -> str:
    """Deploys contract `name` from its forge artifact; returns its checksum address."""
    artifact = load_artifact(name)
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    data = factory.constructor(*ctor_args).data_in_transaction
    receipt = await _send(w3, _as_account(account), None, data, f"deployment of {name}", artifact.abi,
                          gas=gas, value=value)
    address = receipt["contractAddress"]
    if not address:
        raise EvmDeployError(f"deployment of {name} mined without a contract address (receipt {receipt})")
    _log().info("contract deployed", contract=name, address=address, gas_used=receipt["gasUsed"])
    return address


def contract(w3: AsyncWeb3, name: str, address: str) -> Any:
    return w3.eth.contract(address=address, abi=load_artifact(name).abi)


def error_abi(*names: str) -> list[dict[str, Any]]:
    """The custom errors of the named contracts' ABIs (to decode reverts that bubble up through
    another contract, e.g. the verifier's errors out of Gateway.deliver)."""
    return [e for name in names for e in error_entries(load_artifact(name).abi)]


async def transact(w3: AsyncWeb3, account: LocalAccount | str, function: Any, *, gas: int | None = None,
                   value: int = 0) -> Any:
    """Sends a state-changing (or view) contract call as a real transaction and waits for it."""
    return await _send(w3, _as_account(account), function.address, function._encode_transaction_data(),
                       f"{function.fn_name} on {function.address}", function.contract_abi, gas=gas, value=value)
