"""The `relay` command: one entry point for operators and developers."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from relay.errors import TesseraError
from relay.lifecycle import own_process
from relay.log import configure_logging


def _add_localnet(sub: argparse._SubParsersAction) -> None:
    from relay.localnet import LocalnetOptions, default_state_dir

    defaults = LocalnetOptions()
    p = sub.add_parser(
        "localnet",
        help="run real chains on this machine (anvil + Solana localnet server)",
        description="Start, inspect and stop the embedded localnet: a real anvil node and the Solana "
        "localnet server (the SVM runtime behind the standard JSON-RPC), with the Tessera contracts "
        "and program deployed and a generated config in the state directory.",
    )
    p.add_argument("--state-dir", type=Path, default=default_state_dir(),
                   help="where state, keys, logs and the generated config live (default: %(default)s)")
    lsub = p.add_subparsers(dest="localnet_cmd", required=True, metavar="{up,down,status}")

    up = lsub.add_parser("up", help="start the chains, deploy, write config; foreground unless --detach",
                         description="Start anvil and the Solana localnet server on 127.0.0.1, fund accounts, "
                         "deploy the EVM contracts and the Solana program, and write config.toml into the "
                         "state directory. Runs in the foreground (Ctrl-C stops everything) unless --detach.")
    up.add_argument("--detach", action="store_true", help="run in the background; stop with `relay localnet down`")
    up.add_argument("--host", default=defaults.host, help="interface to listen on (default: %(default)s)")
    up.add_argument("--evm-port", type=int, default=defaults.evm_port, help="anvil port (default: %(default)s)")
    up.add_argument("--solana-rpc-port", type=int, default=defaults.solana_rpc_port,
                    help="Solana JSON-RPC port (default: %(default)s)")
    up.add_argument("--solana-ws-port", type=int, default=defaults.solana_ws_port,
                    help="Solana WebSocket port (default: %(default)s)")
    up.add_argument("--slot-ms", type=int, default=defaults.slot_ms, help="Solana slot time in ms (default: %(default)s)")
    up.add_argument("--finality-slots", type=int, default=defaults.finality_slots,
                    help="slots by which Solana 'finalized' trails 'processed' (default: %(default)s)")
    up.add_argument("--evm-block-time", type=float, default=defaults.evm_block_time,
                    help="anvil block time in seconds; 0 mines on every transaction instead (default: %(default)s)")
    up.add_argument("--attester-base-port", type=int, default=defaults.attester_base_port,
                    help="committee member i's attester listens on this port + i - 1 (default: %(default)s)")
    up.add_argument("--relayer-port", type=int, default=defaults.relayer_port,
                    help="the relayer's HTTP API port written to the config (default: %(default)s)")
    up.add_argument("--feed-server-port", type=int, default=defaults.feed_server_port,
                    help="the feed server's port written to the config; round leaders publish there "
                    "(default: %(default)s)")
    up.add_argument("--no-feeds", action="store_true",
                    help="leave [feeds] out of the config: attesters then run no feed rounds")
    lsub.add_parser("down", help="stop a localnet started with --detach (no process is left behind)")
    lsub.add_parser("status", help="show the localnet's processes and whether each chain answers")


def _run_localnet(args: argparse.Namespace) -> int:
    from relay import localnet

    if args.localnet_cmd == "up":
        options = localnet.LocalnetOptions(
            state_dir=args.state_dir,
            host=args.host,
            evm_port=args.evm_port,
            solana_rpc_port=args.solana_rpc_port,
            solana_ws_port=args.solana_ws_port,
            slot_ms=args.slot_ms,
            finality_slots=args.finality_slots,
            evm_block_time=args.evm_block_time or None,
            attester_base_port=args.attester_base_port,
            relayer_port=args.relayer_port,
            feed_server_port=args.feed_server_port,
            feeds=not args.no_feeds,
        )
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


def _add_demo(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("demo", help="the main job on the embedded localnet (what `make demo` runs)",
                   description="Start a fresh localnet on free ports, exercise every deployed component, "
                   "print what happened, and stop everything.")


def _add_operator(sub: argparse._SubParsersAction) -> None:
    status = sub.add_parser("status", help="messages by stage (oldest stuck first), or one message's detail",
                            description="Read the relayer's store: a table of messages by stage with the oldest "
                            "stuck first, or, given a message id (or a unique prefix), its stage, last error and "
                            "next attempt. Works whether or not the relayer is running.")
    status.add_argument("message_id", nargs="?", help="message id (0x-hex) or a unique prefix of it")
    status.add_argument("--config", type=Path, default=None, help="Tessera config (default: the localnet's)")
    status.add_argument("--limit", type=int, default=50, help="rows to show (default: %(default)s)")
    retry = sub.add_parser("retry", help="make a stuck or dead message due now",
                           description="Force a retry of one message: it becomes due immediately with a fresh "
                           "retry budget; a dead-lettered one starts again from 'observed'.")
    retry.add_argument("message_id", help="message id (0x-hex) or a unique prefix of it")
    retry.add_argument("--config", type=Path, default=None, help="Tessera config (default: the localnet's)")


def _add_daemons(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run the relayer daemon (watch, collect signatures, deliver, confirm)",
                         description="Run the relayer: watch every configured chain's gateway, collect t partial "
                         "signatures from the committee, deliver to the destination and confirm. State lives in "
                         "the store ([relayer] db), so a restarted relayer resumes. Serves /health, /metrics and "
                         "/v1/messages on [relayer] listen.")
    run.add_argument("--config", type=Path, default=None, help="Tessera config (default: the localnet's)")
    att = sub.add_parser("attester", help="run one committee member's attester daemon",
                         description="Run attester INDEX: watch every configured chain itself, sign a partial only "
                         "for envelopes observed final on their source chain, serve partials on the member's "
                         "endpoint. Its key share is decrypted with the committee key file or password.")
    att.add_argument("--index", type=int, required=True, help="this member's index in the committee (1..n)")
    att.add_argument("--config", type=Path, default=None, help="Tessera config (default: the localnet's)")


def _run_daemon(args: argparse.Namespace) -> int:
    from relay import daemons
    from relay.config import load_config

    config = load_config(_config_path(args.config))
    if args.command == "run":
        asyncio.run(daemons.run_relayer(config))
    else:
        asyncio.run(daemons.run_attester(config, args.index))
    return 0


def _config_path(path: Path | None) -> Path:
    if path is not None:
        return path
    from relay.localnet import CONFIG_FILE, default_state_dir

    return default_state_dir() / CONFIG_FILE


def _run_operator(args: argparse.Namespace) -> int:
    from relay import status
    from relay.config import load_config

    config = load_config(_config_path(args.config))
    if args.command == "status":
        print(asyncio.run(status.show_status(config.relayer.db, args.message_id, args.limit)))
    else:
        print(asyncio.run(status.force_retry(config.relayer.db, args.message_id)))
    return 0


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
    _add_localnet(sub)
    _add_demo(sub)
    _add_operator(sub)
    _add_daemons(sub)
    from relay.feeds import push_cli, serve_cli
    from relay.tasks import worker_cli

    worker_cli.register(sub)
    serve_cli.register(sub)
    push_cli.register(sub)
    try:
        from relay.keys_cli import register as register_keys
    except ImportError:
        pass
    else:
        register_keys(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    own_process()  # a daemon started from here may tune the process (relay.lifecycle.settle_heap)
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level, None if args.log_format is None else args.log_format == "json")
    try:
        if args.command == "localnet":
            return _run_localnet(args)
        if args.command in ("run", "attester"):
            return _run_daemon(args)
        if args.command in ("status", "retry"):
            return _run_operator(args)
        if args.command == "demo":
            from relay.demo import run_demo

            return asyncio.run(run_demo())
        handler = getattr(args, "handler", None)
        if handler is None:
            parser.error(f"no handler for {args.command}")
        result = handler(args)
        return int(result or 0)
    except TesseraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
