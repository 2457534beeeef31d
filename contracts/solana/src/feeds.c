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

/* What every stored report of one instruction shares. `epoch_le`: the signing epoch (u32 LE);
 * `signature`: σ (64 bytes) over the report's digest, or over the feed root that held it when
 * `flags` has FEED_FLAG_ROOT_SIGNED. */
typedef struct {
  SolParameters *params;
  SolAccountInfo *payer;
  SolAccountInfo *system;
  const SolClock *clock;
  const u8 *epoch_le;
  const u8 *signature;
  u8 flags;
} FeedWriter;

static void feed_write(const FeedWriter *w, u8 *f, const u8 *report) {
  const SolClock *clock = w->clock;
  u8 flags = w->flags;
  if (be256_to_le128(report + RPT_PRICE, f + FEED_PRICE_I128, true)) flags |= FEED_FLAG_PRICE_FITS_I128;
  if (be256_to_le128(report + RPT_CONFIDENCE, f + FEED_CONFIDENCE_U128, false)) flags |= FEED_FLAG_CONFIDENCE_FITS_U128;
  f[FEED_FLAGS] = flags;
  f[FEED_OBSERVATIONS] = report[RPT_OBSERVATIONS];
  sol_memcpy_(f + FEED_EPOCH, w->epoch_le, 4);
  sol_write_u64_le(f + FEED_ROUND, read_u64_be(report + RPT_ROUND));
  sol_write_u64_le(f + FEED_OBSERVED_AT, read_u64_be(report + RPT_OBSERVED_AT));
  sol_write_u64_le(f + FEED_PUBLISHED_AT, read_u64_be(report + RPT_PUBLISHED_AT));
  sol_write_u64_le(f + FEED_UPDATED_SLOT, clock->slot);
  sol_write_u64_le(f + FEED_UPDATED_UNIX, (u64)clock->unix_timestamp);
  sol_write_u64_le(f + FEED_UPDATE_COUNT, sol_read_u64_le(f + FEED_UPDATE_COUNT) + 1);
  sol_memcpy_(f + FEED_PRICE_BE, report + RPT_PRICE, 32);
  sol_memcpy_(f + FEED_CONFIDENCE_BE, report + RPT_CONFIDENCE, 32);
  sol_memcpy_(f + FEED_SIGNATURE, w->signature, G1_LEN);
}

/* Creates the feed account at its PDA (bump from the address check), paid by `payer`. */
static u64 feed_create(const FeedWriter *w, SolAccountInfo *feed, const u8 *report, u8 bump) {
  const u8 *feed_id = report + RPT_FEED_ID;
  u8 bump_seed = bump;
  SolBytes signer_seeds[3] = {{(const u8 *)FEED_SEED, sizeof(FEED_SEED) - 1}, {feed_id, 32}, {&bump_seed, 1}};
  SolSignerSeeds signer = {signer_seeds, 3};
  PdaCreation creation = {w->payer, feed, w->system, &signer, FEED_LEN};
  u64 err = create_pda(w->params, &creation);
  if (err) return err;
  u8 *f = feed->data;
  sol_memset_(f, 0, FEED_LEN);
  sol_memcpy_(f + FEED_MAGIC, FEED_MAGIC_BYTES, 8);
  f[FEED_VERSION_AT] = FEED_VERSION;
  f[FEED_BUMP] = bump;
  f[FEED_DECIMALS] = report[RPT_DECIMALS];
  sol_memcpy_(f + FEED_ID, feed_id, 32);
  return 0;
}

static bool report_newer(const u8 *report, const u8 *f) {
  return read_u64_be(report + RPT_ROUND) > sol_read_u64_le(f + FEED_ROUND) &&
         read_u64_be(report + RPT_OBSERVED_AT) >= sol_read_u64_le(f + FEED_OBSERVED_AT);
}

/* Every check of a report and its feed account before the signature: form, time bounds, the
 * account's address (existing: stored bump; new: the bump search, written to *bump), then ordering
 * (*newer) and, when newer, the stored decimals. As UpdateFeed, in that order. */
typedef struct {
  bool newer;
  u8 bump;
} FeedState;

