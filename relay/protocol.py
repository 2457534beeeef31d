"""Protocol constants of Tessera wire protocol v1 (normative: see docs/PROTOCOL.md).

Everything that is part of the byte-level protocol lives here and nowhere else.
"""

from __future__ import annotations

import enum

PROTOCOL_VERSION = 1

# Domain-separation tags prefixed to what the committee signs (ASCII, no terminator).
TAG_MESSAGE = b"TESSERA/v1/MSG"
TAG_FEED = b"TESSERA/v1/FEED"
TAG_ROOT = b"TESSERA/v1/ROOT"
# What a worker signs (Ed25519) over a task result.
TAG_RESULT = b"TESSERA/v1/RESULT"
# Task protocol v2 (docs/PROTOCOL.md, "AI-task payloads v2"): the worker's tag, and the version byte
# v2 task payloads carry (offset 0 of a request, offset 32 of a result or verdict).
TAG_RESULT_V2 = b"TESSERA/v2/RESULT"
TASK_PAYLOAD_V2 = 2

# Fixed-size header of an envelope: version u8, kind u8, nonce u64, src_domain u32,
# src_sender bytes32, dst_domain u32, dst_receiver bytes32.
ENVELOPE_HEADER_LEN = 1 + 1 + 8 + 4 + 32 + 4 + 32  # 82

# Largest payload a gateway accepts. Keeps a Solana delivery (envelope, 133-byte attestation,
# ~8 accounts) inside one 1,232-byte transaction; larger data travels as hash + URI.
MAX_PAYLOAD_LEN = 512

# Committee rotation payload: new_epoch u32, n u16, t u16, group_key G2 (128), grace_seconds u32.
ROTATION_PAYLOAD_LEN = 4 + 2 + 2 + 128 + 4

# Source domain used by COMMITTEE_ROTATION envelopes: they come from the committee, not a chain.
COMMITTEE_DOMAIN = 0

U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1


class MessageKind(enum.IntEnum):
    TASK_REQUEST = 1
    TASK_RESULT = 2
    PROOF_ATTESTATION = 3
    DATA = 4
    COMMITTEE_ROTATION = 5
