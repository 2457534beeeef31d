"""`python -m relay.cli ...`: the `relay` command (the localnet and devstack start daemons this way)."""

import sys

from relay.cli import main

sys.exit(main())
