#include "accounts.h"

/* Shared account plumbing: who may initialise program state, rent, and creating PDAs. */

const SolPubkey BPF_LOADER_UPGRADEABLE_ID = {{
    0x02, 0xa8, 0xf6, 0x91, 0x4e, 0x88, 0xa1, 0xb0, 0xe2, 0x10, 0x15, 0x3e, 0xf7, 0x63, 0xae, 0x2b,
    0x00, 0xc2, 0xb9, 0x3d, 0x16, 0xc1, 0x24, 0xd2, 0xc0, 0x53, 0x7a, 0x10, 0x04, 0x80, 0x00, 0x00,
}};
/* Rent-exempt minimum for `data_len` bytes, computed in integers from the Rent sysvar:
 * (128 + len) * lamports_per_byte_year * threshold, rounded up (one lamport too many is harmless,
 * one too few makes the runtime refuse the new account). */
u64 rent_exempt_minimum(u64 data_len, u64 *out) {
  SolRent rent;
  sol_memset_(&rent, 0, sizeof(rent));
  if (sol_get_rent_sysvar(&rent) != 0) return ERR_SYSCALL_FAILED;
  u64 bits = rent.exemption_threshold_bits;
  u64 base = (ACCOUNT_STORAGE_OVERHEAD + data_len) * rent.lamports_per_byte_year;
  if ((bits & 0x7fffffffffffffffULL) == 0) {
    *out = 0;
    return 0;
  }
  i64 exponent = (i64)((bits >> 52) & 0x7ff) - 1023;
  if ((bits >> 63) != 0 || exponent > 31 || exponent < -31 || base >= (1ULL << 30)) return ERR_RENT_UNSUPPORTED;
  u64 mantissa = (bits & ((1ULL << 52) - 1)) | (1ULL << 52);
  u64 m32 = mantissa >> 20; /* threshold = m32 * 2^(exponent - 32) */
  bool inexact = (mantissa & ((1ULL << 20) - 1)) != 0;
  u64 product = base * m32;
  u64 shift = (u64)(32 - exponent);
  u64 result = product >> shift;
  if (inexact || (product & ((1ULL << shift) - 1)) != 0) result += 1;
  *out = result;
  return 0;
}


u64 require_upgrade_authority(const SolPubkey *program_id, const SolAccountInfo *programdata,
                              const SolAccountInfo *admin) {
  SolBytes pd_seeds[1] = {{program_id->x, SOL_PUBKEY_LEN}};
  SolPubkey expected;
  u8 bump;
  if (sol_try_find_program_address(pd_seeds, 1, &BPF_LOADER_UPGRADEABLE_ID, &expected, &bump) != 0 ||
      !sol_pubkey_eq(&expected, programdata->key) || !sol_pubkey_eq(programdata->owner, &BPF_LOADER_UPGRADEABLE_ID))
    return ERR_WRONG_PROGRAM_DATA;
  if (programdata->data_len < PROGRAMDATA_AUTHORITY_OFFSET + SOL_PUBKEY_LEN ||
      sol_read_u32_le(programdata->data) != PROGRAMDATA_TAG || programdata->data[PROGRAMDATA_AUTHORITY_OFFSET - 1] != 1 ||
      !sol_bytes_eq(programdata->data + PROGRAMDATA_AUTHORITY_OFFSET, admin->key->x, SOL_PUBKEY_LEN))
    return ERR_NOT_UPGRADE_AUTHORITY;
  return 0;
}

static u64 system_invoke(SolParameters *params, SolAccountInfo *system, u64 meta_count, u64 data_len,
                         const SolSignerSeeds *signer) {
  SolInstruction ix = {system->key, SCRATCH->cpi_metas, meta_count, SCRATCH->cpi_data, data_len};
  return sol_invoke_signed_c(&ix, params->accounts, (int)params->account_count, signer, signer ? 1 : 0);
}



