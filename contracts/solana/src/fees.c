#include "fees.h"

#include "accounts.h"
#include "committee.h"
#include "feeds.h"
#include "gateway.h"

static const u8 FEE_MAGIC_BYTES[8] = {'T', 'E', 'S', 'S', 'F', 'E', 'E', 'C'};
static const u8 VAULT_MAGIC_BYTES[8] = {'T', 'E', 'S', 'S', 'V', 'A', 'L', 'T'};
static const u8 FEED_MAGIC_BYTES[8] = {'T', 'E', 'S', 'S', 'F', 'E', 'E', 'D'};

/* ---- 128-bit unsigned arithmetic from 64-bit operations (no libcalls on BPF) ---- */
typedef struct {
  u64 lo, hi;
} U128;

static U128 mul64(u64 a, u64 b) {
  u64 a0 = a & 0xffffffffULL, a1 = a >> 32, b0 = b & 0xffffffffULL, b1 = b >> 32;
  u64 p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
  u64 mid = (p00 >> 32) + (p01 & 0xffffffffULL) + (p10 & 0xffffffffULL);
  U128 r = {(p00 & 0xffffffffULL) | (mid << 32), p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32)};
  return r;
}

/* a *= b; false when the product does not fit 127 bits (the division below wants the top bit clear). */
static bool mul128(U128 *a, u64 b) {
  U128 lo = mul64(a->lo, b);
  U128 hi = mul64(a->hi, b);
  if (hi.hi != 0) return false;
  u64 top = lo.hi + hi.lo;
  if (top < lo.hi || (top >> 63) != 0) return false;
  a->lo = lo.lo;
  a->hi = top;
  return true;
}

static bool ge128(U128 a, U128 b) { return a.hi > b.hi || (a.hi == b.hi && a.lo >= b.lo); }

/* ceil(num / den) into *out; false if den is 0 or the quotient does not fit u64. Restoring division:
 * both operands are < 2^127 (mul128), so the shifted remainder never overflows. */
static bool ceil_div128(U128 num, U128 den, u64 *out) {
  if (den.lo == 0 && den.hi == 0) return false;
  U128 q = {0, 0}, rem = {0, 0};
#pragma clang loop unroll(disable)
  for (int i = 127; i >= 0; i--) {
    rem.hi = (rem.hi << 1) | (rem.lo >> 63);
    rem.lo = (rem.lo << 1) | ((i >= 64 ? (num.hi >> (i - 64)) : (num.lo >> i)) & 1);
    if (ge128(rem, den)) {
      u64 borrow = rem.lo < den.lo;
      rem.lo -= den.lo;
      rem.hi -= den.hi + borrow;
      if (i >= 64) q.hi |= 1ULL << (i - 64);
      else q.lo |= 1ULL << i;
    }
  }
  if (rem.lo != 0 || rem.hi != 0) {
    q.lo += 1;
    if (q.lo == 0) q.hi += 1;
  }
  if (q.hi != 0) return false;
  *out = q.lo;
  return true;
}

/* The quote, docs/PROTOCOL.md "Fees" (adapters/solana/fees.py solana_quote mirrors it):
 *   gas      = base_gas + ceil(gas_per_byte_milli * payload_len / 1000)
 *   lamports = ceil(gas * gas_price * dst_price * (10000 + margin_bps) * 10^(9 + sol_feed_dec)
 *                   / (sol_price * 10000 * 10^(dst_decimals + dst_feed_dec)))             */
typedef struct {
  u64 gas_price, base_gas, gas_per_byte_milli;
  u8 dst_decimals;
  u16 margin_bps;
  u64 dst_price;
  u8 dst_feed_decimals;
  u64 sol_price;
  u8 sol_feed_decimals;
} QuoteInputs;

