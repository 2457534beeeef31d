"""Four `python -m relay.cli keys dkg` processes run a real DKG over HTTP on 127.0.0.1."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w

from attest.bls import verify
from attest.committee import load_committee
from attest.keystore import Secret, load_share_for
from attest.threshold import combine_signatures, partial_sign
from relay.ports import free_port
from relay.envelope import message_digest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "e2e-password"


def _free_ports(count: int) -> list[int]:
    return [free_port() for _ in range(count)]  # below the ephemeral range: see relay/ports.py


def _write_config(path: Path, n: int, t: int, start_timeout: float, identities: dict[int, str] | None = None) -> None:
    ports = _free_ports(n)
    config = {
        "epoch": 3, "n": n, "t": t, "session": f"e2e-{path.parent.name}",
        "start_timeout": start_timeout, "round_timeout": 20, "request_timeout": 2,
        "participants": [{"index": i, "endpoint": f"http://127.0.0.1:{port}",
                          "attester_endpoint": f"http://127.0.0.1:{7100 + i}",
                          **({"identity_key": identities[i]} if identities else {})}
                         for i, port in enumerate(ports, start=1)],
    }
    path.write_text(tomli_w.dumps(config))


def _make_identities(tmp_path: Path, n: int) -> dict[int, str]:
    """`keys identity` for each participant; returns the public keys to pin in the config."""
    public = {}
    for i in range(1, n + 1):
        done = subprocess.run([sys.executable, "-m", "relay.cli", "keys", "identity", "--out",
                               str(tmp_path / f"id-{i}.key")], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        public[i] = re.search(r'identity_key = "(0x[0-9a-f]{64})"', done.stdout).group(1)
    return public


def _run_participants(tmp_path: Path, indices: list[int], config: Path,
                      with_identity: bool = False) -> dict[int, subprocess.CompletedProcess]:
    password = tmp_path / "password"
    password.write_text(PASSWORD + "\n")
    env = {**os.environ, "TESSERA_LOG_LEVEL": "info", "TESSERA_LOG_FORMAT": "json"}
    procs = {
        i: subprocess.Popen(
            [sys.executable, "-m", "relay.cli", "keys", "dkg", "--config", str(config), "--index", str(i),
             "--out", str(tmp_path / f"p{i}"), "--password-file", str(password),
             *(["--identity-key", str(tmp_path / f"id-{i}.key")] if with_identity else [])],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in indices
    }
    done = {}
    try:
        for i, proc in procs.items():
            out, err = proc.communicate(timeout=90)
            done[i] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return done


def _check_agreement(tmp_path: Path, indices: list[int]) -> None:
    committees = {(tmp_path / f"p{i}" / "committee.toml").read_text() for i in indices}
    assert len(committees) == 1, "participants wrote different committee files"
    committee = load_committee(tmp_path / f"p{indices[0]}" / "committee.toml")
    secret = Secret.password(PASSWORD)
    shares = [load_share_for(committee, tmp_path / f"p{i}" / f"share-{i}.json", secret) for i in indices]
    digest = message_digest(committee.epoch, b"\xab" * 32)
    signature = combine_signatures([partial_sign(s, digest) for s in shares[: committee.t]])
    assert verify(committee.group_key, digest, signature)
    # `keys show` accepts every participant's files.
    i = indices[-1]
    shown = subprocess.run(
        [sys.executable, "-m", "relay.cli", "keys", "show", str(tmp_path / f"p{i}"),
         "--share", str(tmp_path / f"p{i}" / f"share-{i}.json"), "--password-file", str(tmp_path / "password")],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert f"member {i}, matches its public share" in shown.stdout


def test_four_processes_run_a_dkg_with_signed_messages(tmp_path: Path) -> None:
    config = tmp_path / "dkg.toml"
    _write_config(config, 4, 3, start_timeout=60, identities=_make_identities(tmp_path, 4))
    done = _run_participants(tmp_path, [1, 2, 3, 4], config, with_identity=True)
    for i, proc in done.items():
        assert proc.returncode == 0, f"participant {i} failed:\n{proc.stderr[-3000:]}"
        assert "QUAL [1, 2, 3, 4]" in proc.stdout
        result = json.loads((tmp_path / f"p{i}" / f"dkg-result-{i}.json").read_text())
        assert result["qual"] == [1, 2, 3, 4] and result["confirmed_by"] == [1, 2, 3, 4]
        assert oct((tmp_path / f"p{i}" / f"share-{i}.json").stat().st_mode)[-3:] == "600"
    assert len({json.loads((tmp_path / f"p{i}" / f"dkg-result-{i}.json").read_text())["transcript_hash"]
                for i in done}) == 1
    _check_agreement(tmp_path, [1, 2, 3, 4])


def test_three_processes_finish_when_the_fourth_never_starts(tmp_path: Path) -> None:
    config = tmp_path / "dkg.toml"
    _write_config(config, 4, 3, start_timeout=8)
    done = _run_participants(tmp_path, [1, 2, 4], config)
    for i, proc in done.items():
        assert proc.returncode == 0, f"participant {i} failed:\n{proc.stderr[-3000:]}"
        assert "QUAL [1, 2, 4]" in proc.stdout
        assert "participant 3 excluded: missed the hello round deadline" in proc.stdout
    _check_agreement(tmp_path, [1, 2, 4])