u64 create_pda(SolParameters *params, const PdaCreation *c) {
  SolAccountInfo *payer = c->payer, *target = c->target, *system = c->system;
  const SolSignerSeeds *signer = c->signer;
  u64 space = c->space;
  if (!sol_is_zero(target->owner->x, SOL_PUBKEY_LEN) || target->data_len != 0) return ERR_WRONG_ACCOUNT_OWNER;
  u64 lamports;
  u64 err = rent_exempt_minimum(space, &lamports);
  if (err) return err;
  SolAccountMeta *metas = SCRATCH->cpi_metas;
  u8 *cpi = SCRATCH->cpi_data;
  const SolPubkey *program_id = params->program_id;
  if (*target->lamports == 0) {
    metas[0] = (SolAccountMeta){payer->key, true, true};
    metas[1] = (SolAccountMeta){target->key, true, true};
    sol_write_u32_le(cpi, SYSTEM_CREATE_ACCOUNT);
    sol_write_u64_le(cpi + 4, lamports);
    sol_write_u64_le(cpi + 12, space);
    sol_memcpy_(cpi + 20, program_id->x, SOL_PUBKEY_LEN);
    err = system_invoke(params, system, 2, 52, signer);
  } else {
    if (*target->lamports < lamports) {
      metas[0] = (SolAccountMeta){payer->key, true, true};
      metas[1] = (SolAccountMeta){target->key, true, false};
      sol_write_u32_le(cpi, SYSTEM_TRANSFER);
      sol_write_u64_le(cpi + 4, lamports - *target->lamports);
      err = system_invoke(params, system, 2, 12, signer);
      if (err) return err;
    }
    metas[0] = (SolAccountMeta){target->key, true, true};
    sol_write_u32_le(cpi, SYSTEM_ALLOCATE);
    sol_write_u64_le(cpi + 4, space);
    err = system_invoke(params, system, 1, 12, signer);
    if (err) return err;
    sol_write_u32_le(cpi, SYSTEM_ASSIGN);
    sol_memcpy_(cpi + 4, program_id->x, SOL_PUBKEY_LEN);
    err = system_invoke(params, system, 1, 36, signer);
  }
  if (err) return err;
  if (target->data_len < space) return ERR_ACCOUNT_TOO_SMALL;
  return 0;
}

static u64 account_fit(SolParameters *params, const AccountGrowth *g);

u64 account_grow(SolParameters *params, const AccountGrowth *g) {
  if (g->target->data_len >= g->len) return 0;
  return account_fit(params, g);
}

u64 account_refit(SolParameters *params, const AccountGrowth *g) {
  u64 err = account_fit(params, g);
  if (err) return err;
  sol_memset_(g->target->data, 0, g->len);
  return 0;
}

static u64 account_fit(SolParameters *params, const AccountGrowth *g) {
  SolAccountInfo *payer = g->payer, *target = g->target;
  if (g->len > target->data_len && g->len - target->data_len > SOL_MAX_PERMITTED_DATA_INCREASE)
    return ERR_ACCOUNT_TOO_SMALL;
  if (!sol_pubkey_eq(target->owner, params->program_id)) return ERR_WRONG_ACCOUNT_OWNER;
  if (!payer->is_signer) return ERR_ACCOUNT_NOT_SIGNER;
  if (!payer->is_writable || !target->is_writable) return ERR_ACCOUNT_NOT_WRITABLE;
  u64 lamports;
  u64 err = rent_exempt_minimum(g->len, &lamports);
  if (err) return err;
  if (*target->lamports < lamports) {
    if (!sol_is_zero(g->system->key->x, SOL_PUBKEY_LEN)) return ERR_WRONG_SYSTEM_PROGRAM;
    SolAccountMeta *metas = SCRATCH->cpi_metas;
    u8 *cpi = SCRATCH->cpi_data;
    metas[0] = (SolAccountMeta){payer->key, true, true};
    metas[1] = (SolAccountMeta){target->key, true, false};
    sol_write_u32_le(cpi, SYSTEM_TRANSFER);
    sol_write_u64_le(cpi + 4, lamports - *target->lamports);
    err = system_invoke(params, g->system, 2, 12, 0);
    if (err) return err;
  }
  /* After the transfer: the CPI above saw the account at its old length. The runtime zeroes the
   * spare room on serialization, but nothing here relies on that. */
  u64 old = target->data_len;
  account_resize(target, g->len);
  if (g->len > old) sol_memset_(target->data + old, 0, g->len - old);
  return 0;
}
