"""The small exception hierarchy shared by relay/: every message says what to do next."""

from __future__ import annotations


class TesseraError(Exception):
    """Base class of every error Tessera reports to a user."""


class ConfigError(TesseraError):
    """A configuration file or value is malformed."""


class LocalnetError(TesseraError):
    """The embedded localnet could not start, stop or be found."""
