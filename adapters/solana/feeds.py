"""Feeds on Solana: the feed account (PDA ["feed", feed_id]) the Tessera program writes after
verifying a committee-signed report, the UpdateFeed instruction, and `SolanaFeedTarget`, the
Solana push target of the feed pusher (relay/feeds/push.py: `name`, `push`, `latest`).

Layout and instruction: contracts/solana/README.md "Feeds"; report encoding and digest: docs/FEEDS.md.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Commitment, Confirmed
from solders.compute_budget import set_compute_unit_limit
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import ID as SYSTEM_PROGRAM_ID

from adapters.solana.program import (
    Attestation,
    G1Hint,
    ProgramErrorCode,
    ProgramInstruction,
    committee_address,
    program_error_code,
    program_error_name,
)
from adapters.solana.rpc import SolanaAdapterError, SolanaRpc, keypair_from_ref
from adapters.solana.tx import PACKET_DATA_SIZE, SentTransaction, SolanaTransactor, TransactionRefused, transaction_size
from relay.config import KeyRef, SolanaChain
from relay.errors import ConfigError, TesseraError
from relay.feeds.multi import SignedFeedRoot
from relay.feeds.report import FEED_ID_LEN, FeedReport, ReportError, decode_feed_id, encode_feed_id
from relay.feeds.signed import SignedReport
from relay.interfaces import EndpointHealth, FeedNotNewer
from relay.log import get_logger

__all__ = [
    "FEED_ACCOUNT_LEN",
    "FeedAccount",
    "FeedAccountError",
    "FeedPushError",
    "SolanaFeedError",
    "SolanaFeedTarget",
    "close_feed_root_ix",
    "feed_address",
    "feed_attestation",
    "feed_root_address",
    "feed_root_attestation",
    "raw_update_feed_ix",
    "raw_update_feeds_ix",
    "update_feed_ix",
    "update_feeds_ix",
    "update_feeds_with_proofs_ix",
    "verify_feed_root_ix",
]

log = get_logger("adapters.solana.feeds")

FEED_SEED = b"feed"
FEED_MAGIC = b"TESSFEED"
FEED_VERSION = 1
FEED_ACCOUNT_LEN = 264
FEED_EVENT_TAG = b"TESSERA_FEED"  # first sol_log_data field of an UpdateFeed; the report is the second
FLAG_PRICE_FITS_I128 = 1
FLAG_CONFIDENCE_FITS_U128 = 2
FLAG_ROOT_SIGNED = 4  # stored from a feed root: σ is over the root's digest (relay/feeds/multi.py)
FEED_ROOT_SEED = b"feedroot"
FEED_ROOT_ACCOUNT_LEN = 152
# UpdateFeed measured 57-65k CU (README.md "Feeds"); the limit leaves room for a long bump search.
UPDATE_FEED_CU_LIMIT = 120_000
# UpdateFeeds: one pairing (~60k) plus ~19k per new feed (README.md "Feed roots"); up to 5 fit a packet.
UPDATE_FEEDS_CU_LIMIT = 250_000
UPDATE_FEEDS_WITH_PROOFS_CU_LIMIT = 120_000  # ~10.5k per feed, no pairing
CLOSE_FEED_ROOT_CU_LIMIT = 20_000

# magic 8, version, bump, decimals, observations, flags, 3 reserved, epoch u32, 4 reserved,
# feed_id 32, round, observed_at, published_at, updated_slot u64, updated_unix i64, update_count u64,
# price i128 (16), confidence u128 (16), price int256 BE (32), confidence uint256 BE (32), signature 64
_LAYOUT = struct.Struct("<8sBBBBB3xI4x32sQQQQqQ16s16s32s32s64s")
assert _LAYOUT.size == FEED_ACCOUNT_LEN


class SolanaFeedError(TesseraError):
    """Base class of the Solana feed errors."""


class FeedAccountError(SolanaFeedError):
    """Bytes that are not a Tessera feed account."""


class FeedPushError(SolanaFeedError):
    """UpdateFeed was refused or could not be sent. `code` is the program's error when it gave one;
    `retryable` says whether sending the same report again later may succeed."""

    def __init__(self, message: str, code: ProgramErrorCode | int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable


def _feed_id_bytes(feed_id: str | bytes) -> bytes:
    if isinstance(feed_id, bytes):
        if len(feed_id) != FEED_ID_LEN:
            raise ValueError(f"a feed id in bytes is the report's zero-padded {FEED_ID_LEN} bytes")
        return feed_id
    return encode_feed_id(feed_id)


def feed_address(program_id: Pubkey, feed_id: str | bytes) -> tuple[Pubkey, int]:
    """The feed account of `feed_id` ("ETH/USD", or its zero-padded 32 bytes) and its bump."""
    return Pubkey.find_program_address([FEED_SEED, _feed_id_bytes(feed_id)], program_id)


def feed_attestation(signed: SignedReport) -> Attestation:
    """The attestation block for a signed report: its epoch, σ and the hint for the FEED digest."""
    return Attestation(signed.epoch, signed.signature, G1Hint.for_digest(signed.digest))


def raw_update_feed_ix(program_id: Pubkey, payer: Pubkey, attestation: Attestation, report: bytes,
                       feed: Pubkey | None = None, committee_config: Pubkey | None = None) -> Instruction:
    """UpdateFeed from raw parts, unchecked beyond what deriving the address needs, so tests can send
    what the program must refuse. `feed` defaults to the PDA of the report's first 32 bytes, the
    committee config to the PDA ["committee"]."""
    if feed is None:
        feed = Pubkey.find_program_address([FEED_SEED, report[:FEED_ID_LEN].ljust(FEED_ID_LEN, b"\0")], program_id)[0]
    data = bytes([ProgramInstruction.FEED_UPDATE]) + attestation.encode() + report
    return Instruction(
        program_id,
        data,
        [
            AccountMeta(payer, True, True),
            AccountMeta(feed, False, True),
            AccountMeta(committee_config or committee_address(program_id)[0], False, False),
            AccountMeta(SYSTEM_PROGRAM_ID, False, False),
        ],
    )


def update_feed_ix(program_id: Pubkey, payer: Pubkey, signed: SignedReport,
                   committee_config: Pubkey | None = None) -> Instruction:
    """UpdateFeed for a committee-signed report; the payer pays the feed account's rent on the first
    update of a feed."""
    return raw_update_feed_ix(program_id, payer, feed_attestation(signed), signed.report.encode(),
                              committee_config=committee_config)


# --- feed roots (contracts/solana/README.md "Feed roots") ------------------------------------------


def feed_root_address(program_id: Pubkey, root: bytes) -> tuple[Pubkey, int]:
    """The account VerifyFeedRoot creates for a feed root: PDA ["feedroot", root]."""
    return Pubkey.find_program_address([FEED_ROOT_SEED, bytes(root)], program_id)


def feed_root_attestation(signed: SignedFeedRoot) -> Attestation:
    """Epoch, σ and the hint for the feed-root digest."""
    return Attestation(signed.epoch, signed.signature, G1Hint.for_digest(signed.digest))


def raw_update_feeds_ix(program_id: Pubkey, payer: Pubkey, attestation: Attestation, reports: Sequence[bytes],
                        feeds: Sequence[Pubkey] | None = None, committee_config: Pubkey | None = None) -> Instruction:
    """UpdateFeeds from raw parts (every leaf of the root, in order), unchecked, so tests can send
    what the program must refuse. `feeds` default to the PDAs of the reports' feed ids."""
    if feeds is None:
        feeds = [Pubkey.find_program_address([FEED_SEED, r[:FEED_ID_LEN].ljust(FEED_ID_LEN, b"\0")], program_id)[0]
                 for r in reports]
    data = bytes([ProgramInstruction.FEED_UPDATE_MANY]) + attestation.encode() + bytes([len(reports)]) + b"".join(reports)
    return Instruction(
        program_id,
        data,
        [
            AccountMeta(payer, True, True),
            AccountMeta(committee_config or committee_address(program_id)[0], False, False),
            AccountMeta(SYSTEM_PROGRAM_ID, False, False),
            *(AccountMeta(f, False, True) for f in feeds),
        ],
    )


