"""The task worker (WorkerV2) against a fake serving board, with the real echo/sentiment executors,
a counting executor, a real SQLite/PostgreSQL store and a real local HTTP server for inputs by URI:
what a worker does around the claim (serving decision, input, execution, restarts, retries,
outputs by URI, concurrency). The claim and auction themselves: tests/unit/test_worker_v2.py."""

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
from relay.interfaces import Claim, ClaimStatus, IncomingRequestV2, ServeState
from relay.protocol import MessageKind
from relay.tasks.board import ClaimNotHeld, RequestExpired
from relay.tasks.executors import ExecutorRegistry, ExecutorUpstreamError, VerifyResult
from relay.tasks.payloads import (MAX_INLINE_OUTPUT_LEN_V2, ProofKind, TaskRequest, TaskRequestV2, TaskResultV2,
                                  worker_public_key)
from relay.tasks.worker import (OUTPUT_TOO_LARGE, RETIRED_V1, WorkerError, WorkerSettings, WorkerV2,
                                generate_identity, load_identity)
from relay.tasks.worker_store import TaskStage, WorkerStore
from relay.backoff import Backoff

pytestmark = pytest.mark.timeout(60)

REQUESTER_DOMAIN = 31337
BOARD_DOMAIN = 900
BOARD = b"\x0b" * 32
REQUESTER_BOARD = b"\x00" * 12 + b"\xaa" * 20
PAYOUT = b"\x00" * 12 + b"\x77" * 20
ACCOUNT, OTHER = b"\x0c" * 32, b"\x0d" * 32


class FakeBoard:
    """A v2 serving board: yields queued deliveries, then waits; claims at max_fee (no auction
    window here), one claimant, one result per request, like the real boards."""

    name = "fake"
    domain = BOARD_DOMAIN
    address = BOARD
    account = ACCOUNT

    def __init__(self) -> None:
        self.deliveries: list[IncomingRequestV2] = []
        self.status: dict[bytes, ClaimStatus] = {}
        self.requests: dict[bytes, TaskRequestV2] = {}
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

    def deliver(self, incoming: IncomingRequestV2) -> IncomingRequestV2:
        for delivered in self.deliveries:  # delivered once: a second call changes nothing
            if delivered.request_id == incoming.request_id:
                return delivered
        incoming = dataclasses.replace(incoming, cursor=str(len(self.deliveries) + 1))
        self.deliveries.append(incoming)
        self.requests[incoming.request_id] = incoming.request
        self.status[incoming.request_id] = ClaimStatus(incoming.request_id, ServeState.OPEN,
                                                       deadline=incoming.request.deadline, bond=incoming.request.bond)
        self.new.set()
        return incoming

    def answered_by_another(self, request_id: bytes) -> None:
        self.status[request_id] = ClaimStatus(request_id, ServeState.CLOSED, claimant=OTHER)
        self.results[request_id] = b"someone else's result"

    async def watch_requests(self, cursor: str | None) -> AsyncIterator[IncomingRequestV2]:
        self.watched_from.append(cursor)
        index = 0 if cursor is None else int(cursor)
        while True:
            while index < len(self.deliveries):
                yield self.deliveries[index]
                index += 1
            self.new.clear()
            await self.new.wait()

    async def chain_time(self) -> int:
        return int(time.time())

    async def claim_status(self, request_id: bytes) -> ClaimStatus:
        if self.fail_reads and request_id in self.status and self.status[request_id].state is ServeState.CLAIMED:
            self.fail_reads -= 1
            raise ConnectionError("rpc endpoint timed out")
        return self.status.get(request_id, ClaimStatus(request_id, ServeState.NONE))

    async def claim(self, request_id: bytes, payout: bytes) -> Claim:
        request, status = self.requests[request_id], self.status[request_id]
        if status.state is ServeState.CLAIMED and status.claimant == ACCOUNT:
            return Claim(request_id, ACCOUNT, status.payout, status.price, status.claim_deadline, request.bond, None)
        now = int(time.time())
        deadline = min(now + request.claim_window, request.deadline)
        self.status[request_id] = ClaimStatus(request_id, ServeState.CLAIMED, claimant=ACCOUNT, payout=payout,
                                              price=request.max_fee, claim_deadline=deadline, deadline=request.deadline)
        return Claim(request_id, ACCOUNT, payout, request.max_fee, deadline, request.bond, "0xclaim")

    async def submit_result(self, request_id: bytes, result_payload: bytes) -> str:
        self.submissions.append(request_id)
        await self.hold.wait()
        if self.fail_submits:
            self.fail_submits -= 1
            raise ConnectionError("rpc endpoint went away")
        if self.refuse_with is not None:
            refusal, self.refuse_with = self.refuse_with, None
            raise refusal
        status = self.status[request_id]
        if status.state is not ServeState.CLAIMED or status.claimant != ACCOUNT:
            raise ClaimNotHeld("the result", "NotClaimant(...)", error="NotClaimant")
        self.results[request_id] = result_payload
        self.status[request_id] = dataclasses.replace(status, state=ServeState.ANSWERED)
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
_PLACEHOLDER = TaskRequestV2("echo", 0, 0, 0, 0, 1, 0, b"\x01" * 32, input=b"")


