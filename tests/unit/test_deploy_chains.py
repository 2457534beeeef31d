"""The chain side of `relay deploy` that needs no node: the loader instructions and account layouts it
reads and sends, and the refusals made before anything is sent (an option for the other kind, a bad
address, an endpoint that does not answer). The deployments themselves: tests/e2e/test_deploy.py."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

import pytest
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from adapters.evm.deployment import deploy_tessera as deploy_evm
from adapters.solana.deploy import PROGRAMDATA_METADATA_LEN, programdata_authority, set_authority_ix
from adapters.solana.deployment import deploy_tessera as deploy_solana
from adapters.solana.deployment import load_or_create_keypair
from adapters.solana.program import BPF_LOADER_UPGRADEABLE_ID, SolanaProgramError
from attest.dealer import deal
from relay.config import EvmChain, KeyRef, SolanaChain
from relay.deployment import DeploymentError, DeployRequest
from relay.ports import free_port

EVM_KEY = "0x" + "01" * 32


def _request(tmp_path: Path, key: KeyRef, **options: object) -> DeployRequest:
    committee, _ = deal(4, 3, 1)
    defaults = dict(deployer=key, committee=committee, feeds={}, owner=None, upgrade_authority=None, recorded={},
                    keys_dir=tmp_path / "keys", record=lambda fields: None)
    return DeployRequest(**{**defaults, **options})  # type: ignore[arg-type]


def _evm(url: str) -> EvmChain:
    return EvmChain(kind="evm", domain=31337, chain_id=31337, rpc_urls=[url])


def _solana(url: str) -> SolanaChain:
    return SolanaChain(kind="solana", domain=13375, rpc_urls=[url])


def _keys(tmp_path: Path) -> tuple[KeyRef, KeyRef]:
    evm = tmp_path / "evm.key"
    evm.write_text(EVM_KEY)
    sol = tmp_path / "sol.json"
    load_or_create_keypair(sol)
    return KeyRef(file=evm, allow_raw=True), KeyRef(file=sol, allow_raw=True)


def test_set_authority_is_the_loaders_instruction_4() -> None:
    programdata, current, new = Pubkey.new_unique(), Pubkey.new_unique(), Pubkey.new_unique()
    ix = set_authority_ix(programdata, current, new)
    assert ix.program_id == BPF_LOADER_UPGRADEABLE_ID and bytes(ix.data) == struct.pack("<I", 4)
    assert [(m.pubkey, m.is_signer, m.is_writable) for m in ix.accounts] == [
        (programdata, False, True), (current, True, False), (new, False, False)]


def test_programdata_authority_reads_the_option() -> None:
    authority = Pubkey.new_unique()
    header = struct.pack("<IQ", 3, 1234)
    assert programdata_authority(header + b"\x01" + bytes(authority) + b"\x7fELF") == authority
    assert programdata_authority(header + b"\x00" + bytes(32)) is None  # an immutable program
    assert PROGRAMDATA_METADATA_LEN == len(header) + 33
    with pytest.raises(SolanaProgramError, match="not an upgradeable loader ProgramData account"):
        programdata_authority(struct.pack("<IQ", 2, 0) + bytes(33))  # tag 2 is a Program account


def test_keypair_files_are_created_once_and_private(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "chain-program.json"
    first = load_or_create_keypair(path)
    assert load_or_create_keypair(path) == first
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert isinstance(first, Keypair)


def test_an_option_of_the_other_kind_is_refused(tmp_path: Path) -> None:
    evm_key, sol_key = _keys(tmp_path)
    with pytest.raises(DeploymentError, match="--upgrade-authority is for a Solana program"):
        asyncio.run(deploy_evm("evm", _evm("http://127.0.0.1:1"), _request(tmp_path, evm_key, upgrade_authority="x")))
    with pytest.raises(DeploymentError, match="--owner 0x1 is an EVM address; give the base58 public key .* admin"):
        asyncio.run(deploy_solana("sol", _solana("http://127.0.0.1:1"), _request(tmp_path, sol_key, owner="0x1")))


def test_bad_addresses_are_refused(tmp_path: Path) -> None:
    evm_key, sol_key = _keys(tmp_path)
    with pytest.raises(DeploymentError, match="--owner 'not-an-address' is not an EVM address"):
        asyncio.run(deploy_evm("evm", _evm("http://127.0.0.1:1"), _request(tmp_path, evm_key, owner="not-an-address")))
    with pytest.raises(DeploymentError, match="--upgrade-authority '0xabc' is neither a base58 Solana public key nor a keypair file"):
        asyncio.run(deploy_solana("sol", _solana("http://127.0.0.1:1"),
                                  _request(tmp_path, sol_key, upgrade_authority="0xabc")))


def test_an_endpoint_that_does_not_answer_is_named(tmp_path: Path) -> None:
    evm_key, sol_key = _keys(tmp_path)
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(DeploymentError, match=rf"chains.evm.rpc_urls\[0\] \({dead}\) does not answer: .*check the URL"):
        asyncio.run(deploy_evm("evm", _evm(dead), _request(tmp_path, evm_key)))
    with pytest.raises(DeploymentError, match=rf"chains.sol.rpc_urls\[0\] \({dead}\) does not answer: .*check the URL"):
        asyncio.run(deploy_solana("sol", _solana(dead), _request(tmp_path, sol_key)))
    assert not (tmp_path / "keys").exists()  # nothing created before the endpoint answered


def test_a_left_over_buffer_is_reused_only_when_it_is_this_programs() -> None:
    from adapters.solana.deploy import _BUFFER_METADATA_LEN, DeploymentError as LoaderDeploymentError
    from adapters.solana.deploy import _deploy_steps, _missing_writes, _write_chunk_size

    payer, buffer, program = Keypair(), Keypair(), Keypair()
    so = bytes(range(256)) * 20  # 5,120 bytes: 6 chunks
    chunk = _write_chunk_size(payer, buffer.pubkey())
    _, *writes, _ = _deploy_steps(payer, so, program, buffer, lambda size: 1, 2 * len(so))
    header = struct.pack("<I", 1) + b"\x01" + bytes(payer.pubkey())
    half = bytearray(len(so))
    half[:chunk] = so[:chunk]  # the first chunk landed before the kill
    left = _missing_writes(header + bytes(half), BPF_LOADER_UPGRADEABLE_ID, payer, buffer.pubkey(), so, writes)
    assert [s.name for s in left] == [s.name for s in writes[1:]]
    assert _missing_writes(header + so, BPF_LOADER_UPGRADEABLE_ID, payer, buffer.pubkey(), so, writes) == []
    assert len(header) == _BUFFER_METADATA_LEN
    someone_else = struct.pack("<I", 1) + b"\x01" + bytes(Keypair().pubkey())
    for data, owner in ((someone_else + so, BPF_LOADER_UPGRADEABLE_ID), (header + so[:-1], BPF_LOADER_UPGRADEABLE_ID),
                        (header + so, Pubkey.new_unique())):
        with pytest.raises(LoaderDeploymentError, match="move the buffer keypair file away to start with a new buffer"):
            _missing_writes(data, owner, payer, buffer.pubkey(), so, writes)