def update_feeds_ix(program_id: Pubkey, payer: Pubkey, signed: SignedFeedRoot,
                    committee_config: Pubkey | None = None) -> Instruction:
    """UpdateFeeds: every report of a signed feed root under its one signature (one pairing). Up to
    5 reports fit a 1,232-byte transaction with a compute-budget instruction (README.md)."""
    return raw_update_feeds_ix(program_id, payer, feed_root_attestation(signed),
                               [r.encode() for r in signed.root.reports], committee_config=committee_config)


def verify_feed_root_ix(program_id: Pubkey, payer: Pubkey, attestation: Attestation, leaf_count: int, root: bytes,
                        committee_config: Pubkey | None = None) -> Instruction:
    """VerifyFeedRoot: one pairing; the root is kept in ["feedroot", root] for UpdateFeedsWithProofs.
    Pass `feed_root_attestation(signed)`, `signed.root.leaf_count`, `signed.root.root`."""
    data = bytes([ProgramInstruction.FEED_VERIFY_ROOT]) + attestation.encode() + bytes([leaf_count]) + bytes(root)
    return Instruction(
        program_id,
        data,
        [
            AccountMeta(payer, True, True),
            AccountMeta(committee_config or committee_address(program_id)[0], False, False),
            AccountMeta(feed_root_address(program_id, root)[0], False, True),
            AccountMeta(SYSTEM_PROGRAM_ID, False, False),
        ],
    )


