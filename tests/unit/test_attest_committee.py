import json
import random
import tomllib
from pathlib import Path

import pytest

from attest import Committee, CommitteeError, KeyShare, deal, load_committee
from attest.bn254 import G2_GENERATOR, encode_g2

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
OUTSIDE_G2 = next(
    c["group_key"]
    for c in json.loads((VECTORS / "bls_bn254.json").read_text())["cases"]
    if "outside the G2 subgroup" in c["name"]
)


@pytest.fixture(scope="module")
def dealt():
    return deal(4, 3, epoch=9, rng=random.Random(4), backend="zksnake")


def test_toml_and_json_round_trip(tmp_path: Path, dealt) -> None:
    committee, _ = dealt
    for name in ("committee.toml", "committee.json"):
        committee.save(tmp_path / name)
        assert load_committee(tmp_path / name) == committee
    text = (tmp_path / "committee.toml").read_text()
    data = tomllib.loads(text)
    assert data["epoch"] == 9 and data["t"] == 3 and data["group_key"].startswith("0x")
    assert [m["index"] for m in data["members"]] == [1, 2, 3, 4]
    assert committee.threshold == 3 and committee.public_share(2) == committee.members[1].public_share


def _data(committee: Committee) -> dict:
    return committee.to_dict()


def _error(data: dict) -> str:
    with pytest.raises(CommitteeError) as info:
        Committee.from_dict(data)
    return str(info.value)


def test_bad_public_share_names_the_field(tmp_path: Path, dealt) -> None:
    data = _data(dealt[0])
    data["members"][2]["public_share"] = OUTSIDE_G2
    path = tmp_path / "bad.toml"
    import tomli_w

    path.write_text(tomli_w.dumps(data))
    with pytest.raises(CommitteeError) as info:
        load_committee(path)
    assert "members[2].public_share: not a valid G2 point (not in the subgroup)" in str(info.value)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (lambda d: d.update(group_key="0x" + "00" * 128), "group_key: not a valid G2 point (the point at infinity)"),
        (lambda d: d.update(group_key="0x1234"), "group_key: not a valid G2 point (wrong length"),
        (lambda d: d["members"][0].update(public_share=d["members"][0]["public_share"][:-1] + "0"),
         "members[0].public_share: not a valid G2 point"),
        (lambda d: d.update(n=5), "members: n = 5 but 4 members are listed"),
        (lambda d: d.update(t=5), "t: threshold 5 exceeds n = 4"),
        (lambda d: d.update(t=0), "t: Input should be greater than or equal to 1"),
        (lambda d: d.update(epoch=2**32), "epoch: Input should be less than or equal to 4294967295"),
        (lambda d: d["members"][3].update(index=2), "members[3].index: 2 is duplicated"),
        (lambda d: d["members"][1].pop("endpoint"), "members[1].endpoint: Field required"),
        (lambda d: d.update(group_key=encode_g2(G2_GENERATOR).hex()), "group_key: the public shares do not interpolate"),
    ],
)
def test_validation_errors_name_the_field(dealt, mutate, fragment: str) -> None:
    data = _data(dealt[0])
    mutate(data)
    assert fragment in _error(data)


def test_shares_from_another_deal_are_caught(dealt) -> None:
    other, _ = deal(4, 3, rng=random.Random(99), backend="zksnake")
    data = _data(dealt[0])
    data["members"][3]["public_share"] = other.to_dict()["members"][3]["public_share"]
    assert "members[3].public_share: the public shares do not interpolate" in _error(data)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(CommitteeError, match="cannot read"):
        load_committee(tmp_path / "missing.toml")
    (tmp_path / "broken.toml").write_text("epoch = = 1")
    with pytest.raises(CommitteeError, match="not valid toml"):
        load_committee(tmp_path / "broken.toml")


def test_key_share(dealt) -> None:
    committee, shares = dealt
    share = shares[1]
    assert "scalar=<hidden>" in repr(share) and str(share.scalar) not in repr(share)
    assert KeyShare.from_bytes(share.index, share.epoch, share.to_bytes()) == share
    assert share.public_share("zksnake") == committee.public_share(share.index)
    with pytest.raises(CommitteeError):
        KeyShare(index=1, scalar=0, epoch=1)
