"""deploy/ names only metrics that exist: every daemon of a running stack (relayer, four attesters
with feed rounds, a worker, the feed server, the pusher) is scraped at /metrics, and every
`tessera_*` metric the Grafana dashboards and the Prometheus alert rules mention must be exposed by
one of them. The wallet-balance gauge is there for every account a daemon spends from."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path

import aiohttp
import pytest

from attest.committee import Committee
from relay.config import dump_config, load_config
from relay.devstack import free_port, messaging_stack, wait_http
from relay.processes import ChildProcess
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
_METRIC = re.compile(r"\btessera_[a-z0-9_]+")
# What a family of each type exposes beside its own name (prometheus_client's text format).
_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
             "summary": ("_sum", "_count", "_created"), "gauge": ()}


def named_in_deploy() -> dict[str, set[str]]:
    """metric name -> the deploy/ files naming it."""
    named: dict[str, set[str]] = {}
    files = sorted(DEPLOY.rglob("*.json")) + sorted(DEPLOY.rglob("*.yml"))
    assert files, f"nothing under {DEPLOY}"
    for path in files:
        text = path.read_text()
        if path.suffix == ".json":
            exprs = [t["expr"] for panel in json.loads(text)["panels"] for t in panel.get("targets", [])]
            assert exprs or path.name != "tessera.json"
            text = "\n".join(exprs)
        for name in _METRIC.findall(text):
            named.setdefault(name, set()).add(str(path.relative_to(DEPLOY)))
    return named


def exposed(text: str) -> set[str]:
    """Every sample name a /metrics page can carry, also for labelled families with no sample yet."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            names.add(name)
            names.update(name + suffix for suffix in _SUFFIXES.get(kind, ()))
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def wallet_samples(text: str) -> set[tuple[str, str]]:
    return {(m.group("daemon"), m.group("chain"))
            for m in re.finditer(r'tessera_wallet_balance\{(?=[^}]*daemon="(?P<daemon>[^"]+)")'
                                 r'(?=[^}]*chain="(?P<chain>[^"]+)")[^}]*\} (?P<value>\S+)', text)
            if float(m.group("value")) > 0}


async def test_every_metric_the_dashboards_and_alerts_name_is_exported(tmp_path: Path) -> None:
    named = named_in_deploy()
    assert {"tessera_wallet_balance", "tessera_messages", "tessera_dead_letters_total", "tessera_faulty_partials_total",
            "tessera_rpc_endpoint_healthy", "tessera_feed_stale"} <= set(named)
    async with messaging_stack(tmp_path, feeds=True) as stack:
        await asyncio.gather(stack.start_feed_server(), stack.start_worker("solana"))
        config = load_config(stack.config_path)
        # The pusher with its HTTP server: [feed_push] listen.
        pusher_listen = f"127.0.0.1:{free_port()}"
        pusher_config = stack.state_dir / "config-pusher.toml"
        dump_config(config.model_copy(update={"feed_push": config.feed_push.model_copy(update={"listen": pusher_listen})}),
                    pusher_config)
        pusher = ChildProcess("feed-pusher", [sys.executable, "-m", "relay.cli", "feed-push", "--config", str(pusher_config)],
                              stack.state_dir / "logs" / "feed-pusher.log", env=stack._env())
        pusher.start()
        stack.feed_servers["pusher"] = pusher  # stopped with the stack
        await wait_http(f"http://{pusher_listen}/health", pusher)

        worker_listen = load_config(stack.state_dir / "config-worker-solana.toml").worker.listen
        daemons = {
            "relayer": f"http://{config.relayer.listen}",
            **{f"attester-{m.index}": m.endpoint.rstrip("/") for m in Committee.load(config.committee.file).members},
            "worker": f"http://{worker_listen}",
            "feed-server": stack.feed_server_url(),
            "pusher": f"http://{pusher_listen}",
        }

        pages: dict[str, str] = {}

        async def scrape() -> dict[str, str]:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
                for daemon, url in daemons.items():
                    async with session.get(f"{url}/metrics") as resp:
                        assert resp.status == 200, f"{daemon} {url}/metrics answered {resp.status}"
                        pages[daemon] = await resp.text()
            return pages

        # Every account a daemon spends from has a balance: the relayer's signer on each chain, the
        # pusher's accounts on each chain, the worker's on the chain it serves.
        expected = {("relayer", "evm"), ("relayer", "solana"), ("pusher", "evm"), ("pusher", "solana"),
                    ("worker", "solana")}

        async def balances_read() -> bool:
            await scrape()
            return expected <= set().union(*(wallet_samples(text) for text in pages.values()))

        await wait_for(balances_read, timeout=60, what="wallet balances of the relayer, pusher and worker")
        everything = set().union(*(exposed(text) for text in pages.values()))
        missing = {name: sorted(files) for name, files in named.items() if name not in everything}
        assert not missing, f"deploy/ names metrics no daemon exports: {missing}"
        # Each daemon serves the families its panels are about.
        assert "tessera_messages" in exposed(pages["relayer"])
        assert "tessera_feed_rounds_published_total" in exposed(pages["attester-1"])
        assert "tessera_feed_stale" in exposed(pages["feed-server"])
        assert "tessera_worker_tasks" in exposed(pages["worker"])
        assert "tessera_wallet_balance" in exposed(pages["pusher"])