static u64 quote_lamports(const QuoteInputs *q, u64 payload_len, u64 *out) {
  if (q->dst_price == 0 || q->sol_price == 0) return ERR_FEE_FEED_INVALID;
  U128 per_byte = mul64(q->gas_per_byte_milli, payload_len);
  if (per_byte.hi != 0) return ERR_FEE_OVERFLOW;
  u64 gas = q->base_gas + (per_byte.lo / 1000) + (per_byte.lo % 1000 != 0);
  if (gas < q->base_gas) return ERR_FEE_OVERFLOW;
  U128 num = mul64(gas, q->gas_price);
  if ((num.hi >> 63) != 0 || !mul128(&num, q->dst_price) || !mul128(&num, 10000ULL + q->margin_bps))
    return ERR_FEE_OVERFLOW;
  U128 den = {q->sol_price, 0};
  if (!mul128(&den, 10000)) return ERR_FEE_OVERFLOW;
  i64 e = 9 + (i64)q->sol_feed_decimals - (i64)q->dst_decimals - (i64)q->dst_feed_decimals;
  for (; e > 0; e--)
    if (!mul128(&num, 10)) return ERR_FEE_OVERFLOW;
  for (; e < 0; e++)
    if (!mul128(&den, 10)) return ERR_FEE_OVERFLOW;
  if (!ceil_div128(num, den, out)) return ERR_FEE_OVERFLOW;
  return 0;
}

/* A price of this program's feed `feed`, which must be the account the fee config names, fresh
 * within max_age seconds of `now`. A missing, foreign, non-positive or stale price is an error:
 * never a zero fee. */
typedef struct {
  const SolPubkey *program_id;
  i64 now;
  u32 max_age;
} FeedCheck;

static u64 feed_price(const SolAccountInfo *feed, const u8 *expected_key, const FeedCheck *c, u64 *price,
                      u8 *decimals) {
  const SolPubkey *program_id = c->program_id;
  i64 now = c->now;
  u32 max_age = c->max_age;
  if (!sol_bytes_eq(feed->key->x, expected_key, SOL_PUBKEY_LEN)) return ERR_FEE_FEED_MISMATCH;
  if (!sol_pubkey_eq(feed->owner, program_id) || feed->data_len < FEED_LEN ||
      !sol_bytes_eq(feed->data + FEED_MAGIC, FEED_MAGIC_BYTES, 8) || feed->data[FEED_VERSION_AT] != FEED_VERSION)
    return ERR_FEE_FEED_INVALID;
  const u8 *d = feed->data;
  if (!(d[FEED_FLAGS] & FEED_FLAG_PRICE_FITS_I128) || sol_read_u64_le(d + FEED_PRICE_I128 + 8) != 0 ||
      sol_read_u64_le(d + FEED_PRICE_I128) == 0)
    return ERR_FEE_FEED_INVALID;
  u64 observed_ms = sol_read_u64_le(d + FEED_OBSERVED_AT);
  if (observed_ms == 0 || (u64)now * 1000ULL > observed_ms + (u64)max_age * 1000ULL) return ERR_FEE_PRICE_STALE;
  *price = sol_read_u64_le(d + FEED_PRICE_I128);
  *decimals = d[FEED_DECIMALS];
  return 0;
}

static u64 vault_bump_check(const SolAccountInfo *vault, const SolPubkey *program_id) {
  if (!sol_pubkey_eq(vault->owner, program_id) || vault->data_len < VAULT_LEN ||
      !sol_bytes_eq(vault->data + VAULT_MAGIC, VAULT_MAGIC_BYTES, 8) || vault->data[VAULT_VERSION_AT] != VAULT_VERSION)
    return ERR_VAULT_WRONG_ADDRESS;
  u8 bump = vault->data[VAULT_BUMP];
  SolBytes seeds[2] = {{(const u8 *)FEE_VAULT_SEED, sizeof(FEE_VAULT_SEED) - 1}, {&bump, 1}};
  SolPubkey expected;
  if (sol_create_program_address(seeds, 2, program_id, &expected) != 0 || !sol_pubkey_eq(&expected, vault->key))
    return ERR_VAULT_WRONG_ADDRESS;
  return 0;
}

