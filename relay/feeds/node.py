"""FeedNode: one committee member's part in feed rounds, inside the attester process.

Per feed and round (relay/feeds/round.py): observe own sources → sign → send to the round's
leader; as leader, collect observations → build_report → send the proposal to every member →
combine t partials → verify → publish. As member, check a proposal against the signed
observations and its own view and sign at most one report per (feed, round). Everything runs in
its own tasks with bounded timeouts, so a slow source or peer never holds up the attester's
messaging work.
"""

from __future__ import annotations

import asyncio
import inspect
import secrets
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Mapping
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

import attest
from attest.bls import BATCH_WEIGHT_BITS, NEG_G2
from attest.bn254 import G2_GENERATOR, BN254Error, G2Point, decode_g1, decode_g2, hash_to_g1
from attest.committee import Committee, KeyShare
from relay.aio import wait_event
from relay.feeds.config import FeedRoundSection
from relay.errors import ConfigError
from relay.feeds.aggregate import (
    NotEnoughObservationsError,
    NotEnoughSourcesError,
    ReportRejected,
    build_report,
    check_proposal,
    observation_problem,
    own_observation,
    sign_observation,
    time_window,
)
from relay.feeds.config import FeedConfig
from relay.feeds.jetstream import PublishError, ReportPublisher, StreamSettings
from relay.feeds.multi import SignedFeedRoot
from relay.feeds.report import SignedObservation
from relay.feeds.round import (
    METRICS_PATH,
    OBSERVATIONS_PATH,
    PROPOSALS_PATH,
    ROOT_PROPOSALS_PATH,
    LeaderRound,
    MemberRound,
    ObservationMessage,
    PartialReply,
    Proposal,
    RootBatch,
    RootProposal,
    RoundMessageError,
    RoundRefused,
    leader_of,
    round_of,
    round_start_ms,
)
from relay.feeds.signed import SignedReport
from relay.feeds.sources import Source, SourceError, build_sources, gather_quotes
from relay.log import get_logger

if TYPE_CHECKING:  # annotation only: relay.config sits above the feed modules
    from relay.config import TesseraConfig

log = get_logger("feeds")

ReportCallback = Callable[[SignedReport], Awaitable[None] | None]
PUBLISH_TIMEOUT_S = 1.0
# A refusal for one of these reasons still means a real leader ran the round: no need to move on.
# (clock_skew is not one: a leader with a wrong clock is worth replacing.)
_ROUND_HANDLED = {"no_own_view", "own_observation_dropped", "out_of_tolerance", "already_signed"}


