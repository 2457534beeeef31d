"""`relay demo` (what `make demo` runs): AI tasks across two real chains, explained as it runs.

1. real chains: anvil + the Solana localnet server; contracts and the program deployed;
2. a 3-of-4 attester committee, a relayer, and a task worker on each chain, each its own process;
3. agents ask for AI work through the SDK in both directions (task protocol v2); each task is
   followed stage by stage: request carried to the other chain → workers compete in a 1 s reverse
   Dutch auction and the first to claim posts a bond → it runs the executor → its signed result
   carried back → the committee checks it (re-executing deterministic executors) and its verdict
   carried to both boards → the requester's board pays the claim price and refunds the rest, the
   serving board returns the bond;
4. a summary: outputs, who was paid, where the time went, and the committee's signature over each
   attestation checked off-chain;
5. the same committee's price feeds: the attesters ran a feed round every second meanwhile; a
   committee-signed ETH/USD report read through the SDK (verified), and the same feed on both chains
   (the EVM's Chainlink-compatible aggregator, the Solana feed account), put there by the pusher.
Exit code 0 only if every task completed and verified and the feed reached both chains.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from relay.log import configure_logging
from relay.devstack import messaging_stack
from relay.tasks.client import AuctionTerms
from relay.localnet import read_state, smoke, summary

# (src, dst, executor, input): what agents on each chain ask the other chain's workers to do.
TASKS = [
    ("evm", "solana", "sentiment", "Markets rallied on strong earnings and upbeat guidance."),
    ("solana", "evm", "sentiment", "The launch slipped again and customers are furious."),
    ("evm", "solana", "echo", "proof-of-inference handshake #42"),
    ("solana", "evm", "sentiment", "A solid quarter: nothing spectacular, nothing alarming."),
]
MAX_FEE = {"evm": 10**15, "solana": 1_000_000}  # 0.001 ETH / 0.001 SOL held in escrow
BOND = {"evm": 10**14, "solana": 100_000}  # posted by the claimant on the serving chain
UNIT = {"evm": "wei", "solana": "lamports"}
STAGES = ["requested", "request_delivered", "claimed", "result_submitted", "result_delivered", "completed"]
METHOD = {1: "the worker's signature", 2: "re-execution", 3: "a proof verifier"}
SHORT = {"requested": "requested", "request_delivered": "request on dst", "claimed": "claimed",
         "result_submitted": "result sent", "result_delivered": "result on src", "completed": "verdict+paid"}


@dataclass
class Row:
    src: str
    dst: str
    executor: str
    input: str
    handle: object = None
    stages: dict[str, float] = field(default_factory=dict)
    final: str = ""
    error: str = ""
    verified: object = None


def _render(rows: list[Row], elapsed: float) -> str:
    lines = [f"   {'task':<14} {'route':<15} {'executor':<10} {'stage':<15} "
             + " ".join(f"{SHORT[s]:>14}" for s in STAGES[1:]) + f"   t={elapsed:5.1f}s"]
    for row in rows:
        stage = row.final or (max(row.stages, key=STAGES.index) if row.stages else "sending")
        cells = " ".join(f"{(f'{row.stages[s]:.2f}s' if s in row.stages else '.'):>14}" for s in STAGES[1:])
        lines.append(f"   {row.handle.id_hex[:14] if row.handle else '-':<14} {row.src + ' -> ' + row.dst:<15} "
                     f"{row.executor:<10} {SHORT.get(stage, stage):<15} {cells}")
    return "\n".join(lines)


async def _follow(row: Row, timeout: float) -> None:
    try:
        async with asyncio.timeout(timeout):
            async for event in row.handle.events(poll=0.1):
                if event.stage in STAGES:  # not expired/refunded/no_worker: the table has no column for them
                    row.stages.setdefault(event.stage, event.elapsed_s)  # (a claim may repeat: the first)
                if event.stage in ("completed", "expired", "refunded"):
                    row.final = event.stage
        if row.final == "completed":
            row.verified = await row.handle.verify()
    except Exception as exc:  # reported in the summary; the other tasks go on
        row.error = f"{type(exc).__name__}: {exc}"


async def run_demo() -> int:
    # Imported when the demo runs: `relay --help` and every other command import this module through
    # the CLI, and the SDK loads both chains' client libraries (seconds of start-up for nothing).
    from relay.sdk import TesseraClient

    if "TESSERA_LOG_LEVEL" not in os.environ:  # the demo narrates; logs only for problems
        configure_logging("warning")
    tty = sys.stdout.isatty()
    print("Tessera demo: AI tasks across chains\n====================================\n"
          "1. Starting real chains (anvil + Solana SVM localnet), deploying the gateways, task boards and\n"
          "   feed contracts, dealing a 3-of-4 attester committee, starting 4 attesters, a relayer, a worker\n"
          "   per chain, the feed server, the feed pusher and a market simulator...", flush=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tessera-demo-") as tmp:
        async with messaging_stack(Path(tmp), feeds=True) as stack:
            await asyncio.gather(stack.start_worker("evm"), stack.start_worker("solana"), stack.start_feed_server())
            stack.start_feed_pusher()
            stack.start_market()  # trades on the localnet pool move the ETH/USD price
            print(f"   up in {time.perf_counter() - started:.1f}s\n")
            print("\n".join("   " + line for line in summary(read_state(stack.state_dir), stack.state_dir).splitlines()))

            print("\n2. Checking each deployed piece on its own:")
            for check, outcome in await smoke(stack.state_dir):
                print(f"   {check:<48} {outcome}")

            print("\n3. Agents request AI tasks through the SDK (client.request_task). Each column is the time since\n"
                  "   the request at which the task reached that stage:\n"
                  "     request on dst  the relayer delivered the TASK_REQUEST (escrow held on the source chain)\n"
                  "     claimed         a worker won the 1 s auction: claimed at the current price, bond posted\n"
                  "     result sent     the claimant ran the executor and sent its signed TASK_RESULT\n"
                  "     result on src   the result was delivered back to the requester's task board\n"
                  "     verdict+paid    the committee checked the result (re-running deterministic executors), its\n"
                  "                     verdict reached the boards: the claim price paid, the rest refunded\n", flush=True)
            rows = [Row(src, dst, executor, text) for src, dst, executor, text in TASKS]
            async with TesseraClient.from_config(stack.config_path) as client:
                for row in rows:
                    row.handle = await client.request_task(src=row.src, dst=row.dst, executor=row.executor,
                                                           input=row.input, max_fee=MAX_FEE[row.src],
                                                           auction=AuctionTerms(window_s=1, bond=BOND[row.dst]))
                t0 = time.perf_counter()
                followers = asyncio.gather(*(_follow(row, 150) for row in rows))
                last = ""
                while not followers.done():
                    table = _render(rows, time.perf_counter() - t0)
                    if table != last:
                        if tty and last:
                            print(f"\x1b[{last.count(chr(10)) + 2}A", end="")
                        print(table + "\n", flush=True)
                        last = table
                    await asyncio.wait([followers], timeout=0.25)
                if tty:
                    print(f"\x1b[{last.count(chr(10)) + 2}A", end="")
                print(_render(rows, time.perf_counter() - t0) + "\n")
                ok = _summarise(rows)
                feeds_ok = await _feeds(client, stack)
            if not (ok and feeds_ok):
                _print_log_tails(stack.state_dir / "logs")  # the directory is gone once the demo returns
    print(f"\n{'every task completed: outputs checked, attestations verified, workers paid' if ok else 'demo FAILED'}"
          f"{'; the ETH/USD feed reached both chains' if feeds_ok else '; the feed did NOT reach both chains'}"
          "; everything stopped.")
    return 0 if ok and feeds_ok else 1


def _print_log_tails(logs: Path, lines: int = 25) -> None:
    """What the processes logged last (their directory is temporary): where a failed demo got stuck."""
    for log in sorted(logs.glob("*.log")):
        if log.name.startswith(("worker", "relayer", "feed-pusher")):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            print(f"\n--- last {len(tail)} lines of {log.name} ---", file=sys.stderr)
            print("\n".join(tail), file=sys.stderr, flush=True)


def _price(value: int, decimals: int) -> str:
    return f"{value / 10**decimals:,.{min(decimals, 4)}f}"


async def _feeds(client, stack) -> bool:
    # As in run_demo: the chain libraries load only when the demo runs.
    from adapters.evm import deploy as evm_deploy
    from adapters.evm.feeds import EvmFeedTarget, aggregator_key
    from adapters.solana.feeds import SolanaFeedTarget, feed_address

    print("\n5. Price feeds from the same committee. The attesters ran a feed round every second during the tasks\n"
          "   (observe the sources, a rotating leader builds the median report, every member checks it and\n"
          "   signs); the feed server serves the signed reports and the pusher puts them on both chains when\n"
          "   the price moved 0.5 % or the last one is 60 s old (Chainlink's deviation/heartbeat rule):\n")
    config = client.config
    evm = EvmFeedTarget.from_config("evm", config.chains["evm"])
    solana = SolanaFeedTarget.from_config("solana", config.chains["solana"])
    try:
        report = await client.feeds.latest("ETH/USD")  # refused if unsigned, stale or too uncertain
        r = report.report
        print(f"   SDK     ETH/USD {_price(r.price, r.decimals)} ± {_price(r.confidence, r.decimals)}  round {r.round}, "
              f"{r.observations} observations, epoch {report.epoch} signature verified against the committee key")
        deadline = time.monotonic() + 60
        on_evm = on_solana = None
        while time.monotonic() < deadline and (on_evm is None or on_solana is None):
            on_evm, on_solana = await evm.latest("ETH/USD"), await solana.latest("ETH/USD")
            if on_evm is None or on_solana is None:
                await asyncio.sleep(0.5)
        if on_evm is None or on_solana is None:
            print("   the pusher did not put ETH/USD on both chains within 60 s (see logs/feed-pusher.log)")
            return False
        aggregator = evm_deploy.contract(evm.w3, "TesseraAggregator", config.chains["evm"].contracts[aggregator_key("ETH/USD")])
        round_id, answer, _, updated_at, _ = await aggregator.functions.latestRoundData().call()
        description = await aggregator.functions.description().call()
        decimals = await aggregator.functions.decimals().call()
        print(f"   EVM     AggregatorV3Interface({description!r}).latestRoundData(): round {round_id}, answer "
              f"{_price(answer, decimals)}, updated {max(0, int(time.time()) - updated_at)} s ago")
        account, _ = feed_address(solana.program_id, "ETH/USD")
        print(f"   Solana  feed account {str(account)[:12]}...: round {on_solana.round}, price "
              f"{_price(on_solana.price, on_solana.decimals)}, {on_solana.observations} observations")
        return True
    except Exception as exc:
        print(f"   feeds FAILED: {type(exc).__name__}: {exc}")
        return False
    finally:
        await evm.close()
        await solana.close()


def _summarise(rows: list[Row]) -> bool:
    print("4. Summary")
    ok = True
    for row in rows:
        head = f"   {row.handle.id_hex[:14] if row.handle else '-'}  {row.src:>6} -> {row.dst:<6} {row.executor:<9}"
        if row.verified is None:
            ok = False
            print(f"{head} NOT completed: {row.error or row.final or 'unfinished'}")
            continue
        v = row.verified
        s = row.stages
        auction = s["claimed"] - s["request_delivered"]
        execution = s["result_submitted"] - s["claimed"]
        messaging = s["completed"] - execution - auction
        output = v.text if len(v.text) <= 90 else v.text[:87] + "..."
        print(f"{head} {output}")
        print(f"   {'':14}  {'':16}{'':10}checked by {METHOD[int(v.method)]}, committee epoch {v.epoch} "
              f"signature verified off-chain, worker paid {v.status.price} {UNIT[row.src]}, "
              f"{v.status.refund} back to the requester")
        print(f"   {'':14}  {'':16}{'':10}{s['completed']:.2f}s total = {messaging:.2f}s messaging + "
              f"{auction:.2f}s auction + claim + {execution:.2f}s worker (execute, submit)")
    return ok
