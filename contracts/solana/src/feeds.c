#include "feeds.h"

#include "accounts.h"
#include "committee.h"

static const u8 FEED_MAGIC_BYTES[8] = {'T', 'E', 'S', 'S', 'F', 'E', 'E', 'D'};

static u64 read_u64_be(const u8 *p) { return ((u64)sol_read_u32_be(p) << 32) | sol_read_u32_be(p + 4); }

/* The checks relay.feeds.report.FeedReport.decode makes, so the chain never stores a report the
 * off-chain decoders would refuse. The length is the instruction's (exact). */
static u64 report_check(const u8 *report) {
  const u8 *id = report + RPT_FEED_ID;
  u64 i = 0;
  while (i < 32 && id[i] != 0) {
    if (id[i] < 0x20 || id[i] > 0x7e) return ERR_FEED_ID_INVALID;
    i++;
  }
  /* One encoding per id: at least one character, then only zero padding. */
  if (i == 0) return ERR_FEED_ID_INVALID;
  for (; i < 32; i++)
    if (id[i] != 0) return ERR_FEED_ID_INVALID;
  if (report[RPT_DECIMALS] > MAX_FEED_DECIMALS) return ERR_FEED_DECIMALS_INVALID;
  if (report[RPT_OBSERVATIONS] == 0) return ERR_FEED_NO_OBSERVATIONS;
  return 0;
}

/* The time bounds (feeds.h): how far observed_at may follow published_at, and how far either may be
 * ahead of the chain's clock. Written without sums of untrusted values, so nothing can wrap. */
static u64 report_time_check(const u8 *report, const SolClock *clock) {
  u64 observed = read_u64_be(report + RPT_OBSERVED_AT);
  u64 published = read_u64_be(report + RPT_PUBLISHED_AT);
  if (observed > published && observed - published > FEED_MAX_OBSERVED_AFTER_PUBLISHED_MS)
    return ERR_FEED_OBSERVED_AFTER_PUBLISHED;
  u64 now_ms = clock->unix_timestamp > 0 ? (u64)clock->unix_timestamp * 1000 : 0;
  u64 latest = now_ms + FEED_MAX_AHEAD_OF_CLOCK_MS;
  if (observed > latest || published > latest) return ERR_FEED_AHEAD_OF_CLOCK;
  return 0;
}

/* digest = keccak256("TESSERA/v1/FEED" | epoch u32 BE | keccak256(report)) (docs/FEEDS.md). Computed
 * here from the bytes being stored, never taken from the caller. */
static u64 report_digest(const u8 *report, u32 epoch, u8 report_hash[32], u8 digest[32]) {
  SolBytes whole = {report, REPORT_LEN};
  if (sol_keccak256(&whole, 1, report_hash) != 0) return ERR_SYSCALL_FAILED;
  u8 epoch_be[4];
  sol_write_u32_be(epoch_be, epoch);
  SolBytes parts[3] = {{(const u8 *)FEED_TAG, sizeof(FEED_TAG) - 1}, {epoch_be, 4}, {report_hash, 32}};
  if (sol_keccak256(parts, 3, digest) != 0) return ERR_SYSCALL_FAILED;
  return 0;
}

/* A 256-bit big-endian integer as 128-bit little-endian when it fits (sign-extended for int256),
 * for consumer programs that want a native integer; zeroes and false when it does not. */
static bool be256_to_le128(const u8 *be, u8 *le, bool is_signed) {
  u8 fill = (is_signed && (be[16] & 0x80)) ? 0xff : 0x00;
  for (int i = 0; i < 16; i++) {
    if (be[i] != fill) {
      sol_memset_(le, 0, 16);
      return false;
    }
  }
  for (int i = 0; i < 16; i++) le[i] = be[31 - i];
  return true;
}

/* An existing feed: trusted only at its derived address with the stored bump, as the committee config. */
static u64 feed_load(const SolAccountInfo *feed, const SolPubkey *program_id, const u8 *feed_id) {
  const u8 *f = feed->data;
  if (feed->data_len < FEED_LEN || !sol_bytes_eq(f + FEED_MAGIC, FEED_MAGIC_BYTES, 8) || f[FEED_VERSION_AT] != FEED_VERSION)
    return ERR_FEED_ACCOUNT_INVALID;
  u8 bump = f[FEED_BUMP];
  SolBytes seeds[3] = {{(const u8 *)FEED_SEED, sizeof(FEED_SEED) - 1}, {feed_id, 32}, {&bump, 1}};
  SolPubkey expected;
  if (sol_create_program_address(seeds, 3, program_id, &expected) != 0 || !sol_pubkey_eq(&expected, feed->key) ||
      !sol_bytes_eq(f + FEED_ID, feed_id, 32))
    return ERR_FEED_WRONG_ADDRESS;
  return 0;
}

