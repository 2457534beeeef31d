/* The gateway: the outbox (PDA ["outbox"]) that numbers and emits outgoing envelopes, and the
 * delivery receipts (PDA ["delivered", message_id]) that record incoming ones exactly once.
 * Layouts are documented in README.md ("Gateway"); keep the two in step. */
#ifndef TESSERA_GATEWAY_H
#define TESSERA_GATEWAY_H

#include "tessera.h"

#define OUTBOX_SEED "outbox"
#define RECEIPT_SEED "delivered"

/* Outbox account layout (integers little-endian). */
#define OUTBOX_MAGIC 0 /* 8 bytes "TESSOUTB" */
#define OUTBOX_VERSION_AT 8
#define OUTBOX_BUMP 9
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

/* What Send logs with sol_log_data as its first field, before the envelope bytes. */
#define SENT_EVENT_TAG "TESSERA_SENT"

u64 gateway_init(SolParameters *params);
u64 gateway_send(SolParameters *params);
u64 gateway_deliver(SolParameters *params);

#endif
