"""Group commit of the attester's signing log (SQLite), performed failure by failure: a crash before
the commit loses nothing that was served and never leaves the watch cursor ahead of its records; a
served partial or root is durable when the answer arrives (a second connection finds it); an
equivocation is refused against rows not committed yet; a failed commit makes the watcher start
again from the durable cursor. Also: per-message partials are signed on first request only."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from attest.signing_log import EquivocationError, SignedEntry, SigningLog, SigningLogError
from relay.attester import Attester, RootRefused
from relay.batch import Batch
from relay.envelope import Envelope, message_digest
from relay.interfaces import Observation
from relay.aio import within
from relay.ports import free_port
from tests.support.fakes import DST, SRC, FakeChain, envelope

REPO = Path(__file__).resolve().parents[2]
NEVER = 3600.0  # commit bounds that never fire during a test: only flush() commits


def sign(digest: bytes) -> bytes:
    """A deterministic 64-byte stand-in for a BLS partial (these tests are about the log)."""
    return hashlib.sha512(b"member-1" + digest).digest()


def observation(nonce: int, env: Envelope | None = None) -> Observation:
    env = env or envelope(nonce)
    return Observation(env, f"0xtx{nonce}", 100 + nonce, str(100 + nonce))


def grouped_log(path: Path, **bounds: float) -> SigningLog:
    return SigningLog(path, member=1, commit_every=int(bounds.pop("commit_every", 10**6)),
                      commit_idle_s=bounds.pop("commit_idle_s", NEVER),
                      commit_within_s=bounds.pop("commit_within_s", NEVER))


def durable(path: Path) -> sqlite3.Connection:
    """A second connection to the log file: it sees only what was committed."""
    return sqlite3.connect(str(path))


def durable_nonces(path: Path) -> dict[int, bytes]:
    with durable(path) as db:
        return {n: bytes(p) for n, p in db.execute("SELECT nonce, partial FROM signed WHERE src_domain = ?", (SRC,))}


def durable_cursor(path: Path) -> str | None:
    with durable(path) as db:
        row = db.execute("SELECT cursor FROM cursors WHERE name = ?", (f"watch:{SRC}",)).fetchone()
    return row[0] if row else None


class ScriptedSource(FakeChain):
    """A source chain whose watcher yields the given observations after `cursor` (only the first
    `released` of them, then as release() allows), then waits."""

    def __init__(self, observations: list[Observation], released: int | None = None) -> None:
        super().__init__("evm", SRC)
        self.observations = observations
        self.txs: dict[str, list[Observation]] = {o.source_tx: [o] for o in observations}
        self.released = len(observations) if released is None else released
        self._more = asyncio.Event()

    def release(self, count: int) -> None:
        self.released = count
        self._more.set()

    async def watch(self, cursor):
        for i, o in enumerate(self.observations):
            while i >= self.released:
                self._more.clear()
                await self._more.wait()
            if cursor is None or int(o.cursor) > int(cursor):
                yield o
        await asyncio.Event().wait()

    async def reobserve(self, source_tx):
        return self.txs.get(source_tx, [])


def attester_with(log: SigningLog, source: FakeChain) -> Attester:
    return Attester(1, 1, sign, {SRC: source, DST: FakeChain("solana", DST)}, log)


# -- crash -----------------------------------------------------------------------------------------

CHILD = """
import asyncio, sys
from pathlib import Path
from aiohttp import web
from tests.unit.test_signing_log_group_commit import child_attester
asyncio.run(child_attester(Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])))
"""


async def child_attester(db: Path, port: int, marker: Path) -> None:
    """The crashing attester: watches nonces 0-4, waits until something it served was committed,
    watches nonces 5-9 (left uncommitted), writes `marker`, then waits to be killed."""
    log = grouped_log(db)

    class Source(ScriptedSource):
        async def watch(self, cursor):
            for nonce in range(5):
                yield observation(nonce)
            while log.pending or not log.by_nonce(SRC, 2, 1).partial:  # until nonce 2's partial was served
                await asyncio.sleep(0.01)
            for nonce in range(5, 10):
                yield observation(nonce)
            marker.write_text("watched 0-9")  # the consumer recorded 9 and its cursor before asking again
            await asyncio.Event().wait()

    attester = attester_with(log, Source([]))
    runner = web.AppRunner(attester.build_app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await attester.run(asyncio.Event())


async def test_a_crash_before_the_commit_loses_nothing_served_and_never_leaves_the_cursor_ahead(tmp_path: Path) -> None:
    db, marker, port = tmp_path / "attester-1.db", tmp_path / "marker", free_port()
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(db), str(port), str(marker)], cwd=REPO,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        served = None
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 60
            while served is None:
                assert child.poll() is None, "the attester process died"
                assert time.monotonic() < deadline, "the attester never served nonce 2's partial"
                try:
                    async with session.get(f"http://127.0.0.1:{port}/v1/partials/0x{envelope(2).message_id.hex()}") as r:
                        if r.status == 200:
                            served = bytes.fromhex((await r.json())["signature"][2:])
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        # Served means durable: a second connection finds the partial the moment the answer is in.
        assert durable_nonces(db)[2] == served == sign(message_digest(1, envelope(2).message_id))
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert child.poll() is None and time.monotonic() < deadline
            await asyncio.sleep(0.02)
        # Nonces 5-9 and their cursor are recorded, in the open group only.
        assert 9 not in durable_nonces(db)
        child.send_signal(signal.SIGKILL)  # the crash: no commit, no close
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    after = durable_nonces(db)
    cursor = durable_cursor(db)
    assert after[2] == served  # the served partial survived
    assert set(after) == {0, 1, 2, 3, 4}  # what the served answer committed; 5-9 went with the crash ...
    assert cursor == "104"  # ... and so did their cursor: it covers exactly the records that are there
    assert all(int(observation(n).cursor) > int(cursor) for n in range(10) if n not in after)

    # The restarted attester watches again from the durable cursor and misses nothing.
    log = grouped_log(db)
    attester = attester_with(log, ScriptedSource([observation(n) for n in range(10)]))
    task = asyncio.create_task(attester.run(asyncio.Event()))
    try:
        while log.get_cursor(f"watch:{SRC}") != "109":
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        log.close()
    assert set(durable_nonces(db)) == set(range(10)) and durable_cursor(db) == "109"
    assert durable_nonces(db)[2] == served  # the same slot, the same partial


# -- served means durable ------------------------------------------------------------------------

@pytest.fixture
async def served(tmp_path: Path):
    db = tmp_path / "attester-1.db"
    log = grouped_log(db)
    source = ScriptedSource([observation(n) for n in range(4)])
    attester = attester_with(log, source)
    client = TestClient(TestServer(attester.build_app()))
    await client.start_server()
    yield db, log, attester, source, client
    await client.close()
    log.close()


def _watch_some(attester: Attester, nonces: range) -> None:
    """What Attester._watch does per observation: record it, then move the cursor."""
    for n in nonces:
        attester.attest(observation(n), attester.adapters[SRC])
        attester.signing_log.set_cursor(f"watch:{SRC}", observation(n).cursor)


async def test_a_served_partial_is_durable_when_the_answer_arrives(served) -> None:
    db, log, attester, source, client = served
    _watch_some(attester, range(3))
    assert durable_nonces(db) == {} and log.pending == 6  # one group: three records, three cursor moves
    response = await client.get(f"/v1/partials/0x{envelope(1).message_id.hex()}")
    assert response.status == 200
    partial = bytes.fromhex((await response.json())["signature"][2:])
    committed = durable_nonces(db)
    assert committed[1] == partial == sign(message_digest(1, envelope(1).message_id))
    assert set(committed) == {0, 1, 2} and durable_cursor(db) == "102" and log.pending == 0
    # Not asked for: still only "seen final" (its partial is signed on first request).
    assert committed[0] == b"" and committed[2] == b""


async def test_a_root_signature_and_an_observed_partial_are_durable_when_answered(served) -> None:
    db, log, attester, source, client = served
    _watch_some(attester, range(3))
    batch = Batch.of([envelope(n) for n in range(3)])
    response = await client.post("/v1/roots", json={
        "src_domain": SRC, "dst_domain": DST, "envelopes": ["0x" + e.encode().hex() for e in batch.envelopes]})
    assert response.status == 200, await response.text()
    signature = bytes.fromhex((await response.json())["signature"][2:])
    with durable(db) as second:
        assert second.execute("SELECT partial FROM roots WHERE root = ?", (batch.root,)).fetchone()[0] == signature
    # A root needs no per-message partial: none was signed for the batch's messages.
    assert durable_nonces(db) == {0: b"", 1: b"", 2: b""}

    response = await client.post("/v1/observe", json={"src_domain": SRC, "source_tx": "0xtx3"})
    assert response.status == 200
    [answer] = (await response.json())["signed"]
    assert durable_nonces(db)[3] == bytes.fromhex(answer["signature"][2:]) == sign(
        message_digest(1, envelope(3).message_id))


async def test_writes_commit_when_they_pause_after_a_bounded_time_or_count(tmp_path: Path) -> None:
    db = tmp_path / "attester-1.db"
    log = grouped_log(db, commit_idle_s=0.15, commit_within_s=0.3)
    opened = log.commits  # the member recorded on open
    try:
        log.record(SignedEntry(SRC, 0, envelope(0).message_id, 1, b"", "0xtx0", 1.0))
        assert durable_nonces(db) == {}
        await asyncio.sleep(0.4)  # idle: committed by the timer
        assert set(durable_nonces(db)) == {0} and log.commits == opened + 1
        # A steady trickle never pauses 150 ms: the 300 ms bound commits it anyway.
        start = time.monotonic()
        nonce = 1
        while time.monotonic() - start < 0.45:
            log.record(SignedEntry(SRC, nonce, envelope(nonce).message_id, 1, b"", f"0xtx{nonce}", 1.0))
            nonce += 1
            await asyncio.sleep(0.01)
        assert log.commits >= opened + 2 and len(durable_nonces(db)) == nonce - log.pending > 1
    finally:
        log.close()
    assert set(durable_nonces(db)) == set(range(nonce))  # close() commits the rest

    counted = grouped_log(tmp_path / "counted.db", commit_every=4)
    opened = counted.commits
    for n in range(4):
        assert len(durable_nonces(tmp_path / "counted.db")) == 0  # not before the 4th write
        counted.record(SignedEntry(SRC, n, envelope(n).message_id, 1, b"", f"0xtx{n}", 1.0))
    assert set(durable_nonces(tmp_path / "counted.db")) == {0, 1, 2, 3} and counted.commits == opened + 1
    counted.close()


def test_without_an_event_loop_every_write_commits_at_once(tmp_path: Path) -> None:
    log = grouped_log(tmp_path / "cli.db")  # e.g. `relay reset-chain` or a synchronous caller
    try:
        log.record(SignedEntry(SRC, 0, envelope(0).message_id, 1, b"p" * 64, "0xtx0", 1.0))
        assert durable_nonces(tmp_path / "cli.db") == {0: b"p" * 64} and log.pending == 0
    finally:
        log.close()


# -- equivocation against uncommitted rows --------------------------------------------------------

async def test_equivocation_is_refused_against_rows_not_committed_yet(served) -> None:
    db, log, attester, source, client = served
    _watch_some(attester, range(2))
    assert durable_nonces(db) == {}  # nonce 1's message holds its slot in the open group only
    forged = Envelope(kind=4, nonce=1, src_domain=SRC, src_sender=b"\x01" * 32, dst_domain=DST,
                      dst_receiver=b"\x02" * 32, payload=b"pay the attacker")
    assert attester.attest(observation(1, forged), source) is None
    with pytest.raises(EquivocationError, match="nonce 1 was already signed"):
        log.record(SignedEntry(SRC, 1, forged.message_id, 1, b"", "0xforged", 1.0))
    with pytest.raises(RootRefused) as refused:
        await attester.sign_root(SRC, DST, [envelope(0), forged])
    assert refused.value.status == 409
    assert (await client.get(f"/v1/partials/0x{forged.message_id.hex()}")).status == 404
    # That answer committed the group: the slot is the real message's, and both refusals are kept.
    with durable(db) as second:
        assert second.execute("SELECT message_id FROM signed WHERE nonce = 1").fetchall() == [(envelope(1).message_id,)]
        assert second.execute("SELECT count(*) FROM refusals").fetchone()[0] == 2


# -- a failed commit -------------------------------------------------------------------------------

class FailingCommit:
    """The log's connection, with its next COMMIT failing like a disk error."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db, self.fail = db, True

    @property
    def in_transaction(self) -> bool:
        return self.db.in_transaction

    def execute(self, sql: str, params: tuple = ()):
        if sql == "COMMIT" and self.fail:
            self.fail = False
            raise sqlite3.OperationalError("disk I/O error")
        return self.db.execute(sql, params)

    def close(self) -> None:
        self.db.close()


