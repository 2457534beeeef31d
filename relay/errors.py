"""The small exception hierarchy shared by relay/: every message says what to do next."""

from __future__ import annotations

from attest.errors import TesseraError

__all__ = ["TesseraError", "ConfigError", "LocalnetError"]


class ConfigError(TesseraError):
    """A configuration file or value is malformed."""


class LocalnetError(TesseraError):
    """The embedded localnet could not start, stop or be found."""