def update_feeds_with_proofs_ix(program_id: Pubkey, payer: Pubkey, root: bytes,
                                items: Sequence[tuple[int, Sequence[bytes], bytes]],
                                feeds: Sequence[Pubkey] | None = None) -> Instruction:
    """UpdateFeedsWithProofs: reports of a root VerifyFeedRoot verified, each `(index, proof,
    report bytes)` (`SignedFeedRoot.root.proof(i)`), no pairing. A 1,232-byte transaction holds 3
    reports of a 16-report root, 4 of a 4-report root (README.md)."""
    if feeds is None:
        feeds = [feed_address(program_id, report[:FEED_ID_LEN])[0] for _, _, report in items]
    body = b"".join(bytes([index, len(proof)]) + b"".join(proof) + report for index, proof, report in items)
    data = bytes([ProgramInstruction.FEED_UPDATE_WITH_PROOFS, len(items)]) + body
    return Instruction(
        program_id,
        data,
        [
            AccountMeta(payer, True, True),
            AccountMeta(feed_root_address(program_id, root)[0], False, False),
            AccountMeta(SYSTEM_PROGRAM_ID, False, False),
            *(AccountMeta(f, False, True) for f in feeds),
        ],
    )


def close_feed_root_ix(program_id: Pubkey, closer: Pubkey, root: bytes, payer: Pubkey) -> Instruction:
    """CloseFeedRoot: the rent back to `payer` (who verified it); by the payer at any time, anyone
    else a day after it was verified."""
    return Instruction(
        program_id,
        bytes([ProgramInstruction.FEED_CLOSE_ROOT]),
        [
            AccountMeta(closer, True, False),
            AccountMeta(feed_root_address(program_id, root)[0], False, True),
            AccountMeta(payer, False, True),
        ],
    )


def _int_le(raw: bytes, signed: bool) -> int:
    return int.from_bytes(raw, "little", signed=signed)


