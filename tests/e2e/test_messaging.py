"""The messaging layer end to end on real processes: anvil, the Solana localnet server, attester
processes and relayer processes started as an operator starts them, driven through the SDK."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
from pathlib import Path

import pytest
from aiohttp import web
from solders.keypair import Keypair

from relay.config import load_config
from relay.sdk import TesseraClient
from relay.devstack import messaging_stack
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def stages(db: Path) -> dict[str, str]:
    with sqlite3.connect(db) as conn:
        return {row[0].hex(): row[1] for row in conn.execute("SELECT message_id, stage FROM messages")}


async def test_evm_to_solana_and_back_with_one_attester_down(tmp_path: Path) -> None:
    async with messaging_stack(tmp_path, attesters=(1, 2, 3)) as stack:  # member 4 is down
        config = load_config(stack.config_path)
        receiver_evm = bytes.fromhex(config.chains["evm"].contracts["RecordingReceiver"][2:])
        receiver_sol = bytes(Keypair().pubkey())
        async with TesseraClient.from_config(stack.config_path) as client:
            to_solana = await client.send("evm", "solana", receiver_sol, b"task: summarise block 42")
            to_evm = await client.send("solana", "evm", receiver_evm, b"result: 0.93 positive")
            assert to_solana.envelope.src_domain == config.chains["evm"].domain
            assert to_evm.envelope.nonce == 0
            delivered = await asyncio.gather(client.wait_delivered(to_solana, timeout=90),
                                             client.wait_delivered(to_evm, timeout=90))
            assert [d.chain for d in delivered] == ["solana", "evm"]
            assert all(d.tx for d in delivered)
            # Off-chain verification: the committee's signature over each message checks out.
            for sent in (to_solana, to_evm):
                epoch, signature = await client.committee_signature(sent)
                assert client.verify(sent.envelope, epoch, signature)
                forged = bytes(signature[:-1]) + bytes([signature[-1] ^ 1])
                assert not client.verify(sent.envelope, epoch, forged)
        # The blocking wrapper does the same for scripts without asyncio.
        def sync_round_trip() -> str:
            from relay.sdk import SyncTesseraClient

            with SyncTesseraClient(stack.config_path) as sync_client:
                sent = sync_client.send("evm", "solana", receiver_sol, b"from a plain script")
                return sync_client.wait_delivered(sent, timeout=90).chain

        assert await asyncio.to_thread(sync_round_trip) == "solana"

        # The relayer's own record reaches `confirmed` once it sees its transaction final.
        db = load_config(stack.config_path).relayer.db
        ids = {to_solana.message_id.hex(), to_evm.message_id.hex()}
        await wait_for(lambda: all(stages(db).get(i) == "confirmed" for i in ids), timeout=30)


async def _garbage_attester(port: int) -> web.AppRunner:
    """Member 3 turned bad: well-formed answers carrying a point that is not its partial."""
    import attest

    async def partial(request: web.Request) -> web.Response:
        return web.json_response({"member": 3, "epoch": 1, "message_id": request.match_info["m"],
                                  "signature": "0x" + attest.sign(424242, b"\x01" * 32).hex()})

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/v1/partials/{m}", partial)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def test_garbage_partials_are_named_and_delivery_still_happens(tmp_path: Path) -> None:
    from attest.committee import Committee

    async with messaging_stack(tmp_path, attesters=(1, 2, 4)) as stack:
        config = load_config(stack.config_path)
        port = int(Committee.load(config.committee.file).member(3).endpoint.rsplit(":", 1)[1])
        garbage = await _garbage_attester(port)
        # Freeze member 4 so the first round sees only 1, 2 and the liar: the combination fails,
        # partials are checked one by one and member 3 is named. Then member 4 wakes up.
        os.kill(stack.attesters[4].pid, signal.SIGSTOP)
        try:
            async with TesseraClient.from_config(stack.config_path) as client:
                sent = await client.send("evm", "solana", bytes(Keypair().pubkey()), b"payload")
                db = config.relayer.db

                def reason() -> str:
                    with sqlite3.connect(db) as conn:
                        row = conn.execute("SELECT reason FROM messages WHERE message_id = ?",
                                           (sent.message_id,)).fetchone()
                    return row[0] if row else ""

                await wait_for(lambda: "member 3: invalid partial signature" in reason(), timeout=60)
                assert "member 4: unreachable" in reason()
                os.kill(stack.attesters[4].pid, signal.SIGCONT)
                await client.wait_delivered(sent, timeout=90)
            log = (stack.state_dir / "logs" / "relayer-main.log").read_text()
            faulty = [json.loads(line) for line in log.splitlines() if '"faulty partial signature"' in line]
            assert faulty and all(entry["member"] == 3 for entry in faulty)
        finally:
            os.kill(stack.attesters[4].pid, signal.SIGCONT)
            await garbage.cleanup()


def _successful_solana_deliveries(rpc_url: str, receipt: str) -> int:
    import requests  # web3 brings it

    body = {"jsonrpc": "2.0", "id": 1, "method": "getSignaturesForAddress", "params": [receipt]}
    result = requests.post(rpc_url, json=body, timeout=5).json()["result"]
    return sum(1 for entry in result if entry["err"] is None)


async def test_relayer_killed_between_submit_and_confirm_delivers_exactly_once(tmp_path: Path) -> None:
    from web3 import AsyncHTTPProvider, AsyncWeb3

    from adapters.evm import deploy as evm_deploy
    from adapters.solana.program import receipt_address
    from solders.pubkey import Pubkey

    async with messaging_stack(tmp_path) as stack:
        config = load_config(stack.config_path)
        evm, sol = config.chains["evm"], config.chains["solana"]
        receiver_evm = bytes.fromhex(evm.contracts["RecordingReceiver"][2:])
        db = config.relayer.db
        async with TesseraClient.from_config(stack.config_path) as client:
            sent = []
            for i in range(3):
                sent.append(await client.send("evm", "solana", bytes(Keypair().pubkey()), f"to sol {i}".encode()))
                sent.append(await client.send("solana", "evm", receiver_evm, f"to evm {i}".encode()))
            ids = [s.message_id.hex() for s in sent]
            # SIGKILL the relayer the moment one of them has been submitted but not confirmed.
            await wait_for(lambda: "submitted" in stages(db).values(), timeout=60, interval=0.005)
            stack.relayers["main"].process.kill()
            stack.relayers["main"].process.wait()
            killed_at = stages(db)
            assert "submitted" in killed_at.values()
            await stack.start_relayer("main")
            await wait_for(lambda: all(stages(db).get(i) == "confirmed" for i in ids), timeout=90)
            for message in sent:
                assert await client.is_delivered(message)

        # Exactly once on each chain: the receiver was called once per message, and one Deliver
        # transaction per message succeeded on Solana.
        w3 = AsyncWeb3(AsyncHTTPProvider(evm.rpc_urls[0]))
        try:
            receiver = evm_deploy.contract(w3, "RecordingReceiver", evm.contracts["RecordingReceiver"])
            assert await receiver.functions.count().call() == 3
        finally:
            await w3.provider.disconnect()
        program = Pubkey.from_string(sol.program_id)
        for message in sent:
            if message.envelope.dst_domain == sol.domain:
                receipt = str(receipt_address(program, message.message_id)[0])
                assert _successful_solana_deliveries(sol.rpc_urls[0], receipt) == 1


async def test_two_relayers_deliver_each_message_once(tmp_path: Path) -> None:
    from web3 import AsyncHTTPProvider, AsyncWeb3

    from adapters.evm import deploy as evm_deploy

    async with messaging_stack(tmp_path) as stack:
        await stack.start_relayer("second")
        config = load_config(stack.config_path)
        evm = config.chains["evm"]
        receiver_evm = bytes.fromhex(evm.contracts["RecordingReceiver"][2:])
        async with TesseraClient.from_config(stack.config_path) as client:
            sent = [await client.send("solana", "evm", receiver_evm, f"m{i}".encode()) for i in range(4)]
            sent.append(await client.send("evm", "solana", bytes(Keypair().pubkey()), b"to solana"))
            for message in sent:
                await client.wait_delivered(message, timeout=90)
        dbs = [config.relayer.db, stack.state_dir / "relayer-second.db"]
        ids = [m.message_id.hex() for m in sent]
        for db in dbs:  # both relayers end with every message confirmed, by themselves or the other
            await wait_for(lambda db=db: all(stages(db).get(i) == "confirmed" for i in ids), timeout=60)
        w3 = AsyncWeb3(AsyncHTTPProvider(evm.rpc_urls[0]))
        try:
            receiver = evm_deploy.contract(w3, "RecordingReceiver", evm.contracts["RecordingReceiver"])
            assert await receiver.functions.count().call() == 4
        finally:
            await w3.provider.disconnect()


async def test_reorg_before_finality_gets_no_signature_for_the_orphaned_message(tmp_path: Path) -> None:
    import requests

    # Automine only: blocks appear when the test says so, so the reorg lands before finality
    # (the localnet config asks for 2 confirmations).
    async with messaging_stack(tmp_path, evm_block_time=None) as stack:
        config = load_config(stack.config_path)
        evm = config.chains["evm"]

        def rpc(method: str, *params):
            return requests.post(evm.rpc_urls[0], json={"jsonrpc": "2.0", "id": 1, "method": method,
                                                        "params": list(params)}, timeout=5).json()

        async with TesseraClient.from_config(stack.config_path) as client:
            orphan = await client.send("evm", "solana", bytes(Keypair().pubkey()), b"orphan")
            assert "error" not in rpc("anvil_reorg", 1, [])  # the block holding it is replaced
            for _ in range(6):
                rpc("evm_mine")
            await asyncio.sleep(2.0)
            # No attester signed it, and the relayer never saw it.
            from attest.committee import Committee

            import aiohttp

            committee = Committee.load(config.committee.file)
            async with aiohttp.ClientSession() as session:
                for member in committee.members:
                    async with session.get(f"{member.endpoint}/v1/partials/0x{orphan.message_id.hex()}") as resp:
                        assert resp.status == 404
            assert orphan.message_id.hex() not in stages(config.relayer.db)
            # The chain moved on: the next message reuses nonce 0 and is delivered normally.
            replacement = await client.send("evm", "solana", bytes(Keypair().pubkey()), b"after the reorg")
            assert replacement.envelope.nonce == orphan.envelope.nonce == 0
            for _ in range(3):
                rpc("evm_mine")
            await client.wait_delivered(replacement, timeout=60)


async def test_reverting_receiver_leaves_the_message_retryable(tmp_path: Path) -> None:
    from web3 import AsyncHTTPProvider, AsyncWeb3

    from adapters.evm import deploy as evm_deploy
    from adapters.evm.devnet import ANVIL_DEV_KEYS

    async with messaging_stack(tmp_path) as stack:
        config = load_config(stack.config_path)
        evm = config.chains["evm"]
        w3 = AsyncWeb3(AsyncHTTPProvider(evm.rpc_urls[0]))
        owner = w3.eth.account.from_key(ANVIL_DEV_KEYS[0])
        receiver = evm_deploy.contract(w3, "RecordingReceiver", evm.contracts["RecordingReceiver"])
        gateway = evm_deploy.contract(w3, "Gateway", evm.contracts["Gateway"])
        try:
            await evm_deploy.transact(w3, owner, receiver.functions.setFailing(True))
            async with TesseraClient.from_config(stack.config_path) as client:
                sent = await client.send("solana", "evm", bytes.fromhex(evm.contracts["RecordingReceiver"][2:]), b"x")

                async def handler_failed() -> bool:  # delivered, handler failed: not delivered yet
                    return await gateway.functions.deliveryStatus(sent.message_id).call() == 2

                await wait_for(handler_failed, timeout=90, what="the delivery with a failing handler")
                assert not await client.is_delivered(sent)
                assert await receiver.functions.count().call() == 0
                # Once the receiver works again, the relayer's retries (Gateway.retryFailed) deliver it.
                await evm_deploy.transact(w3, owner, receiver.functions.setFailing(False))
                await client.wait_delivered(sent, timeout=90)
            assert await gateway.functions.deliveryStatus(sent.message_id).call() == 1
            assert await receiver.functions.count().call() == 1
        finally:
            await w3.provider.disconnect()
