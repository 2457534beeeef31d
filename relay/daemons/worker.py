"""The task worker daemon (`relay worker`, parsed in relay/cli/worker.py): serves one chain's task
board through the common daemon lifecycle, with its HTTP endpoints (health, metrics, outputs)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from adapters.registry import driver_named
from relay.chainstate import check_chain_state, reset_command
from relay.config import TesseraConfig, WorkerSection, is_database_url
from relay.errors import ConfigError
from relay.interfaces import ChainAdapter
from relay.lifecycle import Service, http_service, run_daemon
from relay.metrics import Wallet, WalletBalances
from relay.tasks.executors import ExecutorRegistry
from relay.tasks.payloads import worker_public_key
from relay.tasks.worker import WorkerSettings, WorkerV2, load_identity
from relay.tasks.worker_store import WorkerStore


def settings_from_section(section: WorkerSection) -> WorkerSettings:
    return WorkerSettings(
        executors=tuple(section.executors), concurrency=section.concurrency, min_fee=section.min_fee,
        min_time_left_s=section.min_time_left_s, input_fetch_timeout_s=section.input_fetch_timeout_s,
        max_input_bytes=section.max_input_bytes, output_url=section.output_url,
        prices=dict(section.prices), max_bond=section.max_bond, settle_interval_s=section.settle_interval_s,
    )


def _chain_check(adapter: ChainAdapter, store: WorkerStore) -> Service:
    """Before the worker watches: the chain is the one its store was written for. (Identity only:
    the board's watch cursor is not a gateway cursor, so `cursor_problem` cannot judge it.)"""
    async def check() -> None:
        await adapter.start()
        try:
            await check_chain_state(
                adapter, stored=await store.chain_identity(adapter.name), cursor=None,
                save=lambda identity: store.set_chain_identity(adapter.name, identity),
                state=f"the worker store at {store.location}", reset=reset_command(adapter.name, "--worker"))
        finally:
            await adapter.close()
    return Service("chain identity", setup=check)


async def run_worker(config: TesseraConfig, chain: str, db: str | Path | None = None,
                     stop: asyncio.Event | None = None) -> None:
    if chain not in config.chains:
        raise ConfigError(f"no chain {chain!r} under [chains]; configured: {', '.join(sorted(config.chains))}")
    if config.worker is None:
        raise ConfigError("the config has no [worker] section: add one with payout.<chain> addresses, the worker's "
                          "key_file and its own accounts (evm_key / solana_keypair); `relay up` writes a complete one")
    section = config.worker
    # A PostgreSQL URL is kept as written (a Path would fold its `//`).
    db_path = db or (section.db.replace("{chain}", chain) if is_database_url(section.db)
                     else section.path_for(section.db, chain))
    identity = load_identity(section.path_for(section.key_file, chain))
    payouts = section.payout_by_domain(config)
    if not payouts:
        raise ConfigError("[worker] payout is empty: add `payout.<chain> = \"<address>\"` for each chain whose "
                          "requesters this worker serves, or it would skip every request")
    executors = ExecutorRegistry.load(config.executors)
    driver = driver_named(config, chain)
    board = driver.serving_board_v2(config, section)  # task protocol v2: claim at our price, then serve
    reader = driver.messaging(with_signer=False)  # only to read the chain's identity
    store = await WorkerStore.open(db_path)
    worker = WorkerV2(board, executors, identity, payouts, store, settings_from_section(section))
    # The account it spends from is its serving board's (fees; bonds): payouts only receive.
    wallets = WalletBalances(worker.metrics.registry, "worker", [Wallet(board.name, board.wallet_balances)])
    await run_daemon("worker", [
        Service("store", cleanup=store.close),
        Service("board", cleanup=board.close),
        _chain_check(reader, store),
        *([http_service("http", _build_app(worker), section.listen)] if section.listen else []),
        Service("tasks", run=worker.run),
        Service("wallet balances", run=wallets.run),
    ], stop, chain=chain, board="0x" + board.address.hex(), db=store.location,
        worker="0x" + worker_public_key(identity).hex(), executors=list(section.executors), listen=section.listen)


def _build_app(worker: WorkerV2) -> web.Application:
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
