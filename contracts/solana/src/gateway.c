#include "gateway.h"

#include "accounts.h"
#include "batch.h"
#include "committee.h"
#include "envelope.h"
#include "taskboard.h"

static const u8 OUTBOX_MAGIC_BYTES[8] = {'T', 'E', 'S', 'S', 'O', 'U', 'T', 'B'};
static const u8 RECEIPT_MAGIC_BYTES[8] = {'T', 'E', 'S', 'S', 'R', 'C', 'P', 'T'};
static const u8 COMMITTEE_MAGIC_BYTES[8] = {'T', 'E', 'S', 'S', 'C', 'O', 'M', 'M'};

static i64 clock_now(SolClock *clock) {
  if (sol_get_clock_sysvar(clock) != 0) return -1;
  return clock->unix_timestamp;
}

/* The committee config, trusted only at its derived address (see committee.c's config_load). */
static u64 config_domain(const SolAccountInfo *config, const SolPubkey *program_id, u32 *domain) {
  if (!sol_pubkey_eq(config->owner, program_id) || config->data_len < CONFIG_LEN ||
      !sol_bytes_eq(config->data + CFG_MAGIC, COMMITTEE_MAGIC_BYTES, 8) || config->data[CFG_VERSION] != CONFIG_VERSION)
    return ERR_CONFIG_NOT_INITIALIZED;
  u8 bump = config->data[CFG_BUMP];
  SolBytes seeds[2] = {{(const u8 *)COMMITTEE_SEED, sizeof(COMMITTEE_SEED) - 1}, {&bump, 1}};
  SolPubkey expected;
  if (sol_create_program_address(seeds, 2, program_id, &expected) != 0 || !sol_pubkey_eq(&expected, config->key))
    return ERR_CONFIG_WRONG_ADDRESS;
  *domain = sol_read_u32_le(config->data + CFG_DOMAIN);
  return 0;
}

/* data: tag; accounts: [admin (signer), committee config PDA (writable)]. The admin is the one the
 * config records (InitCommittee's signer, the upgrade authority then). Idempotent. */
u64 gateway_set_paused(SolParameters *params, u8 paused) {
  if (params->account_count < 2) return ERR_NOT_ENOUGH_ACCOUNTS;
  if (params->data_len != 1) return ERR_INVALID_INSTRUCTION_DATA;
  SolAccountInfo *admin = &params->accounts[0];
  SolAccountInfo *config = &params->accounts[1];
  if (!admin->is_signer) return ERR_ACCOUNT_NOT_SIGNER;
  if (!config->is_writable) return ERR_ACCOUNT_NOT_WRITABLE;
  u32 domain;
  u64 err = config_domain(config, params->program_id, &domain);
  if (err) return err;
  if (!sol_bytes_eq(config->data + CFG_ADMIN, admin->key->x, SOL_PUBKEY_LEN)) return ERR_NOT_ADMIN;
  config->data[CFG_PAUSED] = paused;
  sol_log(paused ? "tessera: gateway paused" : "tessera: gateway unpaused");
  return 0;
}

u64 gateway_require_open(const SolAccountInfo *config, const SolPubkey *program_id, const u8 *known_key) {
  if (known_key == 0) {
    u32 domain;
    u64 err = config_domain(config, program_id, &domain);
    if (err) return err;
  } else {
    if (!sol_pubkey_eq(config->owner, program_id) || config->data_len < CONFIG_LEN ||
        !sol_bytes_eq(config->data + CFG_MAGIC, COMMITTEE_MAGIC_BYTES, 8) || config->data[CFG_VERSION] != CONFIG_VERSION)
      return ERR_CONFIG_NOT_INITIALIZED;
    if (!sol_bytes_eq(config->key->x, known_key, 32)) return ERR_CONFIG_WRONG_ADDRESS;
  }
  return config->data[CFG_PAUSED] ? ERR_GATEWAY_PAUSED : 0;
}

u64 gateway_require_admin(const SolAccountInfo *config, const SolPubkey *program_id, const SolAccountInfo *admin) {
  u32 domain;
  u64 err = config_domain(config, program_id, &domain);
  if (err) return err;
  if (!sol_bytes_eq(config->data + CFG_ADMIN, admin->key->x, SOL_PUBKEY_LEN)) return ERR_NOT_ADMIN;
  return 0;
}

/* data: tag | new admin (32); accounts: [admin (signer, writable), committee config PDA (writable),
 * system program]. The first step of the admin handover: records the proposed admin, who gets no power
 * until it signs AcceptAdmin; the admin keeps every power meanwhile. A new proposal replaces the
 * previous one; the zero key cancels. The first proposal on a config without room for it grows the
 * account by 32 bytes (committee.h), the admin paying the rent. */
