"""Bounded, jittered exponential backoff for pending operations."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    base: float = 0.5  # seconds before the first retry
    factor: float = 2.0
    cap: float = 60.0  # never wait longer than this between attempts
    max_attempts: int = 12  # then the operation goes to the dead-letter stage
    jitter: float = 0.25  # +/- fraction, so many relayers do not retry in lockstep

    def delay(self, attempts: int, rng: random.Random | None = None) -> float:
        raw = min(self.cap, self.base * self.factor ** max(0, attempts))
        spread = raw * self.jitter
        return max(0.0, raw + (rng or random).uniform(-spread, spread))

    def exhausted(self, attempts: int) -> bool:
        return attempts + 1 >= self.max_attempts
