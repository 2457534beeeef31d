"""CPU and wall time of an attester's watch path per 1000 observations, before vs after, in one run.

What is timed is what `Attester._watch` does for each final observation (attest: equivocation check,
record, task hook; then set_cursor), inside a running event loop, plus what a batching relayer asks
of it: one root signature (POST /v1/roots: sign_root, then the commit every answer makes) per
`--batch` messages. Real BLS partials (a dealt 3-of-4 committee), a real SQLite file in --dir.

Variants (each in a fresh log file, interleaved, median of --rounds):
  before         the code of --before (default: the commit before group commit), loaded from git
                 into temporary modules: one SQLite commit per record and per cursor move, a BLS
                 partial signed per message at observation
  lazy-only      this tree with commit_every=1: one commit per write, partials signed on request
  after          this tree: group commit + partials signed on request

    .venv/bin/python bench/attester_cpu.py [--messages 1000] [--batch 64] [--rounds 3] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import attest  # noqa: E402
from attest.signing_log import SigningLog  # noqa: E402
from relay.attester import Attester  # noqa: E402
from relay.envelope import Envelope  # noqa: E402
from relay.interfaces import Observation  # noqa: E402
from relay.log import configure_logging  # noqa: E402

SRC, DST = 31337, 13375
BEFORE = "4e7bba7"  # the last commit before group commit and partials signed on request


class Chain:
    def __init__(self, name: str, domain: int) -> None:
        self.name, self.domain = name, domain

    async def reobserve(self, source_tx: str) -> list:
        return []


def _module(name: str, source: str) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__file__ = f"<{name}>"
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


def load_before(commit: str) -> tuple[type, type]:
    """SigningLog and Attester exactly as they were at `commit` (read with git show, not checked out)."""
    def show(path: str) -> str:
        try:
            return subprocess.run(["git", "show", f"{commit}:{path}"], cwd=REPO, check=True, capture_output=True,
                                  text=True).stdout
        except subprocess.CalledProcessError as exc:
            raise SystemExit(f"cannot read {path} at {commit}: {exc.stderr.strip()}") from None
    old_log = _module("_before_signing_log", show("attest/signing_log.py"))
    old_attester = _module("_before_attester", show("relay/attester.py").replace(
        "from attest.signing_log import", "from _before_signing_log import"))
    return old_log.SigningLog, old_attester.Attester


def envelopes(count: int) -> list[Envelope]:
    return [Envelope(kind=4, nonce=n, src_domain=SRC, src_sender=b"\x01" * 32, dst_domain=DST,
                     dst_receiver=b"\x02" * 32, payload=f"message {n}".encode()) for n in range(count)]


async def one_run(log_class: type, attester_class: type, path: Path, envs: list[Envelope], batch: int,
                  sign, **log_options) -> tuple[float, float, int]:
    log = log_class(path, member=1, **log_options)
    source, dest = Chain("solana", SRC), Chain("evm", DST)
    attester = attester_class(1, 1, sign, {SRC: source, DST: dest}, log)
    name = f"watch:{SRC}"
    cpu, wall = time.process_time(), time.perf_counter()
    for start in range(0, len(envs), batch):
        chunk = envs[start:start + batch]
        for env in chunk:  # Attester._watch, one observation at a time
            observation = Observation(env, f"tx{env.nonce}", 100 + env.nonce, str(100 + env.nonce))
            attester.attest(observation, source)
            log.set_cursor(name, observation.cursor)
            await asyncio.sleep(0)  # the watcher awaits its RPC between observations
        await attester.sign_root(SRC, DST, chunk)  # POST /v1/roots ...
        getattr(log, "flush", lambda: None)()  # ... whose answer commits first (after only)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    # -1: a commit per write (no group commit: the old log, or commit_every=1)
    commits = getattr(log, "commits", -1) if log_options.get("commit_every", 2) > 1 else -1
    log.close()
    return cpu, wall, commits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=64, help="messages per root request (the relayer's batch size)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where the SQLite files go (default: a temp dir)")
    parser.add_argument("--before", default=BEFORE, help="the git commit to measure as 'before'")
    args = parser.parse_args()
    if args.messages < 1 or not 1 <= args.batch <= 64 or args.rounds < 1:
        parser.error("--messages and --rounds must be >= 1, --batch between 1 and 64")
    _, shares = attest.deal(4, 3, epoch=1)
    share = shares[0]
    sign = lambda digest: attest.partial_sign(share, digest).signature  # noqa: E731
    old_log, old_attester = load_before(args.before)
    variants = {
        "before": (old_log, old_attester, {}),
        "lazy-only": (SigningLog, Attester, {"commit_every": 1}),
        "after": (SigningLog, Attester, {}),
    }
    envs = envelopes(args.messages)
    results: dict[str, list[tuple[float, float, int]]] = {v: [] for v in variants}
    # As in the daemon: one JSON log line per message, written to stderr (here: /dev/null).
    configure_logging("info", json=True)
    stderr, sys.stderr = sys.stderr, open(os.devnull, "w")
    try:
        run_all(variants, envs, args, sign, results)
    finally:
        sys.stderr.close()
        sys.stderr = stderr
    print(f"attester watch path, {args.messages} observations, a root request per {args.batch}, "
          f"median of {args.rounds} (per 1000 observations):")
    print(f"{'variant':<10} {'CPU s':>8} {'wall s':>8} {'commits':>9}")
    base = None
    for label, runs in results.items():
        cpu = statistics.median(r[0] for r in runs) * 1000 / args.messages
        wall = statistics.median(r[1] for r in runs) * 1000 / args.messages
        commits = runs[0][2]
        base = base or (cpu, wall)
        print(f"{label:<10} {cpu:8.3f} {wall:8.3f} {commits if commits >= 0 else 'per write':>9}   "
              f"CPU x{base[0] / cpu:.1f}, wall x{base[1] / wall:.1f} vs before")


def run_all(variants: dict, envs: list[Envelope], args: argparse.Namespace, sign, results: dict) -> None:
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for r in range(args.rounds):
            for label, (log_class, attester_class, options) in variants.items():
                path = Path(tmp) / f"{label}-{r}.db"
                results[label].append(asyncio.run(one_run(log_class, attester_class, path, envs, args.batch, sign,
                                                          **options)))


if __name__ == "__main__":
    main()
