"""`relay admin pause|unpause|status --chain X` (the gateway owner's switch) and `relay fees
quote|claim --chain X` (what a send costs; the beneficiary takes the accrued fees).

Each runs one chain's gateway through its adapter (adapters/registry.py), signed by the chain's
`signer` from the config, or by the key file given with `--key` (the owner's key is rarely the
relayer's: on the localnet the owner is the deployer, keys/evm-deployer.key). While paused, the
gateway refuses sends and deliveries (docs/SECURITY.md); the relayer keeps retrying them.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from adapters.registry import driver_named
from relay.cli.common import add_config_option, load
from relay.config import KeyRef
from relay.errors import ConfigError, TesseraError


def register(sub: argparse._SubParsersAction) -> None:
    admin = sub.add_parser("admin", help="the gateway owner's switches: pause, unpause, status",
                           description="Pause or unpause a chain's gateway (owner only): while paused it refuses "
                           "every send and delivery with GatewayPaused.")
    actions = admin.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, text in (("pause", "refuse sends and deliveries from now on"),
                         ("unpause", "accept sends and deliveries again"),
                         ("status", "whether the gateway is paused, its beneficiary and accrued fees")):
        p = actions.add_parser(action, help=text, description=text)
        _chain_options(p, signed=action != "status")
        p.set_defaults(handler=_run_admin, admin_action=action)

    fees = sub.add_parser("fees", help="delivery fees: quote a send, claim the accrued fees",
                          description="Delivery fees that pay relayers (docs/PROTOCOL.md \"Fees\").")
    actions = fees.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = actions.add_parser("claim", help="pay the accrued fees to the beneficiary (signed by the beneficiary)",
                           description="Gateway.claimFees(): the fees accrued since the last claim go to the "
                           "beneficiary; only the beneficiary may call it (the chain's signer by default).")
    _chain_options(p, signed=True)
    p.set_defaults(handler=_run_claim)
    p = actions.add_parser("quote", help="what a send of N payload bytes to a destination costs now",
                           description="The source gateway's quote (smallest unit: wei, lamports). Refused, "
                           "with the reason, when a price feed it needs is stale or missing.")
    _chain_options(p, signed=False)
    p.add_argument("--to", required=True, help="destination chain name under [chains]")
    p.add_argument("--bytes", type=int, default=0, help="payload length (default: %(default)s)")
    p.set_defaults(handler=_run_quote)


def _chain_options(p: argparse.ArgumentParser, *, signed: bool) -> None:
    p.add_argument("--chain", required=True, help="chain name under [chains]")
    if signed:
        p.add_argument("--key", type=Path, default=None,
                       help="file with the signing key (default: the chain's signer in the config)")
    add_config_option(p)


def _adapter(args: argparse.Namespace, signed: bool) -> Any:
    config, _ = load(args.config)
    driver = driver_named(config, args.chain)
    key = getattr(args, "key", None)
    if key is not None:
        if not key.is_file():
            raise ConfigError(f"--key {key}: no such file")
        chain = config.chains[args.chain].model_copy(update={"signer": KeyRef(file=key.resolve())})
        driver = type(driver)(args.chain, chain)
    adapter = driver.messaging(role="relayer", with_signer=signed)
    return adapter


def _need(adapter: Any, capability: str) -> None:
    if not hasattr(adapter, capability):
        raise TesseraError(f"chain {adapter.name}: its gateway has no {capability} yet (on Solana the program's "
                           "fee and pause instructions are not deployed; see docs/PROTOCOL.md \"Fees\")")


async def _with(adapter: Any, fn: Any) -> Any:
    await adapter.start()
    try:
        return await fn()
    finally:
        await adapter.close()


def _run_admin(args: argparse.Namespace) -> int:
    action = args.admin_action
    adapter = _adapter(args, signed=action != "status")
    _need(adapter, "is_paused")

    async def run() -> str:
        if action == "status":
            paused = await adapter.is_paused()
            return (f"{args.chain}: {'paused' if paused else 'running'}; beneficiary {await adapter.beneficiary()}, "
                    f"accrued fees {await adapter.accrued_fees()}")
        tx = await (adapter.pause() if action == "pause" else adapter.unpause())
        return f"{args.chain}: gateway {action}d (tx {tx})"

    print(asyncio.run(_with(adapter, run)))
    return 0


def _run_claim(args: argparse.Namespace) -> int:
    adapter = _adapter(args, signed=True)
    _need(adapter, "claim_fees")

    async def run() -> str:
        amount, tx = await adapter.claim_fees()
        return f"{args.chain}: claimed {amount} to the beneficiary {await adapter.beneficiary()} (tx {tx})"

    print(asyncio.run(_with(adapter, run)))
    return 0


def _run_quote(args: argparse.Namespace) -> int:
    config, _ = load(args.config)
    destination = config.chains.get(args.to)
    if destination is None:
        raise ConfigError(f"--to {args.to!r}: no chain of that name under [chains]; configured: "
                          f"{', '.join(sorted(config.chains))}")
    if args.bytes < 0:
        raise ConfigError("--bytes must be 0 or more")
    adapter = _adapter(args, signed=False)
    fee = asyncio.run(_with(adapter, lambda: adapter.quote(destination.domain, args.bytes)))
    print(f"{args.chain} -> {args.to}, {args.bytes} bytes: {fee}")
    return 0
