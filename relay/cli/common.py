"""What every command group shares: the `--config` option and where it points by default."""

from __future__ import annotations

import argparse
from pathlib import Path

from relay.config import TesseraConfig, load_config
from relay.localnet import CONFIG_FILE, default_state_dir


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="Tessera config (default: the localnet's)")


def config_path(path: Path | None) -> Path:
    """The config given with --config, else the one `relay localnet up` writes."""
    return path if path is not None else default_state_dir() / CONFIG_FILE


def load(path: Path | None) -> tuple[TesseraConfig, Path]:
    """The config and the folder it lives in (relative paths in it resolve from there)."""
    path = config_path(path)
    return load_config(path), path.parent
