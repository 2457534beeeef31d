"""Threshold BLS (BN254) timings per backend, with the ratio to py-ecc measured in the same run.

    .venv/bin/python bench/attest.py [--iterations 50] [--pyecc-iterations 2] [--json out.json]

Operations: sign (one partial signature, hash included), verify (combined signature against the
group key, hash + strict decoding + 2-pairing check), combine (Lagrange MSM of t = 7 of 10 partials,
unchecked), combine+verify (attest.combine: optimistic combine, then one verification), batch-verify
(100 messages under one key: two pairings + two 100-point MSMs).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from attest import available_backends, batch_verify, combine, combine_signatures, deal, partial_sign, sign, verify  # noqa: E402
from attest.bn254 import _hash_to_g1, decode_g1  # noqa: E402
from relay.envelope import keccak256  # noqa: E402

N, T, BATCH = 10, 7, 100


def measure(fn: Callable[[], object], iterations: int) -> float:
    fn()  # warm caches (decoded keys, backend objects)
    samples = []
    for _ in range(iterations):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def run(backend: str, iterations: int) -> dict[str, float]:
    # Set-up (keys, the batch's signatures) uses the fastest backend; only the timed calls use `backend`.
    setup = "zksnake" if "zksnake" in available_backends() else backend
    committee, shares = deal(N, T, rng=random.Random(1), backend=setup)
    digests = [keccak256(b"bench " + i.to_bytes(4, "big")) for i in range(BATCH)]
    digest = digests[0]
    partials = [partial_sign(s, digest, backend) for s in shares[:T]]
    combined = combine_signatures(partials, backend)
    assert verify(committee.group_key, digest, combined, backend)
    # Batch items are signed by a 1-of-1 committee: batch verification only sees (digest, σ, PK).
    single, single_shares = deal(1, 1, rng=random.Random(2), backend=setup)
    sk = single_shares[0].scalar
    items = [(d, sign(sk, d, setup)) for d in digests]

    def cold() -> None:
        # Hashing and strict decoding are cached by bytes; clear the caches so every operation pays
        # for them as it would for a message seen for the first time.
        decode_g1.cache_clear()
        _hash_to_g1.cache_clear()

    results = {
        "sign": measure(lambda: (cold(), partial_sign(shares[0], digest, backend)), iterations),
        "verify": measure(lambda: (cold(), verify(committee.group_key, digest, combined, backend)), iterations),
        f"combine {T} of {N}": measure(lambda: (cold(), combine_signatures(partials, backend)), iterations),
        "combine+verify": measure(lambda: (cold(), combine(committee, digest, partials, backend)), iterations),
        f"batch-verify {BATCH}": measure(lambda: (cold(), batch_verify(single.group_key, items, backend)), max(1, iterations // 5)),
    }
    assert batch_verify(single.group_key, items, backend).ok
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="BN254 threshold BLS benchmark")
    parser.add_argument("--iterations", type=int, default=50, help="iterations for fast backends")
    parser.add_argument("--pyecc-iterations", type=int, default=2, help="iterations for py-ecc (~1 s per pairing check)")
    parser.add_argument("--backends", default=",".join(available_backends()))
    parser.add_argument("--json", type=Path, help="also write the figures (ms) to this file")
    args = parser.parse_args(argv)
    backends = [b for b in args.backends.split(",") if b]
    figures = {b: run(b, args.pyecc_iterations if b == "pyecc" else args.iterations) for b in backends}

    operations = list(next(iter(figures.values())))
    header = f"{'operation':<18}" + "".join(f"{b + ' (ms)':>16}" for b in backends)
    if "pyecc" in figures and len(backends) > 1:
        header += "".join(f"{'py-ecc/' + b:>18}" for b in backends if b != "pyecc")
    print(header)
    print("-" * len(header))
    for op in operations:
        line = f"{op:<18}" + "".join(f"{figures[b][op]:>16.2f}" for b in backends)
        if "pyecc" in figures and len(backends) > 1:
            line += "".join(f"{figures['pyecc'][op] / figures[b][op]:>17.0f}x" for b in backends if b != "pyecc")
        print(line)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
