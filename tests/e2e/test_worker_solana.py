"""`relay worker --chain solana` as a real process serving the Solana task board (the Tessera
program on the Solana localnet server): committee-signed TASK_REQUEST v2s delivered to the board are
claimed and answered through the board, unserved ones are skipped, and a worker SIGKILLed
mid-execution resumes with exactly one result on chain."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

import attest
from adapters.registry import driver_for
from solders.keypair import Keypair

from adapters.solana.taskboard import SolanaTaskBoardV2
from relay.interfaces import DeliveryState, ServeState, SignedDelivery
from relay.config import load_config
from relay.daemons.messaging import _load_share
from relay.devstack import messaging_stack
from relay.envelope import Envelope
from relay.protocol import MessageKind
from relay.tasks.payloads import ProofKind, TaskRequestV2, TaskResultV2
from tests.support.waiting import wait_for
from tests.support.worker import Inference, stages

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

REQUESTER_BOARD = b"\x00" * 12 + b"\xb0" * 20  # an EVM-side requester board
REFUND_TO = bytes(Keypair().pubkey())  # a Solana account: receives forfeited bonds


def request(executor: str, deadline: int, input: bytes) -> TaskRequestV2:
    """A TASK_REQUEST v2 claimable at once (no auction), with a long claim window and no bond."""
    return TaskRequestV2(executor, max_fee=10, deadline=deadline, auction_window=0, start_bps=10_000,
                         claim_window=600, bond=0, refund_to=REFUND_TO, input=input)


class SolanaRequester:
    def __init__(self, config_path: Path) -> None:
        config = load_config(config_path)
        self.config = config
        committee = attest.Committee.load(config.committee.file)
        self.epoch = committee.epoch
        self.shares = [_load_share(config, committee, i) for i in (1, 2, 4)]
        self.src_domain = config.chains["evm"].domain
        self.adapter = driver_for("solana", config.chains["solana"]).messaging()  # the relayer's fee payer; no relayer runs
        self.board = SolanaTaskBoardV2.from_config("solana", config.chains["solana"], role="requester")
        self.nonce = 0
        self.results: dict[bytes, list[TaskResultV2]] = {}
        self._cursor: str | None = None

    async def deliver(self, request: TaskRequestV2) -> bytes:
        self.nonce += 1
        envelope = Envelope(MessageKind.TASK_REQUEST, self.nonce, self.src_domain, REQUESTER_BOARD,
                            self.config.chains["solana"].domain, self.board.address, request.encode())
        digest = envelope.digest(self.epoch)
        signature = attest.combine_signatures([attest.partial_sign(s, digest) for s in self.shares])
        tx = await self.adapter.submit(SignedDelivery(envelope=envelope, epoch=self.epoch, signature=signature))
        deadline = time.monotonic() + 30
        while (status := await self.adapter.delivery_status(tx)).state is DeliveryState.PENDING:
            assert time.monotonic() < deadline, "delivery not final in time"
            await asyncio.sleep(0.1)
        assert status.state is DeliveryState.CONFIRMED, status
        return envelope.message_id

    def have(self, *request_ids: bytes):
        async def check() -> bool:
            await self.collect_results()
            return all(r in self.results for r in request_ids)

        return check

    async def collect_results(self) -> None:
        """TASK_RESULT envelopes the Solana gateway sent (final), by request id."""
        async def scan() -> None:
            async for obs in self.adapter.watch(self._cursor):
                self._cursor = obs.cursor
                if obs.envelope.kind == MessageKind.TASK_RESULT:
                    assert obs.envelope.src_sender == self.board.address  # sent by the board
                    assert obs.envelope.dst_receiver == REQUESTER_BOARD
                    result = TaskResultV2.decode(obs.envelope.payload)
                    self.results.setdefault(result.request_id, []).append(result)

        try:
            await asyncio.wait_for(scan(), timeout=2.0)
        except asyncio.TimeoutError:
            pass

    async def close(self) -> None:
        await self.board.close()
        await self.adapter.close()


async def test_solana_worker_process_serves_skips_and_resumes_after_sigkill(tmp_path: Path) -> None:
    inference = Inference()
    await inference.start()
    async with messaging_stack(tmp_path, attesters=(), relayer=False) as stack:
        requester = SolanaRequester(stack.config_path)
        try:
            worker = await stack.start_worker(
                "solana", executor_options={"http": {"base_url": f"http://127.0.0.1:{inference.port}", "model": "m"}},
                executors=["echo", "sentiment", "http"], min_time_left_s=2,
            )
            config = load_config(stack.state_dir / "config-worker-solana.toml")
            db = Path(config.worker.db)
            payout_evm = config.worker.payout_by_domain(config)[requester.src_domain]
            deadline = int(time.time()) + 600

            good = await requester.deliver(request("echo", deadline, b"hello solana"))
            unknown = await requester.deliver(request("nosuchexec", deadline, b"x"))
            slow = await requester.deliver(request("http", deadline, b"slow: a haiku"))
            await wait_for(lambda: stages(db).get(good, ("",))[0] == "done", timeout=60, what="echo done")
            assert stages(db)[unknown][0] == "skipped" and "not served" in stages(db)[unknown][1]
            await wait_for(lambda: inference.calls.get("slow: a haiku") == 1, timeout=30, what="http call in flight")
            assert stages(db)[slow][0] == "running"
            os.kill(worker.pid, signal.SIGKILL)
            worker.process.wait(10)

            await stack.start_worker("solana")
            await wait_for(lambda: stages(db)[slow][0] == "done", timeout=60, what="http task done after restart")
            assert stages(db)[slow][2] == 2 and inference.calls["slow: a haiku"] == 2
            assert stages(db)[good][2] == 1  # finished before the kill: never run again

            await wait_for(requester.have(good, slow), timeout=60, what="results sent by the Solana board")
            await asyncio.sleep(1)
            await requester.collect_results()
            echo = requester.results[good][0]
            echo.verify_signature()
            assert echo.output == b"hello solana" and echo.proof_kind is ProofKind.REEXECUTION
            assert echo.payout == payout_evm and echo.price == 10  # the claim it answers (no auction: max_fee)
            assert requester.results[slow][0].output == b"answer(slow: a haiku)"
            assert unknown not in requester.results
            assert all(len(v) == 1 for v in requester.results.values()), "exactly one result per request"
            assert (await requester.board.claim_status(slow)).state in (ServeState.ANSWERED, ServeState.CLOSED)
        finally:
            await requester.close()
            await inference.stop()
