"""The task worker against a fake ServingBoard, with the real echo/sentiment executors, a counting
executor, a real SQLite store and a real local HTTP server for inputs by URI."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from relay.devstack import free_port
from relay.envelope import Envelope, keccak256
from relay.protocol import MessageKind
from relay.tasks.board import RequestExpired, ResultAlreadySubmitted
from relay.interfaces import IncomingRequest
from relay.tasks.executors import ExecutorRegistry, ExecutorUpstreamError, VerifyResult
from relay.tasks.payloads import ProofKind, TaskRequest, TaskResult, worker_public_key
from relay.tasks.worker import OUTPUT_TOO_LARGE, Worker, WorkerError, WorkerSettings, generate_identity, load_identity
from relay.tasks.worker_store import TaskStage, WorkerStore
from relay.backoff import Backoff

pytestmark = pytest.mark.timeout(60)

REQUESTER_DOMAIN = 31337
BOARD_DOMAIN = 900
BOARD = b"\x0b" * 32
REQUESTER_BOARD = b"\x00" * 12 + b"\xaa" * 20
PAYOUT = b"\x00" * 12 + b"\x77" * 20


class FakeBoard:
    """Yields queued deliveries, then waits; one result per request, like the real boards."""

    name = "fake"
    domain = BOARD_DOMAIN
    address = BOARD

    def __init__(self) -> None:
        self.deliveries: list[IncomingRequest] = []
        self.results: dict[bytes, bytes] = {}
        self.submissions: list[bytes] = []
        self.fail_submits = 0
        self.fail_reads = 0
        self.new = asyncio.Event()
        self.hold = asyncio.Event()
        self.hold.set()
        self.land_then_hang = False
        self.refuse_with: Exception | None = None  # the board's refusal of the next submission
        self.watched_from: list[str | None] = []

    def deliver(self, incoming: IncomingRequest) -> IncomingRequest:
        incoming = dataclasses.replace(incoming, cursor=str(len(self.deliveries) + 1))
        self.deliveries.append(incoming)
        self.new.set()
        return incoming

    async def watch_requests(self, cursor: str | None) -> AsyncIterator[IncomingRequest]:
        self.watched_from.append(cursor)
        index = 0 if cursor is None else int(cursor)
        while True:
            while index < len(self.deliveries):
                yield self.deliveries[index]
                index += 1
            self.new.clear()
            await self.new.wait()

    async def result_submitted(self, request_id: bytes) -> bool:
        if self.fail_reads:
            self.fail_reads -= 1
            raise ConnectionError("rpc endpoint timed out")
        return request_id in self.results

    async def submit_result(self, request_id: bytes, result_payload: bytes) -> str:
        self.submissions.append(request_id)
        await self.hold.wait()
        if self.fail_submits:
            self.fail_submits -= 1
            raise ConnectionError("rpc endpoint went away")
        if self.refuse_with is not None:
            refusal, self.refuse_with = self.refuse_with, None
            raise refusal
        if request_id in self.results:
            raise RuntimeError("board refuses: a result for this request was already sent")
        self.results[request_id] = result_payload
        if self.land_then_hang:
            await asyncio.Event().wait()
        return f"0xtx{len(self.results)}"

    async def close(self) -> None:
        pass


class Counting:
    """Deterministic-looking executor that counts its runs and can block until released."""

    id = "count"

    def __init__(self, deterministic: bool = False, output: bytes | None = None) -> None:
        self.deterministic = deterministic
        self.calls = 0
        self.release = asyncio.Event()
        self.release.set()
        self.started = asyncio.Event()
        self.output = output
        self.upstream_failures = 0

    async def run(self, input: bytes, *, deadline: float | None) -> bytes:
        self.calls += 1
        self.started.set()
        await self.release.wait()
        if self.upstream_failures:
            self.upstream_failures -= 1
            raise ExecutorUpstreamError("server answered 502")
        return self.output if self.output is not None else b"counted:" + input

    def verify(self, input: bytes, output: bytes) -> VerifyResult:
        return VerifyResult(True)


_nonce = 0


def incoming(request: TaskRequest | bytes, src_domain: int = REQUESTER_DOMAIN) -> IncomingRequest:
    global _nonce
    _nonce += 1
    payload = request.encode() if isinstance(request, TaskRequest) else request
    env = Envelope(kind=MessageKind.TASK_REQUEST, nonce=_nonce, src_domain=src_domain, src_sender=REQUESTER_BOARD,
                   dst_domain=BOARD_DOMAIN, dst_receiver=BOARD, payload=payload)
    decoded = request if isinstance(request, TaskRequest) else TaskRequest("echo", 0, 0, input=b"")
    return IncomingRequest(request_id=env.message_id, envelope=env, request=decoded, delivery_tx=f"0xdeliver{_nonce}",
                           position=_nonce, cursor=str(_nonce))


def req(executor: str = "echo", data: bytes = b"hello", fee: int = 10, in_s: float = 60) -> TaskRequest:
    return TaskRequest(executor, fee, int(time.time() + in_s), input=data)


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def counting() -> Counting:
    return Counting()


@pytest.fixture
def registry(counting: Counting) -> ExecutorRegistry:
    reg = ExecutorRegistry.load({})
    reg.register(counting)
    return reg


SETTINGS = WorkerSettings(executors=("echo", "sentiment", "count"), min_fee=5, min_time_left_s=5,
                          max_input_bytes=400, input_fetch_timeout_s=2, backoff=Backoff(base=0.05, cap=0.2))


@pytest.fixture(params=["sqlite", "postgresql"])
def worker_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a test's worker store lives: an SQLite file, or a new database on the run's PostgreSQL
    server (a restarted worker opens the same one); the tests taking it run on both engines."""
    if request.param == "sqlite":
        return str(tmp_path / "w.db")
    return request.getfixturevalue("postgres").create_database("worker")


