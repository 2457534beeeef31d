"""The `relay` command: one entry point for operators and developers.

One module per command group; each exposes `register(subparsers)`, which adds its commands and sets
every command's `handler(args) -> exit code`. This module only collects them and dispatches.
"""

from __future__ import annotations

import argparse
import sys

from relay.cli import admin, committee, config, daemons, deploy, feeds, keys, localnet, operator, stack, worker
from relay.errors import TesseraError
from relay.lifecycle import own_process
from relay.log import configure_logging

# In the order `relay --help` lists them.
COMMAND_GROUPS = (stack, localnet, deploy, operator, admin, committee, config, daemons, worker, feeds, keys)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relay",
        description="Tessera: cross-chain messaging relay and oracle for AI agents (EVM <-> Solana, "
        "threshold BLS on BN254).",
    )
    parser.add_argument("--log-level", default=None, help="debug, info, warning or error (default: info)")
    parser.add_argument("--log-format", choices=["console", "json"], default=None,
                        help="console on a terminal, JSON lines otherwise (default: auto)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    own_process()  # a daemon started from here may tune the process (relay.lifecycle.settle_heap)
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, None if args.log_format is None else args.log_format == "json")
    try:
        return int(args.handler(args) or 0)
    except TesseraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
