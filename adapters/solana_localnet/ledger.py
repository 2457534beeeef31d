"""Chain state around LiteSVM: slots, blockhashes, commitments, transaction history, account versions.

LiteSVM executes transactions and holds the current accounts; it has no notion of slots advancing,
commitment levels, blocks or an address index. This module adds what a validator's RPC needs:

- a slot that the server advances on a timer; each slot gets a fresh blockhash, valid for 150 slots
  (LiteSVM's own check accepts only the latest one, so it is turned off);
- processed = the current slot, confirmed = one slot behind, finalized = `finality_slots` behind;
- account versions for slots that are not finalized yet, so reads at `confirmed` or `finalized` see
  the state as of that slot;
- the executed transactions (bytes, slot, balances, metadata) and an address -> signatures index,
  both capped at `max_transactions` (the oldest are forgotten first).

Not thread-safe, like LiteSVM: call it from one thread (the server's event loop).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Protocol

import structlog
from solders.account import Account
from solders.clock import Clock
from solders.compute_budget import set_compute_unit_limit
from solders.hash import Hash
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.message import Message, MessageV0
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction
from solders.transaction_metadata import FailedTransactionMetadata, TransactionMetadata
from solders.transaction_status import TransactionErrorFieldless, TransactionErrorType

from adapters.solana_localnet.errors import LocalnetError, ProgramLoadError

# Lazy: the CLI configures logging after these modules are imported (relay.log.get_logger binds at once).
log = structlog.get_logger("solana_localnet.ledger")

PROCESSED, CONFIRMED, FINALIZED = "processed", "confirmed", "finalized"
COMMITMENTS = (PROCESSED, CONFIRMED, FINALIZED)
MAX_PROCESSING_AGE = 150  # slots a blockhash stays valid, as on a validator
LAMPORTS_PER_SIGNATURE = 5000
MEMO_PROGRAMS = {
    Pubkey.from_string("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr"),
    Pubkey.from_string("Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo"),
}
ADDRESS_LOOKUP_TABLE_PROGRAM = Pubkey.from_string("AddressLookupTab1e1111111111111111111111111")
_LOOKUP_TABLE_META_SIZE = 56
DEFAULT_FAUCET_LAMPORTS = 500_000_000 * 10**9  # 500M SOL: any test amount, far from u64 overflow
_BLOCK_RETENTION = 4096  # slots whose block (hash, time, signatures) is kept beyond the finality window


class LedgerError(LocalnetError):
    pass


class SignatureVerificationFailed(LedgerError):
    def __init__(self) -> None:
        super().__init__("Transaction signature verification failure")


class PreflightFailed(LedgerError):
    def __init__(self, err: TransactionErrorType, meta: TransactionMetadata | None) -> None:
        super().__init__(f"Transaction simulation failed: {err}")
        self.err = err
        self.meta = meta


@dataclass(frozen=True)
class LedgerConfig:
    slot_ms: int = 400
    finality_slots: int = 32
    max_transactions: int = 20_000
    faucet_lamports: int = DEFAULT_FAUCET_LAMPORTS
    programs: tuple[tuple[Pubkey, Path], ...] = ()

    def __post_init__(self) -> None:
        if self.slot_ms < 1:
            raise LocalnetError(f"slot time {self.slot_ms} ms is too short: pass --slot-ms 1 or more")
        if self.finality_slots < 1:
            raise LocalnetError(
                f"finality of {self.finality_slots} slots is impossible: finalized must trail confirmed; "
                "pass --finality-slots 1 or more"
            )
        if self.max_transactions < 1:
            raise LocalnetError("the transaction history needs room for at least one transaction")


@dataclass
class Block:
    slot: int
    parent: int
    blockhash: Hash
    block_time: int
    signatures: list[Signature] = field(default_factory=list)


@dataclass
class TxRecord:
    signature: Signature
    slot: int
    transaction: VersionedTransaction
    meta: TransactionMetadata
    err: TransactionErrorType | None
    pre_balances: list[int]
    post_balances: list[int]
    loaded_writable: list[Pubkey]
    loaded_readonly: list[Pubkey]
    block_time: int
    memo: str | None
    written: list[Pubkey] = field(default_factory=list)  # accounts whose state this transaction changed

    @property
    def account_keys(self) -> list[Pubkey]:
        return list(self.transaction.message.account_keys) + self.loaded_writable + self.loaded_readonly

    @property
    def is_legacy(self) -> bool:
        return isinstance(self.transaction.message, Message)


@dataclass
class Simulation:
    err: TransactionErrorType | None
    meta: TransactionMetadata | None
    post_accounts: list[tuple[Pubkey, Account | None]]
    replacement_blockhash: tuple[Hash, int] | None
    loaded_writable: list[Pubkey]
    loaded_readonly: list[Pubkey]


class LedgerListener(Protocol):
    def on_transaction(self, record: TxRecord) -> None: ...

    def on_slot(self, slot: int, parent: int, root: int) -> None: ...

    def on_commitment(self, commitment: str, slot: int) -> None: ...


class _AccountVersions:
    """States of accounts written in slots that are not finalized, to answer reads at a commitment."""

    def __init__(self) -> None:
        self._base: dict[Pubkey, Account | None] = {}
        self._versions: dict[Pubkey, list[tuple[int, Account | None]]] = {}

    def record(self, pubkey: Pubkey, before: Account | None, after: Account | None, slot: int) -> None:
        versions = self._versions.get(pubkey)
        if versions is None:
            self._base[pubkey] = before
            versions = self._versions[pubkey] = []
        if versions and versions[-1][0] == slot:
            versions[-1] = (slot, after)
        else:
            versions.append((slot, after))

    def has(self, pubkey: Pubkey) -> bool:
        return pubkey in self._versions

    def pending(self) -> Iterable[Pubkey]:
        return list(self._versions)

    def at(self, pubkey: Pubkey, slot: int) -> Account | None:
        for version_slot, account in reversed(self._versions[pubkey]):
            if version_slot <= slot:
                return account
        return self._base[pubkey]

    def finalize(self, root: int) -> None:
        for pubkey in list(self._versions):
            versions = self._versions[pubkey]
            keep = [v for v in versions if v[0] > root]
            if not keep:
                del self._versions[pubkey]
                del self._base[pubkey]
            elif len(keep) != len(versions):
                self._base[pubkey] = versions[len(versions) - len(keep) - 1][1]
                self._versions[pubkey] = keep


def _is_static_writable(message: Message | MessageV0, index: int) -> bool:
    header = message.header
    n_keys = len(message.account_keys)
    n_signed = header.num_required_signatures
    if index < n_signed:
        return index < n_signed - header.num_readonly_signed_accounts
    return index < n_keys - header.num_readonly_unsigned_accounts


def _live(account: Account | None) -> Account | None:
    # A validator forgets accounts with zero lamports; LiteSVM may still hand back an empty shell.
    if account is None or account.lamports == 0:
        return None
    return account


def extract_memo(transaction: VersionedTransaction) -> str | None:
    """Agave's `extract_and_fmt_memos`: "[len] text" per memo instruction, joined by "; "."""
    message = transaction.message
    keys = message.account_keys
    memos = []
    for ix in message.instructions:
        if ix.program_id_index < len(keys) and keys[ix.program_id_index] in MEMO_PROGRAMS:
            data = bytes(ix.data)
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                text = "(unparseable)"
            memos.append(f"[{len(data)}] {text}")
    return "; ".join(memos) if memos else None