static u64 feed_precheck(const SolParameters *params, const SolAccountInfo *feed, const u8 *report,
                         const SolClock *clock, FeedState *state) {
  bool *newer = &state->newer;
  u8 *bump = &state->bump;
  u64 err = report_check(report);
  if (err) return err;
  err = report_time_check(report, clock);
  if (err) return err;
  const u8 *feed_id = report + RPT_FEED_ID;
  *newer = true;
  *bump = 0;
  if (sol_pubkey_eq(feed->owner, params->program_id)) {
    err = feed_load(feed, params->program_id, feed_id);
    if (err) return err;
    if (!report_newer(report, feed->data)) {
      *newer = false;
      return 0;
    }
    if (report[RPT_DECIMALS] != feed->data[FEED_DECIMALS]) return ERR_FEED_DECIMALS_CHANGED;
    return 0;
  }
  SolBytes seeds[2] = {{(const u8 *)FEED_SEED, sizeof(FEED_SEED) - 1}, {feed_id, 32}};
  SolPubkey expected;
  if (sol_try_find_program_address(seeds, 2, params->program_id, &expected, bump) != 0 ||
      !sol_pubkey_eq(&expected, feed->key))
    return ERR_FEED_WRONG_ADDRESS;
  return 0;
}

/* Stores a checked report (creating the account when new) and logs it as UpdateFeed does. */
static u64 feed_apply(const FeedWriter *w, SolAccountInfo *feed, const u8 *report, u8 bump) {
  if (!sol_pubkey_eq(feed->owner, w->params->program_id)) {
    u64 err = feed_create(w, feed, report, bump);
    if (err) return err;
  }
  feed_write(w, feed->data, report);
  SolBytes fields[2] = {{(const u8 *)FEED_EVENT_TAG, sizeof(FEED_EVENT_TAG) - 1}, {report, REPORT_LEN}};
  sol_log_data(fields, 2);
  return 0;
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
  SolClock clock;
  if (sol_get_clock_sysvar(&clock) != 0) return ERR_SYSCALL_FAILED;
  /* Ordering checks come before the pairing: a pusher that lost the race learns it for a few k CU. */
  FeedState state;
  u64 err = feed_precheck(params, feed, report, &clock, &state);
  if (err) return err;
  if (!state.newer) return ERR_FEED_STALE_ROUND;

  u8 report_hash[32];
  u8 digest[32];
  err = report_digest(report, sol_read_u32_le(attestation), report_hash, digest);
  if (err) return err;
  err = committee_check_digest(config, program_id, attestation, digest);
  if (err) return err;
  FeedWriter writer = {params, payer, system, &clock, attestation, attestation + 4, 0};
  err = feed_apply(&writer, feed, report, state.bump);
  if (err) return err;
  sol_set_return_data(report_hash, 32);
  return 0;
}

/* --- feed roots (docs/PROTOCOL.md "Feed roots"; README.md "Feed roots") ------------------------- */

static const u8 FROOT_MAGIC_BYTES[8] = {'T', 'E', 'S', 'S', 'F', 'R', 'O', 'T'};
static const u8 FEED_LEAF_PREFIX = 2;
static const u8 FEED_NODE_PREFIX = 1;

static u64 feed_leaf(const u8 *report, u8 leaf[32]) {
  SolBytes parts[2] = {{&FEED_LEAF_PREFIX, 1}, {report, REPORT_LEN}};
  return sol_keccak256(parts, 2, leaf) == 0 ? 0 : ERR_SYSCALL_FAILED;
}

static u64 node_hash(const u8 *left, const u8 *right, u8 out[32]) {
  SolBytes parts[3] = {{&FEED_NODE_PREFIX, 1}, {left, 32}, {right, 32}};
  return sol_keccak256(parts, 3, out) == 0 ? 0 : ERR_SYSCALL_FAILED;
}

/* keccak256("TESSERA/v1/FEED" | "ROOT" | epoch u32 BE | leaf_count u32 BE | root) */
static u64 feed_root_digest(u32 epoch, u32 leaf_count, const u8 *root, u8 digest[32]) {
  u8 fields[8];
  sol_write_u32_be(fields, epoch);
  sol_write_u32_be(fields + 4, leaf_count);
  SolBytes parts[3] = {{(const u8 *)FEED_ROOT_TAG, sizeof(FEED_ROOT_TAG) - 1}, {fields, 8}, {root, 32}};
  return sol_keccak256(parts, 3, digest) == 0 ? 0 : ERR_SYSCALL_FAILED;
}

