"""`relay up` / `relay down`: the whole stack on this machine in one command.

`relay up` is `relay localnet up` plus every daemon a user would otherwise start by hand, each as
the command the README shows, with the generated config: `relay attester --index i` for every
committee member, `relay run`, `relay feed-server`, `relay worker --chain C` for every chain,
`relay feed-push` and `relay market`. They are children of the localnet's supervisor (one state
directory, one localnet.json, logs/<process>.log each), so `relay localnet status` shows them and
`relay down` (= `relay localnet down`) stops them all. relay/devstack.py does the work.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from relay import localnet
from relay.cli.localnet import add_up_arguments, up_options
from relay.devstack import run_up
from relay.localnet import default_state_dir

# Starting ~15 processes (each importing web3 or solana) on a small machine takes a while.
DETACHED_START_TIMEOUT_S = 420.0


def register(sub: argparse._SubParsersAction) -> None:
    up = sub.add_parser(
        "up", help="start everything: the localnet, the attesters, the relayer, a worker per chain, feeds, market",
        description="Start the localnet (chains, contracts, program, generated config; see `relay localnet up`) "
        "and, with its config, every committee member's attester, the relayer, the feed server, one worker per "
        "chain, the feed pusher and the market simulator. In the foreground it shows a live status table "
        "(processes, chain heights, the relayer's queue by stage, feeds and their age; a log line every few "
        "seconds when not on a terminal) until Ctrl-C; --detach runs it in the background. Logs: "
        "<state-dir>/logs/<process>.log. A process that fails to start stops everything with its name and "
        "the end of its log.",
    )
    up.add_argument("--state-dir", type=Path, default=default_state_dir(),
                    help="where state, keys, logs and the generated config live (default: %(default)s)")
    add_up_arguments(up)
    up.add_argument("--market-interval-ms", type=int, default=1000,
                    help="time between the market simulator's swaps (default: %(default)s)")
    up.set_defaults(handler=_up)

    down = sub.add_parser("down", help="stop everything `relay up` (or `relay localnet up`) started",
                          description="Stop the stack started from the state directory: every daemon, then the "
                          "chains. No process is left behind; `relay up` can start again at once.")
    down.add_argument("--state-dir", type=Path, default=default_state_dir(),
                      help="the state directory `relay up` used (default: %(default)s)")
    down.set_defaults(handler=_down)


def _up(args: argparse.Namespace) -> int:
    options = up_options(args)
    if args.detach:
        argv = [a for a in sys.argv[1:] if a != "--detach"]
        state = localnet.start_detached(options, argv, DETACHED_START_TIMEOUT_S, what="the stack")
        state_dir = options.state_dir.resolve()
        print(localnet.summary(state, state_dir))
        print(f"processes: {', '.join(state.get('processes', {}))}")
        print(f"logs       {state_dir / 'logs'}")
        print(f"stack running in the background (pid {state['supervisor_pid']}); `relay localnet status` shows it, "
              "`relay down` stops it")
        return 0
    asyncio.run(run_up(options, args.market_interval_ms))
    return 0


def _down(args: argparse.Namespace) -> int:
    if localnet.stop_detached(args.state_dir):
        print("stack stopped")
    else:
        print(f"nothing running from {args.state_dir.resolve()}")
    return 0
