"""The deployment file (relay/deployment.py) and `relay deploy`'s own logic (relay/cli/deploy.py), with
a fake chain deployment: what is recorded is what the next run is given, a run stopped midway leaves
what it recorded, the config includes the file without losing a comment, and every bad option is
refused with what to do. The real chains are in tests/e2e/test_deploy.py."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import pytest

from attest.dealer import deal
from relay.cli import build_parser, main
from relay.cli import deploy as cli_deploy
from relay.config import load_config
from relay.deployment import (DeploymentError, DeployReport, DeployRequest, DeployStep, include_in_config,
                              merge_deployment, read_deployment, update_deployment)
from relay.errors import ConfigError

GATEWAY = "0x" + "11" * 20
VERIFIER = "0x" + "22" * 20
OTHER = "0x" + "33" * 20
PROGRAM = "Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo"

CONFIG = """# my network
# second comment line

[chains.evm]
kind = "evm"
domain = 31337
chain_id = 31337
rpc_urls = ["http://127.0.0.1:1"]
contracts = {{ Gateway = "{placeholder}" }}

[chains.sol]
kind = "solana"
domain = 13375
rpc_urls = ["http://127.0.0.1:2"]

[committee]
file = "committee.toml"
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    committee, _ = deal(4, 3, 1)
    committee.save(tmp_path / "committee.toml")
    path = tmp_path / "tessera.toml"
    path.write_text(CONFIG.format(placeholder=OTHER))
    return path


# --- the file ---------------------------------------------------------------------------------


def test_a_missing_file_is_an_empty_deployment(tmp_path: Path) -> None:
    assert read_deployment(tmp_path / "none.toml") == {"chains": {}, "deployed": {}}


def test_bad_files_are_refused_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "deployment.toml"
    path.write_text("[chains.evm\n")
    with pytest.raises(ConfigError, match="is not valid TOML.*run `relay deploy` again"):
        read_deployment(path)
    path.write_text('[chains.evm]\nrpc_urls = ["http://x"]\n')
    with pytest.raises(ConfigError, match=r"chains.evm holds \['rpc_urls'\]; a deployment file sets only contracts, "
                       "program_id, accounts"):
        read_deployment(path)
    path.write_text('signer = "x"\n')
    with pytest.raises(ConfigError, match="unexpected top-level keys"):
        read_deployment(path)


def test_update_keeps_the_other_chains_and_drops_what_is_not_an_address(tmp_path: Path) -> None:
    path = tmp_path / "deployment.toml"
    update_deployment(path, "evm", {"contracts": {"Gateway": GATEWAY}}, {"deployer": "0xabc", "owner": None})
    update_deployment(path, "sol", {"program_id": PROGRAM, "accounts": {}, "signer": "nope"})
    data = read_deployment(path)
    assert data["chains"] == {"evm": {"contracts": {"Gateway": GATEWAY}}, "sol": {"program_id": PROGRAM}}
    assert data["deployed"] == {"evm": {"deployer": "0xabc"}}
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # written atomically, nothing left over


def test_merge_puts_the_file_over_the_config(tmp_path: Path) -> None:
    config = tmp_path / "tessera.toml"
    update_deployment(tmp_path / "deployment.toml", "evm", {"contracts": {"Gateway": GATEWAY, "CommitteeVerifier": VERIFIER}})
    data = {"deployment": "deployment.toml",
            "chains": {"evm": {"kind": "evm", "contracts": {"Gateway": OTHER, "Probe": OTHER}}, "sol": {"kind": "solana"}}}
    merged = merge_deployment(data, config)
    assert "deployment" not in merged
    # The file's addresses win; what only the config names stays.
    assert merged["chains"]["evm"]["contracts"] == {"Gateway": GATEWAY, "Probe": OTHER, "CommitteeVerifier": VERIFIER}
    assert merged["chains"]["sol"] == {"kind": "solana"}
    assert data["chains"]["evm"]["contracts"]["Gateway"] == OTHER  # the input is not modified


