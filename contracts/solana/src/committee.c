#include "committee.h"

#include "accounts.h"
#include "bn254.h"
#include "envelope.h"

static const u8 CONFIG_MAGIC[8] = {'T', 'E', 'S', 'S', 'C', 'O', 'M', 'M'};

static i64 unix_now(void) {
  SolClock clock;
  if (sol_get_clock_sysvar(&clock) != 0) return -1;
  return clock.unix_timestamp;
}

/* The config is trusted only at its derived address: anyone can create zeroed accounts owned by
 * this program, so owner + magic alone would not do. */
static u64 config_load(const SolAccountInfo *config, const SolPubkey *program_id, u8 **out) {
  if (!sol_pubkey_eq(config->owner, program_id)) return ERR_CONFIG_NOT_INITIALIZED;
  if (config->data_len < CONFIG_LEN || !sol_bytes_eq(config->data + CFG_MAGIC, CONFIG_MAGIC, 8) ||
      config->data[CFG_VERSION] != CONFIG_VERSION)
    return ERR_CONFIG_NOT_INITIALIZED;
  u8 bump = config->data[CFG_BUMP];
  SolBytes seeds[2] = {{(const u8 *)COMMITTEE_SEED, sizeof(COMMITTEE_SEED) - 1}, {&bump, 1}};
  SolPubkey expected;
  if (sol_create_program_address(seeds, 2, program_id, &expected) != 0) return ERR_CONFIG_WRONG_ADDRESS;
  if (!sol_pubkey_eq(&expected, config->key)) return ERR_CONFIG_WRONG_ADDRESS;
  *out = config->data;
  return 0;
}

/* Picks the group key that signs under `epoch`: the current one, or the previous one while its
 * grace period lasts. */
static u64 key_for_epoch(const u8 *cfg, u32 epoch, const u8 **key) {
  if (epoch == sol_read_u32_le(cfg + CFG_CUR_EPOCH)) {
    *key = cfg + CFG_CUR_KEY;
    return 0;
  }
  if (cfg[CFG_HAS_PREVIOUS] && epoch == sol_read_u32_le(cfg + CFG_PREV_EPOCH)) {
    i64 now = unix_now();
    if (now < 0 || now > (i64)sol_read_u64_le(cfg + CFG_PREV_VALID_UNTIL)) return ERR_EPOCH_EXPIRED;
    *key = cfg + CFG_PREV_KEY;
    return 0;
  }
  return ERR_EPOCH_UNKNOWN;
}

static u64 verify_attestation(const u8 *attestation, const u8 *key, const u8 *envelope, u64 envelope_len,
                              u8 message_id[32]) {
  u32 epoch = sol_read_u32_le(attestation);
  u8 digest[32];
  envelope_digest(envelope, envelope_len, epoch, message_id, digest);
  return bls_verify_hinted(digest, attestation + 4 + G1_LEN, attestation + 4, key);
}

u64 committee_check_envelope(const SolAccountInfo *config, const SolPubkey *program_id, const u8 *attestation,
                             const SolBytes *envelope_bytes, u8 message_id[32]) {
  const u8 *envelope = envelope_bytes->addr;
  u64 envelope_len = envelope_bytes->len;
  u8 *cfg;
  u64 err = config_load(config, program_id, &cfg);
  if (err) return err;
  Envelope env;
  if (!envelope_parse(envelope, envelope_len, &env)) return ERR_ENVELOPE_MALFORMED;
  if (env.dst_domain != sol_read_u32_le(cfg + CFG_DOMAIN)) return ERR_WRONG_DESTINATION_DOMAIN;
  const u8 *key;
  err = key_for_epoch(cfg, sol_read_u32_le(attestation), &key);
  if (err) return err;
  return verify_attestation(attestation, key, envelope, envelope_len, message_id);
}

u64 committee_check_digest(const SolAccountInfo *config, const SolPubkey *program_id, const u8 *attestation,
                           const u8 digest[32]) {
  u8 *cfg;
  u64 err = config_load(config, program_id, &cfg);
  if (err) return err;
  const u8 *key;
  err = key_for_epoch(cfg, sol_read_u32_le(attestation), &key);
  if (err) return err;
  return bls_verify_hinted(digest, attestation + 4 + G1_LEN, attestation + 4, key);
}

/* data: tag | attestation (ATTESTATION_LEN) | envelope; accounts: [config]. Return data: message_id. */
u64 committee_verify_signature(SolParameters *params) {
  if (params->account_count < 1) return ERR_NOT_ENOUGH_ACCOUNTS;
  if (params->data_len < 1 + ATTESTATION_LEN) return ERR_INVALID_INSTRUCTION_DATA;
  const u8 *attestation = params->data + 1;
  SolBytes envelope = {attestation + ATTESTATION_LEN, params->data_len - 1 - ATTESTATION_LEN};
  u8 message_id[32];
  u64 err = committee_check_envelope(&params->accounts[0], params->program_id, attestation, &envelope, message_id);
  if (err) return err;
  sol_set_return_data(message_id, 32);
  return 0;
}

