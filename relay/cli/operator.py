"""`relay status` and `relay retry`: the operator's view of the relayer's store."""

from __future__ import annotations

import argparse
import asyncio

from relay import status
from relay.cli.common import add_config_option, load


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="messages by stage (oldest stuck first), or one message's detail",
                       description="Read the relayer's store: a table of messages by stage with the oldest "
                       "stuck first, or, given a message id (or a unique prefix), its stage, last error and "
                       "next attempt. Works whether or not the relayer is running.")
    p.add_argument("message_id", nargs="?", help="message id (0x-hex) or a unique prefix of it")
    add_config_option(p)
    p.add_argument("--limit", type=int, default=50, help="rows to show (default: %(default)s)")
    p.set_defaults(handler=_run_status)

    p = sub.add_parser("retry", help="make a stuck or dead message due now",
                       description="Force a retry of one message: it becomes due immediately with a fresh "
                       "retry budget; a dead-lettered one starts again from 'observed'.")
    p.add_argument("message_id", help="message id (0x-hex) or a unique prefix of it")
    add_config_option(p)
    p.set_defaults(handler=_run_retry)


def _run_status(args: argparse.Namespace) -> int:
    config, _ = load(args.config)
    print(asyncio.run(status.show_status(config.relayer.db, args.message_id, args.limit)))
    return 0


def _run_retry(args: argparse.Namespace) -> int:
    config, _ = load(args.config)
    print(asyncio.run(status.force_retry(config.relayer.db, args.message_id)))
    return 0
