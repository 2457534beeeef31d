"""Joint-Feldman DKG over real HTTP: n participants, each its own aiohttp server on a free port."""

import asyncio
import copy
import functools
import socket
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from attest.backend import available_backends
from attest.bls import lagrange_at, verify
from attest.bn254 import R
from attest.committee import Committee
from attest.dealer import KeygenError
from attest.dkg import (
    ROUND_COMPLAINTS,
    ROUND_DEAL,
    Conduct,
    DKGConfig,
    DKGError,
    DKGParticipant,
    DKGResult,
    Participant,
    identity_public_bytes,
    load_dkg_config,
    open_share,
    seal_share,
    x25519_public_bytes,
)
from attest.dkg import transport
from attest.dkg.wire import ROUND_HELLO
from attest.threshold import combine_signatures, partial_sign
from relay.envelope import message_digest
from tests.support.waiting import wait_for

DIGEST = message_digest(1, bytes(range(32)))


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


def make_config(n: int = 4, t: int = 3, start_timeout: float = 10.0, round_timeout: float = 10.0,
                identities: dict[int, Ed25519PrivateKey] | None = None) -> tuple[DKGConfig, dict[int, socket.socket]]:
    socks = {i: _listening_socket() for i in range(1, n + 1)}
    participants = tuple(
        Participant(i, f"http://127.0.0.1:{s.getsockname()[1]}", f"http://127.0.0.1:{7100 + i}",
                    None if identities is None else identity_public_bytes(identities[i]))
        for i, s in socks.items()
    )
    config = DKGConfig(1, n, t, participants, session="test", start_timeout=start_timeout,
                       round_timeout=round_timeout, request_timeout=2.0)
    return config, socks


async def run_dkg(config: DKGConfig, socks: dict[int, socket.socket], *, behaviour: dict[int, Callable[..., DKGParticipant]] | None = None,
                  down: set[int] = frozenset(), backend: str | None = None,
                  identities: dict[int, Ed25519PrivateKey] | None = None,
                  hello_deadline_once_met: set[int] | None = None) -> dict[int, DKGResult | Exception]:
    """`hello_deadline_once_met`: the hello round's deadline passes as soon as these participants
    have read each other's hello (and not before, however slow the machine): the participants'
    clock jumps past it then. Only for runs where they are still waiting in the hello round for a
    peer at that moment (down or silent): a jump during a later round would cut its deadline short."""
    behaviour = behaviour or {}
    identities = identities or {}
    for i in down:
        socks[i].close()  # nobody listens there: connection refused, as for a crashed machine
    indices = [i for i in socks if i not in down]
    participants = [behaviour.get(i, DKGParticipant)(config, i, socks[i], backend, identities.get(i))
                    for i in indices]
    clock = _Clock()
    jump = None
    if hello_deadline_once_met is not None:
        transport.time = clock
        met = [p for p in participants if p.index in hello_deadline_once_met]

        def all_met() -> bool:
            return all(hello_deadline_once_met - {p.index} <= p._fetched_by.get(ROUND_HELLO, set()) for p in met)

        async def pass_deadline() -> None:
            await wait_for(all_met, timeout=120, what=f"participants {sorted(hello_deadline_once_met)} reading each "
                                                     "other's hello")
            clock.offset += config.start_timeout

        jump = asyncio.create_task(pass_deadline())
    try:
        results = await asyncio.gather(*(p.run() for p in participants), return_exceptions=True)
    finally:
        transport.time = time
        if jump is not None:
            jump.cancel()
    return dict(zip(indices, results))


class _Clock:
    """attest.dkg.transport's `time`: the real monotonic clock moved forward by `offset` seconds."""

    def __init__(self) -> None:
        self.offset = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.offset


def assert_signs(committee: Committee, results: dict[int, DKGResult], signers: list[int]) -> None:
    """t partial signatures σ_i = x_i·H(digest) combine into a signature valid under the group key."""
    partials = [partial_sign(results[i].share, DIGEST) for i in signers]
    signature = combine_signatures(partials)
    assert verify(committee.group_key, DIGEST, signature)  # one 2-pairing check


