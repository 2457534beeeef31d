"""`relay feed-server`, `relay feed-push` and `relay market` (the localnet market simulator)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from relay.cli.common import add_config_option, load
from relay.configfile import check_listen
from relay.errors import ConfigError
from relay.daemons.feed_push import run_feed_push, run_market
from relay.daemons.feed_server import run_feed_server


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "feed-server", help="serve committee-signed feed reports over REST, SSE and WebSocket",
        description="Accept feed reports from the round leader (POST /v1/reports, verified against the committee "
        "key) and serve them: GET /v1/feeds, /v1/feeds/{id}/latest, /v1/feeds/{id}/history, SSE /v1/stream, "
        "WebSocket /v1/ws, /openapi.json, /health, /metrics. Settings come from [feed_server]; feeds from "
        "[feeds.<id>]; the committee from [committee] file.",
    )
    add_config_option(p)
    p.add_argument("--listen", default=None, help="host:port to listen on (default: [feed_server] listen)")
    p.set_defaults(handler=_run_feed_server)

    p = sub.add_parser(
        "feed-push", help="push committee-signed feed reports on-chain (deviation / heartbeat)",
        description="Follow the feed server's report stream ([feed_push] source, GET /v1/stream) and push each "
        "feed's reports to every target chain when the price moved deviation_bps or the on-chain report is "
        "heartbeat_s old ([feeds.<id>]). What is on-chain is read at start, so a restart loses nothing.",
    )
    add_config_option(p)
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
    add_config_option(m)
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


def _run_feed_server(args: argparse.Namespace) -> int:
    config, base = load(args.config)
    if args.listen is not None:
        try:
            check_listen(args.listen)
        except ValueError as exc:
            raise ConfigError(f"--listen: {exc}") from None
    asyncio.run(run_feed_server(config, args.listen, base=base))
    return 0


def _run_feed_push(args: argparse.Namespace) -> int:
    config, base = load(args.config)
    asyncio.run(run_feed_push(config, base, args.source, args.target))
    return 0


def _run_market(args: argparse.Namespace) -> int:
    config, base = load(args.config)
    asyncio.run(run_market(config, base, args.chain, args.key_file, interval_ms=args.interval_ms,
                           volatility_bps=args.volatility_bps, reversion=args.reversion, steps=args.steps,
                           seed=args.seed))
    return 0
