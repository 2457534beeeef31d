"""`relay admin pause|unpause|status --chain X` (the gateway owner's switch), `relay admin
accept-ownership --chain X --contract gateway|feed-store` (the second step of an ownership transfer,
signed by the proposed owner: an EVM Gateway or FeedStore, or the Solana program's admin) and `relay fees quote|claim --chain X` (what a send costs;
the beneficiary takes the accrued fees).

Each runs one chain's gateway through its adapter (adapters/registry.py), signed by the chain's
`signer` from the config, or by the key given with `--key FILE` (unencrypted) or `--keystore FILE`
with `--password-file` / `--password-env` (the owner's key is rarely the relayer's: on the localnet
the owner is the deployer, keys/evm-deployer.key). While paused, the gateway refuses sends and
deliveries (docs/SECURITY.md); the relayer keeps retrying them.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from adapters.registry import accept_ownership, contract_owners, driver_named
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
                         ("status", "whether the gateway is paused, its beneficiary and accrued fees, and the "
                          "owner and pending owner of the Gateway and the FeedStore (EVM) or the program's admin, "
                          "pending admin and upgrade authority (Solana)")):
        p = actions.add_parser(action, help=text, description=text)
        _chain_options(p, signed=action != "status")
        p.set_defaults(handler=_run_admin, admin_action=action)
    p = actions.add_parser("accept-ownership", help="take over a Gateway or FeedStore (EVM), or a Solana program's "
                           "admin, proposed to you",
                           description="The second step of an ownership transfer: acceptOwnership() on EVM, "
                           "AcceptAdmin on Solana (--contract gateway: the program's admin, who pauses and sets "
                           "fees). `relay deploy --owner ADDRESS` (or the owner's transferOwnership / ProposeAdmin) "
                           "proposes ADDRESS; until ADDRESS signs this, the previous owner keeps every power. Sign "
                           "with ADDRESS's key (on Solana it also pays the transaction fee).")
    _chain_options(p, signed=True)
    p.add_argument("--contract", required=True, choices=("gateway", "feed-store"),
                   help="which owned contract of [chains.X.contracts] to take over")
    p.set_defaults(handler=_run_accept_ownership)

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
    p = actions.add_parser("set-destination", help="post what a delivery to a destination costs (owner only)",
                           description="Gateway.setDestinationFee: the destination's cost per delivery, "
                           "(base-gas + gas-per-byte x payload bytes) x gas-price in its smallest unit, priced with "
                           "the --price-feed feed of the FeedStore; --gas-price 0 removes the config (flat fee only).")
    _chain_options(p, signed=True)
    p.add_argument("--to", required=True, help="destination chain name under [chains]")
    p.add_argument("--gas-price", type=int, required=True,
                   help="destination units per gas unit (wei per gas; 1 for a Solana destination counted in lamports)")
    p.add_argument("--base-gas", type=int, required=True, help="gas (or lamports) of a delivery with an empty payload")
    p.add_argument("--gas-per-byte", type=float, required=True,
                   help="gas (or lamports) per payload byte (an integer on EVM; Solana keeps 1/1000 gas: 728.5)")
    p.add_argument("--decimals", type=int, required=True, help="the destination token's decimals (18 ETH, 9 SOL)")
    p.add_argument("--price-feed", required=True, help="feed id of the destination token in USD, e.g. SOL/USD")
    p.add_argument("--margin-bps", type=int, default=1000, help="margin in basis points (default: %(default)s)")
    p.add_argument("--max-price-age", type=int, default=3600,
                   help="seconds after which a price is stale and quotes are refused (default: %(default)s)")
    p.add_argument("--native-feed", default=None,
                   help="also set the feeds the quote reads: this chain's token in USD (e.g. ETH/USD) in the "
                   "FeedStore of [chains.X.contracts] (once per gateway; `relay deploy` does not set it). On "
                   "Solana, required: the program's feed of SOL in the same currency (e.g. SOL/USD)")
    p.set_defaults(handler=_run_set_destination)
    p = actions.add_parser("set-beneficiary", help="who claims the fees (owner only)",
                           description="Gateway.setBeneficiary: the account `relay fees claim` pays.")
    _chain_options(p, signed=True)
    p.add_argument("address", help="the beneficiary's address")
    p.set_defaults(handler=_run_set_beneficiary)


def _chain_options(p: argparse.ArgumentParser, *, signed: bool) -> None:
    p.add_argument("--chain", required=True, help="chain name under [chains]")
    if signed:
        key = p.add_mutually_exclusive_group()
        key.add_argument("--key", type=Path, default=None,
                         help="file with the unencrypted signing key (default: the chain's signer in the config)")
        key.add_argument("--keystore", type=Path, default=None,
                         help="the signer's encrypted V3 keystore (`relay keys import`), with --password-file or "
                         "--password-env")
        password = p.add_mutually_exclusive_group()
        password.add_argument("--password-file", type=Path, default=None, help="file holding the keystore's password")
        password.add_argument("--password-env", metavar="NAME", default=None,
                              help="environment variable holding the keystore's password")
    add_config_option(p)


def _key_ref(args: argparse.Namespace) -> KeyRef | None:
    """The signer given on the command line (--key, or --keystore with its password), None for the
    config's."""
    key, keystore = getattr(args, "key", None), getattr(args, "keystore", None)
    password_file, password_env = getattr(args, "password_file", None), getattr(args, "password_env", None)
    if keystore is None:
        if password_file is not None or password_env is not None:
            raise ConfigError("--password-file/--password-env unlock a --keystore; --key is not encrypted")
        if key is None:
            return None
        if not key.is_file():
            raise ConfigError(f"--key {key}: no such file")
        return KeyRef(file=key.resolve())
    if not keystore.is_file():
        raise ConfigError(f"--keystore {keystore}: no such file")
    if password_file is None and password_env is None:
        raise ConfigError("--keystore needs --password-file or --password-env (the keystore's password)")
    return KeyRef(keystore=keystore.resolve(), password_file=password_file and password_file.resolve(),
                  password_env=password_env)