def honest_agree(results: dict[int, Any], honest: list[int]) -> Committee:
    for i in honest:
        assert isinstance(results[i], DKGResult), f"participant {i} failed: {results[i]!r}"
    committees = {results[i].committee.dumps_toml() for i in honest}
    assert len(committees) == 1, "honest participants computed different committees"
    assert len({results[i].transcript_hash for i in honest}) == 1
    committee = results[honest[0]].committee
    for i in honest:  # each participant's secret share matches its public share
        assert results[i].share.public_share() == committee.public_share(i)
    return committee


@pytest.mark.parametrize("backend", available_backends())
async def test_honest_dkg_gives_everyone_the_same_committee_that_signs(backend: str) -> None:
    config, socks = make_config()
    results = await run_dkg(config, socks, backend=backend)
    committee = honest_agree(results, [1, 2, 3, 4])
    assert (committee.epoch, committee.n, committee.t) == (1, 4, 3)
    assert [m.endpoint for m in committee.members] == [f"http://127.0.0.1:{7100 + i}" for i in range(1, 5)]
    assert all(r.qual == [1, 2, 3, 4] and r.excluded == {} for r in results.values())
    assert all(r.confirmed_by == [1, 2, 3, 4] for r in results.values())
    assert_signs(committee, results, [1, 3, 4])
    # No participant ever held the group secret, yet t shares determine it: the shares of two
    # different t-subsets interpolate to the same secret.
    secrets = [sum(lam * results[i].share.scalar for lam, i in zip(lagrange_at(sub), sub)) % R
               for sub in ([1, 2, 3], [2, 3, 4])]
    assert secrets[0] == secrets[1]


class CheatsParticipant2(Conduct):
    """Deals participant 2 a share that is off by one: its commitments do not match."""

    def outgoing_share(self, recipient: int, share: int) -> int:
        return (share + 1) % R if recipient == 2 else share


class RefusesToReveal(CheatsParticipant2):
    def reveal(self, complainer: int, share: int) -> int | None:
        return None


class RevealsBadShare(CheatsParticipant2):
    def reveal(self, complainer: int, share: int) -> int | None:
        return (share + 1) % R


class RevealsTrueShare(CheatsParticipant2):
    pass  # the default reveal publishes the true share


def dealer(conduct: Conduct) -> Callable[..., DKGParticipant]:
    """A participant that deals and answers complaints by `conduct`."""
    return functools.partial(DKGParticipant, conduct=conduct)


@pytest.mark.parametrize("cheater, reason", [
    (RefusesToReveal, "did not answer the complaint of participant 2"),
    (RevealsBadShare, "revealed a share for participant 2 that does not match its commitments"),
])
async def test_bad_dealer_is_disqualified_and_the_others_agree(cheater: type, reason: str) -> None:
    config, socks = make_config()
    results = await run_dkg(config, socks, behaviour={4: dealer(cheater())})
    committee = honest_agree(results, [1, 2, 3])
    for i in (1, 2, 3):
        assert results[i].qual == [1, 2, 3]
        assert results[i].excluded == {4: reason}
    # The cheater sees the same transcript and learns that it was thrown out.
    assert isinstance(results[4], DKGError) and "was itself disqualified" in str(results[4])
    # The group key is made of the honest dealers' contributions only, and signs.
    assert_signs(committee, results, [1, 2, 3])


async def test_complaint_answered_with_the_true_share_is_dismissed() -> None:
    config, socks = make_config()
    results = await run_dkg(config, socks, behaviour={4: dealer(RevealsTrueShare())})
    committee = honest_agree(results, [1, 2, 3, 4])
    assert all(r.qual == [1, 2, 3, 4] and r.excluded == {} for r in results.values())
    # Participant 2 uses the publicly revealed share: its key works in a signature.
    assert_signs(committee, results, [2, 3, 4])


async def test_one_participant_down_the_others_finish_without_it() -> None:
    config, socks = make_config(start_timeout=60)
    results = await run_dkg(config, socks, down={3}, hello_deadline_once_met={1, 2, 4})
    committee = honest_agree(results, [1, 2, 4])
    for i in (1, 2, 4):
        assert results[i].qual == [1, 2, 4]
        assert results[i].excluded == {3: "missed the hello round deadline"}
    assert committee.n == 4  # member 3 keeps its index and public share, but holds no key
    assert_signs(committee, results, [1, 2, 4])