/* The root a proof leads to from `leaf` (the batch tree: relay/feeds/multi.py root_from_feed_proof);
 * ERR_FEED_NOT_IN_ROOT for an index past the count or a proof of the wrong length. */
typedef struct {
  u32 index;
  u32 leaf_count;
  const u8 *proof; /* proof_len hashes, from the leaf up */
  u64 proof_len;
} FeedProof;

static u64 feed_proof_root(const u8 *leaf, const FeedProof *p, u8 node[32]) {
  u32 index = p->index, width = p->leaf_count;
  const u8 *proof = p->proof;
  u64 proof_len = p->proof_len;
  if (index >= width) return ERR_FEED_NOT_IN_ROOT;
  sol_memcpy_(node, leaf, 32);
  u64 used = 0;
  while (width > 1) {
    bool odd = (index & 1) != 0;
    if (odd || index + 1 < width) {
      if (used == proof_len) return ERR_FEED_NOT_IN_ROOT;
      u8 below[32];
      sol_memcpy_(below, node, 32);
      const u8 *sibling = proof + 32 * used;
      u64 err = odd ? node_hash(sibling, below, node) : node_hash(below, sibling, node);
      if (err) return err;
      used++;
    }
    index >>= 1;
    width = (width + 1) >> 1;
  }
  return used == proof_len ? 0 : ERR_FEED_NOT_IN_ROOT;
}

/* The root over `count` leaves in place (overwrites them). */
static u64 feed_root_of_leaves(u8 *leaves, u32 count) {
  u32 width = count;
  while (width > 1) {
    u32 half = width >> 1;
    for (u32 i = 0; i < half; i++) {
      u64 err = node_hash(leaves + 64 * i, leaves + 64 * i + 32, leaves + 32 * i);
      if (err) return err;
    }
    if (width & 1) {
      sol_memcpy_(leaves + 32 * half, leaves + 32 * (width - 1), 32); /* promoted */
      width = half + 1;
    } else {
      width = half;
    }
  }
  return 0;
}

/* data: tag | attestation (133, hint for the feed-ROOT digest) | count u8 | count x report (122), the
 * root's every leaf in order (leaf_count = count); accounts: [payer (signer, writable), committee
 * config PDA, system program, then the feed PDA of each report in the same order (writable)].
 * Every report is checked as by UpdateFeed (an invalid one fails the transaction); the root is
 * recomputed and its signature checked once; reports not newer than their feed are skipped.
 * FEED_STALE_ROUND when none is newer (before the pairing). Return data: the root. */
