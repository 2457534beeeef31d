"""`relay committee rotate`: hand every chain's verifier to the next committee (relay/rotation.py).

The outgoing committee's attesters sign one COMMITTEE_ROTATION per chain (each only to the committee
its operator approved with `[committee] next`), this command combines t signatures and delivers each
to its chain (sent by the chain's `signer`), then updates the config's `[committee]`: `file` the new
committee, `previous` the old one with `previous_valid_until` (the earliest end of the chains' grace),
`share` the new shares when given. Idempotent: a chain already at the new epoch is left as it is, so
a run that stopped half-way is finished by running it again. docs/DEPLOY.md "Rotating the committee".
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

import tomli_w

from adapters.registry import driver_for
from attest.committee import Committee
from attest.files import write_atomic
from relay.cli.common import add_config_option, config_path
from relay.config import load_config, parse_config
from relay.configfile import read_toml
from relay.deployment import merge_deployment
from relay.errors import ConfigError
from relay.rotation import RotationError, collect_rotation, rotation_envelope

DEFAULT_GRACE_S = 24 * 3600


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("committee", help="committee operations (rotate)",
                       description="Operations on the attester committee the chains trust.")
    group = p.add_subparsers(dest="committee_command", required=True, metavar="SUBCOMMAND")
    r = group.add_parser(
        "rotate", help="rotate every chain to the next committee (signed by the outgoing one)",
        description="The outgoing committee's attesters sign a COMMITTEE_ROTATION for every chain (each attester "
        "only to the committee its [committee] next names); the rotation is delivered to each chain's verifier "
        "(EVM CommitteeVerifier, Solana RotateCommittee) from the chain's signer; the chains accept the old "
        "committee's signatures for --grace seconds more. Then the config's [committee] is rewritten: file = the "
        "new committee, previous = the old one, previous_valid_until, share = --new-share. Running it again "
        "skips chains already rotated.")
    add_config_option(r)
    r.add_argument("--new-committee", type=Path, required=True,
                   help="the next committee's public file (epoch = the current one + 1), e.g. from `relay keys dkg`")
    r.add_argument("--new-share", default=None,
                   help="the members' new encrypted shares, with {index} (written to [committee] share); "
                        "default: keep the share setting")
    r.add_argument("--grace", type=int, default=DEFAULT_GRACE_S,
                   help="seconds the chains still accept the outgoing committee's signatures (default: %(default)s)")
    r.add_argument("--chain", action="append", default=None,
                   help="rotate only this chain (repeat for several; default: every chain). The config is updated "
                        "only when every configured chain is at the new epoch")
    r.set_defaults(handler=_rotate)


def _rotate(args: argparse.Namespace) -> int:
    path = config_path(args.config)
    return asyncio.run(rotate(path, args.new_committee, args.new_share, args.grace, args.chain))


async def rotate(path: Path, new_file: Path, new_share: str | None, grace: int, only: list[str] | None = None) -> int:
    config = load_config(path)
    if config.committee is None:
        raise ConfigError(f"{path} has no [committee] table: there is no committee to rotate from")
    old = Committee.load(config.committee.file)
    new = Committee.load(new_file)
    if new.epoch != old.epoch + 1:
        raise ConfigError(f"{new_file} is epoch {new.epoch}; the config's committee ({config.committee.file}) is epoch "
                          f"{old.epoch}, so the next one must be epoch {old.epoch + 1}")
    unknown = sorted(set(only or ()) - set(config.chains))
    if unknown:
        raise ConfigError(f"--chain {', '.join(unknown)}: not under [chains]; configured: {', '.join(config.chains)}")
    verifiers = {name: driver_for(name, chain).rotation() for name, chain in config.chains.items()}
    until: dict[str, int] = {}
    try:
        for name, verifier in verifiers.items():
            state = await verifier.state()
            if (state.epoch, state.group_key) == (new.epoch, new.group_key):
                until[name] = state.previous_valid_until
                print(f"{name}: already at epoch {new.epoch}; epoch {old.epoch} accepted until {state.previous_valid_until}")
                continue
            if (state.epoch, state.group_key) != (old.epoch, old.group_key):
                raise RotationError(f"{name}: the chain's verifier holds epoch {state.epoch} with another key than the "
                                    f"config's committee (epoch {old.epoch}): check [committee] file and the chain "
                                    "(`relay config check --online`)")
            if only is not None and name not in only:
                continue
            envelope = rotation_envelope(config.chains[name].domain, verifier.receiver, new, grace)
            signed = await collect_rotation(old, envelope)
            tx = await verifier.rotate(envelope, signed.epoch, signed.signature)
            after = await verifier.state()
            if after.epoch != new.epoch:
                raise RotationError(f"{name}: the rotation {tx} landed but the verifier holds epoch {after.epoch}")
            until[name] = after.previous_valid_until
            print(f"{name}: epoch {old.epoch} -> {new.epoch} (tx {tx}, signed by members "
                  f"{', '.join(map(str, signed.signers))}); epoch {old.epoch} accepted until {after.previous_valid_until}")
    finally:
        for verifier in verifiers.values():
            await verifier.close()
    left = sorted(set(config.chains) - set(until))
    if left:
        print(f"not rotated yet: {', '.join(left)}; the config still names epoch {old.epoch} (run again without --chain)")
        return 0
    _update_config(path, new_file, new_share, min(until.values()))
    print(f"{path}: [committee] file = {new_file} (epoch {new.epoch}), previous = epoch {old.epoch} until "
          f"{min(until.values())}; restart the attesters (with their new shares) and the relayer")
    return 0


def _update_config(path: Path, new_file: Path, new_share: str | None, valid_until: int) -> None:
    """Rewrites the file's [committee] table (the rest is kept as written), atomically."""
    data = read_toml(path)
    table = dict(data.get("committee", {}))
    base = path.parent.resolve()

    def relative(file: Path) -> str:
        file = file if file.is_absolute() else Path.cwd() / file
        return os.path.relpath(file.resolve(), base)

    table["previous"] = table.get("file")
    table["file"] = relative(new_file)
    table["previous_valid_until"] = valid_until
    table.pop("next", None)
    table.pop("next_grace_s", None)
    if new_share is not None:
        table["share"] = new_share
    data["committee"] = table
    parse_config(merge_deployment(data, path), str(path))  # refuse to write a config that would not load (its
    # `deployment = ...` include merged, as load_config does)
    write_atomic(path, tomli_w.dumps(data), 0o644)
