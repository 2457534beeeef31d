"""Joint-Feldman distributed key generation over HTTP: no party ever holds the group secret
(docs/KEYS.md).

    config.py     DKGConfig / Participant: the shared config (epoch, n, t, endpoints, identity keys)
    wire.py       protocol constants, the message envelope, canonical JSON
    sealing.py    share encryption to a recipient's X25519 key (X25519 + HKDF-SHA256 + AES-256-GCM)
    identity.py   Ed25519 identity keys that sign messages when the config pins them
    feldman.py    polynomials, Feldman commitments in G2, share verification
    protocol.py   the protocol as pure state transitions (messages in, next state + message out)
    transport.py  DKGParticipant: serves and fetches the messages over HTTP and drives the transitions
"""

from attest.dkg.config import DKGConfig, Participant, load_dkg_config
from attest.dkg.identity import generate_identity, identity_private_bytes, identity_public_bytes, load_identity
from attest.dkg.protocol import Conduct, DKGError, DKGResult, start
from attest.dkg.sealing import open_share, seal_share, x25519_public_bytes
from attest.dkg.transport import DKGParticipant, run_participant
from attest.dkg.wire import ROUND_COMPLAINTS, ROUND_CONFIRM, ROUND_DEAL, ROUND_HELLO, ROUND_JUSTIFY

__all__ = [
    "Conduct",
    "DKGConfig",
    "DKGError",
    "DKGParticipant",
    "DKGResult",
    "Participant",
    "ROUND_COMPLAINTS",
    "ROUND_CONFIRM",
    "ROUND_DEAL",
    "ROUND_HELLO",
    "ROUND_JUSTIFY",
    "generate_identity",
    "identity_private_bytes",
    "identity_public_bytes",
    "load_dkg_config",
    "load_identity",
    "open_share",
    "run_participant",
    "seal_share",
    "start",
    "x25519_public_bytes",
]
