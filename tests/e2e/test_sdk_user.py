"""The SDK as a user runs it, on real processes (anvil, the Solana localnet server, 4 attesters, a
relayer): a client built from RPC URLs + deployment addresses only (no operator config, no key),
reading; sending both ways with the user's own fresh keys (an eth_account LocalAccount and a solders
Keypair, funded here, never a key the relayer uses) given per call and per client; message(),
find(source_tx=...), a task handle reopened by id; the blocking client doing the same."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from eth_account import Account
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solders.keypair import Keypair

from relay.config import load_config
from relay.devstack import messaging_stack
from relay.interfaces import MessageStatus, TaskState
from relay.processes import json_rpc_call
from relay.sdk import MissingSignerError, SyncTesseraClient, TesseraClient, evm_chain, solana_chain
from relay.tasks.client import AuctionTerms

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


async def test_a_user_with_urls_addresses_and_own_keys(tmp_path: Path) -> None:
    async with messaging_stack(tmp_path) as stack:
        # What a user is told by whoever deployed Tessera: URLs, addresses, the committee's public file.
        config = load_config(stack.config_path)
        evm, sol = config.chains["evm"], config.chains["solana"]
        chains = {
            "evm": evm_chain(evm.rpc_urls, chain_id=evm.chain_id, gateway=evm.contracts["Gateway"],
                             task_board=evm.contracts["TaskBoardV2"], confirmations=evm.confirmations),
            "solana": solana_chain(sol.rpc_urls, program_id=sol.program_id, domain=sol.domain,
                                   ws_urls=sol.ws_urls, commitment=sol.commitment),
        }
        services = dict(committee=config.committee.file, relayer_url=f"http://{config.relayer.listen}")
        receiver_evm = bytes.fromhex(evm.contracts["RecordingReceiver"][2:])
        receiver_sol = bytes(Keypair().pubkey())

        # The user's own keys, funded here.
        account, keypair = Account.create(), Keypair()
        await json_rpc_call(evm.rpc_urls[0], "anvil_setBalance", [account.address, hex(100 * 10**18)])
        async with AsyncClient(sol.rpc_urls[0], commitment=Confirmed) as rpc:
            await rpc.confirm_transaction((await rpc.request_airdrop(keypair.pubkey(), 10 * 10**9)).value, Confirmed,
                                          sleep_seconds=0.05)

        async with TesseraClient.connect(chains, **services) as client:
            # Read-only without a key: reads work, sending says what is missing.
            unknown = await client.message(bytes(32))
            assert (unknown.status, unknown.chain, unknown.stage) == (MessageStatus.NOT_DELIVERED, None, None)
            with pytest.raises(MissingSignerError, match="pass signer="):
                await client.send("evm", "solana", receiver_sol, b"no key")

            to_solana = await client.send("evm", "solana", receiver_sol, b"from my LocalAccount", signer=account)
            to_evm = await client.send("solana", "evm", receiver_evm, b"from my Keypair", signer=keypair)
            assert to_solana.envelope.src_sender == bytes(12) + bytes.fromhex(account.address[2:])
            assert to_evm.envelope.src_sender == bytes(keypair.pubkey())
            delivered = await asyncio.gather(client.wait_delivered(to_solana, timeout=90),
                                             client.wait_delivered(to_evm, timeout=90))
            assert [d.chain for d in delivered] == ["solana", "evm"]

            info = await client.message(to_solana.id_hex)
            assert info.delivered and info.chain == "solana" and info.delivery_tx == delivered[0].tx
            assert info.envelope == to_solana.envelope and info.source_tx == to_solana.source_tx
            assert info.stage in ("submitted", "confirmed")  # the relayer's record, checked against the id
            for sent in (to_solana, to_evm):
                (found,) = await client.find(sent.source_tx)
                assert (found.envelope, found.source_chain) == (sent.envelope, sent.source_chain)
            epoch, signature = await client.committee_signature(to_evm)
            assert client.verify(to_evm.envelope, epoch, signature)

            # A task requested with the user's key, then reopened by id: from its source transaction
            # (read on the chain), and from the relayer once it carried the request.
            handle = await client.request_task(
                src="evm", dst="solana", executor="echo", input=b"reopen me", max_fee=10**15, signer=account,
                auction=AuctionTerms(refund_to=bytes(keypair.pubkey())), no_worker_after_s=None)
            from_chain = await client.task(handle.request_id, source_tx=handle.tx)
            status = await from_chain.status()
            assert status.state == TaskState.OPEN and status.requester == to_solana.envelope.src_sender
            stages = [event.stage async for event in _until(from_chain.events(timeout=60), "request_delivered")]
            assert stages == ["requested", "request_delivered"]
            from_relayer = await client.task(handle.id_hex)
            for again in (from_chain, from_relayer):
                assert (again.request, again.envelope, again.src, again.dst) == (
                    handle.request, handle.envelope, "evm", "solana")

        # The blocking client, with the user's keys given once for the client.
        def blocking() -> tuple:
            with SyncTesseraClient.connect(chains, signers={"evm": account, "solana": keypair}, **services) as sync:
                sent = sync.send("solana", "evm", receiver_evm, b"from a plain script")
                delivery = sync.wait_delivered(sent, timeout=90)
                info = sync.message(sent.message_id)
                (found,) = sync.find(sent.source_tx)
                task = sync.task(handle.id_hex)
                return delivery.chain, info.delivered, found.envelope == sent.envelope, task.status().state

        assert await asyncio.to_thread(blocking) == ("evm", True, True, TaskState.OPEN)

        # docs/SDK.md's script as written, but for this stack's ports and config.
        script = _doc_script().replace(".tessera/localnet/config.toml", str(stack.config_path))
        for default, actual in (("http://127.0.0.1:8545", evm.rpc_urls[0]), ("http://127.0.0.1:8899", sol.rpc_urls[0]),
                                ("http://127.0.0.1:7300", services["relayer_url"])):
            assert default in script
            script = script.replace(default, actual)
        (tmp_path / "user.py").write_text(script)
        done = await asyncio.to_thread(subprocess.run, [sys.executable, str(tmp_path / "user.py")], cwd=REPO,
                                       capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stdout + done.stderr[-3000:]
        assert [line.split()[2:4] for line in done.stdout.splitlines() if " delivered on " in line] == [
            ["on", "evm"], ["on", "solana"]]


def _doc_script() -> str:
    text = (REPO / "docs/SDK.md").read_text()
    return text.split("```python\n", 1)[1].split("```", 1)[0]


async def _until(events, last: str):
    async for event in events:
        yield event
        if event.stage == last:
            return
