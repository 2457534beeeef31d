#include "batch.h"

#include "accounts.h"
#include "committee.h"
#include "gateway.h"
#include "taskboard.h"

static const u8 ROOT_MAGIC_BYTES[8] = {'T', 'E', 'S', 'S', 'R', 'O', 'O', 'T'};
static const u8 REPLAY_MAGIC_BYTES[8] = {'T', 'E', 'S', 'S', 'R', 'P', 'L', 'Y'};
static const u8 RCPT_MAGIC_BYTES[8] = {'T', 'E', 'S', 'S', 'R', 'C', 'P', 'T'};
static const u8 LEAF_PREFIX = 0;
static const u8 NODE_PREFIX = 1;

static i64 now_unix(SolClock *clock) {
  if (sol_get_clock_sysvar(clock) != 0) return -1;
  return clock->unix_timestamp;
}

/* --- the tree ------------------------------------------------------------------------------------ */

typedef struct {
  u32 index;
  u32 leaf_count;
  const u8 *proof; /* proof_len hashes of 32 bytes, from the leaf up */
  u64 proof_len;
} Proof;

/* The root `p` leads to from `message_id` (relay/batch.py root_from_proof). ERR_BATCH_SIZE_INVALID
 * for a leaf count outside 1..64 or an index past it, ERR_PROOF_INVALID for a proof of the wrong
 * length for that position. */
static u64 proof_root(const u8 *message_id, const Proof *p, u8 node[32]) {
  if (p->leaf_count == 0 || p->leaf_count > BATCH_MAX_SIZE || p->index >= p->leaf_count) return ERR_BATCH_SIZE_INVALID;
  SolBytes leaf[2] = {{&LEAF_PREFIX, 1}, {message_id, 32}};
  if (sol_keccak256(leaf, 2, node) != 0) return ERR_SYSCALL_FAILED;
  u32 index = p->index, width = p->leaf_count;
  u64 used = 0;
  while (width > 1) {
    bool odd = (index & 1) != 0;
    if (odd || index + 1 < width) {
      if (used == p->proof_len) return ERR_PROOF_INVALID;
      const u8 *sibling = p->proof + 32 * used;
      u8 below[32];
      sol_memcpy_(below, node, 32);
      SolBytes parts[3] = {{&NODE_PREFIX, 1}, {odd ? sibling : below, 32}, {odd ? below : sibling, 32}};
      if (sol_keccak256(parts, 3, node) != 0) return ERR_SYSCALL_FAILED;
      used++;
    }
    index >>= 1;
    width = (width + 1) >> 1;
  }
  return used == p->proof_len ? 0 : ERR_PROOF_INVALID;
}

/* keccak256("TESSERA/v1/ROOT" | epoch | src_domain | dst_domain | leaf_count (u32 BE each) | root) */
static u64 root_digest(const u8 fields_be[16], const u8 *root, u8 digest[32]) {
  SolBytes parts[3] = {{(const u8 *)TAG_ROOT, sizeof(TAG_ROOT) - 1}, {fields_be, 16}, {root, 32}};
  return sol_keccak256(parts, 3, digest) == 0 ? 0 : ERR_SYSCALL_FAILED;
}

static void lane_fields(u8 out[16], u32 epoch, u32 src, u32 dst, u32 count) {
  sol_write_u32_be(out, epoch);
  sol_write_u32_be(out + 4, src);
  sol_write_u32_be(out + 8, dst);
  sol_write_u32_be(out + 12, count);
}

/* --- accounts ------------------------------------------------------------------------------------ */

/* A root account of this program: created only by VerifyRoot, so owner, size and magic suffice
 * (zeroed program-owned accounts anyone can create have no magic; CloseRoot zeroes it). */
static bool root_valid(const SolAccountInfo *root, const SolPubkey *program_id) {
  return sol_pubkey_eq(root->owner, program_id) && root->data_len == ROOT_LEN &&
         sol_bytes_eq(root->data + ROOT_MAGIC, ROOT_MAGIC_BYTES, 8) && root->data[ROOT_VERSION_AT] == ROOT_VERSION;
}

