"""The DKG protocol's pure transitions (attest.dkg.protocol), with every message routed in memory:
no sockets, no clock. The same rules as over HTTP (tests/unit/test_dkg.py), one transition at a time."""

from __future__ import annotations

import copy
from typing import Any, Callable

import pytest

from attest.bn254 import R
from attest.dkg import Conduct, DKGConfig, DKGError, DKGResult, Participant
from attest.dkg.protocol import (
    HONEST,
    AwaitingComplaints,
    AwaitingConfirmations,
    AwaitingDeals,
    AwaitingJustifications,
    Done,
    start,
)
from attest.dkg.wire import ROUND_COMPLAINTS, ROUND_CONFIRM, ROUND_DEAL, ROUND_HELLO, ROUND_JUSTIFY, envelope

View = Callable[[int, int, int, Any], Any]  # (receiver, sender, round, message) -> what the receiver gets


def config(n: int = 4, t: int = 3) -> DKGConfig:
    participants = tuple(Participant(i, f"http://127.0.0.1:{7300 + i}", f"http://127.0.0.1:{7100 + i}")
                         for i in range(1, n + 1))
    return DKGConfig(1, n, t, participants, session="pure")


class Cheats2(Conduct):
    """Deals participant 2 a share off by one."""

    def outgoing_share(self, recipient: int, share: int) -> int:
        return (share + 1) % R if recipient == 2 else share


class Cheats2AndHides(Cheats2):
    def reveal(self, complainer: int, share: int) -> int | None:
        return None


class Cheats2AndLies(Cheats2):
    def reveal(self, complainer: int, share: int) -> int | None:
        return (share + 1) % R


class Run:
    """Drives every participant's transitions in lockstep, routing messages in memory."""

    def __init__(self, cfg: DKGConfig, conducts: dict[int, Conduct] | None = None, view: View | None = None,
                 silent: set[int] = frozenset()) -> None:
        self.cfg = cfg
        self.view = view
        self.silent = silent  # never publish anything: a crashed machine
        self.states: dict[int, Any] = {}
        self.sends: dict[int, Any] = {}
        self.sent: dict[int, dict[int, dict]] = {}  # participant -> round -> body
        self.notes: dict[int, list] = {}
        self.outcomes: dict[int, DKGResult | DKGError] = {}
        for p in cfg.participants:
            if p.index not in silent:
                state, send = start(cfg, p.index, conduct=(conducts or {}).get(p.index, HONEST))
                self.states[p.index], self.sends[p.index] = state, send

    def round(self) -> None:
        session = self.cfg.session_id
        published = {i: envelope(session, s.round, i, s.body) for i, s in self.sends.items()}
        for i, s in self.sends.items():
            self.sent.setdefault(i, {})[s.round] = s.body
        following = {}
        for i, send in self.sends.items():
            messages = {}
            for peer in send.peers:
                message = published.get(peer) if self.sends.get(peer) and self.sends[peer].round == send.round else None
                if self.view is not None and peer != i:
                    message = self.view(i, peer, send.round, copy.deepcopy(message))
                messages[peer] = message
            try:
                step = self.states[i].receive(messages)
            except DKGError as exc:
                self.outcomes[i] = exc
                continue
            self.notes.setdefault(i, []).extend(step.notes)
            if isinstance(step, Done):
                self.outcomes[i] = step.result
            else:
                self.states[i], following[i] = step.state, step.send
        self.sends = following

    def finish(self) -> dict[int, DKGResult | DKGError]:
        while self.sends:
            self.round()
        return self.outcomes


def agreed(outcomes: dict[int, Any], honest: list[int]) -> DKGResult:
    for i in honest:
        assert isinstance(outcomes[i], DKGResult), f"participant {i}: {outcomes[i]!r}"
    assert len({outcomes[i].committee.dumps_toml() for i in honest}) == 1
    assert len({outcomes[i].transcript_hash for i in honest}) == 1
    for i in honest:
        assert outcomes[i].share.public_share() == outcomes[i].committee.public_share(i)
    return outcomes[honest[0]]


def test_the_states_follow_the_rounds_and_an_honest_run_agrees() -> None:
    run = Run(config())
    assert {s.round for s in run.sends.values()} == {ROUND_HELLO}
    for state_type, rnd in [(AwaitingDeals, ROUND_DEAL), (AwaitingComplaints, ROUND_COMPLAINTS),
                            (AwaitingJustifications, ROUND_JUSTIFY), (AwaitingConfirmations, ROUND_CONFIRM)]:
        run.round()
        assert all(isinstance(s, state_type) for s in run.states.values())
        assert {s.round for s in run.sends.values()} == {rnd}
    assert all(run.sent[i][ROUND_COMPLAINTS] == {"complaints": []} for i in range(1, 5))
    result = agreed(run.finish(), [1, 2, 3, 4])
    assert result.qual == [1, 2, 3, 4] and result.excluded == {} and result.confirmed_by == [1, 2, 3, 4]


def test_a_transition_leaves_the_state_it_came_from_untouched() -> None:
    cfg = config()
    state, send = start(cfg, 1)
    hello = {p.index: None for p in cfg.participants}
    hello[1] = envelope(cfg.session_id, ROUND_HELLO, 1, send.body)
    with pytest.raises(DKGError, match="only 1 of 4 participants are still qualified after the hello round"):
        state.receive(hello, {2: "ClientConnectorError"})
    assert state.excluded == {} and all(row == (None,) * 4 for row in state.transcript.values())