async def make(worker_db: str, board: FakeBoard, registry: ExecutorRegistry, key, settings=SETTINGS) -> Worker:
    store = await WorkerStore.open(worker_db)
    return Worker(board, registry, key, {REQUESTER_DOMAIN: PAYOUT}, store, settings)


async def process_one(worker: Worker, board: FakeBoard, item: IncomingRequest):
    board.deliver(item)
    await worker.ingest(item)
    return await worker.process(item.request_id)


async def test_happy_path_signed_result(worker_db, registry, key) -> None:
    board = FakeBoard()
    worker = await make(worker_db, board, registry, key)
    for executor, data, kind in [("echo", b"ping", ProofKind.REEXECUTION),
                                 ("sentiment", b"What a wonderful day!", ProofKind.REEXECUTION),
                                 ("count", b"x", ProofKind.NONE)]:
        item = incoming(req(executor, data))
        record = await process_one(worker, board, item)
        assert record.stage is TaskStage.DONE, record.reason
        assert record.runs == 1 and record.submit_tx
        result = TaskResult.decode(board.results[item.request_id])
        result.verify_signature()
        assert result.request_id == item.request_id
        assert result.worker == worker_public_key(key)
        assert result.payout == PAYOUT
        assert result.proof_kind is kind
        assert result.executor == executor
        assert result.output == record.output
    assert TaskResult.decode(board.results[board.submissions[0]]).output == b"ping"
    sentiment = json.loads(TaskResult.decode(board.results[board.submissions[1]]).output)
    assert sentiment["label"] == "positive"
    await worker.store.close()


