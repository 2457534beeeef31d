"""Long-running processes: `relay run` (relayer) and `relay attester` (one committee member).

Both are assembled here from their services and run by the one daemon lifecycle
(relay.lifecycle.run_daemon): set up in order, run together, clean up in reverse order.
"""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

import attest
from adapters.registry import messaging_adapters, register_feed_sources
from attest.committee import Committee, KeyShare
from attest.keystore import Secret, load_share_for, read_key_file, resolve_secret
from attest.signing_log import SigningLog
from relay.api import build_app
from relay.attester import Attester
from relay.backoff import Backoff
from relay.collector import CommitteeCollector
from relay.config import TesseraConfig
from relay.errors import ConfigError
from relay.feeds.node import FeedNode
from relay.interfaces import ChainAdapter
from relay.lifecycle import Service, http_service, run_daemon
from relay.metrics import Wallet, WalletBalances, metrics_response
from relay.pipeline import PipelineSettings, Relayer
from relay.policy import PaymentPolicy
from relay.rotation import rotation_routes
from relay.chainstate import check_chain_state, reset_command
from relay.store import Store
from relay.tasks.attestation import CommitteeVerdicts
from relay.tasks.executors import ExecutorRegistry
from relay.tasks.proofs import ProofVerifierRegistry


def _committee(config: TesseraConfig) -> Committee:
    if config.committee is None:
        raise ConfigError("the config has no [committee] table: add `file = \"committee.toml\"`")
    return Committee.load(config.committee.file)


def _adapter_services(adapters: dict[int, ChainAdapter]) -> list[Service]:
    return [Service(f"chain {a.name}", setup=a.start, cleanup=a.close) for a in adapters.values()]


def _relayer_chain_check(adapters: dict[int, ChainAdapter], store: Store) -> Service:
    """Before any watcher runs: every chain is the one the store's cursors were written for."""
    async def check() -> None:
        for domain, adapter in adapters.items():
            await check_chain_state(
                adapter, stored=await store.chain_identity(domain), cursor=await store.get_cursor(f"watch:{domain}"),
                save=lambda identity, domain=domain: store.set_chain_identity(domain, identity),
                state=f"the relayer store at {store.location}", reset=reset_command(adapter.name, "--relayer"))
    return Service("chain identities", setup=check)


def _attester_chain_check(adapters: dict[int, ChainAdapter], signing_log: SigningLog, index: int) -> Service:
    async def check() -> None:
        for domain, adapter in adapters.items():
            await check_chain_state(
                adapter, stored=signing_log.chain_identity(domain), cursor=signing_log.get_cursor(f"watch:{domain}"),
                save=lambda identity, domain=domain: signing_log.set_chain_identity(domain, identity),
                state=f"member {index}'s signing log", reset=reset_command(adapter.name, f"--attester {index}"))
    return Service("chain identities", setup=check)


async def run_relayer(config: TesseraConfig, stop: asyncio.Event | None = None) -> None:
    committee = _committee(config)
    settings = config.relayer
    adapters = messaging_adapters(config, with_signers=True)
    # Replicas sharing a PostgreSQL store lease at most `concurrency` messages per stage at a time (at
    # least four batches with batching on).
    store = await Store.open(settings.db, replica=settings.replica, lease_s=settings.lease_s,
                             lease_batch=max(settings.concurrency, 4 * settings.batch_size))
    collector = CommitteeCollector(committee, timeout=settings.partial_timeout_s)
    verdicts = CommitteeVerdicts([m.endpoint for m in committee.members], committee.t,
                                 timeout=settings.partial_timeout_s)
    relayer = Relayer(
        store, adapters, collector,
        PipelineSettings(backoff=Backoff(base=settings.retry_base_s, cap=settings.retry_cap_s,
                                         max_attempts=settings.max_attempts),
                         concurrency=settings.concurrency, batch_size=settings.batch_size,
                         batch_wait=settings.batch_wait_ms / 1000,
                         close_receipts_after=settings.close_receipts_after_s),
        verdicts=verdicts,
        policy=PaymentPolicy.from_config(settings.policy, config.chains),
    )
    wallets = WalletBalances(relayer.metrics.registry, "relayer",
                             [Wallet(a.name, a.wallet_balances) for a in adapters.values()])
    await run_daemon("relayer", [
        Service("store", cleanup=store.close),
        Service("collector", cleanup=collector.close),
        Service("verdicts", cleanup=verdicts.close),
        *_adapter_services(adapters),
        _relayer_chain_check(adapters, store),
        http_service("http", build_app(relayer, committee,
                                           f"http://{config.feed_server.listen}" if config.feeds else None,
                                           settings.admin_token.read_text() if settings.admin_token else None),
                     settings.listen),
        Service("pipeline", run=relayer.run),
        Service("wallet balances", run=wallets.run),
    ], stop, listen=settings.listen, db=str(settings.db), chains=[a.name for a in adapters.values()],
        committee_epoch=committee.epoch, threshold=f"{committee.t}/{committee.n}")


