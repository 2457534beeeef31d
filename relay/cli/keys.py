"""`relay keys deal|dkg|identity|show|import`: deal keys for a localnet, run one DKG participant, make
a DKG identity key, show and check key material, encrypt a raw hot key into a keystore."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path

from adapters.registry import encrypt_hot_key

from attest.committee import load_committee
from attest.dealer import COMMITTEE_FILE, KeygenError, deal_to_directory, share_file_name, write_key_material
from attest.dkg import (
    generate_identity,
    identity_private_bytes,
    identity_public_bytes,
    load_dkg_config,
    load_identity,
    run_participant,
)
from attest.files import write_atomic
from attest.keystore import PASSWORD_ENV, load_share_for, resolve_secret
from relay.errors import ConfigError


def _add_secret_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--password-file", type=Path, default=None,
                       help=f"file holding the password that encrypts the share (or set ${PASSWORD_ENV})")
    group.add_argument("--key-file", type=Path, default=None,
                       help="file holding a 32-byte key (raw or hex) that encrypts the share")


def register(subparsers: argparse._SubParsersAction) -> None:
    keys = subparsers.add_parser(
        "keys", help="committee keys: trusted dealer, distributed key generation, inspection",
        description="Create and inspect the attester committee's threshold BLS keys. Shares are always "
        "written encrypted (scrypt or key file + AES-256-GCM); see docs/KEYS.md.")
    sub = keys.add_subparsers(dest="keys_cmd", required=True, metavar="{deal,dkg,show,identity,import}")

    p = sub.add_parser("deal", help="trusted dealer for a localnet: write committee.toml and encrypted shares",
                       description="Deal a t-of-n committee from one random polynomial. Whoever runs this "
                       "sees every share: use it for localnets only, and `keys dkg` for real committees.")
    p.add_argument("--n", type=int, required=True, help="committee size")
    p.add_argument("--t", type=int, required=True, help="threshold: signatures needed (1 <= t <= n)")
    p.add_argument("--epoch", type=int, required=True, help="committee epoch (uint32)")
    p.add_argument("--out", type=Path, required=True, help="directory for committee.toml and share-<i>.json")
    p.add_argument("--endpoints", nargs="+", default=None, metavar="URL",
                   help="each member's attester endpoint, in index order (comma- or space-separated; "
                   "default http://127.0.0.1:7101, 7102, ...)")
    p.add_argument("--force", action="store_true", help="overwrite existing key files in --out")
    _add_secret_options(p)
    p.set_defaults(handler=_run_deal)

    p = sub.add_parser("dkg", help="run one participant of a distributed key generation",
                       description="Run participant --index of the DKG described by --config (every participant "
                       "uses the same file). Serves this participant's messages on its endpoint, fetches the "
                       "others', and writes committee.toml and this participant's encrypted share to --out.")
    p.add_argument("--config", type=Path, required=True, help="DKG config (TOML or JSON; see docs/KEYS.md)")
    p.add_argument("--index", type=int, required=True, help="this participant's index (1..n)")
    p.add_argument("--out", type=Path, required=True, help="directory for committee.toml and share-<index>.json")
    p.add_argument("--identity-key", type=Path, default=None,
                   help="this participant's Ed25519 identity key, when the config pins identity keys")
    p.add_argument("--force", action="store_true", help="overwrite existing key files in --out")
    _add_secret_options(p)
    p.set_defaults(handler=_run_dkg)

    p = sub.add_parser("identity", help="make an Ed25519 identity key that signs this participant's DKG messages",
                       description="Write a new Ed25519 identity key (mode 0600) and print its public key, to be "
                       "listed as identity_key for this participant in every copy of the DKG config.")
    p.add_argument("--out", type=Path, required=True, help="file for the private key")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(handler=_run_identity)

    p = sub.add_parser("show", help="print and validate a committee file; optionally check a share against it",
                       description="Print a committee's epoch, n, t, group key and members, and check that the "
                       "group key interpolates from the public shares. With --share and a password or key "
                       "file, also decrypt the share and check it matches its member's public share.")
    p.add_argument("committee", type=Path, help="committee file, or a directory holding committee.toml")
    p.add_argument("--share", type=Path, default=None, help="an encrypted share file to check")
    _add_secret_options(p)
    p.set_defaults(handler=_run_show)

    p = sub.add_parser("import", help="encrypt a raw hot key (relayer, sender, worker, pusher) into a keystore file",
                       description="Read an unencrypted private key (EVM: 0x-hex; Solana: solana-keygen JSON or "
                       "base58) and write it as an encrypted V3 keystore (scrypt + AES-128-CTR; a Solana keypair "
                       "is stored as its 32-byte seed), mode 0600. Point the config at it with "
                       "{ keystore = ..., password_file = ... } instead of { file = ..., allow_raw = true }.")
    p.add_argument("--kind", choices=["evm", "solana"], required=True, help="the chain kind the key is for")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--key-file", type=Path, help="file holding the unencrypted key")
    source.add_argument("--key-env", metavar="NAME", help="environment variable holding the unencrypted key")
    p.add_argument("--out", type=Path, required=True, help="the keystore file to write")
    password = p.add_mutually_exclusive_group(required=True)
    password.add_argument("--password-file", type=Path, help="file holding the keystore's password")
    password.add_argument("--password-env", metavar="NAME", help="environment variable holding the password")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out")
    p.set_defaults(handler=_run_import)


def _parse_endpoints(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    return [e for v in values for e in v.split(",") if e]


def _run_deal(args: argparse.Namespace) -> int:
    secret = resolve_secret(args.password_file, args.key_file)
    committee = deal_to_directory(args.out, args.n, args.t, args.epoch, secret,  # type: ignore[arg-type]
                                  _parse_endpoints(args.endpoints), force=args.force)
    print(f"dealt a {committee.t}-of-{committee.n} committee for epoch {committee.epoch} into {args.out}")
    print(f"group key 0x{committee.group_key.hex()}")
    return 0


def _run_dkg(args: argparse.Namespace) -> int:
    secret = resolve_secret(args.password_file, args.key_file)  # fail before the DKG, not after it
    config = load_dkg_config(args.config)
    config.participant(args.index)
    out: Path = args.out
    share_path = out / share_file_name(args.index)
    if share_path.exists() and not args.force:
        raise KeygenError(f"refusing to overwrite {share_path}; choose another --out or pass --force")
    identity = load_identity(args.identity_key) if args.identity_key is not None else None
    if identity is not None and not config.authenticated:
        raise KeygenError("--identity-key was given but the DKG config lists no identity keys; add identity_key "
                          "to every participant (see docs/KEYS.md) or leave the option out")
    result = asyncio.run(run_participant(config, args.index, identity=identity))
    write_key_material(out, result.committee, [result.share], secret, force=True)  # type: ignore[arg-type]
    summary = out / f"dkg-result-{args.index}.json"
    summary.write_text(json.dumps(result.summary(), indent=2) + "\n")
    print(f"DKG done: participant {args.index}, epoch {config.epoch}, {config.t}-of-{config.n}, "
          f"QUAL {result.qual}")
    for index, why in sorted(result.excluded.items()):
        print(f"  participant {index} excluded: {why}")
    print(f"group key 0x{result.committee.group_key.hex()}")
    print(f"wrote {out / COMMITTEE_FILE}, {share_path} and {summary}")
    return 0


def _run_identity(args: argparse.Namespace) -> int:
    if args.out.exists() and not args.force:
        raise KeygenError(f"refusing to overwrite {args.out}; choose another --out or pass --force")
    key = generate_identity()
    write_atomic(args.out, ("0x" + identity_private_bytes(key).hex() + "\n").encode(), mode=0o600)
    print(f"wrote {args.out}")
    print(f'identity_key = "0x{identity_public_bytes(key).hex()}"')
    return 0


def _run_show(args: argparse.Namespace) -> int:
    path: Path = args.committee
    if path.is_dir():
        path = path / COMMITTEE_FILE
    committee = load_committee(path)  # validates: the group key must interpolate from the public shares
    print(f"committee {path}")
    print(f"  epoch      {committee.epoch}")
    print(f"  n, t       {committee.n}, {committee.t}")
    print(f"  group key  0x{committee.group_key.hex()}")
    for m in sorted(committee.members, key=lambda m: m.index):
        print(f"  member {m.index}   {m.endpoint}   public share 0x{m.public_share.hex()[:32]}..")
    print(f"  valid: all public shares lie on one degree-{committee.t - 1} polynomial through the group key")
    if args.share is None:
        return 0
    secret = resolve_secret(args.password_file, args.key_file)
    share = load_share_for(committee, args.share, secret)  # type: ignore[arg-type]
    print(f"share {args.share}: member {share.index}, matches its public share in the committee")
    return 0


def _run_import(args: argparse.Namespace) -> int:
    if args.out.exists() and not args.force:
        raise KeygenError(f"refusing to overwrite {args.out}; choose another --out or pass --force")
    if args.key_file is not None:
        where = f"key file {args.key_file}"
        try:
            key_text = args.key_file.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read {where}: {exc.strerror}") from None
    else:
        where = f"environment variable {args.key_env}"
        key_text = os.environ.get(args.key_env, "")
        if not key_text:
            raise ConfigError(f"{where} is not set: export it with the key")
    if args.password_file is not None:
        try:
            password = args.password_file.read_text().rstrip("\r\n")  # as KeyRef.read_keystore reads it
        except OSError as exc:
            raise ConfigError(f"cannot read password file {args.password_file}: {exc.strerror}") from None
        password_field = f'password_file = "{args.password_file}"'
    else:
        password = os.environ.get(args.password_env, "")
        password_field = f'password_env = "{args.password_env}"'
    if not password:
        raise ConfigError("the keystore password is empty: an empty password encrypts nothing")
    keystore, account = encrypt_hot_key(args.kind, key_text, password, where)
    write_atomic(args.out, (json.dumps(keystore, indent=2) + "\n").encode(), mode=0o600)
    print(f"wrote {args.out} ({args.kind} account {account})")
    print(f'use it as: {{ keystore = "{args.out}", {password_field} }}')
    if args.key_file is not None:
        print(f"then delete the unencrypted {args.key_file}")
    return 0