async def test_bad_requests_are_skipped_and_the_loop_keeps_going(worker_db, registry, key) -> None:
    inputs = web.Application()
    big = b"x" * 5000
    async def serve_big(request: web.Request) -> web.Response:
        return web.Response(body=big)

    async def serve_doc(request: web.Request) -> web.Response:
        return web.Response(body=b"the real document")

    async def serve_missing(request: web.Request) -> web.Response:
        return web.Response(status=404)

    inputs.router.add_get("/big", serve_big)
    inputs.router.add_get("/doc", serve_doc)
    inputs.router.add_get("/missing", serve_missing)
    runner = web.AppRunner(inputs)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}"
    deadline = int(time.time() + 60)

    cases = {
        "unknown": (incoming(req("nosuchexec")), TaskStage.SKIPPED, "not served"),
        "unserved": (incoming(req("http")), TaskStage.SKIPPED, "not served"),
        "expired": (incoming(req(in_s=-10)), TaskStage.SKIPPED, "deadline"),
        "too_close": (incoming(req(in_s=2)), TaskStage.SKIPPED, "min_time_left_s"),
        "cheap": (incoming(req(fee=1)), TaskStage.SKIPPED, "min_fee"),
        "no_payout": (incoming(req(), src_domain=4242), TaskStage.SKIPPED, "no payout address"),
        "ipfs": (incoming(TaskRequest.by_reference("echo", 10, deadline, b"doc", "ipfs://bafyabc")),
                 TaskStage.SKIPPED, "scheme ipfs://"),
        "hash_mismatch": (incoming(TaskRequest.by_reference("echo", 10, deadline, b"another document", f"{base}/doc")),
                          TaskStage.FAILED, "does not hash"),
        "oversized_uri": (incoming(TaskRequest.by_reference("echo", 10, deadline, big, f"{base}/big")),
                          TaskStage.SKIPPED, "max_input_bytes"),
        "oversized_inline": (incoming(req(data=b"y" * 469)), TaskStage.SKIPPED, "max_input_bytes"),
        "echo_too_big_out": (incoming(req(data=b"y" * 300)), TaskStage.SKIPPED, OUTPUT_TOO_LARGE),
        "not_found": (incoming(TaskRequest.by_reference("echo", 10, deadline, b"x", f"{base}/missing")),
                      TaskStage.FAILED, "HTTP 404"),
        "malformed": (incoming(b"\x01\x02garbage"), TaskStage.SKIPPED, "malformed TASK_REQUEST"),
        "truncated": (incoming(req().encode()[:30]), TaskStage.SKIPPED, "truncated"),
        "too_big_out": (incoming(req("count", b"z")), TaskStage.SKIPPED, OUTPUT_TOO_LARGE),
        "by_uri_ok": (incoming(TaskRequest.by_reference("echo", 10, deadline, b"the real document", f"{base}/doc")),
                      TaskStage.DONE, ""),
        "good": (incoming(req("echo", b"still serving")), TaskStage.DONE, ""),
    }
    board = FakeBoard()
    registry.get("count").output = b"o" * 299  # one byte over what fits inline
    worker = await make(worker_db, board, registry, key)
    stop = asyncio.Event()
    for name, (item, stage, reason) in list(cases.items()):
        cases[name] = (board.deliver(item), stage, reason)
    task = asyncio.create_task(worker.run(stop))
    try:
        async def all_final() -> bool:
            for item, _, _ in cases.values():
                record = await worker.store.get(item.request_id)
                if record is None or record.stage not in (TaskStage.DONE, TaskStage.SKIPPED, TaskStage.FAILED):
                    return False
            return True
        for _ in range(200):
            if await all_final():
                break
            await asyncio.sleep(0.05)
        for name, (item, stage, reason) in cases.items():
            record = await worker.store.get(item.request_id)
            assert record is not None, name
            assert record.stage is stage, (name, record.stage, record.reason)
            assert reason in record.reason, (name, record.reason)
        # Nothing skipped ran an executor; only served ones were answered.
        assert set(board.results) == {cases[n][0].request_id for n in ("by_uri_ok", "good")}
        assert TaskResult.decode(board.results[cases["by_uri_ok"][0].request_id]).output == b"the real document"
        assert (await worker.store.get(cases["unknown"][0].request_id)).runs == 0
        # The cursor follows the last delivery.
        assert await worker.store.get_cursor(worker.cursor_name) == str(len(cases))
    finally:
        stop.set()
        await task
        await worker.store.close()
        await runner.cleanup()


