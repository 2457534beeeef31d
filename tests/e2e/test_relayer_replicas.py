"""Three relayer replicas on one PostgreSQL (issue 17): each with its own funded account on every
chain (relay/devstack.py through the drivers), a burst of messages both ways (EVM <-> Solana), one
replica SIGKILLed mid-burst. Every message is delivered exactly once, and no message was submitted
by two replicas except after a lease expired — counted from the store's `submissions` table and
from the chains' own delivery records (EVM MessageDelivered logs, Solana receipt transactions)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path

import psycopg
import pytest
from solders.keypair import Keypair

from relay.config import load_config
from relay.devstack import messaging_stack
from relay.sdk import TesseraClient
from relay.store import Stage, Store
from tests.support.postgres import PostgresServer
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPLICAS = ("r1", "r2", "r3")
PER_DIRECTION = 6
LEASE_S = 8.0  # short, so the victim's messages are taken over within the test


def _hex(tx: str) -> str:
    return tx.lower().removeprefix("0x")


def _lease_holder(url: str) -> str | None:
    """A replica holding a lease on an unfinished message right now (the one holding most), or None."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT lease_owner, count(*) AS n FROM messages WHERE lease_owner IS NOT NULL AND stage IN "
                           "(%s, %s, %s) GROUP BY lease_owner ORDER BY n DESC LIMIT 1",
                           (Stage.OBSERVED.value, Stage.READY.value, Stage.SUBMITTED.value)).fetchone()
    return row[0] if row is not None and row[0] in REPLICAS else None


def _leases_held(url: str, replica: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM messages WHERE lease_owner = %s AND stage IN (%s, %s, %s)",
                            (replica, Stage.OBSERVED.value, Stage.READY.value, Stage.SUBMITTED.value)).fetchone()[0]


def _solana_receipt_transactions(rpc_url: str, receipt: str) -> list[dict]:
    import requests  # web3 brings it

    body = {"jsonrpc": "2.0", "id": 1, "method": "getSignaturesForAddress", "params": [receipt]}
    return requests.post(rpc_url, json=body, timeout=5).json()["result"]


async def _evm_deliveries(rpc_url: str, gateway: str) -> dict[bytes, list[str]]:
    """Per message id, the transactions whose MessageDelivered log names it (the chain's record)."""
    from web3 import AsyncHTTPProvider, AsyncWeb3

    w3 = AsyncWeb3(AsyncHTTPProvider(rpc_url))
    try:
        topic = w3.keccak(text="MessageDelivered(bytes32,uint32,uint64,bool)")
        logs = await w3.eth.get_logs({"address": w3.to_checksum_address(gateway), "fromBlock": 0,
                                      "toBlock": "latest", "topics": [topic]})
    finally:
        await w3.provider.disconnect()
    found: dict[bytes, list[str]] = defaultdict(list)
    for entry in logs:
        found[bytes(entry["topics"][1])].append(_hex(entry["transactionHash"].hex()))
    return found


async def test_three_replicas_one_killed_mid_burst_deliver_every_message_once(tmp_path: Path,
                                                                              postgres: PostgresServer) -> None:
    from adapters.solana.program import receipt_address
    from solders.pubkey import Pubkey

    url = postgres.create_database("replicas")
    async with messaging_stack(tmp_path, relayer=False) as stack:
        for name in REPLICAS:  # one at a time: each funds its accounts on both chains
            await stack.start_relayer(name, db=url, replica=name, lease_s=LEASE_S)
        config = load_config(stack.config_path)
        evm, sol = config.chains["evm"], config.chains["solana"]
        # Every replica signs with its own accounts, none with another's or the localnet's.
        signers = {name: {chain: load_config(stack.state_dir / f"config-{name}.toml").chains[chain].signer.file
                          for chain in ("evm", "solana")} for name in REPLICAS}
        for chain in ("evm", "solana"):
            files = {signers[name][chain] for name in REPLICAS} | {config.chains[chain].signer.file}
            assert len(files) == len(REPLICAS) + 1
        receiver_evm = bytes.fromhex(evm.contracts["RecordingReceiver"][2:])

        async with TesseraClient.from_config(stack.config_path) as client:
            async def burst(src: str, dst: str, receiver) -> list:
                return [await client.send(src, dst, receiver(), f"{src}->{dst} {i}".encode())
                        for i in range(PER_DIRECTION)]

            sending = asyncio.gather(burst("evm", "solana", lambda: bytes(Keypair().pubkey())),
                                     burst("solana", "evm", lambda: receiver_evm))
            # Mid-burst: the victim holds messages when it is killed (its leases must expire first).
            # Whichever replica holds leases at that moment is the victim (the three race for the
            # messages; a fixed one may win none of a short burst).
            victim = await wait_for(lambda: _lease_holder(url), timeout=90, interval=0.02,
                                    what="a replica to lease a message")
            stack.relayers[victim].process.kill()
            stack.relayers[victim].process.wait()
            held_at_kill = _leases_held(url, victim)  # what it can no longer give back
            sent = [m for direction in await sending for m in direction]
            deliveries = await asyncio.gather(*(client.wait_delivered(m, timeout=180) for m in sent))

        store = await Store.open(url, replica="test-observer")
        try:
            ids = [m.message_id for m in sent]

            async def all_confirmed() -> bool:
                records = [await store.get(i) for i in ids]
                return all(r is not None and r.stage is Stage.CONFIRMED for r in records)

            await wait_for(all_confirmed, timeout=120, what="every message confirmed in the shared store")
            submissions = await store.submissions()
            by_message: dict[bytes, list] = defaultdict(list)
            for s in submissions:
                by_message[s.message_id].append(s)
            leases = {i: await store.lease(i) for i in ids}
        finally:
            await store.close()

        evm_record = await _evm_deliveries(evm.rpc_urls[0], evm.contracts["Gateway"])
        program = Pubkey.from_string(sol.program_id)
        taken_over = 0
        for message, delivery in zip(sent, deliveries):
            mid = message.message_id
            ours = by_message[mid]
            assert ours, f"message {mid.hex()} delivered with no submission recorded"
            replicas = {s.replica for s in ours}
            assert replicas <= set(REPLICAS)
            # Two replicas sent it only when one took it over after the other's lease expired.
            if len(replicas) > 1 or len(ours) > 1:
                assert leases[mid].takeovers >= 1 or any(not s.lease_held for s in ours), \
                    f"message {mid.hex()} submitted {len(ours)} times by {sorted(replicas)} without a takeover"
            taken_over += leases[mid].takeovers >= 1
            our_txs = {_hex(s.tx) for s in ours}
            # The chains' records: exactly one delivery, by a transaction a replica recorded.
            if message.envelope.dst_domain == evm.domain:
                onchain = evm_record.get(mid, [])
                assert len(onchain) == 1, f"{mid.hex()}: {len(onchain)} MessageDelivered logs"
                assert onchain[0] in our_txs
            else:
                receipt = str(receipt_address(program, mid)[0])
                landed = [e for e in _solana_receipt_transactions(sol.rpc_urls[0], receipt) if e["err"] is None]
                assert len(landed) == 1, f"{mid.hex()}: {len(landed)} successful Solana deliveries"
                assert _hex(landed[0]["signature"]) in our_txs
            assert delivery.tx is None or _hex(delivery.tx) in our_txs
        # The EVM receiver ran once per message sent to it.
        assert sum(len(v) for v in evm_record.values()) == PER_DIRECTION
        # The survivors carried on with what the victim held once its leases expired.
        assert taken_over >= held_at_kill
        assert {s.replica for s in submissions} - {victim}
