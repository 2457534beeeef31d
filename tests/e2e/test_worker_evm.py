"""`relay worker` as a real process serving the EVM task board on a real localnet (anvil + the
Solana localnet server): committee-signed TASK_REQUESTs are delivered to the board, the worker
claims them (task protocol v2: TaskBoardV2.claim at the auction price) and answers through
`submitResult`, malformed requests are ignored safely, and a worker SIGKILLed mid-task resumes with
exactly one result on chain, no repeated execution and no second claim."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import aiohttp
import pytest

import attest
from adapters.registry import driver_for
from relay.interfaces import SignedDelivery
from relay.config import load_config
from relay.daemons.messaging import _load_share
from relay.devstack import free_port, messaging_stack
from relay.envelope import Envelope, address_to_bytes32, keccak256
from relay.protocol import MessageKind
from relay.tasks.payloads import ProofKind, TaskRequestV2, TaskResultV2
from tests.support.waiting import wait_for
from tests.support.worker import Inference, stages

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

REQUESTER_BOARD = b"\x5e" * 32  # a Solana-side requester board (any 32 bytes: the EVM board records it)
REFUND_TO = bytes(12) + b"\x5f" * 20  # an EVM account: receives forfeited bonds


def worker_account(config) -> str:
    from eth_account import Account

    return Account.from_key(Path(config.worker.evm_key.file).read_text().strip()).address


def claim_txs(db: Path) -> dict[bytes, str | None]:
    import sqlite3

    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT request_id, claim_tx FROM claims WHERE claimant IS NOT NULL"))


def request(executor: str, deadline: int, input: bytes | None = None, *, content: bytes | None = None,
            uri: str | None = None) -> TaskRequestV2:
    """A TASK_REQUEST v2 claimable at once (no auction), with a long claim window and no bond."""
    terms = dict(max_fee=10, deadline=deadline, auction_window=0, start_bps=10_000, claim_window=600, bond=0,
                 refund_to=REFUND_TO)
    if uri is not None:
        return TaskRequestV2(executor, input_hash=keccak256(content), input_uri=uri, **terms)
    return TaskRequestV2(executor, input=input, **terms)


class Requester:
    """Plays the committee + relayer: signs TASK_REQUEST envelopes from the Solana domain to the
    EVM board and delivers them through the gateway."""

    def __init__(self, config_path: Path) -> None:
        config = load_config(config_path)
        self.config = config
        committee = attest.Committee.load(config.committee.file)
        self.epoch = committee.epoch
        self.shares = [_load_share(config, committee, i) for i in (1, 2, 3)]
        self.board = config.chains["evm"].contracts["TaskBoardV2"]
        self.src_domain = config.chains["solana"].domain
        self.adapter = driver_for("evm", config.chains["evm"]).messaging()  # the relayer's account; no relayer runs
        self.nonce = 0
        self.results: dict[bytes, list[TaskResultV2]] = {}

    def envelope(self, payload: bytes) -> Envelope:
        self.nonce += 1
        return Envelope(MessageKind.TASK_REQUEST, self.nonce, self.src_domain, REQUESTER_BOARD,
                        self.config.chains["evm"].domain, address_to_bytes32(self.board), payload)

    async def deliver(self, request: TaskRequestV2 | bytes) -> bytes:
        envelope = self.envelope(request.encode() if isinstance(request, TaskRequestV2) else request)
        digest = envelope.digest(self.epoch)
        signature = attest.combine_signatures([attest.partial_sign(s, digest) for s in self.shares])
        tx = await self.adapter.submit(SignedDelivery(envelope=envelope, epoch=self.epoch, signature=signature))
        receipt = await self.adapter._wait_receipt(tx, 30)
        assert receipt["status"] == 1
        return envelope.message_id

    def have(self, *request_ids: bytes):
        async def check() -> bool:
            await self.collect_results()
            return all(r in self.results for r in request_ids)

        return check

    async def collect_results(self) -> None:
        """TASK_RESULT envelopes the EVM gateway emitted (MessageSent), by request id."""
        from web3 import AsyncHTTPProvider, AsyncWeb3

        from adapters.evm import deploy as evm_deploy

        w3 = AsyncWeb3(AsyncHTTPProvider(self.config.chains["evm"].rpc_urls[0]))
        try:
            gateway = evm_deploy.contract(w3, "Gateway", self.config.chains["evm"].contracts["Gateway"])
            events = await gateway.events.MessageSent().get_logs(from_block=0)
        finally:
            await w3.provider.disconnect()
        self.results = {}
        for event in events:
            envelope = Envelope.decode(bytes(event["args"]["envelope"]))
            if envelope.kind == MessageKind.TASK_RESULT:
                assert envelope.src_sender == address_to_bytes32(self.board)  # sent by the board
                assert envelope.dst_receiver == REQUESTER_BOARD
                result = TaskResultV2.decode(envelope.payload)
                self.results.setdefault(result.request_id, []).append(result)


async def test_worker_process_serves_ignores_bad_requests_and_resumes_after_sigkill(tmp_path: Path) -> None:
    inference = Inference()
    await inference.start()
    async with messaging_stack(tmp_path, attesters=(), relayer=False) as stack:
        requester = Requester(stack.config_path)
        try:
            worker = await stack.start_worker(
                "evm", executor_options={"http": {"base_url": f"http://127.0.0.1:{inference.port}", "model": "m",
                                                   "timeout": 120}},
                executors=["echo", "sentiment", "http"], min_time_left_s=2, input_fetch_timeout_s=2,
            )
            config = load_config(stack.state_dir / "config-worker-evm.toml")
            db = Path(config.worker.db)
            payout_sol = config.worker.payout_by_domain(config)[requester.src_domain]
            deadline = int(time.time()) + 600

            # Served requests, and bad ones the worker must ignore without stopping.
            good = await requester.deliver(request("echo", deadline, b"hello board"))
            mood = await requester.deliver(request("sentiment", deadline, b"I love this!"))
            dead_port = free_port()
            bad = {
                await requester.deliver(request("nosuchexec", deadline, b"x")): ("skipped", "not served"),
                await requester.deliver(request("echo", deadline, content=b"doc", uri="ipfs://bafybeigdyr")):
                    ("skipped", "ipfs://"),
                await requester.deliver(request("echo", int(time.time()) + 12, content=b"doc",
                                                uri=f"http://127.0.0.1:{dead_port}/doc")): ("failed", "cannot fetch"),
                await requester.deliver(request("echo", int(time.time()) - 5, b"late")): ("skipped", "deadline"),
            }
            # A payload the board itself refuses to decode never reaches the worker at all.
            garbage = await requester.deliver(b"\x00" * 17)
            after_bad = await requester.deliver(request("echo", deadline, b"still serving"))
            # An output over the 249 bytes that travel inline is served by the worker and sent by URI.
            big_prompt = "big: " + "tell me more " * 30
            big = await requester.deliver(request("http", deadline, big_prompt.encode()))

            await wait_for(lambda: all(stages(db).get(r, ("",))[0] == "done" for r in (good, mood, after_bad, big)),
                           timeout=60, what="served requests done")
            await wait_for(lambda: all(stages(db).get(r, ("",))[0] in ("skipped", "failed") for r in bad),
                           timeout=30, what="bad requests ignored")
            rows = stages(db)
            for rid, (stage, reason) in bad.items():
                assert rows[rid][0] == stage and reason in rows[rid][1], rows[rid]
                assert rows[rid][2] == 0  # no executor ran for them
            assert garbage not in rows
            assert worker.alive()
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://{config.worker.listen}/health") as resp:
                    health = await resp.json()
                async with session.get(f"http://{config.worker.listen}/metrics") as resp:
                    metrics = await resp.text()
            assert health["ok"] and health["chain"] == "evm" and health["tasks"]["done"] == 4
            assert 'tessera_worker_tasks{stage="skipped"} 3.0' in metrics
            assert 'tessera_worker_executor_runs_total{executor="echo"} 2.0' in metrics

            await wait_for(requester.have(good, mood, after_bad), timeout=60, what="results sent by the board")
            echo = requester.results[good][0]
            echo.verify_signature()
            assert echo.output == b"hello board" and echo.proof_kind is ProofKind.REEXECUTION
            assert echo.payout == payout_sol and echo.price == 10  # the claim it answers (no auction: max_fee)
            assert echo.claimant == address_to_bytes32(worker_account(config))
            assert json.loads(requester.results[mood][0].output)["label"] == "positive"
            assert not any(rid in requester.results for rid in bad)
            by_uri = requester.results[big][0]
            by_uri.verify_signature()
            assert by_uri.output is None and by_uri.output_uri.startswith(f"http://{config.worker.listen}/v1/outputs/0x")
            async with aiohttp.ClientSession() as session:
                async with session.get(by_uri.output_uri) as resp:
                    hosted = await resp.read()
            assert hosted == f"answer({big_prompt})".encode() and keccak256(hosted) == by_uri.output_hash

            # Kill test. `gated` computes its output while the chain is stopped (so it cannot be
            # submitted); `slow` is in flight at the inference server when the worker dies.
            anvil = next(c for c in stack.net.children if c.name == "anvil")
            gated = await requester.deliver(request("http", deadline, b"gated: summarise"))
            slow = await requester.deliver(request("http", deadline, b"slow: write a poem"))
            await wait_for(lambda: inference.calls.get("gated: summarise") == 1
                           and inference.calls.get("slow: write a poem") == 1, timeout=60, what="both http calls")
            os.kill(anvil.pid, signal.SIGSTOP)
            try:
                inference.gate.set()
                await wait_for(lambda: stages(db)[gated][0] in ("executed", "submitted"), timeout=30,
                               what="gated output stored")
                assert stages(db)[slow][0] == "running"
                os.kill(worker.pid, signal.SIGKILL)
                worker.process.wait(10)
            finally:
                os.kill(anvil.pid, signal.SIGCONT)

            claimed_before = claim_txs(db)
            assert claimed_before[gated] and claimed_before[slow]  # both claimed before the kill
            worker = await stack.start_worker("evm")
            await wait_for(lambda: all(stages(db)[r][0] == "done" for r in (gated, slow)), timeout=90,
                           what="both http tasks done after the restart")
            assert {r: claim_txs(db)[r] for r in (gated, slow)} == {r: claimed_before[r] for r in (gated, slow)}
            rows = stages(db)
            assert rows[gated][2] == 1 and inference.calls["gated: summarise"] == 1  # never executed again
            assert rows[slow][2] == 2 and inference.calls["slow: write a poem"] == 2  # killed mid-run: re-run once

            await wait_for(requester.have(gated, slow), timeout=60, what="http results")
            await asyncio.sleep(2)
            await requester.collect_results()
            for rid, prompt in ((gated, "gated: summarise"), (slow, "slow: write a poem")):
                assert len(requester.results[rid]) == 1, f"exactly one result on chain for {prompt}"
                result = requester.results[rid][0]
                result.verify_signature()
                assert result.output == f"answer({prompt})".encode()
                assert result.proof_kind is ProofKind.NONE  # http is not deterministic
                assert result.output_hash == keccak256(result.output)
            assert all(len(v) == 1 for v in requester.results.values())
        finally:
            await requester.adapter.close()
            await inference.stop()