def test_merge_refuses_a_chain_the_config_lacks(tmp_path: Path) -> None:
    update_deployment(tmp_path / "deployment.toml", "gone", {"program_id": PROGRAM})
    with pytest.raises(ConfigError, match="has addresses for chain 'gone', which .* does not configure"):
        merge_deployment({"deployment": "deployment.toml", "chains": {"evm": {}}}, tmp_path / "c.toml")
    with pytest.raises(ConfigError, match="`deployment` must be the path of a deployment file"):
        merge_deployment({"deployment": 3, "chains": {}}, tmp_path / "c.toml")


def test_load_config_reads_the_included_file(config_file: Path) -> None:
    assert include_in_config(config_file, config_file.parent / "deployment.toml") is True
    # Named but not written yet: nothing merged, the config loads.
    assert load_config(config_file).chains["evm"].contracts == {"Gateway": OTHER}
    update_deployment(config_file.parent / "deployment.toml", "evm", {"contracts": {"Gateway": GATEWAY}})
    update_deployment(config_file.parent / "deployment.toml", "sol", {"program_id": PROGRAM})
    config = load_config(config_file)
    assert config.chains["evm"].contracts == {"Gateway": GATEWAY}
    assert config.chains["sol"].program_id == PROGRAM
    # A malformed address in the file is refused as if the config held it, naming the field.
    update_deployment(config_file.parent / "deployment.toml", "evm", {"contracts": {"Gateway": "0x12"}})
    with pytest.raises(ConfigError, match="chains.evm.evm.contracts.*'0x12' is not a 0x-prefixed 20-byte address"):
        load_config(config_file)


def test_include_keeps_the_comments_and_is_added_once(config_file: Path) -> None:
    target = config_file.parent / "deployment.toml"
    assert include_in_config(config_file, target) is True
    text = config_file.read_text()
    assert text.startswith("# my network\n# second comment line\n\ndeployment = \"deployment.toml\"")
    assert text.endswith(CONFIG.format(placeholder=OTHER).split("\n\n", 1)[1])
    assert include_in_config(config_file, target) is False
    assert config_file.read_text() == text
    with pytest.raises(DeploymentError, match="includes deployment file .*deployment.toml, not .*other.toml"):
        include_in_config(config_file, config_file.parent / "other.toml")


# --- `relay deploy` with a fake chain deployment ----------------------------------------------------


class FakeChains:
    """Stands in for adapters.registry.deploy_chain: "deploys" what `recorded` lacks, recording each
    piece as the real ones do; `stop_after` makes a run die after that many pieces."""

    PIECES = ("CommitteeVerifier", "Gateway", "TaskBoardV2", "FeedStore")

    def __init__(self) -> None:
        self.requests: list[DeployRequest] = []
        self.stop_after: int | None = None

    async def __call__(self, name: str, chain: Any, request: DeployRequest) -> DeployReport:
        self.requests.append(request)
        contracts = dict(request.recorded.get("contracts") or {})
        report = DeployReport(chain=name, unit="gas", token="wei", meta={"kind": "evm", "deployer": "0xdeployer"})
        for i, piece in enumerate(self.PIECES):
            if piece in contracts:
                report.steps.append(DeployStep(piece, "found", contracts[piece]))
                continue
            if self.stop_after is not None and len(report.sent) >= self.stop_after:
                raise RuntimeError("killed")
            contracts[piece] = "0x" + f"{i + 1:02x}" * 20
            report.steps.append(DeployStep(piece, "deployed", contracts[piece], 1000 * (i + 1), 10**15))
            report.fields = {"contracts": dict(contracts)}
            request.record(report.fields)
        report.fields = {"contracts": contracts}
        return report


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeChains:
    chains = FakeChains()
    monkeypatch.setattr(cli_deploy, "deploy_chain", chains)
    return chains


def _deploy(config_file: Path, *extra: str) -> int:
    key = config_file.parent / "deployer.key"
    key.write_text("0x" + "01" * 32)
    return main(["deploy", "--config", str(config_file), "--chain", "evm", "--key-file", str(key), "--allow-raw",
                 *extra])


