"""`relay feed-push` (on-chain pusher) and `relay market` (the localnet market simulator)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from adapters.registry import driver_named
from relay.config import KeyRef, TesseraConfig
from relay.errors import ConfigError
from relay.lifecycle import settle_heap
from relay.log import get_logger

log = get_logger("relay.feed_push")

# `relay localnet up` writes the market's key here (relative to the config file).
MARKET_KEY_FILE = Path("keys/evm-market.key")


def register(sub: argparse._SubParsersAction) -> None:
    """Adds this module's sub-commands (each sets `handler`)."""
    p = sub.add_parser(
        "feed-push", help="push committee-signed feed reports on-chain (deviation / heartbeat)",
        description="Follow the feed server's report stream ([feed_push] source, GET /v1/stream) and push each "
        "feed's reports to every target chain when the price moved deviation_bps or the on-chain report is "
        "heartbeat_s old ([feeds.<id>]). What is on-chain is read at start, so a restart loses nothing.",
    )
    p.add_argument("--config", type=Path, default=None, help="Tessera config (default: the localnet's)")
    p.add_argument("--source", default=None, help="feed server base URL (default: [feed_push] source)")
    p.add_argument("--target", action="append", default=None,
                   help="chain name to push to; repeat for several (default: [feed_push] targets, else every chain)")
    p.set_defaults(handler=_run_feed_push)

    m = sub.add_parser(
        "market", help="move the localnet pool's price with random swaps (for the evm_pool feed source)",
        description="Send a swap to the constant-product pool (chains.<chain>.contracts.MarketPool) every "
        "--interval-ms, following a mean-reverting random walk around the pool's starting price. Real "
        "transactions from the market key (keys/evm-market.key on the localnet). Localnet only.",
    )
    m.add_argument("--config", type=Path, default=None, help="Tessera config (default: the localnet's)")
    m.add_argument("--chain", default="evm", help="the EVM chain holding the pool (default: %(default)s)")
    m.add_argument("--interval-ms", type=int, default=1000, help="time between swaps (default: %(default)s)")
    m.add_argument("--volatility-bps", type=float, default=20.0, help="σ of each step (default: %(default)s)")
    m.add_argument("--reversion", type=float, default=0.05,
                   help="pull toward the starting price per step, 0..1 (default: %(default)s)")
    m.add_argument("--steps", type=int, default=None, help="stop after this many swaps (default: run until stopped)")
    m.add_argument("--key-file", type=Path, default=None,
                   help="the account that trades (default: keys/evm-market.key next to the config)")
    m.add_argument("--seed", type=int, default=None, help="random seed, for a reproducible walk")
    m.set_defaults(handler=_run_market)


def _load(path: Path | None) -> tuple[TesseraConfig, Path]:
    from relay.cli import _config_path
    from relay.config import load_config

    path = _config_path(path)
    return load_config(path), path.parent


def _resolve_key(ref: KeyRef | None, base: Path) -> KeyRef | None:
    if ref is None or ref.file is None or ref.file.is_absolute():
        return ref
    return ref.model_copy(update={"file": base / ref.file})


def _stop_event() -> asyncio.Event:
    from relay.daemons import _stop_event as daemon_stop

    return daemon_stop()


# --- feed-push ------------------------------------------------------------------------------------


def build_targets(config: TesseraConfig, base: Path, names: list[str]) -> list[Any]:
    """One push target per chain name, each with the pusher's own key from [feed_push] (the one for
    that chain's kind, chosen by its driver)."""
    section = config.feed_push
    section = section.model_copy(update={"evm_key": _resolve_key(section.evm_key, base),
                                         "solana_keypair": _resolve_key(section.solana_keypair, base)})
    targets: list[Any] = []
    for name in names:
        if name not in config.chains:
            raise ConfigError(f"feed_push.targets: no chain {name!r} under [chains]; configured: "
                              f"{', '.join(sorted(config.chains))}")
        targets.append(driver_named(config, name).feed_target(config, section))
    return targets


