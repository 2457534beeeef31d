#pragma once
#include "tessera.h"

extern const SolPubkey BPF_LOADER_UPGRADEABLE_ID;

/* UpgradeableLoaderState::ProgramData (bincode): u32 tag 3 | u64 slot | Option<Pubkey> authority */
#define PROGRAMDATA_TAG 3
#define PROGRAMDATA_AUTHORITY_OFFSET 13

#define SYSTEM_CREATE_ACCOUNT 0
#define SYSTEM_ASSIGN 1
#define SYSTEM_TRANSFER 2
#define SYSTEM_ALLOCATE 8

/* Rent as the runtime lays it out (repr(C)): the threshold is an f64, read as raw bits because
 * SBPFv0 has no floating point. */
typedef struct {
  u64 lamports_per_byte_year;
  u64 exemption_threshold_bits;
  u8 burn_percent;
} SolRent;

#define ACCOUNT_STORAGE_OVERHEAD 128

u64 sol_get_rent_sysvar(SolRent *out);

/* Rent-exempt minimum for `data_len` bytes from the Rent sysvar, rounded up (0 or ERR_*). */
u64 rent_exempt_minimum(u64 data_len, u64 *out);

/* ERR_WRONG_PROGRAM_DATA / ERR_NOT_UPGRADE_AUTHORITY unless `admin` is the program's upgrade
 * authority as recorded in its ProgramData account. */
u64 require_upgrade_authority(const SolPubkey *program_id, const SolAccountInfo *programdata,
                              const SolAccountInfo *admin);

/* Creates `target` (a PDA of this program signed for by `signer`) with `space` bytes, paid by
 * `payer`. An address someone pre-funded makes CreateAccount fail, so that case tops up, allocates
 * and assigns instead: sending lamports to a future PDA must not block it. */
typedef struct {
  SolAccountInfo *payer;
  SolAccountInfo *target;
  SolAccountInfo *system;
  const SolSignerSeeds *signer;
  u64 space;
} PdaCreation;

u64 create_pda(SolParameters *params, const PdaCreation *c);

/* Shrinks (or grows by at most 10 KiB) an account of this program: the runtime reads the new length
 * from the serialized input (the u64 just before the data) when the instruction ends. */
static inline void account_resize(SolAccountInfo *a, u64 len) {
  *(u64 *)(a->data - 8) = len;
  a->data_len = len;
}

/* Grows `target` (an account of this program, writable) to `len` bytes, at most 10 KiB more than it
 * holds: `payer` (a writable signer) first tops its lamports up to the rent-exempt minimum of `len`
 * through the system program (`system`, checked only when a transfer is needed); the new bytes are
 * zero. Nothing happens to an account that is `len` bytes or more already. */
typedef struct {
  SolAccountInfo *payer;
  SolAccountInfo *target;
  SolAccountInfo *system;
  u64 len;
} AccountGrowth;

u64 account_grow(SolParameters *params, const AccountGrowth *g);

/* Re-uses `target`, an account of this program at an address only it can create (a PDA) that a close
 * left behind instead of deleting (zeroed data; its lamports refunded back into it in the same
 * transaction): tops its lamports up to the rent-exempt minimum of `len` from `payer` (a writable
 * signer) through the system program (`system`, checked only when a transfer is needed), resizes it
 * to `len` bytes (at most 10 KiB more than it holds) and zeroes them. */
u64 account_refit(SolParameters *params, const AccountGrowth *g);