@dataclass(frozen=True, slots=True)
class FeedAccount:
    """A feed account as the program wrote it after its last accepted update. Carries the fields of
    `FeedReport` under the same names, so the pusher's push rule can compare it with a new report."""

    bump: int
    feed_id: str
    decimals: int
    observations: int
    epoch: int  # committee epoch that signed the stored report
    round: int
    price: int
    confidence: int
    observed_at: int  # ms
    published_at: int  # ms
    updated_slot: int
    updated_unix: int
    update_count: int
    signature: bytes  # σ over report.digest(epoch): anyone can re-verify the stored report
    price_i128: int | None  # the convenience copy, None when the price does not fit in i128
    confidence_u128: int | None
    # Stored from a feed root (UpdateFeeds / UpdateFeedsWithProofs): `signature` is the committee's
    # over that root's digest, so `signed.verify` does not apply; the root is in the transaction.
    root_signed: bool = False

    @classmethod
    def decode(cls, data: bytes) -> "FeedAccount":
        data = bytes(data)
        if len(data) < FEED_ACCOUNT_LEN or data[:8] != FEED_MAGIC:
            raise FeedAccountError("not a Tessera feed account (no TESSFEED header): is this the feed's PDA?")
        (_, version, bump, decimals, observations, flags, epoch, feed_id, round_, observed_at, published_at,
         slot, unix, count, price_le, conf_le, price_be, conf_be, signature) = _LAYOUT.unpack_from(data)
        if version != FEED_VERSION:
            raise FeedAccountError(f"feed account layout version {version} is not supported (expected {FEED_VERSION})")
        try:
            name = decode_feed_id(feed_id)
        except ReportError as exc:
            raise FeedAccountError(f"feed account holds an invalid feed id: {exc}") from None
        return cls(
            bump=bump,
            feed_id=name,
            decimals=decimals,
            observations=observations,
            epoch=epoch,
            round=round_,
            price=int.from_bytes(price_be, "big", signed=True),
            confidence=int.from_bytes(conf_be, "big"),
            observed_at=observed_at,
            published_at=published_at,
            updated_slot=slot,
            updated_unix=unix,
            update_count=count,
            signature=signature,
            price_i128=_int_le(price_le, True) if flags & FLAG_PRICE_FITS_I128 else None,
            confidence_u128=_int_le(conf_le, False) if flags & FLAG_CONFIDENCE_FITS_U128 else None,
            root_signed=bool(flags & FLAG_ROOT_SIGNED),
        )

    @property
    def report(self) -> FeedReport:
        """The stored report, byte for byte what the committee signed."""
        return FeedReport(self.feed_id, self.round, self.price, self.confidence, self.decimals, self.observations,
                          self.observed_at, self.published_at)

    @property
    def signed(self) -> SignedReport:
        """The stored report with its epoch and signature: `signed.verify(committee)` re-checks it
        (not for a `root_signed` account: its signature is over the feed root)."""
        return SignedReport(self.report, self.epoch, self.signature)


def _program_error(err: Any) -> tuple[int | None, str]:
    """(custom code, readable text) of a transaction error."""
    code = program_error_code(err)
    if code is None:
        return None, str(err)
    return code, f"{program_error_name(err) or 'UNKNOWN_PROGRAM_ERROR'} (custom error {code:#x})"


_HINTS = {
    ProgramErrorCode.SIGNATURE_INVALID: "the report or its signature was altered, or another committee signed it",
    ProgramErrorCode.EPOCH_UNKNOWN: "the chain's committee config does not know this epoch yet: the rotation must be delivered first",
    ProgramErrorCode.EPOCH_EXPIRED: "the previous committee's grace period is over: push a report of the current epoch",
    ProgramErrorCode.CONFIG_NOT_INITIALIZED: "run InitCommittee (`relay localnet up` does) before pushing",
    ProgramErrorCode.FEED_DECIMALS_CHANGED: "the feed's decimals are fixed by its first update: use a new feed id",
}


