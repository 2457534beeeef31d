"""Fees that pay relayers, on one messaging stack (real anvil, the Solana localnet, four attester
processes and a relayer process with a payment policy): committee-signed ETH/USD and SOL/USD prices in
the FeedStore, the owner posts the Solana destination's cost, the SDK quotes and sends paid messages
both ways, the relayer delivers the paid ones and refuses one paid below its policy minimum (dead
letter `refused_unpaid`, in `relay status` and the metric), the beneficiary (the relayer's account)
claims and its balance rises by the fees less the claim's gas, and a paused gateway refuses a send
(EVM Gateway and the Solana program).
The owner's settings go through `relay fees set-beneficiary` / `set-destination` and `relay admin`."""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from eth_account import Account
from solders.keypair import Keypair
from web3 import AsyncHTTPProvider, AsyncWeb3

import attest
from adapters.evm.deploy import contract, transact
from adapters.evm.feeds import EvmFeedTarget
from adapters.evm.fees import DestinationFee
from attest.committee import Committee
from attest.keystore import load_share_for, read_key_file
from relay.config import RelayerPolicy, load_config
from relay.devstack import messaging_stack
from relay.feeds.report import FeedReport, encode_feed_id
from relay.feeds.signed import SignedReport
from relay.errors import TesseraError
from relay.sdk import TesseraClient

pytestmark = pytest.mark.e2e

ETH_PRICE, SOL_PRICE = 3_456_50000000, 150_25000000  # 8 decimals
# A Solana delivery's cost in lamports ("gas" at price 1): the signature fee and the receipt's rent.
SOL_DESTINATION = DestinationFee(gas_price=1, base_gas=5_000 + 2_000_000, gas_per_byte=6_960, dst_decimals=9,
                                 margin_bps=1000, max_price_age=3600, dst_price_feed="SOL/USD")


