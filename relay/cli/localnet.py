"""`relay localnet up|down|status` (real chains on this machine) and `relay demo`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from relay import localnet
from relay.demo import run_demo
from relay.localnet import LocalnetOptions, default_state_dir


def register(sub: argparse._SubParsersAction) -> None:
    _register_localnet(sub)
    _register_demo(sub)


def _register_localnet(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "localnet",
        help="run real chains on this machine (anvil + Solana localnet server)",
        description="Start, inspect and stop the embedded localnet: a real anvil node and the Solana "
        "localnet server (the SVM runtime behind the standard JSON-RPC), with the Tessera contracts "
        "and program deployed and a generated config in the state directory.",
    )
    p.add_argument("--state-dir", type=Path, default=default_state_dir(),
                   help="where state, keys, logs and the generated config live (default: %(default)s)")
    p.set_defaults(handler=_run_localnet)
    lsub = p.add_subparsers(dest="localnet_cmd", required=True, metavar="{up,down,status}")

    up = lsub.add_parser("up", help="start the chains, deploy, write config; foreground unless --detach",
                         description="Start anvil and the Solana localnet server on 127.0.0.1, fund accounts, "
                         "deploy the EVM contracts and the Solana program, and write config.toml into the "
                         "state directory. Runs in the foreground (Ctrl-C stops everything) unless --detach.")
    add_up_arguments(up)
    lsub.add_parser("down", help="stop a localnet (or the whole `relay up` stack) started with --detach; no process "
                    "is left behind")
    lsub.add_parser("status", help="show the localnet's processes and whether each chain answers")


def add_up_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `relay localnet up`, shared by `relay up` (relay/cli/stack.py)."""
    defaults = LocalnetOptions()
    parser.add_argument("--detach", action="store_true", 
                        help="run in the background; stop with `relay down` (or `relay localnet down`)")
    parser.add_argument("--host", default=defaults.host, help="interface to listen on (default: %(default)s)")
    parser.add_argument("--evm-port", type=int, default=defaults.evm_port, help="anvil port (default: %(default)s)")
    parser.add_argument("--evm-chains", type=int, default=defaults.evm_chains,
                        help="how many EVM chains (anvils) to run: evm, evm2, ... with chain ids and domains 31337, "
                        "31338, ... (default: %(default)s)")
    parser.add_argument("--evm-extra-port", type=int, action="append", default=[], metavar="PORT",
                        help="anvil port of the next extra EVM chain (repeat for each; default: --evm-port + 1, + 2, ...)")
    parser.add_argument("--solana-rpc-port", type=int, default=defaults.solana_rpc_port,
                        help="Solana JSON-RPC port (default: %(default)s)")
    parser.add_argument("--solana-ws-port", type=int, default=defaults.solana_ws_port,
                        help="Solana WebSocket port (default: %(default)s)")
    parser.add_argument("--slot-ms", type=int, default=defaults.slot_ms,
                        help="Solana slot time in ms (default: %(default)s)")
    parser.add_argument("--finality-slots", type=int, default=defaults.finality_slots,
                        help="slots by which Solana 'finalized' trails 'processed' (default: %(default)s)")
    parser.add_argument("--evm-block-time", type=float, default=defaults.evm_block_time,
                        help="anvil block time in seconds; 0 mines on every transaction instead (default: %(default)s)")
    parser.add_argument("--attester-base-port", type=int, default=defaults.attester_base_port,
                        help="committee member i's attester listens on this port + i - 1 (default: %(default)s)")
    parser.add_argument("--relayer-port", type=int, default=defaults.relayer_port,
                        help="the relayer's HTTP API port written to the config (default: %(default)s)")
    parser.add_argument("--feed-server-port", type=int, default=defaults.feed_server_port,
                        help="the feed server's port written to the config; round leaders publish there "
                        "(default: %(default)s)")
    parser.add_argument("--feed-push-port", type=int, default=defaults.feed_push_port,
                        help="the feed pusher's /health and /metrics port written to the config (default: %(default)s)")
    parser.add_argument("--no-feeds", action="store_true",
                        help="leave [feeds] out of the config: attesters then run no feed rounds")


def up_options(args: argparse.Namespace) -> LocalnetOptions:
    return LocalnetOptions(
        state_dir=args.state_dir,
        host=args.host,
        evm_port=args.evm_port,
        evm_chains=args.evm_chains,
        evm_extra_ports=args.evm_extra_port,
        solana_rpc_port=args.solana_rpc_port,
        solana_ws_port=args.solana_ws_port,
        slot_ms=args.slot_ms,
        finality_slots=args.finality_slots,
        evm_block_time=args.evm_block_time or None,
        attester_base_port=args.attester_base_port,
        relayer_port=args.relayer_port,
        feed_server_port=args.feed_server_port,
        feed_push_port=args.feed_push_port,
        feeds=not args.no_feeds,
    )


def _run_localnet(args: argparse.Namespace) -> int:
    if args.localnet_cmd == "up":
        options = up_options(args)
        if args.detach:
            argv = [a for a in sys.argv[1:] if a != "--detach"]
            state = localnet.start_detached(options, argv)
            print(localnet.summary(state, options.state_dir.resolve()))
            print(f"localnet running in the background (pid {state['supervisor_pid']}); stop it with `relay localnet down`")
            return 0
        asyncio.run(localnet.run_foreground(options))
        return 0
    if args.localnet_cmd == "down":
        if localnet.stop_detached(args.state_dir):
            print("localnet stopped")
        else:
            print(f"no localnet running from {args.state_dir.resolve()}")
        return 0
    ok, text = asyncio.run(localnet.status(args.state_dir))
    print(text)
    return 0 if ok else 3


def _register_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the main job on the embedded localnet (what `make demo` runs)",
                       description="Start a fresh localnet on free ports, exercise every deployed component, "
                       "print what happened, and stop everything.")
    p.set_defaults(handler=lambda args: asyncio.run(run_demo()))