async def _garbage(request: web.Request) -> web.Response:
    return web.Response(text='{"round": 0, "oops')


@pytest.mark.parametrize("mode, reason", [
    ("garbage", "sent a malformed hello message"),
    ("silent", "missed the hello round deadline"),  # accepts connections, never answers
])
async def test_a_peer_that_answers_garbage_or_nothing_is_excluded(mode: str, reason: str) -> None:
    config, socks = make_config(start_timeout=60)
    runner = None
    if mode == "garbage":
        app = web.Application()
        app.router.add_get("/{tail:.*}", _garbage)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.SockSite(runner, socks[4]).start()
    try:
        # A silent peer is excluded at the hello deadline; a garbage one at once (no deadline to pass:
        # the honest participants must not have their later rounds' deadlines cut short).
        results = await run_dkg(config, {i: socks[i] for i in (1, 2, 3)},
                                hello_deadline_once_met={1, 2, 3} if mode == "silent" else None)
    finally:
        if runner is not None:
            await runner.cleanup()
        socks[4].close()
    committee = honest_agree(results, [1, 2, 3])
    assert all(results[i].excluded == {4: reason} for i in (1, 2, 3))
    assert_signs(committee, results, [1, 2, 3])


async def test_fewer_than_t_participants_fail_with_a_clear_error() -> None:
    config, socks = make_config(start_timeout=60)
    results = await run_dkg(config, socks, down={2, 3}, hello_deadline_once_met={1, 4})
    for i in (1, 4):
        assert isinstance(results[i], DKGError)
        assert "only 2 of 4 participants are still qualified after the hello round (threshold t=3)" in str(results[i])
        assert "participant 2 missed the hello round deadline" in str(results[i])


class SendsTooFewCommitments(DKGParticipant):
    def _publish(self, rnd: int, body: dict[str, Any]) -> dict[str, Any]:
        if rnd == ROUND_DEAL:
            body = {**body, "commitments": body["commitments"][:-1]}  # a degree t-2 "polynomial"
        return super()._publish(rnd, body)


async def test_malformed_dealing_is_disqualified_by_everyone() -> None:
    config, socks = make_config()
    results = await run_dkg(config, socks, behaviour={1: SendsTooFewCommitments})
    committee = honest_agree(results, [2, 3, 4])
    for i in (2, 3, 4):
        assert results[i].excluded == {1: "sent a malformed dealing (expected 3 commitments)"}
    assert isinstance(results[1], DKGError) and "was itself disqualified after the deal round" in str(results[1])
    assert_signs(committee, results, [2, 3, 4])


class Equivocator(DKGParticipant):
    """Shows participant 1 a complaint against participant 2 that nobody else sees."""

    async def _serve(self, request: web.Request) -> web.Response:
        if request.match_info["round"] == str(ROUND_COMPLAINTS) and request.query.get("from") == "1" \
                and ROUND_COMPLAINTS in self._published:
            forged = copy.deepcopy(self._published[ROUND_COMPLAINTS])
            forged["body"]["complaints"] = [2]
            return web.json_response(forged)
        return await super()._serve(request)


async def test_equivocation_is_detected_by_the_transcript_comparison() -> None:
    config, socks = make_config()
    results = await run_dkg(config, socks, behaviour={4: Equivocator})
    for i in (1, 2, 3):
        assert isinstance(results[i], DKGError), f"participant {i} accepted an inconsistent transcript"
        assert "received different DKG messages" in str(results[i])
        assert "[4]" in str(results[i])


def test_shares_are_sealed_to_their_recipient() -> None:
    session = b"\x11" * 32
    recipient = X25519PrivateKey.generate()
    box = seal_share(session, 3, 2, x25519_public_bytes(recipient), 12345)
    assert open_share(session, 3, 2, recipient, box) == 12345
    assert "12345" not in str(box) and format(12345, "x") not in box["ciphertext"][-96:-32]
    with pytest.raises(ValueError, match="does not decrypt"):
        open_share(session, 3, 2, X25519PrivateKey.generate(), box)  # someone else
    with pytest.raises(ValueError, match="does not decrypt"):
        open_share(session, 4, 2, recipient, box)  # replayed as another dealer's share
    with pytest.raises(ValueError, match="does not decrypt"):
        open_share(b"\x22" * 32, 3, 2, recipient, box)  # replayed into another session


