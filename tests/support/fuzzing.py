"""Fuzzing budgets and inputs shared by the tests/unit/test_fuzz_*.py modules.

The hypothesis profile is chosen in tests/conftest.py: `ci` (the default: derandomised, so every run
draws the same examples) or `dev` (HYPOTHESIS_PROFILE=dev: random examples, `budget` ten times
larger, for longer local runs)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st

VECTORS = Path(__file__).resolve().parents[1] / "vectors"


def budget(examples: int) -> int:
    """`examples` under the `ci` profile, ten times more under `dev`."""
    return examples * (10 if settings.get_current_profile_name() == "dev" else 1)


def vector_blobs(min_len: int = 16) -> list[bytes]:
    """Every 0x-hex string of at least `min_len` bytes in tests/vectors/*.json: encodings of every
    codec, the seeds that mutations start from."""
    found: set[bytes] = set()

    def walk(value: object) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, str) and value.startswith("0x") and len(value) >= 2 + 2 * min_len:
            try:
                found.add(bytes.fromhex(value[2:]))
            except ValueError:
                pass

    for path in sorted(VECTORS.glob("*.json")):
        walk(json.loads(path.read_text()))
    return sorted(found)


def _mutate(seed: bytes, edits: list[tuple[int, int]], cut: int | None, tail: bytes) -> bytes:
    data = bytearray(seed)
    for position, value in edits:
        if data:
            data[position % len(data)] = value
    if cut is not None:
        data = data[:cut] if cut >= 0 else data[: max(0, len(data) + cut)]
    return bytes(data) + tail


def mutated(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    """A seed, a few of its bytes overwritten, maybe cut short, maybe with bytes appended (often
    none of these: the seed itself is among the examples)."""
    return st.builds(
        _mutate,
        st.sampled_from(seeds),
        st.lists(st.tuples(st.integers(0, 1024), st.integers(0, 255)), max_size=3),
        st.none() | st.integers(-16, 600),
        st.just(b"") | st.binary(max_size=8),
    )


def fuzz_bytes(seeds: list[bytes], max_size: int = 640) -> st.SearchStrategy[bytes]:
    """Random bytes, or a mutated seed."""
    return st.binary(max_size=max_size) | mutated(seeds)


# JSON values: what a decoder of JSON input may be handed.
json_scalars = st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | \
    st.floats(allow_nan=False) | st.text(max_size=24)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


# JSON nested deeper than Python's json module parses at the interpreter's default recursion limit.
DEEP_JSON = "[" * 5000 + "]" * 5000


@contextmanager
def default_recursion_limit(limit: int = 1000) -> Iterator[None]:
    """The interpreter's default recursion limit while the block runs. A daemon runs with it (deep
    JSON raises RecursionError there); the test process does not: py_ecc, which the tests import,
    raises the limit to 100000 on import, and hypothesis lifts it while a test runs."""
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(limit)
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)
