"""The trusted dealer and the `keys deal` / `keys show` commands."""

import itertools
import json
import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from attest.backend import get_backend
from attest.bls import lagrange_at
from attest.bn254 import G2_GENERATOR, decode_g2, encode_g2
from attest.committee import CommitteeError, load_committee
from attest.dealer import COMMITTEE_FILE, KeygenError, deal, deal_to_directory, share_file_name
from attest.keystore import PASSWORD_ENV, Secret, load_share_for
from attest.threshold import ThresholdError

ROOT = Path(__file__).resolve().parents[2]


def test_any_t_public_shares_interpolate_to_the_group_key() -> None:
    bk = get_backend()
    committee, shares = deal(5, 3, epoch=2, endpoints=[f"http://127.0.0.1:{9000 + i}" for i in range(5)])
    assert (committee.epoch, committee.n, committee.t) == (2, 5, 3)
    assert [m.endpoint for m in committee.members] == [f"http://127.0.0.1:{9000 + i}" for i in range(5)]
    for m, s in zip(committee.members, shares):
        assert encode_g2(bk.g2_mul(G2_GENERATOR, s.scalar)) == m.public_share
    group_key = decode_g2(committee.group_key)
    for subset in itertools.combinations(range(1, 6), 3):
        points = [decode_g2(committee.public_share(i)) for i in subset]
        assert bk.g2_msm(points, lagrange_at(list(subset))) == group_key, subset
        # ... and the same t secret shares interpolate to the group secret.
        secret = sum(lam * shares[i - 1].scalar for lam, i in zip(lagrange_at(list(subset)), subset))
        assert encode_g2(bk.g2_mul(G2_GENERATOR, secret)) == committee.group_key
    # t-1 shares do not determine it.
    pair = [decode_g2(committee.public_share(i)) for i in (1, 2)]
    assert bk.g2_msm(pair, lagrange_at([1, 2])) != group_key


def test_deal_rejects_bad_parameters() -> None:
    with pytest.raises(ThresholdError, match="1 <= t <= n"):
        deal(3, 4, 1)
    with pytest.raises(ThresholdError, match="endpoints"):
        deal(3, 2, 1, endpoints=["http://a:1"])


def test_deal_to_directory_writes_committee_and_encrypted_shares(tmp_path: Path) -> None:
    secret = Secret.key(b"\x05" * 32)
    committee = deal_to_directory(tmp_path, 4, 3, 9, secret)
    assert load_committee(tmp_path / COMMITTEE_FILE) == committee
    for i in range(1, 5):
        path = tmp_path / share_file_name(i)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert load_share_for(committee, path, secret).index == i
    with pytest.raises(KeygenError, match="refusing to overwrite"):
        deal_to_directory(tmp_path, 4, 3, 9, secret)


def _cli(*args: str, env_password: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != PASSWORD_ENV}
    env["TESSERA_LOG_LEVEL"] = "warning"
    if env_password is not None:
        env[PASSWORD_ENV] = env_password
    return subprocess.run([sys.executable, "-m", "relay.cli", "keys", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_deal_then_show_with_share(tmp_path: Path) -> None:
    out = tmp_path / "keys"
    password = tmp_path / "pw"
    password.write_text("s3cret\n")
    done = _cli("deal", "--n", "4", "--t", "3", "--epoch", "1", "--out", str(out), "--password-file", str(password),
                "--endpoints", "http://127.0.0.1:7201,http://127.0.0.1:7202", "http://127.0.0.1:7203",
                "http://127.0.0.1:7204")
    assert done.returncode == 0, done.stderr
    data = tomllib.loads((out / COMMITTEE_FILE).read_text())
    assert (data["epoch"], data["n"], data["t"]) == (1, 4, 3)
    assert [m["endpoint"] for m in data["members"]] == [f"http://127.0.0.1:720{i}" for i in range(1, 5)]
    assert data["group_key"] in done.stdout

    shown = _cli("show", str(out), "--share", str(out / "share-2.json"), "--password-file", str(password))
    assert shown.returncode == 0, shown.stderr
    assert "epoch      1" in shown.stdout and "n, t       4, 3" in shown.stdout
    assert data["group_key"] in shown.stdout
    assert "share " in shown.stdout and "member 2, matches its public share" in shown.stdout

    # The password may come from the environment instead.
    via_env = _cli("show", str(out / COMMITTEE_FILE), "--share", str(out / "share-4.json"), env_password="s3cret")
    assert via_env.returncode == 0, via_env.stderr

    wrong = _cli("show", str(out), "--share", str(out / "share-2.json"), env_password="nope")
    assert wrong.returncode == 1
    assert "cannot decrypt share-2.json: wrong password or key file" in wrong.stderr


def test_cli_show_rejects_an_edited_committee(tmp_path: Path) -> None:
    deal_to_directory(tmp_path, 4, 3, 1, Secret.password("pw"))
    data = tomllib.loads((tmp_path / COMMITTEE_FILE).read_text())
    data["members"][1]["public_share"], data["members"][2]["public_share"] = (
        data["members"][2]["public_share"], data["members"][1]["public_share"])
    (tmp_path / "edited.json").write_text(json.dumps(data))
    with pytest.raises(CommitteeError, match="do not interpolate"):
        load_committee(tmp_path / "edited.json")
    shown = _cli("show", str(tmp_path / "edited.json"))
    assert shown.returncode == 1 and "do not interpolate" in shown.stderr


def test_cli_deal_requires_a_secret(tmp_path: Path) -> None:
    done = _cli("deal", "--n", "3", "--t", "2", "--epoch", "1", "--out", str(tmp_path / "k"))
    assert done.returncode == 1
    assert "--password-file FILE, --key-file FILE, or set $TESSERA_KEY_PASSWORD" in done.stderr
    assert not (tmp_path / "k").exists()
