"""`relay config check [--online]`: every link between a config's sections checked at once, each
problem naming its field; with --online, every chain's endpoints, identity, deployment and committee.

Loading a config already checks each field on its own (relay/config.py); what is checked here are
the links a field's validator cannot see (a name that must exist in another section, a file that
must exist, an installed executor, the next committee a member approves) and, online, that the chains
are what the config says.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from adapters.registry import driver_for
from attest.committee import Committee
from relay.cli.common import add_config_option, config_path
from relay.config import EvmChain, SolanaChain, TesseraConfig, key_refs, load_config, raw_key_problems
from relay.errors import ConfigError, TesseraError
from relay.networks import network_named
from relay.policy import policy_problems
from relay.tasks.executors import ExecutorRegistry

ONLINE_TIMEOUT_S = 15.0


def register(subparsers: argparse._SubParsersAction) -> None:
    config = subparsers.add_parser("config", help="check a config: links between sections, and the chains it names",
                                   description="Check a Tessera config beyond what loading it checks.")
    sub = config.add_subparsers(dest="config_cmd", required=True, metavar="{check}")
    p = sub.add_parser("check", help="list every problem in a config (exit 1 if any)",
                       description="Offline: chains without a Gateway or program_id, names that point at no "
                       "chain or feed, executors that are not installed, an EVM domain other than the chain id, "
                       "missing key, keystore, password and committee files, unencrypted keys without allow_raw, "
                       "a [committee] next that is not the next epoch's committee or comes without next_grace_s. "
                       "--online also: each RPC endpoint answers and serves the configured chain (chain id, or "
                       "the network's genesis hash), the contracts/program are deployed with this checkout's "
                       "code (the Solana program against contracts/solana/tessera.so), and each chain holds the "
                       "config's committee.")
    add_config_option(p)
    p.add_argument("--online", action="store_true", help="also query every chain")
    p.set_defaults(handler=_run_check)


def _run_check(args: argparse.Namespace) -> int:
    path = config_path(args.config)
    try:
        config = load_config(path, check_keys=False)
    except ConfigError as exc:  # one field on its own is wrong: what loading says is the whole answer
        print(f"error: {exc}")
        return 1
    committee, problems = load_committee(config)
    problems += next_committee_problems(config, committee)
    problems += offline_problems(config)
    if args.online:
        problems += asyncio.run(online_problems(config, committee))
    if problems:
        print(f"{path}: {len(problems)} problem{'s' * (len(problems) != 1)}")
        for problem in problems:
            print(f"  - {problem}")
        return 1
    checked = "offline and online" if args.online else "offline (add --online to query the chains)"
    print(f"{path}: OK, {len(config.chains)} chains, checked {checked}")
    return 0


def load_committee(config: TesseraConfig) -> tuple[Committee | None, list[str]]:
    if config.committee is None:
        return None, ["committee: no [committee] table: set file = the committee.toml `relay keys dkg` wrote"]
    if not config.committee.file.is_file():
        return None, [f"committee.file: {config.committee.file} does not exist (`relay keys dkg` writes it)"]
    try:
        return Committee.load(config.committee.file), []
    except (TesseraError, ValueError, KeyError) as exc:
        return None, [f"committee.file: {config.committee.file} is not a valid committee: {exc}"]


def next_committee_problems(config: TesseraConfig, current: Committee | None) -> list[str]:
    """`[committee] next` (the committee of the next epoch this member approves, relay/rotation.py) and
    `next_grace_s`: the file exists and loads, its size and threshold are sane, its epoch follows the
    current one, and the grace the operator approves is set with it."""
    ref = config.committee
    if ref is None:
        return []
    if ref.next is None:
        if ref.next_grace_s is not None:
            return [f"committee.next_grace_s: set to {ref.next_grace_s} without committee.next: set next to the next "
                    "committee's public file (`relay keys dkg` writes it), or remove next_grace_s"]
        return []
    problems = []
    if ref.next_grace_s is None:
        problems.append("committee.next_grace_s: missing while committee.next is set: without it this attester signs "
                        "a rotation with any grace up to 30 days (keeping the outgoing key valid that long); set the "
                        "grace you approve, in seconds (the one `relay committee rotate --grace` will use)")
    if not ref.next.is_file():
        return problems + [f"committee.next: {ref.next} does not exist: point it at the next committee's public "
                           "file (`relay keys dkg` for the next epoch writes it), or remove next"]
    try:
        approved = Committee.load(ref.next)
    except (TesseraError, ValueError, KeyError) as exc:
        return problems + [f"committee.next: {ref.next} is not a valid committee: {exc}"]
    if approved.t <= approved.n // 2:
        problems.append(f"committee.next: {ref.next} has threshold {approved.t} of {approved.n}: a minority of the "
                        f"members could sign; use a threshold above n/2 (at least {approved.n // 2 + 1})")
    if current is not None:
        if approved.epoch != current.epoch + 1:
            problems.append(f"committee.next: {ref.next} is the committee of epoch {approved.epoch}, but the current "
                            f"committee (committee.file) is epoch {current.epoch}: the next one must be epoch "
                            f"{current.epoch + 1}")
        if approved.group_key == current.group_key:
            problems.append(f"committee.next: {ref.next} has the current committee's group key: a rotation to it "
                            "changes nothing; run `relay keys dkg` for new keys")
    return problems


def offline_problems(config: TesseraConfig) -> list[str]:
    """Every cross-section problem of an already loaded config, each naming its field."""
    problems: list[str] = []
    for name, chain in config.chains.items():
        match chain:
            case EvmChain() if "Gateway" not in chain.contracts:
                problems.append(f"chains.{name}.contracts.Gateway: missing: messages on an EVM chain go through its "
                                "Gateway contract; add its address (`relay deploy` writes it)")
            case SolanaChain() if chain.program_id is None:
                problems.append(f"chains.{name}.program_id: missing: add the deployed Tessera program's id")
    feed_ids = set(config.feeds)
    for target in config.feed_push.targets:
        if target not in config.chains:
            problems.append(f"feed_push.targets: {target!r} is not a chain under [chains] ({_known(config.chains)})")
    for feed_id in config.feed_push.feeds or []:
        if feed_id not in feed_ids:
            problems.append(f"feed_push.feeds: {feed_id!r} is not a feed under [feeds] ({_known(feed_ids)})")
    for feed_id in config.feed_server.stale_after:
        if feed_id not in feed_ids:
            problems.append(f"feed_server.stale_after: {feed_id!r} is not a feed under [feeds] ({_known(feed_ids)})")
    if config.worker is not None:
        for name, address in config.worker.payout.items():
            chain = config.chains.get(name)
            if chain is None:
                problems.append(f"worker.payout.{name}: no chain {name!r} under [chains] ({_known(config.chains)})")
                continue
            try:
                chain.parse_address(address)
            except ValueError as exc:
                problems.append(f"worker.payout.{name}: {exc} (chain {name!r} is {chain.kind})")
    problems += policy_problems(config.relayer.policy, config.chains)
    problems += _executor_problems(config)
    problems += _file_problems(config)
    problems += raw_key_problems(config)
    return problems


def _executor_problems(config: TesseraConfig) -> list[str]:
    registry = ExecutorRegistry.load(config.executors)
    installed = set(registry.installed)
    problems = []
    for executor_id in config.worker.executors if config.worker is not None else []:
        if executor_id in registry.unavailable:
            problems.append(f"worker.executors: {executor_id!r} cannot run here: {registry.unavailable[executor_id]}")
        elif executor_id not in installed:
            problems.append(f"worker.executors: no executor {executor_id!r} is installed ({_known(installed)})")
    for executor_id in config.executors:
        if executor_id not in installed and executor_id not in registry.unavailable:
            problems.append(f"executors.{executor_id}: options for an executor that is not installed "
                            f"({_known(installed)})")
    return problems


def _file_problems(config: TesseraConfig) -> list[str]:
    problems = []

    def need_file(where: str, path: Path | None, what: str) -> None:
        if path is not None and not path.is_file():
            problems.append(f"{where}: {what} {path} does not exist")

    def need_env(where: str, name: str | None, what: str) -> None:
        if name is not None and not os.environ.get(name):
            problems.append(f"{where}: environment variable {name} ({what}) is not set")

    for where, _, ref in key_refs(config):
        need_file(where, ref.file, "key file")
        need_file(where, ref.keystore, "keystore")
        need_file(where, ref.password_file, "password file")
        need_env(where, ref.env, "the key")
        need_env(where, ref.password_env, "the keystore's password")
    if config.committee is not None:
        need_file("committee.key_file", config.committee.key_file, "key file")
        if config.committee.password is not None:
            need_file("committee.password", config.committee.password.file, "password file")
            need_env("committee.password", config.committee.password.env, "the shares' password")
    return problems


async def online_problems(config: TesseraConfig, committee: Committee | None) -> list[str]:
    """Every chain queried at once: endpoints, identity, deployment, committee."""
    results = await asyncio.gather(*(_chain_problems(name, chain, committee) for name, chain in config.chains.items()))
    return [problem for problems in results for problem in problems]


async def _chain_problems(name: str, chain: EvmChain | SolanaChain, committee: Committee | None) -> list[str]:
    problems: list[str] = []
    identities: dict[str, str] = {}
    for i, url in enumerate(chain.rpc_urls):
        where = f"chains.{name}.rpc_urls[{i}] ({url})"
        single = chain.model_copy(update={"rpc_urls": [url], "ws_urls": []})
        adapter = driver_for(name, single).messaging(with_signer=False)
        try:
            identity = await asyncio.wait_for(adapter.chain_identity(), ONLINE_TIMEOUT_S)
        except Exception as exc:  # whatever a read raises (transport, RPC error, timeout) is the answer here
            problems.append(f"{where}: unreachable: {exc or type(exc).__name__}")
            continue
        finally:
            await adapter.close()
        identities[url] = identity.genesis
        if isinstance(chain, EvmChain) and identity.chain_id != str(chain.chain_id):
            problems.append(f"{where}: serves chain id {identity.chain_id}, but chains.{name}.chain_id is {chain.chain_id}")
        if isinstance(chain, SolanaChain) and chain.network is not None:
            expected = network_named(chain.network).genesis
            if identity.genesis != expected:
                problems.append(f"{where}: serves the cluster with genesis hash {identity.genesis}, not "
                                f"{chain.network}'s {expected}")
    if len(set(identities.values())) > 1:
        problems.append(f"chains.{name}.rpc_urls: the endpoints serve different chains (genesis "
                        f"{', '.join(f'{u}: {g}' for u, g in identities.items())}): a daemon would fail over between them")
    if not identities:
        return problems
    reachable = chain.model_copy(update={"rpc_urls": [next(iter(identities))], "ws_urls": []})
    try:
        problems += await asyncio.wait_for(driver_for(name, reachable).deployment_problems(committee), ONLINE_TIMEOUT_S * 4)
    except Exception as exc:  # as above: report it with the chain's name, check the other chains
        problems.append(f"chains.{name}: the deployment could not be read: {exc or type(exc).__name__}")
    return problems


def _known(names: object) -> str:
    names = sorted(names)  # type: ignore[call-overload]
    return "known: " + ", ".join(names) if names else "none configured"