/* data: tag | sigma (64) | hint (HINT_LEN) | digest (32) | group key (128); no accounts. A pure
 * check with a caller-chosen key: it proves nothing about the committee and changes no state. */
u64 committee_verify_digest(SolParameters *params) {
  if (params->data_len != 1 + G1_LEN + HINT_LEN + 32 + G2_LEN) return ERR_INVALID_INSTRUCTION_DATA;
  const u8 *sigma = params->data + 1;
  const u8 *hint = sigma + G1_LEN;
  const u8 *digest = hint + HINT_LEN;
  const u8 *key = digest + 32;
  return bls_verify_hinted(digest, hint, sigma, key);
}

/* data: tag | attestation (signed by the CURRENT epoch) | envelope of kind COMMITTEE_ROTATION;
 * accounts: [config (writable)]. */
u64 committee_rotate(SolParameters *params) {
  if (params->account_count < 1) return ERR_NOT_ENOUGH_ACCOUNTS;
  if (params->data_len < 1 + ATTESTATION_LEN) return ERR_INVALID_INSTRUCTION_DATA;
  SolAccountInfo *config = &params->accounts[0];
  if (!config->is_writable) return ERR_ACCOUNT_NOT_WRITABLE;
  u8 *cfg;
  u64 err = config_load(config, params->program_id, &cfg);
  if (err) return err;

  const u8 *attestation = params->data + 1;
  const u8 *envelope = attestation + ATTESTATION_LEN;
  u64 envelope_len = params->data_len - 1 - ATTESTATION_LEN;
  Envelope env;
  if (!envelope_parse(envelope, envelope_len, &env)) return ERR_ENVELOPE_MALFORMED;
  if (env.kind != KIND_COMMITTEE_ROTATION) return ERR_WRONG_MESSAGE_KIND;
  if (env.dst_domain != sol_read_u32_le(cfg + CFG_DOMAIN)) return ERR_WRONG_DESTINATION_DOMAIN;
  if (env.src_domain != COMMITTEE_DOMAIN) return ERR_WRONG_SOURCE_DOMAIN;
  if (env.payload_len != ROTATION_PAYLOAD_LEN) return ERR_ROTATION_PAYLOAD_MALFORMED;
  /* As CommitteeVerifier.rotate: the committee's own sender (zero), and this program as receiver, so a
   * rotation signed for another deployment on the same domain cannot be replayed here. */
  if (!sol_is_zero(env.src_sender, 32)) return ERR_WRONG_SOURCE_SENDER;
  if (!sol_bytes_eq(env.dst_receiver, params->program_id->x, SOL_PUBKEY_LEN)) return ERR_WRONG_DESTINATION_RECEIVER;

  u32 current_epoch = sol_read_u32_le(cfg + CFG_CUR_EPOCH);
  if (sol_read_u32_le(attestation) != current_epoch) return ERR_ROTATION_NOT_CURRENT_SIGNER;
  /* payload: new_epoch u32 | n u16 | t u16 | group_key (128) | grace_seconds u32, big-endian */
  const u8 *payload = env.payload;
  u32 new_epoch = sol_read_u32_be(payload);
  u16 n = sol_read_u16_be(payload + 4);
  u16 t = sol_read_u16_be(payload + 6);
  const u8 *new_key = payload + 8;
  u32 grace = sol_read_u32_be(payload + 8 + G2_LEN);
  if (current_epoch == 0xffffffffU || new_epoch != current_epoch + 1) return ERR_ROTATION_WRONG_EPOCH;
  if (t == 0 || t > n) return ERR_BAD_THRESHOLD;
  if (sol_is_zero(new_key, G2_LEN)) return ERR_KEY_INFINITY;

  u8 message_id[32];
  err = verify_attestation(attestation, cfg + CFG_CUR_KEY, envelope, envelope_len, message_id);
  if (err) return err;
  /* A key outside G2 would make every later verification fail (the committee locked out for good):
   * refuse it before storing it. After the signature check, so a forged rotation costs its sender
   * nothing more. */
  err = g2_check(new_key);
  if (err) return err;

  i64 now = unix_now();
  if (now < 0) return ERR_SYSCALL_FAILED;
  sol_write_u32_le(cfg + CFG_PREV_EPOCH, current_epoch);
  sol_memcpy_(cfg + CFG_PREV_N, cfg + CFG_CUR_N, 4); /* n and t */
  sol_write_u64_le(cfg + CFG_PREV_VALID_UNTIL, (u64)(now + (i64)grace));
  sol_memcpy_(cfg + CFG_PREV_KEY, cfg + CFG_CUR_KEY, G2_LEN);
  cfg[CFG_HAS_PREVIOUS] = 1;
  sol_write_u32_le(cfg + CFG_CUR_EPOCH, new_epoch);
  sol_write_u16_le(cfg + CFG_CUR_N, n);
  sol_write_u16_le(cfg + CFG_CUR_T, t);
  sol_memcpy_(cfg + CFG_CUR_KEY, new_key, G2_LEN);
  sol_write_u64_le(cfg + CFG_UPDATED_AT, (u64)now);
  sol_set_return_data(message_id, 32);
  return 0;
}

