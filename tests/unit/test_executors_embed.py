"""The optional `embed` executor (all-MiniLM-L6-v2). Its model test runs only where the `embed`
extra is installed; the vector helpers are tested everywhere."""

from __future__ import annotations

import math

import pytest

from relay.tasks.embed import DIMENSIONS, MIN_COSINE, EmbedExecutor, cosine, decode_vector, encode_vector

MISSING = EmbedExecutor.unavailable_reason()


def test_vector_encoding_is_big_endian_float32() -> None:
    assert encode_vector([1.0, -2.0]) == bytes.fromhex("3f800000c0000000")
    assert decode_vector(encode_vector([0.5, 0.25, -1.5])) == [0.5, 0.25, -1.5]
    with pytest.raises(ValueError, match="whole number of float32"):
        decode_vector(b"\x00" * 5)


def test_cosine() -> None:
    assert cosine([1.0, 0.0], [2.0, 0.0]) == pytest.approx(1.0)
    assert cosine([1.0, 0.0], [0.0, 3.0]) == pytest.approx(0.0)
    assert cosine([1.0, 1.0], [1.0, 0.0]) == pytest.approx(1 / math.sqrt(2))
    assert cosine([0.0, 0.0], [1.0, 0.0]) == 0.0
    with pytest.raises(ValueError, match="differ in length"):
        cosine([1.0], [1.0, 2.0])


def test_missing_extra_names_the_install_command() -> None:
    if MISSING is None:
        pytest.skip("the embed extra is installed here; nothing is missing")
    assert "pip install 'tessera[embed]'" in MISSING


@pytest.mark.skipif(MISSING is not None, reason=f"embed executor unavailable: {MISSING}")
async def test_embeddings_and_tolerance_verification() -> None:
    embed = EmbedExecutor()
    assert not embed.deterministic
    cat = await embed.run(b"A cat sits on the mat.", deadline=None)
    assert len(cat) == DIMENSIONS * 4
    assert math.isclose(math.sqrt(sum(v * v for v in decode_vector(cat))), 1.0, rel_tol=1e-3)
    ok = embed.verify(b"A cat sits on the mat.", cat)
    assert ok.ok and ok.score is not None and ok.score >= MIN_COSINE
    other = await embed.run(b"Interest rates rose sharply in March.", deadline=None)
    refused = embed.verify(b"A cat sits on the mat.", other)
    assert not refused.ok and refused.score is not None and refused.score < MIN_COSINE
    assert not embed.verify(b"A cat sits on the mat.", cat[:-1]).ok
