"""`relay status` and `relay retry`: read and nudge the relayer's store directly, so they work
whether or not the relayer is running (SQLite WAL lets them share the file)."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

from relay.api import record_json
from relay.config import is_database_url
from relay.errors import TesseraError
from relay.store import MessageRecord, RetryReason, Stage, Store


class UnknownMessageError(TesseraError):
    pass


async def _resolve(store: Store, message_id: str) -> MessageRecord:
    matches = await store.find_prefix(message_id)
    if not matches:
        raise UnknownMessageError(f"no message with id {message_id} in the relayer's store (`relay status` lists them)")
    if len(matches) > 1:
        raise UnknownMessageError(f"{message_id} matches {len(matches)} messages: give more hex digits")
    return matches[0]


def _ago(ts: float | None) -> str:
    if not ts:
        return "-"
    seconds = time.time() - ts
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f}m" if seconds < 7200 else f"{seconds / 3600:.1f}h"


def format_table(records: list[MessageRecord], counts: dict[tuple[Stage, RetryReason | None], int]) -> str:
    totals: dict[Stage, int] = {}
    waiting: dict[RetryReason, int] = {}
    for (stage, code), n in counts.items():
        totals[stage] = totals.get(stage, 0) + n
        if code is not None and stage is not Stage.CONFIRMED:
            waiting[code] = waiting.get(code, 0) + n
    header = "  ".join(f"{s.value}={totals.get(s, 0)}" for s in Stage)
    if waiting:  # why the unfinished ones wait, by reason
        header += "\nwhy: " + "  ".join(f"{code.value}={n}" for code, n in sorted(waiting.items(), key=lambda i: -i[1]))
    rows = [("message", "route", "nonce", "stage", "age", "attempts", "next", "why", "reason")]
    for r in records:
        next_in = "-" if r.stage in (Stage.CONFIRMED, Stage.DEAD) else f"{max(0.0, r.next_attempt_at - time.time()):.1f}s"
        rows.append((
            "0x" + r.message_id.hex()[:12], f"{r.src_domain}->{r.dst_domain}", str(r.nonce), r.stage.value,
            _ago(r.observed_at), str(r.attempts), next_in, r.reason_code.value if r.reason_code else "-", r.reason[:60],
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    return header + "\n" + "\n".join(lines)


def format_detail(record: MessageRecord) -> str:
    data = record_json(record)
    env = record.decoded
    lines = [f"{k:>18}: {v}" for k, v in data.items() if k not in ("observed_at", "confirmed_at")]
    lines.append(f"{'observed':>18}: {datetime.fromtimestamp(record.observed_at, timezone.utc).isoformat()}")
    lines.append(f"{'payload bytes':>18}: {len(env.payload)}")
    if record.stage is Stage.DEAD:
        why = record.reason_code.value if record.reason_code else "see the reason above"
        lines.append(f"\nThis message is in the dead letter ({why}). Fix the cause, then: "
                     f"relay retry {data['message_id']}")
    return "\n".join(lines)


def _missing(db: str | Path) -> bool:
    return not is_database_url(db) and not Path(db).exists()


async def show_status(db: str | Path, message_id: str | None, limit: int) -> str:
    if _missing(db):
        raise TesseraError(f"no relayer store at {db}: has `relay run` been started with this config?")
    store = await Store.open(db)
    try:
        if message_id:
            return format_detail(await _resolve(store, message_id))
        return format_table(await store.listing(limit), await store.counts())
    finally:
        await store.close()


async def force_retry(db: str | Path, message_id: str) -> str:
    if _missing(db):
        raise TesseraError(f"no relayer store at {db}: has `relay run` been started with this config?")
    store = await Store.open(db)
    try:
        record = await _resolve(store, message_id)
        if record.stage is Stage.CONFIRMED:
            return f"0x{record.message_id.hex()} is already delivered; nothing to retry"
        updated = await store.force_retry(record.message_id)
        assert updated is not None
        return f"0x{record.message_id.hex()}: {record.stage.value} -> {updated.stage.value}, due now"
    finally:
        await store.close()