/* Creates the vault at ["fee_vault"] if it does not exist yet (paid by `payer`); checks it otherwise. */
static u64 vault_ensure(SolParameters *params, SolAccountInfo *payer, SolAccountInfo *vault, SolAccountInfo *system) {
  const SolPubkey *program_id = params->program_id;
  if (sol_pubkey_eq(vault->owner, program_id)) return vault_bump_check(vault, program_id);
  if (!sol_is_zero(system->key->x, SOL_PUBKEY_LEN)) return ERR_WRONG_SYSTEM_PROGRAM;
  SolPubkey expected;
  u8 bump;
  SolBytes seeds[1] = {{(const u8 *)FEE_VAULT_SEED, sizeof(FEE_VAULT_SEED) - 1}};
  if (sol_try_find_program_address(seeds, 1, program_id, &expected, &bump) != 0 || !sol_pubkey_eq(&expected, vault->key))
    return ERR_VAULT_WRONG_ADDRESS;
  u8 bump_seed = bump;
  SolBytes signer_seeds[2] = {{(const u8 *)FEE_VAULT_SEED, sizeof(FEE_VAULT_SEED) - 1}, {&bump_seed, 1}};
  SolSignerSeeds signer = {signer_seeds, 2};
  PdaCreation creation = {payer, vault, system, &signer, VAULT_LEN};
  u64 err = create_pda(params, &creation);
  if (err) return err;
  sol_memset_(vault->data, 0, VAULT_LEN);
  sol_memcpy_(vault->data + VAULT_MAGIC, VAULT_MAGIC_BYTES, 8);
  vault->data[VAULT_VERSION_AT] = VAULT_VERSION;
  vault->data[VAULT_BUMP] = bump;
  return 0;
}

/* data: tag | dst_domain u32 | gas_price u64 | base_gas u64 | gas_per_byte_milli u64 | dst_decimals u8 |
 *       margin_bps u16 | max_age_s u32 | dst_feed (32) | sol_feed (32)   (all LE; 100 bytes)
 * accounts: [admin (signer, writable), committee config PDA, fee PDA ["fee", dst_domain] (writable),
 *            outbox PDA (writable), fee vault PDA (writable), system program].
 * Creates or overwrites the destination's fee config, creates the vault if needed and marks the outbox
 * "fees required": from then on the unpaid Send (17) is refused (FEE_REQUIRED). */
u64 fees_set_config(SolParameters *params) {
  if (params->account_count < 6) return ERR_NOT_ENOUGH_ACCOUNTS;
  if (params->data_len != 100) return ERR_INVALID_INSTRUCTION_DATA;
  SolAccountInfo *admin = &params->accounts[0];
  SolAccountInfo *config = &params->accounts[1];
  SolAccountInfo *fee = &params->accounts[2];
  SolAccountInfo *outbox = &params->accounts[3];
  SolAccountInfo *vault = &params->accounts[4];
  SolAccountInfo *system = &params->accounts[5];
  const SolPubkey *program_id = params->program_id;
  if (!admin->is_signer) return ERR_ACCOUNT_NOT_SIGNER;
  if (!admin->is_writable || !fee->is_writable || !outbox->is_writable || !vault->is_writable)
    return ERR_ACCOUNT_NOT_WRITABLE;
  u64 err = gateway_require_admin(config, program_id, admin);
  if (err) return err;
  err = gateway_outbox_check(outbox, program_id);
  if (err) return err;
  const u8 *d = params->data + 1;
  u32 dst_domain = sol_read_u32_le(d);
  u64 gas_price = sol_read_u64_le(d + 4);
  u8 dst_decimals = d[28];
  if (gas_price == 0 || dst_decimals > 36 || sol_is_zero(d + 35, 32) || sol_is_zero(d + 67, 32) ||
      sol_bytes_eq(d + 35, d + 67, 32))
    return ERR_FEE_CONFIG_INVALID;

  u8 domain_le[4];
  sol_write_u32_le(domain_le, dst_domain);
  SolPubkey expected;
  u8 bump;
  SolBytes seeds[2] = {{(const u8 *)FEE_SEED, sizeof(FEE_SEED) - 1}, {domain_le, 4}};
  if (sol_try_find_program_address(seeds, 2, program_id, &expected, &bump) != 0 || !sol_pubkey_eq(&expected, fee->key))
    return ERR_FEE_WRONG_ADDRESS;
  if (!sol_pubkey_eq(fee->owner, program_id)) {
    if (!sol_is_zero(system->key->x, SOL_PUBKEY_LEN)) return ERR_WRONG_SYSTEM_PROGRAM;
    u8 bump_seed = bump;
    SolBytes signer_seeds[3] = {{(const u8 *)FEE_SEED, sizeof(FEE_SEED) - 1}, {domain_le, 4}, {&bump_seed, 1}};
    SolSignerSeeds signer = {signer_seeds, 3};
    PdaCreation creation = {admin, fee, system, &signer, FEE_LEN};
    err = create_pda(params, &creation);
    if (err) return err;
  } else if (fee->data_len < FEE_LEN) {
    return ERR_FEE_WRONG_ADDRESS;
  }
  err = vault_ensure(params, admin, vault, system);
  if (err) return err;

  SolClock clock;
  if (sol_get_clock_sysvar(&clock) != 0) return ERR_SYSCALL_FAILED;
  u8 *f = fee->data;
  sol_memset_(f, 0, FEE_LEN);
  sol_memcpy_(f + FEE_MAGIC, FEE_MAGIC_BYTES, 8);
  f[FEE_VERSION_AT] = FEE_VERSION;
  f[FEE_BUMP] = bump;
  f[FEE_DST_DECIMALS] = dst_decimals;
  sol_write_u32_le(f + FEE_DST_DOMAIN, dst_domain);
  sol_memcpy_(f + FEE_GAS_PRICE, d + 4, 24); /* gas_price, base_gas, gas_per_byte_milli */
  sol_memcpy_(f + FEE_MARGIN_BPS, d + 29, 2);
  sol_memcpy_(f + FEE_MAX_AGE, d + 31, 4);
  sol_memcpy_(f + FEE_DST_FEED, d + 35, 64); /* dst_feed, sol_feed */
  sol_write_u64_le(f + FEE_UPDATED_AT, (u64)clock.unix_timestamp);
  gateway_set_fees_required(outbox);
  sol_log("tessera: fee config set");
  return 0;
}