class SolanaFeedTarget:
    """Pushes signed reports into feed accounts through UpdateFeed and reads them back.

    `push` simulates first: a report the chain already has (or has a newer one of) comes back as
    `FeedNotNewer` without paying for a transaction; any other refusal raises `FeedPushError` with
    the program's error name. Every RPC goes through the endpoint pool the relayer's adapters use
    (adapters/endpoints.py): `rpc_urls` in order, failing over on transport errors, timeouts,
    429/5xx and unhealthy nodes; a transaction is re-sent as the same bytes, so it lands at most once."""

    def __init__(self, client: AsyncClient | Sequence[str], payer: Keypair, program_id: Pubkey,
                 committee_config: Pubkey | None = None, *, name: str = "solana",
                 commitment: Commitment = Confirmed, confirm_timeout_s: float = 60.0, rpc_timeout_s: float = 10.0,
                 owns_client: bool = False) -> None:
        if isinstance(client, AsyncClient):  # one client; closed here only with owns_client
            self.rpc = SolanaRpc.for_client(name, client, timeout=rpc_timeout_s, owns_client=owns_client)
        else:
            self.rpc = SolanaRpc(name, list(client), timeout=rpc_timeout_s)
        self.tx = SolanaTransactor(self.rpc, payer, name=name)
        self.payer = payer
        self.program_id = program_id
        self.committee_config = committee_config or committee_address(program_id)[0]
        self.name = name
        self.commitment = commitment
        self.confirm_timeout_s = confirm_timeout_s

    @classmethod
    def from_config(cls, name: str, chain: SolanaChain, payer: KeyRef | None = None,
                    **options: Any) -> "SolanaFeedTarget":
        """The target for `[chains.<name>]` (with `program_id`). `payer` is a `KeyRef` (the pusher's
        own key); without one the chain's `sender`, then its `signer`."""
        if chain.program_id is None:
            raise ConfigError(f"chains.{name}.program_id is not set: deploy the program and write its id")
        key = payer or chain.sender or chain.signer
        if key is None:
            raise ConfigError(
                f"no key to pay for feed updates on {name}: set the pusher's Solana key, or "
                f"chains.{name}.sender"
            )
        try:
            keypair = keypair_from_ref(key, f"the feed pusher's key on {name}")
        except SolanaAdapterError as exc:
            raise ConfigError(str(exc)) from None
        options.setdefault("name", name)
        return cls(chain.rpc_urls, keypair, Pubkey.from_string(chain.program_id), **options)

    async def close(self) -> None:
        await self.rpc.close()

    async def wallet_balances(self) -> dict[str, int]:
        return await self.tx.wallet_balances()

    def health(self) -> list[EndpointHealth]:
        return self.rpc.health()

    async def __aenter__(self) -> "SolanaFeedTarget":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def address(self, feed_id: str) -> Pubkey:
        return feed_address(self.program_id, feed_id)[0]

    async def latest(self, feed_id: str) -> FeedAccount | None:
        """The feed account as of `commitment`, or None before its first update."""
        # An address someone only sent lamports to is not a feed.
        data = await self.rpc.account_data(self.address(feed_id), self.program_id, self.commitment)
        return FeedAccount.decode(data) if data is not None else None

    async def push(self, signed: SignedReport) -> str | FeedNotNewer:
        """Sends UpdateFeed and waits for `commitment`. Returns the transaction signature, or
        `FeedNotNewer` when the chain already holds this round or a newer one."""
        if signed.root is not None:  # signed as a leaf of a feed root (v2): only the root update takes it
            return (await self.push_root([signed]))[signed.feed_id]
        ix = update_feed_ix(self.program_id, self.payer.pubkey(), signed, self.committee_config)
        try:
            sent = await self.tx.send([ix], cu_limit=UPDATE_FEED_CU_LIMIT)
            await self._confirm(*sent)
        except TransactionRefused as exc:
            # In preflight: the chain has this round already, or refuses the report. Landed but
            # failed: another pusher's update of the same round got in between.
            return await self._refused(signed, exc.err, exc.logs, exc.signature)
        except (FeedPushError, FeedAccountError):
            raise
        except Exception as exc:  # transport failures, timeouts, an expired blockhash: worth a retry
            raise FeedPushError(f"{self.name}: pushing {signed.feed_id} round {signed.round} failed: {exc!r}; "
                                f"check chains.{self.name}.rpc_urls and retry", retryable=True) from exc
        log.info("feed_pushed", target=self.name, feed=signed.feed_id, round=signed.round, tx=str(sent.signature))
        return str(sent.signature)

    def _tx_size(self, instructions: Sequence[Instruction], cu_limit: int) -> int:
        return transaction_size([set_compute_unit_limit(cu_limit), *instructions], self.payer.pubkey())

    def root_plan(self, reports: Sequence[SignedReport]) -> list[tuple[str, list[Instruction], int]]:
        """The transactions that put `reports` (served v2 reports of one feed root) on-chain: one
        UpdateFeeds when they are every leaf of the root and fit one transaction; else VerifyFeedRoot,
        as few UpdateFeedsWithProofs as fit, CloseFeedRoot (its rent back). (kind, instructions, CU limit)."""
        root_keys = {r.root_key for r in reports}
        if not reports or None in root_keys or len(root_keys) != 1:
            raise FeedPushError(f"{self.name}: UpdateFeeds takes reports of one feed root (version 2, the same epoch, "
                                "root and signature); push a v1 report with push()")
        first = reports[0]
        ordered = sorted(reports, key=lambda r: r.root.index)
        attestation = Attestation(first.epoch, first.signature, G1Hint.for_digest(first.digest))
        payer, root = self.payer.pubkey(), first.root_hash
        if [r.root.index for r in ordered] == list(range(first.root.leaf_count)):
            ix = raw_update_feeds_ix(self.program_id, payer, attestation, [r.report.encode() for r in ordered],
                                     committee_config=self.committee_config)
            if self._tx_size([ix], UPDATE_FEEDS_CU_LIMIT) <= PACKET_DATA_SIZE:
                return [("UpdateFeeds", [ix], UPDATE_FEEDS_CU_LIMIT)]
        plan = [("VerifyFeedRoot", [verify_feed_root_ix(self.program_id, payer, attestation, first.root.leaf_count,
                                                        root, self.committee_config)], UPDATE_FEED_CU_LIMIT)]
        chunk: list[tuple[int, Sequence[bytes], bytes]] = []
        for r in ordered:
            item = (r.root.index, list(r.root.proof), r.report.encode())
            ix = update_feeds_with_proofs_ix(self.program_id, payer, root, [*chunk, item])
            if chunk and self._tx_size([ix], UPDATE_FEEDS_WITH_PROOFS_CU_LIMIT) > PACKET_DATA_SIZE:
                plan.append(("UpdateFeedsWithProofs", [update_feeds_with_proofs_ix(self.program_id, payer, root, chunk)],
                             UPDATE_FEEDS_WITH_PROOFS_CU_LIMIT))
                chunk = [item]
            else:
                chunk.append(item)
        plan.append(("UpdateFeedsWithProofs", [update_feeds_with_proofs_ix(self.program_id, payer, root, chunk)],
                     UPDATE_FEEDS_WITH_PROOFS_CU_LIMIT))
        plan.append(("CloseFeedRoot", [close_feed_root_ix(self.program_id, payer, root, payer)],
                     CLOSE_FEED_ROOT_CU_LIMIT))
        return plan

    async def push_root(self, reports: Sequence[SignedReport],
                        riders: Sequence[SignedReport] = ()) -> dict[str, str | FeedNotNewer]:
        """Several feeds of one committee-signed feed root: one UpdateFeeds transaction (one pairing)
        when all of the root's reports fit one, else VerifyFeedRoot + UpdateFeedsWithProofs +
        CloseFeedRoot. Feeds whose report is not newer than the account are left out beforehand
        (the program skips any that became stale meanwhile); they come back as FeedNotNewer, the
        others with the signature of the transaction that carried them. Nothing newer: no transaction.
        `riders`: other reports of the root the caller holds but does not need on-chain; they go too
        (and are in the result) only when they complete the root into one UpdateFeeds, which is
        cheaper than the three transactions of the proof path."""
        stored = {}
        try:
            for r in [*reports, *riders]:
                stored[r.feed_id] = await self.latest(r.feed_id)
        except FeedAccountError:
            raise
        except Exception as exc:  # noqa: BLE001 - transport trouble
            raise FeedPushError(f"{self.name}: reading feed accounts failed: {exc!r}; check chains.{self.name}.rpc_urls",
                                retryable=True) from exc
        fresh, results = FeedNotNewer.split(self.name, reports, stored)
        if not fresh:
            return results
        plan = self.root_plan(fresh)
        fresh_riders = [r for r in riders if stored[r.feed_id] is None or stored[r.feed_id].round < r.round]
        if fresh_riders and len(plan) > 1:
            whole = self.root_plan([*fresh, *fresh_riders])
            if len(whole) == 1:  # the riders complete the root into one UpdateFeeds
                plan, fresh = whole, [*fresh, *fresh_riders]
        self.last_signatures: list[tuple[str, str]] = []
        carried: dict[str, str] = {}
        for kind, ixs, cu_limit in plan:
            try:
                sent = await self.tx.send(ixs, cu_limit=cu_limit)
                await self._confirm(*sent)
            except TransactionRefused as exc:
                code, _ = _program_error(exc.err)
                if kind == "VerifyFeedRoot" and code == ProgramErrorCode.FEED_ROOT_ALREADY_VERIFIED:
                    continue  # an earlier, interrupted push verified it: go on with the proofs
                if kind == "CloseFeedRoot":  # the feeds are updated; the rent can be claimed later
                    log.warning("feed_root_not_closed", target=self.name, error=str(exc))
                    continue
                if code == ProgramErrorCode.FEED_STALE_ROUND:  # none newer any more: someone was first
                    for r in fresh:
                        if r.feed_id not in carried:
                            latest = await self.latest(r.feed_id)
                            results[r.feed_id] = FeedNotNewer(self.name, r.feed_id, r.round,
                                                              latest.round if latest else None)
                    continue
                await self._refused(fresh[0], exc.err, exc.logs, exc.signature)
            except (FeedPushError, FeedAccountError):
                raise
            except Exception as exc:  # transport failures, timeouts, an expired blockhash: worth a retry
                raise FeedPushError(f"{self.name}: {kind} of a feed root failed: {exc!r}; "
                                    f"check chains.{self.name}.rpc_urls and retry", retryable=True) from exc
            self.last_signatures.append((kind, str(sent.signature)))
            if kind in ("UpdateFeeds", "UpdateFeedsWithProofs"):
                for ix in ixs:
                    for meta in ix.accounts[3:]:
                        for r in fresh:
                            if meta.pubkey == self.address(r.feed_id):
                                carried[r.feed_id] = str(sent.signature)
        for r in fresh:
            results.setdefault(r.feed_id, carried.get(r.feed_id) or FeedNotNewer(self.name, r.feed_id, r.round, None))
        log.info("feed_root_pushed", target=self.name, feeds=[r.feed_id for r in fresh], round=fresh[0].round,
                 transactions=[kind for kind, _ in self.last_signatures])
        return results

    async def _confirm(self, signature: Signature, last_valid_block_height: int) -> Any:
        """The transaction's status once it reached `commitment`; TransactionRefused when it failed,
        a retryable FeedPushError when its blockhash expired unlanded or confirm_timeout_s passed."""
        try:
            return await self.tx.confirm(SentTransaction(signature, last_valid_block_height),
                                         commitment=self.commitment, timeout=self.confirm_timeout_s)
        except TransactionRefused:
            raise
        except SolanaAdapterError as exc:  # expired or timed out
            raise FeedPushError(f"{exc}; pushing again", retryable=True) from None

    async def _refused(self, signed: SignedReport, err: Any, logs: list[str],
                       signature: Signature | None = None) -> FeedNotNewer:
        code, text = _program_error(err)
        if code == ProgramErrorCode.FEED_STALE_ROUND:
            stored = await self.latest(signed.feed_id)
            result = FeedNotNewer(self.name, signed.feed_id, signed.round, stored.round if stored else None)
            log.info("feed_not_newer", target=self.name, feed=signed.feed_id, round=signed.round,
                     stored_round=result.stored_round)
            return result
        hint = _HINTS.get(code, "see contracts/solana/README.md \"Feeds\"") if code is not None else \
            f"the transaction failed before the program ran: is {self.payer.pubkey()} funded?"
        where = f" (tx {signature})" if signature else ""
        tail = ("\n" + "\n".join(logs[-6:])) if logs else ""
        raise FeedPushError(
            f"{self.name}: UpdateFeed for {signed.feed_id} round {signed.round} refused{where}: {text}; {hint}{tail}",
            code=ProgramErrorCode(code) if code in ProgramErrorCode._value2member_map_ else code,
            # A report of a new epoch can arrive before the chain's committee rotation does; errors
            # before the program ran (blockhash not found, payer out of lamports) may clear up too.
            retryable=code is None or code == ProgramErrorCode.EPOCH_UNKNOWN,
        )
