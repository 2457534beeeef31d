"""Solana JSON-RPC methods over the ledger, with the shapes and error codes of Agave's RPC.

Complex results (transactions, statuses, simulation results) are built with solders' own response
classes and taken from their `.to_json()`, so solana-py's strict parsers accept them; simple ones
(numbers, accounts) are written out by hand after the same shapes.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

from solders.account import Account
from solders.hash import Hash
from solders.message import Message, MessageV0, from_bytes_versioned
from solders.pubkey import Pubkey
from solders.rpc.responses import (
    GetBlockResp,
    GetSignatureStatusesResp,
    GetSignaturesForAddressResp,
    GetTransactionResp,
    RpcConfirmedTransactionStatusWithSignature,
    RpcResponseContext,
    RpcBlockhash,
    RpcSimulateTransactionResult,
)
from solders.signature import Signature
from solders.transaction import Legacy, VersionedTransaction
from solders.transaction_metadata import TransactionMetadata
from solders.transaction_status import (
    EncodedConfirmedTransactionWithStatusMeta,
    EncodedTransactionWithStatusMeta,
    InstructionErrorCustom,
    TransactionConfirmationStatus,
    TransactionErrorInstructionError,
    TransactionErrorInsufficientFundsForRent,
    TransactionStatus,
    UiCompiledInstruction,
    UiInnerInstructions,
    UiLoadedAddresses,
    UiRawMessage,
    UiAddressTableLookup,
    UiConfirmedBlock,
    UiTransaction,
    UiTransactionStatusMeta,
)

from adapters.solana_localnet.codec import DecodeError, b58decode, b58encode, b64decode, b64encode
from adapters.solana_localnet.errors import (
    BLOCK_NOT_AVAILABLE,
    INTERNAL_ERROR,
    INVALID_REQUEST,
    MIN_CONTEXT_SLOT_NOT_REACHED,
    SEND_TRANSACTION_PREFLIGHT_FAILURE,
    TRANSACTION_SIGNATURE_LEN_MISMATCH,
    TRANSACTION_SIGNATURE_VERIFICATION_FAILURE,
    UNSUPPORTED_TRANSACTION_VERSION,
    METHOD_NOT_FOUND,
    RpcError,
    invalid_params,
)
from adapters.solana_localnet.ledger import (
    CONFIRMED,
    FINALIZED,
    LAMPORTS_PER_SIGNATURE,
    PROCESSED,
    Ledger,
    LedgerError,
    PreflightFailed,
    SignatureVerificationFailed,
    TxRecord,
)

# The Agave release whose runtime LiteSVM 0.15 (in solders 0.29) embeds.
SOLANA_CORE_VERSION = "4.1.2"
FEATURE_SET = 3640012085
PACKET_DATA_SIZE = 1232
MAX_BASE58_TX_SIZE = 1683
MAX_BASE64_TX_SIZE = 1644
MAX_MULTIPLE_ACCOUNTS = 100
MAX_SIGNATURE_STATUSES = 256
MAX_SIGNATURES_FOR_ADDRESS = 1000
MAX_PROGRAM_ACCOUNT_FILTERS = 4
MAX_BASE58_ACCOUNT_DATA = 128
MAX_PRIORITIZATION_FEE_SLOTS = 150
MAX_GET_BLOCKS_RANGE = 500_000
_COMMITMENT_ALIASES = {
    "processed": PROCESSED,
    "recent": PROCESSED,
    "confirmed": CONFIRMED,
    "single": CONFIRMED,
    "singleGossip": CONFIRMED,
    "finalized": FINALIZED,
    "max": FINALIZED,
    "root": FINALIZED,
}
_STATUS = {
    PROCESSED: TransactionConfirmationStatus.Processed,
    CONFIRMED: TransactionConfirmationStatus.Confirmed,
    FINALIZED: TransactionConfirmationStatus.Finalized,
}
_U64_MAX = 2**64 - 1
ENCODED_TRANSACTIONS_KEPT = 4096  # getTransaction answers kept encoded (RpcMethods._encoded)

Handler = Callable[[list[Any]], Awaitable[Any]]


def solders_result(response: Any) -> Any:
    return json.loads(response.to_json())["result"]


# ----- parameter parsing -----


def _param(params: list[Any], index: int, name: str, required: bool = True) -> Any:
    if index < len(params):
        return params[index]
    if required:
        raise invalid_params(f"Invalid params: missing required parameter `{name}`")
    return None


def _config(params: list[Any], index: int) -> dict[str, Any]:
    value = params[index] if index < len(params) else None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid_params(f"Invalid params: invalid type: {_type_name(value)}, expected a configuration object")
    return value


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return f"boolean `{str(value).lower()}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, str):
        return f"string {json.dumps(value)}"
    if isinstance(value, list):
        return "sequence"
    if isinstance(value, dict):
        return "map"
    return "null"


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise invalid_params(f"Invalid params: invalid type: {_type_name(value)}, expected {what}")
    return value


def _uint(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value > _U64_MAX:
        raise invalid_params(f"Invalid params: invalid type: {_type_name(value)}, expected {what}")
    return value


def _bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise invalid_params(f"Invalid params: invalid type: {_type_name(value)}, expected {what}")
    return value


def _flag(config: dict[str, Any], key: str, default: bool) -> bool:
    value = config.get(key)
    return default if value is None else _bool(value, "a boolean")


def _b58_bytes(value: Any, what: str, size: int) -> bytes:
    raw_text = _str(value, f"a base-58 encoded {what}")
    try:
        raw = b58decode(raw_text)
    except DecodeError:
        raise invalid_params("Invalid param: Invalid") from None
    if len(raw) != size:
        raise invalid_params("Invalid param: WrongSize")
    return raw


# solders parses base58 natively; a string it refuses goes through _b58_bytes for Agave's error text.
# Base58 maps byte strings to text one to one, so what solders accepts decodes to the same bytes.


def _pubkey(value: Any) -> Pubkey:
    if isinstance(value, str):
        try:
            return Pubkey.from_string(value)
        except Exception:  # noqa: BLE001 - solders' parse errors have several types; the slow path names it
            pass
    return Pubkey.from_bytes(_b58_bytes(value, "public key", 32))


def _signature(value: Any) -> Signature:
    if isinstance(value, str):
        try:
            return Signature.from_string(value)
        except Exception:  # noqa: BLE001 - as in _pubkey
            pass
    return Signature.from_bytes(_b58_bytes(value, "signature", 64))


def _hash(value: Any) -> Hash:
    if isinstance(value, str):
        try:
            return Hash.from_string(value)
        except Exception:  # noqa: BLE001 - as in _pubkey
            pass
    return Hash(_b58_bytes(value, "hash", 32))


def _commitment(config: dict[str, Any], default: str = FINALIZED) -> str:
    value = config.get("commitment")
    if value is None:
        return default
    if not isinstance(value, str) or value not in _COMMITMENT_ALIASES:
        raise invalid_params(
            f"Invalid params: unknown variant `{value}`, expected one of `processed`, `confirmed`, `finalized`"
        )
    return _COMMITMENT_ALIASES[value]


def decode_transaction(encoded: Any, encoding: str) -> VersionedTransaction:
    text = _str(encoded, "a string holding an encoded transaction")
    type_name = "solana_transaction::versioned::VersionedTransaction"
    if encoding == "base58":
        if len(text) > MAX_BASE58_TX_SIZE:
            raise invalid_params(
                f"base58 encoded {type_name} too large: {len(text)} bytes "
                f"(max: encoded/raw {MAX_BASE58_TX_SIZE}/{PACKET_DATA_SIZE})"
            )
        try:
            raw = b58decode(text)
        except DecodeError as exc:
            raise invalid_params(f"invalid base58 encoding: {exc}") from None
    elif encoding == "base64":
        if len(text) > MAX_BASE64_TX_SIZE:
            raise invalid_params(
                f"base64 encoded {type_name} too large: {len(text)} bytes "
                f"(max: encoded/raw {MAX_BASE64_TX_SIZE}/{PACKET_DATA_SIZE})"
            )
        try:
            raw = b64decode(text)
        except DecodeError as exc:
            raise invalid_params(f"invalid base64 encoding: {exc}") from None
    else:
        raise invalid_params(f"unsupported encoding: {encoding}. Supported encodings: base58, base64")
    if len(raw) > PACKET_DATA_SIZE:
        raise invalid_params(f"decoded {type_name} too large: {len(raw)} bytes (max: {PACKET_DATA_SIZE} bytes)")
    try:
        transaction = VersionedTransaction.from_bytes(raw)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # pyo3 panics are BaseExceptions
        raise invalid_params(f"failed to deserialize {type_name}: {exc}") from None
    if len(transaction.signatures) != transaction.message.header.num_required_signatures:
        raise RpcError(TRANSACTION_SIGNATURE_LEN_MISMATCH, "Transaction signature length mismatch")
    try:
        transaction.sanitize()
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        raise invalid_params(f"invalid transaction: {exc}") from None
    return transaction


# ----- result shapes -----


def encode_account(account: Account, encoding: str, data_slice: dict[str, Any] | None) -> dict[str, Any]:
    data = bytes(account.data)
    if data_slice is not None:
        if not isinstance(data_slice, dict):
            raise invalid_params("Invalid params: dataSlice is {offset, length}")
        offset = _uint(data_slice.get("offset", 0), "a data slice offset")
        length = _uint(data_slice.get("length", 0), "a data slice length")
        data = data[offset : offset + length]
    if encoding == "binary":
        if len(data) > MAX_BASE58_ACCOUNT_DATA:
            raise _base58_too_large()
        encoded: Any = b58encode(data)
    elif encoding == "base58":
        if len(data) > MAX_BASE58_ACCOUNT_DATA:
            raise _base58_too_large()
        encoded = [b58encode(data), "base58"]
    elif encoding in ("base64", "jsonParsed"):
        # jsonParsed falls back to base64, as Agave does for accounts it has no parser for.
        encoded = [b64encode(data), "base64"]
    else:
        raise invalid_params(f"Invalid params: unsupported account encoding `{encoding}` on this localnet; use base64")
    return {
        "data": encoded,
        "executable": account.executable,
        "lamports": account.lamports,
        "owner": str(account.owner),
        "rentEpoch": account.rent_epoch,
        "space": len(account.data),
    }


def _base58_too_large() -> RpcError:
    return RpcError(
        INVALID_REQUEST,
        f"Encoded binary (base 58) data should be less than {MAX_BASE58_ACCOUNT_DATA} bytes, please use Base64 encoding.",
    )


def _ui_inner_instructions(meta: TransactionMetadata) -> list[UiInnerInstructions]:
    out = []
    for index, inner in enumerate(meta.inner_instructions()):
        if inner:
            out.append(
                UiInnerInstructions(
                    index,
                    [
                        # solders 0.29: InnerInstruction.instruction / .stack_height are methods.
                        UiCompiledInstruction(
                            ix.instruction().program_id_index,
                            bytes(ix.instruction().accounts),
                            b58encode(bytes(ix.instruction().data)),
                            ix.stack_height(),
                        )
                        for ix in inner
                    ],
                )
            )
    return out


def _return_data(meta: TransactionMetadata):  # type: ignore[no-untyped-def]
    # A validator reports return data only when a program set some.
    data = meta.return_data()
    return data if data is not None and bytes(data.data) else None


def _ui_message(message: Message | MessageV0) -> UiRawMessage:
    instructions = [
        UiCompiledInstruction(ix.program_id_index, bytes(ix.accounts), b58encode(bytes(ix.data)), None)
        for ix in message.instructions
    ]
    lookups = None
    if isinstance(message, MessageV0):
        lookups = [
            UiAddressTableLookup(lk.account_key, bytes(lk.writable_indexes), bytes(lk.readonly_indexes))
            for lk in message.address_table_lookups
        ]
    return UiRawMessage(message.header, message.account_keys, message.recent_blockhash, instructions, lookups)


def _encoded_with_meta(
    record: TxRecord, encoding: str, max_supported_version: int | None
) -> EncodedTransactionWithStatusMeta:
    if record.is_legacy:
        version = None if max_supported_version is None else Legacy.Legacy
    else:
        if max_supported_version is None:
            raise RpcError(
                UNSUPPORTED_TRANSACTION_VERSION,
                "Transaction version (0) is not supported by the requesting client. Please try the request again "
                'with the following configuration parameter: "maxSupportedTransactionVersion": 0',
            )
        version = 0
    meta = UiTransactionStatusMeta(
        record.err,
        record.meta.fee(),
        record.pre_balances,
        record.post_balances,
        inner_instructions=_ui_inner_instructions(record.meta),
        log_messages=record.meta.logs(),
        pre_token_balances=[],
        post_token_balances=[],
        rewards=[],
        loaded_addresses=UiLoadedAddresses(record.loaded_writable, record.loaded_readonly),
        return_data=_return_data(record.meta),
        compute_units_consumed=record.meta.compute_units_consumed(),
    )
    if encoding in ("json", "jsonParsed"):
        encoded_tx: Any = UiTransaction(record.transaction.signatures, _ui_message(record.transaction.message))
    elif encoding in ("base64", "base58"):
        encoded_tx = record.transaction  # base58 is patched in after serialisation
    else:
        raise invalid_params(
            f"Invalid params: unknown variant `{encoding}`, expected one of `binary`, `base64`, `base58`, `json`, `jsonParsed`"
        )
    return EncodedTransactionWithStatusMeta(encoded_tx, meta, version)


def _patch_base58(encoded: dict[str, Any], record: TxRecord) -> None:
    encoded["transaction"] = [b58encode(bytes(record.transaction)), "base58"]


def encode_confirmed_transaction(
    record: TxRecord, encoding: str, max_supported_version: int | None
) -> dict[str, Any]:
    confirmed = EncodedConfirmedTransactionWithStatusMeta(
        record.slot, _encoded_with_meta(record, encoding, max_supported_version), record.block_time
    )
    result = solders_result(GetTransactionResp(confirmed))
    if encoding == "base58":
        _patch_base58(result, record)  # getTransaction's result holds "transaction" at the top
    return result


def _max_version(config: dict[str, Any]) -> int | None:
    max_version = config.get("maxSupportedTransactionVersion")
    if max_version is None:
        return None
    max_version = _uint(max_version, "a transaction version")
    if max_version > 0:
        raise invalid_params(f"Invalid params: unsupported transaction version {max_version}")
    return max_version


def simulation_result(
    err: Any,
    meta: TransactionMetadata | None,
    accounts: list[Any] | None,
    inner: bool,
    replacement: tuple[Hash, int] | None = None,
) -> RpcSimulateTransactionResult:
    return RpcSimulateTransactionResult(
        err=err,
        logs=meta.logs() if meta is not None else [],
        accounts=accounts,
        units_consumed=meta.compute_units_consumed() if meta is not None else 0,
        return_data=_return_data(meta) if meta is not None else None,
        inner_instructions=(_ui_inner_instructions(meta) if meta is not None else []) if inner else None,
        replacement_blockhash=RpcBlockhash(replacement[0], replacement[1]) if replacement else None,
        fee=meta.fee() if meta is not None else None,
    )


# Agave's Display texts for the errors a localnet user meets most; others fall back to spaced names.
_ERROR_TEXT = {
    "AccountNotFound": "Attempt to debit an account but found no record of a prior credit.",
    "BlockhashNotFound": "Blockhash not found",
    "AlreadyProcessed": "This transaction has already been processed",
    "InsufficientFundsForFee": "Insufficient funds for fee",
    "InvalidAccountForFee": "This account may not be used to pay transaction fees",
    "ProgramAccountNotFound": "Attempt to load a program that does not exist",
    "AccountInUse": "Account in use",
    "InvalidProgramForExecution": "Attempt to load a program that does not exist",
    "AddressLookupTableNotFound": "Transaction loads an address table account that doesn't exist",
}
_INSTRUCTION_ERROR_TEXT = {
    "GenericError": "generic instruction error",
    "InvalidArgument": "invalid program argument",
    "InvalidInstructionData": "invalid instruction data",
    "InvalidAccountData": "invalid account data for instruction",
    "AccountDataTooSmall": "account data too small for instruction",
    "InsufficientFunds": "insufficient funds for instruction",
    "IncorrectProgramId": "incorrect program id for instruction",
    "MissingRequiredSignature": "missing required signature for instruction",
    "AccountAlreadyInitialized": "instruction requires an uninitialized account",
    "UninitializedAccount": "instruction requires an initialized account",
    "ProgramFailedToComplete": "Program failed to complete",
    "ProgramFailedToCompile": "Program failed to compile",
    "ComputationalBudgetExceeded": "Computational budget exceeded",
    "Immutable": "Account is immutable",
    "IncorrectAuthority": "Incorrect authority provided",
    "InvalidSeeds": "Provided seeds do not result in a valid address",
    "AccountNotExecutable": "instruction expected an executable account",
    "UnsupportedProgramId": "Unsupported program id",
    "PrivilegeEscalation": "Cross-program invocation with unauthorized signer or writable account",
}


def _spaced(name: str) -> str:
    return "".join(f" {c.lower()}" if c.isupper() else c for c in name).strip().capitalize()


def describe_error(err: Any) -> str:
    if isinstance(err, TransactionErrorInstructionError):
        inner = err.err
        if isinstance(inner, InstructionErrorCustom):
            text = f"custom program error: {inner.code:#x}"
        else:
            name = str(inner).split(".")[-1]
            text = _INSTRUCTION_ERROR_TEXT.get(name, _spaced(name))
        return f"Error processing Instruction {err.index}: {text}"
    if isinstance(err, TransactionErrorInsufficientFundsForRent):
        return f"Transaction results in an account ({err.account_index}) with insufficient funds for rent"
    name = str(err).split(".")[-1]
    return _ERROR_TEXT.get(name, _spaced(name))


# ----- the method table -----


class RpcMethods:
    def __init__(self, ledger: Ledger, identity: Pubkey) -> None:
        self.ledger = ledger
        self.identity = identity
        self.methods: dict[str, Handler] = {
            name[4:]: getattr(self, name) for name in dir(self) if name.startswith("rpc_")
        }
        # getTransaction's answers: (signature, encoding, max version) -> (the record, its JSON);
        # only read while the ledger still holds that very record. Callers only serialise them.
        self._encoded: dict[tuple[Signature, str, int | None], tuple[TxRecord, dict[str, Any]]] = {}

    async def call(self, method: str, params: Any) -> Any:
        handler = self.methods.get(method)
        if handler is None:
            raise RpcError(METHOD_NOT_FOUND, "Method not found")
        if params is None:
            params = []
        if not isinstance(params, list):
            raise invalid_params("Invalid params: expected an array of parameters")
        try:
            return await handler(params)
        except LedgerError as exc:
            raise RpcError(INTERNAL_ERROR, str(exc)) from exc

    def _context(self, slot: int) -> dict[str, Any]:
        return {"apiVersion": SOLANA_CORE_VERSION, "slot": slot}

    def _with_context(self, slot: int, value: Any) -> dict[str, Any]:
        return {"context": self._context(slot), "value": value}

    def _context_slot(self, config: dict[str, Any], default: str = FINALIZED) -> tuple[str, int]:
        commitment = _commitment(config, default)
        slot = self.ledger.slot(commitment)
        min_slot = config.get("minContextSlot")
        if min_slot is not None and _uint(min_slot, "a slot") > slot:
            raise RpcError(
                MIN_CONTEXT_SLOT_NOT_REACHED,
                "Minimum context slot has not been reached",
                {"contextSlot": slot},
            )
        return commitment, slot

    # --- cluster ---

    async def rpc_getVersion(self, params: list[Any]) -> Any:
        return {"feature-set": FEATURE_SET, "solana-core": SOLANA_CORE_VERSION}

    async def rpc_getHealth(self, params: list[Any]) -> Any:
        return "ok"

    async def rpc_getIdentity(self, params: list[Any]) -> Any:
        return {"identity": str(self.identity)}

    async def rpc_getGenesisHash(self, params: list[Any]) -> Any:
        return str(self.ledger.genesis_config_hash)

    async def rpc_getSlot(self, params: list[Any]) -> Any:
        return self._context_slot(_config(params, 0))[1]

    async def rpc_getBlockHeight(self, params: list[Any]) -> Any:
        return self._context_slot(_config(params, 0))[1]

    async def rpc_getTransactionCount(self, params: list[Any]) -> Any:
        self._context_slot(_config(params, 0))
        return self.ledger.transaction_count

    async def rpc_getFirstAvailableBlock(self, params: list[Any]) -> Any:
        return 0

    async def rpc_minimumLedgerSlot(self, params: list[Any]) -> Any:
        return 0

    async def rpc_getEpochInfo(self, params: list[Any]) -> Any:
        commitment, _ = self._context_slot(_config(params, 0))
        epoch, index, slots_in_epoch, slot = self.ledger.epoch_info(commitment)
        return {
            "absoluteSlot": slot,
            "blockHeight": slot,
            "epoch": epoch,
            "slotIndex": index,
            "slotsInEpoch": slots_in_epoch,
            "transactionCount": self.ledger.transaction_count,
        }

    async def rpc_getEpochSchedule(self, params: list[Any]) -> Any:
        s = self.ledger.epoch_schedule
        return {
            "firstNormalEpoch": s.first_normal_epoch,
            "firstNormalSlot": s.first_normal_slot,
            "leaderScheduleSlotOffset": s.leader_schedule_slot_offset,
            "slotsPerEpoch": s.slots_per_epoch,
            "warmup": s.warmup,
        }

    async def rpc_getLatestBlockhash(self, params: list[Any]) -> Any:
        commitment, slot = self._context_slot(_config(params, 0))
        blockhash, last_valid = self.ledger.latest_blockhash(commitment)
        return self._with_context(slot, {"blockhash": str(blockhash), "lastValidBlockHeight": last_valid})

    async def rpc_isBlockhashValid(self, params: list[Any]) -> Any:
        blockhash = _hash(_param(params, 0, "blockhash"))
        commitment, slot = self._context_slot(_config(params, 1))
        return self._with_context(slot, self.ledger.is_blockhash_valid(blockhash, commitment))

    async def rpc_getBlockTime(self, params: list[Any]) -> Any:
        slot = _uint(_param(params, 0, "slot"), "a slot number")
        block = self.ledger.block(slot)
        if block is None or slot > self.ledger.slot(CONFIRMED):
            raise RpcError(BLOCK_NOT_AVAILABLE, f"Block not available for slot {slot}")
        return block.block_time

    async def rpc_getMinimumBalanceForRentExemption(self, params: list[Any]) -> Any:
        data_len = _uint(_param(params, 0, "data length"), "usize")
        self._context_slot(_config(params, 1))
        return self.ledger.minimum_balance_for_rent_exemption(data_len)

    async def rpc_getFeeForMessage(self, params: list[Any]) -> Any:
        encoded = _str(_param(params, 0, "message"), "a base-64 encoded message")
        _, slot = self._context_slot(_config(params, 1))
        try:
            message = from_bytes_versioned(b64decode(encoded))
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # pyo3 panics are BaseExceptions
            raise invalid_params(f"invalid message: {exc}") from None
        if not self.ledger.is_blockhash_valid(message.recent_blockhash, PROCESSED):
            return self._with_context(slot, None)
        fee = LAMPORTS_PER_SIGNATURE * message.header.num_required_signatures
        return self._with_context(slot, fee)

    async def rpc_getRecentPrioritizationFees(self, params: list[Any]) -> Any:
        addresses = _param(params, 0, "addresses", required=False) or []
        if not isinstance(addresses, list):
            raise invalid_params("Invalid params: invalid type: expected a sequence of addresses")
        for address in addresses:
            _pubkey(address)
        top = self.ledger.slot(PROCESSED)
        first = max(0, top - MAX_PRIORITIZATION_FEE_SLOTS + 1)
        # No fee market on a one-leader localnet: every recent slot reports zero.
        return [{"prioritizationFee": 0, "slot": slot} for slot in range(first, top + 1)]

    # --- accounts ---

    async def rpc_getBalance(self, params: list[Any]) -> Any:
        pubkey = _pubkey(_param(params, 0, "pubkey"))
        commitment, slot = self._context_slot(_config(params, 1))
        account = self.ledger.get_account(pubkey, commitment)
        return self._with_context(slot, account.lamports if account else 0)

    async def rpc_getAccountInfo(self, params: list[Any]) -> Any:
        pubkey = _pubkey(_param(params, 0, "pubkey"))
        config = _config(params, 1)
        commitment, slot = self._context_slot(config)
        account = self.ledger.get_account(pubkey, commitment)
        encoding = config.get("encoding") or "binary"
        value = encode_account(account, encoding, config.get("dataSlice")) if account else None
        return self._with_context(slot, value)

    async def rpc_getMultipleAccounts(self, params: list[Any]) -> Any:
        keys = _param(params, 0, "pubkeys")
        if not isinstance(keys, list):
            raise invalid_params(f"Invalid params: invalid type: {_type_name(keys)}, expected a sequence")
        if len(keys) > MAX_MULTIPLE_ACCOUNTS:
            raise invalid_params(f"Too many inputs provided; max {MAX_MULTIPLE_ACCOUNTS}")
        pubkeys = [_pubkey(k) for k in keys]
        config = _config(params, 1)
        commitment, slot = self._context_slot(config)
        encoding = config.get("encoding") or "base64"
        values = []
        for pubkey in pubkeys:
            account = self.ledger.get_account(pubkey, commitment)
            values.append(encode_account(account, encoding, config.get("dataSlice")) if account else None)
        return self._with_context(slot, values)

    async def rpc_getProgramAccounts(self, params: list[Any]) -> Any:
        program_id = _pubkey(_param(params, 0, "program id"))
        config = _config(params, 1)
        commitment, slot = self._context_slot(config)
        filters = config.get("filters") or []
        if not isinstance(filters, list):
            raise invalid_params("Invalid params: filters must be a sequence")
        if len(filters) > MAX_PROGRAM_ACCOUNT_FILTERS:
            raise invalid_params(f"Too many filters provided; max {MAX_PROGRAM_ACCOUNT_FILTERS}")
        checks = [_account_filter(f) for f in filters]
        encoding = config.get("encoding") or "binary"
        out = []
        for pubkey, account in self.ledger.program_accounts(program_id, commitment):
            data = bytes(account.data)
            if all(check(data) for check in checks):
                out.append({"account": encode_account(account, encoding, config.get("dataSlice")), "pubkey": str(pubkey)})
        if _flag(config, "withContext", False):
            return self._with_context(slot, out)
        return out

    async def rpc_requestAirdrop(self, params: list[Any]) -> Any:
        pubkey = _pubkey(_param(params, 0, "pubkey"))
        lamports = _uint(_param(params, 1, "lamports"), "u64")
        self._context_slot(_config(params, 2))
        try:
            return str(self.ledger.airdrop(pubkey, lamports))
        except LedgerError as exc:
            raise RpcError(INTERNAL_ERROR, str(exc)) from exc

    # --- transactions ---

    async def rpc_sendTransaction(self, params: list[Any]) -> Any:
        config = _config(params, 1)
        transaction = decode_transaction(_param(params, 0, "transaction"), config.get("encoding") or "base58")
        skip_preflight = _flag(config, "skipPreflight", False)
        if config.get("preflightCommitment") is not None:
            _commitment({"commitment": config["preflightCommitment"]})
        self._context_slot({"commitment": "processed", "minContextSlot": config.get("minContextSlot")})
        try:
            signature, _ = self.ledger.submit(transaction, preflight=not skip_preflight)
        except SignatureVerificationFailed:
            raise RpcError(TRANSACTION_SIGNATURE_VERIFICATION_FAILURE, "Transaction signature verification failure")
        except PreflightFailed as exc:
            result = simulation_result(exc.err, exc.meta, None, inner=False)
            data = json.loads(result.to_json())
            raise RpcError(
                SEND_TRANSACTION_PREFLIGHT_FAILURE,
                f"Transaction simulation failed: {describe_error(exc.err)}",
                data,
            ) from None
        return str(signature)

    async def rpc_simulateTransaction(self, params: list[Any]) -> Any:
        config = _config(params, 1)
        transaction = decode_transaction(_param(params, 0, "transaction"), config.get("encoding") or "base58")
        sig_verify = _flag(config, "sigVerify", False)
        replace = _flag(config, "replaceRecentBlockhash", False)
        if sig_verify and replace:
            raise invalid_params("sigVerify may not be used with replaceRecentBlockhash")
        _, slot = self._context_slot(config)
        inner = _flag(config, "innerInstructions", False)
        try:
            sim = self.ledger.simulate(transaction, sig_verify=sig_verify, replace_blockhash=replace)
        except SignatureVerificationFailed:
            raise RpcError(TRANSACTION_SIGNATURE_VERIFICATION_FAILURE, "Transaction signature verification failure")
        accounts = None
        accounts_config = config.get("accounts")
        if accounts_config:
            if not isinstance(accounts_config, dict) or not isinstance(accounts_config.get("addresses"), list):
                raise invalid_params("Invalid params: accounts must be {addresses: [...], encoding}")
            wanted = [_pubkey(a) for a in accounts_config["addresses"]]
            post = dict(sim.post_accounts)
            accounts = []
            for pubkey in wanted:
                account = post.get(pubkey) if pubkey in post else self.ledger.get_account(pubkey, PROCESSED)
                if account is not None and account.lamports == 0:
                    account = None
                accounts.append(account)
        result = simulation_result(sim.err, sim.meta, None, inner, sim.replacement_blockhash)
        value = json.loads(result.to_json())
        if accounts is not None:
            encoding = accounts_config.get("encoding") or "base64"
            value["accounts"] = [encode_account(a, encoding, None) if a else None for a in accounts]
        return self._with_context(slot, value)

    async def rpc_getSignatureStatuses(self, params: list[Any]) -> Any:
        raw = _param(params, 0, "signatures")
        if not isinstance(raw, list):
            raise invalid_params(f"Invalid params: invalid type: {_type_name(raw)}, expected a sequence")
        if len(raw) > MAX_SIGNATURE_STATUSES:
            raise invalid_params(f"Too many inputs provided; max {MAX_SIGNATURE_STATUSES}")
        signatures = [_signature(s) for s in raw]
        _config(params, 1)
        statuses = []
        for signature in signatures:
            record = self.ledger.record(signature)
            if record is None:
                statuses.append(None)
                continue
            statuses.append(
                TransactionStatus(
                    record.slot,
                    self.ledger.confirmations(record),
                    record.err,
                    record.err,
                    _STATUS[self.ledger.commitment_of(record.slot)],
                )
            )
        value = solders_result(GetSignatureStatusesResp(statuses, RpcResponseContext(0)))["value"]
        return self._with_context(self.ledger.slot(PROCESSED), value)

    async def rpc_getTransaction(self, params: list[Any]) -> Any:
        signature = _signature(_param(params, 0, "signature"))
        raw_config = params[1] if len(params) > 1 else None
        # The old form passes the encoding as a bare string.
        config = {"encoding": raw_config} if isinstance(raw_config, str) else _config(params, 1)
        commitment = _commitment(config)
        if commitment == PROCESSED:
            raise invalid_params("Method does not support commitment below `confirmed`")
        max_version = _max_version(config)
        record = self.ledger.record(signature)
        if record is None or record.slot > self.ledger.slot(commitment):
            return None
        # A record never changes once executed, and every watcher of a chain (the relayer, each
        # attester) asks for the same transactions: encode each once (per encoding).
        encoding = config.get("encoding") or "json"
        key = (signature, encoding, max_version)
        cached = self._encoded.get(key)
        if cached is not None and cached[0] is record:
            return cached[1]
        result = encode_confirmed_transaction(record, encoding, max_version)
        while self._encoded and len(self._encoded) >= ENCODED_TRANSACTIONS_KEPT:
            del self._encoded[next(iter(self._encoded))]  # the oldest
        self._encoded[key] = (record, result)
        return result

    # --- blocks ---

    def _confirmed_commitment(self, config: dict[str, Any]) -> str:
        commitment = _commitment(config)
        if commitment == PROCESSED:
            raise invalid_params("Method does not support commitment below `confirmed`")
        return commitment

    async def rpc_getBlock(self, params: list[Any]) -> Any:
        slot = _uint(_param(params, 0, "slot"), "a slot number")
        raw_config = params[1] if len(params) > 1 else None
        config = {"encoding": raw_config} if isinstance(raw_config, str) else _config(params, 1)
        commitment = self._confirmed_commitment(config)
        block = self.ledger.block(slot)
        if block is None or slot > self.ledger.slot(commitment):
            raise RpcError(BLOCK_NOT_AVAILABLE, f"Block not available for slot {slot}")
        details = config.get("transactionDetails") or "full"
        if details not in ("full", "signatures", "none"):
            raise invalid_params(f"Invalid params: transactionDetails `{details}` is not supported on this localnet")
        encoding = config.get("encoding") or "json"
        max_version = _max_version(config)
        records = self.ledger.records_in_slot(slot)
        parent = self.ledger.block(block.parent)
        confirmed = UiConfirmedBlock(
            parent.blockhash if parent else block.blockhash,
            block.blockhash,
            block.parent,
            transactions=[_encoded_with_meta(r, encoding, max_version) for r in records] if details == "full" else None,
            signatures=[r.signature for r in records] if details == "signatures" else None,
            rewards=[] if _flag(config, "rewards", True) else None,
            block_time=block.block_time,
            block_height=slot,
        )
        result = solders_result(GetBlockResp(confirmed))
        if details == "full" and encoding == "base58":
            for encoded, record in zip(result["transactions"], records):
                _patch_base58(encoded, record)
        return result

    async def rpc_getBlocks(self, params: list[Any]) -> Any:
        start = _uint(_param(params, 0, "start slot"), "a slot number")
        second = params[1] if len(params) > 1 else None
        if isinstance(second, dict):  # getBlocks(start, config) is allowed too
            end_param, config = None, second
        else:
            end_param, config = second, _config(params, 2)
        top = self.ledger.slot(self._confirmed_commitment(config))
        end = min(top, _uint(end_param, "a slot number") if end_param is not None else top)
        if end - start > MAX_GET_BLOCKS_RANGE:
            raise invalid_params(f"Slot range too large; max {MAX_GET_BLOCKS_RANGE}")
        return [slot for slot in range(start, end + 1) if self.ledger.block(slot) is not None]

    async def rpc_getBlocksWithLimit(self, params: list[Any]) -> Any:
        start = _uint(_param(params, 0, "start slot"), "a slot number")
        limit = _uint(_param(params, 1, "limit"), "a limit")
        if limit > MAX_GET_BLOCKS_RANGE:
            raise invalid_params(f"Limit too large; max {MAX_GET_BLOCKS_RANGE}")
        top = self.ledger.slot(self._confirmed_commitment(_config(params, 2)))
        return [slot for slot in range(start, min(top, start + limit - 1) + 1) if self.ledger.block(slot) is not None]

    async def rpc_getSignaturesForAddress(self, params: list[Any]) -> Any:
        address = _pubkey(_param(params, 0, "address"))
        config = _config(params, 1)
        commitment = _commitment(config)
        if commitment == PROCESSED:
            raise invalid_params("Method does not support commitment below `confirmed`")
        self._context_slot(config)
        limit = config.get("limit")
        limit = MAX_SIGNATURES_FOR_ADDRESS if limit is None else _uint(limit, "a limit")
        if limit == 0 or limit > MAX_SIGNATURES_FOR_ADDRESS:
            raise invalid_params(f"Invalid limit; max {MAX_SIGNATURES_FOR_ADDRESS}")
        before = _signature(config["before"]) if config.get("before") else None
        until = _signature(config["until"]) if config.get("until") else None
        records = self.ledger.signatures_for_address(
            address, before=before, until=until, limit=limit, commitment=commitment
        )
        items = [
            RpcConfirmedTransactionStatusWithSignature(
                r.signature,
                r.slot,
                r.err,
                r.memo,
                r.block_time,
                _STATUS[self.ledger.commitment_of(r.slot)],
            )
            for r in records
        ]
        return solders_result(GetSignaturesForAddressResp(items))


def _account_filter(spec: Any) -> Callable[[bytes], bool]:
    if not isinstance(spec, dict) or len(spec) != 1:
        raise invalid_params("Invalid params: each filter is {memcmp: {...}} or {dataSize: n}")
    if "dataSize" in spec:
        size = _uint(spec["dataSize"], "a data size")
        return lambda data: len(data) == size
    if "memcmp" in spec:
        memcmp = spec["memcmp"]
        if not isinstance(memcmp, dict):
            raise invalid_params("Invalid params: memcmp is {offset, bytes, encoding}")
        offset = _uint(memcmp.get("offset"), "a memcmp offset")
        text = _str(memcmp.get("bytes"), "memcmp bytes")
        encoding = memcmp.get("encoding") or "base58"
        try:
            if encoding == "base58":
                wanted = b58decode(text)
            elif encoding == "base64":
                wanted = b64decode(text)
            else:
                raise invalid_params(f"Invalid params: unknown memcmp encoding `{encoding}`")
        except DecodeError:
            raise invalid_params(f"Invalid params: memcmp bytes are not valid {encoding}") from None
        if len(wanted) > 128:
            raise invalid_params("Encoded binary (base 58) data should be less than 129 bytes")
        return lambda data: data[offset : offset + len(wanted)] == wanted
    raise invalid_params(f"Invalid params: unsupported filter {next(iter(spec))}")