static void feed_write(u8 *f, const u8 *report, const u8 *attestation, const SolClock *clock) {
  u8 flags = 0;
  if (be256_to_le128(report + RPT_PRICE, f + FEED_PRICE_I128, true)) flags |= FEED_FLAG_PRICE_FITS_I128;
  if (be256_to_le128(report + RPT_CONFIDENCE, f + FEED_CONFIDENCE_U128, false)) flags |= FEED_FLAG_CONFIDENCE_FITS_U128;
  f[FEED_FLAGS] = flags;
  f[FEED_OBSERVATIONS] = report[RPT_OBSERVATIONS];
  sol_memcpy_(f + FEED_EPOCH, attestation, 4); /* the attestation's epoch is already u32 LE */
  sol_write_u64_le(f + FEED_ROUND, read_u64_be(report + RPT_ROUND));
  sol_write_u64_le(f + FEED_OBSERVED_AT, read_u64_be(report + RPT_OBSERVED_AT));
  sol_write_u64_le(f + FEED_PUBLISHED_AT, read_u64_be(report + RPT_PUBLISHED_AT));
  sol_write_u64_le(f + FEED_UPDATED_SLOT, clock->slot);
  sol_write_u64_le(f + FEED_UPDATED_UNIX, (u64)clock->unix_timestamp);
  sol_write_u64_le(f + FEED_UPDATE_COUNT, sol_read_u64_le(f + FEED_UPDATE_COUNT) + 1);
  sol_memcpy_(f + FEED_PRICE_BE, report + RPT_PRICE, 32);
  sol_memcpy_(f + FEED_CONFIDENCE_BE, report + RPT_CONFIDENCE, 32);
  sol_memcpy_(f + FEED_SIGNATURE, attestation + 4, G1_LEN);
}

/* data: tag | attestation (ATTESTATION_LEN, hint for the FEED digest) | report (REPORT_LEN);
 * accounts: [payer (signer, writable), feed PDA ["feed", feed_id] (writable), committee config PDA,
 * system program]. Creates the feed on its first update (the payer pays the rent). Logs
 * ("TESSERA_FEED", report) with sol_log_data; return data: keccak256(report). */
u64 feeds_update(SolParameters *params) {
  if (params->account_count < 4) return ERR_NOT_ENOUGH_ACCOUNTS;
  if (params->data_len != 1 + ATTESTATION_LEN + REPORT_LEN) return ERR_FEED_REPORT_MALFORMED;
  SolAccountInfo *payer = &params->accounts[0];
  SolAccountInfo *feed = &params->accounts[1];
  SolAccountInfo *config = &params->accounts[2];
  SolAccountInfo *system = &params->accounts[3];
  const SolPubkey *program_id = params->program_id;
  if (!payer->is_signer) return ERR_ACCOUNT_NOT_SIGNER;
  if (!payer->is_writable || !feed->is_writable) return ERR_ACCOUNT_NOT_WRITABLE;
  if (!sol_is_zero(system->key->x, SOL_PUBKEY_LEN)) return ERR_WRONG_SYSTEM_PROGRAM;

  const u8 *attestation = params->data + 1;
  const u8 *report = attestation + ATTESTATION_LEN;
  const u8 *feed_id = report + RPT_FEED_ID;
  u64 err = report_check(report);
  if (err) return err;
  SolClock clock;
  if (sol_get_clock_sysvar(&clock) != 0) return ERR_SYSCALL_FAILED;
  err = report_time_check(report, &clock);
  if (err) return err;

  /* Ordering checks come before the pairing: a pusher that lost the race learns it for a few k CU. */
  bool exists = sol_pubkey_eq(feed->owner, program_id);
  u8 bump = 0;
  if (exists) {
    err = feed_load(feed, program_id, feed_id);
    if (err) return err;
    const u8 *f = feed->data;
    if (read_u64_be(report + RPT_ROUND) <= sol_read_u64_le(f + FEED_ROUND) ||
        read_u64_be(report + RPT_OBSERVED_AT) < sol_read_u64_le(f + FEED_OBSERVED_AT))
      return ERR_FEED_STALE_ROUND;
    if (report[RPT_DECIMALS] != f[FEED_DECIMALS]) return ERR_FEED_DECIMALS_CHANGED;
  } else {
    SolBytes seeds[2] = {{(const u8 *)FEED_SEED, sizeof(FEED_SEED) - 1}, {feed_id, 32}};
    SolPubkey expected;
    if (sol_try_find_program_address(seeds, 2, program_id, &expected, &bump) != 0 ||
        !sol_pubkey_eq(&expected, feed->key))
      return ERR_FEED_WRONG_ADDRESS;
  }

  u8 report_hash[32];
  u8 digest[32];
  err = report_digest(report, sol_read_u32_le(attestation), report_hash, digest);
  if (err) return err;
  err = committee_check_digest(config, program_id, attestation, digest);
  if (err) return err;

  if (!exists) {
    u8 bump_seed = bump;
    SolBytes signer_seeds[3] = {{(const u8 *)FEED_SEED, sizeof(FEED_SEED) - 1}, {feed_id, 32}, {&bump_seed, 1}};
    SolSignerSeeds signer = {signer_seeds, 3};
    PdaCreation creation = {payer, feed, system, &signer, FEED_LEN};
    err = create_pda(params, &creation);
    if (err) return err;
    u8 *f = feed->data;
    sol_memset_(f, 0, FEED_LEN);
    sol_memcpy_(f + FEED_MAGIC, FEED_MAGIC_BYTES, 8);
    f[FEED_VERSION_AT] = FEED_VERSION;
    f[FEED_BUMP] = bump;
    f[FEED_DECIMALS] = report[RPT_DECIMALS];
    sol_memcpy_(f + FEED_ID, feed_id, 32);
  }

  feed_write(feed->data, report, attestation, &clock);

  SolBytes fields[2] = {{(const u8 *)FEED_EVENT_TAG, sizeof(FEED_EVENT_TAG) - 1}, {report, REPORT_LEN}};
  sol_log_data(fields, 2);
  sol_set_return_data(report_hash, 32);
  return 0;
}
