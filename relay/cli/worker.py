"""`relay worker` (the task worker daemon) and `relay worker keygen` (its Ed25519 identity)."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from relay.cli.common import add_config_option, load
from relay.errors import ConfigError
from relay.tasks.payloads import worker_public_key
from relay.tasks.worker import generate_identity
from relay.daemons.worker import run_worker


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "worker", help="run the AI-task worker for one chain's task board",
        description="Serve TASK_REQUESTs delivered to the task board on --chain: run the executor, sign the "
        "TASK_RESULT with the worker key ([worker] key_file) and send it back through the board. Progress "
        "lives in [worker] db, so a restarted worker neither loses nor repeats work. "
        "`relay worker keygen --out PATH` creates a worker key.",
    )
    add_config_option(p)
    p.add_argument("--chain", help="the chain (name under [chains]) whose task board this worker serves")
    p.add_argument("--db", type=Path, default=None, help="worker store (default: [worker] db)")
    p.set_defaults(handler=_run)
    wsub = p.add_subparsers(dest="worker_cmd", metavar="{keygen}")
    keygen = wsub.add_parser("keygen", help="create a worker Ed25519 key (hex seed, mode 0600)",
                             description="Write a new Ed25519 seed to PATH (never overwrites) and print the "
                             "public key, which appears as `worker` in every TASK_RESULT this worker signs.")
    keygen.add_argument("--out", type=Path, required=True, help="where to write the key")
    keygen.set_defaults(handler=_keygen)


def _keygen(args: argparse.Namespace) -> int:
    key = generate_identity(args.out)
    print(json.dumps({"key_file": str(args.out), "public_key": "0x" + worker_public_key(key).hex()}))
    return 0


def _run(args: argparse.Namespace) -> int:
    if not args.chain:
        raise ConfigError("say which chain's task board to serve: relay worker --chain NAME (a name under [chains])")
    config, _ = load(args.config)
    asyncio.run(run_worker(config, args.chain, db=args.db))
    return 0