u64 gateway_propose_admin(SolParameters *params) {
  if (params->account_count < 3) return ERR_NOT_ENOUGH_ACCOUNTS;
  if (params->data_len != 1 + SOL_PUBKEY_LEN) return ERR_INVALID_INSTRUCTION_DATA;
  SolAccountInfo *admin = &params->accounts[0];
  SolAccountInfo *config = &params->accounts[1];
  if (!admin->is_signer) return ERR_ACCOUNT_NOT_SIGNER;
  if (!config->is_writable) return ERR_ACCOUNT_NOT_WRITABLE;
  u64 err = gateway_require_admin(config, params->program_id, admin);
  if (err) return err;
  const u8 *proposed = params->data + 1;
  bool cancel = sol_is_zero(proposed, SOL_PUBKEY_LEN);
  if (config->data_len < CONFIG_LEN_WITH_PENDING) {
    if (cancel) {
      sol_log("tessera: admin proposal cancelled");
      return 0; /* nothing can be pending in an account without room for it */
    }
    AccountGrowth growth = {admin, config, &params->accounts[2], CONFIG_LEN_WITH_PENDING};
    err = account_grow(params, &growth);
    if (err) return err;
  }
  sol_memcpy_(config->data + CFG_PENDING_ADMIN, proposed, SOL_PUBKEY_LEN);
  sol_log(cancel ? "tessera: admin proposal cancelled" : "tessera: admin proposed");
  return 0;
}

/* data: tag; accounts: [proposed admin (signer), committee config PDA (writable)]. The second step:
 * the key ProposeAdmin named becomes the admin, the proposal is cleared, the old admin keeps nothing. */
u64 gateway_accept_admin(SolParameters *params) {
  if (params->account_count < 2) return ERR_NOT_ENOUGH_ACCOUNTS;
  if (params->data_len != 1) return ERR_INVALID_INSTRUCTION_DATA;
  SolAccountInfo *candidate = &params->accounts[0];
  SolAccountInfo *config = &params->accounts[1];
  if (!candidate->is_signer) return ERR_ACCOUNT_NOT_SIGNER;
  if (!config->is_writable) return ERR_ACCOUNT_NOT_WRITABLE;
  u32 domain;
  u64 err = config_domain(config, params->program_id, &domain);
  if (err) return err;
  u8 *cfg = config->data;
  if (config->data_len < CONFIG_LEN_WITH_PENDING || sol_is_zero(cfg + CFG_PENDING_ADMIN, SOL_PUBKEY_LEN))
    return ERR_NO_ADMIN_PENDING;
  if (!sol_bytes_eq(cfg + CFG_PENDING_ADMIN, candidate->key->x, SOL_PUBKEY_LEN)) return ERR_NOT_PENDING_ADMIN;
  sol_memcpy_(cfg + CFG_ADMIN, candidate->key->x, SOL_PUBKEY_LEN);
  sol_memset_(cfg + CFG_PENDING_ADMIN, 0, SOL_PUBKEY_LEN);
  sol_log("tessera: admin accepted");
  return 0;
}

static u64 outbox_load(const SolAccountInfo *outbox, const SolPubkey *program_id) {
  if (!sol_pubkey_eq(outbox->owner, program_id) || outbox->data_len < OUTBOX_LEN ||
      !sol_bytes_eq(outbox->data + OUTBOX_MAGIC, OUTBOX_MAGIC_BYTES, 8) ||
      outbox->data[OUTBOX_VERSION_AT] != OUTBOX_VERSION)
    return ERR_OUTBOX_NOT_INITIALIZED;
  u8 bump = outbox->data[OUTBOX_BUMP];
  SolBytes seeds[2] = {{(const u8 *)OUTBOX_SEED, sizeof(OUTBOX_SEED) - 1}, {&bump, 1}};
  SolPubkey expected;
  if (sol_create_program_address(seeds, 2, program_id, &expected) != 0 || !sol_pubkey_eq(&expected, outbox->key))
    return ERR_OUTBOX_WRONG_ADDRESS;
  return 0;
}

u64 gateway_outbox_check(const SolAccountInfo *outbox, const SolPubkey *program_id) {
  return outbox_load(outbox, program_id);
}

/* data: tag (nothing else); accounts: [admin (signer, writable), outbox PDA (writable), this
 * program's ProgramData, system program]. Only the upgrade authority may initialize, as for the
 * committee: whoever creates the outbox first would otherwise own the nonce sequence's start. */
