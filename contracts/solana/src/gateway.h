/* The gateway: the outbox (PDA ["outbox"]) that numbers and emits outgoing envelopes, and the
 * delivery receipts (PDA ["delivered", message_id]) that record incoming ones exactly once.
 * Layouts are documented in README.md ("Gateway"); keep the two in step. */
#ifndef TESSERA_GATEWAY_H
#define TESSERA_GATEWAY_H

#include "committee.h"
#include "envelope.h"
#include "tessera.h"

#define OUTBOX_SEED "outbox"
#define RECEIPT_SEED "delivered"

/* Outbox account layout (integers little-endian). */
#define OUTBOX_MAGIC 0 /* 8 bytes "TESSOUTB" */
#define OUTBOX_VERSION_AT 8
#define OUTBOX_BUMP 9
#define OUTBOX_FEES_REQUIRED 10 /* u8: 1 once the admin set a fee config: Send (17) is refused, SendPaid (29) charges */
#define OUTBOX_NONCE 16 /* u64: the nonce the next Send gets */
#define OUTBOX_SENT_AT 24 /* i64: unix time of the last Send (0 before the first) */
#define OUTBOX_LEN 40
#define OUTBOX_VERSION 1

/* Receipt account layout (integers little-endian); the envelope follows the header verbatim. */
#define RCPT_MAGIC 0 /* 8 bytes "TESSRCPT" */
#define RCPT_VERSION_AT 8
#define RCPT_BUMP 9
#define RCPT_STATUS 10
#define RCPT_ENVELOPE_LEN 12 /* u32 */
#define RCPT_SLOT 16 /* u64 */
#define RCPT_UNIX_TIME 24 /* i64 */
#define RCPT_RELAYER 32 /* 32 bytes: the payer of the Deliver transaction */
#define RCPT_MESSAGE_ID 64 /* 32 bytes */
#define RCPT_ENVELOPE 96
#define RECEIPT_VERSION 1
#define RECEIPT_STATUS_DELIVERED 1

/* The paused flag of an account that is checked as the committee config elsewhere (cheap: no
 * address derivation). */
static inline bool gateway_paused_byte(const SolAccountInfo *config) {
  return config->data_len > CFG_PAUSED && config->data[CFG_PAUSED] != 0;
}

/* Pause (paused = 1) / Unpause (0). */
u64 gateway_set_paused(SolParameters *params, u8 paused);

/* What Send logs with sol_log_data as its first field, before the envelope bytes. */
#define SENT_EVENT_TAG "TESSERA_SENT"

/* One outgoing message for gateway_emit. */
typedef struct {
  u8 kind;
  u32 dst_domain;
  const u8 *receiver; /* 32 bytes */
  const u8 *sender;   /* 32 bytes: the envelope's src_sender */
  const u8 *payload;
  u64 payload_len;
} Outgoing;

/* What Send does once its accounts are checked, for the task board too: numbers the envelope with
 * the outbox's next nonce, builds it in SCRATCH->envelope, logs it (TESSERA_SENT), sets the return
 * data to message_id | nonce u64 LE and writes message_id. `outbox` must be writable. */
u64 gateway_emit(const SolPubkey *program_id, SolAccountInfo *outbox, const SolAccountInfo *config,
                 const Outgoing *msg, u8 message_id[32]);

/* ERR_CONFIG_* unless `config` is the committee config (owner, magic, version, and its PDA address:
 * re-derived from its bump, or — cheaper — equal to `known_key`, an address this program checked
 * before and stored, e.g. in a root account; 0 to derive), ERR_GATEWAY_PAUSED while paused. */
u64 gateway_require_open(const SolAccountInfo *config, const SolPubkey *program_id, const u8 *known_key);
/* ERR_CONFIG_* unless `config` is the committee config, ERR_NOT_ADMIN unless `admin` is its admin. */
u64 gateway_require_admin(const SolAccountInfo *config, const SolPubkey *program_id, const SolAccountInfo *admin);
/* ERR_OUTBOX_* unless `outbox` is the initialised outbox PDA. */
u64 gateway_outbox_check(const SolAccountInfo *outbox, const SolPubkey *program_id);
static inline void gateway_set_fees_required(SolAccountInfo *outbox) { outbox->data[OUTBOX_FEES_REQUIRED] = 1; }

u64 gateway_init(SolParameters *params);
u64 gateway_propose_admin(SolParameters *params);
u64 gateway_accept_admin(SolParameters *params);
u64 gateway_send(SolParameters *params);
u64 gateway_deliver(SolParameters *params);

/* A delivery whose signature has been checked, ready to be recorded (gateway_record_delivery). */
typedef struct {
  SolAccountInfo *payer;
  SolAccountInfo *receipt;
  SolAccountInfo *system;
  u8 bump; /* the receipt PDA's bump (gateway_receipt_slot) */
  const Envelope *env;
  const u8 *message_id;
  const u8 *envelope;
  u64 envelope_len;
  bool to_board; /* addressed to the task board, its accounts checked */
} DeliveryRecord;

u64 gateway_receipt_slot(const SolPubkey *program_id, const SolAccountInfo *receipt, const u8 *message_id,
                         u8 *bump);
u64 gateway_record_delivery(SolParameters *params, const DeliveryRecord *d);

#endif
