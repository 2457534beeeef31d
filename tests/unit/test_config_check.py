"""`relay config check` offline: every link between sections, each problem naming its field; exit 1
with all of them listed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tomli_w
from solders.keypair import Keypair

from relay.cli import main
from relay.cli.config import load_committee, next_committee_problems, offline_problems
from relay.config import load_config

GATEWAY = "0x" + "22" * 20
PROGRAM = "Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo"


@pytest.fixture
def folder(tmp_path: Path, dealt) -> Path:
    dealt.committee.save(tmp_path / "committee.toml")
    (tmp_path / "evm.key").write_text("0x" + "11" * 32)
    (tmp_path / "sol.json").write_text(json.dumps(list(bytes(Keypair()))))
    return tmp_path


def good() -> dict:
    return {
        "chains": {
            "evm": {"kind": "evm", "domain": 31337, "chain_id": 31337, "rpc_urls": ["http://127.0.0.1:1"],
                    "contracts": {"Gateway": GATEWAY}, "signer": {"file": "evm.key", "allow_raw": True}},
            "sol": {"kind": "solana", "domain": 5, "rpc_urls": ["http://127.0.0.1:2"], "program_id": PROGRAM,
                    "signer": {"file": "sol.json", "allow_raw": True}},
        },
        "committee": {"file": "committee.toml"},
        "feeds": {"ETH/USD": {"decimals": 8, "sources": [{"kind": "file", "name": "r", "path": "r.jsonl"}]}},
        "feed_server": {"stale_after": {"ETH/USD": 10}},
        "feed_push": {"targets": ["evm", "sol"], "feeds": ["ETH/USD"]},
        "worker": {"executors": ["echo"], "payout": {"evm": "0x" + "aa" * 20, "sol": PROGRAM}},
    }


def check(folder: Path, data: dict) -> tuple[int, list[str]]:
    path = folder / "config.toml"
    path.write_text(tomli_w.dumps(data))
    config = load_config(path, check_keys=False)
    committee, problems = load_committee(config)
    return (main(["config", "check", "--config", str(path)]),
            problems + next_committee_problems(config, committee) + offline_problems(config))


def test_a_good_config_passes(folder: Path, capsys) -> None:
    code, problems = check(folder, good())
    assert (code, problems) == (0, [])
    assert "OK, 2 chains" in capsys.readouterr().out


def test_every_broken_link_is_listed_with_its_field(folder: Path, capsys) -> None:
    data = good()
    del data["chains"]["evm"]["contracts"]["Gateway"]
    del data["chains"]["sol"]["program_id"]
    data["feed_push"] = {"targets": ["evm", "base"], "feeds": ["BTC/USD"]}
    data["feed_server"]["stale_after"] = {"SOL/USD": 5}
    data["worker"] = {"executors": ["echo", "nope"], "payout": {"arbitrum": "0x" + "aa" * 20, "sol": "0x" + "aa" * 20}}
    data["executors"] = {"ghost": {"model": "x"}}
    data["chains"]["evm"]["signer"] = {"file": "missing.key"}  # missing, and raw without the opt-in
    data["chains"]["evm"]["sender"] = {"keystore": "ks.json", "password_env": "TESSERA_TEST_UNSET_PASSWORD"}
    code, problems = check(folder, data)
    expected = [
        "chains.evm.contracts.Gateway: missing",
        "chains.sol.program_id: missing",
        "feed_push.targets: 'base' is not a chain under [chains] (known: evm, sol)",
        "feed_push.feeds: 'BTC/USD' is not a feed under [feeds] (known: ETH/USD)",
        "feed_server.stale_after: 'SOL/USD' is not a feed under [feeds]",
        "worker.payout.arbitrum: no chain 'arbitrum' under [chains]",
        "worker.payout.sol: '0xaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' is not a base58 Solana public key (chain 'sol' is solana)",
        "worker.executors: no executor 'nope' is installed (known: ",
        "executors.ghost: options for an executor that is not installed",
        f"chains.evm.signer: key file {folder / 'missing.key'} does not exist",
        f"chains.evm.sender: keystore {folder / 'ks.json'} does not exist",
        "chains.evm.sender: environment variable TESSERA_TEST_UNSET_PASSWORD (the keystore's password) is not set",
        "chains.evm.signer: file",  # ... holds an unencrypted key; encrypt it with `relay keys import ...`
    ]
    for text in expected:
        assert any(p.startswith(text) for p in problems), (text, problems)
    assert len(problems) == len(expected)
    assert code == 1
    out = capsys.readouterr().out
    assert f"{len(expected)} problems" in out and all(f"  - {p}" in out for p in problems)


def test_committee_file_missing_or_invalid(folder: Path) -> None:
    data = good()
    data["committee"] = {"file": "nowhere.toml"}
    assert check(folder, data)[1] == [f"committee.file: {folder / 'nowhere.toml'} does not exist (`relay keys dkg` writes it)"]
    (folder / "bad.toml").write_text("epoch = 1\n")
    data["committee"] = {"file": "bad.toml"}
    code, problems = check(folder, data)
    assert code == 1 and len(problems) == 1 and problems[0].startswith(f"committee.file: {folder / 'bad.toml'} is not a valid committee")
    del data["committee"]
    assert check(folder, data)[1][0].startswith("committee: no [committee] table")


def test_what_loading_refuses_is_printed_as_the_answer(folder: Path, capsys) -> None:
    data = good()
    data["chains"]["evm"]["domain"] = 5  # an EVM domain other than its chain id
    path = folder / "config.toml"
    path.write_text(tomli_w.dumps(data))
    assert main(["config", "check", "--config", str(path)]) == 1
    assert "chains.evm.domain 5 differs from chain_id 31337" in capsys.readouterr().out


def test_code_comparison_masks_only_the_immutables(evm_contracts) -> None:
    from adapters.evm.checks import _deployed_artifact, code_problem

    artifact = _deployed_artifact("Gateway")
    assert artifact is not None
    code, spans = artifact
    assert spans, "the Gateway has immutables (localDomain, verifier)"
    deployed = bytearray(code)
    for start, length in spans:  # other constructor arguments: other immutables
        deployed[start:start + length] = bytes([7]) * length
    assert code_problem("Gateway", GATEWAY, bytes(deployed)) is None
    outside = next(i for i in range(len(code)) if not any(s <= i < s + n for s, n in spans))
    deployed[outside] ^= 1
    assert "is not Gateway as contracts/evm builds it" in code_problem("Gateway", GATEWAY, bytes(deployed))
    assert "no contract at this address" in code_problem("Gateway", GATEWAY, b"")
    assert "is not Gateway" in code_problem("Gateway", GATEWAY, _deployed_artifact("Probe")[0])
    assert code_problem("SomethingElse", GATEWAY, b"\x60") is None  # no artifact: code exists is all it says


# --- [committee] next: the committee this member approves for the next epoch ---------------------------


def test_an_approved_next_committee_with_its_grace_passes(folder: Path, dealt) -> None:
    import attest

    nxt, _ = attest.deal(dealt.committee.n, dealt.committee.t, epoch=dealt.committee.epoch + 1)
    nxt.save(folder / "committee-next.toml")
    data = good()
    data["committee"].update(next="committee-next.toml", next_grace_s=60)
    assert check(folder, data) == (0, [])


def test_every_wrong_next_committee_is_named(folder: Path, dealt, capsys) -> None:
    import attest

    data = good()
    data["committee"].update(next="nowhere.toml", next_grace_s=60)
    code, problems = check(folder, data)
    assert code == 1 and problems == [f"committee.next: {folder / 'nowhere.toml'} does not exist: point it at the next "
                                      "committee's public file (`relay keys dkg` for the next epoch writes it), or remove next"]
    (folder / "broken.toml").write_text("epoch = 8\n")
    data["committee"]["next"] = "broken.toml"
    (problem,) = check(folder, data)[1]
    assert problem.startswith(f"committee.next: {folder / 'broken.toml'} is not a valid committee")

    # An attacker who edits `next` to a committee of the wrong epoch, a minority threshold, or the
    # current key (a rotation that rotates nothing), and drops the grace to allow any (30 days):
    # each is named.
    stale, _ = attest.deal(5, 2, epoch=dealt.committee.epoch)
    stale.save(folder / "stale.toml")
    data["committee"] = {"file": "committee.toml", "next": "stale.toml"}
    code, problems = check(folder, data)
    assert code == 1
    assert problems[0].startswith("committee.next_grace_s: missing while committee.next is set: without it this "
                                  "attester signs a rotation with any grace up to 30 days")
    assert problems[1] == (f"committee.next: {folder / 'stale.toml'} has threshold 2 of 5: a minority of the members "
                           "could sign; use a threshold above n/2 (at least 3)")
    assert problems[2] == (f"committee.next: {folder / 'stale.toml'} is the committee of epoch 7, but the current "
                           "committee (committee.file) is epoch 7: the next one must be epoch 8")
    assert len(problems) == 3
    data["committee"] = {"file": "committee.toml", "next": "committee.toml", "next_grace_s": 10}
    problems = check(folder, data)[1]
    assert any(p.startswith("committee.next: ") and "has the current committee's group key" in p for p in problems)
    data["committee"] = {"file": "committee.toml", "next_grace_s": 10}
    assert check(folder, data)[1] == ["committee.next_grace_s: set to 10 without committee.next: set next to the "
                                      "next committee's public file (`relay keys dkg` writes it), or remove next_grace_s"]
    capsys.readouterr()
    assert main(["config", "check", "--config", str(folder / "config.toml")]) == 1
    assert "  - committee.next_grace_s: set to 10 without committee.next" in capsys.readouterr().out


# --- --online on Solana: the deployed program's code against contracts/solana/tessera.so -------------


def _programdata(code: bytes, extra: int = 0) -> bytes:
    """A ProgramData account's bytes: tag 3, slot, Some(authority), the ELF, `extra` zero bytes of room."""
    return (3).to_bytes(4, "little") + (9).to_bytes(8, "little") + b"\x01" + bytes(Keypair().pubkey()) + code + bytes(extra)


