"""`[worker]` config (defaults, path resolution, payouts per chain kind), the task-board factory's
refusals, and the `relay worker` CLI's errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tomli_w

from relay.cli import main
from relay.config import WorkerSection, load_config, parse_config
from relay.errors import ConfigError

SOL_KEY = "4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T"


def base(worker: dict | None = None) -> dict:
    data: dict = {
        "chains": {
            "evm": {"kind": "evm", "domain": 31337, "chain_id": 31337, "rpc_urls": ["http://127.0.0.1:1"]},
            "solana": {"kind": "solana", "domain": 900, "rpc_urls": ["http://127.0.0.1:2"]},
        },
    }
    if worker is not None:
        data["worker"] = worker
    return data


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "cfg" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(data))
    return path


def test_defaults_and_relative_paths_resolve_next_to_the_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, base({"evm_key": {"file": "keys/evm-worker.key", "allow_raw": True}})))
    worker = config.worker
    assert worker is not None
    assert worker.executors == ["echo", "sentiment"]
    assert worker.concurrency == 4 and worker.min_fee == 0 and worker.listen is None
    cfg_dir = tmp_path / "cfg"
    assert worker.path_for(worker.db, "evm") == cfg_dir / "worker-evm.db"
    assert worker.path_for(worker.key_file, "solana") == cfg_dir / "keys" / "worker-solana.key"
    assert worker.evm_key.file == cfg_dir / "keys" / "evm-worker.key"
    assert load_config(write(tmp_path, base())).worker is None


def test_payouts_are_checked_per_chain_kind() -> None:
    config = parse_config(base({"payout": {"evm": "0x" + "ab" * 20, "solana": SOL_KEY}}))
    payouts = config.worker.payout_by_domain(config)
    assert payouts[31337] == b"\x00" * 12 + b"\xab" * 20
    assert len(payouts[900]) == 32
    from solders.pubkey import Pubkey  # the test may use solders; relay/ does not

    assert payouts[900] == bytes(Pubkey.from_string(SOL_KEY))

    swapped = parse_config(base({"payout": {"evm": SOL_KEY}}))
    with pytest.raises(ConfigError, match="worker.payout.evm.*not a 0x-prefixed 20-byte EVM address"):
        swapped.worker.payout_by_domain(swapped)
    swapped = parse_config(base({"payout": {"solana": "0x" + "ab" * 20}}))
    with pytest.raises(ConfigError, match="worker.payout.solana"):
        swapped.worker.payout_by_domain(swapped)
    unknown = parse_config(base({"payout": {"base": "0x" + "ab" * 20}}))
    with pytest.raises(ConfigError, match="no chain 'base'"):
        unknown.worker.payout_by_domain(unknown)


@pytest.mark.parametrize("worker, field", [
    ({"payout": {"evm": "not an address"}}, "payout"),
    ({"concurrency": 0}, "concurrency"),
    ({"executors": []}, "executors"),
    ({"listen": "nowhere"}, "listen"),
    ({"min_fee": -1}, "min_fee"),
    ({"surprise": 1}, "surprise"),
    ({"output_url": "http://127.0.0.1:7400"}, "output_url is set but listen is not"),
    ({"output_url": "ftp://x", "listen": "127.0.0.1:7400"}, "output_url"),
])
def test_bad_worker_fields_name_the_field(worker: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        parse_config(base(worker))


def test_board_factory_needs_the_workers_own_account() -> None:
    from adapters.registry import driver_named

    config = parse_config(base({}))
    section = WorkerSection()
    with pytest.raises(ConfigError, match="evm_key"):
        driver_named(config, "evm").serving_board_v2(config, section)
    with pytest.raises(ConfigError, match="solana_keypair"):
        driver_named(config, "solana").serving_board_v2(config, section)
    with pytest.raises(ConfigError, match="no chain 'base'"):
        driver_named(config, "base")


def test_cli_errors_say_what_to_do(tmp_path: Path, capsys) -> None:
    assert main(["worker"]) == 1
    assert "--chain NAME" in capsys.readouterr().err
    path = write(tmp_path, base({"payout": {"evm": "0x" + "ab" * 20}}))
    assert main(["worker", "--config", str(path), "--chain", "evm"]) == 1
    assert "relay worker keygen --out" in capsys.readouterr().err  # no key yet
    assert main(["worker", "keygen", "--out", str(tmp_path / "cfg" / "keys" / "worker-evm.key")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["public_key"].startswith("0x") and len(printed["public_key"]) == 66
    assert main(["worker", "--config", str(path), "--chain", "evm"]) == 1
    # The key exists now; the EVM board needs the worker's own account.
    assert "evm_key" in capsys.readouterr().err
    assert main(["worker", "--config", str(path), "--chain", "nope"]) == 1
    assert "no chain 'nope'" in capsys.readouterr().err


def test_board_factory_picks_the_class_by_chain_kind(tmp_path: Path) -> None:
    from adapters.evm.taskboard import EvmTaskBoardV2
    from adapters.solana.taskboard import SolanaTaskBoardV2
    from adapters.registry import driver_named
    from relay.interfaces import RequesterBoardV2, ServingBoardV2

    evm_key = tmp_path / "evm.key"
    evm_key.write_text("0x" + "11" * 32)
    from solders.keypair import Keypair

    sol_key = tmp_path / "sol.json"
    sol_key.write_text(json.dumps(list(bytes(Keypair()))))
    data = base({"evm_key": {"file": str(evm_key)}, "solana_keypair": {"file": str(sol_key)}})
    data["chains"]["evm"]["contracts"] = {"Gateway": "0x" + "22" * 20, "TaskBoardV2": "0x" + "33" * 20}
    data["chains"]["evm"]["sender"] = {"file": str(evm_key)}
    data["chains"]["solana"]["program_id"] = SOL_KEY
    data["chains"]["solana"]["sender"] = {"file": str(sol_key)}
    config = parse_config(data)
    evm = driver_named(config, "evm").serving_board_v2(config, config.worker)
    sol = driver_named(config, "solana").serving_board_v2(config, config.worker)
    assert isinstance(evm, EvmTaskBoardV2) and isinstance(evm, ServingBoardV2)
    assert isinstance(sol, SolanaTaskBoardV2) and isinstance(sol, ServingBoardV2)
    assert evm.address == b"\x00" * 12 + b"\x33" * 20
    assert isinstance(driver_named(config, "evm").requester_board_v2(config), RequesterBoardV2)
    assert isinstance(driver_named(config, "solana").requester_board_v2(config), SolanaTaskBoardV2)
    # Task protocol v1 is retired: the drivers have no v1 board factories any more.
    for name in ("evm", "solana"):
        assert not hasattr(driver_named(config, name), "serving_board")
        assert not hasattr(driver_named(config, name), "requester_board")
