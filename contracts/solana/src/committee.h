/* The committee config account (PDA ["committee"]) and the instructions that use it. */
#ifndef TESSERA_COMMITTEE_H
#define TESSERA_COMMITTEE_H

#include "tessera.h"

#define COMMITTEE_SEED "committee"

/* Config account layout (integers little-endian, keys in EIP-197 order). See README.md. */
#define CFG_MAGIC 0 /* 8 bytes "TESSCOMM" */
#define CFG_VERSION 8
#define CFG_BUMP 9
#define CFG_HAS_PREVIOUS 10
#define CFG_PAUSED 11 /* u8: 1 while the admin has paused sends and deliveries (Pause / Unpause) */
#define CFG_DOMAIN 12
#define CFG_ADMIN 16
#define CFG_CUR_EPOCH 48
#define CFG_CUR_N 52
#define CFG_CUR_T 54
#define CFG_CUR_KEY 56
#define CFG_PREV_EPOCH 184
#define CFG_PREV_N 188
#define CFG_PREV_T 190
#define CFG_PREV_VALID_UNTIL 192
#define CFG_PREV_KEY 200
#define CFG_UPDATED_AT 328
#define CONFIG_LEN 336 /* what InitCommittee creates and every reader requires */
/* The admin handover (ProposeAdmin / AcceptAdmin) keeps its pending admin after the fields above:
 * the first ProposeAdmin grows the account from CONFIG_LEN to CONFIG_LEN_WITH_PENDING (the admin pays
 * the rent of the 32 bytes). A CONFIG_LEN account has nothing pending; the version stays 1, so
 * accounts initialized before the handover existed keep working unchanged. */
#define CFG_PENDING_ADMIN 336 /* 32 bytes: the proposed admin, zero when none */
#define CONFIG_LEN_WITH_PENDING 368
#define CONFIG_VERSION 1

u64 committee_init(SolParameters *params);
u64 committee_rotate(SolParameters *params);
u64 committee_verify_signature(SolParameters *params);
u64 committee_verify_digest(SolParameters *params);

/* For other instructions (the gateway's deliver): checks the config account, then the attestation
 * block (ATTESTATION_LEN bytes) over the envelope. Writes message_id; 0 when valid, else ERR_*. */
u64 committee_check_envelope(const SolAccountInfo *config, const SolPubkey *program_id, const u8 *attestation,
                             const SolBytes *envelope, u8 message_id[32]);

/* For signed objects that are not envelopes (feed reports): checks the config account, picks the
 * key for the attestation's epoch (current, or previous within grace) and verifies the attestation's
 * signature and hint over `digest`, which the caller computed itself. 0 when valid, else ERR_*. */
u64 committee_check_digest(const SolAccountInfo *config, const SolPubkey *program_id, const u8 *attestation,
                           const u8 digest[32]);

#endif
