"""Attack on an attester's signing log through POST /v1/roots: anyone may ask for a root over any
subset, in any order, of the messages the attester saw final (they are public on the source chain),
and every new root was signed (a BLS signature of CPU) and recorded (a row of up to 64 message ids,
fsynced) — ordered pairs alone of n messages are n(n-1) roots, so the log grew without bound. Now a
message is in at most MAX_ROOTS_PER_MESSAGE signed roots: a request over the bound is refused (429)
before any signing; a root signed before is still answered."""

from __future__ import annotations

import itertools
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from attest.signing_log import MAX_ROOTS_PER_MESSAGE, RootLimitError
from relay.batch import Batch
from tests.support.fakes import DST, SRC, envelope
from tests.unit.test_signing_log_group_commit import (
    ScriptedSource, _watch_some, attester_with, durable, grouped_log, observation)

MESSAGES = 10


async def test_roots_over_any_subset_of_seen_messages_are_bounded_per_message(tmp_path: Path) -> None:
    db = tmp_path / "attester-1.db"
    log = grouped_log(db)
    attester = attester_with(log, ScriptedSource([observation(n) for n in range(MESSAGES)]))
    _watch_some(attester, range(MESSAGES))
    signs: list[bytes] = []
    signer = attester._sign
    attester._sign = lambda digest: signs.append(digest) or signer(digest)  # type: ignore[method-assign]
    client = TestClient(TestServer(attester.build_app()))
    await client.start_server()

    async def ask(nonces: tuple[int, ...]) -> tuple[int, dict]:
        response = await client.post("/v1/roots", json={
            "src_domain": SRC, "dst_domain": DST, "envelopes": ["0x" + envelope(n).encode().hex() for n in nonces]})
        return response.status, await response.json()

    try:
        genuine = tuple(range(MESSAGES))  # the relayer's batch
        status, first = await ask(genuine)
        assert status == 200
        pairs = list(itertools.permutations(range(MESSAGES), 2))  # 90 other roots over the same messages
        answers = [await ask(pair) for pair in pairs]
        statuses = [status for status, _ in answers]
        assert statuses.count(200) < len(answers) and set(statuses) == {200, 429}
        refused = next(body for status, body in answers if status == 429)
        assert "most signed roots" in refused["error"]
        with durable(db) as second:
            roots = second.execute("SELECT count(*) FROM roots").fetchone()[0]
            most = second.execute("SELECT max(roots) FROM root_counts").fetchone()[0]
        assert most == MAX_ROOTS_PER_MESSAGE and roots == 1 + statuses.count(200)
        assert roots <= MESSAGES * MAX_ROOTS_PER_MESSAGE // 2 + 1  # bounded by the messages, not the requests
        assert len(signs) == roots  # no signing work for a refused request
        # The root signed first is still answered (the same partial), a refused one stays refused.
        assert await ask(genuine) == (200, first)
        refused_pair = next(pair for pair, (status, _) in zip(pairs, answers) if status == 429)
        assert (await ask(refused_pair))[0] == 429
        # The log itself holds the bound too (two callers racing past the check).
        batch = Batch.of([envelope(n) for n in (0, 2, 1)])  # a root never asked for
        try:
            log.record_root(batch.root, 1, SRC, DST, batch.message_ids, b"\x01" * 64)
        except RootLimitError as exc:
            assert exc.over
        else:
            raise AssertionError("record_root wrote a root over messages at the bound")
    finally:
        await client.close()
        log.close()


def test_the_bound_holds_in_a_postgresql_log_too(postgres) -> None:
    from attest.signing_log import SigningLog

    log = SigningLog(postgres.create_database("signing"), member=1)
    try:
        ids = [envelope(n).message_id for n in range(3)]
        for i in range(2):
            assert log.record_root(bytes([i]) * 32, 1, SRC, DST, ids, b"\x02" * 64, limit=2) == b"\x02" * 64
        assert log.record_root(bytes([0]) * 32, 1, SRC, DST, ids, b"\x03" * 64, limit=2) == b"\x02" * 64  # known
        assert sorted(log.over_root_limit(ids + [b"\x09" * 32], 1, limit=2)) == sorted(ids)
        try:
            log.record_root(b"\x07" * 32, 1, SRC, DST, ids[:1], b"\x02" * 64, limit=2)
        except RootLimitError as exc:
            assert exc.over == ids[:1]
        else:
            raise AssertionError("record_root wrote a third root over a message bounded at two")
        assert log.over_root_limit(ids, 2, limit=2) == []  # per epoch
    finally:
        log.close()
