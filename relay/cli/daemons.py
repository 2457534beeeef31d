"""`relay run` (the relayer) and `relay attester` (one committee member)."""

from __future__ import annotations

import argparse
import asyncio

from relay.daemons import messaging as daemons
from relay.cli.common import add_config_option, load


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the relayer daemon (watch, collect signatures, deliver, confirm)",
                       description="Run the relayer: watch every configured chain's gateway, collect t partial "
                       "signatures from the committee, deliver to the destination and confirm. State lives in "
                       "the store ([relayer] db), so a restarted relayer resumes. Serves /health, /metrics and "
                       "/v1/messages on [relayer] listen.")
    add_config_option(p)
    p.set_defaults(handler=_run_relayer)

    p = sub.add_parser("attester", help="run one committee member's attester daemon",
                       description="Run attester INDEX: watch every configured chain itself, sign a partial only "
                       "for envelopes observed final on their source chain, serve partials on the member's "
                       "endpoint. Its key share is decrypted with the committee key file or password.")
    p.add_argument("--index", type=int, required=True, help="this member's index in the committee (1..n)")
    add_config_option(p)
    p.set_defaults(handler=_run_attester)


def _run_relayer(args: argparse.Namespace) -> int:
    config, _ = load(args.config)
    asyncio.run(daemons.run_relayer(config))
    return 0


def _run_attester(args: argparse.Namespace) -> int:
    config, _ = load(args.config)
    asyncio.run(daemons.run_attester(config, args.index))
    return 0
