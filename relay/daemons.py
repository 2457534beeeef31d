"""Long-running processes: `relay run` (relayer) and `relay attester` (one committee member).

Each has the same lifecycle: set up (config, keys, adapters, store), run until SIGINT/SIGTERM,
clean up (adapters closed, HTTP server stopped, store closed).
"""

from __future__ import annotations

import asyncio
import signal

from aiohttp import web

from relay.config import TesseraConfig
from relay.errors import ConfigError
from relay.lifecycle import settle_heap
from relay.log import get_logger

log = get_logger("daemon")


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _serve(app: web.Application, listen: str) -> web.AppRunner:
    host, _, port = listen.rpartition(":")
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, int(port)).start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(f"cannot listen on {listen}: {exc.strerror}; is another instance running?") from None
    return runner


def _committee(config: TesseraConfig):
    from attest.committee import Committee

    if config.committee is None:
        raise ConfigError("the config has no [committee] table: add `file = \"committee.toml\"`")
    return Committee.load(config.committee.file)


async def run_relayer(config: TesseraConfig, stop: asyncio.Event | None = None) -> None:
    from adapters.registry import messaging_adapters
    from relay.api import build_app
    from relay.backoff import Backoff
    from relay.collector import CommitteeCollector
    from relay.pipeline import PipelineSettings, Relayer
    from relay.store import Store

    stop = stop or _stop_event()
    committee = _committee(config)
    settings = config.relayer
    adapters = messaging_adapters(config, with_signers=True)
    store = await Store.open(settings.db)
    collector = CommitteeCollector(committee, timeout=settings.partial_timeout_s)
    relayer = Relayer(
        store, adapters, collector,
        PipelineSettings(backoff=Backoff(base=settings.retry_base_s, cap=settings.retry_cap_s,
                                         max_attempts=settings.max_attempts),
                         concurrency=settings.concurrency),
    )
    runner = None
    try:
        for adapter in adapters.values():
            await adapter.start()
        runner = await _serve(build_app(relayer), settings.listen)
        settle_heap()
        log.info("relayer running", listen=settings.listen, db=str(settings.db), chains=[a.name for a in adapters.values()],
                 committee_epoch=committee.epoch, threshold=f"{committee.t}/{committee.n}")
        await relayer.run(stop)
    finally:
        if runner is not None:
            await runner.cleanup()
        await collector.close()
        for adapter in adapters.values():
            await adapter.close()
        await store.close()
        log.info("relayer stopped")


def _load_share(config: TesseraConfig, committee, index: int):
    from attest.keystore import load_share_for, read_key_file, resolve_secret

    ref = config.committee
    assert ref is not None
    if ref.key_file is not None:
        secret = read_key_file(ref.key_file)
    elif ref.password is not None:
        from attest.keystore import Secret

        secret = Secret.password(ref.password.read_text())
    else:
        secret = resolve_secret(None, None)  # $TESSERA_KEY_PASSWORD, or a clear error
    return load_share_for(committee, ref.share_path(index), secret)


def result_checkers(config: TesseraConfig):
    """What an attester checks task results with: the executors for re-execution (with the same
    `[executors.<id>]` options as workers) and the proof verifiers (plugins get their
    `[proof_verifiers.<name>]` options)."""
    from relay.tasks.executors import ExecutorRegistry
    from relay.tasks.proofs import ProofVerifierRegistry

    executors = ExecutorRegistry.load(config.executors)
    return executors, ProofVerifierRegistry.load(executors, config.proof_verifiers)


async def run_attester(config: TesseraConfig, index: int, stop: asyncio.Event | None = None) -> None:
    import attest
    from adapters.registry import messaging_adapters
    from relay.attester import Attester
    from attest.signing_log import SigningLog

    stop = stop or _stop_event()
    committee = _committee(config)
    member = committee.member(index)
    share = _load_share(config, committee, index)
    adapters = messaging_adapters(config, with_signers=False)  # an attester never sends transactions
    signing_log = SigningLog(config.attester.db.replace("{index}", str(index)))
    executors, verifiers = result_checkers(config)
    attester = Attester(index, committee.epoch, lambda digest: attest.partial_sign(share, digest).signature,
                        adapters, signing_log, observe_rate=config.attester.max_observe_requests_per_s,
                        executors=executors, verifiers=verifiers)
    listen = member.endpoint.split("://", 1)[-1].rstrip("/")
    runner = None
    feed_node = None
    try:
        for adapter in adapters.values():
            await adapter.start()
        app = attester.build_app()
        if config.feeds:  # feed rounds share the attester's port and process (relay/feeds/node.py)
            from adapters.evm.feeds import register_feed_sources
            from relay.feeds.node import FeedNode

            register_feed_sources(config)  # the evm_pool source kind reads EVM chains: it lives in adapters/
            feed_node = FeedNode.from_config(config, committee, share)
            await feed_node.start()
            app.add_routes(feed_node.routes())
        runner = await _serve(app, listen)
        settle_heap()
        log.info("attester running", member=index, listen=listen, epoch=committee.epoch)
        await asyncio.gather(attester.run(stop), *([feed_node.run(stop)] if feed_node is not None else []))
    finally:
        if runner is not None:
            await runner.cleanup()
        if feed_node is not None:
            await feed_node.close()
        for adapter in adapters.values():
            await adapter.close()
        signing_log.close()
        log.info("attester stopped", member=index)
