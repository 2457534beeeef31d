"""`relay deploy --chain NAME`: Tessera's on-chain code on one configured chain, from a deployer key,
idempotently; the addresses go into the deployment file the config includes (relay/deployment.py).

What is deployed on each kind, and every check made before anything is sent, is the chain package's
(adapters/evm/deployment.py, adapters/solana/deployment.py, reached through adapters.registry);
this module reads the options, the config and the committee, writes the deployment file and prints
what was found, deployed and spent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from adapters.registry import deploy_chain
from attest.committee import Committee
from relay.cli.common import add_config_option, config_path
from relay.config import KeyRef, load_config
from relay.deployment import (DEFAULT_FILE, DeploymentError, DeployReport, DeployRequest, deployment_meta,
                              include_in_config, included_path, update_deployment)
from relay.configfile import read_toml
from relay.errors import ConfigError, TesseraError

_DECIMALS = {"wei": (18, "ETH"), "lamports": (9, "SOL")}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "deploy", help="deploy Tessera's contracts / program on one chain (idempotent)",
        description="Deploy what is missing of Tessera on chain --chain of the config, from a deployer key, "
        "and write the addresses into the deployment file the config includes. EVM: CommitteeVerifier "
        "(holding the config's committee), Gateway, TaskBoardV2, FeedStore with an aggregator per [feeds] "
        "table, ownership handed to --owner. Solana: the program through the upgradeable loader, "
        "InitCommittee, InitGateway, the program's admin proposed to --owner, the upgrade authority handed to "
        "--upgrade-authority. A second run "
        "checks what is recorded (code, links, committee) and deploys only what is missing.")
    add_config_option(p)
    p.add_argument("--chain", required=True, help="the chain's name under [chains] in the config")
    key = p.add_mutually_exclusive_group(required=True)
    key.add_argument("--keystore", type=Path, help="the deployer's encrypted V3 keystore (`relay keys import`)")
    key.add_argument("--key-file", type=Path, help="an unencrypted deployer key file (EVM 0x-hex; Solana "
                     "solana-keygen JSON or base58); needs --allow-raw")
    key.add_argument("--key-env", metavar="NAME", help="an environment variable holding an unencrypted deployer key; "
                     "needs --allow-raw")
    password = p.add_mutually_exclusive_group()
    password.add_argument("--password-file", type=Path, help="file holding the keystore's password")
    password.add_argument("--password-env", metavar="NAME", help="environment variable holding the keystore's password")
    p.add_argument("--allow-raw", action="store_true", help="accept an unencrypted --key-file / --key-env")
    p.add_argument("--owner", default=None, metavar="ADDRESS",
                   help="the account (or multisig) proposed as owner, who takes over with `relay admin "
                   "accept-ownership` signed with its key. EVM: an 0x address, owner of the Gateway and the FeedStore; "
                   "Solana: a base58 public key, the program's admin (pause, fees). Default: the deployer keeps them")
    p.add_argument("--upgrade-authority", default=None, metavar="PUBKEY|KEYPAIR_FILE",
                   help="Solana: the program's upgrade authority at the end (default: the deployer). A keypair file "
                   "hands it over with SetAuthorityChecked (it co-signs: a wrong key cannot be named); a public key "
                   "with the loader's unchecked SetAuthority, refused when it is off the ed25519 curve")
    p.add_argument("--out", type=Path, default=None,
                   help=f"the deployment file (default: the one the config includes, else {DEFAULT_FILE} next to the "
                   "config, which then gets a `deployment = ...` line)")
    p.add_argument("--keys-dir", type=Path, default=None,
                   help="where deployment key material is kept, e.g. the Solana program keypair (default: keys/ "
                   "next to the deployment file)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(handler=_run_deploy)


def deployer_ref(args: argparse.Namespace) -> KeyRef:
    """The deployer's KeyRef from the options, with the rules of a config's hot keys."""
    if args.keystore is not None:
        if args.password_file is None and args.password_env is None:
            raise ConfigError("--keystore needs --password-file or --password-env (the keystore's password)")
        if args.allow_raw:
            raise ConfigError("--allow-raw is for an unencrypted --key-file / --key-env; a keystore is encrypted")
    else:
        if args.password_file is not None or args.password_env is not None:
            raise ConfigError("--password-file/--password-env unlock a --keystore; an unencrypted key has no password")
        if not args.allow_raw:
            source = f"--key-file {args.key_file}" if args.key_file is not None else f"--key-env {args.key_env}"
            raise ConfigError(f"{source} is an unencrypted key: encrypt it with `relay keys import --kind <evm|solana> "
                              f"{source} --out deployer.json --password-file <file>` and pass --keystore deployer.json "
                              "--password-file <file>, or pass --allow-raw to use it as it is")
    try:
        return KeyRef(keystore=args.keystore, file=args.key_file, env=args.key_env, password_file=args.password_file,
                      password_env=args.password_env, allow_raw=args.allow_raw and args.keystore is None)
    except ValidationError as exc:
        raise ConfigError(f"--key: {exc.errors()[0]['msg'].removeprefix('Value error, ')}") from None


def load_committee_for_deploy(config: Any, path: Path) -> Committee:
    if config.committee is None:
        raise ConfigError(f"{path} has no [committee] table: the contracts must hold the committee that signs; set "
                          "[committee] file = the committee.toml that `relay keys dkg` wrote")
    file = config.committee.file
    if not file.is_file():
        raise ConfigError(f"committee.file: {file} does not exist: run `relay keys dkg` (or `relay keys deal` for a "
                          "test network) and point [committee] file at the committee.toml it writes")
    try:
        return Committee.load(file)
    except (TesseraError, ValueError, KeyError) as exc:
        raise ConfigError(f"committee.file: {file} is not a valid committee: {exc}") from None


def deployment_file(args: argparse.Namespace, path: Path) -> Path:
    included = included_path(read_toml(path), path)
    if args.out is not None:
        if included is not None and included.resolve() != args.out.resolve():
            raise ConfigError(f"{path} includes deployment file {included}, not --out {args.out}: leave --out away, "
                              "or change the config's `deployment` line")
        return args.out
    return included if included is not None else path.parent / DEFAULT_FILE


def _run_deploy(args: argparse.Namespace) -> int:
    path = config_path(args.config)
    config = load_config(path, check_keys=False)  # the daemons' keys are not used here
    chain = config.chains.get(args.chain)
    if chain is None:
        raise ConfigError(f"no chain {args.chain!r} under [chains] in {path}; configured: "
                          f"{', '.join(sorted(config.chains)) or 'none'}")
    deployer = deployer_ref(args)
    committee = load_committee_for_deploy(config, path)
    out = deployment_file(args, path)
    keys_dir = args.keys_dir if args.keys_dir is not None else out.parent / "keys"
    recorded = chain.model_dump(include={"contracts", "program_id", "accounts"}, exclude_none=True)
    included = [False]

    def record(fields: dict[str, Any]) -> None:
        update_deployment(out, args.chain, fields)
        if not included[0]:
            included[0] = True
            if include_in_config(path, out):
                print(f"added `deployment = \"...\"` to {path}: it includes {out}")

    request = DeployRequest(deployer=deployer, committee=committee, feeds=config.feeds, owner=args.owner,
                            upgrade_authority=args.upgrade_authority, recorded=recorded, keys_dir=keys_dir,
                            record=record)
    try:
        report = asyncio.run(deploy_chain(args.chain, chain, request))
    except TesseraError:
        raise
    except Exception as exc:  # a transaction refused, a node error mid-way: name the chain, keep what was recorded
        raise DeploymentError(f"deploying on chain {args.chain} failed: {type(exc).__name__}: {exc}. What was deployed "
                              f"so far is recorded in {out}: run the same command again to resume") from exc
    record(report.fields)
    update_deployment(out, args.chain, report.fields, deployment_meta(report))
    if args.json:
        print(json.dumps({"chain": report.chain, "unit": report.unit, "token": report.token, "fields": report.fields,
                          "steps": [asdict(s) for s in report.steps], "total_cost": report.total_cost,
                          "total_fee": report.total_fee, "notes": report.notes, "meta": report.meta,
                          "deployment_file": str(out)}, indent=2))
    else:
        print(format_report(report, out))
    return 0


def format_report(report: DeployReport, out: Path) -> str:
    decimals, symbol = _DECIMALS.get(report.token, (0, report.token))
    lines = [f"chain {report.chain} ({report.meta.get('kind')}), deployer {report.meta.get('deployer')}"]
    width = max((len(s.what) for s in report.steps), default=10)
    for step in report.steps:
        cost = f"{step.cost:>12,} {report.unit}" if step.action not in ("found", "kept") else " " * (13 + len(report.unit))
        fee = f"  {step.fee / 10**decimals:.6f} {symbol}" if step.fee else ""
        note = f"  ({step.note})" if step.note else ""
        lines.append(f"  {step.what:<{width}}  {step.action:<11} {step.address:<44} {cost}{fee}{note}")
    sent = report.sent
    if sent:
        lines.append(f"  total: {len(sent)} step{'s' * (len(sent) != 1)}, {report.total_cost:,} {report.unit}, "
                     f"{report.total_fee / 10**decimals:.6f} {symbol}"
                     + (" (rent included)" if report.unit == "lamports" else ""))
    else:
        lines.append("  nothing to deploy: everything is in place")
    for note in report.notes:
        lines.append(f"  note: {note}")
    lines.append(f"addresses in {out}")
    return "\n".join(lines)