def _adapter(args: argparse.Namespace, signed: bool) -> Any:
    config, _ = load(args.config)
    driver = driver_named(config, args.chain)
    key = _key_ref(args)
    if key is not None:
        chain = config.chains[args.chain].model_copy(update={"signer": key})
        driver = type(driver)(args.chain, chain)
    adapter = driver.messaging(role="relayer", with_signer=signed)
    return adapter


def _need(adapter: Any, capability: str) -> None:
    if not hasattr(adapter, capability):
        raise TesseraError(f"chain {adapter.name}: its gateway has no {capability} yet (the Solana program has no "
                           "fee instructions; see docs/PROTOCOL.md \"Fees\")")


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
            line = f"{args.chain}: {'paused' if await adapter.is_paused() else 'running'}"
            if hasattr(adapter, "beneficiary"):  # chains whose gateway charges fees
                line += f"; beneficiary {await adapter.beneficiary()}, accrued fees {await adapter.accrued_fees()}"
            return line + _owners_text(args, await contract_owners(args.chain, load(args.config)[0].chains[args.chain]))
        tx = await (adapter.pause() if action == "pause" else adapter.unpause())
        return f"{args.chain}: gateway {action}d (tx {tx})"

    print(asyncio.run(_with(adapter, run)))
    return 0


def _owners_text(args: argparse.Namespace, owners: dict[str, tuple[str, str, str | None]]) -> str:
    text = ""
    for key, (address, owner, pending) in owners.items():
        text += f"\n  {key} {address}: owner {owner}"
        if key == "upgrade authority":  # Solana: handed over in one step by relay deploy, never pending
            continue
        if pending is None:
            text += ", no ownership transfer pending"
        else:
            flag = "feed-store" if key == "FeedStore" else "gateway"
            text += (f", pending owner {pending} (it takes over with `relay admin accept-ownership --chain {args.chain} "
                     f"--contract {flag}` signed with its key)")
    return text