/* data: tag | beneficiary (32); accounts: [admin (signer, writable), committee config PDA,
 * fee vault PDA (writable), system program]. Creates the vault if needed. */
u64 fees_set_beneficiary(SolParameters *params) {
  if (params->account_count < 4) return ERR_NOT_ENOUGH_ACCOUNTS;
  if (params->data_len != 33) return ERR_INVALID_INSTRUCTION_DATA;
  SolAccountInfo *admin = &params->accounts[0];
  SolAccountInfo *config = &params->accounts[1];
  SolAccountInfo *vault = &params->accounts[2];
  SolAccountInfo *system = &params->accounts[3];
  if (!admin->is_signer) return ERR_ACCOUNT_NOT_SIGNER;
  if (!admin->is_writable || !vault->is_writable) return ERR_ACCOUNT_NOT_WRITABLE;
  u64 err = gateway_require_admin(config, params->program_id, admin);
  if (err) return err;
  if (sol_is_zero(params->data + 1, 32)) return ERR_FEE_CONFIG_INVALID;
  err = vault_ensure(params, admin, vault, system);
  if (err) return err;
  sol_memcpy_(vault->data + VAULT_BENEFICIARY, params->data + 1, 32);
  sol_log("tessera: fee beneficiary set");
  return 0;
}

/* data: tag; accounts: [beneficiary (signer, writable), fee vault PDA (writable)].
 * Moves the vault's lamports above its rent-exempt minimum to the beneficiary the admin set. */
u64 fees_claim(SolParameters *params) {
  if (params->account_count < 2) return ERR_NOT_ENOUGH_ACCOUNTS;
  if (params->data_len != 1) return ERR_INVALID_INSTRUCTION_DATA;
  SolAccountInfo *beneficiary = &params->accounts[0];
  SolAccountInfo *vault = &params->accounts[1];
  if (!beneficiary->is_signer) return ERR_ACCOUNT_NOT_SIGNER;
  if (!beneficiary->is_writable || !vault->is_writable) return ERR_ACCOUNT_NOT_WRITABLE;
  u64 err = vault_bump_check(vault, params->program_id);
  if (err) return err;
  if (sol_is_zero(vault->data + VAULT_BENEFICIARY, 32) ||
      !sol_bytes_eq(vault->data + VAULT_BENEFICIARY, beneficiary->key->x, 32))
    return ERR_NOT_BENEFICIARY;
  if (sol_pubkey_eq(beneficiary->key, vault->key)) return ERR_NOT_BENEFICIARY;
  u64 keep;
  err = rent_exempt_minimum(vault->data_len, &keep);
  if (err) return err;
  if (*vault->lamports <= keep) return ERR_NOTHING_TO_CLAIM;
  u64 amount = *vault->lamports - keep;
  *vault->lamports = keep;
  *beneficiary->lamports += amount;
  sol_log_64_(0, 0, 0, 0, amount);
  return 0;
}

