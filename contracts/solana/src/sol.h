/* The Solana runtime as seen from C: syscall declarations, the account/instruction input parser
 * and a few byte helpers. Written for clang-16 -target bpfel -mcpu=v2 (SBPFv0); see build.py. */
#ifndef TESSERA_SOL_H
#define TESSERA_SOL_H

#include <stdbool.h>
#include <stdint.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;
typedef int64_t i64;

#define SOL_PUBKEY_LEN 32
#define SOL_MAX_ACCOUNTS 16
/* Accounts carry this much spare room after their data in the serialized input (realloc). */
#define SOL_MAX_PERMITTED_DATA_INCREASE 10240
#define SOL_NON_DUP_MARKER 0xff
/* The heap region every program gets (32 KiB by default). No allocator: tessera.h lays it out. */
#define SOL_HEAP_START 0x300000000ULL
#define SOL_HEAP_LEN (32 * 1024)

typedef struct {
  u8 x[SOL_PUBKEY_LEN];
} SolPubkey;

/* Layout fixed by sol_invoke_signed_c: pointers must point into the serialized input. */
typedef struct {
  SolPubkey *key;
  u64 *lamports;
  u64 data_len;
  u8 *data;
  SolPubkey *owner;
  u64 rent_epoch;
  bool is_signer;
  bool is_writable;
  bool executable;
} SolAccountInfo;

typedef struct {
  SolPubkey *pubkey;
  bool is_writable;
  bool is_signer;
} SolAccountMeta;

typedef struct {
  SolPubkey *program_id;
  SolAccountMeta *accounts;
  u64 account_len;
  u8 *data;
  u64 data_len;
} SolInstruction;

typedef struct {
  const u8 *addr;
  u64 len;
} SolBytes; /* also SolSignerSeed */

typedef struct {
  const SolBytes *addr;
  u64 len;
} SolSignerSeeds;

typedef struct {
  u64 slot;
  i64 epoch_start_timestamp;
  u64 epoch;
  u64 leader_schedule_epoch;
  i64 unix_timestamp;
} SolClock;

typedef struct {
  SolAccountInfo accounts[SOL_MAX_ACCOUNTS];
  u64 account_count;
  const u8 *data;
  u64 data_len;
  const SolPubkey *program_id;
} SolParameters;

/* Syscalls: resolved by the loader by name (murmur3 of the name), so the names are exact. */
void sol_log_(const char *message, u64 len);
void sol_log_64_(u64 a, u64 b, u64 c, u64 d, u64 e);
void sol_log_pubkey(const SolPubkey *key);
void sol_log_data(const SolBytes *fields, u64 count);
void sol_panic_(const char *file, u64 len, u64 line, u64 column);
u64 sol_keccak256(const SolBytes *slices, u64 count, u8 *out32);
void sol_set_return_data(const u8 *data, u64 len);
u64 sol_alt_bn128_group_op(u64 op, const u8 *input, u64 input_len, u8 *out);
void sol_memcpy_(void *dst, const void *src, u64 len);
void sol_memset_(void *dst, u8 value, u64 len);
void sol_memcmp_(const void *a, const void *b, u64 len, int *result);
u64 sol_get_clock_sysvar(SolClock *out);
u64 sol_invoke_signed_c(const SolInstruction *instruction, const SolAccountInfo *account_infos,
                        int account_infos_len, const SolSignerSeeds *signers_seeds, int signers_seeds_len);
u64 sol_create_program_address(const SolBytes *seeds, u64 seeds_len, const SolPubkey *program_id,
                               SolPubkey *out);
u64 sol_try_find_program_address(const SolBytes *seeds, u64 seeds_len, const SolPubkey *program_id,
                                 SolPubkey *out, u8 *bump);

#define sol_log(literal) sol_log_((literal), sizeof(literal) - 1)

static inline bool sol_bytes_eq(const void *a, const void *b, u64 len) {
  int result = 0;
  sol_memcmp_(a, b, len, &result);
  return result == 0;
}

static inline bool sol_pubkey_eq(const SolPubkey *a, const SolPubkey *b) {
  return sol_bytes_eq(a->x, b->x, SOL_PUBKEY_LEN);
}

static inline bool sol_is_zero(const u8 *p, u64 len) {
  u8 acc = 0;
  for (u64 i = 0; i < len; i++) acc |= p[i];
  return acc == 0;
}

/* Packed little-endian / big-endian readers and writers (instruction data is unaligned). */
static inline u16 sol_read_u16_le(const u8 *p) { return (u16)(p[0] | ((u16)p[1] << 8)); }
static inline u32 sol_read_u32_le(const u8 *p) {
  return (u32)p[0] | ((u32)p[1] << 8) | ((u32)p[2] << 16) | ((u32)p[3] << 24);
}
static inline u64 sol_read_u64_le(const u8 *p) {
  return (u64)sol_read_u32_le(p) | ((u64)sol_read_u32_le(p + 4) << 32);
}
static inline u16 sol_read_u16_be(const u8 *p) { return (u16)(((u16)p[0] << 8) | p[1]); }
static inline u32 sol_read_u32_be(const u8 *p) {
  return ((u32)p[0] << 24) | ((u32)p[1] << 16) | ((u32)p[2] << 8) | (u32)p[3];
}
static inline void sol_write_u16_le(u8 *p, u16 v) {
  p[0] = (u8)v;
  p[1] = (u8)(v >> 8);
}
static inline void sol_write_u32_le(u8 *p, u32 v) {
  for (int i = 0; i < 4; i++) p[i] = (u8)(v >> (8 * i));
}
static inline void sol_write_u64_le(u8 *p, u64 v) {
  for (int i = 0; i < 8; i++) p[i] = (u8)(v >> (8 * i));
}
static inline void sol_write_u32_be(u8 *p, u32 v) {
  for (int i = 0; i < 4; i++) p[i] = (u8)(v >> (24 - 8 * i));
}

/* Parses the loader v2/v3 "aligned" input format. Duplicate accounts point at the first copy.
 * Returns false when there are more accounts than SOL_MAX_ACCOUNTS. */
static inline bool sol_deserialize(const u8 *input, SolParameters *params) {
  u64 count = *(const u64 *)input;
  input += sizeof(u64);
  if (count > SOL_MAX_ACCOUNTS) return false;
  params->account_count = count;
  for (u64 i = 0; i < count; i++) {
    u8 dup = *input;
    input += 1;
    if (dup == SOL_NON_DUP_MARKER) {
      SolAccountInfo *a = &params->accounts[i];
      a->is_signer = *input != 0;
      a->is_writable = *(input + 1) != 0;
      a->executable = *(input + 2) != 0;
      input += 3 + 4; /* flags + padding */
      a->key = (SolPubkey *)input;
      input += SOL_PUBKEY_LEN;
      a->owner = (SolPubkey *)input;
      input += SOL_PUBKEY_LEN;
      a->lamports = (u64 *)input;
      input += sizeof(u64);
      a->data_len = *(const u64 *)input;
      input += sizeof(u64);
      a->data = (u8 *)input;
      input += a->data_len + SOL_MAX_PERMITTED_DATA_INCREASE;
      input = (const u8 *)(((u64)input + 7) & ~7ULL);
      a->rent_epoch = *(const u64 *)input;
      input += sizeof(u64);
    } else {
      params->accounts[i] = params->accounts[dup];
      input += 7;
    }
  }
  params->data_len = *(const u64 *)input;
  input += sizeof(u64);
  params->data = input;
  input += params->data_len;
  params->program_id = (const SolPubkey *)input;
  return true;
}

#endif