/* A root account CloseRoot may close: a live one, or one the previous program verified (ROOT_LEN_V1,
 * version 1: DeliverWithProof refuses it, but its rent goes back and its root can be verified again).
 * The fields CloseRoot reads (payer, verified_at) are at the same offsets in both. */
static bool root_closable(const SolAccountInfo *root, const SolPubkey *program_id) {
  if (!sol_pubkey_eq(root->owner, program_id) || !sol_bytes_eq(root->data + ROOT_MAGIC, ROOT_MAGIC_BYTES, 8))
    return false;
  return (root->data_len == ROOT_LEN && root->data[ROOT_VERSION_AT] == ROOT_VERSION) ||
         (root->data_len == ROOT_LEN_V1 && root->data[ROOT_VERSION_AT] == ROOT_VERSION_V1);
}

typedef struct {
  u8 domain_le[4];
  u8 window_le[8];
} ReplaySeeds;

/* The bitmap account must be the canonical PDA ["replay", src_domain LE, window LE]: an existing one
 * is checked with its stored bump (one hash), a missing one by the bump search (else a relayer could
 * pass another empty address and dodge the bit). Writes the bump. */
static u64 replay_address(const SolPubkey *program_id, const SolAccountInfo *acct, u32 src_domain, u64 window,
                          u8 *bump) {
  ReplaySeeds s;
  sol_write_u32_le(s.domain_le, src_domain);
  sol_write_u64_le(s.window_le, window);
  SolPubkey expected;
  if (sol_pubkey_eq(acct->owner, program_id)) {
    const u8 *d = acct->data;
    if (acct->data_len != REPLAY_LEN || !sol_bytes_eq(d + REPLAY_MAGIC, REPLAY_MAGIC_BYTES, 8) ||
        d[REPLAY_VERSION_AT] != REPLAY_VERSION || sol_read_u32_le(d + REPLAY_SRC_DOMAIN) != src_domain ||
        sol_read_u64_le(d + REPLAY_WINDOW_AT) != window)
      return ERR_REPLAY_WRONG_ADDRESS;
    *bump = d[REPLAY_BUMP];
    SolBytes seeds[4] = {{(const u8 *)REPLAY_SEED, sizeof(REPLAY_SEED) - 1}, {s.domain_le, 4}, {s.window_le, 8}, {bump, 1}};
    if (sol_create_program_address(seeds, 4, program_id, &expected) != 0) return ERR_REPLAY_WRONG_ADDRESS;
  } else {
    SolBytes seeds[3] = {{(const u8 *)REPLAY_SEED, sizeof(REPLAY_SEED) - 1}, {s.domain_le, 4}, {s.window_le, 8}};
    if (sol_try_find_program_address(seeds, 3, program_id, &expected, bump) != 0) return ERR_SYSCALL_FAILED;
  }
  return sol_pubkey_eq(&expected, acct->key) ? 0 : ERR_REPLAY_WRONG_ADDRESS;
}

static bool receipt_closable(const Envelope *env, const SolPubkey *board) {
  return env->src_domain != COMMITTEE_DOMAIN && !sol_bytes_eq(env->dst_receiver, board->x, 32);
}

u64 batch_replay_check(SolParameters *params, const Envelope *env, bool to_board) {
  if (to_board || env->src_domain == COMMITTEE_DOMAIN) return 0;
  if (params->account_count < 5) return ERR_NOT_ENOUGH_ACCOUNTS;
  const SolAccountInfo *bitmap = &params->accounts[4];
  u8 bump;
  u64 err = replay_address(params->program_id, bitmap, env->src_domain, env->nonce >> REPLAY_WINDOW_BITS, &bump);
  if (err) return err;
  if (!sol_pubkey_eq(bitmap->owner, params->program_id)) return 0; /* no receipt of this window closed yet */
  u64 bit = env->nonce & (REPLAY_WINDOW - 1);
  if (bitmap->data[REPLAY_BITS + (bit >> 3)] & (1u << (bit & 7))) return ERR_DELIVERED_AND_CLOSED;
  return 0;
}