u64 gateway_init(SolParameters *params) {
  if (params->account_count < 4) return ERR_NOT_ENOUGH_ACCOUNTS;
  if (params->data_len != 1) return ERR_INVALID_INSTRUCTION_DATA;
  SolAccountInfo *admin = &params->accounts[0];
  SolAccountInfo *outbox = &params->accounts[1];
  SolAccountInfo *programdata = &params->accounts[2];
  SolAccountInfo *system = &params->accounts[3];
  const SolPubkey *program_id = params->program_id;
  if (!admin->is_signer) return ERR_ACCOUNT_NOT_SIGNER;
  if (!admin->is_writable || !outbox->is_writable) return ERR_ACCOUNT_NOT_WRITABLE;
  if (!sol_is_zero(system->key->x, SOL_PUBKEY_LEN)) return ERR_WRONG_SYSTEM_PROGRAM;

  u64 err = require_upgrade_authority(program_id, programdata, admin);
  if (err) return err;

  SolPubkey expected;
  u8 bump;
  SolBytes seeds[1] = {{(const u8 *)OUTBOX_SEED, sizeof(OUTBOX_SEED) - 1}};
  if (sol_try_find_program_address(seeds, 1, program_id, &expected, &bump) != 0 || !sol_pubkey_eq(&expected, outbox->key))
    return ERR_OUTBOX_WRONG_ADDRESS;
  if (sol_pubkey_eq(outbox->owner, program_id)) return ERR_OUTBOX_ALREADY_INITIALIZED;

  u8 bump_seed = bump;
  SolBytes signer_seeds[2] = {{(const u8 *)OUTBOX_SEED, sizeof(OUTBOX_SEED) - 1}, {&bump_seed, 1}};
  SolSignerSeeds signer = {signer_seeds, 2};
  PdaCreation creation = {admin, outbox, system, &signer, OUTBOX_LEN};
  err = create_pda(params, &creation);
  if (err) return err;
  u8 *box = outbox->data;
  sol_memset_(box, 0, OUTBOX_LEN);
  sol_memcpy_(box + OUTBOX_MAGIC, OUTBOX_MAGIC_BYTES, 8);
  box[OUTBOX_VERSION_AT] = OUTBOX_VERSION;
  box[OUTBOX_BUMP] = bump;
  return 0;
}

u64 gateway_emit(const SolPubkey *program_id, SolAccountInfo *outbox, const SolAccountInfo *config,
                 const Outgoing *msg, u8 message_id[32]) {
  /* Rotations come from the committee, never from a sender; unknown kinds would not decode. */
  if (msg->kind == 0 || msg->kind >= KIND_COMMITTEE_ROTATION) return ERR_WRONG_MESSAGE_KIND;
  if (msg->payload_len > MAX_PAYLOAD_LEN) return ERR_PAYLOAD_TOO_LONG;
  if (!outbox->is_writable) return ERR_ACCOUNT_NOT_WRITABLE;
  u64 err = outbox_load(outbox, program_id);
  if (err) return err;
  u32 src_domain;
  err = config_domain(config, program_id, &src_domain);
  if (err) return err;
  if (config->data[CFG_PAUSED]) return ERR_GATEWAY_PAUSED;
  u8 *box = outbox->data;
  u64 nonce = sol_read_u64_le(box + OUTBOX_NONCE);
  if (nonce == ~0ULL) return ERR_NONCE_EXHAUSTED;
  SolClock clock;
  i64 now = clock_now(&clock);
  if (now < 0) return ERR_SYSCALL_FAILED;

  u8 *env = SCRATCH->envelope;
  env[0] = PROTOCOL_VERSION;
  env[1] = msg->kind;
  sol_write_u32_be(env + 2, (u32)(nonce >> 32));
  sol_write_u32_be(env + 6, (u32)nonce);
  sol_write_u32_be(env + 10, src_domain);
  sol_memcpy_(env + 14, msg->sender, SOL_PUBKEY_LEN);
  sol_write_u32_be(env + 46, msg->dst_domain);
  sol_memcpy_(env + 50, msg->receiver, 32);
  if (msg->payload_len) sol_memcpy_(env + ENVELOPE_HEADER_LEN, msg->payload, msg->payload_len);
  u64 env_len = ENVELOPE_HEADER_LEN + msg->payload_len;

  sol_write_u64_le(box + OUTBOX_NONCE, nonce + 1);
  sol_write_u64_le(box + OUTBOX_SENT_AT, (u64)now);

  SolBytes fields[2] = {{(const u8 *)SENT_EVENT_TAG, sizeof(SENT_EVENT_TAG) - 1}, {env, env_len}};
  sol_log_data(fields, 2);
  u8 ret[40];
  SolBytes whole = {env, env_len};
  if (sol_keccak256(&whole, 1, ret) != 0) return ERR_SYSCALL_FAILED;
  sol_memcpy_(message_id, ret, 32);
  sol_write_u64_le(ret + 32, nonce);
  sol_set_return_data(ret, 40);
  return 0;
}

