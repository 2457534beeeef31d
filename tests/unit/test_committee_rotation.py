"""What an attester checks before it signs a COMMITTEE_ROTATION (relay/rotation.py), over HTTP too,
and how `relay committee rotate` rewrites the config's [committee]. The chains' side and the whole
command on real processes: tests/e2e/test_committee_rotate.py."""

from __future__ import annotations

import tomllib
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp import web

import attest
from relay.cli.committee import _update_config
from relay.envelope import Envelope
from relay.ports import free_port
from relay.protocol import MessageKind
from relay.rotation import (MAX_GRACE_S, RotationError, check_rotation, collect_rotation, rotation_envelope,
                            rotation_routes)
from tests.support.committee import deal

DOMAINS = {31337, 13375}
VERIFIER = bytes(12) + bytes.fromhex("11" * 20)


@pytest.fixture(scope="module")
def committees():
    old = deal(n=3, t=2, epoch=1)
    new = deal(n=3, t=2, epoch=2)
    return old, new


def test_the_approved_rotation_passes(committees) -> None:
    old, new = committees
    rotation = check_rotation(rotation_envelope(31337, VERIFIER, new.committee, 60), 1, new.committee, DOMAINS)
    assert (rotation.new_epoch, rotation.group_key, rotation.grace_seconds) == (2, new.committee.group_key, 60)


def _bent(envelope: Envelope, **fields) -> Envelope:
    return replace(envelope, **fields)


@pytest.mark.parametrize("bend, reason", [
    (lambda e, o, n: (e, None), "approves no next committee"),
    (lambda e, o, n: (_bent(e, kind=MessageKind.DATA), n), "not a COMMITTEE_ROTATION"),
    (lambda e, o, n: (_bent(e, src_domain=31337), n), "source domain 0 and sender 0"),
    (lambda e, o, n: (_bent(e, src_sender=b"\x01" * 32), n), "source domain 0 and sender 0"),
    (lambda e, o, n: (_bent(e, dst_domain=99), n), "destination domain 99 is none of this attester's chains"),
    (lambda e, o, n: (rotation_envelope(31337, VERIFIER, deal(n=3, t=2, epoch=2).committee, 60), n),
     "names another committee"),
    (lambda e, o, n: (rotation_envelope(31337, VERIFIER, deal(n=3, t=2, epoch=3).committee, 60),
                      deal(n=3, t=2, epoch=3).committee), "the rotation names epoch 3 \\(it must be 2\\)"),
    (lambda e, o, n: (_bent(e, payload=e.payload[:-1]), n), "does not decode"),
])
def test_an_attester_refuses_what_its_operator_did_not_approve(committees, bend, reason) -> None:
    old, new = committees
    envelope, approved = bend(rotation_envelope(31337, VERIFIER, new.committee, 60), old.committee, new.committee)
    with pytest.raises(RotationError, match=reason):
        check_rotation(envelope, 1, approved, DOMAINS)


def test_a_grace_other_than_the_approved_one_is_refused(committees) -> None:
    _, new = committees
    assert check_rotation(rotation_envelope(31337, VERIFIER, new.committee, 3600), 1, new.committee, DOMAINS, 3600)
    with pytest.raises(RotationError, match=r"grace of 2592000s: this attester approves 3600s .*--grace 3600"):
        check_rotation(rotation_envelope(31337, VERIFIER, new.committee, MAX_GRACE_S), 1, new.committee, DOMAINS, 3600)


def test_a_grace_longer_than_a_month_is_refused(committees) -> None:
    _, new = committees
    with pytest.raises(RotationError, match="at most 30 days"):
        rotation_envelope(31337, VERIFIER, new.committee, MAX_GRACE_S + 1)


async def test_over_http_the_approved_rotation_is_signed_and_others_refused_with_the_reason(committees) -> None:
    old, new = committees
    runners, endpoints = [], []
    for share in old.shares:
        app = web.Application()
        app.add_routes(rotation_routes(share.index, 1, lambda d, s=share: attest.partial_sign(s, d).signature,
                                       new.committee, DOMAINS))
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        endpoints.append(f"http://127.0.0.1:{port}")
    committee = old.committee.model_copy(update={"members": [
        m.model_copy(update={"endpoint": url}) for m, url in zip(old.committee.members, endpoints)]})
    try:
        envelope = rotation_envelope(13375, VERIFIER, new.committee, 60)
        signed = await collect_rotation(committee, envelope)
        assert committee.verify(envelope.digest(1), signed.signature) and len(signed.signers) == 2
        rogue = rotation_envelope(13375, VERIFIER, deal(n=3, t=2, epoch=2).committee, 60)
        with pytest.raises(RotationError, match="only 0 of the 2 signatures.*member 1: refused: the rotation names"):
            await collect_rotation(committee, rogue)
    finally:
        for runner in runners:
            await runner.cleanup()


def test_the_config_gets_the_new_committee_and_keeps_the_old_as_previous(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[chains.evm]\nkind = "evm"\ndomain = 1\nchain_id = 1\nrpc_urls = ["http://127.0.0.1:9"]\n\n'
                    '[committee]\nfile = "committee.toml"\nshare = "keys/share-{index}.json"\nnext = "committee-2.toml"\nnext_grace_s = 60\n'
                    '\n[relayer]\nlisten = "127.0.0.1:7311"\n')
    _update_config(path, tmp_path / "committee-2.toml", "keys/share-e2-{index}.json", 1_700_000_000)
    data = tomllib.loads(path.read_text())
    assert data["committee"] == {"file": "committee-2.toml", "previous": "committee.toml",
                                 "previous_valid_until": 1_700_000_000, "share": "keys/share-e2-{index}.json"}
    assert data["relayer"] == {"listen": "127.0.0.1:7311"}