def incoming(request: TaskRequestV2 | bytes, src_domain: int = REQUESTER_DOMAIN) -> IncomingRequestV2:
    global _nonce
    _nonce += 1
    payload = request.encode() if isinstance(request, TaskRequestV2) else request
    env = Envelope(kind=MessageKind.TASK_REQUEST, nonce=_nonce, src_domain=src_domain, src_sender=REQUESTER_BOARD,
                   dst_domain=BOARD_DOMAIN, dst_receiver=BOARD, payload=payload)
    decoded = request if isinstance(request, TaskRequestV2) else _PLACEHOLDER
    return IncomingRequestV2(request_id=env.message_id, envelope=env, request=decoded, auction_start=int(time.time()),
                             delivery_tx=f"0xdeliver{_nonce}", position=_nonce, cursor=str(_nonce))


def req(executor: str = "echo", data: bytes = b"hello", fee: int = 10, in_s: float = 60) -> TaskRequestV2:
    return TaskRequestV2(executor, fee, int(time.time() + in_s), auction_window=0, start_bps=10_000, claim_window=30,
                         bond=1, refund_to=b"\x01" * 32, input=data)


def by_reference(executor: str, fee: int, deadline: int, content: bytes, uri: str) -> TaskRequestV2:
    return TaskRequestV2(executor, fee, deadline, auction_window=0, start_bps=10_000, claim_window=30, bond=1,
                         refund_to=b"\x01" * 32, input_hash=keccak256(content), input_uri=uri)


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
                          max_input_bytes=400, input_fetch_timeout_s=2, backoff=Backoff(base=0.05, cap=0.2), claim_poll_s=0.05)