def test_config_file_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "dkg.toml"
    path.write_text("""
epoch = 5
n = 3
t = 2
session = "rotation-5"
round_timeout = 12
[[participants]]
index = 1
endpoint = "http://127.0.0.1:7301"
attester_endpoint = "http://10.0.0.1:7101"
[[participants]]
index = 2
endpoint = "http://127.0.0.1:7302"
[[participants]]
index = 3
endpoint = "http://127.0.0.1:7303"
""")
    config = load_dkg_config(path)
    assert (config.epoch, config.n, config.t, config.round_timeout) == (5, 3, 2, 12.0)
    assert config.participant(1).attester_endpoint == "http://10.0.0.1:7101"
    assert config.participant(2).attester_endpoint == "http://127.0.0.1:7302"
    other = DKGConfig.from_dict({**config.to_dict(), "session": "rotation-6"})
    assert other.session_id != config.session_id

    broken = path.read_text().replace("index = 3", "index = 2")
    path.write_text(broken)
    with pytest.raises(KeygenError, match=r"indices 1..3 exactly once"):
        load_dkg_config(path)
    path.write_text("epoch = 1\nn = 2\nt = 3\nparticipants = []\n")
    with pytest.raises(KeygenError, match="1 <= t <= n"):
        load_dkg_config(path)
    path.write_text("epoch = 1\nn = 1\nt = 1\n")
    with pytest.raises(KeygenError, match="missing field 'participants'"):
        load_dkg_config(path)


async def test_session_mismatch_is_reported_to_the_peer() -> None:
    config, socks = make_config(n=2, t=2, start_timeout=1.0)
    mismatched = DKGConfig.from_dict({**config.to_dict(), "session": "other"})
    results = await asyncio.gather(
        DKGParticipant(config, 1, socks[1]).run(),
        DKGParticipant(mismatched, 2, socks[2]).run(),
        return_exceptions=True,
    )
    assert all(isinstance(r, DKGError) for r in results)
    # Each side is told why it could not hear the other: the peer runs another session.
    assert "must use the same dkg config" in str(results[0])


async def test_signed_messages_with_pinned_identity_keys() -> None:
    identities = {i: Ed25519PrivateKey.generate() for i in range(1, 5)}
    config, socks = make_config(identities=identities)
    assert config.authenticated
    results = await run_dkg(config, socks, identities=identities)
    committee = honest_agree(results, [1, 2, 3, 4])
    assert_signs(committee, results, [1, 2, 4])


class Impostor(DKGParticipant):
    """Holds participant 4's endpoint but not its identity key."""

    def _sign(self, data: bytes) -> bytes:
        return Ed25519PrivateKey.generate().sign(data)


async def test_a_message_not_signed_by_the_pinned_key_excludes_its_sender() -> None:
    identities = {i: Ed25519PrivateKey.generate() for i in range(1, 5)}
    config, socks = make_config(identities=identities)
    results = await run_dkg(config, socks, identities=identities, behaviour={4: Impostor})
    committee = honest_agree(results, [1, 2, 3])
    for i in (1, 2, 3):
        assert results[i].excluded == {4: "served a hello message not signed by its identity key"}
    assert_signs(committee, results, [1, 2, 3])


def test_identity_keys_are_all_or_nothing_and_must_match() -> None:
    identities = {i: Ed25519PrivateKey.generate() for i in range(1, 4)}
    config, socks = make_config(n=3, t=2, identities=identities)
    data = config.to_dict()
    del data["participants"][1]["identity_key"]
    with pytest.raises(KeygenError, match="identity_key for every participant or for none"):
        DKGConfig.from_dict(data)
    with pytest.raises(DKGError, match="give participant 1 its identity key"):
        DKGParticipant(config, 1, socks[1])
    with pytest.raises(DKGError, match="is not the one the DKG config lists"):
        DKGParticipant(config, 1, socks[1], identity=identities[2])
    for sock in socks.values():
        sock.close()
