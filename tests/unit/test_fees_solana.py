"""Solana delivery fees in LiteSVM with the built tessera.so (issue 14 item 3): SetFeeConfig (admin only),
SendPaid charging the on-chain quote into the fee vault (max_fee, the price feeds it names, fresh
prices), the unpaid Send refused once fees are configured, ClaimFees to the beneficiary only. The
quote's formula is checked against Python's (adapters/solana/fee_program.py) through CheckQuote."""

from __future__ import annotations

import struct

import pytest
from solders.account import Account
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.transaction_metadata import FailedTransactionMetadata, TransactionMetadata
from solders.transaction import Transaction

from adapters.solana.fee_program import (
    FeeParams,
    check_quote_ix,
    claim_fees_ix,
    fee_address,
    fee_paid_from_logs,
    quote_lamports,
    send_paid_ix,
    set_beneficiary_ix,
    set_fee_config_ix,
    vault_address,
)
from adapters.solana.feeds import _LAYOUT as FEED_LAYOUT
from adapters.solana.feeds import FEED_MAGIC, FLAG_PRICE_FITS_I128, feed_address
from adapters.solana.program import ProgramErrorCode, init_gateway_ix, send_ix
from relay.envelope import keccak256
from relay.protocol import MessageKind
from tests.support.solana import CU_LIMIT, Chain, funded

E = ProgramErrorCode
EVM = 31337
OTHER = 31338
NOW = 1_700_000_000
ETH_USD = 3_000 * 10**8  # 8 decimals
SOL_USD = 150 * 10**8


def _feed(chain: Chain, feed_id: str, price: int, *, decimals: int = 8, observed_ms: int = NOW * 1000,
          owner: Pubkey | None = None, at: Pubkey | None = None) -> Pubkey:
    """Writes a feed account as UpdateFeed leaves it (the feed's signature is not what is tested here)."""
    address = at or feed_address(chain.program_id, feed_id)[0]
    data = FEED_LAYOUT.pack(FEED_MAGIC, 1, 255, decimals, 3, FLAG_PRICE_FITS_I128, 1,
                            feed_id.encode().ljust(32, b"\0"), 1, observed_ms, observed_ms, 1, NOW, 1,
                            price.to_bytes(16, "little", signed=True), bytes(16), price.to_bytes(32, "big", signed=True),
                            bytes(32), bytes(64))
    chain.svm.set_account(address, Account(10**7, data, owner or chain.program_id, False, 0))
    return address


def _params(chain: Chain, **over) -> FeeParams:
    base = dict(gas_price=2 * 10**9, base_gas=310_000, gas_per_byte_milli=728_500, dst_decimals=18, margin_bps=1000,
                max_age_s=3600, dst_feed=feed_address(chain.program_id, "ETH/USD")[0],
                sol_feed=feed_address(chain.program_id, "SOL/USD")[0])
    base.update(over)
    return FeeParams(**base)


def _expected(p: FeeParams, payload_len: int, eth: int = ETH_USD, sol: int = SOL_USD) -> int:
    return quote_lamports(gas_price=p.gas_price, base_gas=p.base_gas, gas_per_byte_milli=p.gas_per_byte_milli,
                          dst_decimals=p.dst_decimals, margin_bps=p.margin_bps, dst_price=eth, dst_feed_decimals=8,
                          sol_price=sol, sol_feed_decimals=8, payload_len=payload_len)


@pytest.fixture
def paid(committee: Chain) -> tuple[Chain, FeeParams]:
    chain = committee
    chain.ok(init_gateway_ix(chain.program_id, chain.payer.pubkey()))
    _feed(chain, "ETH/USD", ETH_USD)
    _feed(chain, "SOL/USD", SOL_USD)
    p = _params(chain)
    chain.ok(set_fee_config_ix(chain.program_id, chain.payer.pubkey(), EVM, p))
    return chain, p