/* --- instructions -------------------------------------------------------------------------------- */

#define VERIFY_ROOT_DATA_LEN (1 + ATTESTATION_LEN + 4 + 1 + 32)

/* data: tag | attestation (133) | src_domain u32 LE | leaf_count u8 | root (32); accounts: [payer
 * (signer, writable), committee config PDA, root PDA ["root", root] (writable), system program].
 * Checks the committee's signature over the root's digest (lane: src_domain -> this domain) once
 * and keeps the root in its account. Return data: the root. */
u64 batch_verify_root(SolParameters *params) {
  if (params->account_count < 4) return ERR_NOT_ENOUGH_ACCOUNTS;
  if (params->data_len != VERIFY_ROOT_DATA_LEN) return ERR_INVALID_INSTRUCTION_DATA;
  SolAccountInfo *payer = &params->accounts[0];
  SolAccountInfo *config = &params->accounts[1];
  SolAccountInfo *root_acct = &params->accounts[2];
  SolAccountInfo *system = &params->accounts[3];
  const SolPubkey *program_id = params->program_id;
  if (!payer->is_signer) return ERR_ACCOUNT_NOT_SIGNER;
  if (!payer->is_writable || !root_acct->is_writable) return ERR_ACCOUNT_NOT_WRITABLE;
  if (!sol_is_zero(system->key->x, SOL_PUBKEY_LEN)) return ERR_WRONG_SYSTEM_PROGRAM;
  if (gateway_paused_byte(config)) return ERR_GATEWAY_PAUSED; /* the signature check validates config */
  const u8 *attestation = params->data + 1;
  const u8 *d = attestation + ATTESTATION_LEN;
  u32 src_domain = sol_read_u32_le(d);
  u32 leaf_count = d[4];
  const u8 *root = d + 5;
  if (leaf_count == 0 || leaf_count > BATCH_MAX_SIZE) return ERR_BATCH_SIZE_INVALID;

  SolBytes find_seeds[2] = {{(const u8 *)ROOT_SEED, sizeof(ROOT_SEED) - 1}, {root, 32}};
  SolPubkey expected;
  u8 bump;
  if (sol_try_find_program_address(find_seeds, 2, program_id, &expected, &bump) != 0 ||
      !sol_pubkey_eq(&expected, root_acct->key))
    return ERR_ROOT_WRONG_ADDRESS;
  /* Before the pairing. A program-owned account here without the magic is a closed root that someone
   * refunded in CloseRoot's transaction (so it was not deleted): only this program can create an
   * account at this PDA, so it is re-used below — refusing it would leave the root unverifiable and
   * its batch undeliverable for good. (A pre-upgrade v1 root has the magic: CloseRoot it first.) */
  bool revive = false;
  if (sol_pubkey_eq(root_acct->owner, program_id)) {
    if (root_acct->data_len >= 8 && sol_bytes_eq(root_acct->data + ROOT_MAGIC, ROOT_MAGIC_BYTES, 8))
      return ERR_ROOT_ALREADY_VERIFIED;
    revive = true;
  }

  /* The domain is read before committee_check_digest validates the config; a fake config fails there. */
  if (config->data_len < CONFIG_LEN) return ERR_CONFIG_NOT_INITIALIZED;
  u32 dst_domain = sol_read_u32_le(config->data + CFG_DOMAIN);
  u32 epoch = sol_read_u32_le(attestation);
  u8 fields[16];
  lane_fields(fields, epoch, src_domain, dst_domain, leaf_count);
  u8 digest[32];
  u64 err = root_digest(fields, root, digest);
  if (err) return err;
  err = committee_check_digest(config, program_id, attestation, digest);
  if (err) return err;

  SolPubkey board;
  err = tb_board_address(program_id, &board);
  if (err) return err;
  u8 bump_seed = bump;
  SolBytes signer_seeds[3] = {{(const u8 *)ROOT_SEED, sizeof(ROOT_SEED) - 1}, {root, 32}, {&bump_seed, 1}};
  SolSignerSeeds signer = {signer_seeds, 3};
  if (revive) {
    AccountGrowth refit = {payer, root_acct, system, ROOT_LEN};
    err = account_refit(params, &refit);
  } else {
    PdaCreation creation = {payer, root_acct, system, &signer, ROOT_LEN};
    err = create_pda(params, &creation);
  }
  if (err) return err;
  SolClock clock;
  i64 now = now_unix(&clock);
  if (now < 0) return ERR_SYSCALL_FAILED;
  u8 *r = root_acct->data;
  sol_memset_(r, 0, ROOT_LEN);
  sol_memcpy_(r + ROOT_MAGIC, ROOT_MAGIC_BYTES, 8);
  r[ROOT_VERSION_AT] = ROOT_VERSION;
  r[ROOT_BUMP] = bump;
  sol_write_u32_le(r + ROOT_SRC_DOMAIN, src_domain);
  sol_write_u32_le(r + ROOT_DST_DOMAIN, dst_domain);
  sol_write_u32_le(r + ROOT_LEAF_COUNT, leaf_count);
  sol_write_u32_le(r + ROOT_EPOCH, epoch);
  sol_write_u64_le(r + ROOT_VERIFIED_AT, (u64)now);
  sol_memcpy_(r + ROOT_PAYER, payer->key->x, 32);
  sol_memcpy_(r + ROOT_ROOT, root, 32);
  sol_memcpy_(r + ROOT_BOARD, board.x, 32);
  sol_memcpy_(r + ROOT_CONFIG, config->key->x, 32); /* checked by committee_check_digest above */
  sol_set_return_data(root, 32);
  return 0;
}

