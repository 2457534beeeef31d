"""bench/loadgen.py's pieces that need no chain: CPU accounting per process, the JSON-RPC batch, the
paced schedule and the sustained run's figures and verdict."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bench.loadgen import (LoadError, Rpc, cpu_seconds, due_by, paced_stats, process_cpu, submit_paced,
                           sustained_verdict)

# Burns 0.3 CPU-s of its own (not wall time: the machine may be busy), then sleeps.
BUSY_THEN_SLEEP = "import time\nwhile time.process_time() < 0.3: pass\nprint('busy done', flush=True)\ntime.sleep(30)\n"


def test_a_named_child_is_counted_under_its_own_name_not_its_parents():
    child = subprocess.Popen([sys.executable, "-c", BUSY_THEN_SLEEP], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "busy done"
        me = os.getpid()
        named = process_cpu({"me": me, "child": child.pid})
        alone = process_cpu({"me": me})
        assert named["child"] >= 0.28  # its busy loop (clock ticks of 10 ms)
        assert alone["me"] - named["me"] >= 0.28  # unnamed, it is added to its parent; named, it is not
    finally:
        child.kill()
        child.wait()


def test_cpu_seconds_of_a_process_that_is_gone_is_none():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    time.sleep(0.05)
    assert cpu_seconds(child.pid) is None


async def test_rpc_batch_returns_results_in_order_and_names_the_call_that_failed():
    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        replies = []
        for call in reversed(body):  # out of order: matched by id
            if call["method"] == "bad":
                replies.append({"jsonrpc": "2.0", "id": call["id"], "error": {"code": -32000, "message": "nope"}})
            else:
                replies.append({"jsonrpc": "2.0", "id": call["id"], "result": call["params"][0]})
        return web.json_response(replies)

    app = web.Application()
    app.router.add_post("/", handle)
    async with TestServer(app, port=0) as server:
        rpc = Rpc(str(server.make_url("/")))
        try:
            assert await rpc.batch([("echo", [1]), ("echo", [2]), ("echo", [3])]) == [1, 2, 3]
            with pytest.raises(LoadError, match="bad failed: .*nope"):
                await rpc.batch([("echo", [1]), ("bad", [2])])
        finally:
            await rpc.close()


# --- sustained (paced) runs ---------------------------------------------------------------------------

def stream(rate: float, duration: float, serve) -> tuple[list[float], list[float]]:
    """Submissions at `rate` for `duration` s (from t = 100), confirmations from `serve(i, submitted,
    previous confirmation)`."""
    subs, confs = [], []
    for i in range(int(rate * duration)):
        s = 100 + i / rate
        confs.append(serve(i, s, confs[-1] if confs else 0.0))
        subs.append(s)
    return subs, confs


def test_a_relay_with_a_flat_latency_kept_up():
    subs, confs = stream(300, 10, lambda i, s, prev: s + 1.2 + 0.3 * (i % 7) / 7)  # 1.2-1.5 s, no trend
    stats = paced_stats(subs, confs, 300, 10)
    assert stats.offered == pytest.approx(300, rel=0.01)
    assert stats.offered_per_second == [300] * 10
    assert stats.steady == pytest.approx(300, rel=0.02)
    assert stats.latency["second half"]["p99"] == pytest.approx(stats.latency["first half"]["p99"], abs=0.01)
    assert 300 <= stats.backlog[0] <= 301 and stats.backlog[-1] == 0 and max(stats.backlog) <= 460  # +1 s: all sent, none confirmed
    kept, line = sustained_verdict(300, stats.steady, stats.latency["first half"]["p99"],
                                   stats.latency["second half"]["p99"])
    assert kept and line.startswith("sustained 300 msg/s: kept up")


def test_a_relay_that_delivers_200_of_300_per_second_fell_behind():
    subs, confs = stream(300, 10, lambda i, s, prev: max(s + 1.0, prev + 1 / 200))
    stats = paced_stats(subs, confs, 300, 10)
    assert stats.steady == pytest.approx(200, rel=0.02)
    assert stats.latency["second half"]["p99"] > stats.latency["first half"]["p99"] + 2  # the queue grows
    assert stats.backlog[9] > stats.backlog[4] > stats.backlog[1]  # and so does the backlog
    kept, line = sustained_verdict(300, stats.steady, stats.latency["first half"]["p99"],
                                   stats.latency["second half"]["p99"])
    assert not kept and "fell behind" in line and "steady 200" in line


def test_a_rate_that_holds_while_the_latency_grows_is_falling_behind():
    # Every message delivered, the steady rate still >= 95 %, but in the second half 1 in 20 waits
    # 2.5 s instead of 0.4 s: the tail grows, so the relay is not keeping up.
    subs, confs = stream(300, 10, lambda i, s, prev: s + (2.5 if i >= 1500 and i % 20 == 0 else 0.4))
    stats = paced_stats(subs, confs, 300, 10)
    assert stats.steady >= 0.95 * 300
    assert stats.latency["first half"]["p99"] == pytest.approx(0.4)
    assert stats.latency["second half"]["p99"] == pytest.approx(2.5)
    kept, line = sustained_verdict(300, stats.steady, stats.latency["first half"]["p99"],
                                   stats.latency["second half"]["p99"])
    assert not kept and "fell behind" in line and "p99 latency 0.40 s -> 2.50 s > 1.10 s" in line


@pytest.mark.parametrize("steady, p99_first, p99_second, kept", [
    (285.0, 1.0, 2.0, True),     # exactly 95 % and exactly 1.5 x 1.0 + 0.5
    (284.9, 1.0, 1.0, False),    # just under 95 %
    (300.0, 1.0, 2.01, False),   # latency just over the bound
    (310.0, 0.2, 0.8, True),     # a small first-half p99: the + 0.5 s absorbs jitter
])
def test_the_verdicts_bounds(steady, p99_first, p99_second, kept):
    assert sustained_verdict(300, steady, p99_first, p99_second)[0] is kept


def test_paced_stats_refuses_mismatched_or_impossible_data():
    with pytest.raises(ValueError, match="one confirmation time per submission"):
        paced_stats([1.0, 2.0], [3.0], 10, 10)
    with pytest.raises(ValueError, match="confirmed before it was submitted"):
        paced_stats([1.0, 2.0], [3.0, 1.5], 10, 10)
    with pytest.raises(ValueError, match="steady part"):
        paced_stats([1.0], [2.0], 10, 2, steady_from=2.0)


def test_due_by_is_a_monotonic_schedule_capped_at_n():
    assert [due_by(300, k, 3000) for k in range(3)] == [30, 60, 90]
    assert due_by(300, 99, 3000) == 3000 and due_by(300, 150, 3000) == 3000
    assert [due_by(5, k, 10) for k in range(4)] == [0, 1, 1, 2]  # half a transaction per tick
    assert due_by(333, 2, 10**6) == 99  # rounded down: never ahead of rate x time


class FakeLoad:
    """Records when each transaction was handed to the node; no chain."""

    name = "fake"

    def __init__(self, slow_first: float = 0.0) -> None:
        self.sent_at: dict[str, float] = {}
        self.slow_first = slow_first
        self.origin = 0.0

    async def _start(self) -> None:
        self.origin = time.monotonic()

    async def _due(self, prepared, start, stop, rate):
        return prepared[start:stop]

    async def _send(self, chunk) -> None:
        now = time.monotonic()
        if self.slow_first and not self.sent_at:
            await asyncio.sleep(self.slow_first)  # a late first reply: the schedule must catch up, not drift
        for tx_id, _ in chunk:
            self.sent_at[tx_id] = now


async def test_submit_paced_never_goes_ahead_of_the_schedule_and_catches_up():
    prepared = [(f"tx{i}", "raw") for i in range(60)]
    load = FakeLoad(slow_first=0.25)
    burst = await submit_paced(load, prepared, rate=200, tick=0.05)  # 10 per tick, 0.3 s in all
    assert burst.tx_ids == [tx for tx, _ in prepared]
    assert set(burst.submitted_at) == set(burst.tx_ids)
    for tx, at in load.sent_at.items():
        index = int(tx[2:])
        scheduled = (index // 10) * 0.05  # the tick at which it became due
        assert at - load.origin >= scheduled - 1e-3  # never ahead
    # Caught up: the slow first reply (IN_FLIGHT requests at once) did not push the end back by 0.25 s.
    assert max(load.sent_at.values()) - load.origin < 0.25 + 0.3


async def test_submit_paced_refuses_a_bad_rate_and_raises_a_failed_send():
    with pytest.raises(LoadError, match="positive"):
        await submit_paced(FakeLoad(), [("a", "raw")], rate=0)

    class Failing(FakeLoad):
        async def _send(self, chunk) -> None:
            raise LoadError("node said no")

    with pytest.raises(LoadError, match="node said no"):
        await submit_paced(Failing(), [(f"tx{i}", "raw") for i in range(20)], rate=100, tick=0.05)


async def test_solana_paced_transactions_are_signed_again_before_their_blockhash_gets_too_old():
    from solders.hash import Hash
    from solders.instruction import Instruction
    from solders.keypair import Keypair
    from solders.pubkey import Pubkey
    from solders.transaction import VersionedTransaction

    from bench.loadgen import SOLANA_RESIGN_AFTER_S, SolanaLoad, SolanaPrepared

    load = SolanaLoad.__new__(SolanaLoad)  # no node: only the signing is exercised
    load.payers = [Keypair(), Keypair()]
    fresh = Hash.new_unique()

    async def blockhash():
        return fresh

    load._blockhash = blockhash
    program = Pubkey.new_unique()
    instructions = [[Instruction(program, bytes([i]), [])] for i in range(12)]
    old = Hash.new_unique()
    prepared = SolanaPrepared(instructions, load._sign(instructions, 0, old), time.monotonic())
    before = list(prepared.signed)

    # Young enough: sent as signed.
    assert await load._due(prepared, 0, 3, rate=5) == before[0:3]
    # Aged past the bound minus a second: these and the next second's worth (rate 5) are signed again
    # with a fresh blockhash, by the same payers in the same order; the rest stay as they were.
    prepared.signed_at_of = [time.monotonic() - (SOLANA_RESIGN_AFTER_S - 0.5)] * len(prepared)
    due = await load._due(prepared, 3, 5, rate=5)
    assert due == prepared.signed[3:5]
    assert all(a[0] != b[0] for a, b in zip(prepared.signed[3:8], before[3:8]))
    assert prepared.signed[8:] == before[8:] and prepared.signed[:3] == before[:3]
    assert max(time.monotonic() - t for t in prepared.signed_at_of[3:8]) < 1.0
    tx = VersionedTransaction.from_bytes(base64.b64decode(prepared.signed[4][1]))
    assert tx.message.recent_blockhash == fresh and tx.message.account_keys[0] == load.payers[4 % 2].pubkey()
    assert tx.verify_with_results() == [True]
