"""The feed pusher daemon (`relay feed-push`) and the localnet market simulator (`relay market`),
both parsed in relay/cli/feeds.py and run by the common daemon lifecycle."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from adapters.registry import driver_named
from attest.committee import Committee
from relay.backoff import Backoff
from relay.config import KeyRef, TesseraConfig
from relay.errors import ConfigError
from relay.feeds.aggregate import PushPolicy
from relay.feeds.push import Pusher, client_reports, sse_reports
from relay.lifecycle import Service, http_service, run_daemon, until_stopped
from relay.metrics import Wallet, WalletBalances, metrics_response
from relay.log import get_logger

log = get_logger("relay.feed_push")

# `relay localnet up` writes the market's key here (relative to the config file).
MARKET_KEY_FILE = Path("keys/evm-market.key")


def _resolve_key(ref: KeyRef | None, base: Path) -> KeyRef | None:
    if ref is None or ref.file is None or ref.file.is_absolute():
        return ref
    return ref.model_copy(update={"file": base / ref.file})


# --- feed-push ------------------------------------------------------------------------------------


def build_targets(config: TesseraConfig, base: Path, names: list[str]) -> list[Any]:
    """One push target per chain name, each with the pusher's own key from [feed_push] (the one for
    that chain's kind, chosen by its driver)."""
    section = config.feed_push
    section = section.model_copy(update={"evm_key": _resolve_key(section.evm_key, base),
                                         "solana_keypair": _resolve_key(section.solana_keypair, base)})
    targets: list[Any] = []
    for name in names:
        if name not in config.chains:
            raise ConfigError(f"feed_push.targets: no chain {name!r} under [chains]; configured: "
                              f"{', '.join(sorted(config.chains))}")
        targets.append(driver_named(config, name).feed_target(config, section))
    return targets


async def run_feed_push(config: TesseraConfig, base: Path, source: str | None = None,
                        target_names: list[str] | None = None, stop: asyncio.Event | None = None) -> None:
    section = config.feed_push
    source = source or section.source
    if not source:
        raise ConfigError("no feed server to follow: set [feed_push] source = \"http://host:port\" or pass --source")
    names = target_names or section.targets or list(config.chains)
    feed_ids = section.feeds if section.feeds is not None else list(config.feeds)
    unknown = [f for f in feed_ids if f not in config.feeds]
    if unknown:
        raise ConfigError(f"feed_push.feeds: {unknown} have no [feeds.<id>] table; add them or remove them from the list")
    policies = {fid: PushPolicy.for_feed(config.feeds[fid]) for fid in feed_ids}
    committee = None
    if section.verify and config.committee is not None:
        committee = Committee.load(config.committee.file)
    targets = build_targets(config, base, names)
    backoff = Backoff(base=section.retry_base_s, cap=section.retry_cap_s, max_attempts=section.max_attempts)
    # With a committee the SDK's client verifies (and resumes); without one, the plain SSE reader.
    reports = client_reports(source, committee, feed_ids) if committee is not None else sse_reports(source)
    pusher = Pusher(targets, policies, backoff=backoff)

    async def follow(stop: asyncio.Event) -> None:
        await until_stopped(stop, pusher.run(reports))

    registry = CollectorRegistry()
    wallets = WalletBalances(registry, "pusher", [Wallet(t.name, t.wallet_balances) for t in targets])
    await run_daemon("feed pusher", [
        *(Service(f"target {i}", cleanup=target.close) for i, target in enumerate(targets)),
        *([http_service("http", _build_app(pusher, registry), section.listen)] if section.listen else []),
        Service("pusher", setup=pusher.start, run=follow, cleanup=pusher.close),
        Service("wallet balances", run=wallets.run),
    ], stop, source=source, targets=names, feeds=feed_ids, verified=committee is not None, listen=section.listen)


def _build_app(pusher: Pusher, registry: CollectorRegistry) -> web.Application:
    async def health(request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "targets": pusher.targets})

    async def metrics(request: web.Request) -> web.Response:
        return metrics_response(registry)

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    return app


# --- market ---------------------------------------------------------------------------------------


async def run_market(config: TesseraConfig, base: Path, chain_name: str, key_file: Path | None, *,
                     interval_ms: int, volatility_bps: float, reversion: float, steps: int | None,
                     seed: int | None, stop: asyncio.Event | None = None) -> None:
    driver = driver_named(config, chain_name)
    key = KeyRef(file=key_file or base / MARKET_KEY_FILE).read_text()
    simulator = driver.market(key, interval_ms=interval_ms, volatility_bps=volatility_bps, reversion=reversion,
                              seed=seed)
    async def swap(stop: asyncio.Event) -> None:
        await until_stopped(stop, simulator.run(steps))
        log.info("market done", swaps=len(simulator.steps))

    await run_daemon("market", [Service("swaps", run=swap, cleanup=simulator.close)], stop,
                     chain=chain_name, interval_ms=interval_ms)