/* data: tag | leaf_index u8 | proof_len u8 | proof (32 x proof_len) | envelope (rest); accounts:
 * [payer (signer, writable), root account (a verified root), receipt PDA ["delivered", message_id]
 * (writable), system program], then the replay bitmap of the message's source and nonce window
 * (when its receipt may be closed: src_domain != 0, not to the task board) or the task board's
 * accounts, as for Deliver, and LAST the committee config PDA (mandatory). Deliver without the
 * pairing: the root's signature was checked by VerifyRoot; the proof ties the message to it.
 * Return data: message_id. Gated by the pause switch like Deliver: the last account must be THE
 * committee config (owner, magic, version, address re-derived from its bump), else
 * CONFIG_NOT_INITIALIZED / CONFIG_WRONG_ADDRESS, and GATEWAY_PAUSED while it is paused; its
 * address is compared with the one VerifyRoot checked and stored in the root (ROOT_CONFIG). It is
 * dropped from the account list first, so everything after sees the layout above. (It goes last,
 * not next to the payer, so the board's and the bitmap's positions stay those of Deliver.) */
u64 batch_deliver_with_proof(SolParameters *params) {
  if (params->account_count < 5) return ERR_NOT_ENOUGH_ACCOUNTS;
  if (params->data_len < 3) return ERR_INVALID_INSTRUCTION_DATA;
  SolAccountInfo *payer = &params->accounts[0];
  SolAccountInfo *root_acct = &params->accounts[1];
  SolAccountInfo *receipt = &params->accounts[2];
  SolAccountInfo *system = &params->accounts[3];
  const SolPubkey *program_id = params->program_id;
  if (!payer->is_signer) return ERR_ACCOUNT_NOT_SIGNER;
  if (!payer->is_writable || !receipt->is_writable) return ERR_ACCOUNT_NOT_WRITABLE;
  if (!sol_is_zero(system->key->x, SOL_PUBKEY_LEN)) return ERR_WRONG_SYSTEM_PROGRAM;
  const SolAccountInfo *config = &params->accounts[--params->account_count];

  const u8 *d = params->data + 1;
  u64 proof_len = d[1];
  if (params->data_len < 3 + 32 * proof_len) return ERR_INVALID_INSTRUCTION_DATA;
  const u8 *envelope = d + 2 + 32 * proof_len;
  u64 envelope_len = params->data_len - 3 - 32 * proof_len;
  Envelope env;
  if (!envelope_parse(envelope, envelope_len, &env)) return ERR_ENVELOPE_MALFORMED;
  if (env.kind == 0 || env.kind >= KIND_COMMITTEE_ROTATION) return ERR_WRONG_MESSAGE_KIND;
  if (!root_valid(root_acct, program_id)) return ERR_ROOT_NOT_VERIFIED;
  const u8 *r = root_acct->data;
  /* The config's address is the one VerifyRoot derived and stored: no derivation here (~1.5k CU). */
  u64 err = gateway_require_open(config, program_id, r + ROOT_CONFIG);
  if (err) return err;
  if (env.src_domain != sol_read_u32_le(r + ROOT_SRC_DOMAIN)) return ERR_LANE_MISMATCH;
  if (env.dst_domain != sol_read_u32_le(r + ROOT_DST_DOMAIN)) return ERR_WRONG_DESTINATION_DOMAIN;

  u8 message_id[32];
  SolBytes whole = {envelope, envelope_len};
  if (sol_keccak256(&whole, 1, message_id) != 0) return ERR_SYSCALL_FAILED;
  Proof proof = {d[0], sol_read_u32_le(r + ROOT_LEAF_COUNT), d + 2, proof_len};
  u8 computed[32];
  err = proof_root(message_id, &proof, computed);
  if (err) return err;
  if (!sol_bytes_eq(computed, r + ROOT_ROOT, 32)) return ERR_PROOF_INVALID;

  u8 bump;
  err = gateway_receipt_slot(program_id, receipt, message_id, &bump);
  if (err) return err;
  /* The board's address is in the root account: only deliveries to the board pay for deriving it. */
  bool to_board = sol_bytes_eq(env.dst_receiver, r + ROOT_BOARD, 32);
  if (to_board) {
    err = taskboard_check_delivery_accounts(params, &env, message_id, &to_board);
    if (err) return err;
  }
  err = batch_replay_check(params, &env, to_board);
  if (err) return err;

  DeliveryRecord record = {payer, receipt, system, bump, &env, message_id, envelope, envelope_len, to_board};
  err = gateway_record_delivery(params, &record);
  if (err) return err;
  sol_set_return_data(message_id, 32);
  return 0;
}