class FeedRoundMetrics:
    """Prometheus metrics of one node (one registry per node, so tests can run several)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.published = Counter("tessera_feed_rounds_published", "Signed reports this node published as leader",
                                 ["feed"], registry=self.registry)
        self.failed = Counter("tessera_feed_rounds_failed", "Rounds this node could not finish, by reason",
                              ["feed", "reason"], registry=self.registry)
        self.refused = Counter("tessera_feed_proposals_refused", "Proposals this member refused to sign, by code",
                               ["feed", "code"], registry=self.registry)
        self.signed = Counter("tessera_feed_proposals_signed", "Reports this member signed", ["feed"],
                              registry=self.registry)
        self.roots = Counter("tessera_feed_roots", "Feed roots this node asked the committee to sign as leader "
                             "(sign = root), by outcome: signed, or refused (then each report alone)", ["outcome"],
                             registry=self.registry)
        self.failovers = Counter("tessera_feed_failovers", "Observations re-sent to the next leader", ["feed"],
                                 registry=self.registry)
        self.faulty_partials = Counter("tessera_feed_faulty_partials", "Partial signatures that failed their check",
                                       ["member"], registry=self.registry)
        self.publish_errors = Counter("tessera_feed_publish_errors", "Failed publications of a signed report (by POST url, or \"nats\")", ["url"],
                                      registry=self.registry)
        self.latency = Histogram("tessera_feed_round_seconds", "Round start to signed report at the leader", ["feed"],
                                 buckets=(0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5),
                                 registry=self.registry)

    def value(self, name: str, **labels: str) -> float:
        """A counter's current value (0 when never incremented); for tests and status output."""
        return self.registry.get_sample_value(name + "_total", labels) or 0.0

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RememberingBackend:
    """The BN254 backend plus a memory of pairing checks that passed, directly or in a batch.

    On one node an observation's signature is checked on receipt, again in build_report and again
    in check_proposal, and a combined signature in attest.combine and again in SignedReport.verify;
    the answer for the same points never changes, so the repeats cost a dict lookup. Only passed
    checks are remembered: a failure is always recomputed (and named) by the caller.
    """

    def __init__(self, backend: attest.Backend | str | None = None, size: int = 4096) -> None:
        self._inner = attest.get_backend(backend)
        self._passed: OrderedDict[tuple, None] = OrderedDict()
        self._size = size

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _remember(self, key: tuple) -> None:
        self._passed[key] = None
        self._passed.move_to_end(key)
        while len(self._passed) > self._size:
            self._passed.popitem(last=False)

    def pairing_check(self, pairs) -> bool:
        key = tuple(pairs)
        if key in self._passed:
            self._passed.move_to_end(key)
            return True
        ok = self._inner.pairing_check(pairs)
        if ok:
            self._remember(key)
        return ok

    def remember_own(self, pk: G2Point, digest: bytes, signature: bytes) -> None:
        """Count this node's own fresh signature as checked: it was made with the share whose public
        share is `pk` (FeedNode.start checks they match), so verifying it again — at the leader, or
        in a proposal that carries it — could only say yes."""
        sigma = decode_g1(bytes(signature))
        h, _ = hash_to_g1(digest)
        self._remember(((sigma, NEG_G2), (h, pk)))

    def batch_check(self, items: list[tuple[G2Point, bytes, bytes]]) -> bool:
        """Check partial signatures (public share, digest, signature) under DIFFERENT keys at once:
        e(Σ r_i σ_i, −G2) · Π e(r_i H_i, PK_i) = 1 for random 128-bit r_i: one multi-pairing of
        k + 1 pairs instead of k of 2. On success each (σ_i, H_i, PK_i) check counts as passed;
        malformed items and a failed batch are left to the individual checks."""
        pending = []
        for pk, digest, signature in items:
            try:
                sigma = decode_g1(bytes(signature))
            except (BN254Error, ValueError):
                continue
            h, _ = hash_to_g1(digest)
            key = ((sigma, NEG_G2), (h, pk))
            if key not in self._passed:
                pending.append((key, sigma, h, pk))
        if len(pending) < 2:
            return True  # nothing to gain over the individual check
        weights = [secrets.randbits(BATCH_WEIGHT_BITS) | 1 for _ in pending]
        if not self._inner.weighted_pairing_check([(p[1], p[2], p[3]) for p in pending], weights, NEG_G2):
            return False
        for key, *_ in pending:
            self._remember(key)
        return True