def test_missed_deadlines_below_threshold_fail_with_the_transport_errors() -> None:
    cfg = config()
    state, send = start(cfg, 1)
    messages = {1: envelope(cfg.session_id, ROUND_HELLO, 1, send.body), 2: None, 3: None, 4: None}
    with pytest.raises(DKGError) as err:
        state.receive(messages, {2: "HTTP 409: another session"})
    assert "participant 2 missed the hello round deadline" in str(err.value)
    assert "(participant 2: HTTP 409: another session)" in str(err.value)


def test_a_silent_participant_is_excluded_and_the_rest_agree() -> None:
    outcomes = Run(config(), silent={3}).finish()
    result = agreed(outcomes, [1, 2, 4])
    assert result.qual == [1, 2, 4] and result.excluded == {3: "missed the hello round deadline"}


def test_a_bad_share_draws_a_complaint_answered_by_a_public_reveal() -> None:
    run = Run(config(), conducts={4: Cheats2()})
    run.round()  # hello
    run.round()  # deal: participant 2's share from 4 does not match 4's commitments
    assert run.sends[2].body == {"complaints": [4]}
    assert ("warning", "dkg.complaint", {"against": 4, "reason": "the share does not match the dealer's commitments"}) \
        in run.notes[2]
    assert all(run.sends[i].body == {"complaints": []} for i in (1, 3, 4))
    run.round()  # complaints: 4 must answer participant 2 in public
    assert set(run.sends[4].body["reveals"]) == {"2"}
    assert all(run.sends[i].body == {"reveals": {}} for i in (1, 2, 3))
    run.round()  # justify: the true share matches the commitments, the complaint is dismissed
    assert ("info", "dkg.complaint_dismissed", {"dealer": 4, "complainer": 2}) in run.notes[1]
    result = agreed(run.finish(), [1, 2, 3, 4])
    assert result.qual == [1, 2, 3, 4]  # and participant 2 uses the revealed share (checked by agreed())


@pytest.mark.parametrize("conduct, reason", [
    (Cheats2AndHides(), "did not answer the complaint of participant 2"),
    (Cheats2AndLies(), "revealed a share for participant 2 that does not match its commitments"),
])
def test_a_dealer_that_fails_its_complaint_is_disqualified(conduct: Conduct, reason: str) -> None:
    outcomes = Run(config(), conducts={4: conduct}).finish()
    result = agreed(outcomes, [1, 2, 3])
    assert result.qual == [1, 2, 3] and result.excluded == {4: reason}
    assert isinstance(outcomes[4], DKGError) and "was itself disqualified after the justify round" in str(outcomes[4])


def test_a_malformed_dealing_disqualifies_its_dealer() -> None:
    def short(receiver: int, sender: int, rnd: int, message: Any) -> Any:
        if sender == 1 and rnd == ROUND_DEAL:
            message["body"]["commitments"] = message["body"]["commitments"][:-1]
        return message

    outcomes = Run(config(), view=short).finish()
    result = agreed(outcomes, [2, 3, 4])
    assert result.excluded == {1: "sent a malformed dealing (expected 3 commitments)"}


def test_equivocation_aborts_at_the_transcript_comparison() -> None:
    def equivocate(receiver: int, sender: int, rnd: int, message: Any) -> Any:
        if sender == 4 and receiver == 1 and rnd == ROUND_COMPLAINTS:
            message["body"]["complaints"] = [2]  # shown to participant 1 only
        return message

    outcomes = Run(config(), view=equivocate).finish()
    for i in (1, 2, 3):
        assert isinstance(outcomes[i], DKGError), f"participant {i} accepted an inconsistent transcript"
        assert "received different DKG messages" in str(outcomes[i]) and "[4]" in str(outcomes[i])


def test_a_confirmation_with_another_transcript_aborts() -> None:
    run = Run(config())
    for _ in range(4):
        run.round()
    state: AwaitingConfirmations = run.states[1]
    assert isinstance(state, AwaitingConfirmations)
    session = run.cfg.session_id
    confirms = {i: envelope(session, ROUND_CONFIRM, i, s.body) for i, s in run.sends.items()}
    assert isinstance(state.receive(confirms), Done)
    forged = copy.deepcopy(confirms)
    forged[3]["body"]["transcript"] = "00" * 32
    forged[3]["body"]["senders"]["2"] = "ff" * 32
    with pytest.raises(DKGError, match=r"participant 3 received different DKG messages than participant 1 "
                                       r"from participant\(s\) \[2\]"):
        state.receive(forged)
    missing = {**confirms, 2: None, 3: None}  # only 1 and 4 confirm: fewer than t
    with pytest.raises(DKGError, match=r"only participants \[1, 4\] confirmed the transcript"):
        state.receive(missing)


def test_start_checks_its_inputs() -> None:
    with pytest.raises(DKGError, match="t=3 coefficients"):
        start(config(), 1, coefficients=[1, 2])
    state, send = start(config(), 2, coefficients=[5, 6, 7])
    assert state.coefficients == (5, 6, 7) and send.peers == (1, 2, 3, 4) and set(send.body) == {"x25519"}
