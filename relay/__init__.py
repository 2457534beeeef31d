"""Tessera relay: envelope and protocol, pipeline, store, feeds, tasks, SDK, CLI, localnet."""

from relay.envelope import Envelope, EnvelopeError, message_digest
from relay.protocol import PROTOCOL_VERSION, MessageKind

__all__ = ["Envelope", "EnvelopeError", "MessageKind", "PROTOCOL_VERSION", "message_digest"]
