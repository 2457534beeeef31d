"""The one way Tessera writes a file that must never be seen half-written or, for secrets, readable
by others: keys, key shares, configs, state files."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_atomic(path: Path, data: bytes | str, mode: int = 0o600, *, exclusive: bool = False) -> None:
    """Write `data` to a temp file in the same directory, created with `mode` from its first byte
    (secrets are never readable by others, not even for a moment), fsync it, then move it into place
    and fsync the directory: a reader sees the old file or the new one, never half of one.

    `exclusive=True` refuses to replace an existing file (FileExistsError), atomically: for
    identities that must never be overwritten. The default mode 0600 suits secrets; pass 0o644 for
    public files."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # O_CREAT's mode is filtered by the umask; set it before any byte is written
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if exclusive:
            os.link(tmp, path)  # fails if the file exists, unlike rename
            tmp.unlink()
        else:
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
