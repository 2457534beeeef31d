"""The Solana chain adapter: watches the Tessera program's outbox (Send) and delivers envelopes to
its gateway (Deliver), behind `relay.interfaces.ChainAdapter`. Program side: contracts/solana/README.md.

Finality is the configured commitment (`finalized` by default): `watch`, `reobserve`, `find_nonce`,
`is_delivered` and `delivery_status` only report what reached it. On the localnet server, finalized
trails the tip by `--finality-slots` slots.

- watch: `getSignaturesForAddress(program_id, until=cursor)` pages, oldest first, then
  `getTransaction` per successful transaction (up to 100 per JSON-RPC batch, one HTTP round trip:
  `SolanaRpc.transaction`); envelopes come from the `TESSERA_SENT` log lines our
  program wrote, decoded and checked (src_domain = this chain's domain). The cursor is the signature
  of the last transaction whose envelopes were all yielded; task protocol v2's RequestTask v2 and
  SubmitResult v2 (tags 35, 37) are read from the task / serve account they stored the envelope in
  (log lines can be truncated by padding: issue 12, attack 7); `None` (or "") starts from the oldest
  transaction the node still has. A `logsSubscribe` (mentions program_id, at the commitment) wakes
  the loop; polling every `poll_interval` takes over while the WebSocket is down, and every
  `idle_poll_interval` otherwise. RPC outages are logged and retried: watch runs forever.
- submit: Deliver with a compute-budget limit, a fresh blockhash (confirmed) and **no preflight**, so a
  refused delivery (another relayer won, a bad signature) lands as a failed transaction whose program
  error `delivery_status` names (REVERTED "ALREADY_DELIVERED ..."). The blockhash's last valid block
  height is remembered per signature (in memory: after a restart an unknown signature stays PENDING
  and the pipeline's submitted timeout takes over).
- delivery_status: CONFIRMED / REVERTED once the status reached the commitment; DROPPED when the node
  does not know the signature and the block height at the commitment passed the last valid height
  (it can never land then); PENDING otherwise.
- is_delivered: the receipt PDA ["delivered", message_id] exists at the commitment.
- Deliveries to the task board carry its accounts (`board_accounts`): v1 from the payload, v2
  results and verdicts the task (found by request id with getProgramAccounts) or serve account and
  every account they pay. A failing handler fails the whole Deliver: `retry_failed` has nothing to do.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from solana.rpc.commitment import Commitment, Confirmed
from solders.compute_budget import set_compute_unit_limit
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction

from adapters.endpoints import AllEndpointsFailed
from adapters.solana.program import (
    Attestation,
    DeliveryReceipt,
    G1Hint,
    ProgramErrorCode,
    ProgramInstruction,
    ROOT_MAGIC,
    RootAccount,
    ServeAccount,
    SolanaProgramError,
    TaskAccountV2,
    RECEIPT_STATUS_SERVE_CLOSED,
    board_delivery_accounts,
    close_receipt_ix,
    closed_serve_verdict_accounts,
    closed_task_delivery_accounts,
    is_task_tombstone,
    task_tombstone_filters,
    close_root_ix,
    deliver_ix,
    deliver_with_proof_ix,
    describe_transaction_error,
    program_error_code,
    root_address,
    verify_root_ix,
    is_v2_result,
    is_v2_verdict,
    receipt_address,
    receipt_closable,
    REPLAY_ACCOUNT_LEN,
    REPLAY_WINDOW_BITS,
    replay_address,
    replay_bit_set,
    result_v2_delivery_accounts,
    send_ix,
    sent_envelopes_of,
    serve_address,
    task_v2_filters,
    taskboard_address,
    verdict_delivery_accounts,
)
from adapters.solana.rpc import (
    SIGNATURE_PAGE,
    keypair_from_ref,
    LogsWaker,
    SolanaAdapterError,
    SolanaRpc,
    commitment_level,
    confirmation_level,
    follow_address,
    is_retryable,
)
from adapters.solana.fee_program import send_paid_ix
from adapters.solana.fees import SolanaGatewayFees
from adapters.solana.tx import PACKET_DATA_SIZE, SolanaTransactor, TransactionRefused, transaction_size
from relay.config import SolanaChain
from relay.envelope import Envelope, EnvelopeError
from relay.interfaces import (ChainIdentity, DeliveryState, DeliveryStatus, EndpointHealth, MessageStatus, Observation,
                              ReceiptClose, ReceiptInfo, SignedBatch, SignedDelivery)
from relay.log import get_logger

__all__ = ["SolanaAdapter"]

log = get_logger("adapters.solana")

# Deliver measured ~64k CU (README.md); the limit leaves room for a slower PDA bump search.
DELIVER_CU_LIMIT = 120_000
SEND_CU_LIMIT = 60_000
# Batches (README "Batches and closing"): VerifyRoot ~66k CU; DeliverWithProof 8.3k mean, 13.3k max at
# batch 64 (the receipt's bump search), more with the task board's handling.
VERIFY_ROOT_CU_LIMIT = 120_000
DELIVER_WITH_PROOF_CU_LIMIT = 100_000
CLOSE_CU_LIMIT = 20_000

def proof_delivery_cu_limit(ix: Instruction, payer: Pubkey) -> int | None:
    """The CU limit to send a DeliverWithProof with: DELIVER_WITH_PROOF_CU_LIMIT when the transaction
    with its compute-budget instruction fits PACKET_DATA_SIZE; None (no compute-budget instruction:
    the runtime's default of 200k CU per instruction is above what it needs) when only the bare
    transaction fits. The committee config (the pause switch) made the largest delivery — a 512-byte
    payload to the task board with its 4 board accounts, at proof depth 6 — 1,264 bytes with the
    compute-budget instruction, 1,224 without it. The batch carries one root signature, no
    per-message one, so there is no single Deliver to fall back to: anything that fits neither way
    raises (relay.batch.MAX_BATCH_DEPTH and the 512-byte payload cap keep every allowed delivery
    within the bare size; tests/unit/test_solana_batch.py builds the largest)."""
    if transaction_size([set_compute_unit_limit(DELIVER_WITH_PROOF_CU_LIMIT), ix], payer) <= PACKET_DATA_SIZE:
        return DELIVER_WITH_PROOF_CU_LIMIT
    size = transaction_size([ix], payer)
    if size <= PACKET_DATA_SIZE:
        return None
    raise SolanaAdapterError(f"a DeliverWithProof transaction would be {size} bytes, over the "
                             f"{PACKET_DATA_SIZE}-byte limit")


class SolanaAdapter(SolanaGatewayFees):
    def __init__(
        self,
        name: str,
        chain: SolanaChain,
        signer: Keypair | None = None,
        *,
        poll_interval: float = 1.0,
        idle_poll_interval: float = 10.0,
        rpc_timeout: float = 10.0,
        pool_attempts: int = 4,
        pool_base_delay: float = 0.2,
    ) -> None:
        if chain.program_id is None:
            raise SolanaAdapterError(f"chains.{name}.program_id is not set: deploy the program and write its id")
        self.name = name
        self.domain = chain.domain
        self.chain = chain
        self.program_id = Pubkey.from_string(chain.program_id)
        self.commitment: Commitment = chain.commitment  # type: ignore[assignment]
        self.signer = signer
        self.poll_interval = poll_interval
        self.idle_poll_interval = idle_poll_interval
        self.rpc = SolanaRpc(name, chain.rpc_urls, timeout=rpc_timeout, attempts=pool_attempts,
                             base_delay=pool_base_delay)
        self.tx = SolanaTransactor(self.rpc, signer, name=name, no_payer_hint=(
            f"chains.{name}.signer is not set: the adapter needs a funded keypair to send transactions"))
        self.logs = LogsWaker(name, chain.ws_urls, self.program_id, self.commitment)
        self._tasks_v2: dict[bytes, tuple[Pubkey, TaskAccountV2]] = {}
        self._bitmap_rent: int | None = None  # a replay bitmap's rent (fixed size): asked once

    @classmethod
    def from_config(cls, name: str, chain: SolanaChain, **options: Any) -> "SolanaAdapter":
        """Reads the signer the config points at (file or env variable); watch-only without one."""
        signer = keypair_from_ref(chain.signer, f"chains.{name}.signer") if chain.signer else None
        return cls(name, chain, signer, **options)

    @property
    def ws_connected(self) -> bool:
        """Whether the program's logs subscription is up (watch polls while it is not)."""
        return self.logs.connected

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        await self.rpc.close()

    async def __aenter__(self) -> "SolanaAdapter":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def wallet_balances(self) -> dict[str, int]:
        return await self.tx.wallet_balances()

    def health(self) -> list[EndpointHealth]:
        return self.rpc.health()

    async def chain_identity(self) -> ChainIdentity:
        genesis = (await self.rpc.call("getGenesisHash", lambda c: c.get_genesis_hash())).value
        return ChainIdentity("solana", "", str(genesis))

    async def cursor_problem(self, cursor: str) -> str | None:
        if not cursor:  # "": from the oldest transaction the node has
            return None
        try:
            signature = Signature.from_string(cursor)
        except ValueError:
            return f"its cursor {cursor!r} is not a transaction signature"
        if await self.rpc.signature_status(signature) is None:
            return f"its cursor is transaction {cursor}, which this chain does not know"
        return None

    # ----- source side ---------------------------------------------------------------------

    async def watch(self, cursor: str | None) -> AsyncIterator[Observation]:  # type: ignore[override]
        async for observation in follow_address(
                self.rpc, self.program_id, cursor, self._observations, commitment=self.commitment, logs=self.logs,
                poll_interval=self.poll_interval, idle_poll_interval=self.idle_poll_interval, what="program"):
            yield observation

    async def _observations(self, signature: Signature, cursor_before: str) -> list[Observation] | None:
        """The checked envelopes of one transaction; None when the node does not serve it at the
        commitment (yet), [] when it failed or sent nothing."""
        tx = await self.rpc.transaction(signature, self.commitment, encoding="base64")
        if tx is None:
            return None
        meta = tx.transaction.meta
        if meta is None or meta.err is not None:
            return []
        raw_tx = tx.transaction.transaction
        # Task protocol v2 stores what RequestTask v2 / SubmitResult v2 send in the task / serve
        # account: read there, a padded transaction whose log line was truncated loses nothing
        # (issue 12, attack 7). Other sends come from the program's log lines.
        stored = await self._stored_envelopes(raw_tx, signature) if isinstance(raw_tx, VersionedTransaction) else []
        logged = sent_envelopes_of(meta.log_messages or [], self.program_id)
        by_id: dict[bytes, Envelope] = {}
        for raw in [*stored, *logged]:
            try:
                envelope = Envelope.decode(raw)
            except EnvelopeError as exc:
                log.error("undecodable envelope in a Send; skipped", chain=self.name, tx=str(signature), error=str(exc))
                continue
            if envelope.src_domain != self.domain:
                log.error("envelope with another source domain; skipped (is program_id or domain misconfigured?)",
                          chain=self.name, tx=str(signature), src_domain=envelope.src_domain, domain=self.domain)
                continue
            by_id.setdefault(envelope.message_id, envelope)
        envelopes = sorted(by_id.values(), key=lambda e: e.nonce)
        # Only the last envelope of a transaction moves the cursor past it: resuming from an earlier
        # one re-reads the whole transaction (at-least-once), never skips its remaining envelopes.
        return [
            Observation(envelope=e, source_tx=str(signature), position=tx.slot,
                        cursor=str(signature) if i == len(envelopes) - 1 else cursor_before,
                        block_time=tx.block_time)
            for i, e in enumerate(envelopes)
        ]

    async def _stored_envelopes(self, tx: VersionedTransaction, signature: Signature) -> list[bytes]:
        """The envelopes of the transaction's top-level RequestTask v2 (35) and SubmitResult v2 (37)
        instructions, read from the account each wrote them to (account index 1: the task, the serve
        account) at the commitment. A serve account keeps only its last result: when it holds
        another payload than this instruction sent (a later result after a refused verdict), the
        log line is the only source left (logged when it is missing too)."""
        message = tx.message
        keys = list(message.account_keys)
        found: list[bytes] = []
        for ix in message.instructions:
            data = bytes(ix.data)
            if (ix.program_id_index >= len(keys) or keys[ix.program_id_index] != self.program_id or not data
                    or data[0] not in (ProgramInstruction.TASK_REQUEST_V2, ProgramInstruction.TASK_SUBMIT_RESULT_V2)
                    or len(ix.accounts) < 2 or ix.accounts[1] >= len(keys)):
                continue
            account = keys[ix.accounts[1]]
            stored = await self.rpc.account_data(account, self.program_id, self.commitment)
            if data[0] == ProgramInstruction.TASK_REQUEST_V2 and stored is not None and (
                    not stored or is_task_tombstone(stored)):
                # Settled and closed since (CloseTask's tombstone, or the 0-byte one before it):
                # nothing wrong, the log line is the source now.
                log.info("task account closed since the request; its envelope is read from the logs",
                         chain=self.name, tx=str(signature), account=str(account))
                continue
            try:
                if data[0] == ProgramInstruction.TASK_REQUEST_V2:
                    raw = TaskAccountV2.decode(stored).envelope if stored is not None else b""
                    sent_payload = data[1 + 8 + 4 + 32:]
                else:
                    raw = (ServeAccount.decode(stored).result_envelope or b"") if stored is not None else b""
                    sent_payload = data[1:]
                if raw and Envelope.decode(raw).payload == sent_payload:
                    found.append(raw)
                    continue
            except (SolanaProgramError, EnvelopeError) as exc:
                log.error("undecodable task account; its envelope is read from the logs", chain=self.name,
                          tx=str(signature), account=str(account), error=str(exc))
                continue
            log.warning("the account no longer holds this transaction's envelope; read from the logs",
                        chain=self.name, tx=str(signature), account=str(account))
        return found

    async def reobserve(self, source_tx: str) -> list[Observation]:
        try:
            signature = Signature.from_string(source_tx)
        except ValueError:
            raise SolanaAdapterError(f"{source_tx!r} is not a base58 Solana transaction signature") from None
        return await self._observations(signature, cursor_before="") or []

    async def find_nonce(self, nonce: int) -> Observation | None:
        before: Signature | None = None
        while True:
            page = await self.rpc.signatures_page(self.program_id, self.commitment, before=before)
            for item in page:
                if item.err is not None:
                    continue
                observations = await self._observations(item.signature, cursor_before="") or []
                for observation in observations:
                    if observation.envelope.nonce == nonce:
                        return observation
                # Nonces grow with time; once older than the target it is not further back.
                if observations and min(o.envelope.nonce for o in observations) < nonce:
                    return None
            if len(page) < SIGNATURE_PAGE:
                return None
            before = page[-1].signature

    # ----- destination side ----------------------------------------------------------------

    async def is_delivered(self, message_id: bytes, envelope: Envelope | None = None) -> bool:
        """The receipt PDA holds this message; or, given its envelope, the receipt was closed after
        the delivery (the message's bit in its replay bitmap) — both read in one getMultipleAccounts."""
        receipt = receipt_address(self.program_id, message_id)[0]
        if envelope is None or envelope.message_id != message_id:
            return self._is_receipt_of(await self.rpc.account_data(receipt, self.program_id, self.commitment),
                                       message_id)
        bitmap = replay_address(self.program_id, envelope.src_domain, envelope.nonce)
        accounts = await self.rpc.accounts([receipt, bitmap], self.commitment)  # shared with concurrent callers
        receipt_data, bitmap_data = (bytes(a.data) if a is not None and a.owner == self.program_id else None
                                     for a in accounts)
        return self._is_receipt_of(receipt_data, message_id) or (
            bitmap_data is not None and replay_bit_set(bitmap_data, envelope.nonce))

    @staticmethod
    def _is_receipt_of(data: bytes | None, message_id: bytes) -> bool:
        if data is None:
            return False
        try:
            return DeliveryReceipt.decode(data).message_id == message_id
        except SolanaProgramError:
            return False

    async def message_status(self, message_id: bytes, envelope: Envelope | None = None) -> MessageStatus:
        # The program records a delivery only together with its handling (bad content never blocks
        # it), so there is no "handler failed" state on Solana.
        delivered = await self.is_delivered(message_id, envelope)
        return MessageStatus.DELIVERED if delivered else MessageStatus.NOT_DELIVERED

    def _require_signer(self) -> Keypair:
        return self.tx.require_payer()

    async def submit(self, delivery: SignedDelivery) -> str:
        raw = delivery.envelope.encode()
        attestation = Attestation.for_envelope(raw, delivery.epoch, delivery.signature)
        ix = deliver_ix(self.program_id, self._require_signer().pubkey(), attestation, raw)
        # Deliveries to the task board carry its accounts (board, task, payout, ...).
        extra = await self.board_accounts(delivery.envelope)
        if extra:
            ix = Instruction(ix.program_id, ix.data, [*ix.accounts, *extra])
        # No preflight: a refused delivery (already delivered by another relayer, bad signature) lands
        # as a failed transaction whose program error delivery_status reports.
        sent = await self.tx.send([ix], cu_limit=DELIVER_CU_LIMIT, preflight=False)
        signature = str(sent.signature)
        log.info("solana delivery submitted", chain=self.name, msg_id=delivery.envelope.message_id.hex(), tx=signature)
        return signature

    async def board_accounts(self, envelope: Envelope) -> list[AccountMeta]:
        """The accounts a Deliver of `envelope` to the task board needs after its usual four
        (contracts/solana/README.md "Task board v2"): for a TASK_RESULT v2 the requester's task
        (found by its request id), the payout and the requester; for a verdict the serve account,
        claimant and refund_to when this chain serves the request, else the task, the result's
        receipt, payout and requester. Anything else (a request; a retired v1 result or attestation,
        which the program ignores): `board_delivery_accounts`. A record closed since (CloseTask /
        CloseServe): the task's tombstone, or the empty serve address and the request's receipt
        marked serve-closed — the program records such a late delivery as a no-op. When the record is
        not found the delivery gets the board only and the program refuses it (retryable), never
        records it."""
        if envelope.dst_receiver != bytes(taskboard_address(self.program_id)):
            return []
        if is_v2_verdict(envelope):
            request_id = envelope.payload[:32]
            data = await self.rpc.account_data(serve_address(self.program_id, request_id), self.program_id,
                                               Confirmed)
            if data is not None:
                serve = ServeAccount.decode(data)
                if serve.claimant is not None:
                    return verdict_delivery_accounts(self.program_id, envelope, claimant=serve.claimant,
                                                     refund_to=serve.refund_to)
            found = await self.task_v2(request_id)
            if found is not None:
                return verdict_delivery_accounts(self.program_id, envelope, task=found[0],
                                                 requester=found[1].requester)
            return await self._closed_record_accounts(envelope, serving=data is None)
        if is_v2_result(envelope):
            found = await self.task_v2(envelope.payload[:32])
            if found is not None:
                return result_v2_delivery_accounts(self.program_id, envelope, task=found[0],
                                                   requester=found[1].requester)
            return await self._closed_record_accounts(envelope, serving=False)
        return board_delivery_accounts(self.program_id, envelope)

    async def _closed_record_accounts(self, envelope: Envelope, *, serving: bool) -> list[AccountMeta]:
        """A late result or verdict whose live record is gone: the tombstone CloseTask left of the
        request's task, else (a verdict, `serving`: no serve account either) the empty serve address
        with the request's receipt when that receipt says CloseServe closed it; else the board only
        (the program refuses that, retryably). A task cached by `task_v2` keeps its address, which is
        the tombstone's: the program takes the tombstone whatever accounts follow it."""
        request_id = envelope.payload[:32]
        accounts = (await self.rpc.call("getProgramAccounts", lambda c: c.get_program_accounts(
            self.program_id, Confirmed, encoding="base64", filters=task_tombstone_filters(request_id)))).value
        for keyed in accounts:
            if is_task_tombstone(bytes(keyed.account.data), request_id):
                return closed_task_delivery_accounts(self.program_id, keyed.pubkey)
        if serving:
            stored = await self.rpc.account_data(receipt_address(self.program_id, request_id)[0], self.program_id,
                                                 Confirmed)
            try:
                closed = stored is not None and DeliveryReceipt.decode(stored).status == RECEIPT_STATUS_SERVE_CLOSED
            except SolanaProgramError:
                closed = False
            if closed:
                return closed_serve_verdict_accounts(self.program_id, envelope)
        return [AccountMeta(taskboard_address(self.program_id), False, False)]

    async def task_v2(self, request_id: bytes) -> tuple[Pubkey, TaskAccountV2] | None:
        """The v2 task account of a request sent from this chain (getProgramAccounts by request id;
        cached: a task's address and requester never change)."""
        cached = self._tasks_v2.get(request_id)
        if cached is not None:
            return cached
        accounts = (await self.rpc.call("getProgramAccounts", lambda c: c.get_program_accounts(
            self.program_id, Confirmed, encoding="base64", filters=task_v2_filters(request_id)))).value
        for keyed in accounts:
            try:
                task = TaskAccountV2.decode(bytes(keyed.account.data))
            except SolanaProgramError:
                continue
            if task.request_id == request_id:
                self._tasks_v2[request_id] = (keyed.pubkey, task)
                return keyed.pubkey, task
        return None

    async def retry_failed(self, envelope: Envelope) -> str:
        """A failing handler fails the whole Deliver on Solana (nothing is recorded): there is never a
        failed message to retry; deliver it again with `submit`."""
        raise SolanaAdapterError(
            f"{self.name}: message 0x{envelope.message_id.hex()}: a Solana delivery whose handler fails is not "
            "recorded, so there is nothing to retry; submit it again")

    # ----- batches (docs/PROTOCOL.md "Batch attestations"; README "Batches and closing") -----

    async def submit_batch(self, batch: SignedBatch, indices: list[int]) -> dict[int, str]:
        """VerifyRoot (one pairing) unless the root account exists, confirmed before anything uses it;
        then one DeliverWithProof per index, sent concurrently without preflight (a refused one lands
        failed and `delivery_status` names the error, as for `submit`)."""
        payer = self._require_signer()
        tree = batch.batch
        root = tree.root
        if not await self._root_usable(root, payer):
            attestation = Attestation(batch.epoch, batch.signature, G1Hint.for_digest(tree.digest(batch.epoch)))
            ix = verify_root_ix(self.program_id, payer.pubkey(), attestation, src_domain=tree.src_domain,
                                leaf_count=len(tree.envelopes), root=root)
            try:
                signature = await self.tx.transact([ix], cu_limit=VERIFY_ROOT_CU_LIMIT, commitment=Confirmed,
                                                   timeout=30.0)
            except TransactionRefused as exc:
                if program_error_code(exc.err) != ProgramErrorCode.ROOT_ALREADY_VERIFIED:  # (a race: fine)
                    raise SolanaAdapterError(f"{self.name}: VerifyRoot of root 0x{root.hex()} refused: "
                                             f"{describe_transaction_error(exc.err)}") from exc
            else:
                log.info("solana root verified", chain=self.name, root=root.hex(), count=len(tree.envelopes),
                         tx=str(signature))

        async def instruction(index: int) -> Instruction:
            envelope = tree.envelopes[index]
            extra = await self.board_accounts(envelope)
            return deliver_with_proof_ix(self.program_id, payer.pubkey(), root, index, tree.proof(index),
                                         envelope.encode(), extra)

        built = await asyncio.gather(*(instruction(i) for i in indices), return_exceptions=True)
        for result in built:
            if isinstance(result, BaseException) and not isinstance(result, Exception):
                raise result
        ready = [(i, ix) for i, ix in zip(indices, built) if not isinstance(ix, BaseException)]
        # One blockhash, the signed deliveries sent in JSON-RPC batches (SolanaTransactor.send_many);
        # the largest deliveries fit only without the compute-budget instruction (see the helper).
        outcomes = await self.tx.send_many([([ix], proof_delivery_cu_limit(ix, payer.pubkey())) for _, ix in ready])
        results: dict[int, Any] = {i: r for i, r in zip(indices, built) if isinstance(r, BaseException)}
        results.update({i: outcome for (i, _), outcome in zip(ready, outcomes)})
        sent: dict[int, str] = {}
        for index in indices:
            result = results[index]
            if isinstance(result, BaseException):
                log.warning("solana proof delivery not sent", chain=self.name, root=root.hex(), index=index,
                            msg_id=tree.envelopes[index].message_id.hex(), error=f"{type(result).__name__}: {result}")
            else:
                sent[index] = str(result.signature)
        if not sent:
            first = next(r for r in results.values() if isinstance(r, BaseException))
            raise SolanaAdapterError(f"{self.name}: no delivery of root 0x{root.hex()} could be sent: {first}")
        log.info("solana batch deliveries submitted", chain=self.name, root=root.hex(), sent=len(sent),
                 of=len(indices))
        return sent

    async def _root_usable(self, root: bytes, payer: Keypair) -> bool:
        """Whether `root`'s account holds a live verified root of the current layout (then no pairing is
        paid again). Anything else at its address is verified again: nothing (never verified, or
        closed), an account revived after its close (zeroed data: VerifyRoot refits it), or a root of
        the layout before the pause check (version 1), which DeliverWithProof refuses — closed first
        when this relayer paid for it (CloseRoot takes it back; someone else's waits for its
        retention, and VerifyRoot then says why)."""
        data = await self.rpc.account_data(root_address(self.program_id, root), self.program_id, Confirmed)
        if data is None:
            return False
        try:
            RootAccount.decode(data)
            return True
        except SolanaProgramError:
            pass
        if data[:8] == ROOT_MAGIC and len(data) >= 68 and data[36:68] == bytes(payer.pubkey()):
            try:
                await self.tx.transact([close_root_ix(self.program_id, payer.pubkey(), root, payer.pubkey())],
                                       cu_limit=CLOSE_CU_LIMIT, commitment=Confirmed, timeout=30.0)
                log.info("solana root of an older layout closed before verifying again", chain=self.name,
                         root=root.hex())
            except TransactionRefused as exc:
                log.warning("solana root of an older layout not closed", chain=self.name, root=root.hex(),
                            error=describe_transaction_error(exc.err))
        return False

    async def close_batch(self, batch: SignedBatch) -> None:
        """CloseRoot: the root account's rent back to the relayer (its payer); only when it exists and
        this relayer paid for it (another relayer's root is that relayer's to close)."""
        root = batch.batch.root
        address = root_address(self.program_id, root)
        data = await self.rpc.account_data(address, self.program_id, Confirmed)
        if data is None:
            return
        payer = self._require_signer()
        try:
            account = RootAccount.decode(data)
        except SolanaProgramError:
            return
        if account.payer != payer.pubkey():
            return
        signature = await self.tx.transact([close_root_ix(self.program_id, payer.pubkey(), root, payer.pubkey())],
                                           cu_limit=CLOSE_CU_LIMIT, commitment=Confirmed, timeout=30.0)
        log.info("solana root closed", chain=self.name, root=root.hex(), tx=str(signature))

    async def delivery_status(self, tx_id: str, message_id: bytes | None = None) -> DeliveryStatus:
        # One transaction delivers one message on Solana (DeliverWithProof too): message_id adds nothing.
        signature = Signature.from_string(tx_id)
        status = await self.rpc.signature_status(signature)
        if status is None:
            last_valid = self.tx.last_valid_height(tx_id)
            if last_valid is None:
                return DeliveryStatus(DeliveryState.PENDING, "unknown to the node and to this adapter")
            height = await self.rpc.block_height(self.commitment)
            if height <= last_valid:
                return DeliveryStatus(DeliveryState.PENDING, f"not seen yet; blockhash valid until height {last_valid}")
            # The blockhash expired at our commitment: it can no longer land. Ask once more in case
            # it landed just before.
            status = await self.rpc.signature_status(signature)
            if status is None:
                return DeliveryStatus(DeliveryState.DROPPED,
                                      f"blockhash expired (height {height} > last valid {last_valid})")
        reached = confirmation_level(status.confirmation_status) >= commitment_level(self.commitment)
        if not reached:
            return DeliveryStatus(DeliveryState.PENDING,
                                  f"at {status.confirmation_status}, waiting for {self.commitment}")
        if status.err is not None:
            return DeliveryStatus(DeliveryState.REVERTED, describe_transaction_error(status.err))
        return DeliveryStatus(DeliveryState.CONFIRMED, f"slot {status.slot}")

    # ----- SDK -----------------------------------------------------------------------------

    async def send_message(self, dst_domain: int, receiver: bytes, kind: int, payload: bytes,
                           timeout: float = 60.0) -> tuple[Envelope, str]:
        """Sends one message through the gateway as the adapter's signer; waits until confirmed and
        returns the envelope the program built (with its nonce) and the transaction signature."""
        signer = self._require_signer()
        Envelope(kind=kind, nonce=0, src_domain=self.domain, src_sender=bytes(signer.pubkey()),
                 dst_domain=dst_domain, dst_receiver=receiver, payload=payload)  # refuse bad input before paying
        paid = await self.send_accounts(dst_domain, len(payload))  # fees.py: max_fee = the quote now
        if paid is None:
            ix = send_ix(self.program_id, signer.pubkey(), dst_domain=dst_domain, receiver=receiver, kind=kind,
                         payload=payload)
        else:
            ix = send_paid_ix(self.program_id, signer.pubkey(), dst_domain=dst_domain, receiver=receiver, kind=kind,
                              payload=payload, max_fee=paid[0], dst_feed=paid[1], sol_feed=paid[2])
        try:
            sig = await self.tx.transact([ix], cu_limit=SEND_CU_LIMIT, commitment=Confirmed, timeout=timeout)
        except TransactionRefused as exc:
            if exc.signature is None:
                raise SolanaAdapterError(f"{self.name}: the gateway refused the message: {exc}") from exc
            raise SolanaAdapterError(f"{self.name}: send {exc.signature} failed: "
                                     f"{describe_transaction_error(exc.err)}") from exc
        except (AllEndpointsFailed, SolanaAdapterError):
            raise
        except Exception as exc:
            if is_retryable(exc):
                raise
            raise SolanaAdapterError(f"{self.name}: the gateway refused the message: {exc}") from exc
        signature = str(sig)
        tx = await self.rpc.transaction(sig, Confirmed)
        envelopes = sent_envelopes_of(tx.transaction.meta.log_messages or [], self.program_id)
        if len(envelopes) != 1:
            raise SolanaAdapterError(f"{self.name}: send {signature} emitted {len(envelopes)} envelopes, expected 1")
        envelope = Envelope.decode(envelopes[0])
        returned = tx.transaction.meta.return_data
        if returned is not None and bytes(returned.data)[:32] != envelope.message_id:
            raise SolanaAdapterError(f"{self.name}: send {signature}: logged envelope and returned message id differ")
        return envelope, signature

    async def delivery_tx(self, message_id: bytes) -> str | None:
        """The transaction that delivered `message_id` (the oldest successful one touching its
        receipt), at the adapter's commitment; None if it was not delivered."""
        address = receipt_address(self.program_id, message_id)[0]
        found: str | None = None
        before: Signature | None = None
        while True:
            page = await self.rpc.signatures_page(address, self.commitment, before=before)
            for item in page:
                if item.err is None:
                    found = str(item.signature)
            if len(page) < SIGNATURE_PAGE:
                return found
            before = page[-1].signature

    # ----- receipts whose rent comes back (relay.interfaces.ReceiptCloser; batch.c CloseReceipt) -----

    def receipt_payer(self) -> bytes | None:
        """The key this adapter pays delivery receipts with (the relayer's signer)."""
        return bytes(self.signer.pubkey()) if self.signer is not None else None

    async def _accounts_at(self, addresses: list[Pubkey]) -> list[Any]:
        """getMultipleAccounts (confirmed) in pages of 100: each account or None, in order."""
        found: list[Any] = []
        for start in range(0, len(addresses), 100):
            page = addresses[start:start + 100]
            found.extend((await self.rpc.call("getMultipleAccounts", lambda c, page=page: c.get_multiple_accounts(
                page, Confirmed, encoding="base64"))).value)
        return found

    async def receipt_infos(self, envelopes: list[Envelope]) -> dict[bytes, ReceiptInfo | None]:
        """By message id, what its receipt PDA says (payer, delivery time, rent, closable); None when
        there is no receipt of ours at the address (not delivered, or closed)."""
        addresses = [receipt_address(self.program_id, e.message_id)[0] for e in envelopes]
        infos: dict[bytes, ReceiptInfo | None] = {}
        for envelope, account in zip(envelopes, await self._accounts_at(addresses)):
            info = None
            if account is not None and account.owner == self.program_id:
                try:
                    receipt = DeliveryReceipt.decode(bytes(account.data))
                except SolanaProgramError:
                    receipt = None
                if receipt is not None and receipt.message_id == envelope.message_id:
                    info = ReceiptInfo(payer=bytes(receipt.relayer), delivered_at=receipt.unix_time,
                                       lamports=account.lamports,
                                       closable=receipt_closable(self.program_id, Envelope.decode(receipt.envelope)))
            infos[envelope.message_id] = info
        return infos

    async def close_receipts(self, envelopes: list[Envelope], *, closer: Keypair | None = None,
                             only_own: bool = True) -> dict[bytes, ReceiptClose]:
        """CloseReceipt for each envelope, as many per transaction as fit in 1,232 bytes, sent with
        preflight and confirmed. `closer` (default: the adapter's signer, which pays the fees) signs
        and pays for a new replay bitmap; it may close its own receipts at any time when it is the
        receiver, anyone's once the program's retention passed. With `only_own` (the relayer) a
        receipt another key paid for is left alone ("foreign"). A refusal names the instruction:
        that receipt gets its outcome (NOT_A_RECEIPT: "already_closed", CLOSE_TOO_EARLY:
        "too_early", else "failed") and the rest go again."""
        payer = self._require_signer()
        closer = closer or payer
        infos = await self.receipt_infos(envelopes)
        results: dict[bytes, ReceiptClose] = {}
        pending: list[tuple[Envelope, ReceiptInfo]] = []
        for envelope in envelopes:
            info = infos.get(envelope.message_id)
            if info is None:
                results[envelope.message_id] = ReceiptClose("already_closed", detail="no receipt account")
            elif not info.closable:
                results[envelope.message_id] = ReceiptClose("failed", detail="the program keeps this receipt "
                                                            "(a delivery to the task board or a committee message)")
            elif only_own and info.payer != bytes(payer.pubkey()):
                results[envelope.message_id] = ReceiptClose("foreign", detail=f"paid by {Pubkey.from_bytes(info.payer)}")
            else:
                pending.append((envelope, info))
        if only_own and pending:
            pending = await self._worth_closing(pending, results)
        extra = [closer] if closer.pubkey() != payer.pubkey() else []
        while pending:
            group = self._receipts_that_fit(pending, payer, closer)
            ixs = [close_receipt_ix(self.program_id, closer.pubkey(), e, Pubkey.from_bytes(i.payer)) for e, i in group]
            try:
                signature = await self.tx.transact(ixs, cu_limit=_close_receipts_cu(len(group)), signers=extra,
                                                   commitment=Confirmed, timeout=30.0)
            except TransactionRefused as exc:
                index = getattr(exc.err, "index", None)
                if isinstance(index, int) and 1 <= index <= len(group):  # (0 is the compute budget)
                    envelope, _ = group[index - 1]
                    code = program_error_code(exc.err)
                    outcome = {ProgramErrorCode.NOT_A_RECEIPT: "already_closed",
                               ProgramErrorCode.CLOSE_TOO_EARLY: "too_early"}.get(code, "failed")  # type: ignore[call-overload]
                    detail = describe_transaction_error(exc.err)
                    results[envelope.message_id] = ReceiptClose(outcome, detail=detail)
                    refused = group[index - 1][1].delivered_at
                    if outcome == "too_early":  # any delivered later is too early as well: not asked one by one
                        for other, info in pending:
                            if info.delivered_at >= refused:
                                results[other.message_id] = ReceiptClose(outcome, detail=detail)
                    pending = [p for p in pending if p[0] is not envelope and p[0].message_id not in results]
                    continue
                for envelope, _ in group:
                    results[envelope.message_id] = ReceiptClose("failed", detail=str(exc))
            except Exception as exc:  # noqa: BLE001 - an outage or a timeout: this group again later
                for envelope, _ in group:
                    results[envelope.message_id] = ReceiptClose("failed", detail=f"{type(exc).__name__}: {exc}")
            else:
                for envelope, info in group:
                    results[envelope.message_id] = ReceiptClose("closed", str(signature), info.lamports)
                log.info("solana receipts closed", chain=self.name, count=len(group), tx=str(signature),
                         lamports=sum(i.lamports for _, i in group))
            pending = pending[len(group):]
        return results

    async def _worth_closing(self, pending: list[tuple[Envelope, ReceiptInfo]],
                             results: dict[bytes, ReceiptClose]) -> list[tuple[Envelope, ReceiptInfo]]:
        """The receipts whose close pays back more than it costs. The first close in a source's
        8,192-nonce window creates that window's replay bitmap, whose rent (~8.2M lamports) the closer
        pays and never gets back; a window with few receipts here (a source whose messages mostly go
        elsewhere; a sender can arrange it) would cost more than its receipts return. Receipts of a
        window whose bitmap does not exist yet are closed only when together they return at least
        its rent; the others are "deferred" (the relayer asks again later: more may fall due, or a
        receiver's close may create the bitmap)."""
        windows: dict[tuple[int, int], list[tuple[Envelope, ReceiptInfo]]] = {}
        for envelope, info in pending:
            windows.setdefault((envelope.src_domain, envelope.nonce >> REPLAY_WINDOW_BITS), []).append((envelope, info))
        keys = list(windows)
        addresses = [replay_address(self.program_id, src, window << REPLAY_WINDOW_BITS) for src, window in keys]
        accounts = (await self.rpc.call("getMultipleAccounts", lambda c: c.get_multiple_accounts(
            addresses, commitment=Confirmed, encoding="base64"))).value
        if self._bitmap_rent is None:
            self._bitmap_rent = (await self.rpc.call("getMinimumBalanceForRentExemption", lambda c: (
                c.get_minimum_balance_for_rent_exemption(REPLAY_ACCOUNT_LEN)))).value
        bitmap_rent = self._bitmap_rent
        worth: list[tuple[Envelope, ReceiptInfo]] = []
        for key, account in zip(keys, accounts):
            group = windows[key]
            returned = sum(info.lamports for _, info in group)
            if (account is not None and account.owner == self.program_id) or returned >= bitmap_rent:
                worth.extend(group)
                continue
            detail = (f"source {key[0]} nonces {key[1] << REPLAY_WINDOW_BITS}+: closing would create the window's "
                      f"replay bitmap ({bitmap_rent} lamports, never returned) for {returned} lamports of rent")
            for envelope, _ in group:
                results[envelope.message_id] = ReceiptClose("deferred", detail=detail)
        keep = {envelope.message_id for envelope, _ in worth}
        return [p for p in pending if p[0].message_id in keep]

    def _receipts_that_fit(self, pending: list[tuple[Envelope, ReceiptInfo]], payer: Keypair,
                           closer: Keypair) -> list[tuple[Envelope, ReceiptInfo]]:
        """The longest prefix of `pending` whose CloseReceipts fit one transaction (at least one)."""
        count = 1
        while count < len(pending) and count < MAX_CLOSES_PER_TX:
            ixs = [close_receipt_ix(self.program_id, closer.pubkey(), e, Pubkey.from_bytes(i.payer))
                   for e, i in pending[:count + 1]]
            if transaction_size([set_compute_unit_limit(_close_receipts_cu(count + 1)), *ixs], payer.pubkey()) > PACKET_DATA_SIZE:
                break
            count += 1
        return pending[:count]

    async def close_receipt(self, envelope: Envelope, closer: Keypair | None = None) -> ReceiptClose:
        """For a receiver: close the receipt of a message it has read (any time, when `closer`, default
        the adapter's signer, is the message's dst_receiver; anyone after the program's retention).
        Its rent goes to whoever paid it (the relayer); the message can never be delivered again (the
        replay bitmap, whose rent the closer pays at the first close of its 8,192-nonce window)."""
        return (await self.close_receipts([envelope], closer=closer, only_own=False))[envelope.message_id]

    async def closed_and_delivered(self, envelope: Envelope) -> bool:
        """Whether the message was delivered and its receipt closed since (its bit in the replay
        bitmap): `is_delivered` then says False, as the receipt is gone."""
        data = await self.rpc.account_data(replay_address(self.program_id, envelope.src_domain, envelope.nonce),
                                           self.program_id, self.commitment)
        return data is not None and replay_bit_set(data, envelope.nonce)


# One CloseReceipt: ~25k CU at most (the board's address, the bitmap's creation at a window's first close).
CLOSE_RECEIPT_CU = 30_000
MAX_CLOSES_PER_TX = 40


def _close_receipts_cu(count: int) -> int:
    return min(1_400_000, CLOSE_CU_LIMIT + CLOSE_RECEIPT_CU * count)