def _send(chain: Chain, sender: Keypair, p: FeeParams, *, max_fee: int, payload: bytes = b"hello", dst: int = EVM,
          **over):
    kw = dict(dst_feed=p.dst_feed, sol_feed=p.sol_feed)
    kw.update(over)
    return send_paid_ix(chain.program_id, sender.pubkey(), dst_domain=dst, receiver=bytes(32), kind=MessageKind.DATA,
                        payload=payload, max_fee=max_fee, **kw)


def _balance(chain: Chain, key: Pubkey) -> int:
    account = chain.svm.get_account(key)
    return 0 if account is None else account.lamports


VECTORS = [
    # gas_price, base_gas, per_byte_milli, dst_dec, margin, dst_price, dst_fd, sol_price, sol_fd, len
    (2 * 10**9, 310_000, 728_500, 18, 1000, ETH_USD, 8, SOL_USD, 8, 5),
    (2 * 10**9, 310_000, 728_500, 18, 1000, ETH_USD, 8, SOL_USD, 8, 512),
    (1, 21_000, 0, 18, 0, 1, 0, 10**12, 12, 0),
    (50 * 10**9, 1_000_000, 16_000, 18, 65535, 4_000 * 10**12, 12, 90 * 10**6, 6, 333),
    (7, 100, 1, 6, 3, 10**6, 6, 10**8, 8, 1),
]


@pytest.mark.parametrize("v", VECTORS)
def test_fee_quote_formula_is_the_same_in_c_and_python(committee: Chain, v) -> None:
    names = ("gas_price", "base_gas", "gas_per_byte_milli", "dst_decimals", "margin_bps", "dst_price",
             "dst_feed_decimals", "sol_price", "sol_feed_decimals", "payload_len")
    args = dict(zip(names, v))
    meta = committee.ok(check_quote_ix(committee.program_id, **args))
    assert int.from_bytes(bytes(meta.return_data().data), "little") == quote_lamports(**args)


def test_fee_quote_vector_of_protocol_md(committee: Chain) -> None:
    """docs/PROTOCOL.md "Fees" (Solana): 2 gwei, 310,000 + 728.5 gas/byte, ETH 3,000 $, SOL 150 $,
    10 % margin, 5-byte payload -> 13,800,292 lamports."""
    args = dict(gas_price=2 * 10**9, base_gas=310_000, gas_per_byte_milli=728_500, dst_decimals=18, margin_bps=1000,
                dst_price=ETH_USD, dst_feed_decimals=8, sol_price=SOL_USD, sol_feed_decimals=8, payload_len=5)
    assert quote_lamports(**args) == 13_800_292
    meta = committee.ok(check_quote_ix(committee.program_id, **args))
    assert int.from_bytes(bytes(meta.return_data().data), "little") == 13_800_292


def test_paid_send_charges_the_quote_into_the_vault_and_logs_it(paid) -> None:
    chain, p = paid
    sender = funded(chain)
    quote = _expected(p, 5)
    vault = vault_address(chain.program_id)
    before_vault, before_sender = _balance(chain, vault), _balance(chain, sender.pubkey())
    meta = chain.ok(_send(chain, sender, p, max_fee=quote + 10**6), signers=(sender,))  # at most what it agreed to
    assert _balance(chain, vault) - before_vault == quote
    assert before_sender - _balance(chain, sender.pubkey()) == quote  # the payer of the tx fee is chain.payer
    message_id = bytes(meta.return_data().data)[:32]
    assert fee_paid_from_logs(list(meta.logs()), message_id) == quote
    # Once fees are configured the unpaid Send is refused, not a free path.
    chain.fails(E.FEE_REQUIRED, send_ix(chain.program_id, sender.pubkey(), dst_domain=EVM, receiver=bytes(32),
                                        kind=MessageKind.DATA, payload=b"x"), signers=(sender,))