/* Moves every lamport of `from` (owned by this program) to `to` and zeroes its data, so nothing
 * later in the same transaction can read it as a live account; the runtime deletes it after. */
static u64 close_into(SolAccountInfo *from, SolAccountInfo *to, const u8 *expected_to) {
  if (!sol_bytes_eq(to->key->x, expected_to, 32)) return ERR_RECIPIENT_WRONG;
  if (!to->is_writable || !from->is_writable) return ERR_ACCOUNT_NOT_WRITABLE;
  if (to->executable) return ERR_RECIPIENT_CANNOT_RECEIVE;
  if (from->key == to->key || sol_pubkey_eq(from->key, to->key)) return ERR_RECIPIENT_WRONG;
  *to->lamports += *from->lamports;
  *from->lamports = 0;
  sol_memset_(from->data, 0, from->data_len);
  return 0;
}

/* data: tag; accounts: [closer (signer), root account (writable), payer (writable: the root's
 * payer)]. The payer may close its root at any time (a root closed early is verified again if
 * needed); anyone else once ROOT_RETENTION_SECONDS have passed since it was verified. */
u64 batch_close_root(SolParameters *params) {
  if (params->account_count < 3) return ERR_NOT_ENOUGH_ACCOUNTS;
  if (params->data_len != 1) return ERR_INVALID_INSTRUCTION_DATA;
  SolAccountInfo *closer = &params->accounts[0];
  SolAccountInfo *root_acct = &params->accounts[1];
  SolAccountInfo *payer = &params->accounts[2];
  if (!closer->is_signer) return ERR_ACCOUNT_NOT_SIGNER;
  if (!root_closable(root_acct, params->program_id)) return ERR_ROOT_NOT_VERIFIED;
  const u8 *r = root_acct->data;
  if (!sol_bytes_eq(closer->key->x, r + ROOT_PAYER, 32)) {
    SolClock clock;
    i64 now = now_unix(&clock);
    if (now < 0) return ERR_SYSCALL_FAILED;
    if ((u64)now < sol_read_u64_le(r + ROOT_VERIFIED_AT) + ROOT_RETENTION_SECONDS) return ERR_CLOSE_TOO_EARLY;
  }
  u8 owed_to[32];
  sol_memcpy_(owed_to, r + ROOT_PAYER, 32);
  return close_into(root_acct, payer, owed_to);
}

