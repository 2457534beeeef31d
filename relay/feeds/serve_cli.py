"""`relay feed-server`: the feed server daemon."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Adds this module's sub-commands (each sets `handler`)."""