async def test_a_failed_commit_serves_nothing_and_the_watcher_starts_again_from_the_durable_cursor(served) -> None:
    db, log, attester, source, client = served
    log._db = FailingCommit(log._db)
    _watch_some(attester, range(2))
    response = await client.get(f"/v1/partials/0x{envelope(1).message_id.hex()}")
    assert response.status == 500  # the commit failed: no partial left the process
    assert "signature" not in await response.text()
    assert log.generation == 1 and durable_nonces(db) == {} and log.get_cursor(f"watch:{SRC}") is None

    # A watcher that began before the loss stops before moving its cursor past the lost records.
    log._db.fail = True
    source.release(1)
    watcher = asyncio.create_task(attester._watch(source))
    while log.pending < 2:  # nonce 0's record and cursor
        await asyncio.sleep(0.005)
    with pytest.raises(SigningLogError, match="rolled back"):
        log.flush()
    assert log.generation == 2 and log.get_cursor(f"watch:{SRC}") is None
    source.release(2)
    with pytest.raises(SigningLogError, match="lost uncommitted writes"):
        # Its next observation is recorded, but the watcher stops before moving the cursor.
        await within(watcher, 5)
    assert log.get_cursor(f"watch:{SRC}") is None
    # Started again (keep_running does that): it reads from the durable cursor and misses nothing.
    source.release(4)
    watcher = asyncio.create_task(attester._watch(source))
    try:
        while log.get_cursor(f"watch:{SRC}") != "103":
            await asyncio.sleep(0.005)
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    log.flush()
    assert set(durable_nonces(db)) == {0, 1, 2, 3} and durable_cursor(db) == "103"


