"""`relay status`, `relay retry` and `relay reset-chain`: the operator's view of the relayer's
store, and dropping a reset chain's state from a daemon's store."""

from __future__ import annotations

import argparse
import asyncio

from attest.signing_log import SigningLog
from relay import status
from relay.cli.common import add_config_option, load
from relay.errors import ConfigError
from relay.store import Store
from relay.tasks.worker_store import WorkerStore


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

    p = sub.add_parser("reset-chain", help="drop a daemon's state for one chain (after the chain was reset)",
                       description="A daemon refuses to start when a chain's RPC endpoints serve another chain "
                       "than its state was written for (a reset testnet or localnet). Once that is on purpose, "
                       "this drops what the relayer store or an attester's signing log keeps for the chain: its "
                       "identity, its watch cursor, and the messages (relayer) or signatures (attester) from it. "
                       "Stop the daemon first.")
    p.add_argument("chain", help="chain name under [chains]")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--relayer", action="store_true", help="the relayer's store ([relayer] db)")
    which.add_argument("--attester", type=int, metavar="INDEX", help="this member's signing log ([attester] db)")
    which.add_argument("--worker", action="store_true", help="the store of the worker serving CHAIN ([worker] db)")
    add_config_option(p)
    p.set_defaults(handler=_run_reset_chain)


def _run_status(args: argparse.Namespace) -> int:
    config, _ = load(args.config)
    print(asyncio.run(status.show_status(config.relayer.db, args.message_id, args.limit)))
    return 0


def _run_retry(args: argparse.Namespace) -> int:
    config, _ = load(args.config)
    print(asyncio.run(status.force_retry(config.relayer.db, args.message_id)))
    return 0


def _run_reset_chain(args: argparse.Namespace) -> int:
    config, _ = load(args.config)
    if args.chain not in config.chains:
        raise ConfigError(f"no chain {args.chain!r} under [chains]; configured: {', '.join(sorted(config.chains))}")
    domain = config.chains[args.chain].domain
    if args.relayer:
        async def reset() -> int:
            store = await Store.open(config.relayer.db)
            try:
                return await store.forget_chain(domain)
            finally:
                await store.close()
        print(f"relayer store: dropped chain {args.chain}'s identity, cursor and {asyncio.run(reset())} messages")
    elif args.worker:
        section = config.worker
        if section is None:
            raise ConfigError("the config has no [worker] table: there is no worker store to reset")

        async def reset_worker() -> int:
            store = await WorkerStore.open(section.db.replace("{chain}", args.chain))
            try:
                return await store.forget_chain(args.chain)
            finally:
                await store.close()
        print(f"worker store: dropped chain {args.chain}'s identity, cursor and {asyncio.run(reset_worker())} tasks")
    else:
        log = SigningLog(config.attester.db.replace("{index}", str(args.attester)), member=args.attester)
        try:
            dropped = log.forget_chain(domain)
        finally:
            log.close()
        print(f"member {args.attester}'s signing log: dropped chain {args.chain}'s identity, cursor and "
              f"{dropped} signatures")
    return 0
