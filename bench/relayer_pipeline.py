"""The relayer's own CPU per message, in-process: a burst of N messages from a watcher through
observed -> ready -> submitted -> confirmed with the real pipeline and store (an SQLite file, WAL +
synchronous=FULL) and in-memory chains and committee (tests/support/fakes.py; with batching the
batch-taking chain and root-signing committee of tests/unit/test_batching.py). No RPC, no signing:
what is left is the pipeline, the store and the fakes' small share.

Compare with an older version of the code in the same run by extracting it and pointing --tree at it:

    mkdir /tmp/old && git archive <rev> relay tests adapters attest | tar -x -C /tmp/old
    .venv/bin/python bench/relayer_pipeline.py --tree /tmp/old   # then without --tree

    .venv/bin/python bench/relayer_pipeline.py [--messages 1000] [--batching on|off|both] [--tree DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--batching", choices=("on", "off", "both"), default="both")
    parser.add_argument("--tree", type=Path, default=Path(__file__).resolve().parent.parent,
                        help="the source tree whose relay/ and tests/ to run (default: this one)")
    args = parser.parse_args()
    if args.messages < 1:
        parser.error("--messages must be at least 1")
    if not (args.tree / "relay" / "pipeline.py").is_file():
        parser.error(f"--tree {args.tree}: no relay/pipeline.py there")
    return args


async def run(count: int, batching: bool) -> str:
    import structlog

    from relay.backoff import Backoff
    from relay.interfaces import Observation
    from relay.pipeline import PipelineSettings, Relayer
    from relay.store import Stage, Store
    from tests.support.fakes import DST, SRC, FakeChain, FakeCommittee, envelope
    from tests.unit.test_batching import BatchChain, RootCommittee

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    class Burst(FakeChain):
        async def watch(self, cursor):
            for n in range(count):
                yield Observation(envelope(n), f"0x{n:064x}", n, f"c{n}")
            await asyncio.Event().wait()

    with tempfile.TemporaryDirectory(prefix="tessera-bench-pipeline-") as tmp:
        store = await Store.open(str(Path(tmp) / "relayer.db"))
        settings = PipelineSettings(backoff=Backoff(base=0.0, jitter=0.0, max_attempts=3), confirm_poll=0.0,
                                    idle_wait=0.01, batch_size=32 if batching else 1, batch_wait=0.0)
        destination = BatchChain("evm", DST) if batching else FakeChain("solana", DST)
        relayer = Relayer(store, {SRC: Burst("evm", SRC), DST: destination},
                          RootCommittee() if batching else FakeCommittee(), settings)
        stop = asyncio.Event()
        wall0, cpu0 = time.perf_counter(), time.process_time()
        runner = asyncio.create_task(relayer.run(stop))
        try:
            while True:
                await asyncio.sleep(0.02)
                counts = await store.counts()
                if sum(n for (stage, _), n in counts.items() if stage is Stage.CONFIRMED) >= count:
                    break
                if runner.done():
                    runner.result()
                    raise RuntimeError("the relayer stopped before delivering the burst")
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        finally:
            stop.set()
            await runner
            await store.close()
    return (f"batching {'on ' if batching else 'off'} {count} msgs: wall {wall:6.2f} s  CPU {cpu:6.2f} s "
            f"({1000 * cpu / count:.2f} ms/msg)")


def main() -> None:
    args = parse()
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if p not in (here, "")]  # (bench/attest.py is not the attest package)
    sys.path.insert(0, str(args.tree.resolve()))
    modes = {"on": [True], "off": [False], "both": [False, True]}[args.batching]
    for batching in modes:
        print(f"{args.tree}: " + asyncio.run(run(args.messages, batching)), flush=True)


if __name__ == "__main__":
    main()