def _relay(*args: str) -> str:
    """`relay ...` as its own process (what an operator runs); its stdout, or the failure with stderr."""
    done = subprocess.run([sys.executable, "-m", "relay.cli", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert done.returncode == 0, f"relay {' '.join(args)} failed: {done.stderr[-2000:]}"
    return done.stdout


async def _push_prices(config, w3: AsyncWeb3, owner) -> None:
    committee = Committee.load(config.committee.file)
    secret = read_key_file(config.committee.key_file)
    shares = [load_share_for(committee, config.committee.share_path(i), secret) for i in range(1, committee.t + 1)]
    store_address = config.chains["evm"].contracts["FeedStore"]
    store = contract(w3, "FeedStore", store_address)
    target = EvmFeedTarget(w3, owner, store_address)
    now_ms = (await w3.eth.get_block("latest"))["timestamp"] * 1000
    for feed_id, price in (("ETH/USD", ETH_PRICE), ("SOL/USD", SOL_PRICE)):
        registered, _decimals, latest, _observed = await store.functions.feed(encode_feed_id(feed_id)).call()
        if not registered:
            await transact(w3, owner, store.functions.registerFeed(encode_feed_id(feed_id), 8, feed_id))
        report = FeedReport(feed_id, latest + 1, price, confidence=1_000_000, decimals=8, observations=3,
                            observed_at=now_ms - 1000, published_at=now_ms)
        digest = report.digest(committee.epoch)
        signature = attest.combine_signatures([attest.partial_sign(share, digest) for share in shares])
        pushed = await target.push(SignedReport(report, committee.epoch, signature))
        assert isinstance(pushed, str), f"{feed_id} not stored: {pushed}"


async def test_paid_messages_policy_claim_and_pause(tmp_path: Path) -> None:
    async with messaging_stack(tmp_path, relayer=False) as stack:
        config = load_config(stack.config_path)
        evm, sol = config.chains["evm"], config.chains["solana"]
        keys = stack.state_dir / "keys"
        owner = Account.from_key((keys / "evm-deployer.key").read_text().strip())
        w3 = AsyncWeb3(AsyncHTTPProvider(evm.rpc_urls[0]))
        try:
            await _push_prices(config, w3, owner)
            # The relayer that gets paid: its own account is the gateway's beneficiary.
            relayer_config = await stack.relayer_config("paid")
            relayer_key = load_config(relayer_config).chains["evm"].signer.read_text().strip()
            beneficiary = Account.from_key(relayer_key).address
            # The owner posts the rest with the CLI (the FeedStore and ETH/USD again: what a deployment needs).
            owner_key = str(keys / "evm-deployer.key")
            _relay("fees", "set-beneficiary", beneficiary, "--chain", "evm", "--key", owner_key,
                   "--config", str(stack.config_path))
            d = SOL_DESTINATION
            _relay("fees", "set-destination", "--chain", "evm", "--to", "solana", "--gas-price", str(d.gas_price),
                   "--base-gas", str(d.base_gas), "--gas-per-byte", str(d.gas_per_byte), "--decimals",
                   str(d.dst_decimals), "--price-feed", d.dst_price_feed, "--margin-bps", str(d.margin_bps),
                   "--max-price-age", str(d.max_price_age), "--native-feed", "ETH/USD", "--key", owner_key,
                   "--config", str(stack.config_path))

            receiver_evm = bytes.fromhex(evm.contracts["RecordingReceiver"][2:])
            receiver_sol = bytes(Keypair().pubkey())
            long_payload, short_payload = b"L" * 300, b"S"
            async with TesseraClient.from_config(stack.config_path) as client:
                q_long = await client.quote("evm", "solana", long_payload)
                q_short = await client.quote("evm", "solana", short_payload)
                # The quote is the flat fee (0 here) + lamports priced in SOL, converted to wei at ETH's price.
                lamports = SOL_DESTINATION.base_gas + SOL_DESTINATION.gas_per_byte * len(long_payload)
                expected = lamports * SOL_PRICE * 10**9 * 11 // (ETH_PRICE * 10)
                assert abs(q_long - expected) <= 1, (q_long, expected)
                assert q_short < q_long
                # The operator's `relay fees quote` reads the same gateway quote.
                cli = _relay("fees", "quote", "--chain", "evm", "--to", "solana", "--bytes", str(len(long_payload)),
                             "--config", str(stack.config_path))
                assert cli.strip() == f"evm -> solana, {len(long_payload)} bytes: {q_long}", cli
                assert await client.quote("solana", "evm", long_payload) == 0  # the program charges nothing yet

                # Policy: at least the midpoint on EVM, so the short message counts as underpaid.
                minimum = (q_long + q_short) // 2
                relayer_config = await stack.relayer_config(
                    "paid", policy=RelayerPolicy(mode="minimum", minimum={"evm": minimum}))
                await stack.start_relayer("paid")
                listen = load_config(relayer_config).relayer.listen

                paid = await client.send("evm", "solana", receiver_sol, long_payload)
                underpaid = await client.send("evm", "solana", receiver_sol, short_payload)
                back = await client.send("solana", "evm", receiver_evm, b"result: paid by nobody yet")
                await asyncio.gather(client.wait_delivered(paid, timeout=120), client.wait_delivered(back, timeout=120))

                # The underpaid one: dead letter refused_unpaid, never delivered, counted.
                db = stack.state_dir / "relayer-paid.db"
                deadline = time.monotonic() + 60
                row = None
                while time.monotonic() < deadline:
                    with sqlite3.connect(db) as conn:
                        row = conn.execute("SELECT stage, reason_code, reason FROM messages WHERE message_id = ?",
                                           (underpaid.message_id,)).fetchone()
                    if row and row[0] == "dead":
                        break
                    await asyncio.sleep(0.5)
                assert row is not None and row[:2] == ("dead", "refused_unpaid"), row
                assert row[2].startswith(f"unpaid: paid {q_short}, below relayer.policy.minimum.evm = {minimum}")
                assert not await client.is_delivered(underpaid)
                status = _relay("status", underpaid.id_hex, "--config", str(relayer_config))
                assert "refused_unpaid" in status and "unpaid: paid" in status, status
                async with aiohttp.ClientSession() as http:
                    async with http.get(f"http://{listen}/metrics") as resp:
                        metrics = await resp.text()
                    async with http.get(f"http://{listen}/v1/messages/{underpaid.id_hex}") as resp:
                        shown = await resp.json()  # what the explorer shows
                assert (shown["stage"], shown["reason_code"]) == ("dead", "refused_unpaid")
                assert shown["reason"].startswith("unpaid: paid")
                assert f'tessera_relayer_refused_unpaid_total{{src_domain="{evm.domain}"}} 1.0' in metrics

                # The beneficiary claims what the two EVM sends paid: its balance rises by that less gas.
                gateway = contract(w3, "Gateway", evm.contracts["Gateway"])
                accrued = await gateway.functions.accruedFees().call()
                assert accrued == q_long + q_short
                before = await w3.eth.get_balance(beneficiary)
                out = _relay("fees", "claim", "--chain", "evm", "--config", str(relayer_config))
                claim_tx = re.search(r"\(tx (0x[0-9a-f]{64})\)", out).group(1)
                receipt = await w3.eth.get_transaction_receipt(claim_tx)
                gas_cost = receipt["gasUsed"] * receipt["effectiveGasPrice"]
                assert await w3.eth.get_balance(beneficiary) - before == accrued - gas_cost
                assert await gateway.functions.accruedFees().call() == 0

                # Pause (owner only): a send is refused with a clear reason; unpause restores it.
                out = _relay("admin", "pause", "--chain", "evm", "--key", owner_key, "--config", str(stack.config_path))
                assert "gateway paused" in out
                with pytest.raises(TesseraError, match="GatewayPaused"):
                    await client.send("evm", "solana", receiver_sol, long_payload)
                _relay("admin", "unpause", "--chain", "evm", "--key", owner_key, "--config", str(stack.config_path))
                assert not await gateway.functions.paused().call()
                # The same switch on Solana (the committee config's admin: the localnet's payer, the chain's signer).
                out = _relay("admin", "pause", "--chain", "solana", "--config", str(stack.config_path))
                assert "gateway paused" in out
                with pytest.raises(TesseraError, match="GATEWAY_PAUSED|0x48"):
                    await client.send("solana", "evm", receiver_evm, b"while paused")
                _relay("admin", "unpause", "--chain", "solana", "--config", str(stack.config_path))
                again = await client.send("solana", "evm", receiver_evm, b"after unpause")
                assert again.envelope.nonce == back.envelope.nonce + 1  # the refused send used no nonce
        finally:
            await w3.provider.disconnect()