/* data: tag | dst_domain u32 LE | receiver (32) | kind u8 | payload (rest, <= MAX_PAYLOAD_LEN);
 * accounts: [sender (signer), outbox PDA (writable), committee config PDA].
 * Logs ("TESSERA_SENT", envelope) with sol_log_data; return data: message_id (32) | nonce u64 LE. */
u64 gateway_send(SolParameters *params) {
  if (params->account_count < 3) return ERR_NOT_ENOUGH_ACCOUNTS;
  if (params->data_len < 1 + 4 + 32 + 1) return ERR_INVALID_INSTRUCTION_DATA;
  SolAccountInfo *sender = &params->accounts[0];
  SolAccountInfo *outbox = &params->accounts[1];
  SolAccountInfo *config = &params->accounts[2];
  if (!sender->is_signer) return ERR_ACCOUNT_NOT_SIGNER;
  if (!outbox->is_writable) return ERR_ACCOUNT_NOT_WRITABLE;
  const u8 *d = params->data + 1;
  Outgoing msg = {d[36], sol_read_u32_le(d), d + 4, sender->key->x, d + 37, params->data_len - 1 - 37};
  /* Once the admin has set a fee config, sends pay: SendPaid (29, fees.c). Read after outbox_load
   * in gateway_emit would be too late to name the cause; the outbox is checked there anyway. */
  if (outbox->data_len > OUTBOX_FEES_REQUIRED && outbox->data[OUTBOX_FEES_REQUIRED] != 0 &&
      sol_pubkey_eq(outbox->owner, params->program_id))
    return ERR_FEE_REQUIRED;
  u8 message_id[32];
  return gateway_emit(params->program_id, outbox, config, &msg, message_id);
}

/* The receipt account of `message_id` must sit at its PDA and must not exist yet (exactly-once):
 * checked before any pairing, so a relayer that lost the race learns it cheaply. */
u64 gateway_receipt_slot(const SolPubkey *program_id, const SolAccountInfo *receipt, const u8 *message_id,
                         u8 *bump) {
  SolBytes find_seeds[2] = {{(const u8 *)RECEIPT_SEED, sizeof(RECEIPT_SEED) - 1}, {message_id, 32}};
  SolPubkey expected;
  if (sol_try_find_program_address(find_seeds, 2, program_id, &expected, bump) != 0 ||
      !sol_pubkey_eq(&expected, receipt->key))
    return ERR_RECEIPT_WRONG_ADDRESS;
  if (sol_pubkey_eq(receipt->owner, program_id)) return ERR_ALREADY_DELIVERED;
  return 0;
}

/* Creates the receipt, records the delivery in it and hands a delivery addressed to the task board
 * to the board: the one place a delivery is recorded, whether its signature was checked directly
 * (Deliver) or through a verified batch root (DeliverWithProof, batch.c). */
u64 gateway_record_delivery(SolParameters *params, const DeliveryRecord *d) {
  u8 bump_seed = d->bump;
  SolBytes signer_seeds[3] = {
      {(const u8 *)RECEIPT_SEED, sizeof(RECEIPT_SEED) - 1}, {d->message_id, 32}, {&bump_seed, 1}};
  SolSignerSeeds signer = {signer_seeds, 3};
  PdaCreation creation = {d->payer, d->receipt, d->system, &signer, RCPT_ENVELOPE + d->envelope_len};
  u64 err = create_pda(params, &creation);
  if (err) return err;

  SolClock clock;
  i64 now = clock_now(&clock);
  if (now < 0) return ERR_SYSCALL_FAILED;
  u8 *r = d->receipt->data;
  sol_memset_(r, 0, RCPT_ENVELOPE);
  sol_memcpy_(r + RCPT_MAGIC, RECEIPT_MAGIC_BYTES, 8);
  r[RCPT_VERSION_AT] = RECEIPT_VERSION;
  r[RCPT_BUMP] = d->bump;
  r[RCPT_STATUS] = RECEIPT_STATUS_DELIVERED;
  sol_write_u32_le(r + RCPT_ENVELOPE_LEN, (u32)d->envelope_len);
  sol_write_u64_le(r + RCPT_SLOT, clock.slot);
  sol_write_u64_le(r + RCPT_UNIX_TIME, (u64)now);
  sol_memcpy_(r + RCPT_RELAYER, d->payer->key->x, SOL_PUBKEY_LEN);
  sol_memcpy_(r + RCPT_MESSAGE_ID, d->message_id, 32);
  sol_memcpy_(r + RCPT_ENVELOPE, d->envelope, d->envelope_len);
  if (d->to_board) {
    /* Bad content is logged and ignored inside: only account mistakes fail the delivery. */
    err = taskboard_on_delivery(params, d->env, d->message_id);
    if (err) return err;
  }
  return 0;
}