/* data: tag | domain u32 | epoch u32 | n u16 | t u16 | group key (128) (rent comes from the Rent sysvar);
 * accounts: [admin (signer, writable), config PDA (writable), this program's ProgramData, system program].
 * Only the program's upgrade authority may initialize, so nobody can front-run the deployer. */
u64 committee_init(SolParameters *params) {
  if (params->account_count < 4) return ERR_NOT_ENOUGH_ACCOUNTS;
  if (params->data_len != 1 + 4 + 4 + 2 + 2 + G2_LEN) return ERR_INVALID_INSTRUCTION_DATA;
  SolAccountInfo *admin = &params->accounts[0];
  SolAccountInfo *config = &params->accounts[1];
  SolAccountInfo *programdata = &params->accounts[2];
  SolAccountInfo *system = &params->accounts[3];
  const SolPubkey *program_id = params->program_id;
  const u8 *d = params->data + 1;
  u32 domain = sol_read_u32_le(d);
  u32 epoch = sol_read_u32_le(d + 4);
  u16 n = sol_read_u16_le(d + 8);
  u16 t = sol_read_u16_le(d + 10);
  const u8 *key = d + 12;

  if (!admin->is_signer) return ERR_ACCOUNT_NOT_SIGNER;
  if (!admin->is_writable || !config->is_writable) return ERR_ACCOUNT_NOT_WRITABLE;
  if (!sol_is_zero(system->key->x, SOL_PUBKEY_LEN)) return ERR_WRONG_SYSTEM_PROGRAM;

  u64 err = require_upgrade_authority(program_id, programdata, admin);
  if (err) return err;

  SolPubkey expected;
  u8 bump;
  SolBytes cfg_seeds[1] = {{(const u8 *)COMMITTEE_SEED, sizeof(COMMITTEE_SEED) - 1}};
  if (sol_try_find_program_address(cfg_seeds, 1, program_id, &expected, &bump) != 0 ||
      !sol_pubkey_eq(&expected, config->key))
    return ERR_CONFIG_WRONG_ADDRESS;
  if (sol_pubkey_eq(config->owner, program_id)) return ERR_CONFIG_ALREADY_INITIALIZED;
  if (!sol_is_zero(config->owner->x, SOL_PUBKEY_LEN) || config->data_len != 0) return ERR_WRONG_ACCOUNT_OWNER;

  err = g2_check(key);
  if (err) return err;
  if (t == 0 || t > n) return ERR_BAD_THRESHOLD;

  u8 bump_seed = bump;
  SolBytes signer_seeds[2] = {{(const u8 *)COMMITTEE_SEED, sizeof(COMMITTEE_SEED) - 1}, {&bump_seed, 1}};
  SolSignerSeeds signer = {signer_seeds, 2};
  PdaCreation creation = {admin, config, system, &signer, CONFIG_LEN};
  err = create_pda(params, &creation);
  if (err) return err;
  if (config->data_len < CONFIG_LEN) return ERR_ACCOUNT_TOO_SMALL;

  i64 now = unix_now();
  if (now < 0) return ERR_SYSCALL_FAILED;
  u8 *cfg = config->data;
  sol_memset_(cfg, 0, CONFIG_LEN);
  sol_memcpy_(cfg + CFG_MAGIC, CONFIG_MAGIC, 8);
  cfg[CFG_VERSION] = CONFIG_VERSION;
  cfg[CFG_BUMP] = bump;
  sol_write_u32_le(cfg + CFG_DOMAIN, domain);
  sol_memcpy_(cfg + CFG_ADMIN, admin->key->x, SOL_PUBKEY_LEN);
  sol_write_u32_le(cfg + CFG_CUR_EPOCH, epoch);
  sol_write_u16_le(cfg + CFG_CUR_N, n);
  sol_write_u16_le(cfg + CFG_CUR_T, t);
  sol_memcpy_(cfg + CFG_CUR_KEY, key, G2_LEN);
  sol_write_u64_le(cfg + CFG_UPDATED_AT, (u64)now);
  return 0;
}