/* data: tag; accounts: [closer (signer; writable when it pays for a new bitmap), receipt (writable),
 * relayer (writable: the receipt's payer, gets its rent), replay bitmap PDA ["replay", src_domain LE,
 * nonce >> 13 LE] (writable), system program]. The receiver (a signer whose key is dst_receiver)
 * may close at any time, anyone once RECEIPT_RETENTION_SECONDS have passed since the delivery.
 * The message's bit is set first (the bitmap is created, paid by the closer, at the first close in
 * its window), so the message can never be delivered again. Receipts of committee messages
 * (src_domain 0: no nonce sequence) and of deliveries to the task board (the board reads them
 * later) are not closable. */
u64 batch_close_receipt(SolParameters *params) {
  if (params->account_count < 5) return ERR_NOT_ENOUGH_ACCOUNTS;
  if (params->data_len != 1) return ERR_INVALID_INSTRUCTION_DATA;
  SolAccountInfo *closer = &params->accounts[0];
  SolAccountInfo *receipt = &params->accounts[1];
  SolAccountInfo *relayer = &params->accounts[2];
  SolAccountInfo *bitmap = &params->accounts[3];
  SolAccountInfo *system = &params->accounts[4];
  const SolPubkey *program_id = params->program_id;
  if (!closer->is_signer) return ERR_ACCOUNT_NOT_SIGNER;
  if (!receipt->is_writable || !bitmap->is_writable) return ERR_ACCOUNT_NOT_WRITABLE;
  const u8 *rc = receipt->data;
  if (!sol_pubkey_eq(receipt->owner, program_id) || receipt->data_len < RCPT_ENVELOPE ||
      !sol_bytes_eq(rc + RCPT_MAGIC, RCPT_MAGIC_BYTES, 8) || rc[RCPT_VERSION_AT] != RECEIPT_VERSION)
    return ERR_NOT_A_RECEIPT;
  u64 env_len = sol_read_u32_le(rc + RCPT_ENVELOPE_LEN);
  Envelope env;
  if (receipt->data_len < RCPT_ENVELOPE + env_len || !envelope_parse(rc + RCPT_ENVELOPE, env_len, &env))
    return ERR_NOT_A_RECEIPT;
  SolPubkey board;
  u64 err = tb_board_address(program_id, &board);
  if (err) return err;
  if (!receipt_closable(&env, &board)) return ERR_RECEIPT_NOT_CLOSABLE;
  if (!sol_bytes_eq(closer->key->x, env.dst_receiver, 32)) {
    SolClock clock;
    i64 now = now_unix(&clock);
    if (now < 0) return ERR_SYSCALL_FAILED;
    if ((u64)now < sol_read_u64_le(rc + RCPT_UNIX_TIME) + RECEIPT_RETENTION_SECONDS) return ERR_CLOSE_TOO_EARLY;
  }

  u64 window = env.nonce >> REPLAY_WINDOW_BITS;
  u8 bump;
  err = replay_address(program_id, bitmap, env.src_domain, window, &bump);
  if (err) return err;
  if (!sol_pubkey_eq(bitmap->owner, program_id)) {
    if (!closer->is_writable) return ERR_ACCOUNT_NOT_WRITABLE;
    if (!sol_is_zero(system->key->x, SOL_PUBKEY_LEN)) return ERR_WRONG_SYSTEM_PROGRAM;
    ReplaySeeds s;
    sol_write_u32_le(s.domain_le, env.src_domain);
    sol_write_u64_le(s.window_le, window);
    u8 bump_seed = bump;
    SolBytes signer_seeds[4] = {
        {(const u8 *)REPLAY_SEED, sizeof(REPLAY_SEED) - 1}, {s.domain_le, 4}, {s.window_le, 8}, {&bump_seed, 1}};
    SolSignerSeeds signer = {signer_seeds, 4};
    PdaCreation creation = {closer, bitmap, system, &signer, REPLAY_LEN};
    err = create_pda(params, &creation);
    if (err) return err;
    u8 *b = bitmap->data;
    sol_memset_(b, 0, REPLAY_LEN);
    sol_memcpy_(b + REPLAY_MAGIC, REPLAY_MAGIC_BYTES, 8);
    b[REPLAY_VERSION_AT] = REPLAY_VERSION;
    b[REPLAY_BUMP] = bump;
    sol_write_u32_le(b + REPLAY_SRC_DOMAIN, env.src_domain);
    sol_write_u64_le(b + REPLAY_WINDOW_AT, window);
  }
  u64 bit = env.nonce & (REPLAY_WINDOW - 1);
  bitmap->data[REPLAY_BITS + (bit >> 3)] |= (u8)(1u << (bit & 7));
  u8 owed_to[32];
  sol_memcpy_(owed_to, rc + RCPT_RELAYER, 32);
  return close_into(receipt, relayer, owed_to);
}

