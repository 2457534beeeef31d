import pytest
from hypothesis import given, strategies as st

from relay.envelope import Envelope, EnvelopeError, address_to_bytes32, keccak256, message_digest
from relay.payloads import CommitteeRotation
from relay.protocol import ENVELOPE_HEADER_LEN, MAX_PAYLOAD_LEN, MessageKind, TAG_MESSAGE

envelopes = st.builds(
    Envelope,
    kind=st.sampled_from(list(MessageKind)).map(int),
    nonce=st.integers(0, 2**64 - 1),
    src_domain=st.integers(0, 2**32 - 1),
    src_sender=st.binary(min_size=32, max_size=32),
    dst_domain=st.integers(0, 2**32 - 1),
    dst_receiver=st.binary(min_size=32, max_size=32),
    payload=st.binary(max_size=MAX_PAYLOAD_LEN),
)


@given(envelopes)
def test_encode_decode_round_trip(envelope: Envelope) -> None:
    encoded = envelope.encode()
    assert len(encoded) == ENVELOPE_HEADER_LEN + len(envelope.payload)
    assert Envelope.decode(encoded) == envelope
    assert envelope.message_id == keccak256(encoded)


def test_layout_is_packed_big_endian() -> None:
    env = Envelope(kind=2, nonce=0x0102030405060708, src_domain=0x0A0B0C0D, src_sender=b"\x11" * 32,
                   dst_domain=0x01020304, dst_receiver=b"\x22" * 32, payload=b"\xff")
    assert env.encode() == (
        b"\x01\x02" + bytes.fromhex("0102030405060708") + bytes.fromhex("0a0b0c0d") + b"\x11" * 32
        + bytes.fromhex("01020304") + b"\x22" * 32 + b"\xff"
    )


def test_digest_is_domain_separated_by_tag_and_epoch() -> None:
    mid = b"\x07" * 32
    assert message_digest(5, mid) == keccak256(TAG_MESSAGE + (5).to_bytes(4, "big") + mid)
    assert message_digest(5, mid) != message_digest(6, mid)


@pytest.mark.parametrize(
    "data, fragment",
    [
        (b"\x01\x01", "at least 82"),
        (b"\x02" + b"\x01" + bytes(80), "unsupported envelope version 2"),
        (b"\x01" + b"\x09" + bytes(80), "unknown message kind 9"),
        (b"\x01\x01" + bytes(80) + bytes(MAX_PAYLOAD_LEN + 1), "limit is 512"),
    ],
)
def test_malformed_bytes_are_rejected_with_a_reason(data: bytes, fragment: str) -> None:
    with pytest.raises(EnvelopeError, match=fragment):
        Envelope.decode(data)


def test_fields_out_of_range_are_rejected() -> None:
    good = dict(kind=1, nonce=0, src_domain=1, src_sender=bytes(32), dst_domain=2, dst_receiver=bytes(32))
    with pytest.raises(EnvelopeError, match="nonce"):
        Envelope(**{**good, "nonce": 2**64})
    with pytest.raises(EnvelopeError, match="dst_domain"):
        Envelope(**{**good, "dst_domain": -1})
    with pytest.raises(EnvelopeError, match="src_sender must be 32 bytes"):
        Envelope(**{**good, "src_sender": bytes(20)})


def test_evm_address_is_left_padded() -> None:
    assert address_to_bytes32("0x" + "ab" * 20) == bytes(12) + b"\xab" * 20
    with pytest.raises(EnvelopeError):
        address_to_bytes32(b"\x01" * 19)


def test_rotation_payload_round_trip_and_validation() -> None:
    rot = CommitteeRotation(new_epoch=2, n=4, t=3, group_key=b"\x05" * 128, grace_seconds=3600)
    encoded = rot.encode()
    assert len(encoded) == 140 and encoded[:8] == bytes.fromhex("0000000200040003")
    assert CommitteeRotation.decode(encoded) == rot
    with pytest.raises(EnvelopeError, match="140"):
        CommitteeRotation.decode(encoded[:-1])
    with pytest.raises(EnvelopeError, match="threshold"):
        CommitteeRotation(new_epoch=2, n=2, t=3, group_key=b"\x05" * 128, grace_seconds=0)