class Ledger:
    def __init__(self, config: LedgerConfig | None = None) -> None:
        self.config = config or LedgerConfig()
        cfg = self.config
        self._svm = (
            LiteSVM()
            .with_blockhash_check(False)
            .with_transaction_history(cfg.max_transactions)
        )
        for program_id, path in cfg.programs:
            if not Path(path).is_file():
                raise ProgramLoadError(f"program file {path} for {program_id} does not exist: build it or fix --program")
            try:
                self._svm.add_program_from_file(program_id, Path(path))
            except BaseException as exc:  # LiteSVM panics surface as PanicException (a BaseException)
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                raise ProgramLoadError(f"LiteSVM refused program {path} for {program_id}: {exc}") from exc
        self.faucet = Keypair()
        self._svm.set_account(
            self.faucet.pubkey(),
            Account(lamports=cfg.faucet_lamports, data=b"", owner=Pubkey.default(), executable=False, rent_epoch=0),
        )
        self.genesis_time = int(time.time())
        self._slot = 0
        self._confirmed = 0
        self._finalized = 0
        self.genesis_hash = self._svm.latest_blockhash()
        self._blocks: dict[int, Block] = {0: Block(0, 0, self.genesis_hash, self.genesis_time)}
        self._blockhash_slots: dict[Hash, int] = {self.genesis_hash: 0}
        # What getGenesisHash answers. Not block 0's blockhash: LiteSVM starts every instance from the
        # same one, and the genesis hash is what tells one localnet run from the next (a daemon's state
        # of a previous run is refused: relay/chainstate.py). Like a real genesis hash, a hash of this
        # ledger's own genesis (its random faucet key and its start time).
        self.genesis_config_hash = Hash.hash(bytes(self.faucet.pubkey()) + self.genesis_time.to_bytes(8, "little"))
        self._records: OrderedDict[Signature, TxRecord] = OrderedDict()
        self._by_address: dict[Pubkey, deque[Signature]] = {}
        self._versions = _AccountVersions()
        self._slot_writes: dict[int, set[Pubkey]] = {}
        self._listeners: list[LedgerListener] = []
        self.transaction_count = 0
        self._airdrop_nonce = 0
        self._set_clock()
        # Slot 0 is the genesis block, final from the start; transactions land from slot 1 on.
        self.advance_slot()

    # ----- slots and commitments -----

    def add_listener(self, listener: LedgerListener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: LedgerListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def slot(self, commitment: str = FINALIZED) -> int:
        if commitment == PROCESSED:
            return self._slot
        if commitment == CONFIRMED:
            return self._confirmed
        return self._finalized

    def commitment_of(self, slot: int) -> str:
        if slot <= self._finalized:
            return FINALIZED
        if slot <= self._confirmed:
            return CONFIRMED
        return PROCESSED

    def epoch_info(self, commitment: str) -> tuple[int, int, int, int]:
        slot = self.slot(commitment)
        schedule = self._svm.get_epoch_schedule()
        epoch, index = schedule.get_epoch_and_slot_index(slot)
        return epoch, index, schedule.get_slots_in_epoch(epoch), slot

    @property
    def epoch_schedule(self):  # solders EpochSchedule
        return self._svm.get_epoch_schedule()

    def block(self, slot: int) -> Block | None:
        return self._blocks.get(slot)

    def latest_blockhash(self, commitment: str) -> tuple[Hash, int]:
        slot = self.slot(commitment)
        return self._blocks[slot].blockhash, slot + MAX_PROCESSING_AGE

    def blockhash_slot(self, blockhash: Hash) -> int | None:
        slot = self._blockhash_slots.get(blockhash)
        if slot is None or slot + MAX_PROCESSING_AGE < self._slot:
            return None
        return slot

    def is_blockhash_valid(self, blockhash: Hash, commitment: str = FINALIZED) -> bool:
        slot = self._blockhash_slots.get(blockhash)
        return slot is not None and slot <= self.slot(commitment) and slot + MAX_PROCESSING_AGE >= self._slot

    def advance_slot(self) -> int:
        parent = self._slot
        self._slot += 1
        self._svm.expire_blockhash()
        blockhash = self._svm.latest_blockhash()
        now = int(time.time())
        self._blocks[self._slot] = Block(self._slot, parent, blockhash, now)
        self._blockhash_slots[blockhash] = self._slot
        self._set_clock()
        self._prune_blocks()
        old_confirmed, old_finalized = self._confirmed, self._finalized
        self._confirmed = max(0, self._slot - 1)
        self._finalized = max(0, self._slot - self.config.finality_slots)
        self._emit("on_slot", self._slot, parent, self._finalized)
        for slot in range(old_confirmed + 1, self._confirmed + 1):
            self._emit("on_commitment", CONFIRMED, slot)
        for slot in range(old_finalized + 1, self._finalized + 1):
            self._emit("on_commitment", FINALIZED, slot)
            self._slot_writes.pop(slot, None)
        if self._finalized > old_finalized:
            self._versions.finalize(self._finalized)
        return self._slot

    def _set_clock(self) -> None:
        schedule = self._svm.get_epoch_schedule()
        epoch, _ = schedule.get_epoch_and_slot_index(self._slot)
        self._svm.set_clock(Clock(self._slot, self.genesis_time, epoch, epoch + 1, int(time.time())))

    def _prune_blocks(self) -> None:
        oldest_hash_slot = self._slot - MAX_PROCESSING_AGE - 1
        for blockhash in [h for h, s in self._blockhash_slots.items() if s < oldest_hash_slot]:
            del self._blockhash_slots[blockhash]
        keep_from = self._slot - max(_BLOCK_RETENTION, self.config.finality_slots + MAX_PROCESSING_AGE + 2)
        if keep_from > 0:
            self._blocks.pop(keep_from - 1, None)

    def _emit(self, event: str, *args: object) -> None:
        for listener in list(self._listeners):
            try:
                getattr(listener, event)(*args)
            except Exception:
                log.exception("listener failed", event_name=event)

    # ----- accounts -----

    def get_account(self, pubkey: Pubkey, commitment: str = PROCESSED) -> Account | None:
        slot = self.slot(commitment)
        if slot < self._slot and self._versions.has(pubkey):
            return _live(self._versions.at(pubkey, slot))
        return _live(self._svm.get_account(pubkey))

    def account_at_slot(self, pubkey: Pubkey, slot: int) -> Account | None:
        if self._versions.has(pubkey):
            return _live(self._versions.at(pubkey, slot))
        return _live(self._svm.get_account(pubkey))

    def accounts_written_in(self, slot: int) -> set[Pubkey]:
        return self._slot_writes.get(slot, set())

    def program_accounts(self, program_id: Pubkey, commitment: str = PROCESSED) -> list[tuple[Pubkey, Account]]:
        accounts = {pk: acc for pk, acc in self._svm.get_program_accounts(program_id) if _live(acc)}
        slot = self.slot(commitment)
        if slot < self._slot:
            for pubkey in self._versions.pending():
                account = _live(self._versions.at(pubkey, slot))
                if account is not None and account.owner == program_id:
                    accounts[pubkey] = account
                else:
                    accounts.pop(pubkey, None)
        return sorted(accounts.items(), key=lambda item: bytes(item[0]))

    def set_account(self, pubkey: Pubkey, account: Account) -> None:
        """Seed state outside any transaction (what solana-test-validator's --account does at genesis)."""
        before = self._svm.get_account(pubkey)
        self._svm.set_account(pubkey, account)
        self._versions.record(pubkey, before, account, self._slot)
        self._slot_writes.setdefault(self._slot, set()).add(pubkey)

    def minimum_balance_for_rent_exemption(self, data_len: int) -> int:
        return self._svm.minimum_balance_for_rent_exemption(data_len)

    # ----- transactions -----

    def record(self, signature: Signature) -> TxRecord | None:
        return self._records.get(signature)

    def records_in_slot(self, slot: int) -> list[TxRecord]:
        block = self._blocks.get(slot)
        if block is None:
            return []
        return [r for r in (self._records.get(s) for s in block.signatures) if r is not None]

    def confirmations(self, record: TxRecord) -> int | None:
        if record.slot <= self._finalized:
            return None
        return self._slot - record.slot

    def signatures_for_address(
        self,
        address: Pubkey,
        *,
        before: Signature | None,
        until: Signature | None,
        limit: int,
        commitment: str,
    ) -> list[TxRecord]:
        max_slot = self.slot(commitment)
        signatures = self._by_address.get(address, ())
        found: list[TxRecord] = []
        started = before is None
        for signature in reversed(signatures):
            if not started:
                started = signature == before
                continue
            if until is not None and signature == until:
                break
            record = self._records[signature]
            if record.slot > max_slot:
                continue
            found.append(record)
            if len(found) >= limit:
                break
        return found

    def resolve_lookups(self, message: Message | MessageV0) -> tuple[list[Pubkey], list[Pubkey]]:
        if not isinstance(message, MessageV0):
            return [], []
        writable: list[Pubkey] = []
        readonly: list[Pubkey] = []
        for lookup in message.address_table_lookups:
            table = self._svm.get_account(lookup.account_key)
            if table is None or table.owner != ADDRESS_LOOKUP_TABLE_PROGRAM:
                return [], []  # the runtime rejects the transaction; nothing to resolve
            data = bytes(table.data)
            addresses = [
                Pubkey.from_bytes(data[i : i + 32]) for i in range(_LOOKUP_TABLE_META_SIZE, len(data) - 31, 32)
            ]
            try:
                writable += [addresses[i] for i in bytes(lookup.writable_indexes)]
                readonly += [addresses[i] for i in bytes(lookup.readonly_indexes)]
            except IndexError:
                return [], []
        return writable, readonly

    def _check_recent_blockhash(self, transaction: VersionedTransaction) -> bool:
        if self.blockhash_slot(transaction.message.recent_blockhash) is not None:
            return True
        # Durable-nonce transactions carry the nonce as blockhash; the nonce value itself is not checked.
        return bool(transaction.uses_durable_nonce())

    def submit(self, transaction: VersionedTransaction, *, preflight: bool) -> tuple[Signature, TxRecord | None]:
        """Execute now, in the current slot. Returns the record, or None when a validator would drop it."""
        signature = transaction.signatures[0]
        if preflight:
            if not all(transaction.verify_with_results()):
                raise SignatureVerificationFailed()
            if signature in self._records:
                raise PreflightFailed(TransactionErrorFieldless.AlreadyProcessed, None)
            if not self._check_recent_blockhash(transaction):
                raise PreflightFailed(TransactionErrorFieldless.BlockhashNotFound, None)
            simulated = _svm_call(self._svm.simulate_transaction, transaction)
            if isinstance(simulated, FailedTransactionMetadata):
                raise PreflightFailed(simulated.err(), simulated.meta())
        elif signature in self._records or not self._check_recent_blockhash(transaction):
            return signature, self._records.get(signature)
        return signature, self._execute(transaction)

    def _execute(self, transaction: VersionedTransaction) -> TxRecord | None:
        message = transaction.message
        signature = transaction.signatures[0]
        static_keys = list(message.account_keys)
        loaded_writable, loaded_readonly = self.resolve_lookups(message)
        keys = static_keys + loaded_writable + loaded_readonly
        writable = [k for i, k in enumerate(static_keys) if _is_static_writable(message, i)] + loaded_writable
        before = {k: self._svm.get_account(k) for k in writable}
        pre_balances = [self._svm.get_balance(k) or 0 for k in keys]
        result = _svm_call(self._svm.send_transaction, transaction)
        if isinstance(result, FailedTransactionMetadata):
            if self._svm.get_transaction(signature) is None:
                log.debug("transaction dropped before execution", signature=str(signature), err=str(result.err()))
                return None
            err, meta = result.err(), result.meta()
        else:
            err, meta = None, result
        slot = self._slot
        block = self._blocks[slot]
        post_balances = [self._svm.get_balance(k) or 0 for k in keys]
        writes = self._slot_writes.setdefault(slot, set())
        written = []
        for key in writable:
            after = self._svm.get_account(key)
            if _live(after) != _live(before[key]):
                self._versions.record(key, before[key], after, slot)
                writes.add(key)
                written.append(key)
        record = TxRecord(
            signature=signature,
            slot=slot,
            transaction=transaction,
            meta=meta,
            err=err,
            pre_balances=pre_balances,
            post_balances=post_balances,
            loaded_writable=loaded_writable,
            loaded_readonly=loaded_readonly,
            block_time=block.block_time,
            memo=extract_memo(transaction),
            written=written,
        )
        self._remember(record)
        block.signatures.append(signature)
        self.transaction_count += 1
        self._emit("on_transaction", record)
        return record

    def _remember(self, record: TxRecord) -> None:
        self._records[record.signature] = record
        for key in dict.fromkeys(record.account_keys):
            self._by_address.setdefault(key, deque()).append(record.signature)
        while len(self._records) > self.config.max_transactions:
            _, oldest = self._records.popitem(last=False)
            for key in dict.fromkeys(oldest.account_keys):
                signatures = self._by_address.get(key)
                if signatures and signatures[0] == oldest.signature:
                    signatures.popleft()
                    if not signatures:
                        del self._by_address[key]

    def simulate(
        self, transaction: VersionedTransaction, *, sig_verify: bool, replace_blockhash: bool
    ) -> Simulation:
        replacement = None
        if replace_blockhash:
            blockhash, last_valid = self.latest_blockhash(PROCESSED)
            transaction = with_blockhash(transaction, blockhash)
            replacement = (blockhash, last_valid)
        if sig_verify and not all(transaction.verify_with_results()):
            raise SignatureVerificationFailed()
        loaded_writable, loaded_readonly = self.resolve_lookups(transaction.message)
        if not replace_blockhash and not self._check_recent_blockhash(transaction):
            return Simulation(
                TransactionErrorFieldless.BlockhashNotFound, None, [], None, loaded_writable, loaded_readonly
            )
        self._svm.with_sigverify(False)
        try:
            result = _svm_call(self._svm.simulate_transaction, transaction)
        finally:
            self._svm.with_sigverify(True)
        if isinstance(result, FailedTransactionMetadata):
            return Simulation(result.err(), result.meta(), [], replacement, loaded_writable, loaded_readonly)
        return Simulation(
            None, result.meta(), list(result.post_accounts()), replacement, loaded_writable, loaded_readonly
        )

    def airdrop(self, to: Pubkey, lamports: int) -> Signature:
        faucet = self.faucet.pubkey()
        available = (self._svm.get_balance(faucet) or 0) - LAMPORTS_PER_SIGNATURE
        if lamports > available:
            raise LedgerError(
                f"an airdrop of {lamports} lamports exceeds the faucet's {available}: ask for less"
            )
        blockhash = self._blocks[self._slot].blockhash
        instructions = [transfer(TransferParams(from_pubkey=faucet, to_pubkey=to, lamports=lamports))]
        transaction = VersionedTransaction(Message.new_with_blockhash(instructions, faucet, blockhash), [self.faucet])
        while transaction.signatures[0] in self._records:
            # Same request twice in one slot makes the same bytes; vary an invisible field so both land.
            self._airdrop_nonce += 1
            varied = [set_compute_unit_limit(10_000 + self._airdrop_nonce % 100_000), *instructions]
            transaction = VersionedTransaction(Message.new_with_blockhash(varied, faucet, blockhash), [self.faucet])
        record = self._execute(transaction)
        if record is None:
            raise LedgerError(f"the faucet could not send {lamports} lamports to {to}")
        return record.signature


def with_blockhash(transaction: VersionedTransaction, blockhash: Hash) -> VersionedTransaction:
    message = transaction.message
    if isinstance(message, MessageV0):
        replaced: Message | MessageV0 = MessageV0(
            message.header, message.account_keys, blockhash, message.instructions, message.address_table_lookups
        )
    else:
        replaced = Message.new_with_compiled_instructions(
            message.header.num_required_signatures,
            message.header.num_readonly_signed_accounts,
            message.header.num_readonly_unsigned_accounts,
            message.account_keys,
            blockhash,
            message.instructions,
        )
    return VersionedTransaction.populate(replaced, transaction.signatures)


def _svm_call(fn, *args):  # type: ignore[no-untyped-def]
    # pyo3 panics are BaseExceptions; turn them into an error the RPC layer reports, keep real exits.
    try:
        return fn(*args)
    except (KeyboardInterrupt, SystemExit, asyncio.CancelledError, GeneratorExit):
        raise
    except BaseException as exc:
        raise LedgerError(f"the SVM failed on this transaction: {exc}") from exc
