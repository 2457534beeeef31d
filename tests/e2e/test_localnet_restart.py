"""`relay localnet down`, then `up` again on the same state dir (issue 13 item 4): the new chains are
new instances (new genesis), so `up` resets the stores the previous run left; attesters and relayer
started again as an operator does deliver a new message. And the Solana side of chain identity: a
relayer whose store holds another Solana ledger's genesis refuses to start, naming the chain and
the reset command, and starts once that command ran."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from solders.keypair import Keypair

from attest.committee import Committee
from relay.config import load_config
from relay.sdk import TesseraClient
from relay.store import Store
from tests.support.waiting import wait_for
from relay.ports import free_port, free_port_block

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ATTESTERS = (1, 2, 3)  # t = 3 of n = 4


def _free_port() -> int:
    return free_port()  # below the ephemeral range: see relay/ports.py


def _env() -> dict[str, str]:
    return {**os.environ, "TESSERA_LOG_FORMAT": "json", "TESSERA_LOG_LEVEL": "warning"}


def relay(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "relay.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=_env())


def daemon(state_dir: Path, name: str, *args: str) -> subprocess.Popen:
    log = open(state_dir / f"test-{name}.log", "ab")
    return subprocess.Popen([sys.executable, "-m", "relay.cli", *args], stdout=log, stderr=subprocess.STDOUT,
                            env=_env())


async def healthy(url: str) -> bool:
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
            async with session.get(url) as resp:
                return resp.status == 200
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
        return False


class Daemons:
    """The attesters and the relayer of one localnet run, as processes of the test's own."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.config_path = state_dir / "config.toml"
        self.procs: dict[str, subprocess.Popen] = {}

    async def start(self, relayer: bool = True) -> None:
        config = load_config(self.config_path)
        committee = Committee.load(config.committee.file)
        for index in ATTESTERS:
            self.procs[f"attester-{index}"] = daemon(self.state_dir, f"attester-{index}", "attester", "--index",
                                                     str(index), "--config", str(self.config_path))
        for index in ATTESTERS:
            await self._ready(f"attester-{index}", f"{committee.member(index).endpoint}/health")
        if relayer:
            await self.start_relayer()

    async def start_relayer(self) -> None:
        listen = load_config(self.config_path).relayer.listen
        self.procs["relayer"] = daemon(self.state_dir, "relayer", "run", "--config", str(self.config_path))
        await self._ready("relayer", f"http://{listen}/health")

    async def _ready(self, name: str, url: str) -> None:
        proc = self.procs[name]

        async def up() -> bool:
            assert proc.poll() is None, f"{name} exited: {self.log(name)[-3000:]}"
            return await healthy(url)

        await wait_for(up, timeout=90, interval=0.2, what=f"{name} to answer {url}")

    def log(self, name: str) -> str:
        return (self.state_dir / f"test-{name}.log").read_text(errors="replace")

    def stop(self, name: str | None = None) -> None:
        for key in [name] if name else list(self.procs):
            proc = self.procs.pop(key)
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def deliver(config_path: Path, src: str, dst: str, payload: bytes) -> None:
    config = load_config(config_path)
    receiver = (bytes.fromhex(config.chains["evm"].contracts["RecordingReceiver"][2:]) if dst == "evm"
                else bytes(Keypair().pubkey()))
    async with TesseraClient.from_config(config_path) as client:
        sent = await client.send(src, dst, receiver, payload)
        delivery = await client.wait_delivered(sent, timeout=120)
        assert delivery.chain == dst


async def test_localnet_down_then_up_resets_the_stores_and_delivers(tmp_path: Path) -> None:
    state_dir = tmp_path / "net"
    up_args = ["localnet", "--state-dir", str(state_dir), "up", "--detach", "--no-feeds",
               "--evm-port", str(_free_port()), "--solana-rpc-port", str(_free_port()),
               "--solana-ws-port", str(_free_port()), "--slot-ms", "100", "--finality-slots", "4",
               "--evm-block-time", "0.25", "--attester-base-port", str(free_port_block(4)),
               "--relayer-port", str(_free_port()), "--feed-server-port", str(_free_port())]
    daemons = Daemons(state_dir)
    try:
        first = relay(*up_args)
        assert first.returncode == 0, first.stderr + first.stdout
        await daemons.start()
        await deliver(daemons.config_path, "evm", "solana", b"before the restart")
        daemons.stop("relayer")  # cleanly: its store holds the first chains' identities
        config = load_config(daemons.config_path)
        old_store = tmp_path / "relayer-first-chains.db"
        shutil.copy(config.relayer.db, old_store)
        daemons.stop()

        down = relay("localnet", "--state-dir", str(state_dir), "down")
        assert down.returncode == 0, down.stderr + down.stdout
        second = relay(*up_args)
        assert second.returncode == 0, second.stderr + second.stdout
        # `up` started new chains, and left no store of the previous ones for a daemon to trip on.
        assert not Path(config.relayer.db).exists()
        assert not list(state_dir.glob("attester-*.db*"))

        await daemons.start()
        await deliver(daemons.config_path, "solana", "evm", b"after the restart")
        await deliver(daemons.config_path, "evm", "solana", b"after the restart, the other way")

        # Solana chain identity: the store of the first run, EVM's identity dropped so that only
        # Solana's (another ledger's genesis) is left to compare, is refused at start.
        daemons.stop("relayer")
        store = await Store.open(old_store)
        try:
            await store.forget_chain(config.chains["evm"].domain)
            old_solana = await store.chain_identity(config.chains["solana"].domain)
        finally:
            await store.close()
        assert old_solana is not None and old_solana.startswith("solana:")
        for leftover in state_dir.glob(Path(config.relayer.db).name + "*"):
            leftover.unlink()
        shutil.copy(old_store, config.relayer.db)
        refused = relay("run", "--config", str(daemons.config_path), timeout=120)
        assert refused.returncode != 0
        output = refused.stderr + refused.stdout
        assert "chains.solana" in output and "relay reset-chain solana --relayer" in output, output[-3000:]
        assert old_solana.split(":", 2)[2] in output  # the genesis the store holds is named

        reset = relay("reset-chain", "solana", "--relayer", "--config", str(daemons.config_path))
        assert reset.returncode == 0, reset.stderr + reset.stdout
        await daemons.start_relayer()
        await deliver(daemons.config_path, "solana", "evm", b"after the reset")
    finally:
        if daemons.procs:
            daemons.stop()
        relay("localnet", "--state-dir", str(state_dir), "down")