async def test_a_group_sqlite_rolled_back_by_itself_is_noticed_not_written_over(tmp_path: Path) -> None:
    log = grouped_log(tmp_path / "attester-1.db")
    try:
        log.record(SignedEntry(SRC, 0, envelope(0).message_id, 1, b"", "0xtx0", 1.0))
        log.set_cursor(f"watch:{SRC}", "100")
        log._db.execute("ROLLBACK")  # what SQLite does by itself on some I/O errors
        with pytest.raises(SigningLogError, match="rolled back"):
            log.set_cursor(f"watch:{SRC}", "101")  # would be a cursor without the records behind it
        assert log.generation == 1 and log.pending == 0
        assert log.get_cursor(f"watch:{SRC}") is None and log.by_nonce(SRC, 0, 1) is None
    finally:
        log.close()
    assert durable_cursor(tmp_path / "attester-1.db") is None


# -- partials signed on first request ------------------------------------------------------------

async def test_a_partial_is_signed_on_first_request_only_for_a_message_seen_final(served) -> None:
    db, log, attester, source, client = served
    calls: list[bytes] = []
    attester._sign = lambda digest: (calls.append(digest), sign(digest))[1]
    _watch_some(attester, range(2))
    assert calls == []  # seen final: slots taken, nothing signed yet
    first = await (await client.get(f"/v1/partials/0x{envelope(0).message_id.hex()}")).json()
    again = await (await client.get(f"/v1/partials/0x{envelope(0).message_id.hex()}")).json()
    assert first == again and calls == [message_digest(1, envelope(0).message_id)]  # signed once, then stored
    unseen = await client.get(f"/v1/partials/0x{envelope(7).message_id.hex()}")
    assert unseen.status == 404 and len(calls) == 1  # never seen final: never signed
    assert json.loads(await unseen.text())["error"].startswith("not signed")