async def run_feed_push(config: TesseraConfig, base: Path, source: str | None = None,
                        target_names: list[str] | None = None, stop: asyncio.Event | None = None) -> None:
    from relay.backoff import Backoff
    from relay.feeds.aggregate import PushPolicy
    from relay.feeds.push import Pusher, client_reports, sse_reports

    section = config.feed_push
    source = source or section.source
    if not source:
        raise ConfigError("no feed server to follow: set [feed_push] source = \"http://host:port\" or pass --source")
    names = target_names or section.targets or list(config.chains)
    feed_ids = section.feeds if section.feeds is not None else list(config.feeds)
    unknown = [f for f in feed_ids if f not in config.feeds]
    if unknown:
        raise ConfigError(f"feed_push.feeds: {unknown} have no [feeds.<id>] table; add them or remove them from the list")
    policies = {fid: PushPolicy.for_feed(config.feeds[fid]) for fid in feed_ids}
    committee = None
    if section.verify and config.committee is not None:
        from attest.committee import Committee

        committee = Committee.load(config.committee.file)
    stop = stop or _stop_event()
    targets = build_targets(config, base, names)
    backoff = Backoff(base=section.retry_base_s, cap=section.retry_cap_s, max_attempts=section.max_attempts)
    # With a committee the SDK's client verifies (and resumes); without one, the plain SSE reader.
    reports = client_reports(source, committee, feed_ids) if committee is not None else sse_reports(source)
    pusher = Pusher(targets, policies, backoff=backoff)
    try:
        await pusher.start()
        settle_heap()
        log.info("feed pusher running", source=source, targets=pusher.targets, feeds=feed_ids,
                 verified=committee is not None)
        follow = asyncio.create_task(pusher.run(reports))
        stopped = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({follow, stopped}, return_when=asyncio.FIRST_COMPLETED)
        for task in (follow, stopped):
            task.cancel()
        if follow in done and not follow.cancelled() and follow.exception() is not None:
            raise follow.exception()  # type: ignore[misc]
    finally:
        await pusher.close()
        for target in targets:
            await target.close()
        log.info("feed pusher stopped")


def _run_feed_push(args: argparse.Namespace) -> int:
    config, base = _load(args.config)
    asyncio.run(run_feed_push(config, base, args.source, args.target))
    return 0


# --- market ---------------------------------------------------------------------------------------


async def run_market(config: TesseraConfig, base: Path, chain_name: str, key_file: Path | None, *,
                     interval_ms: int, volatility_bps: float, reversion: float, steps: int | None,
                     seed: int | None, stop: asyncio.Event | None = None) -> None:
    from adapters.evm.market import MarketSimulator

    chain = config.chains.get(chain_name)
    if chain is None or chain.kind != "evm":
        raise ConfigError(f"chains.{chain_name} is not a configured evm chain: pass --chain NAME")
    pool = chain.contracts.get("MarketPool")
    if pool is None:
        raise ConfigError(f"chains.{chain_name}.contracts has no MarketPool: `relay localnet up` deploys the market")
    key = KeyRef(file=key_file or base / MARKET_KEY_FILE).read_text()
    stop = stop or _stop_event()
    simulator = MarketSimulator.connect(chain.rpc_urls[0], key, pool, interval_ms=interval_ms,
                                        volatility_bps=volatility_bps, reversion=reversion, seed=seed)
    try:
        run = asyncio.create_task(simulator.run(steps))
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({run, stopped}, return_when=asyncio.FIRST_COMPLETED)
        for task in (run, stopped):
            task.cancel()
        if run.done() and not run.cancelled() and run.exception() is not None:
            raise run.exception()  # type: ignore[misc]
        log.info("market stopped", swaps=len(simulator.steps))
    finally:
        await simulator.close()


def _run_market(args: argparse.Namespace) -> int:
    config, base = _load(args.config)
    asyncio.run(run_market(config, base, args.chain, args.key_file, interval_ms=args.interval_ms,
                           volatility_bps=args.volatility_bps, reversion=args.reversion, steps=args.steps,
                           seed=args.seed))
    return 0
