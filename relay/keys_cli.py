"""`python -m relay.keys_cli keys ...` runs `relay keys ...` (relay/cli/keys.py), for the scripts and
tests that call the keys commands by this module's name."""

from __future__ import annotations

import sys

from relay.cli import main

if __name__ == "__main__":
    sys.exit(main())
