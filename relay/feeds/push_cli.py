"""`relay feed-push` (on-chain pusher) and `relay market` (the localnet market simulator)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Adds this module's sub-commands (each sets `handler`)."""