def _run_accept_ownership(args: argparse.Namespace) -> int:
    config, _ = load(args.config)
    chain = config.chains.get(args.chain)
    if chain is None:
        raise ConfigError(f"no chain {args.chain!r} under [chains]; configured: {', '.join(sorted(config.chains))}")
    key = _key_ref(args) or chain.signer
    if key is None:
        raise ConfigError(f"chains.{args.chain} has no signer: sign with the proposed owner's key (--keystore FILE "
                          "--password-file FILE, or --key FILE)")
    address, tx = asyncio.run(accept_ownership(args.chain, chain, args.contract, key))
    if tx is None:
        print(f"{args.chain}: {args.contract} {address} is already owned by this key; nothing was pending")
    else:
        print(f"{args.chain}: {args.contract} {address} ownership accepted (tx {tx})")
    return 0


def _run_claim(args: argparse.Namespace) -> int:
    adapter = _adapter(args, signed=True)
    _need(adapter, "claim_fees")

    async def run() -> str:
        amount, tx = await adapter.claim_fees()
        return f"{args.chain}: claimed {amount} to the beneficiary {await adapter.beneficiary()} (tx {tx})"

    print(asyncio.run(_with(adapter, run)))
    return 0


def _destination(args: argparse.Namespace) -> Any:
    config, _ = load(args.config)
    destination = config.chains.get(args.to)
    if destination is None:
        raise ConfigError(f"--to {args.to!r}: no chain of that name under [chains]; configured: "
                          f"{', '.join(sorted(config.chains))}")
    return destination


def _run_set_destination(args: argparse.Namespace) -> int:
    destination = _destination(args)
    adapter = _adapter(args, signed=True)
    _need(adapter, "set_destination_fee")
    cfg = {"gas_price": args.gas_price, "base_gas": args.base_gas, "gas_per_byte": args.gas_per_byte,
           "dst_decimals": args.decimals, "margin_bps": args.margin_bps, "max_price_age": args.max_price_age,
           "dst_price_feed": args.price_feed}
    store = None
    if hasattr(adapter, "fees_required"):  # Solana: the program's own feed accounts, SOL's named by --native-feed
        cfg["native_price_feed"] = args.native_feed
    else:
        if not float(args.gas_per_byte).is_integer():
            raise ConfigError("--gas-per-byte: the EVM gateway takes whole gas units per byte")
        cfg["gas_per_byte"] = int(args.gas_per_byte)
    if args.native_feed is not None and "native_price_feed" not in cfg:
        store = getattr(load(args.config)[0].chains[args.chain], "contracts", {}).get("FeedStore")
        if store is None:
            raise ConfigError(f"--native-feed: chains.{args.chain}.contracts has no FeedStore: deploy it "
                              "(`relay deploy`) or add its address")

    async def post() -> str:
        if store is not None:
            print(f"{args.chain}: quotes read {args.native_feed} and --price-feed from FeedStore {store} "
                  f"(tx {await adapter.set_price_feeds(store, args.native_feed)})")
        return await adapter.set_destination_fee(destination.domain, cfg)

    tx = asyncio.run(_with(adapter, post))
    print(f"{args.chain} -> {args.to}: delivery cost posted (tx {tx})")
    return 0


def _run_set_beneficiary(args: argparse.Namespace) -> int:
    adapter = _adapter(args, signed=True)
    _need(adapter, "set_beneficiary")
    tx = asyncio.run(_with(adapter, lambda: adapter.set_beneficiary(args.address)))
    print(f"{args.chain}: beneficiary {args.address} (tx {tx})")
    return 0


def _run_quote(args: argparse.Namespace) -> int:
    destination = _destination(args)
    if args.bytes < 0:
        raise ConfigError("--bytes must be 0 or more")
    adapter = _adapter(args, signed=False)
    fee = asyncio.run(_with(adapter, lambda: adapter.quote(destination.domain, args.bytes)))
    print(f"{args.chain} -> {args.to}, {args.bytes} bytes: {fee}")
    return 0