u64 feeds_update_many(SolParameters *params) {
  if (params->account_count < 4) return ERR_NOT_ENOUGH_ACCOUNTS;
  if (params->data_len < 2 + ATTESTATION_LEN) return ERR_FEED_REPORT_MALFORMED;
  const u8 *attestation = params->data + 1;
  u32 count = attestation[ATTESTATION_LEN];
  const u8 *reports = attestation + ATTESTATION_LEN + 1;
  if (count == 0 || count > FEED_ROOT_MAX_LEAVES) return ERR_FEED_ROOT_SIZE_INVALID;
  if (params->data_len != 2 + ATTESTATION_LEN + (u64)count * REPORT_LEN) return ERR_FEED_REPORT_MALFORMED;
  if (params->account_count != 3 + count) return ERR_NOT_ENOUGH_ACCOUNTS;
  SolAccountInfo *payer = &params->accounts[0];
  SolAccountInfo *config = &params->accounts[1];
  SolAccountInfo *system = &params->accounts[2];
  if (!payer->is_signer) return ERR_ACCOUNT_NOT_SIGNER;
  if (!payer->is_writable) return ERR_ACCOUNT_NOT_WRITABLE;
  if (!sol_is_zero(system->key->x, SOL_PUBKEY_LEN)) return ERR_WRONG_SYSTEM_PROGRAM;
  SolClock clock;
  if (sol_get_clock_sysvar(&clock) != 0) return ERR_SYSCALL_FAILED;

  u8 *leaves = SCRATCH->feed_leaves;
  u8 *bumps = SCRATCH->feed_bumps;
  u64 fresh = 0;
  for (u32 i = 0; i < count; i++) {
    const u8 *report = reports + (u64)i * REPORT_LEN;
    SolAccountInfo *feed = &params->accounts[3 + i];
    if (!feed->is_writable) return ERR_ACCOUNT_NOT_WRITABLE;
    FeedState state;
    u64 err = feed_precheck(params, feed, report, &clock, &state);
    if (err) return err;
    bumps[i] = state.bump;
    if (state.newer) fresh |= 1ULL << i;
    err = feed_leaf(report, leaves + 32 * i);
    if (err) return err;
  }
  if (fresh == 0) return ERR_FEED_STALE_ROUND;
  u64 err = feed_root_of_leaves(leaves, count);
  if (err) return err;
  u8 root[32];
  sol_memcpy_(root, leaves, 32);
  u8 digest[32];
  err = feed_root_digest(sol_read_u32_le(attestation), count, root, digest);
  if (err) return err;
  err = committee_check_digest(config, params->program_id, attestation, digest);
  if (err) return err;
  FeedWriter writer = {params, payer, system, &clock, attestation, attestation + 4, FEED_FLAG_ROOT_SIGNED};
  for (u32 i = 0; i < count; i++) {
    if (!(fresh & (1ULL << i))) continue;
    const u8 *report = reports + (u64)i * REPORT_LEN;
    SolAccountInfo *feed = &params->accounts[3 + i];
    /* The same feed twice: its account was written by the first. */
    if (sol_pubkey_eq(feed->owner, params->program_id) && !report_newer(report, feed->data)) continue;
    err = feed_apply(&writer, feed, report, bumps[i]);
    if (err) return err;
  }
  sol_set_return_data(root, 32);
  return 0;
}

static bool feed_root_valid(const SolAccountInfo *acct, const SolPubkey *program_id) {
  return sol_pubkey_eq(acct->owner, program_id) && acct->data_len == FROOT_LEN &&
         sol_bytes_eq(acct->data + FROOT_MAGIC, FROOT_MAGIC_BYTES, 8) && acct->data[FROOT_VERSION_AT] == FROOT_VERSION;
}

/* data: tag | attestation (133, hint for the feed-root digest) | leaf_count u8 | root (32); accounts:
 * [payer (signer, writable), committee config PDA, feed-root PDA ["feedroot", root] (writable), system
 * program]. One pairing; the root, its epoch, σ and leaf count are kept for UpdateFeedsWithProofs.
 * Return data: the root. */
