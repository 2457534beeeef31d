"""`sentiment`: VADER, rule-based and deterministic, so attesters can check a result by re-running it."""

from __future__ import annotations

import asyncio

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from relay.tasks.executors import ExecutorInputError, VerifyResult, verify_by_reexecution

# VADER's own recommended cut-offs on the compound score.
POSITIVE_AT = 0.05
NEGATIVE_AT = -0.05


def _fixed(value: float) -> str:
    # Fixed four decimals so the bytes never depend on float repr; "-0.0000" would be a second
    # spelling of zero.
    text = f"{value:.4f}"
    return "0.0000" if text == "-0.0000" else text


def label_for(compound: float) -> str:
    if compound >= POSITIVE_AT:
        return "positive"
    if compound <= NEGATIVE_AT:
        return "negative"
    return "neutral"


class SentimentExecutor:
    id = "sentiment"
    deterministic = True

    def __init__(self) -> None:
        self._analyzer = SentimentIntensityAnalyzer()

    def analyse(self, input: bytes) -> bytes:
        try:
            text = input.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ExecutorInputError(
                f"sentiment input must be UTF-8 text; byte {exc.start} (0x{input[exc.start]:02x}) is not valid UTF-8"
            ) from None
        scores = self._analyzer.polarity_scores(text)
        compound = scores["compound"]
        # Canonical compact JSON, keys in a fixed order: re-execution gives identical bytes.
        return (
            f'{{"label":"{label_for(compound)}","compound":{_fixed(compound)},'
            f'"pos":{_fixed(scores["pos"])},"neu":{_fixed(scores["neu"])},"neg":{_fixed(scores["neg"])}}}'
        ).encode("ascii")

    async def run(self, input: bytes, *, deadline: float | None) -> bytes:
        return await asyncio.to_thread(self.analyse, input)

    def verify(self, input: bytes, output: bytes) -> VerifyResult:
        try:
            expected = self.analyse(input)
        except ExecutorInputError as exc:
            return VerifyResult(False, str(exc))
        return verify_by_reexecution(self.id, expected, output)