def _load_share(config: TesseraConfig, committee: Committee, index: int) -> KeyShare:
    ref = config.committee
    assert ref is not None
    if ref.key_file is not None:
        secret = read_key_file(ref.key_file)
    elif ref.password is not None:
        secret = Secret.password(ref.password.read_text())
    else:
        secret = resolve_secret(None, None)  # $TESSERA_KEY_PASSWORD, or a clear error
    return load_share_for(committee, ref.share_path(index), secret)


def result_checkers(config: TesseraConfig) -> tuple[ExecutorRegistry, ProofVerifierRegistry]:
    """What an attester checks task results with: the executors for re-execution (with the same
    `[executors.<id>]` options as workers) and the proof verifiers (plugins get their
    `[proof_verifiers.<name>]` options)."""
    executors = ExecutorRegistry.load(config.executors)
    return executors, ProofVerifierRegistry.load(executors, config.proof_verifiers)


async def run_attester(config: TesseraConfig, index: int, stop: asyncio.Event | None = None) -> None:
    committee = _committee(config)
    member = committee.member(index)
    share = _load_share(config, committee, index)
    adapters = messaging_adapters(config, with_signers=False)  # an attester never sends transactions
    signing_log = SigningLog(config.attester.db.replace("{index}", str(index)), member=index)
    executors, verifiers = result_checkers(config)
    attester = Attester(index, committee.epoch, lambda digest: attest.partial_sign(share, digest).signature,
                        adapters, signing_log, observe_rate=config.attester.max_observe_requests_per_s,
                        executors=executors, verifiers=verifiers, threshold=(committee.t, committee.n))
    listen = member.endpoint.split("://", 1)[-1].rstrip("/")
    app = attester.build_app()
    # POST /v1/rotations: signs a COMMITTEE_ROTATION only to the committee [committee] next approves.
    app.add_routes(rotation_routes(index, committee.epoch, lambda digest: attest.partial_sign(share, digest).signature,
                                   Committee.load(config.committee.next) if config.committee.next else None, adapters,
                                   config.committee.next_grace_s))
    feed_services: list[Service] = []
    if config.feeds:  # feed rounds share the attester's port and process (relay/feeds/node.py)
        register_feed_sources(config)  # source kinds that read a chain (evm_pool) come from adapters/
        feed_node = FeedNode.from_config(config, committee, share)
        app.add_routes(feed_node.routes())
        feed_services.append(Service("feed rounds", setup=feed_node.start, run=feed_node.run, cleanup=feed_node.close))
    # /metrics like every daemon (the feed round metrics; also at /v1/feeds/metrics for the members).
    registry = feed_node.metrics.registry if config.feeds else CollectorRegistry()
    app.router.add_get("/metrics", lambda request: metrics_response(registry))
    await run_daemon("attester", [
        Service("signing log", cleanup=signing_log.close),
        *_adapter_services(adapters),
        _attester_chain_check(adapters, signing_log, index),
        *feed_services,
        http_service("http", app, listen),
        Service("attestations", run=attester.run),
    ], stop, member=index, listen=listen, epoch=committee.epoch)