async def test_restart_after_executed_does_not_rerun(worker_db, registry, counting, key) -> None:
    board = FakeBoard()
    worker = await make(worker_db, board, registry, key)
    item = incoming(req("count", b"once"))
    board.deliver(item)
    await worker.ingest(item)
    board.hold.clear()  # the chain hangs: the worker is killed while its submission is in flight
    task = asyncio.create_task(worker.process(item.request_id))
    while not board.submissions:
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await worker.store.close()
    assert counting.calls == 1 and board.results == {}

    board.hold.set()
    worker2 = await make(worker_db, board, registry, key)
    record = await worker2.store.get(item.request_id)
    assert record.stage is TaskStage.SUBMITTED and record.output == b"counted:once" and record.submit_tx is None
    stop = asyncio.Event()
    run = asyncio.create_task(worker2.run(stop))
    for _ in range(100):
        if (await worker2.store.get(item.request_id)).stage is TaskStage.DONE:
            break
        await asyncio.sleep(0.02)
    stop.set()
    await run
    record = await worker2.store.get(item.request_id)
    assert record.stage is TaskStage.DONE and record.runs == 1 and record.submit_tx
    assert counting.calls == 1  # the executor never ran again
    assert list(board.results) == [item.request_id]
    assert TaskResult.decode(board.results[item.request_id]).output == b"counted:once"
    await worker2.store.close()


async def test_restart_resumes_watching_after_the_cursor(worker_db, registry, counting, key) -> None:
    board = FakeBoard()
    first = [board.deliver(incoming(req("count", b"%d" % i))) for i in range(2)]
    for round_ in range(2):
        worker = await make(worker_db, board, registry, key)
        stop = asyncio.Event()
        run = asyncio.create_task(worker.run(stop))
        for _ in range(200):
            if len(board.results) == 2 + round_:
                break
            await asyncio.sleep(0.02)
        stop.set()
        await run
        await worker.store.close()
        if round_ == 0:
            later = board.deliver(incoming(req("count", b"later")))
    assert board.watched_from == [None, first[-1].cursor]
    assert set(board.results) == {first[0].request_id, first[1].request_id, later.request_id}
    assert counting.calls == 3 and len(board.submissions) == 3


async def test_restart_after_submission_landed_does_not_resubmit(worker_db, registry, counting, key) -> None:
    board = FakeBoard()
    worker = await make(worker_db, board, registry, key)
    item = incoming(req("count", b"landed"))
    await worker.ingest(item)
    board.land_then_hang = True  # the transaction lands, then the worker dies before recording it
    task = asyncio.create_task(worker.process(item.request_id))
    while item.request_id not in board.results:
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await worker.store.close()

    board.land_then_hang = False
    worker2 = await make(worker_db, board, registry, key)
    record = await worker2.process(item.request_id)
    assert record.stage is TaskStage.DONE and "before a restart" in record.reason
    assert counting.calls == 1 and board.submissions == [item.request_id]
    await worker2.store.close()


async def test_restart_after_running_reruns_once(worker_db, registry, counting, key) -> None:
    board = FakeBoard()
    worker = await make(worker_db, board, registry, key)
    item = incoming(req("count", b"slow"))
    await worker.ingest(item)
    counting.release.clear()
    task = asyncio.create_task(worker.process(item.request_id))
    await counting.started.wait()
    task.cancel()  # killed mid-execution
    await asyncio.gather(task, return_exceptions=True)
    assert (await worker.store.get(item.request_id)).stage is TaskStage.RUNNING
    await worker.store.close()

    counting.release.set()
    worker2 = await make(worker_db, board, registry, key)
    record = await worker2.process(item.request_id)
    assert record.stage is TaskStage.DONE, record.reason
    assert record.runs == 2 and counting.calls == 2
    assert board.submissions == [item.request_id]

    # Killed mid-execution twice: the worker gives up instead of looping on a task that kills it.
    item2 = incoming(req("count", b"crashes the worker"))
    await worker2.ingest(item2)
    for _ in range(2):
        counting.release.clear()
        counting.started.clear()
        task = asyncio.create_task(worker2.process(item2.request_id))
        await counting.started.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    record = await worker2.process(item2.request_id)
    assert record.stage is TaskStage.FAILED and "interrupted 2 times" in record.reason
    assert item2.request_id not in board.results
    await worker2.store.close()


