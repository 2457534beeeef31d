"""The Solana program's fee instructions and accounts (contracts/solana/src/fees.c; README.md "Fees"),
and the quote it computes, in Python: same integers, same rounding (docs/PROTOCOL.md "Fees", "Solana").

Accounts: the fee config PDA ["fee", dst_domain u32 LE] (120 bytes) per destination, set by the
committee config's admin (SetFeeConfig 26); the fee vault PDA ["fee_vault"] (56 bytes) that SendPaid (29)
pays into and ClaimFees (28) empties to the beneficiary SetBeneficiary (27) named. Once any fee config
is set, the unpaid Send (17) is refused with FEE_REQUIRED (outbox byte 10)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from solders.instruction import AccountMeta, Instruction
from solders.pubkey import Pubkey
from solders.system_program import ID as SYSTEM_PROGRAM_ID

from adapters.solana.program import ProgramInstruction, committee_address, outbox_address

FEE_SEED = b"fee"
FEE_VAULT_SEED = b"fee_vault"
FEE_EVENT_TAG = b"TESSERA_FEE"
FEE_MAGIC = b"TESSFEEC"
VAULT_MAGIC = b"TESSVALT"
FEE_ACCOUNT_LEN = 120
VAULT_LEN = 56
# Send's accounts plus fee PDA, vault, two feeds, system program: a 512-byte payload still fits.
SEND_PAID_CU_LIMIT = 60_000

# magic, version, bump, dst_decimals, pad, dst_domain, gas_price, base_gas, gas_per_byte_milli,
# margin_bps, pad 2, max_age u32, dst_feed, sol_feed, updated_at
_FEE_LAYOUT = struct.Struct("<8sBBBxIQQQH2xI32s32sq")
assert _FEE_LAYOUT.size == FEE_ACCOUNT_LEN


@dataclass(frozen=True)
class FeeParams:
    """What SetFeeConfig stores for one destination domain."""

    gas_price: int  # destination smallest units (wei) per gas
    base_gas: int
    gas_per_byte_milli: int  # gas per payload byte x 1000 (728.5 gas/byte -> 728_500)
    dst_decimals: int  # the destination token's decimals (18 for ETH)
    margin_bps: int
    max_age_s: int  # a feed price older than this refuses the send (FEE_PRICE_STALE)
    dst_feed: Pubkey  # the program's feed account of the destination token's price
    sol_feed: Pubkey  # ... of SOL's, in the same quote currency


@dataclass(frozen=True)
class FeeAccount:
    dst_domain: int
    params: FeeParams
    updated_at: int

    @classmethod
    def decode(cls, data: bytes) -> "FeeAccount":
        data = bytes(data)
        if len(data) < FEE_ACCOUNT_LEN or data[:8] != FEE_MAGIC:
            raise ValueError("not a Tessera fee config account (no TESSFEEC header)")
        (_, _version, _bump, dst_dec, domain, gas_price, base_gas, per_byte, margin, max_age, dst_feed, sol_feed,
         updated) = _FEE_LAYOUT.unpack_from(data)
        return cls(domain, FeeParams(gas_price, base_gas, per_byte, dst_dec, margin, max_age,
                                     Pubkey.from_bytes(dst_feed), Pubkey.from_bytes(sol_feed)), updated)


def fee_address(program_id: Pubkey, dst_domain: int) -> Pubkey:
    return Pubkey.find_program_address([FEE_SEED, struct.pack("<I", dst_domain)], program_id)[0]


def vault_address(program_id: Pubkey) -> Pubkey:
    return Pubkey.find_program_address([FEE_VAULT_SEED], program_id)[0]


def vault_beneficiary(data: bytes) -> Pubkey | None:
    data = bytes(data)
    if len(data) < VAULT_LEN or data[:8] != VAULT_MAGIC or data[16:48] == bytes(32):
        return None
    return Pubkey.from_bytes(data[16:48])


def quote_lamports(*, gas_price: int, base_gas: int, gas_per_byte_milli: int, dst_decimals: int, margin_bps: int,
                   dst_price: int, dst_feed_decimals: int, sol_price: int, sol_feed_decimals: int,
                   payload_len: int) -> int:
    """The program's quote (fees.c quote_lamports):
    gas = base_gas + ceil(gas_per_byte_milli * payload_len / 1000)
    lamports = ceil(gas * gas_price * dst_price * (10000 + margin_bps) * 10^(9 + sol_feed_decimals)
                    / (sol_price * 10000 * 10^(dst_decimals + dst_feed_decimals)))"""
    if dst_price <= 0 or sol_price <= 0:
        raise ValueError("a feed price must be positive")
    gas = base_gas + -(-gas_per_byte_milli * payload_len // 1000)
    num = gas * gas_price * dst_price * (10_000 + margin_bps)
    den = sol_price * 10_000
    e = 9 + sol_feed_decimals - dst_decimals - dst_feed_decimals
    if e > 0:
        num *= 10**e
    else:
        den *= 10**-e
    return -(-num // den)


def set_fee_config_ix(program_id: Pubkey, admin: Pubkey, dst_domain: int, p: FeeParams) -> Instruction:
    data = (bytes([ProgramInstruction.SET_FEE_CONFIG])
            + struct.pack("<IQQQBHI", dst_domain, p.gas_price, p.base_gas, p.gas_per_byte_milli, p.dst_decimals,
                          p.margin_bps, p.max_age_s)
            + bytes(p.dst_feed) + bytes(p.sol_feed))
    return Instruction(program_id, data, [
        AccountMeta(admin, True, True),
        AccountMeta(committee_address(program_id)[0], False, False),
        AccountMeta(fee_address(program_id, dst_domain), False, True),
        AccountMeta(outbox_address(program_id)[0], False, True),
        AccountMeta(vault_address(program_id), False, True),
        AccountMeta(SYSTEM_PROGRAM_ID, False, False),
    ])


def set_beneficiary_ix(program_id: Pubkey, admin: Pubkey, beneficiary: Pubkey) -> Instruction:
    return Instruction(program_id, bytes([ProgramInstruction.SET_BENEFICIARY]) + bytes(beneficiary), [
        AccountMeta(admin, True, True),
        AccountMeta(committee_address(program_id)[0], False, False),
        AccountMeta(vault_address(program_id), False, True),
        AccountMeta(SYSTEM_PROGRAM_ID, False, False),
    ])


def claim_fees_ix(program_id: Pubkey, beneficiary: Pubkey, vault: Pubkey | None = None) -> Instruction:
    return Instruction(program_id, bytes([ProgramInstruction.CLAIM_FEES]), [
        AccountMeta(beneficiary, True, True),
        AccountMeta(vault or vault_address(program_id), False, True),
    ])


def send_paid_ix(program_id: Pubkey, sender: Pubkey, *, dst_domain: int, receiver: bytes, kind: int, payload: bytes,
                 max_fee: int, dst_feed: Pubkey, sol_feed: Pubkey, fee_account: Pubkey | None = None) -> Instruction:
    """SendPaid; unchecked beyond the encoding, so tests can pass what the program must refuse."""
    if len(receiver) != 32:
        raise ValueError("receiver must be 32 bytes (left-pad EVM addresses with zeros)")
    data = (bytes([ProgramInstruction.SEND_PAID]) + struct.pack("<I", dst_domain) + receiver + bytes([kind])
            + struct.pack("<Q", max_fee) + payload)
    return Instruction(program_id, data, [
        AccountMeta(sender, True, True),
        AccountMeta(outbox_address(program_id)[0], False, True),
        AccountMeta(committee_address(program_id)[0], False, False),
        AccountMeta(fee_account or fee_address(program_id, dst_domain), False, False),
        AccountMeta(vault_address(program_id), False, True),
        AccountMeta(dst_feed, False, False),
        AccountMeta(sol_feed, False, False),
        AccountMeta(SYSTEM_PROGRAM_ID, False, False),
    ])


def check_quote_ix(program_id: Pubkey, *, gas_price: int, base_gas: int, gas_per_byte_milli: int, dst_decimals: int,
                   margin_bps: int, dst_price: int, dst_feed_decimals: int, sol_price: int, sol_feed_decimals: int,
                   payload_len: int) -> Instruction:
    data = bytes([ProgramInstruction.CHECK_QUOTE]) + struct.pack(
        "<QQQBHQBQBI", gas_price, base_gas, gas_per_byte_milli, dst_decimals, margin_bps, dst_price,
        dst_feed_decimals, sol_price, sol_feed_decimals, payload_len)
    return Instruction(program_id, data, [])


def fee_paid_from_logs(logs: list[str], message_id: bytes) -> int | None:
    """The lamports SendPaid charged for `message_id`, from its ("TESSERA_FEE", id, fee) log."""
    import base64

    for line in logs:
        if not line.startswith("Program data: "):
            continue
        fields = [base64.b64decode(f) for f in line[len("Program data: "):].split()]
        if len(fields) == 3 and fields[0] == FEE_EVENT_TAG and fields[1] == message_id and len(fields[2]) == 8:
            return int.from_bytes(fields[2], "little")
    return None
