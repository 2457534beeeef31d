"""`python -m adapters.solana_localnet`: run the Solana localnet server in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from solders.pubkey import Pubkey

from relay.log import configure_logging

from adapters.solana_localnet.errors import LocalnetError, PortInUseError
from adapters.solana_localnet.ledger import LedgerConfig
from adapters.solana_localnet.server import DEFAULT_MAX_BATCH, DEFAULT_MAX_BODY_BYTES, LocalnetServer, ServerConfig

EXIT_PORT_IN_USE = 2
EXIT_BAD_CONFIG = 3


def _program(spec: str) -> tuple[Pubkey, Path]:
    program_id, sep, path = spec.partition("=")
    if not sep or not path:
        raise argparse.ArgumentTypeError(f"--program {spec!r} is not ID=PATH.so")
    try:
        return Pubkey.from_string(program_id), Path(path)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--program {spec!r}: {program_id!r} is not a base-58 public key") from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m adapters.solana_localnet",
        description="Solana JSON-RPC + PubSub over the LiteSVM runtime (a solana-test-validator stand-in).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--rpc-port", type=int, default=8899, help="JSON-RPC port (0 picks a free one)")
    parser.add_argument("--ws-port", type=int, default=None, help="WebSocket port (default: rpc port + 1)")
    parser.add_argument("--slot-ms", type=int, default=400, help="slot duration in milliseconds")
    parser.add_argument("--finality-slots", type=int, default=32, help="how many slots finalized trails processed")
    parser.add_argument("--program", type=_program, action="append", default=[], metavar="ID=PATH.so",
                        help="preload an SBF program (repeatable)")
    parser.add_argument("--max-transactions", type=int, default=20_000,
                        help="transactions kept for getTransaction/getSignaturesForAddress (oldest dropped first)")
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    parser.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH)
    parser.add_argument("--ready-file", type=Path, default=None,
                        help="write JSON {rpc_url, ws_url, faucet, pid} here once listening")
    parser.add_argument("--log-level", default=None)
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> int:
    ws_port = args.ws_port if args.ws_port is not None else (args.rpc_port + 1 if args.rpc_port else 0)
    config = ServerConfig(
        host=args.host,
        rpc_port=args.rpc_port,
        ws_port=ws_port,
        ledger=LedgerConfig(
            slot_ms=args.slot_ms,
            finality_slots=args.finality_slots,
            max_transactions=args.max_transactions,
            programs=tuple(args.program),
        ),
        max_body_bytes=args.max_body_bytes,
        max_batch=args.max_batch,
    )
    server = LocalnetServer(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    try:
        if args.ready_file:
            ready = {
                "rpc_url": server.rpc_url,
                "ws_url": server.ws_url,
                "faucet": str(server.faucet.pubkey()),
                "pid": os.getpid(),
            }
            tmp = args.ready_file.with_name(args.ready_file.name + ".tmp")
            tmp.write_text(json.dumps(ready))
            tmp.replace(args.ready_file)  # readers never see a half-written file
        print(f"ready rpc={server.rpc_url} ws={server.ws_url}", flush=True)
        await stop.wait()
    finally:
        await server.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_level)
    try:
        return asyncio.run(_serve(args))
    except PortInUseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_PORT_IN_USE
    except LocalnetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG


if __name__ == "__main__":
    sys.exit(main())