async def test_already_answered_is_not_submitted(worker_db, registry, counting, key) -> None:
    board = FakeBoard()
    worker = await make(worker_db, board, registry, key)
    before = incoming(req("count", b"a"))
    board.results[before.request_id] = b"someone else's result"
    record = await process_one(worker, board, before)
    assert record.stage is TaskStage.LOST and counting.calls == 0  # not even executed

    # Answered by someone else while we executed: ours is not sent.
    during = incoming(req("count", b"b"))
    counting.release.clear()
    await worker.ingest(during)
    task = asyncio.create_task(worker.process(during.request_id))
    await counting.started.wait()
    board.results[during.request_id] = b"faster worker"
    counting.release.set()
    record = await task
    assert record.stage is TaskStage.LOST and record.runs == 1
    assert board.submissions == []
    await worker.store.close()


async def test_a_board_refusal_ends_the_task_at_once(worker_db, registry, counting, key) -> None:
    """The shared refusals (relay.tasks.board) are permanent: no retries, the right final stage."""
    board = FakeBoard()
    worker = await make(worker_db, board, registry, key)
    # Another result landed between our check and our transaction: lost, never retried.
    board.refuse_with = ResultAlreadySubmitted("the result", "ResultAlreadySubmitted(0x01)", board="the fake board")
    record = await process_one(worker, board, incoming(req("count", b"race")))
    assert record.stage is TaskStage.LOST and len(board.submissions) == 1
    # The deadline passed on chain (clocks differ): failed with the board's reason, never retried.
    board.refuse_with = RequestExpired("the result", "RequestExpired(0x02, 1700000000)", board="the fake board")
    record = await process_one(worker, board, incoming(req("count", b"late")))
    assert record.stage is TaskStage.FAILED and "deadline passed" in record.reason and len(board.submissions) == 2
    await worker.store.close()


async def test_transient_failures_are_retried(worker_db, registry, counting, key) -> None:
    hits = {"n": 0}

    async def flaky(request: web.Request) -> web.Response:
        hits["n"] += 1
        return web.Response(status=503) if hits["n"] < 3 else web.Response(body=b"payload")

    app = web.Application()
    app.router.add_get("/flaky", flaky)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        board = FakeBoard()
        worker = await make(worker_db, board, registry, key)
        item = incoming(TaskRequest.by_reference("echo", 10, int(time.time() + 60), b"payload",
                                                 f"http://127.0.0.1:{port}/flaky"))
        board.fail_submits = 2
        board.fail_reads = 2  # the pre-execution check and the first pre-submission check
        record = await process_one(worker, board, item)
        assert record.stage is TaskStage.DONE, record.reason
        assert hits["n"] == 3 and len(board.submissions) == 3 and board.fail_reads == 0

        counting.upstream_failures = 1
        item2 = incoming(req("count", b"u"))
        record = await process_one(worker, board, item2)
        assert record.stage is TaskStage.DONE and record.runs == 2

        # An unreachable input server is retried until the deadline leaves no time, then failed.
        dead = free_port()
        worker.settings = dataclasses.replace(SETTINGS, min_time_left_s=1)
        item3 = incoming(TaskRequest.by_reference("echo", 10, int(time.time() + 3), b"x", f"http://127.0.0.1:{dead}/x"))
        record = await process_one(worker, board, item3)
        assert record.stage is TaskStage.FAILED and "no time left" in record.reason
        await worker.store.close()
    finally:
        await runner.cleanup()


