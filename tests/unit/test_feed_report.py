"""Feed report and observation encodings: layout, strict decoding, digests."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.envelope import keccak256
from relay.feeds import (
    OBSERVATION_LEN,
    REPORT_LEN,
    FeedReport,
    Observation,
    ReportError,
    SignedObservation,
    decode_feed_id,
    encode_feed_id,
)
from relay.protocol import TAG_FEED

REPORT = FeedReport(
    feed_id="ETH/USD",
    round=42,
    price=345_678_900_000,
    confidence=1_250_000,
    decimals=8,
    observations=4,
    observed_at=1_795_431_723_123,
    published_at=1_795_431_723_500,
)


def test_report_layout_is_packed_big_endian() -> None:
    data = REPORT.encode()
    assert len(data) == REPORT_LEN == 122
    assert data[:32] == b"ETH/USD" + b"\x00" * 25
    assert data[32:40] == (42).to_bytes(8, "big")
    assert data[40:72] == (345_678_900_000).to_bytes(32, "big")
    assert data[72:104] == (1_250_000).to_bytes(32, "big")
    assert data[104] == 8 and data[105] == 4
    assert data[106:114] == (1_795_431_723_123).to_bytes(8, "big")
    assert data[114:122] == (1_795_431_723_500).to_bytes(8, "big")
    assert FeedReport.decode(data) == REPORT


def test_report_digest_is_tagged_with_epoch_and_report_hash() -> None:
    expected = keccak256(b"TESSERA/v1/FEED" + (7).to_bytes(4, "big") + keccak256(REPORT.encode()))
    assert TAG_FEED == b"TESSERA/v1/FEED"
    assert REPORT.digest(7) == expected
    assert REPORT.digest(8) != expected
    with pytest.raises(ReportError, match="uint32"):
        REPORT.digest(2**32)


def test_negative_price_is_twos_complement() -> None:
    report = FeedReport("SPREAD", 1, -5, 0, 0, 1, 0, 0)
    assert report.encode()[40:72] == b"\xff" * 31 + b"\xfb"
    assert FeedReport.decode(report.encode()).price == -5


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda b: b[:-1], "exactly 122 bytes, got 121"),
        (lambda b: b + b"\x00", "exactly 122 bytes, got 123"),
        (lambda b: b"\x00" * 32 + b[32:], "not printable ASCII"),
        (lambda b: b"ETH\x00USD" + b"\x00" * 25 + b[32:], "not printable ASCII"),
        (lambda b: b"ETH/USD\x01" + b"\x00" * 24 + b[32:], "not printable ASCII"),
        (lambda b: b[:104] + bytes([19]) + b[105:], "decimals 19 must be an integer in 0..18"),
        (lambda b: b[:105] + b"\x00" + b[106:], "observations 0 must be an integer in 1..255"),
    ],
)
def test_report_decode_is_strict(mutate, reason: str) -> None:
    with pytest.raises(ReportError) as info:
        FeedReport.decode(mutate(REPORT.encode()))
    assert reason in str(info.value)


@pytest.mark.parametrize(
    "field, value, reason",
    [
        ("feed_id", "", "1..32 printable ASCII"),
        ("feed_id", "x" * 33, "1..32 printable ASCII"),
        ("feed_id", "ÉTH/USD", "1..32 printable ASCII"),
        ("round", 2**64, "round"),
        ("price", 2**255, "price"),
        ("confidence", -1, "confidence"),
        ("observations", 256, "observations"),
        ("published_at", -1, "published_at"),
    ],
)
def test_report_fields_are_range_checked(field: str, value, reason: str) -> None:
    fields = {name: getattr(REPORT, name) for name in FeedReport.__dataclass_fields__}
    fields[field] = value
    with pytest.raises(ReportError, match=reason):
        FeedReport(**fields)


def test_feed_id_round_trip() -> None:
    assert decode_feed_id(encode_feed_id("BTC/USD")) == "BTC/USD"
    assert decode_feed_id(encode_feed_id("x" * 32)) == "x" * 32


OBS = Observation(feed_id="ETH/USD", round=42, member=3, decimals=8, price=345_678_900_000, timestamp=1_795_431_723_123)


def test_observation_layout_and_digest() -> None:
    data = OBS.encode()
    assert len(data) == OBSERVATION_LEN == 83
    assert data[32:40] == (42).to_bytes(8, "big")
    assert data[40:42] == (3).to_bytes(2, "big")
    assert data[42] == 8
    assert data[43:75] == (345_678_900_000).to_bytes(32, "big")
    assert data[75:83] == (1_795_431_723_123).to_bytes(8, "big")
    assert Observation.decode(data) == OBS
    assert OBS.digest(7) == keccak256(b"TESSERA/v1/FEEDOBS" + (7).to_bytes(4, "big") + keccak256(data))


def test_observation_decode_is_strict() -> None:
    with pytest.raises(ReportError, match="exactly 83 bytes"):
        Observation.decode(OBS.encode()[:-1])
    with pytest.raises(ReportError, match="member 0 must be an integer in 1..65535"):
        Observation.decode(OBS.encode()[:40] + b"\x00\x00" + OBS.encode()[42:])


def test_signed_observation_json_round_trip() -> None:
    signed = SignedObservation(OBS, b"\x01" * 64)
    assert SignedObservation.from_json(signed.to_json()) == signed
    with pytest.raises(ReportError, match="observation: 0x-hex"):
        SignedObservation.from_json({"observation": "zz"})


@settings(max_examples=200, deadline=None)
@given(
    feed_id=st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=32),
    round_=st.integers(0, 2**64 - 1),
    price=st.integers(-(2**255), 2**255 - 1),
    confidence=st.integers(0, 2**256 - 1),
    decimals=st.integers(0, 18),
    count=st.integers(1, 255),
    observed=st.integers(0, 2**64 - 1),
    published=st.integers(0, 2**64 - 1),
)
def test_report_round_trips(feed_id, round_, price, confidence, decimals, count, observed, published) -> None:
    report = FeedReport(feed_id, round_, price, confidence, decimals, count, observed, published)
    assert FeedReport.decode(report.encode()) == report


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=REPORT_LEN, max_size=REPORT_LEN))
def test_decode_never_crashes_on_garbage(data: bytes) -> None:
    try:
        report = FeedReport.decode(data)
    except ReportError:
        return
    assert report.encode() == data  # whatever decodes is the one canonical encoding