def test_a_second_run_is_given_what_the_first_recorded(config_file: Path, fake: FakeChains,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert _deploy(config_file) == 0
    first = capsys.readouterr().out
    assert "total: 3 steps, 8,000 gas, 0.003000 ETH" in first  # the Gateway placeholder was "found"
    # The config's placeholder Gateway is what the first run was told; the file now wins over it.
    assert fake.requests[0].recorded == {"contracts": {"Gateway": OTHER}}
    assert fake.requests[0].committee.t == 3 and fake.requests[0].keys_dir == config_file.parent / "keys"
    deployment = read_deployment(config_file.parent / "deployment.toml")
    assert deployment["deployed"]["evm"]["deployer"] == "0xdeployer"
    assert _deploy(config_file) == 0
    assert "nothing to deploy: everything is in place" in capsys.readouterr().out
    assert fake.requests[1].recorded == {"contracts": deployment["chains"]["evm"]["contracts"]}
    assert read_deployment(config_file.parent / "deployment.toml")["chains"] == deployment["chains"]


def test_a_killed_run_leaves_what_it_recorded_and_the_next_one_resumes(config_file: Path, fake: FakeChains,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    # The config names no placeholder here: start from nothing.
    config_file.write_text(config_file.read_text().replace(f'contracts = {{ Gateway = "{OTHER}" }}\n', ""))
    fake.stop_after = 2
    assert _deploy(config_file) == 1
    err = capsys.readouterr().err
    assert "deploying on chain evm failed: RuntimeError: killed" in err and "run the same command again to resume" in err
    recorded = read_deployment(config_file.parent / "deployment.toml")["chains"]["evm"]["contracts"]
    assert list(recorded) == ["CommitteeVerifier", "Gateway"]
    fake.stop_after = None
    assert _deploy(config_file, "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert [s["action"] for s in report["steps"]] == ["found", "found", "deployed", "deployed"]
    assert report["fields"]["contracts"]["Gateway"] == recorded["Gateway"]


def _args(**options: Any) -> argparse.Namespace:
    defaults = {"keystore": None, "key_file": None, "key_env": None, "password_file": None, "password_env": None,
                "allow_raw": False}
    return argparse.Namespace(**{**defaults, **options})


def test_deployer_key_options_follow_the_hot_key_rules(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--key-file k is an unencrypted key: encrypt it with `relay keys import"):
        cli_deploy.deployer_ref(_args(key_file=Path("k")))
    with pytest.raises(ConfigError, match="--key-env DEPLOYER_KEY is an unencrypted key"):
        cli_deploy.deployer_ref(_args(key_env="DEPLOYER_KEY"))
    with pytest.raises(ConfigError, match="--keystore needs --password-file or --password-env"):
        cli_deploy.deployer_ref(_args(keystore=Path("ks.json")))
    with pytest.raises(ConfigError, match="--allow-raw is for an unencrypted"):
        cli_deploy.deployer_ref(_args(keystore=Path("ks.json"), password_env="P", allow_raw=True))
    with pytest.raises(ConfigError, match="unlock a --keystore"):
        cli_deploy.deployer_ref(_args(key_file=Path("k"), password_file=Path("p"), allow_raw=True))
    ref = cli_deploy.deployer_ref(_args(keystore=Path("ks.json"), password_file=Path("p")))
    assert ref.keystore == Path("ks.json") and not ref.is_raw
    assert cli_deploy.deployer_ref(_args(key_env="K", allow_raw=True)).allow_raw


def test_bad_inputs_are_refused_before_any_chain_is_reached(config_file: Path, fake: FakeChains,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert _deploy(config_file, "--out", str(config_file.parent / "x.toml")) == 0  # the config now includes x.toml
    capsys.readouterr()
    assert _deploy(config_file, "--out", str(config_file.parent / "y.toml")) == 1
    assert "includes deployment file" in capsys.readouterr().err
    config_file.write_text(config_file.read_text().replace('file = "committee.toml"', 'file = "gone.toml"'))
    assert _deploy(config_file) == 1
    assert "committee.file: " in (err := capsys.readouterr().err) and "gone.toml does not exist: run `relay keys dkg`" in err
    config_file.write_text(config_file.read_text().split("[committee]")[0])
    assert _deploy(config_file) == 1
    assert "has no [committee] table" in capsys.readouterr().err
    assert len(fake.requests) == 1


def test_the_command_is_registered() -> None:
    args = build_parser().parse_args(["deploy", "--chain", "evm", "--key-env", "K", "--allow-raw"])
    assert args.handler is cli_deploy._run_deploy and args.owner is None and args.upgrade_authority is None
    assert os.path.basename(cli_deploy.__file__) == "deploy.py"