/* The destination's quote from its fee config and the two feeds it names (both checked). */
typedef struct {
  const SolAccountInfo *fee, *dst_feed, *sol_feed;
  u32 dst_domain;
  u64 payload_len;
} QuoteAccounts;

static u64 quote_from_accounts(const SolPubkey *program_id, const QuoteAccounts *a, u64 *lamports) {
  const SolAccountInfo *fee = a->fee, *dst_feed = a->dst_feed, *sol_feed = a->sol_feed;
  u32 dst_domain = a->dst_domain;
  u64 payload_len = a->payload_len;
  if (!sol_pubkey_eq(fee->owner, program_id) || fee->data_len < FEE_LEN ||
      !sol_bytes_eq(fee->data + FEE_MAGIC, FEE_MAGIC_BYTES, 8) || fee->data[FEE_VERSION_AT] != FEE_VERSION)
    return ERR_FEE_NOT_CONFIGURED;
  const u8 *f = fee->data;
  if (sol_read_u32_le(f + FEE_DST_DOMAIN) != dst_domain) return ERR_FEE_WRONG_ADDRESS;
  u8 domain_le[4];
  sol_write_u32_le(domain_le, dst_domain);
  u8 bump = f[FEE_BUMP];
  SolBytes seeds[3] = {{(const u8 *)FEE_SEED, sizeof(FEE_SEED) - 1}, {domain_le, 4}, {&bump, 1}};
  SolPubkey expected;
  if (sol_create_program_address(seeds, 3, program_id, &expected) != 0 || !sol_pubkey_eq(&expected, fee->key))
    return ERR_FEE_WRONG_ADDRESS;
  SolClock clock;
  if (sol_get_clock_sysvar(&clock) != 0) return ERR_SYSCALL_FAILED;
  u32 max_age = sol_read_u32_le(f + FEE_MAX_AGE);
  QuoteInputs q;
  q.gas_price = sol_read_u64_le(f + FEE_GAS_PRICE);
  q.base_gas = sol_read_u64_le(f + FEE_BASE_GAS);
  q.gas_per_byte_milli = sol_read_u64_le(f + FEE_GAS_PER_BYTE_MILLI);
  q.dst_decimals = f[FEE_DST_DECIMALS];
  q.margin_bps = sol_read_u16_le(f + FEE_MARGIN_BPS);
  FeedCheck check = {program_id, clock.unix_timestamp, max_age};
  u64 err = feed_price(dst_feed, f + FEE_DST_FEED, &check, &q.dst_price, &q.dst_feed_decimals);
  if (err) return err;
  err = feed_price(sol_feed, f + FEE_SOL_FEED, &check, &q.sol_price, &q.sol_feed_decimals);
  if (err) return err;
  return quote_lamports(&q, payload_len, lamports);
}

/* data: tag | dst_domain u32 LE | receiver (32) | kind u8 | max_fee u64 LE | payload (rest, <= 512);
 * accounts: [sender (signer, writable), outbox PDA (writable), committee config PDA,
 *            fee PDA ["fee", dst_domain], fee vault PDA (writable), dst token feed, SOL feed, system program].
 * Send, charging the quote (lamports) from the sender into the vault; refused when the quote exceeds
 * max_fee (FEE_ABOVE_MAX). Logs ("TESSERA_FEE", message_id, fee u64 LE) after the TESSERA_SENT event. */
