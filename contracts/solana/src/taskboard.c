#include "taskboard.h"

#include "accounts.h"
#include "gateway.h"

/* The task board's shared helpers and delivery dispatch. Task protocol v1 (RequestTask,
 * SubmitResult, Reclaim and v1 deliveries) is retired: its instructions fail with
 * TASK_V1_RETIRED; task protocol v2 lives in taskboard_v2.c (docs/TASKS.md). */

#define EXECUTOR_LEN 16
#define MAX_URI_LEN 256

#define IGNORE(reason)                                   \
  do {                                                   \
    sol_log("tessera: task message ignored: " reason);   \
    return 0;                                            \
  } while (0)

static i64 now_unix(void) {
  SolClock clock;
  if (sol_get_clock_sysvar(&clock) != 0) return -1;
  return clock.unix_timestamp;
}

/* 1..16 printable ASCII bytes, then only zero padding (payloads.py check_executor_id). */
static bool executor_valid(const u8 *p) {
  u64 n = 0;
  while (n < EXECUTOR_LEN && p[n] != 0) {
    if (p[n] < 0x21 || p[n] > 0x7e) return false;
    n++;
  }
  if (n == 0) return false;
  for (u64 i = n; i < EXECUTOR_LEN; i++)
    if (p[i] != 0) return false;
  return true;
}

static bool has_prefix(const u8 *p, u64 len, const char *prefix, u64 n) {
  return len > n && sol_bytes_eq(p, prefix, n); /* something must follow the scheme */
}

/* The cheap part of payloads.py check_uri: scheme, length, no ASCII whitespace or control bytes.
 * UTF-8 validity and non-ASCII whitespace are left to the off-chain decoders. */
static bool uri_valid(const u8 *p, u64 len) {
  if (len > MAX_URI_LEN) return false;
  if (!has_prefix(p, len, "https://", 8) && !has_prefix(p, len, "http://", 7) && !has_prefix(p, len, "ipfs://", 7) &&
      !has_prefix(p, len, "ar://", 5))
    return false;
  for (u64 i = 0; i < len; i++)
    if (p[i] < 0x21 || p[i] == 0x7f) return false;
  return true;
}

static u64 board_address(const SolPubkey *program_id, SolPubkey *out) {
  SolBytes seeds[1] = {{(const u8 *)BOARD_SEED, sizeof(BOARD_SEED) - 1}};
  u8 bump;
  if (sol_try_find_program_address(seeds, 1, program_id, out, &bump) != 0) return ERR_SYSCALL_FAILED;
  return 0;
}

static u64 system_transfer(SolParameters *params, SolAccountInfo *system, SolAccountInfo *from, SolAccountInfo *to,
                           u64 lamports) {
  SolAccountMeta *metas = SCRATCH->cpi_metas;
  u8 *cpi = SCRATCH->cpi_data;
  metas[0] = (SolAccountMeta){from->key, true, true};
  metas[1] = (SolAccountMeta){to->key, true, false};
  sol_write_u32_le(cpi, SYSTEM_TRANSFER);
  sol_write_u64_le(cpi + 4, lamports);
  SolInstruction ix = {system->key, metas, 2, cpi, 12};
  return sol_invoke_signed_c(&ix, params->accounts, (int)params->account_count, 0, 0);
}

/* The runtime would report a payer short of lamports as the system program's error inside our
 * instruction; name it instead. `extra` lamports go to `target` on top of its rent. */
static u64 require_funds(const SolAccountInfo *payer, const SolAccountInfo *target, u64 space, u64 extra) {
  u64 rent;
  u64 err = rent_exempt_minimum(space, &rent);
  if (err) return err;
  u64 needed = (*target->lamports < rent ? rent - *target->lamports : 0) + extra;
  return *payer->lamports < needed ? ERR_INSUFFICIENT_LAMPORTS : 0;
}

u64 taskboard_check_delivery_accounts(SolParameters *params, const Envelope *env, const u8 message_id[32],
                                      bool *to_board) {
  SolPubkey board;
  u64 err = board_address(params->program_id, &board);
  if (err) return err;
  *to_board = sol_bytes_eq(env->dst_receiver, board.x, 32);
  if (!*to_board) return 0;
  /* v2 results and verdicts (taskboard_v2.c) carry their own accounts after the board. */
  bool v2 = false;
  err = taskboard_v2_check_delivery(params, env, message_id, &v2);
  if (err || v2) return err;
  /* Anything else (a TASK_REQUEST, or a retired v1 result or attestation) needs the board only;
   * taskboard_on_delivery ignores what it cannot serve, touching no task or serve account. */
  if (params->account_count < 5) return ERR_BOARD_ACCOUNTS_MISSING;
  if (!sol_pubkey_eq(params->accounts[4].key, &board)) return ERR_BOARD_WRONG_ADDRESS;
  return 0;
}

u64 taskboard_v1_retired(SolParameters *params) {
  (void)params;
  sol_log("tessera: task protocol v1 is retired; use the v2 instructions");
  return ERR_TASK_V1_RETIRED;
}

u64 taskboard_on_delivery(SolParameters *params, const Envelope *env, const u8 message_id[32]) {
  if (env->kind == KIND_TASK_REQUEST) return 0; /* served from the receipt (Claim) */
  if (taskboard_v2_message(env)) return taskboard_v2_on_delivery(params, env, message_id);
  /* Task protocol v1 is retired: a v1 TASK_RESULT / PROOF_ATTESTATION (or a malformed v2 one) is
   * ignored; its receipt is its own message id, so nothing a v2 task needs is consumed. */
  if (env->kind == KIND_TASK_RESULT || env->kind == KIND_PROOF_ATTESTATION)
    IGNORE("not a task protocol v2 message (v1 is retired)");
  IGNORE("kind not handled by the task board");
}

/* Shared with taskboard_v2.c (taskboard.h). */
bool tb_executor_valid(const u8 *p) { return executor_valid(p); }
bool tb_uri_valid(const u8 *p, u64 len) { return uri_valid(p, len); }
u64 tb_board_address(const SolPubkey *program_id, SolPubkey *out) { return board_address(program_id, out); }
u64 tb_system_transfer(SolParameters *params, SolAccountInfo *system, SolAccountInfo *from, SolAccountInfo *to,
                       u64 lamports) {
  return system_transfer(params, system, from, to, lamports);
}
u64 tb_require_funds(const SolAccountInfo *payer, const SolAccountInfo *target, u64 space, u64 extra) {
  return require_funds(payer, target, space, extra);
}
i64 tb_now(void) { return now_unix(); }
