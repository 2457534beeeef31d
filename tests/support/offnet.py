"""Helpers for tests that play an operator and a user on "a network that is not the localnet"
(tests/e2e/test_off_localnet.py): the CLI run as a user types it, encrypted keystores, funding from a
dev account or the faucet, a `relay keys dkg` over HTTP with one process per member, daemons as
child processes, and committee-signed prices pushed where the quotes read them."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import tomli_w
from eth_account import Account
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solders.pubkey import Pubkey
from web3 import AsyncHTTPProvider, AsyncWeb3

from adapters.evm.devnet import ANVIL_DEV_KEYS
from adapters.registry import encrypt_hot_key
from relay.envelope import Envelope
from relay.interfaces import DeliveryState, SignedDelivery
from relay.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


def relay(*args: str, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`relay ARGS` as its own process (`python -m relay.cli`), as an operator runs it."""
    env = {**os.environ, "TESSERA_LOG_FORMAT": "json", "TESSERA_LOG_LEVEL": "warning", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "relay.cli", *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=cwd)


def relay_ok(*args: str, timeout: float = 300) -> str:
    done = relay(*args, timeout=timeout)
    assert done.returncode == 0, f"relay {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def keystore(folder: Path, name: str, kind: str, key_text: str, password: str) -> Path:
    """An encrypted V3 keystore (what `relay keys import` writes)."""
    data, _ = encrypt_hot_key(kind, key_text, password)
    path = folder / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    path.chmod(0o600)
    return path


async def fund_evm(url: str, addresses: list[str], wei: int) -> None:
    """ETH from anvil's first dev account, as a faucet gives it (one transfer each)."""
    w3 = AsyncWeb3(AsyncHTTPProvider(url))
    try:
        dev = Account.from_key(ANVIL_DEV_KEYS[0])
        nonce = await w3.eth.get_transaction_count(dev.address)
        gas_price, chain_id = await w3.eth.gas_price, await w3.eth.chain_id
        sent = []
        for i, address in enumerate(addresses):
            tx = {"to": address, "value": wei, "gas": 21_000, "gasPrice": gas_price * 2, "nonce": nonce + i,
                  "chainId": chain_id}
            sent.append(await w3.eth.send_raw_transaction(dev.sign_transaction(tx).raw_transaction))
        for tx_hash in sent:
            await w3.eth.wait_for_transaction_receipt(tx_hash)
    finally:
        await w3.provider.disconnect()


async def airdrop(url: str, pubkeys: list[Pubkey], lamports: int) -> None:
    async with AsyncClient(url, commitment=Confirmed) as client:
        for pubkey in pubkeys:
            sig = (await client.request_airdrop(pubkey, lamports)).value
            await client.confirm_transaction(sig, commitment=Confirmed, sleep_seconds=0.05)


def write_dkg_config(path: Path, n: int, t: int, epoch: int, attester_ports: list[int], session: str) -> None:
    """`relay keys dkg`'s session file: every member's DKG endpoint and its attester's."""
    config = {
        "epoch": epoch, "n": n, "t": t, "session": session, "start_timeout": 60, "round_timeout": 20,
        "request_timeout": 2,
        "participants": [{"index": i, "endpoint": f"http://127.0.0.1:{free_port()}",
                          "attester_endpoint": f"http://127.0.0.1:{attester_ports[i - 1]}"} for i in range(1, n + 1)],
    }
    path.write_text(tomli_w.dumps(config))


def run_dkg(folder: Path, config: Path, n: int, password_file: Path, out: str = "p{index}") -> None:
    """`relay keys dkg --index i` for every member at once, each its own process; each writes the
    committee file and its encrypted share to folder/`out`."""
    env = {**os.environ, "TESSERA_LOG_LEVEL": "warning", "TESSERA_LOG_FORMAT": "json"}
    procs = {i: subprocess.Popen(
        [sys.executable, "-m", "relay.cli", "keys", "dkg", "--config", str(config), "--index", str(i),
         "--out", str(folder / out.format(index=i)), "--password-file", str(password_file)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(1, n + 1)}
    try:
        for i, proc in procs.items():
            stdout, stderr = proc.communicate(timeout=120)
            assert proc.returncode == 0, f"dkg participant {i} failed:\n{stderr[-3000:]}"
            assert f"QUAL {list(range(1, n + 1))}" in stdout, stdout
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


class Phases:
    """Wall-clock time of each phase of a long test, printed as it goes and at the end."""

    def __init__(self) -> None:
        self.start = self.last = time.monotonic()
        self.rows: list[tuple[str, float]] = []

    def done(self, name: str) -> None:
        now = time.monotonic()
        self.rows.append((name, now - self.last))
        print(f"[phase] {name}: {now - self.last:.1f}s (total {now - self.start:.1f}s)", flush=True)
        self.last = now

    def table(self) -> str:
        return "\n".join(f"  {name:<40} {seconds:6.1f}s" for name, seconds in self.rows) + \
            f"\n  {'total':<40} {time.monotonic() - self.start:6.1f}s"


async def delivery_outcome(adapter, envelope: Envelope, epoch: int, signature: bytes, timeout_s: float = 30.0) -> str:
    """'delivered', or the chain's refusal (EVM: refused at the pre-send check; Solana: the failed
    transaction's error), or 'still pending' after `timeout_s`."""
    try:
        tx = await adapter.submit(SignedDelivery(envelope, epoch, signature))
    except Exception as exc:  # noqa: BLE001 - the refusal is the outcome under test
        return f"refused: {exc}"
    for _ in range(int(timeout_s / 0.1)):
        status = await adapter.delivery_status(tx)
        if status.state is DeliveryState.CONFIRMED:
            return "delivered"
        if status.state is not DeliveryState.PENDING:
            return f"{status.state.value}: {status.detail}"
        await asyncio.sleep(0.1)
    return "still pending"