async def test_the_command_refuses_a_committee_that_is_not_the_next_epoch_and_unknown_chains(tmp_path: Path, committees) -> None:
    from relay.cli.committee import rotate
    from relay.errors import ConfigError

    old, new = committees
    old.committee.save(tmp_path / "committee.toml")
    new.committee.save(tmp_path / "committee-2.toml")
    deal(n=3, t=2, epoch=5).committee.save(tmp_path / "committee-5.toml")
    path = tmp_path / "config.toml"
    path.write_text('[chains.evm]\nkind = "evm"\ndomain = 1\nchain_id = 1\nrpc_urls = ["http://127.0.0.1:9"]\n\n'
                    '[committee]\nfile = "committee.toml"\n')
    with pytest.raises(ConfigError, match="committee-5.toml is epoch 5; the config's committee .* is epoch 1, so the "
                                          "next one must be epoch 2"):
        await rotate(path, tmp_path / "committee-5.toml", None, 60)
    with pytest.raises(ConfigError, match="--chain solana: not under \\[chains\\]; configured: evm"):
        await rotate(path, tmp_path / "committee-2.toml", None, 60, ["solana"])
    assert "next" not in path.read_text() and "previous" not in path.read_text()  # nothing written


class _Verifier:
    """A chain's verifier: holds a committee, applies a rotation (checked like the chains do)."""

    def __init__(self, committee, receiver: bytes, now: int) -> None:
        from relay.rotation import ChainCommittee

        self.state_now = ChainCommittee(committee.epoch, committee.n, committee.t, committee.group_key, None, 0, now)
        self.receiver = receiver
        self.rotations: list = []
        self.closed = False

    async def state(self):
        return self.state_now

    async def rotate(self, envelope, epoch, signature):
        from relay.payloads import CommitteeRotation

        rotation = CommitteeRotation.decode(envelope.payload)
        assert envelope.dst_receiver == self.receiver and epoch == self.state_now.epoch
        self.rotations.append(envelope)
        self.state_now = replace(self.state_now, epoch=rotation.new_epoch, n=rotation.n, t=rotation.t,
                                 group_key=rotation.group_key, previous_epoch=epoch,
                                 previous_valid_until=self.state_now.chain_time + rotation.grace_seconds)
        return f"tx-{len(self.rotations)}"

    async def close(self):
        self.closed = True


async def test_a_rotation_stopped_half_way_is_finished_by_running_it_again(tmp_path: Path, committees, monkeypatch,
                                                                           capsys) -> None:
    import relay.cli.committee as command
    from relay.rotation import SignedRotation

    old, new = committees
    old.committee.save(tmp_path / "committee.toml")
    new.committee.save(tmp_path / "committee-2.toml")
    path = tmp_path / "config.toml"
    path.write_text('[chains.evm]\nkind = "evm"\ndomain = 1\nchain_id = 1\nrpc_urls = ["http://127.0.0.1:9"]\n\n'
                    '[chains.sol]\nkind = "solana"\ndomain = 5\nrpc_urls = ["http://127.0.0.1:9"]\n\n'
                    '[committee]\nfile = "committee.toml"\n')
    verifiers = {"evm": _Verifier(old.committee, b"\x01" * 32, 1_000), "sol": _Verifier(old.committee, b"\x02" * 32, 900)}

    class _Driver:
        def __init__(self, name: str) -> None:
            self.name = name

        def rotation(self):
            return verifiers[self.name]

    async def sign(committee, envelope, timeout: float = 10.0):  # the attesters, as collect_rotation combines them
        digest = envelope.digest(committee.epoch)
        partials = [attest.partial_sign(s, digest) for s in old.shares[:committee.t]]
        return SignedRotation(envelope, committee.epoch, attest.combine(committee, digest, partials).signature, (1, 2))

    monkeypatch.setattr(command, "driver_for", lambda name, chain: _Driver(name))
    monkeypatch.setattr(command, "collect_rotation", sign)
    assert await command.rotate(path, tmp_path / "committee-2.toml", None, 60, ["evm"]) == 0
    assert "not rotated yet: sol" in capsys.readouterr().out
    assert "previous" not in path.read_text()  # the config names the old committee until every chain is rotated
    assert await command.rotate(path, tmp_path / "committee-2.toml", "keys/e2-{index}.json", 60) == 0
    out = capsys.readouterr().out
    assert "evm: already at epoch 2; epoch 1 accepted until 1060" in out and "sol: epoch 1 -> 2 (tx tx-1" in out
    assert [len(v.rotations) for v in verifiers.values()] == [1, 1] and all(v.closed for v in verifiers.values())
    data = tomllib.loads(path.read_text())["committee"]
    assert data == {"file": "committee-2.toml", "previous": "committee.toml", "previous_valid_until": 960,
                    "share": "keys/e2-{index}.json"}  # the earliest end of the chains' grace