/* data: tag | attestation (ATTESTATION_LEN) | envelope (rest); accounts: [payer (signer, writable),
 * committee config PDA, receipt PDA ["delivered", message_id] (writable), system program], then
 * the replay bitmap ["replay", src_domain, nonce >> 13] when the receipt may be closed (src_domain
 * != 0 and not to the task board; batch.c).
 * Creates the receipt, which is what makes acceptance exactly-once: a second Deliver of the same
 * message finds it and fails with ALREADY_DELIVERED. Return data: message_id.
 * To the task board (dst_receiver = PDA ["taskboard"]) the accounts continue with [board PDA],
 * then [task PDA (writable)] for a TASK_RESULT, [task PDA (writable), payout (writable)] for a
 * PROOF_ATTESTATION (taskboard.c). */
u64 gateway_deliver(SolParameters *params) {
  if (params->account_count < 4) return ERR_NOT_ENOUGH_ACCOUNTS;
  if (params->data_len < 1 + ATTESTATION_LEN) return ERR_INVALID_INSTRUCTION_DATA;
  SolAccountInfo *payer = &params->accounts[0];
  SolAccountInfo *config = &params->accounts[1];
  SolAccountInfo *receipt = &params->accounts[2];
  SolAccountInfo *system = &params->accounts[3];
  const SolPubkey *program_id = params->program_id;
  if (!payer->is_signer) return ERR_ACCOUNT_NOT_SIGNER;
  if (!payer->is_writable || !receipt->is_writable) return ERR_ACCOUNT_NOT_WRITABLE;
  if (!sol_is_zero(system->key->x, SOL_PUBKEY_LEN)) return ERR_WRONG_SYSTEM_PROGRAM;

  /* A paused gateway refuses deliveries. Read before the config is checked (the pairing checks it):
   * the real config says whether it is paused, and any other account fails that check anyway. */
  if (gateway_paused_byte(config)) return ERR_GATEWAY_PAUSED;
  const u8 *attestation = params->data + 1;
  const u8 *envelope = attestation + ATTESTATION_LEN;
  u64 envelope_len = params->data_len - 1 - ATTESTATION_LEN;
  Envelope env;
  if (!envelope_parse(envelope, envelope_len, &env)) return ERR_ENVELOPE_MALFORMED;
  if (env.kind == 0 || env.kind >= KIND_COMMITTEE_ROTATION) return ERR_WRONG_MESSAGE_KIND;

  /* The receipt check comes before the pairing: a relayer that lost the race learns it for ~5k CU. */
  u8 message_id[32];
  SolBytes whole = {envelope, envelope_len};
  if (sol_keccak256(&whole, 1, message_id) != 0) return ERR_SYSCALL_FAILED;
  u8 bump;
  u64 err = gateway_receipt_slot(program_id, receipt, message_id, &bump);
  if (err) return err;

  /* Deliveries to the task board carry its extra accounts; missing ones fail here, before the
   * pairing (a relayer bug, not bad content). */
  bool to_board = false;
  err = taskboard_check_delivery_accounts(params, &env, message_id, &to_board);
  if (err) return err;
  /* A message whose receipt may be closed carries its replay bitmap (batch.c): closed is not new. */
  err = batch_replay_check(params, &env, to_board);
  if (err) return err;

  u8 checked_id[32];
  SolBytes envelope_bytes = {envelope, envelope_len};
  err = committee_check_envelope(config, program_id, attestation, &envelope_bytes, checked_id);
  if (err) return err;

  DeliveryRecord record = {payer, receipt, system, bump, &env, message_id, envelope, envelope_len, to_board};
  err = gateway_record_delivery(params, &record);
  if (err) return err;
  sol_set_return_data(message_id, 32);
  return 0;
}
