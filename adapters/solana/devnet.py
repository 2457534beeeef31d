"""The Solana side of a localnet: keypairs and funding for the accounts a localnet needs."""

from __future__ import annotations

import json
from pathlib import Path

from solders.keypair import Keypair

from attest.files import write_atomic


def load_or_create_keypair(path: Path) -> Keypair:
    """A keypair file in the Solana CLI's format (a JSON array of the 64 secret-key bytes), created
    with mode 0600 when missing."""
    if path.exists():
        return Keypair.from_bytes(bytes(json.loads(path.read_text())))
    keypair = Keypair()
    write_atomic(path, json.dumps(list(bytes(keypair))))
    return keypair
