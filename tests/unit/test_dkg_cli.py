"""`keys dkg` fails fast, before any network round, when it cannot finish usefully."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import tomli_w

from attest.keystore import PASSWORD_ENV

ROOT = Path(__file__).resolve().parents[2]


def _config(path: Path, ports: list[int]) -> Path:
    path.write_text(tomli_w.dumps({
        "epoch": 1, "n": len(ports), "t": 2, "session": "cli-test", "start_timeout": 1, "round_timeout": 1,
        "participants": [{"index": i, "endpoint": f"http://127.0.0.1:{p}"} for i, p in enumerate(ports, start=1)],
    }))
    return path


def _dkg(tmp_path: Path, *args: str, password: str | None = "pw") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != PASSWORD_ENV}
    env["TESSERA_LOG_LEVEL"] = "error"
    if password is not None:
        env[PASSWORD_ENV] = password
    return subprocess.run([sys.executable, "-m", "relay.cli", "keys", "dkg", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_dkg_needs_a_secret_before_it_starts(tmp_path: Path) -> None:
    config = _config(tmp_path / "dkg.toml", [1, 2, 3])
    done = _dkg(tmp_path, "--config", str(config), "--index", "1", "--out", str(tmp_path / "o"), password=None)
    assert done.returncode == 1
    assert "give --password-file FILE, --key-file FILE, or set $TESSERA_KEY_PASSWORD" in done.stderr


def test_dkg_rejects_an_index_outside_the_config(tmp_path: Path) -> None:
    config = _config(tmp_path / "dkg.toml", [1, 2, 3])
    done = _dkg(tmp_path, "--config", str(config), "--index", "4", "--out", str(tmp_path / "o"))
    assert done.returncode == 1 and "no participant 4; indices are 1..3" in done.stderr


def test_dkg_refuses_to_overwrite_a_share(tmp_path: Path) -> None:
    config = _config(tmp_path / "dkg.toml", [1, 2, 3])
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "share-2.json").write_text("{}")
    done = _dkg(tmp_path, "--config", str(config), "--index", "2", "--out", str(tmp_path / "o"))
    assert done.returncode == 1 and "refusing to overwrite" in done.stderr
    assert (tmp_path / "o" / "share-2.json").read_text() == "{}"


def test_dkg_reports_a_busy_port(tmp_path: Path) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        config = _config(tmp_path / "dkg.toml", [busy.getsockname()[1], 1])
        done = _dkg(tmp_path, "--config", str(config), "--index", "1", "--out", str(tmp_path / "o"))
    finally:
        busy.close()
    assert done.returncode == 1 and "cannot listen on" in done.stderr and "free the port" in done.stderr
    assert not (tmp_path / "o").exists()


def test_dkg_with_everyone_else_absent_fails_clearly(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = _config(tmp_path / "dkg.toml", [port, 1, 2])  # ports 1 and 2: nobody there
    done = _dkg(tmp_path, "--config", str(config), "--index", "1", "--out", str(tmp_path / "o"))
    assert done.returncode == 1
    assert "only 1 of 3 participants are still qualified after the hello round (threshold t=2)" in done.stderr
    assert not (tmp_path / "o" / "share-1.json").exists()


def test_identity_key_generation_and_use(tmp_path: Path) -> None:
    from attest.dkg import identity_public_bytes, load_identity

    key_path = tmp_path / "id.key"
    done = subprocess.run([sys.executable, "-m", "relay.cli", "keys", "identity", "--out", str(key_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert oct(key_path.stat().st_mode)[-3:] == "600"
    public = identity_public_bytes(load_identity(key_path))
    assert f'identity_key = "0x{public.hex()}"' in done.stdout
    again = subprocess.run([sys.executable, "-m", "relay.cli", "keys", "identity", "--out", str(key_path)],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "refusing to overwrite" in again.stderr

    config = _config(tmp_path / "dkg.toml", [1, 2, 3])  # no identity keys pinned
    used = _dkg(tmp_path, "--config", str(config), "--index", "1", "--out", str(tmp_path / "o"),
                "--identity-key", str(key_path))
    assert used.returncode == 1 and "lists no identity keys" in used.stderr