u64 feeds_verify_root(SolParameters *params) {
  if (params->account_count < 4) return ERR_NOT_ENOUGH_ACCOUNTS;
  if (params->data_len != 1 + ATTESTATION_LEN + 1 + 32) return ERR_FEED_REPORT_MALFORMED;
  SolAccountInfo *payer = &params->accounts[0];
  SolAccountInfo *config = &params->accounts[1];
  SolAccountInfo *froot = &params->accounts[2];
  SolAccountInfo *system = &params->accounts[3];
  const SolPubkey *program_id = params->program_id;
  if (!payer->is_signer) return ERR_ACCOUNT_NOT_SIGNER;
  if (!payer->is_writable || !froot->is_writable) return ERR_ACCOUNT_NOT_WRITABLE;
  if (!sol_is_zero(system->key->x, SOL_PUBKEY_LEN)) return ERR_WRONG_SYSTEM_PROGRAM;
  const u8 *attestation = params->data + 1;
  u32 leaf_count = attestation[ATTESTATION_LEN];
  const u8 *root = attestation + ATTESTATION_LEN + 1;
  if (leaf_count == 0 || leaf_count > FEED_ROOT_MAX_LEAVES) return ERR_FEED_ROOT_SIZE_INVALID;
  SolBytes seeds[2] = {{(const u8 *)FEED_ROOT_SEED, sizeof(FEED_ROOT_SEED) - 1}, {root, 32}};
  SolPubkey expected;
  u8 bump;
  if (sol_try_find_program_address(seeds, 2, program_id, &expected, &bump) != 0 || !sol_pubkey_eq(&expected, froot->key))
    return ERR_FEED_ROOT_WRONG_ADDRESS;
  /* Before the pairing. A program-owned account here without the magic is a closed feed root that
   * someone refunded in CloseFeedRoot's transaction (so it was not deleted): only this program can
   * create an account at this PDA, so it is re-used below instead of leaving the root unverifiable. */
  bool revive = false;
  if (sol_pubkey_eq(froot->owner, program_id)) {
    if (froot->data_len >= 8 && sol_bytes_eq(froot->data + FROOT_MAGIC, FROOT_MAGIC_BYTES, 8))
      return ERR_FEED_ROOT_ALREADY_VERIFIED;
    revive = true;
  }
  u8 digest[32];
  u64 err = feed_root_digest(sol_read_u32_le(attestation), leaf_count, root, digest);
  if (err) return err;
  err = committee_check_digest(config, program_id, attestation, digest);
  if (err) return err;
  u8 bump_seed = bump;
  SolBytes signer_seeds[3] = {{(const u8 *)FEED_ROOT_SEED, sizeof(FEED_ROOT_SEED) - 1}, {root, 32}, {&bump_seed, 1}};
  SolSignerSeeds signer = {signer_seeds, 3};
  if (revive) {
    AccountGrowth refit = {payer, froot, system, FROOT_LEN};
    err = account_refit(params, &refit);
  } else {
    PdaCreation creation = {payer, froot, system, &signer, FROOT_LEN};
    err = create_pda(params, &creation);
  }
  if (err) return err;
  SolClock clock;
  if (sol_get_clock_sysvar(&clock) != 0) return ERR_SYSCALL_FAILED;
  u8 *r = froot->data;
  sol_memset_(r, 0, FROOT_LEN);
  sol_memcpy_(r + FROOT_MAGIC, FROOT_MAGIC_BYTES, 8);
  r[FROOT_VERSION_AT] = FROOT_VERSION;
  r[FROOT_BUMP] = bump;
  r[FROOT_LEAF_COUNT] = (u8)leaf_count;
  sol_memcpy_(r + FROOT_EPOCH, attestation, 4);
  sol_write_u64_le(r + FROOT_VERIFIED_AT, (u64)clock.unix_timestamp);
  sol_memcpy_(r + FROOT_PAYER, payer->key->x, 32);
  sol_memcpy_(r + FROOT_ROOT, root, 32);
  sol_memcpy_(r + FROOT_SIGNATURE, attestation + 4, G1_LEN);
  sol_set_return_data(root, 32);
  return 0;
}

/* data: tag | count u8 | count x (index u8 | proof_len u8 | proof (32 x proof_len) | report (122));
 * accounts: [payer (signer, writable), a verified feed-root account, system program, then the feed
 * PDA of each report in order (writable)]. No pairing: each report's proof must lead to the verified
 * root (FEED_NOT_IN_ROOT); every report is checked as by UpdateFeed; not newer ones are skipped,
 * FEED_STALE_ROUND when none is newer. Return data: the root. */