def test_underpayment_max_fee_below_quote_is_refused(paid) -> None:
    chain, p = paid
    sender = funded(chain)
    quote = _expected(p, 5)
    chain.fails(E.FEE_ABOVE_MAX, _send(chain, sender, p, max_fee=quote - 1), signers=(sender,))
    chain.fails(E.FEE_ABOVE_MAX, _send(chain, sender, p, max_fee=0), signers=(sender,))
    # A sender without the lamports fails in the System transfer: nothing is sent.
    poor = funded(chain, quote // 2)
    result = chain.send(_send(chain, poor, p, max_fee=quote), signers=(poor,))
    assert isinstance(result, FailedTransactionMetadata)


def test_substituted_fee_account_is_refused(paid) -> None:
    chain, p = paid
    sender = funded(chain)
    cheap = _params(chain, gas_price=1)
    chain.ok(set_fee_config_ix(chain.program_id, chain.payer.pubkey(), OTHER, cheap))
    # Another domain's (cheaper) fee config for a send to EVM.
    chain.fails(E.FEE_WRONG_ADDRESS, _send(chain, sender, p, max_fee=10**9, fee_account=fee_address(chain.program_id, OTHER)),
                signers=(sender,))
    # A lookalike with the same bytes, not owned by the program.
    real = chain.svm.get_account(fee_address(chain.program_id, EVM))
    fake = Keypair().pubkey()
    chain.svm.set_account(fake, Account(real.lamports, bytes(real.data), Keypair().pubkey(), False, 0))
    chain.fails(E.FEE_NOT_CONFIGURED, _send(chain, sender, p, max_fee=10**9, fee_account=fake), signers=(sender,))
    # The same bytes owned by the program but at another address (not the PDA).
    chain.svm.set_account(fake, Account(real.lamports, bytes(real.data), chain.program_id, False, 0))
    chain.fails(E.FEE_WRONG_ADDRESS, _send(chain, sender, p, max_fee=10**9, fee_account=fake), signers=(sender,))
    # A destination with no fee config: refused, never free.
    chain.fails(E.FEE_NOT_CONFIGURED, _send(chain, sender, p, max_fee=10**9, dst=4242), signers=(sender,))


def test_substituted_price_feeds_are_refused(paid) -> None:
    chain, p = paid
    sender = funded(chain)
    cheap_eth = _feed(chain, "ETH/USD-CHEAP", 1)  # another feed of the program
    chain.fails(E.FEE_FEED_MISMATCH, _send(chain, sender, p, max_fee=10**9, dst_feed=cheap_eth), signers=(sender,))
    chain.fails(E.FEE_FEED_MISMATCH, _send(chain, sender, p, max_fee=10**9, dst_feed=p.sol_feed, sol_feed=p.dst_feed),
                signers=(sender,))
    rich_sol = _feed(chain, "SOL/USD-RICH", 10**20)
    chain.fails(E.FEE_FEED_MISMATCH, _send(chain, sender, p, max_fee=10**9, sol_feed=rich_sol), signers=(sender,))
    # A lookalike at the configured address but owned by another program (or missing): no price.
    _feed(chain, "ETH/USD", 1, owner=Keypair().pubkey())
    chain.fails(E.FEE_FEED_INVALID, _send(chain, sender, p, max_fee=10**9), signers=(sender,))
    chain.svm.set_account(p.dst_feed, Account(0, b"", Pubkey.default(), False, 0))
    chain.fails(E.FEE_FEED_INVALID, _send(chain, sender, p, max_fee=10**9), signers=(sender,))


def test_stale_price_is_refused_not_a_zero_fee(paid) -> None:
    chain, p = paid
    sender = funded(chain)
    chain.set_time(NOW + p.max_age_s)  # exactly at the limit: still fresh
    chain.ok(_send(chain, sender, p, max_fee=10**9), signers=(sender,))
    chain.set_time(NOW + p.max_age_s + 1)
    chain.fails(E.FEE_PRICE_STALE, _send(chain, sender, p, max_fee=10**9), signers=(sender,))
    chain.set_time(NOW)
    _feed(chain, "SOL/USD", SOL_USD, observed_ms=0)  # never observed
    chain.fails(E.FEE_PRICE_STALE, _send(chain, sender, p, max_fee=10**9), signers=(sender,))
    _feed(chain, "SOL/USD", 0)  # a zero price would make the quote 0 (or infinite)
    chain.fails(E.FEE_FEED_INVALID, _send(chain, sender, p, max_fee=10**9), signers=(sender,))


def test_vault_claimed_only_by_the_beneficiary(paid) -> None:
    chain, p = paid
    sender = funded(chain)
    quote = _expected(p, 5)
    for _ in range(3):
        chain.ok(_send(chain, sender, p, max_fee=quote), signers=(sender,))
    beneficiary = funded(chain, 10**7)
    intruder = funded(chain, 10**7)
    chain.fails(E.NOT_BENEFICIARY, claim_fees_ix(chain.program_id, beneficiary.pubkey()), signers=(beneficiary,))  # none set
    chain.fails(E.NOT_ADMIN, set_beneficiary_ix(chain.program_id, intruder.pubkey(), intruder.pubkey()),
                signers=(intruder,))
    chain.ok(set_beneficiary_ix(chain.program_id, chain.payer.pubkey(), beneficiary.pubkey()))
    chain.fails(E.NOT_BENEFICIARY, claim_fees_ix(chain.program_id, intruder.pubkey()), signers=(intruder,))
    # A substituted vault: a lookalike naming the intruder, not at the PDA / not the program's.
    real = chain.svm.get_account(vault_address(chain.program_id))
    data = bytearray(bytes(real.data))
    data[16:48] = bytes(intruder.pubkey())
    fake = Keypair().pubkey()
    chain.svm.set_account(fake, Account(10**9, bytes(data), chain.program_id, False, 0))
    chain.fails(E.VAULT_WRONG_ADDRESS, claim_fees_ix(chain.program_id, intruder.pubkey(), vault=fake), signers=(intruder,))
    before = _balance(chain, beneficiary.pubkey())
    chain.ok(claim_fees_ix(chain.program_id, beneficiary.pubkey()), signers=(beneficiary,))
    assert _balance(chain, beneficiary.pubkey()) - before == 3 * quote
    chain.fails(E.NOTHING_TO_CLAIM, claim_fees_ix(chain.program_id, beneficiary.pubkey()), signers=(beneficiary,))


def test_fee_config_set_by_a_non_admin_is_refused(paid) -> None:
    chain, p = paid
    intruder = funded(chain)
    chain.fails(E.NOT_ADMIN, set_fee_config_ix(chain.program_id, intruder.pubkey(), EVM, _params(chain, gas_price=1)),
                signers=(intruder,))
    chain.fails(E.NOT_ADMIN, set_fee_config_ix(chain.program_id, intruder.pubkey(), 999, _params(chain)),
                signers=(intruder,))
    chain.fails(E.FEE_CONFIG_INVALID, set_fee_config_ix(chain.program_id, chain.payer.pubkey(), EVM,
                                                        _params(chain, gas_price=0)))


def test_send_paid_with_a_512_byte_payload_fits_one_packet(paid) -> None:
    chain, p = paid
    sender = funded(chain)
    ix = _send(chain, sender, p, max_fee=10**9, payload=bytes(512))
    from solders.compute_budget import set_compute_unit_limit
    tx = Transaction.new_signed_with_payer([set_compute_unit_limit(CU_LIMIT), ix], sender.pubkey(), [sender],
                                           chain.svm.latest_blockhash())
    size = len(bytes(tx))
    assert size <= 1232, size
    meta = chain.svm.send_transaction(tx)
    assert isinstance(meta, TransactionMetadata), meta
    print(f"SendPaid 512 B: {size} bytes (with a compute-budget ix), {meta.compute_units_consumed()} CU")
    for n in (0, 256):
        m = chain.ok(_send(chain, sender, p, max_fee=10**9, payload=bytes(n)), signers=(sender,))
        print(f"SendPaid {n} B: {m.compute_units_consumed()} CU")