def test_solana_code_check_compares_with_the_so_file_at_check_time(tmp_path: Path) -> None:
    from adapters.solana.checks import code_problem

    so = tmp_path / "tessera.so"
    so.write_bytes(b"\x7fELF" + bytes(range(256)) * 4)
    elf = so.read_bytes()
    assert code_problem("chains.sol.program_id (P)", _programdata(elf, extra=500), so) is None  # room to grow: zeros
    # Attack: another program at the configured id (one byte changed, or extra code after the ELF).
    tampered = bytearray(elf)
    tampered[100] ^= 1
    problem = code_problem("chains.sol.program_id (P)", _programdata(bytes(tampered)), so)
    assert problem == (f"chains.sol.program_id (P): the deployed code is not {so} ({len(elf)} bytes; the deployed "
                       "program differs from byte 100): upgrade the program with this build (`relay deploy` against "
                       "a program you own, or `solana program deploy` with its upgrade authority), or check out the "
                       "version that is deployed")
    assert "differs from byte" in code_problem("w", _programdata(elf + b"\x01" + bytes(10)), so)
    assert "differs from byte 200" in code_problem("w", _programdata(elf[:200]), so)  # a shorter program
    # The file is read when the check runs: a rebuilt tessera.so is what the deployment is compared with.
    so.write_bytes(bytes(tampered))
    assert code_problem("w", _programdata(bytes(tampered)), so) is None
    assert "the deployed code is not" in code_problem("w", _programdata(elf), so)
    assert "is not one (tag" in code_problem("w", b"\x02\x00\x00\x00" + bytes(60), so)
    assert "is missing: build it" in code_problem("w", _programdata(elf), tmp_path / "gone.so")


async def test_solana_code_check_reads_the_programdata_account_the_program_names(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from adapters.solana.checks import _code_problem
    from adapters.solana.program import BPF_LOADER_UPGRADEABLE_ID

    so = tmp_path / "tessera.so"
    so.write_bytes(b"\x7fELF" + bytes(300))
    programdata = Keypair().pubkey()
    accounts = {programdata: SimpleNamespace(owner=BPF_LOADER_UPGRADEABLE_ID, data=_programdata(so.read_bytes()))}

    class Client:
        async def get_account_info(self, address):
            return SimpleNamespace(value=accounts.get(address))

    program = (2).to_bytes(4, "little") + bytes(programdata)
    assert await _code_problem(Client(), "w", program, so) is None
    so.write_bytes(b"\x7fELF" + b"\x01" * 300)
    assert "the deployed code is not" in await _code_problem(Client(), "w", program, so)
    assert "ProgramData account" in await _code_problem(Client(), "w", (2).to_bytes(4, "little") + bytes(Keypair().pubkey()), so)
    assert "not an upgradeable loader Program account" in await _code_problem(Client(), "w", bytes(36), so)
