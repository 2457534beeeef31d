"""adapters/evm/devnet.py and adapters/evm/deploy.py without a running chain: errors, keys, revert decoding."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_utils import function_signature_to_4byte_selector

from adapters.evm import devnet as anvil, deploy as evm_deploy
from adapters.evm.rpc import decode_revert


def test_dev_keys_are_anvils_default_accounts() -> None:
    keys = anvil.dev_private_keys(count=3)
    assert [Account.from_key(k).address for k in keys] == [
        "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
        "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
    ]


def test_missing_binary_says_how_to_install(tmp_path: Path) -> None:
    node = anvil.AnvilProcess(port=anvil.free_port(), binary=tmp_path / "anvil")
    with pytest.raises(anvil.AnvilNotInstalledError, match=r"run `make setup` \(npm ci\) to install anvil"):
        node.start()
    assert not node.running


def test_port_in_use_is_reported_before_spawning() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        node = anvil.AnvilProcess(port=port)
        with pytest.raises(anvil.PortInUseError) as info:
            node.start()
    assert str(info.value) == (
        f"port {port} on 127.0.0.1 is in use: stop the process holding it or choose another port"
    )
    assert node.pid is None


def test_argv_carries_options(tmp_path: Path) -> None:
    node = anvil.AnvilProcess(port=9999, chain_id=777, block_time=0.5, state_dir=tmp_path)
    argv = node.argv()
    assert argv[argv.index("--port") + 1] == "9999"
    assert argv[argv.index("--chain-id") + 1] == "777"
    assert argv[argv.index("--block-time") + 1] == "0.5"
    assert argv[argv.index("--state") + 1] == str(tmp_path / "anvil-state.json")
    assert "--block-time" not in anvil.AnvilProcess().argv()


_ABI = [
    {"type": "error", "name": "UnknownEpoch", "inputs": [{"name": "epoch", "type": "uint32"}, {"name": "current", "type": "uint32"}]},
    {"type": "error", "name": "WrongDestination", "inputs": [{"name": "d", "type": "uint32"}, {"name": "r", "type": "bytes32"}]},
    {"type": "error", "name": "InvalidSignature", "inputs": []},
]


def _selector(signature: str) -> bytes:
    return function_signature_to_4byte_selector(signature)


def test_decode_revert_names_custom_errors() -> None:
    data = _selector("UnknownEpoch(uint32,uint32)") + abi_encode(["uint32", "uint32"], [7, 3])
    assert decode_revert(_ABI, "0x" + data.hex()) == "UnknownEpoch(7, 3)"
    data = _selector("WrongDestination(uint32,bytes32)") + abi_encode(["uint32", "bytes32"], [5, b"\x01" * 32])
    assert decode_revert(_ABI, data) == "WrongDestination(5, 0x" + "01" * 32 + ")"
    assert decode_revert(_ABI, _selector("InvalidSignature()")) == "InvalidSignature()"


def test_decode_revert_standard_and_unknown_forms() -> None:
    error_string = _selector("Error(string)") + abi_encode(["string"], ["nope"])
    assert decode_revert([], error_string) == "Error('nope')"
    panic = _selector("Panic(uint256)") + abi_encode(["uint256"], [0x11])
    assert decode_revert([], panic) == "Panic(0x11)"
    assert decode_revert(_ABI, "0xdeadbeef") == "unknown error 0xdeadbeef"
    assert "no revert data" in decode_revert(_ABI, None)


def test_unknown_artifact_is_a_clear_error() -> None:
    with pytest.raises(evm_deploy.ArtifactNotFoundError, match="NoSuchContract"):
        evm_deploy.load_artifact("NoSuchContract")


def test_missing_forge_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(evm_deploy, "FORGE_BIN", tmp_path / "forge")
    with pytest.raises(evm_deploy.ForgeNotInstalledError, match=r"run `make setup` \(npm ci\) to install forge"):
        evm_deploy.ensure_built(force=True)


def test_build_produces_artifacts_and_is_then_up_to_date() -> None:
    evm_deploy.ensure_built()
    assert not evm_deploy.needs_build()
    artifact = evm_deploy.load_artifact("CommitteeVerifier")
    names = {e["name"] for e in artifact.abi if e["type"] == "function"}
    assert {"verify", "verifyDigest", "verifyDigestWithKey", "rotate", "hashToG1"} <= names
    assert artifact.bytecode.startswith("0x") and len(artifact.bytecode) > 1000


def test_node_that_never_answers_is_killed(tmp_path: Path) -> None:
    # Stands in for a hung anvil: ignores SIGTERM and never serves JSON-RPC.
    fake = tmp_path / "anvil"
    fake.write_text(
        f"#!{sys.executable}\nimport os, signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"open({str(tmp_path / 'pid')!r}, 'w').write(str(os.getpid()))\nprint('booting', flush=True)\ntime.sleep(60)\n"
    )
    fake.chmod(0o755)
    node = anvil.AnvilProcess(port=anvil.free_port(), binary=fake, startup_timeout=1.5, stop_timeout=0.2)
    with pytest.raises(anvil.AnvilStartError, match=r"did not answer eth_chainId(.|\n)*booting"):
        node.start()
    assert not node.running and node.pid is None
    assert not Path(f"/proc/{(tmp_path / 'pid').read_text()}").exists()
