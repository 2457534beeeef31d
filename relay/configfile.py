"""Reading config files: TOML parsing and validation messages shared by every config model."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from pydantic import ValidationError

from relay.errors import ConfigError


def read_toml(path: str | os.PathLike[str], missing_hint: str = "") -> dict:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist{': ' + missing_hint if missing_hint else ''}") from None
    try:
        return tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None


def format_validation_error(source: str, exc: ValidationError) -> str:
    lines = [f"{source} is not a valid Tessera config:"]
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        message = err["msg"].removeprefix("Value error, ")
        lines.append(f"  {where}: {message}")
    return "\n".join(lines)


def check_urls(urls: list[str], schemes: tuple[str, ...]) -> list[str]:
    for url in urls:
        if not url.startswith(tuple(f"{s}://" for s in schemes)):
            raise ValueError(f"{url!r} is not a {'/'.join(schemes)} URL")
    return urls


def check_listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not host:port")
    return value
