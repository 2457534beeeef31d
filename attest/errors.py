"""The root of Tessera's exception hierarchy. It lives in the bottom layer (attest/) so that the
cryptography stands alone; relay/ and adapters/ derive their errors from it."""

from __future__ import annotations


class TesseraError(Exception):
    """Base class of every error Tessera reports to a user: the message says what to do next."""