u64 feeds_update_with_proofs(SolParameters *params) {
  if (params->account_count < 4) return ERR_NOT_ENOUGH_ACCOUNTS;
  if (params->data_len < 2) return ERR_FEED_REPORT_MALFORMED;
  u32 count = params->data[1];
  if (count == 0 || params->account_count != 3 + count) return ERR_NOT_ENOUGH_ACCOUNTS;
  SolAccountInfo *payer = &params->accounts[0];
  SolAccountInfo *froot = &params->accounts[1];
  SolAccountInfo *system = &params->accounts[2];
  if (!payer->is_signer) return ERR_ACCOUNT_NOT_SIGNER;
  if (!payer->is_writable) return ERR_ACCOUNT_NOT_WRITABLE;
  if (!sol_is_zero(system->key->x, SOL_PUBKEY_LEN)) return ERR_WRONG_SYSTEM_PROGRAM;
  if (!feed_root_valid(froot, params->program_id)) return ERR_FEED_ROOT_NOT_VERIFIED;
  const u8 *r = froot->data;
  SolClock clock;
  if (sol_get_clock_sysvar(&clock) != 0) return ERR_SYSCALL_FAILED;

  /* Pass 1: offsets, checks, proofs; pass 2: the writes (nothing is written if anything fails). */
  const u8 **items = SCRATCH->feed_items;
  u8 *bumps = SCRATCH->feed_bumps;
  u64 fresh = 0;
  u64 at = 2;
  for (u32 i = 0; i < count; i++) {
    if (params->data_len < at + 2) return ERR_FEED_REPORT_MALFORMED;
    const u8 *item = params->data + at;
    u64 proof_len = item[1];
    u64 item_len = 2 + 32 * proof_len + REPORT_LEN;
    if (params->data_len < at + item_len) return ERR_FEED_REPORT_MALFORMED;
    at += item_len;
    const u8 *report = item + 2 + 32 * proof_len;
    SolAccountInfo *feed = &params->accounts[3 + i];
    if (!feed->is_writable) return ERR_ACCOUNT_NOT_WRITABLE;
    u8 leaf[32];
    u8 computed[32];
    u64 err = feed_leaf(report, leaf);
    if (err) return err;
    FeedProof proof = {item[0], r[FROOT_LEAF_COUNT], item + 2, proof_len};
    err = feed_proof_root(leaf, &proof, computed);
    if (err) return err;
    if (!sol_bytes_eq(computed, r + FROOT_ROOT, 32)) return ERR_FEED_NOT_IN_ROOT;
    FeedState state;
    err = feed_precheck(params, feed, report, &clock, &state);
    if (err) return err;
    bumps[i] = state.bump;
    if (state.newer) fresh |= 1ULL << i;
    items[i] = report;
  }
  if (at != params->data_len) return ERR_FEED_REPORT_MALFORMED;
  if (fresh == 0) return ERR_FEED_STALE_ROUND;
  FeedWriter writer = {params, payer, system, &clock, r + FROOT_EPOCH, r + FROOT_SIGNATURE, FEED_FLAG_ROOT_SIGNED};
  for (u32 i = 0; i < count; i++) {
    if (!(fresh & (1ULL << i))) continue;
    SolAccountInfo *feed = &params->accounts[3 + i];
    if (sol_pubkey_eq(feed->owner, params->program_id) && !report_newer(items[i], feed->data)) continue;
    u64 err = feed_apply(&writer, feed, items[i], bumps[i]);
    if (err) return err;
  }
  sol_set_return_data(r + FROOT_ROOT, 32);
  return 0;
}

/* data: tag; accounts: [closer (signer), feed-root account (writable), payer (writable: the root's
 * payer, gets the rent)]. The payer may close at any time, anyone else FEED_ROOT_RETENTION_SECONDS
 * after the root was verified. A closed root can be verified again. */
u64 feeds_close_root(SolParameters *params) {
  if (params->account_count < 3) return ERR_NOT_ENOUGH_ACCOUNTS;
  if (params->data_len != 1) return ERR_INVALID_INSTRUCTION_DATA;
  SolAccountInfo *closer = &params->accounts[0];
  SolAccountInfo *froot = &params->accounts[1];
  SolAccountInfo *to = &params->accounts[2];
  if (!closer->is_signer) return ERR_ACCOUNT_NOT_SIGNER;
  if (!feed_root_valid(froot, params->program_id)) return ERR_FEED_ROOT_NOT_VERIFIED;
  const u8 *r = froot->data;
  if (!sol_bytes_eq(closer->key->x, r + FROOT_PAYER, 32)) {
    SolClock clock;
    if (sol_get_clock_sysvar(&clock) != 0) return ERR_SYSCALL_FAILED;
    if (clock.unix_timestamp < 0 ||
        (u64)clock.unix_timestamp < sol_read_u64_le(r + FROOT_VERIFIED_AT) + FEED_ROOT_RETENTION_SECONDS)
      return ERR_CLOSE_TOO_EARLY;
  }
  if (!sol_bytes_eq(to->key->x, r + FROOT_PAYER, 32) || sol_pubkey_eq(froot->key, to->key)) return ERR_RECIPIENT_WRONG;
  if (!to->is_writable || !froot->is_writable) return ERR_ACCOUNT_NOT_WRITABLE;
  if (to->executable) return ERR_RECIPIENT_CANNOT_RECEIVE;
  *to->lamports += *froot->lamports;
  *froot->lamports = 0;
  sol_memset_(froot->data, 0, froot->data_len);
  return 0;
}
