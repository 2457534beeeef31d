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
from adapters.solana.fee_program import quote_lamports
from adapters.solana.feeds import SolanaFeedTarget
from adapters.solana.rpc import keypair_from_ref
from solana.rpc.async_api import AsyncClient
from solders.pubkey import Pubkey
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


# An EVM delivery's cost as the Solana program's fee config posts it (docs/BENCHMARKS.md "Quote accuracy":
# ~310k gas + 728.5 gas/byte for the RecordingReceiver).
EVM_BASE_GAS, EVM_GAS_PER_BYTE = 310_000, 728.5


async def _push_solana_prices(config, payer: Keypair) -> None:
    """The committee signs ETH/USD and SOL/USD and they are pushed into the program's feed accounts
    (what the fee config names): the localnet's pusher has no SOL/USD source."""
    committee = Committee.load(config.committee.file)
    secret = read_key_file(config.committee.key_file)
    shares = [load_share_for(committee, config.committee.share_path(i), secret) for i in range(1, committee.t + 1)]
    sol = config.chains["solana"]
    target = SolanaFeedTarget(sol.rpc_urls, payer, Pubkey.from_string(sol.program_id), name="solana")
    now_ms = int(time.time() * 1000)
    try:
        for feed_id, price in (("ETH/USD", ETH_PRICE), ("SOL/USD", SOL_PRICE)):
            current = await target.latest(feed_id)
            round_ = (current.round + 1) if current is not None else 1
            report = FeedReport(feed_id, round_, price, confidence=1_000_000, decimals=8, observations=3,
                                observed_at=now_ms - 1000, published_at=now_ms)
            digest = report.digest(committee.epoch)
            signature = attest.combine_signatures([attest.partial_sign(share, digest) for share in shares])
            pushed = await target.push(SignedReport(report, committee.epoch, signature))
            assert isinstance(pushed, str), f"{feed_id} not stored on Solana: {pushed}"
    finally:
        await target.close()


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

            # Solana: prices in the program's feed accounts, then the admin (the localnet's payer, the chain's
            # signer) posts the EVM destination's cost and the relayer's Solana key as beneficiary.
            sol_payer = keypair_from_ref(sol.signer, "chains.solana.signer")
            await _push_solana_prices(config, sol_payer)
            sol_beneficiary = keypair_from_ref(load_config(relayer_config).chains["solana"].signer, "relayer signer")
            gas_price = await w3.eth.gas_price
            _relay("fees", "set-destination", "--chain", "solana", "--to", "evm", "--gas-price", str(gas_price),
                   "--base-gas", str(EVM_BASE_GAS), "--gas-per-byte", str(EVM_GAS_PER_BYTE), "--decimals", "18",
                   "--price-feed", "ETH/USD", "--native-feed", "SOL/USD", "--margin-bps", "1000",
                   "--max-price-age", "3600", "--config", str(stack.config_path))
            _relay("fees", "set-beneficiary", str(sol_beneficiary.pubkey()), "--chain", "solana",
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
                # Solana -> EVM: the program's quote in lamports, the same figure computed here.
                sq_long = await client.quote("solana", "evm", long_payload)
                sq_short = await client.quote("solana", "evm", short_payload)
                assert sq_long == quote_lamports(
                    gas_price=gas_price, base_gas=EVM_BASE_GAS, gas_per_byte_milli=int(EVM_GAS_PER_BYTE * 1000),
                    dst_decimals=18, margin_bps=1000, dst_price=ETH_PRICE, dst_feed_decimals=8, sol_price=SOL_PRICE,
                    sol_feed_decimals=8, payload_len=len(long_payload)), sq_long
                assert 0 < sq_short < sq_long
                cli = _relay("fees", "quote", "--chain", "solana", "--to", "evm", "--bytes", str(len(long_payload)),
                             "--config", str(stack.config_path))
                assert cli.strip() == f"solana -> evm, {len(long_payload)} bytes: {sq_long}", cli

                # Policy: at least the midpoint on each source, so the short messages count as underpaid.
                minimum = (q_long + q_short) // 2
                sol_minimum = (sq_long + sq_short) // 2
                relayer_config = await stack.relayer_config(
                    "paid", policy=RelayerPolicy(mode="minimum", minimum={"evm": minimum, "solana": sol_minimum}))
                await stack.start_relayer("paid")
                listen = load_config(relayer_config).relayer.listen

                paid = await client.send("evm", "solana", receiver_sol, long_payload)
                underpaid = await client.send("evm", "solana", receiver_sol, short_payload)
                back = await client.send("solana", "evm", receiver_evm, long_payload)  # pays sq_long lamports
                sol_underpaid = await client.send("solana", "evm", receiver_evm, short_payload)
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
                # The underpaid Solana send: the program charged its (smaller) quote; the relayer refuses it.
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    with sqlite3.connect(db) as conn:
                        row = conn.execute("SELECT stage, reason_code, reason FROM messages WHERE message_id = ?",
                                           (sol_underpaid.message_id,)).fetchone()
                    if row and row[0] == "dead":
                        break
                    await asyncio.sleep(0.5)
                assert row is not None and row[:2] == ("dead", "refused_unpaid"), row
                assert row[2].startswith(f"unpaid: paid {sq_short}, below relayer.policy.minimum.solana = {sol_minimum}")
                assert not await client.is_delivered(sol_underpaid)

                # The Solana beneficiary claims both sends' lamports: its balance rises by them less the tx fee.
                async with AsyncClient(sol.rpc_urls[0]) as rpc:
                    before_sol = (await rpc.get_balance(sol_beneficiary.pubkey())).value
                    out = _relay("fees", "claim", "--chain", "solana", "--config", str(relayer_config))
                    assert f"claimed {sq_long + sq_short} to the beneficiary {sol_beneficiary.pubkey()}" in out, out
                    after_sol = (await rpc.get_balance(sol_beneficiary.pubkey(), commitment="confirmed")).value
                    assert after_sol - before_sol == sq_long + sq_short - 5_000, (before_sol, after_sol)

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
                assert again.envelope.nonce == sol_underpaid.envelope.nonce + 1  # the refused send used no nonce
        finally:
            await w3.provider.disconnect()