/* data: tag | what u8 | ... (stateless; for the shared vectors and clients).
 * what 0: leaf_count u8 | index u8 | proof_len u8 | proof | message_id (32): return data the root
 *         the proof leads to (fails as DeliverWithProof would on a bad length or index).
 * what 1: epoch u32 LE | src_domain u32 LE | dst_domain u32 LE | leaf_count u8 | root (32): return
 *         data the root digest the committee signs. */
u64 batch_check(SolParameters *params) {
  if (params->data_len < 2) return ERR_INVALID_INSTRUCTION_DATA;
  const u8 *p = params->data + 2;
  u64 len = params->data_len - 2;
  u8 out[32];
  if (params->data[1] == 0) {
    if (len < 3 || len != 3 + 32 * (u64)p[2] + 32) return ERR_INVALID_INSTRUCTION_DATA;
    Proof proof = {p[1], p[0], p + 3, p[2]};
    u64 err = proof_root(p + 3 + 32 * (u64)p[2], &proof, out);
    if (err) return err;
  } else if (params->data[1] == 1) {
    if (len != 4 + 4 + 4 + 1 + 32) return ERR_INVALID_INSTRUCTION_DATA;
    if (p[12] == 0 || p[12] > BATCH_MAX_SIZE) return ERR_BATCH_SIZE_INVALID;
    u8 fields[16];
    lane_fields(fields, sol_read_u32_le(p), sol_read_u32_le(p + 4), sol_read_u32_le(p + 8), p[12]);
    u64 err = root_digest(fields, p + 13, out);
    if (err) return err;
  } else {
    return ERR_INVALID_INSTRUCTION_DATA;
  }
  sol_set_return_data(out, 32);
  return 0;
}