u64 fees_send_paid(SolParameters *params) {
  if (params->account_count < 8) return ERR_NOT_ENOUGH_ACCOUNTS;
  if (params->data_len < 1 + 4 + 32 + 1 + 8) return ERR_INVALID_INSTRUCTION_DATA;
  SolAccountInfo *sender = &params->accounts[0];
  SolAccountInfo *outbox = &params->accounts[1];
  SolAccountInfo *config = &params->accounts[2];
  SolAccountInfo *fee = &params->accounts[3];
  SolAccountInfo *vault = &params->accounts[4];
  SolAccountInfo *dst_feed = &params->accounts[5];
  SolAccountInfo *sol_feed = &params->accounts[6];
  SolAccountInfo *system = &params->accounts[7];
  const SolPubkey *program_id = params->program_id;
  if (!sender->is_signer) return ERR_ACCOUNT_NOT_SIGNER;
  if (!sender->is_writable || !outbox->is_writable || !vault->is_writable) return ERR_ACCOUNT_NOT_WRITABLE;
  if (!sol_is_zero(system->key->x, SOL_PUBKEY_LEN)) return ERR_WRONG_SYSTEM_PROGRAM;
  const u8 *d = params->data + 1;
  u64 payload_len = params->data_len - 1 - 45;
  if (payload_len > MAX_PAYLOAD_LEN) return ERR_PAYLOAD_TOO_LONG;
  u32 dst_domain = sol_read_u32_le(d);
  u64 max_fee = sol_read_u64_le(d + 37);
  u64 err = vault_bump_check(vault, program_id);
  if (err) return err;
  u64 lamports;
  QuoteAccounts accounts = {fee, dst_feed, sol_feed, dst_domain, payload_len};
  err = quote_from_accounts(program_id, &accounts, &lamports);
  if (err) return err;
  if (lamports > max_fee) return ERR_FEE_ABOVE_MAX;
  /* The transfer comes before gateway_emit: it sets the return data, which a CPI would reset. */
  if (lamports) {
    SolAccountMeta *metas = SCRATCH->cpi_metas;
    u8 *cpi = SCRATCH->cpi_data;
    metas[0] = (SolAccountMeta){sender->key, true, true};
    metas[1] = (SolAccountMeta){vault->key, true, false};
    sol_write_u32_le(cpi, SYSTEM_TRANSFER);
    sol_write_u64_le(cpi + 4, lamports);
    SolInstruction ix = {system->key, metas, 2, cpi, 12};
    err = sol_invoke_signed_c(&ix, params->accounts, (int)params->account_count, 0, 0);
    if (err) return err;
    u64 collected = sol_read_u64_le(vault->data + VAULT_COLLECTED);
    sol_write_u64_le(vault->data + VAULT_COLLECTED, collected + lamports);
  }
  Outgoing msg = {d[36], dst_domain, d + 4, sender->key->x, d + 45, payload_len};
  u8 message_id[32];
  err = gateway_emit(program_id, outbox, config, &msg, message_id);
  if (err) return err;
  u8 fee_le[8];
  sol_write_u64_le(fee_le, lamports);
  SolBytes fields[3] = {{(const u8 *)FEE_EVENT_TAG, sizeof(FEE_EVENT_TAG) - 1}, {message_id, 32}, {fee_le, 8}};
  sol_log_data(fields, 3);
  return 0;
}

/* Stateless (vectors): data: tag | gas_price u64 | base_gas u64 | gas_per_byte_milli u64 | dst_decimals u8 |
 * margin_bps u16 | dst_price u64 | dst_feed_decimals u8 | sol_price u64 | sol_feed_decimals u8 |
 * payload_len u32 (50 bytes); return data: lamports u64 LE. */
u64 fees_check_quote(SolParameters *params) {
  if (params->data_len != 50) return ERR_INVALID_INSTRUCTION_DATA;
  const u8 *d = params->data + 1;
  QuoteInputs q;
  q.gas_price = sol_read_u64_le(d);
  q.base_gas = sol_read_u64_le(d + 8);
  q.gas_per_byte_milli = sol_read_u64_le(d + 16);
  q.dst_decimals = d[24];
  q.margin_bps = sol_read_u16_le(d + 25);
  q.dst_price = sol_read_u64_le(d + 27);
  q.dst_feed_decimals = d[35];
  q.sol_price = sol_read_u64_le(d + 36);
  q.sol_feed_decimals = d[44];
  u64 lamports;
  u64 err = quote_lamports(&q, sol_read_u32_le(d + 45), &lamports);
  if (err) return err;
  u8 out[8];
  sol_write_u64_le(out, lamports);
  sol_set_return_data(out, 8);
  return 0;
}
