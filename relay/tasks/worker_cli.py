"""`relay worker`: the task worker daemon, and `relay worker keygen` for its Ed25519 identity."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from pathlib import Path

from relay.config import TesseraConfig, WorkerSection
from relay.errors import ConfigError
from relay.lifecycle import settle_heap
from relay.log import get_logger

log = get_logger("relay.worker")


def register(sub: argparse._SubParsersAction) -> None:
    """Adds this module's sub-commands (each sets `handler`)."""
    p = sub.add_parser(
        "worker", help="run the AI-task worker for one chain's task board",
        description="Serve TASK_REQUESTs delivered to the task board on --chain: run the executor, sign the "
        "TASK_RESULT with the worker key ([worker] key_file) and send it back through the board. Progress "
        "lives in [worker] db, so a restarted worker neither loses nor repeats work. "
        "`relay worker keygen --out PATH` creates a worker key.",
    )
    p.add_argument("--config", type=Path, default=None, help="Tessera config (default: the localnet's)")
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
    from relay.tasks.payloads import worker_public_key
    from relay.tasks.worker import generate_identity

    key = generate_identity(args.out)
    print(json.dumps({"key_file": str(args.out), "public_key": "0x" + worker_public_key(key).hex()}))
    return 0


def _run(args: argparse.Namespace) -> int:
    from relay.cli import _config_path
    from relay.config import load_config

    if not args.chain:
        raise ConfigError("say which chain's task board to serve: relay worker --chain NAME (a name under [chains])")
    config = load_config(_config_path(args.config))
    asyncio.run(run_worker(config, args.chain, db=args.db))
    return 0


def settings_from_section(section: WorkerSection):
    from relay.tasks.worker import WorkerSettings

    return WorkerSettings(
        executors=tuple(section.executors), concurrency=section.concurrency, min_fee=section.min_fee,
        min_time_left_s=section.min_time_left_s, input_fetch_timeout_s=section.input_fetch_timeout_s,
        max_input_bytes=section.max_input_bytes, output_url=section.output_url,
    )


async def run_worker(config: TesseraConfig, chain: str, db: Path | None = None,
                     stop: asyncio.Event | None = None) -> None:
    from adapters.registry import driver_named
    from relay.daemons import _serve
    from relay.tasks.executors import ExecutorRegistry
    from relay.tasks.payloads import worker_public_key
    from relay.tasks.worker import Worker, load_identity
    from relay.tasks.worker_store import WorkerStore

    if chain not in config.chains:
        raise ConfigError(f"no chain {chain!r} under [chains]; configured: {', '.join(sorted(config.chains))}")
    section = config.worker or WorkerSection()
    db_path = db or section.path_for(section.db, chain)
    identity = load_identity(section.path_for(section.key_file, chain))
    payouts = section.payout_by_domain(config)
    if not payouts:
        raise ConfigError("[worker] payout is empty: add `payout.<chain> = \"<address>\"` for each chain whose "
                          "requesters this worker serves, or it would skip every request")
    executors = ExecutorRegistry.load(config.executors)
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    board = driver_named(config, chain).serving_board(config, section)
    store = await WorkerStore.open(db_path)
    runner = None
    try:
        worker = Worker(board, executors, identity, payouts, store, settings_from_section(section))
        if section.listen:
            runner = await _serve(_build_app(worker), section.listen)
        settle_heap()
        log.info("worker running", chain=chain, board="0x" + board.address.hex(), db=str(db_path),
                 worker="0x" + worker_public_key(identity).hex(), executors=list(section.executors),
                 listen=section.listen)
        await worker.run(stop)
    finally:
        if runner is not None:
            await runner.cleanup()
        await board.close()
        await store.close()
        log.info("worker stopped", chain=chain)


def _build_app(worker):
    from aiohttp import web

    routes = web.RouteTableDef()

    @routes.get("/health")
    async def health(request: web.Request) -> web.Response:
        counts = await worker.store.counts()
        return web.json_response({"ok": True, "chain": worker.board.name, "tasks": counts})

    @routes.get("/metrics")
    async def metrics(request: web.Request) -> web.Response:
        counts = await worker.store.counts()
        worker.metrics.tasks.clear()
        for stage, n in counts.items():
            worker.metrics.tasks.labels(stage=stage).set(n)
        return web.Response(body=worker.metrics.render(), content_type="text/plain", charset="utf-8")

    @routes.get("/v1/outputs/{output_hash}")
    async def output(request: web.Request) -> web.Response:
        # Content-addressed: the requester and attesters check keccak256(body) against output_hash.
        text = request.match_info["output_hash"].removeprefix("0x")
        try:
            output_hash = bytes.fromhex(text)
        except ValueError:
            output_hash = b""
        if len(output_hash) != 32:
            return web.json_response({"error": "expected /v1/outputs/0x<64 hex digits of keccak256(output)>"},
                                     status=400)
        body = await worker.store.output_by_hash(output_hash)
        if body is None:
            return web.json_response({"error": f"no output with hash 0x{output_hash.hex()} here"}, status=404)
        return web.Response(body=body, content_type="application/octet-stream")

    app = web.Application()
    app.add_routes(routes)
    return app
