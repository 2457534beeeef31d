/* Wire protocol v1 envelopes (DESIGN.md "Wire protocol v1"): header fields read in place. */
#ifndef TESSERA_ENVELOPE_H
#define TESSERA_ENVELOPE_H

#include "tessera.h"

#define PROTOCOL_VERSION 1
#define ENVELOPE_HEADER_LEN 82
#define MAX_PAYLOAD_LEN 512
#define KIND_COMMITTEE_ROTATION 5
#define COMMITTEE_DOMAIN 0
#define ROTATION_PAYLOAD_LEN (4 + 2 + 2 + G2_LEN + 4)

#define TAG_MESSAGE "TESSERA/v1/MSG"

typedef struct {
  u8 kind;
  u64 nonce;
  u32 src_domain;
  const u8 *src_sender;
  u32 dst_domain;
  const u8 *dst_receiver;
  const u8 *payload;
  u64 payload_len;
} Envelope;

static inline bool envelope_parse(const u8 *bytes, u64 len, Envelope *out) {
  if (len < ENVELOPE_HEADER_LEN || len - ENVELOPE_HEADER_LEN > MAX_PAYLOAD_LEN) return false;
  if (bytes[0] != PROTOCOL_VERSION) return false;
  out->kind = bytes[1];
  out->nonce = ((u64)sol_read_u32_be(bytes + 2) << 32) | sol_read_u32_be(bytes + 6);
  out->src_domain = sol_read_u32_be(bytes + 10);
  out->src_sender = bytes + 14;
  out->dst_domain = sol_read_u32_be(bytes + 46);
  out->dst_receiver = bytes + 50;
  out->payload = bytes + ENVELOPE_HEADER_LEN;
  out->payload_len = len - ENVELOPE_HEADER_LEN;
  return true;
}

/* message_id = keccak256(envelope); digest = keccak256("TESSERA/v1/MSG" | epoch u32 BE | message_id) */
static inline void envelope_digest(const u8 *bytes, u64 len, u32 epoch, u8 message_id[32], u8 digest[32]) {
  SolBytes one = {bytes, len};
  sol_keccak256(&one, 1, message_id);
  u8 epoch_be[4];
  sol_write_u32_be(epoch_be, epoch);
  SolBytes parts[3] = {{(const u8 *)TAG_MESSAGE, sizeof(TAG_MESSAGE) - 1}, {epoch_be, 4}, {message_id, 32}};
  sol_keccak256(parts, 3, digest);
}

#endif
