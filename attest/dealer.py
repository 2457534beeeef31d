"""The trusted dealer for localnets, and writing a committee's key material to disk.

The dealing itself is attest.threshold.deal; this module adds what an operator needs around it:
the committee file and one encrypted share file per member, written so that a crash never leaves
a directory with a committee file but missing shares.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from attest.committee import Committee, KeyShare
from attest.files import write_atomic
from attest.keystore import Secret, save_share
from attest.threshold import deal
from attest.errors import TesseraError

COMMITTEE_FILE = "committee.toml"

__all__ = ["COMMITTEE_FILE", "KeygenError", "deal", "deal_to_directory", "save_committee", "share_file_name",
           "write_key_material"]


class KeygenError(TesseraError):
    """Key generation could not produce or write key material."""


def share_file_name(index: int) -> str:
    return f"share-{index}.json"


def save_committee(committee: Committee, path: Path) -> None:
    text = committee.dumps_json() if path.suffix == ".json" else committee.dumps_toml()
    write_atomic(path, text.encode(), mode=0o644)


def write_key_material(out: Path, committee: Committee, shares: Sequence[KeyShare], secret: Secret,
                       *, force: bool = False, scrypt_n: int | None = None) -> list[Path]:
    """committee.toml plus share-<i>.json for each given share; refuses to overwrite unless force."""
    targets = [out / share_file_name(s.index) for s in shares] + [out / COMMITTEE_FILE]
    existing = [str(p) for p in targets if p.exists()]
    if existing and not force:
        raise KeygenError(f"refusing to overwrite existing key material: {', '.join(existing)}; "
                          "choose another --out or pass --force")
    extra = {} if scrypt_n is None else {"scrypt_n": scrypt_n}
    for share in shares:
        member = committee.member(share.index)
        save_share(out / share_file_name(share.index), share, secret, group_key=committee.group_key,
                   public_share=member.public_share, **extra)
    # The committee goes last: a directory that has a committee file has all of its shares.
    save_committee(committee, out / COMMITTEE_FILE)
    return targets


def deal_to_directory(out: Path, n: int, t: int, epoch: int, secret: Secret,
                      endpoints: Sequence[str] | None = None, *, force: bool = False,
                      scrypt_n: int | None = None) -> Committee:
    committee, shares = deal(n, t, epoch, endpoints)
    write_key_material(out, committee, shares, secret, force=force, scrypt_n=scrypt_n)
    return committee