class FeedNode:
    def __init__(
        self,
        member: int,
        committee: Committee,
        share: KeyShare,
        feeds: Mapping[str, FeedConfig],
        settings: FeedRoundSection | None = None,
        *,
        on_report: ReportCallback | None = None,
        clock: Callable[[], float] = time.time,
        backend: attest.Backend | str | None = None,
        source_options: Mapping[str, Any] | None = None,
    ) -> None:
        if share.index != member or share.epoch != committee.epoch:
            raise ConfigError(
                f"the key share is member {share.index} of epoch {share.epoch}, not member {member} of epoch "
                f"{committee.epoch}: point committee.share at this member's share file"
            )
        committee.member(member)  # a clear error when the index is not in the committee
        self.member = member
        self.committee = committee
        self.share = share
        self.feeds = dict(feeds)
        self.settings = settings or FeedRoundSection()
        self.on_report = on_report
        self.clock = clock
        self.backend = RememberingBackend(backend)
        self.metrics = FeedRoundMetrics()
        self._source_options = dict(source_options or {})
        self._sources: dict[str, dict[str, Source]] = {}
        self._members: dict[tuple[str, int], MemberRound] = {}
        self._leading: dict[tuple[str, int, int], LeaderRound] = {}
        self._roots: dict[tuple[int, int], RootBatch] = {}  # (round, attempt) -> the root being gathered
        self._tasks: set[asyncio.Task] = set()
        self._session: aiohttp.ClientSession | None = None
        self._own_pk: G2Point | None = None  # set by start() once the share is known to match it
        self._endpoints = {m.index: m.endpoint.rstrip("/") for m in committee.members}
        self.log = log.bind(member=member)
        stream = StreamSettings.from_section(self.settings)
        # Reports also go to a NATS JetStream stream that feed servers read ([feed_round] nats_urls).
        self._stream = ReportPublisher(stream, f"tessera-feed-rounds member {member}") if stream else None

    @classmethod
    def from_config(cls, config: TesseraConfig, committee: Committee, share: KeyShare, **options: Any) -> "FeedNode":
        return cls(share.index, committee, share, config.feeds, config.feed_round, **options)

    # --- lifecycle ------------------------------------------------------------------------------

    @property
    def _interval(self) -> int:
        return self.settings.interval_ms

    @property
    def _horizon_ms(self) -> int:
        # How far back a round still counts: slow sources, every failover, and some slack.
        return self._interval + self.committee.n * self.settings.leader_timeout_ms + 60_000

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def start(self) -> None:
        """Build every feed's sources and the HTTP client; bad source configs fail here, loudly."""
        if self._own_pk is None:
            own_pk = decode_g2(self.committee.public_share(self.member))
            if self.backend.g2_mul(G2_GENERATOR, self.share.scalar) != own_pk:
                raise ConfigError(f"the key share does not match member {self.member}'s public share in the committee "
                                  f"file: point committee.share at this member's own share of epoch {self.committee.epoch}")
            self._own_pk = own_pk
        if self._session is None:
            self._session = aiohttp.ClientSession()
        if self._stream is not None:
            self._stream.start()  # connects in the background: NATS being down must not stop the attester
        for feed_id, feed in self.feeds.items():
            if feed_id in self._sources:
                continue
            try:
                self._sources[feed_id] = build_sources(feed, **self._source_options)
            except SourceError as exc:
                raise ConfigError(f"feeds.{feed_id}: {exc}") from None

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for sources in self._sources.values():
            for source in sources.values():
                await source.close()
        self._sources.clear()
        if self._stream is not None:
            await self._stream.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def run(self, stop: asyncio.Event) -> None:
        """Run rounds for every feed until `stop` is set, then clean up."""
        await self.start()
        self.log.info("feed rounds running", feeds=list(self.feeds), interval_ms=self._interval,
                      leader_timeout_ms=self.settings.leader_timeout_ms, publish_urls=self.settings.publish_urls,
                      nats_urls=self.settings.nats_urls)
        if not self.settings.publish_urls and not self.settings.nats_urls and self.on_report is None:
            self.log.warning("[feed_round] publish_urls and nats_urls are empty: signed reports are only logged; "
                             "add a feed server's URL or NATS servers to publish them")
        clocks = [asyncio.create_task(self._clock(feed)) for feed in self.feeds.values()]
        try:
            await stop.wait()
        finally:
            for task in clocks:
                task.cancel()
            await asyncio.gather(*clocks, return_exceptions=True)
            await self.close()
            self.log.info("feed rounds stopped")

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            self.log.error("feed task failed", error=f"{type(exc).__name__}: {exc}")

    async def _clock(self, feed: FeedConfig) -> None:
        last = -1
        while True:
            now_ms = self._now_ms()
            round_ = max(round_of(now_ms, self._interval) + 1, last + 1)
            await asyncio.sleep(max(0.0, (round_start_ms(round_, self._interval) - now_ms) / 1000))
            last = round_
            self._spawn(self.observe_round(feed, round_))
            self._prune()

    def _in_window(self, round_: int) -> bool:
        start, now = round_start_ms(round_, self._interval), self._now_ms()
        return now - self._horizon_ms <= start <= now + self._interval + 1000

    def _prune(self) -> None:
        oldest = round_of(self._now_ms() - self._horizon_ms, self._interval) - 1
        for key in [k for k in self._members if k[1] < oldest]:
            del self._members[key]
        for key in [k for k in self._leading if k[1] < oldest]:
            del self._leading[key]
        for key in [k for k in self._roots if k[0] < oldest]:
            del self._roots[key]

    def _member_round(self, feed_id: str, round_: int) -> MemberRound:
        return self._members.setdefault((feed_id, round_), MemberRound())

    # --- member: observe and send ---------------------------------------------------------------

    async def observe_round(self, feed: FeedConfig, round_: int) -> SignedObservation | None:
        """This member's whole part in one round, as a member: observe, sign, send, fail over."""
        state = self._member_round(feed.id, round_)
        got = await gather_quotes(self._sources[feed.id])
        try:
            observation = own_observation(feed, round_, self.member, got.quotes, got.failures)
        except NotEnoughSourcesError as exc:
            self.log.warning("round sat out", feed=feed.id, round=round_, reason=str(exc))
            self.metrics.failed.labels(feed=feed.id, reason="no_observation").inc()
            return None
        signed = sign_observation(self.share, observation, self.committee.epoch, self.backend)
        self.backend.remember_own(self._own_pk, observation.digest(self.committee.epoch), signed.signature)
        state.own = signed
        wait_s = self.settings.leader_timeout_ms / 1000
        for attempt in range(self.committee.n):
            if state.proposal_seen.is_set():
                return signed
            leader = leader_of(self.committee, round_, attempt)
            if attempt:
                self.metrics.failovers.labels(feed=feed.id).inc()
            sent = await self._send_observation(leader, ObservationMessage(attempt, signed), feed.id, round_)
            if not sent:
                continue  # unreachable or refused: the next leader, now rather than after a timeout
            if await wait_event(state.proposal_seen, wait_s):
                return signed
            self.log.info("no proposal; trying the next leader", feed=feed.id, round=round_, leader=leader,
                              attempt=attempt, waited_ms=self.settings.leader_timeout_ms)
        if not state.proposal_seen.is_set():
            self.log.warning("round failed: no leader proposed a report", feed=feed.id, round=round_,
                             attempts=self.committee.n)
            self.metrics.failed.labels(feed=feed.id, reason="no_proposal").inc()
        return signed

    async def _send_observation(self, leader: int, message: ObservationMessage, feed_id: str, round_: int) -> bool:
        """True when the leader took the observation (or already proposed): wait for its proposal."""
        if leader == self.member:
            try:
                self.accept_observation(message)
                return True
            except RoundRefused as exc:
                return exc.code == "already_proposed"
            except RoundMessageError as exc:  # our own observation: a bug, not a peer's fault
                self.log.error("own observation refused", feed=feed_id, round=round_, error=str(exc))
                return False
        url = self._endpoints[leader] + OBSERVATIONS_PATH
        try:
            async with self._http().post(url, json=message.to_json(), timeout=self._timeout()) as resp:
                body = await _json_body(resp)
                if resp.status == 202:
                    return True
                code = body.get("code", "") if isinstance(body, dict) else ""
                self.log.info("leader refused the observation", feed=feed_id, round=round_, leader=leader,
                              status=resp.status, code=code,
                              error=body.get("error") if isinstance(body, dict) else body)
                return code == "already_proposed"
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            self.log.info("leader unreachable", feed=feed_id, round=round_, leader=leader,
                          error=f"{type(exc).__name__}: {exc}")
            return False

    # --- leader: collect, propose, combine, publish ---------------------------------------------

    def accept_observation(self, message: ObservationMessage) -> LeaderRound:
        """Take a member's observation as leader of its (round, attempt), or raise why not."""
        obs = message.signed.observation
        feed = self.feeds.get(obs.feed_id)
        if feed is None:
            raise RoundRefused("unknown_feed", f"feed {obs.feed_id!r} is not configured at member {self.member}")
        if message.attempt >= self.committee.n:
            raise RoundMessageError(f"attempt {message.attempt} is out of range for a committee of {self.committee.n}")
        if not self._in_window(obs.round):
            raise RoundRefused("stale_round",
                               f"round {obs.round} is outside this member's window; check the clocks (NTP)")
        leader = leader_of(self.committee, obs.round, message.attempt)
        if leader != self.member:
            raise RoundRefused("not_leader", f"member {leader} leads round {obs.round} attempt {message.attempt}, "
                                             f"not member {self.member}")
        window = time_window(feed, self._now_ms(), self.settings.max_skew_ms, round_start_ms(obs.round, self._interval))
        problem = observation_problem(self.committee, message.signed, feed.id, obs.round, feed.decimals, self.backend,
                                      window=window)
        if problem is not None:
            raise RoundMessageError(f"observation refused: {problem}")
        key = (feed.id, obs.round, message.attempt)
        loop = asyncio.get_running_loop()
        state = self._leading.get(key)
        if state is None:
            state = self._leading[key] = LeaderRound(first_at=loop.time())
            self._spawn(self._lead(feed, obs.round, message.attempt, state))
        if state.closed == "proposed":
            raise RoundRefused("already_proposed", f"round {obs.round} attempt {message.attempt} is already proposed")
        if state.closed is not None:
            raise RoundRefused("closed", f"round {obs.round} attempt {message.attempt} gave up; try the next leader")
        state.add(message.signed, self.committee.threshold, loop.time())
        return state

    async def _lead(self, feed: FeedConfig, round_: int, attempt: int, state: LeaderRound) -> None:
        # sign = "root": the report joins the (round, attempt)'s root, signed once for every feed.
        batch = self._root_batch(round_, attempt) if self.settings.sign == "root" else None
        if batch is not None:
            batch.start(feed.id)
        try:
            await self._lead_feed(feed, round_, attempt, state, batch)
        finally:
            if batch is not None:
                batch.drop(feed.id)  # built or not, the root no longer waits for this feed

    async def _lead_feed(self, feed: FeedConfig, round_: int, attempt: int, state: LeaderRound,
                         batch: RootBatch | None) -> None:
        start = round_start_ms(round_, self._interval)
        first_ms = self._now_ms() - start  # this task starts with the first observation
        if not await self._collect(state):
            state.closed = "gave_up"
            self.log.warning("round failed: too few observations", feed=feed.id, round=round_, attempt=attempt,
                             got=state.members, threshold=self.committee.threshold)
            self.metrics.failed.labels(feed=feed.id, reason="not_enough_observations").inc()
            return
        state.closed = "proposed"
        built_ms = self._now_ms() - start
        try:
            built = build_report(feed, self.committee, round_, state.all_signed(), self._now_ms(), self.backend,
                                 max_skew_ms=self.settings.max_skew_ms, round_start_ms=start)
        except NotEnoughObservationsError as exc:  # equivocating members left fewer than t
            self.log.warning("round failed", feed=feed.id, round=round_, attempt=attempt, reason=str(exc))
            self.metrics.failed.labels(feed=feed.id, reason="not_enough_observations").inc()
            return
        proposal = Proposal(attempt, self.member, built.report, built.observations)
        if batch is not None:
            signed = await batch.add(proposal)
        else:
            signed = await self._gather_partials(feed, proposal)
        if signed is None:
            return
        self._publish(signed)
        done_ms = self._now_ms() - start
        self.metrics.latency.labels(feed=feed.id).observe(max(0, done_ms) / 1000)
        self.metrics.published.labels(feed=feed.id).inc()
        # The timings (ms after the round's start) show where a slow round spent its time.
        self.log.info("report published", feed=feed.id, round=round_, attempt=attempt, price=built.report.price,
                      confidence=built.report.confidence, observations=built.report.observations,
                      rejected=built.rejected or None, first_observation_ms=first_ms, proposed_ms=built_ms,
                      signed_ms=done_ms, root_of=signed.root.leaf_count if signed.root is not None else None)

    # --- leader: one signature per round (sign = "root") ----------------------------------------

    def _root_batch(self, round_: int, attempt: int) -> RootBatch:
        key = (round_, attempt)
        batch = self._roots.get(key)
        if batch is None or batch.closed:  # a feed that starts after the root went out: a root of its own
            batch = self._roots[key] = RootBatch()
            self._spawn(self._run_root(key, batch))
        return batch

    async def _run_root(self, key: tuple[int, int], batch: RootBatch) -> None:
        """Waits until every feed of the batch has its report built (each feed's collection already
        ends within half the members' patience; this waits at most 0.6 of it, and at least
        collect_ms for feeds that have not joined yet), then asks for one
        signature over the root. One report alone is signed as a report (v1): a root of one buys
        nothing. A root the committee does not sign (a member refused one report) falls back to one
        signature per report, so one bad feed does not hold back the others."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 0.6 * self.settings.leader_timeout_ms / 1000
        # The other feeds' first observations may still be on their way: give them collect_ms to join.
        grace = loop.time() + self.settings.collect_ms / 1000
        results: dict[str, SignedReport | None] = {}
        try:
            while loop.time() < deadline:
                joining = len(batch.seen) < len(self.feeds) and loop.time() < grace
                if not batch.building and not joining:
                    break
                batch.changed.clear()
                await wait_event(batch.changed, (grace if joining else deadline) - loop.time())
            batch.closed = True
            if self._roots.get(key) is batch:
                del self._roots[key]
            proposals = list(batch.proposals.values())
            if len(proposals) > 1:
                signed_root = await self._gather_root_partials(RootProposal.of(proposals))
                self.metrics.roots.labels(outcome="signed" if signed_root is not None else "refused").inc()
                if signed_root is not None:
                    results = {r.feed_id: r for r in signed_root.reports()}
                    return
                self.log.warning("root not signed; signing each report alone", round=key[0], attempt=key[1],
                                 feeds=sorted(batch.proposals))
            got = await asyncio.gather(*(self._gather_partials(self.feeds[p.report.feed_id], p) for p in proposals))
            results = {p.report.feed_id: signed for p, signed in zip(proposals, got)}
        finally:
            batch.closed = True
            batch.resolve(results)

    async def _gather_root_partials(self, proposal: RootProposal) -> SignedFeedRoot | None:
        root = proposal.feed_root()
        digest = root.digest(self.committee.epoch)
        feeds = ",".join(p.report.feed_id for p in proposal.proposals)
        signature = await self._combine(digest, lambda m: self._request_partial(m, proposal), feeds, proposal.round,
                                        proposal.attempt)
        if signature is None:
            return None
        signed = SignedFeedRoot(root, self.committee.epoch, signature)
        if not signed.verify(self.committee, self.backend):
            self.log.error("combined root signature does not verify", feeds=feeds, round=proposal.round)
            return None
        return signed

    async def _collect(self, state: LeaderRound) -> bool:
        """Wait for all n observations, or collect_ms after the t-th (capped at half the members'
        patience, so the proposal reaches them before they move on). False: fewer than t in time."""
        loop = asyncio.get_running_loop()
        patience = self.settings.leader_timeout_ms / 1000
        build_by = state.first_at + patience / 2
        give_up_at = state.first_at + patience
        while True:
            now = loop.time()
            if state.members >= self.committee.n:
                return True
            if state.threshold_at is not None:
                due = min(state.threshold_at + self.settings.collect_ms / 1000, max(build_by, state.threshold_at))
            else:
                due = give_up_at
            if now >= due:
                return state.threshold_at is not None
            state.changed.clear()
            await wait_event(state.changed, due - now)

    async def _gather_partials(self, feed: FeedConfig, proposal: Proposal) -> SignedReport | None:
        report = proposal.report
        signature = await self._combine(report.digest(self.committee.epoch),
                                        lambda m: self._request_partial(m, proposal), feed.id, report.round,
                                        proposal.attempt)
        if signature is None:
            return None
        signed = SignedReport(report, self.committee.epoch, signature)
        if signed.verify(self.committee, self.backend):
            return signed
        self.log.error("combined signature does not verify", feed=feed.id, round=report.round)
        return None

    async def _combine(self, digest: bytes, request: Callable[[int], Awaitable[tuple[int, bytes | str]]],
                       feed: str, round_: int, attempt: int) -> bytes | None:
        """Asks every member for its partial over `digest`; the combined signature once t valid ones
        are in (the rest finish in the background), or None."""
        pending = {self._spawn(request(m)) for m in self.committee.indices}
        partials: list[attest.PartialSignature] = []
        refusals: dict[int, str] = {}
        faulty: tuple[int, ...] = ()
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                member, outcome = task.result()
                if isinstance(outcome, bytes):
                    partials.append(attest.PartialSignature(member, outcome))
                else:
                    refusals[member] = outcome
            if len(partials) - len(faulty) >= self.committee.threshold:
                result = attest.combine(self.committee, digest, partials, self.backend)
                faulty = result.faulty
                if result.ok:
                    if faulty:
                        self.log.warning("faulty partials", feed=feed, round=round_, members=list(faulty))
                        for member in faulty:
                            self.metrics.faulty_partials.labels(member=str(member)).inc()
                    return result.signature
        detail = {**refusals, **{m: "invalid partial signature" for m in faulty}}
        self.log.warning("round failed: too few partial signatures", feed=feed, round=round_,
                         attempt=attempt, partials=len(partials) - len(faulty),
                         threshold=self.committee.threshold, refusals=detail)
        self.metrics.failed.labels(feed=feed, reason="not_enough_partials").inc()
        return None

    async def _request_partial(self, member: int, proposal: Proposal | RootProposal) -> tuple[int, bytes | str]:
        """(member, partial signature) or (member, why not)."""
        root = isinstance(proposal, RootProposal)
        if member == self.member:
            try:
                reply = self.sign_root_proposal(proposal) if root else self.sign_proposal(proposal)
                return member, reply.signature
            except (RoundRefused, RoundMessageError) as exc:
                return member, f"{getattr(exc, 'code', 'bad_request')}: {exc}"
        url = self._endpoints[member] + (ROOT_PROPOSALS_PATH if root else PROPOSALS_PATH)
        try:
            async with self._http().post(url, json=proposal.to_json(), timeout=self._timeout(2)) as resp:
                body = await _json_body(resp)
                if resp.status != 200:
                    code = body.get("code", resp.status) if isinstance(body, dict) else resp.status
                    error = body.get("error", "") if isinstance(body, dict) else body
                    return member, f"{code}: {error}"
                reply = PartialReply.from_json(body)
                if reply.member != member:
                    return member, f"answered as member {reply.member}"
                return member, reply.signature
        except RoundMessageError as exc:
            return member, f"malformed reply: {exc}"
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            return member, f"unreachable: {type(exc).__name__}: {exc}"

    def _publish(self, signed: SignedReport) -> None:
        body = signed.to_json()
        for url in self.settings.publish_urls:
            self._spawn(self._post_report(_reports_url(url), body))
        if self._stream is not None:
            self._spawn(self._publish_to_stream(signed))
        if self.on_report is not None:
            try:
                result = self.on_report(signed)
                if inspect.isawaitable(result):
                    self._spawn(result)
            except Exception as exc:  # a subscriber's bug must not end the round loop
                self.log.error("on_report callback failed", error=f"{type(exc).__name__}: {exc}")

    async def _post_report(self, url: str, body: dict) -> None:
        try:
            timeout = aiohttp.ClientTimeout(total=PUBLISH_TIMEOUT_S)
            async with self._http().post(url, json=body, timeout=timeout) as resp:
                if resp.status >= 300:
                    text = (await resp.text())[:200]
                    raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status, message=text)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            self.metrics.publish_errors.labels(url=url).inc()
            self.log.warning("publishing a report failed", url=url, feed=body["feed_id"], round=body["round"],
                             error=f"{type(exc).__name__}: {exc}")

    async def _publish_to_stream(self, signed: SignedReport) -> None:
        assert self._stream is not None
        try:
            await self._stream.publish(signed)
        except PublishError as exc:
            self.metrics.publish_errors.labels(url="nats").inc()
            self.log.warning("publishing a report to NATS failed", stream=self._stream.settings.stream,
                             feed=signed.feed_id, round=signed.round, error=str(exc))

    # --- member: check and sign -----------------------------------------------------------------

    def sign_proposal(self, proposal: Proposal) -> PartialReply:
        """Check the leader's report and return this member's partial signature, or raise why not."""
        digest = proposal.report.digest(self.committee.epoch)
        again = self._check_proposal(proposal, digest)
        if again is not None:  # the same report again (a retry): the same answer
            return PartialReply(self.member, again)
        # No await between the check above and this line: two proposals cannot both get signed.
        signature = attest.partial_sign(self.share, digest, self.backend).signature
        self._signed(proposal, digest, signature)
        return PartialReply(self.member, signature)

    def sign_root_proposal(self, proposal: RootProposal) -> PartialReply:
        """One partial signature over the root of the proposal's reports, given only when this member
        would sign every one of them alone (the same checks, in one go); refused with the first
        report's refusal otherwise, naming its feed. Signing the root counts as signing each report:
        this member signs no other report (or root) for those feeds in that round."""
        root = proposal.feed_root()
        digest = root.digest(self.committee.epoch)
        again = [self._check_proposal(p, digest, in_root=root.leaf_count) for p in proposal.proposals]
        if again[0] is not None and all(a == again[0] for a in again):
            return PartialReply(self.member, again[0])  # the same root again (a retry)
        # No await between the checks above and these lines: nothing else gets signed in between.
        signature = attest.partial_sign(self.share, digest, self.backend).signature
        for p in proposal.proposals:
            self._signed(p, digest, signature)
        return PartialReply(self.member, signature)

    def _signed(self, proposal: Proposal, digest: bytes, signature: bytes) -> None:
        state = self._member_round(proposal.report.feed_id, proposal.report.round)
        state.signed = (digest, signature)
        state.proposal_seen.set()
        self.metrics.signed.labels(feed=proposal.report.feed_id).inc()

    def _check_proposal(self, proposal: Proposal, digest: bytes, in_root: int | None = None) -> bytes | None:
        """Raises RoundRefused unless this member may sign `digest` for the proposal's report; the
        partial it already gave for that very digest (a retry), else None."""
        report = proposal.report
        where = f" (in a root of {in_root} reports: the whole root is refused)" if in_root else ""
        feed = self.feeds.get(report.feed_id)
        if feed is None:
            raise RoundRefused("unknown_feed",
                               f"feed {report.feed_id!r} is not configured at member {self.member}{where}")
        if not self._in_window(report.round):
            raise RoundRefused("stale_round",
                               f"round {report.round} is outside this member's window; check the clocks (NTP){where}")
        state = self._member_round(feed.id, report.round)
        try:
            if state.signed is not None:
                if state.signed[0] == digest:
                    return state.signed[1]
                raise RoundRefused("already_signed", f"member {self.member} already signed another report for "
                                                     f"feed {feed.id} round {report.round}{where}")
            own = state.own.observation if state.own is not None else None
            self._batch_check(proposal.observations)
            try:
                check_proposal(feed, self.committee, report, proposal.observations, own=own, now_ms=self._now_ms(),
                               max_skew_ms=self.settings.max_skew_ms,
                               round_start_ms=round_start_ms(report.round, self._interval), backend=self.backend)
            except ReportRejected as exc:
                raise RoundRefused(exc.code, f"{feed.id}: {exc}{where}") from None
        except RoundRefused as exc:
            self.metrics.refused.labels(feed=feed.id, code=exc.code).inc()
            self.log.info("proposal refused", feed=feed.id, round=report.round, leader=proposal.leader,
                          code=exc.code, reason=str(exc), root_of=in_root)
            if exc.code in _ROUND_HANDLED:
                state.proposal_seen.set()
            raise
        return None

    def _batch_check(self, observations: tuple[SignedObservation, ...]) -> None:
        # Pre-checks the proposal's signatures in one multi-pairing; check_proposal's own checks
        # then hit the memory (or, if the batch failed, find the bad one themselves).
        items = []
        for signed in observations:
            if signed.member in self._endpoints:
                items.append((decode_g2(self.committee.public_share(signed.member)),
                              signed.observation.digest(self.committee.epoch), signed.signature))
        self.backend.batch_check(items)

    # --- HTTP -----------------------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("FeedNode.start() (or run()) must be called before rounds run")
        return self._session

    def _timeout(self, factor: float = 1.0) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=max(0.2, factor * self.settings.leader_timeout_ms / 1000))

    def routes(self) -> web.RouteTableDef:
        routes = web.RouteTableDef()

        @routes.post(OBSERVATIONS_PATH)
        async def observations(request: web.Request) -> web.Response:
            try:
                self.accept_observation(ObservationMessage.from_json(await _request_json(request)))
            except RoundMessageError as exc:
                return web.json_response({"error": str(exc), "code": "bad_request"}, status=400)
            except RoundRefused as exc:
                return web.json_response({"error": str(exc), "code": exc.code}, status=409)
            return web.json_response({"accepted": True}, status=202)

        @routes.post(PROPOSALS_PATH)
        async def proposals(request: web.Request) -> web.Response:
            try:
                reply = self.sign_proposal(Proposal.from_json(await _request_json(request)))
            except RoundMessageError as exc:
                return web.json_response({"error": str(exc), "code": "bad_request"}, status=400)
            except RoundRefused as exc:
                return web.json_response({"error": str(exc), "code": exc.code}, status=409)
            return web.json_response(reply.to_json())

        @routes.post(ROOT_PROPOSALS_PATH)
        async def root_proposals(request: web.Request) -> web.Response:
            try:
                reply = self.sign_root_proposal(RootProposal.from_json(await _request_json(request)))
            except RoundMessageError as exc:
                return web.json_response({"error": str(exc), "code": "bad_request"}, status=400)
            except RoundRefused as exc:
                return web.json_response({"error": str(exc), "code": exc.code}, status=409)
            return web.json_response(reply.to_json())

        @routes.get(METRICS_PATH)
        async def metrics(request: web.Request) -> web.Response:
            return web.Response(body=self.metrics.render(), content_type="text/plain")

        return routes


async def _request_json(request: web.Request) -> object:
    try:
        return await request.json()
    except ValueError:
        raise RoundMessageError("the body is not JSON") from None


async def _json_body(resp: aiohttp.ClientResponse) -> object:
    try:
        return await resp.json(content_type=None)
    except ValueError:
        return {"error": (await resp.text())[:200]}


def _reports_url(url: str) -> str:
    """A bare `http://host:port` means that feed server's POST /v1/reports."""
    return url.rstrip("/") + "/v1/reports" if urlsplit(url).path in ("", "/") else url

