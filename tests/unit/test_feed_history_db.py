"""The feed server's history database on either engine: `[feed_server] db` takes an SQLite path
(relative to the config file) or a PostgreSQL URL kept as written; a write the database refuses is
answered 503 and logged without the URL's password. The restart test on both engines is
tests/unit/test_feed_server.py::test_history_survives_restart_with_db."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from relay.config import FeedServerSection
from relay.daemons.feed_server import settings_from_config
from relay.feeds.server.history import HistoryError, ReportDb
from tests.support.committee import Dealt
from tests.support.feeds import make_server
from tests.support.postgres import PostgresServer


class _Config:
    def __init__(self, section: FeedServerSection) -> None:
        self.feed_server = section
        self.feed_round = type("Round", (), {"interval_ms": 1000})()


def test_db_is_a_path_relative_to_the_config_or_a_url_kept_as_written(tmp_path: Path) -> None:
    url = "postgresql://feeds:s3cret@db.internal:5432/feed_history"
    assert FeedServerSection(db=url).db == url  # not folded into "postgresql:/feeds..."
    assert FeedServerSection(db=tmp_path / "feeds.db").db == str(tmp_path / "feeds.db")
    assert settings_from_config(_Config(FeedServerSection(db=url)), tmp_path).db == url
    assert settings_from_config(_Config(FeedServerSection(db="feeds.db")), tmp_path).db == tmp_path / "feeds.db"
    assert settings_from_config(_Config(FeedServerSection()), tmp_path).db is None


def test_an_unreachable_postgresql_history_names_the_redacted_url() -> None:
    with pytest.raises(HistoryError, match=r"postgresql://feeds:\*\*\*@127\.0\.0\.1:1/none.*check the URL") as refused:
        ReportDb("postgresql://feeds:s3cret@127.0.0.1:1/none")
    assert "s3cret" not in str(refused.value)


@pytest.fixture(params=["sqlite", "postgresql"])
def history_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "feeds.db")
    return request.getfixturevalue("postgres").create_database("feed_history")


async def test_a_refused_write_is_answered_503_and_the_report_not_taken(dealt: Dealt, history_db: str) -> None:
    server = make_server(dealt, db=history_db, history_size=3)
    assert server.hub.ingest(dealt.sign(round_=1)).accepted
    # The table disappears under the server (a full disk, a revoked grant, a dropped table alike).
    if history_db.startswith("postgresql://"):
        with psycopg.connect(history_db, autocommit=True) as conn:
            conn.execute("DROP TABLE reports")
    else:
        server.hub.db.conn.execute("DROP TABLE reports")
    refused = server.hub.ingest(dealt.sign(round_=2))
    assert not refused.accepted and refused.status == 503 and "cannot store the report" in refused.reason
    assert [e.report.round for e in server.hub.feeds["ETH/USD"].history] == [1]
    server.hub.db.close()


async def test_two_servers_share_one_postgresql_history(dealt: Dealt, postgres: PostgresServer) -> None:
    url = postgres.create_database("feed_history_shared")
    first, second = make_server(dealt, db=url, history_size=5), make_server(dealt, db=url, history_size=5)
    for r in (1, 2, 3):  # both receive every round (from the leaders or the stream): stored once
        assert first.hub.ingest(dealt.sign(round_=r)).accepted
        assert second.hub.ingest(dealt.sign(round_=r)).accepted
    first.hub.db.close()
    second.hub.db.close()
    third = make_server(dealt, db=url, history_size=5)  # a server added later starts from it
    assert [e.report.round for e in third.hub.feeds["ETH/USD"].history] == [1, 2, 3]
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM reports").fetchone()[0] == 3
    third.hub.db.close()