@pytest.fixture(params=["sqlite", "postgresql"])
def worker_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a test's worker store lives: an SQLite file, or a new database on the run's PostgreSQL
    server (a restarted worker opens the same one); the tests taking it run on both engines."""
    if request.param == "sqlite":
        return str(tmp_path / "w.db")
    return request.getfixturevalue("postgres").create_database("worker")


async def make(worker_db: str, board: FakeBoard, registry: ExecutorRegistry, key, settings=SETTINGS) -> WorkerV2:
    store = await WorkerStore.open(worker_db)
    return WorkerV2(board, registry, key, {REQUESTER_DOMAIN: PAYOUT}, store, settings)  # type: ignore[arg-type]


async def process_one(worker: WorkerV2, board: FakeBoard, item: IncomingRequestV2):
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
        result = TaskResultV2.decode(board.results[item.request_id])
        result.verify_signature()
        assert result.request_id == item.request_id
        assert result.worker == worker_public_key(key)
        assert (result.claimant, result.payout, result.price) == (ACCOUNT, PAYOUT, 10)
        assert result.proof_kind is kind
        assert result.executor == executor
        assert result.output == record.output
    assert TaskResultV2.decode(board.results[board.submissions[0]]).output == b"ping"
    sentiment = json.loads(TaskResultV2.decode(board.results[board.submissions[1]]).output)
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
        "cheap": (incoming(req(fee=1)), TaskStage.SKIPPED, "below this worker's price 5"),
        "no_payout": (incoming(req(), src_domain=4242), TaskStage.SKIPPED, "no payout address"),
        "ipfs": (incoming(by_reference("echo", 10, deadline, b"doc", "ipfs://bafyabc")),
                 TaskStage.SKIPPED, "scheme ipfs://"),
        "hash_mismatch": (incoming(by_reference("echo", 10, deadline, b"another document", f"{base}/doc")),
                          TaskStage.FAILED, "does not hash"),
        "oversized_uri": (incoming(by_reference("echo", 10, deadline, big, f"{base}/big")),
                          TaskStage.SKIPPED, "max_input_bytes"),
        "oversized_inline": (incoming(req(data=b"y" * 401)), TaskStage.SKIPPED, "max_input_bytes"),
        "echo_too_big_out": (incoming(req(data=b"y" * (MAX_INLINE_OUTPUT_LEN_V2 + 1))), TaskStage.SKIPPED,
                             OUTPUT_TOO_LARGE),
        "not_found": (incoming(by_reference("echo", 10, deadline, b"x", f"{base}/missing")),
                      TaskStage.FAILED, "HTTP 404"),
        "malformed": (incoming(b"\x02garbage"), TaskStage.SKIPPED, "malformed TASK_REQUEST v2"),
        "truncated": (incoming(req().encode()[:30]), TaskStage.SKIPPED, "malformed TASK_REQUEST v2"),
        "too_big_out": (incoming(req("count", b"z")), TaskStage.SKIPPED, OUTPUT_TOO_LARGE),
        "by_uri_ok": (incoming(by_reference("echo", 10, deadline, b"the real document", f"{base}/doc")),
                      TaskStage.DONE, ""),
        "good": (incoming(req("echo", b"still serving")), TaskStage.DONE, ""),
    }
    v1 = incoming(TaskRequest("echo", 10, deadline, input=b"a retired v1 request").encode())
    board = FakeBoard()
    registry.get("count").output = b"o" * (MAX_INLINE_OUTPUT_LEN_V2 + 1)  # one byte over what fits inline
    worker = await make(worker_db, board, registry, key)
    stop = asyncio.Event()
    for name, (item, stage, reason) in list(cases.items())[:3]:
        cases[name] = (board.deliver(item), stage, reason)
    v1 = board.deliver(v1)  # among the others: ignored, and the loop keeps going
    for name, (item, stage, reason) in list(cases.items())[3:]:
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
        assert TaskResultV2.decode(board.results[cases["by_uri_ok"][0].request_id]).output == b"the real document"
        assert (await worker.store.get(cases["unknown"][0].request_id)).runs == 0
        assert await worker.store.get(v1.request_id) is None  # a v1 request is never recorded nor served
        # The cursor follows the last delivery.
        assert await worker.store.get_cursor(worker.cursor_name) == str(len(cases) + 1)
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
    assert TaskResultV2.decode(board.results[item.request_id]).output == b"counted:once"
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
    item = board.deliver(incoming(req("count", b"landed")))
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
    item = board.deliver(incoming(req("count", b"slow")))
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
    item2 = board.deliver(incoming(req("count", b"crashes the worker")))
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


async def test_already_answered_is_not_claimed_and_a_lost_claim_is_not_submitted(worker_db, registry, counting,
                                                                                 key) -> None:
    board = FakeBoard()
    worker = await make(worker_db, board, registry, key)
    before = board.deliver(incoming(req("count", b"a")))
    board.answered_by_another(before.request_id)
    record = await process_one(worker, board, before)
    assert record.stage is TaskStage.LOST and counting.calls == 0  # not even executed

    # Our claim is gone while we executed (the board says another answer closed it): ours is not sent.
    during = board.deliver(incoming(req("count", b"b")))
    counting.release.clear()
    await worker.ingest(during)
    task = asyncio.create_task(worker.process(during.request_id))
    await counting.started.wait()
    board.answered_by_another(during.request_id)
    counting.release.set()
    record = await task
    assert record.stage is TaskStage.BOND_LOST and record.runs == 1
    assert board.submissions == []
    await worker.store.close()


async def test_a_board_refusal_ends_the_task_at_once(worker_db, registry, counting, key) -> None:
    """The shared refusals (relay.tasks.board) are permanent: no retries, the right final stage."""
    board = FakeBoard()
    worker = await make(worker_db, board, registry, key)
    # The board says our claim is not held (another claimant, or its deadline passed): never retried.
    board.refuse_with = ClaimNotHeld("the result", "NotClaimant(0x01)", board="the fake board")
    record = await process_one(worker, board, incoming(req("count", b"race")))
    assert record.stage is TaskStage.BOND_LOST and len(board.submissions) == 1
    # The deadline passed on chain (clocks differ): given up with the board's reason, never retried.
    board.refuse_with = RequestExpired("the result", "RequestExpired(0x02, 1700000000)", board="the fake board")
    record = await process_one(worker, board, incoming(req("count", b"late")))
    assert record.stage is TaskStage.BOND_LOST and "deadline passed" in record.reason
    assert len(board.submissions) == 2
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
        item = incoming(by_reference("echo", 10, int(time.time() + 60), b"payload",
                                                 f"http://127.0.0.1:{port}/flaky"))
        board.fail_submits = 2
        board.fail_reads = 2  # the first two pre-submission reads of the board
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
        item3 = incoming(by_reference("echo", 10, int(time.time() + 3), b"x", f"http://127.0.0.1:{dead}/x"))
        record = await process_one(worker, board, item3)
        assert record.stage is TaskStage.FAILED and "no time left" in record.reason
        await worker.store.close()
    finally:
        await runner.cleanup()


async def test_unservable_configuration_fails_at_start(tmp_path, key) -> None:
    store = await WorkerStore.open(tmp_path / "w.db")
    with pytest.raises(Exception, match="http"):
        WorkerV2(FakeBoard(), ExecutorRegistry.load({}), key, {REQUESTER_DOMAIN: PAYOUT}, store,  # type: ignore[arg-type]
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
        counting.output = bytes(range(256)) * 8  # 2,048 bytes: far over the 249 that fit inline
        item = incoming(req("count", b"big"))
        record = await process_one(worker, board, item)
        assert record.stage is TaskStage.DONE, record.reason
        result = TaskResultV2.decode(board.results[item.request_id])
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


async def test_a_delivered_v1_task_request_is_ignored_with_a_log_line(worker_db, registry, counting, key,
                                                                      capsys) -> None:
    """Task protocol v1 is retired (docs/TASKS.md "v1 retired"): a v1 TASK_REQUEST that reaches the
    worker is not recorded, claimed nor executed, and says so in a `task_ignored` line with the reason."""
    board = FakeBoard()
    worker = await make(worker_db, board, registry, key)
    v1 = board.deliver(incoming(TaskRequest("count", 10, int(time.time() + 60), input=b"v1").encode()))
    v2 = board.deliver(incoming(req("count", b"v2")))
    stop = asyncio.Event()
    run = asyncio.create_task(worker.run(stop))
    try:
        for _ in range(200):
            record = await worker.store.get(v2.request_id)
            if record is not None and record.stage is TaskStage.DONE:
                break
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await run
    assert await worker.store.get(v1.request_id) is None
    assert board.submissions == [v2.request_id] and counting.calls == 1
    assert board.status[v1.request_id].state is ServeState.OPEN  # never claimed
    assert await worker.ingest(v1) is False  # again: still ignored, still not recorded
    captured = capsys.readouterr()
    lines = [line for line in (captured.out + captured.err).splitlines() if "task_ignored" in line]
    assert lines and all(v1.request_id.hex() in line and "v1 is retired" in line for line in lines), lines
    assert "v1 is retired" in RETIRED_V1
    await worker.store.close()



async def test_a_cancellation_as_the_executor_finishes_stops_the_task(worker_db, registry, counting, key) -> None:
    # Shutdown cancels a task in the same loop turn as its executor returns: the task must stop there
    # (restart reruns it), not swallow the cancellation and go on to submit (asyncio.wait_for on 3.11).
    board = FakeBoard()
    worker = await make(worker_db, board, registry, key)
    item = board.deliver(incoming(req("count", b"finishing")))
    await worker.ingest(item)
    counting.release.clear()
    task = asyncio.create_task(worker.process(item.request_id))
    await counting.started.wait()
    counting.release.set()  # the executor returns in the next loop turn ...
    task.cancel()  # ... the one the cancellation reaches the task in
    outcome = (await asyncio.gather(task, return_exceptions=True))[0]
    assert isinstance(outcome, asyncio.CancelledError), outcome
    assert board.submissions == []
    await worker.store.close()