async def test_unservable_configuration_fails_at_start(tmp_path, key) -> None:
    store = await WorkerStore.open(tmp_path / "w.db")
    with pytest.raises(Exception, match="http"):
        Worker(FakeBoard(), ExecutorRegistry.load({}), key, {REQUESTER_DOMAIN: PAYOUT}, store,
               WorkerSettings(executors=("echo", "http")))  # http without base_url/model
    await store.close()


def test_identity_keygen(tmp_path) -> None:
    path = tmp_path / "keys" / "worker.key"
    key = generate_identity(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert worker_public_key(load_identity(path)) == worker_public_key(key)
    with pytest.raises(WorkerError, match="already exists"):
        generate_identity(path)
    with pytest.raises(WorkerError, match="keygen"):
        load_identity(tmp_path / "nope.key")
    (tmp_path / "bad.key").write_text("zz")
    with pytest.raises(WorkerError, match="32-byte"):
        load_identity(tmp_path / "bad.key")


async def test_large_output_is_served_by_uri_from_the_worker(worker_db, registry, counting, key) -> None:
    from relay.daemons.worker import _build_app

    port = free_port()
    board = FakeBoard()
    settings = dataclasses.replace(SETTINGS, output_url=f"http://127.0.0.1:{port}")
    worker = await make(worker_db, board, registry, key, settings)
    runner = web.AppRunner(_build_app(worker))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        counting.output = bytes(range(256)) * 8  # 2,048 bytes: far over the 298 that fit inline
        item = incoming(req("count", b"big"))
        record = await process_one(worker, board, item)
        assert record.stage is TaskStage.DONE, record.reason
        result = TaskResult.decode(board.results[item.request_id])
        result.verify_signature()
        assert result.output is None and result.output_hash == keccak256(counting.output)
        assert result.output_uri == f"http://127.0.0.1:{port}/v1/outputs/0x{result.output_hash.hex()}"
        async with aiohttp.ClientSession() as session:
            async with session.get(result.output_uri) as resp:
                assert resp.status == 200 and await resp.read() == counting.output
            async with session.get(f"http://127.0.0.1:{port}/v1/outputs/0x{'00' * 32}") as resp:
                assert resp.status == 404
            async with session.get(f"http://127.0.0.1:{port}/v1/outputs/nothex") as resp:
                assert resp.status == 400 and "64 hex digits" in (await resp.json())["error"]
            async with session.get(f"http://127.0.0.1:{port}/health") as resp:
                assert (await resp.json())["tasks"] == {"done": 1}
    finally:
        await runner.cleanup()
        await worker.store.close()


async def test_concurrency_is_bounded(worker_db, registry, key) -> None:
    running = {"now": 0, "max": 0}
    release = asyncio.Event()

    class Slow:
        id = "slow"
        deterministic = True

        async def run(self, input: bytes, *, deadline: float | None) -> bytes:
            running["now"] += 1
            running["max"] = max(running["max"], running["now"])
            await release.wait()
            running["now"] -= 1
            return input

        def verify(self, input: bytes, output: bytes) -> VerifyResult:
            return VerifyResult(output == input)

    registry.register(Slow())
    board = FakeBoard()
    settings = dataclasses.replace(SETTINGS, executors=("slow",), concurrency=2)
    worker = await make(worker_db, board, registry, key, settings)
    items = [board.deliver(incoming(req("slow", b"%d" % i))) for i in range(5)]
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        for _ in range(100):
            if running["now"] == 2:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        assert running == {"now": 2, "max": 2}
        seen = [await worker.store.get(i.request_id) for i in items]
        assert all(r is not None for r in seen)  # all recorded while only two run
        release.set()
        for _ in range(200):
            if len(board.results) == 5:
                break
            await asyncio.sleep(0.01)
        assert len(board.results) == 5 and running["max"] == 2
    finally:
        stop.set()
        await task
        await worker.store.close()
