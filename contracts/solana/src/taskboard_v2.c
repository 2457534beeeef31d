#include "accounts.h"
#include "committee.h"
#include "gateway.h"
#include "taskboard.h"

/* Task protocol v2 (docs/TASKS.md "Task protocol v2"; payloads docs/PROTOCOL.md "AI-task payloads
 * v2"; accounts README.md "Task board v2"): the Solana twin of contracts/evm/src/TaskBoardV2.sol.
 *
 * Requester side: RequestTask v2 escrows max_fee lamports in ["task", requester, task_nonce] (an
 * address the client knows before sending: attack 6) and stores the request envelope there (attack
 * 7). A TASK_RESULT v2 is recorded by its delivery receipt; a valid verdict that arrives first is
 * kept in the task and applied when the result arrives (attack 1). Timeliness is the verdict's
 * submitted_at (attack 5); reclaim opens at deadline + SETTLEMENT_GRACE_SECONDS.
 *
 * Serving side: the delivered request's receipt is its record; Claim creates ["serve", request_id]
 * at the first claim, fixes claimant (signer), payout and the auction price on the Clock, and holds
 * the bond; only the claimant submits, by its claim deadline (attack 3); the result envelope is
 * stored in the serve account (attack 7). A verdict returns or forfeits the bond; an expired claim
 * forfeits it (to refund_to) and re-opens the task (attack 8).
 *
 * Deliveries check every account they pay before anything is written (attack 2): the gateway calls
 * taskboard_v2_check_delivery before the pairing and the receipt. */

static const u8 TASK2_MAGIC_BYTES[8] = {'T', 'E', 'S', 'S', 'T', 'S', 'K', '2'};
static const u8 SERVE_MAGIC_BYTES[8] = {'T', 'E', 'S', 'S', 'S', 'E', 'R', 'V'};
static const u8 RECEIPT_MAGIC_V2[8] = {'T', 'E', 'S', 'S', 'R', 'C', 'P', 'T'};
static const u8 TOMB_MAGIC_BYTES[8] = {'T', 'E', 'S', 'S', 'T', 'O', 'M', 'B'};

/* TASK_REQUEST v2 payload */
#define R2_VERSION 0
#define R2_EXECUTOR 1
#define R2_MAX_FEE 17
#define R2_DEADLINE 33
#define R2_AUCTION_WINDOW 41
#define R2_START_BPS 45
#define R2_CLAIM_WINDOW 47
#define R2_BOND 51
#define R2_REFUND_TO 67
#define R2_MODE 99
#define R2_HEADER_LEN 100
/* TASK_RESULT v2 payload */
#define S2_REQUEST_ID 0
#define S2_VERSION 32
#define S2_EXECUTOR 33
#define S2_OUTPUT_HASH 49 /* output_hash, worker, claimant, payout, price: 144 contiguous bytes */
#define S2_CLAIMANT 113
#define S2_PAYOUT 145
#define S2_PRICE 177
#define S2_PROOF_KIND 257
#define S2_PROOF_LEN 258
#define S2_MIN_LEN 263
/* PROOF_ATTESTATION v2 (the verdict) */
#define V_REQUEST_ID 0
#define V_VERSION 32
#define V_RESULT_ID 33
#define V_OUTPUT_HASH 65 /* the same 144 bytes as the result's, in the same order */
#define V_CLAIMANT 129
#define V_PAYOUT 161
#define V_PRICE 193
#define V_METHOD 209
#define V_VERDICT 210
#define V_REASON 211
#define V_SUBMITTED_AT 212
#define VERDICT_LEN 220
#define CLAIM_FIELDS_LEN 144

#define PAYLOAD_V2 2
#define VERDICT_VALID 1
#define VERDICT_REFUSED 2
#define BPS 10000
#define EXECUTOR_LEN 16

#define IGNORE2(reason)                                  \
  do {                                                   \
    sol_log("tessera: task message ignored: " reason);   \
    return 0;                                            \
  } while (0)

typedef struct {
  u64 hi, lo;
} U128;

/* The BPF calling convention has no struct returns and five argument registers: everything that
 * takes or returns a U128 by value is inlined. */
#define U128_FN static inline __attribute__((always_inline))

static u64 be64(const u8 *p) { return ((u64)sol_read_u32_be(p) << 32) | sol_read_u32_be(p + 4); }
U128_FN U128 be128(const u8 *p) { return (U128){be64(p), be64(p + 8)}; }
U128_FN U128 le128(const u8 *p) { return (U128){sol_read_u64_le(p + 8), sol_read_u64_le(p)}; }
U128_FN void put_le128(u8 *p, U128 v) {
  sol_write_u64_le(p, v.lo);
  sol_write_u64_le(p + 8, v.hi);
}
static void put_be64(u8 *p, u64 v) {
  sol_write_u32_be(p, (u32)(v >> 32));
  sol_write_u32_be(p + 4, (u32)v);
}
U128_FN bool u128_eq(U128 a, U128 b) { return a.hi == b.hi && a.lo == b.lo; }

/* floor(x * m / d) for d > 0, with the 160-bit product in 32-bit limbs (SBPF has no 128-bit
 * arithmetic); the callers guarantee the quotient fits 128 bits (m <= d). */
U128_FN U128 muldiv(U128 x, u32 m, u32 d) {
  u32 in[4] = {(u32)(x.hi >> 32), (u32)x.hi, (u32)(x.lo >> 32), (u32)x.lo};
  u32 limb[5];
  u64 carry = 0;
  for (int i = 3; i >= 0; i--) {
    u64 p = (u64)in[i] * m + carry;
    limb[i + 1] = (u32)p;
    carry = p >> 32;
  }
  limb[0] = (u32)carry;
  u64 rem = 0;
  u32 q[5];
  for (int i = 0; i < 5; i++) {
    u64 cur = (rem << 32) | limb[i];
    q[i] = (u32)(cur / d);
    rem = cur % d;
  }
  return (U128){((u64)q[1] << 32) | q[2], ((u64)q[3] << 32) | q[4]};
}

/* docs/PROTOCOL.md "Auction price": S + floor((max_fee - S) * min(max(now - start, 0), W) / W),
 * S = floor(max_fee * start_bps / 10000); W = 0 is max_fee at once. */
U128_FN U128 auction_price(U128 max_fee, u32 start_bps, u32 window, u64 start, u64 now) {
  if (window == 0) return max_fee;
  U128 s = muldiv(max_fee, start_bps, BPS);
  u64 elapsed = now <= start ? 0 : now - start;
  if (elapsed > window) elapsed = window;
  U128 diff = {max_fee.hi - s.hi - (max_fee.lo < s.lo ? 1 : 0), max_fee.lo - s.lo};
  U128 add = muldiv(diff, (u32)elapsed, window);
  u64 lo = s.lo + add.lo;
  return (U128){s.hi + add.hi + (lo < s.lo ? 1 : 0), lo};
}

/* --- payload checks (relay/tasks/payloads.py TaskRequestV2 / TaskResultV2 / ProofVerdict.decode) --- */

/* TASK_REQUEST v2. The version byte is read first, as the Python decoder does. */
static u64 request_check_v2(const u8 *p, u64 len) {
  if (len == 0) return ERR_TASK_PAYLOAD_MALFORMED;
  if (p[R2_VERSION] != PAYLOAD_V2) return ERR_TASK_VERSION_UNSUPPORTED;
  if (len < R2_HEADER_LEN + 2 || len > MAX_PAYLOAD_LEN) return ERR_TASK_PAYLOAD_MALFORMED;
  if (!tb_executor_valid(p + R2_EXECUTOR)) return ERR_TASK_EXECUTOR_INVALID;
  if (sol_read_u16_be(p + R2_START_BPS) > BPS || sol_read_u32_be(p + R2_CLAIM_WINDOW) == 0 ||
      sol_is_zero(p + R2_REFUND_TO, 32))
    return ERR_TASK_TERMS_INVALID;
  u8 mode = p[R2_MODE];
  if (mode == 0) {
    if (len != R2_HEADER_LEN + 2 + sol_read_u16_be(p + R2_HEADER_LEN)) return ERR_TASK_PAYLOAD_MALFORMED;
  } else if (mode == 1) {
    u64 at = R2_HEADER_LEN + 32;
    if (len < at + 2) return ERR_TASK_PAYLOAD_MALFORMED;
    u64 n = sol_read_u16_be(p + at);
    if (len != at + 2 + n) return ERR_TASK_PAYLOAD_MALFORMED;
    if (!tb_uri_valid(p + at + 2, n)) return ERR_TASK_URI_INVALID;
  } else {
    return ERR_TASK_PAYLOAD_MALFORMED;
  }
  return 0;
}

/* TASK_RESULT v2, including keccak256(inline output) == output_hash and a non-zero payout. */
static u64 result_check_v2(const u8 *p, u64 len) {
  if (len <= S2_VERSION) return ERR_RESULT_MALFORMED;
  if (p[S2_VERSION] != PAYLOAD_V2) return ERR_TASK_VERSION_UNSUPPORTED;
  if (len < S2_MIN_LEN || len > MAX_PAYLOAD_LEN) return ERR_RESULT_MALFORMED;
  if (!tb_executor_valid(p + S2_EXECUTOR)) return ERR_TASK_EXECUTOR_INVALID;
  u8 proof_kind = p[S2_PROOF_KIND];
  u64 proof_len = sol_read_u16_be(p + S2_PROOF_LEN);
  if (proof_kind > 3 || (proof_kind == 0 && proof_len != 0)) return ERR_RESULT_MALFORMED;
  u64 at = S2_PROOF_LEN + 2 + proof_len;
  if (len < at + 3) return ERR_RESULT_MALFORMED;
  u8 mode = p[at];
  u64 n = sol_read_u16_be(p + at + 1);
  if (len != at + 3 + n) return ERR_RESULT_MALFORMED;
  if (mode == 0) {
    u8 hash[32];
    SolBytes output = {p + at + 3, n};
    if (sol_keccak256(&output, 1, hash) != 0) return ERR_SYSCALL_FAILED;
    if (!sol_bytes_eq(hash, p + S2_OUTPUT_HASH, 32)) return ERR_RESULT_MALFORMED;
  } else if (mode == 1) {
    if (!tb_uri_valid(p + at + 3, n)) return ERR_TASK_URI_INVALID;
  } else {
    return ERR_RESULT_MALFORMED;
  }
  if (sol_is_zero(p + S2_PAYOUT, 32)) return ERR_ZERO_PAYOUT;
  return 0;
}

/* PROOF_ATTESTATION v2: 220 bytes, version 2, method 1..3, verdict 1 (reason 0) or 2 (reason 1..7). */
static u64 verdict_check(const u8 *p, u64 len) {
  if (len != VERDICT_LEN) return ERR_VERDICT_MALFORMED;
  if (p[V_VERSION] != PAYLOAD_V2) return ERR_TASK_VERSION_UNSUPPORTED;
  u8 method = p[V_METHOD], verdict = p[V_VERDICT], reason = p[V_REASON];
  if (method < 1 || method > 3 || reason > 7) return ERR_VERDICT_MALFORMED;
  if (!((verdict == VERDICT_VALID && reason == 0) || (verdict == VERDICT_REFUSED && reason != 0)))
    return ERR_VERDICT_MALFORMED;
  return 0;
}

bool taskboard_v2_message(const Envelope *env) {
  if (env->kind == KIND_TASK_RESULT) return env->payload_len > S2_VERSION && env->payload[S2_VERSION] == PAYLOAD_V2;
  if (env->kind == KIND_PROOF_ATTESTATION)
    return env->payload_len == VERDICT_LEN && env->payload[V_VERSION] == PAYLOAD_V2;
  return false;
}

/* --- accounts --------------------------------------------------------------------------------------- */

static u64 task2_address(const SolPubkey *program_id, const u8 *requester, const u8 nonce_le[8], SolPubkey *out,
                         u8 *bump) {
  SolBytes seeds[3] = {{(const u8 *)TASK2_SEED, sizeof(TASK2_SEED) - 1}, {requester, 32}, {nonce_le, 8}};
  if (sol_try_find_program_address(seeds, 3, program_id, out, bump) != 0) return ERR_SYSCALL_FAILED;
  return 0;
}

/* A v2 task of this program: owner, magic, version, and its address re-derived from the stored
 * requester, task nonce and bump (anyone can create zeroed accounts owned by this program). */
static bool task2_valid(const SolAccountInfo *task, const SolPubkey *program_id) {
  if (!sol_pubkey_eq(task->owner, program_id) || task->data_len < TASK2_LEN) return false;
  const u8 *t = task->data;
  if (!sol_bytes_eq(t + T2_MAGIC, TASK2_MAGIC_BYTES, 8) || t[T2_VERSION_AT] != TASK2_VERSION) return false;
  u8 bump = t[T2_BUMP];
  SolBytes seeds[4] = {{(const u8 *)TASK2_SEED, sizeof(TASK2_SEED) - 1},
                       {t + T2_REQUESTER, 32},
                       {t + T2_TASK_NONCE, 8},
                       {&bump, 1}};
  SolPubkey expected;
  return sol_create_program_address(seeds, 4, program_id, &expected) == 0 && sol_pubkey_eq(&expected, task->key);
}

static bool serve_valid(const SolAccountInfo *serve, const SolPubkey *program_id) {
  /* SERVE_LEN_V1: an account the program created before the rent payer existed (an upgrade keeps
   * it) stays valid, so its bond, verdict and credits are never frozen; only CloseServe needs more. */
  if (!sol_pubkey_eq(serve->owner, program_id) || serve->data_len < SERVE_LEN_V1) return false;
  const u8 *s = serve->data;
  if (!sol_bytes_eq(s + SV_MAGIC, SERVE_MAGIC_BYTES, 8) || s[SV_VERSION_AT] != SERVE_VERSION) return false;
  u8 bump = s[SV_BUMP];
  SolBytes seeds[3] = {{(const u8 *)SERVE_SEED, sizeof(SERVE_SEED) - 1}, {s + SV_REQUEST_ID, 32}, {&bump, 1}};
  SolPubkey expected;
  return sol_create_program_address(seeds, 3, program_id, &expected) == 0 && sol_pubkey_eq(&expected, serve->key);
}

/* A delivery receipt of this program (owner, magic, address from its stored message id and bump);
 * *env gets its envelope. */
static bool receipt_load(const SolAccountInfo *receipt, const SolPubkey *program_id, Envelope *env) {
  if (!sol_pubkey_eq(receipt->owner, program_id) || receipt->data_len < RCPT_ENVELOPE) return false;
  const u8 *r = receipt->data;
  if (!sol_bytes_eq(r + RCPT_MAGIC, RECEIPT_MAGIC_V2, 8) || r[RCPT_VERSION_AT] != RECEIPT_VERSION) return false;
  u64 env_len = sol_read_u32_le(r + RCPT_ENVELOPE_LEN);
  if (receipt->data_len < RCPT_ENVELOPE + env_len) return false;
  u8 bump = r[RCPT_BUMP];
  SolBytes seeds[3] = {{(const u8 *)RECEIPT_SEED, sizeof(RECEIPT_SEED) - 1}, {r + RCPT_MESSAGE_ID, 32}, {&bump, 1}};
  SolPubkey expected;
  if (sol_create_program_address(seeds, 3, program_id, &expected) != 0 || !sol_pubkey_eq(&expected, receipt->key))
    return false;
  return envelope_parse(r + RCPT_ENVELOPE, env_len, env);
}

/* What a delivery's record account (accounts[5]) holds, by layout alone: the checks that it is the
 * record of the delivered request were made by taskboard_v2_check_delivery, which every delivery
 * passes before taskboard_v2_on_delivery (Deliver, DeliverWithProof). */
static bool holds_task(const SolAccountInfo *a) {
  return a->data_len >= TASK2_LEN && sol_bytes_eq(a->data + T2_MAGIC, TASK2_MAGIC_BYTES, 8);
}
static bool holds_serve(const SolAccountInfo *a) {
  return a->data_len >= SERVE_LEN_V1 && sol_bytes_eq(a->data + SV_MAGIC, SERVE_MAGIC_BYTES, 8);
}

/* The tombstone CloseTask left of the task of `request_id` (taskboard.h): owned by this program,
 * exactly TASK_TOMBSTONE_LEN bytes, the tombstone magic and that request id. Only CloseTask writes
 * that magic, into the closed task's own account, so no other account can pass (no address check
 * needed: one task per request id). */
static bool tombstone_of(const SolAccountInfo *a, const SolPubkey *program_id, const u8 *request_id) {
  return sol_pubkey_eq(a->owner, program_id) && a->data_len == TASK_TOMBSTONE_LEN &&
         sol_bytes_eq(a->data + TOMB_MAGIC, TOMB_MAGIC_BYTES, 8) && sol_bytes_eq(a->data + TOMB_REQUEST_ID, request_id, 32);
}

static u64 serve_address(const SolPubkey *program_id, const u8 *request_id, SolPubkey *out, u8 *bump);

/* The serve account of `request_id` was closed by CloseServe: `serve` is the address
 * ["serve", request_id] re-derived here and holds no task or serve account, and `receipt` is that
 * request's own delivery receipt (a receipt of this program at its PDA whose message id is
 * request_id) with status RECEIPT_STATUS_SERVE_CLOSED — which only CloseServe writes, after checking
 * the serve account it deletes against that very receipt, and on which Claim refuses to create the
 * account again. 0 when so; ERR_TASK_ACCOUNT_WRONG (or a syscall failure) otherwise. */
static u64 serve_closed_check(const SolAccountInfo *serve, const SolAccountInfo *receipt, const SolPubkey *program_id,
                              const u8 *request_id) {
  if (holds_task(serve) || holds_serve(serve)) return ERR_TASK_ACCOUNT_WRONG;
  if (!sol_pubkey_eq(receipt->owner, program_id) || receipt->data_len < RCPT_ENVELOPE ||
      receipt->data[RCPT_STATUS] != RECEIPT_STATUS_SERVE_CLOSED ||
      !sol_bytes_eq(receipt->data + RCPT_MESSAGE_ID, request_id, 32))
    return ERR_TASK_ACCOUNT_WRONG; /* (cheap refusals first; the derivations below) */
  SolPubkey expected;
  u8 bump;
  u64 err = serve_address(program_id, request_id, &expected, &bump);
  if (err) return err;
  if (!sol_pubkey_eq(&expected, serve->key)) return ERR_TASK_ACCOUNT_WRONG;
  Envelope req;
  if (!receipt_load(receipt, program_id, &req)) return ERR_TASK_ACCOUNT_WRONG;
  return 0;
}

/* An account this instruction pays: the key the record names, writable, not executable. */
static u64 recipient_check(const SolAccountInfo *account, const u8 *key) {
  if (!sol_bytes_eq(account->key->x, key, 32)) return ERR_RECIPIENT_WRONG;
  if (!account->is_writable) return ERR_ACCOUNT_NOT_WRITABLE;
  if (account->executable) return ERR_RECIPIENT_CANNOT_RECEIVE;
  return 0;
}

/* Moves `amount` lamports from `from` (owned by this program) to `to`, unless that would leave `to`
 * below its rent-exempt minimum (the runtime would fail the transaction): then the amount stays in
 * `from` and is added to the u64 credit at `credit` (Withdraw pays it later). */
static u64 pay_or_credit(SolAccountInfo *from, SolAccountInfo *to, u64 amount, u8 *credit) {
  if (amount == 0) return 0;
  if (from->key == to->key || sol_pubkey_eq(from->key, to->key)) return 0;
  u64 minimum;
  u64 err = rent_exempt_minimum(to->data_len, &minimum);
  if (err) return err;
  if (*to->lamports + amount < minimum) {
    sol_write_u64_le(credit, sol_read_u64_le(credit) + amount);
    sol_log("tessera: payment held for Withdraw (recipient below rent exemption)");
    return 0;
  }
  *from->lamports -= amount;
  *to->lamports += amount;
  return 0;
}

static void set_return(const u8 id[32], u64 nonce) {
  u8 ret[40];
  sol_memcpy_(ret, id, 32);
  sol_write_u64_le(ret + 32, nonce);
  sol_set_return_data(ret, 40);
}

/* --- requester side ------------------------------------------------------------------------------- */

/* data: tag | task_nonce u64 LE | dst_domain u32 LE | worker_board (32) | TASK_REQUEST v2 payload;
 * accounts: [requester (signer, writable), task PDA ["task", requester, task_nonce] (writable),
 * outbox PDA (writable), committee config PDA, system program].
 * Creates the task (rent + max_fee lamports), sends the request (the board as sender) and stores its
 * envelope in the task. Return data: request_id (32) | nonce u64 LE. The gateway fee: Solana sends
 * charge none (only the transaction fee). */
u64 taskboard_request_v2(SolParameters *params) {
  if (params->account_count < 5) return ERR_NOT_ENOUGH_ACCOUNTS;
  if (params->data_len < 1 + 8 + 4 + 32) return ERR_INVALID_INSTRUCTION_DATA;
  SolAccountInfo *requester = &params->accounts[0];
  SolAccountInfo *task = &params->accounts[1];
  SolAccountInfo *outbox = &params->accounts[2];
  SolAccountInfo *config = &params->accounts[3];
  SolAccountInfo *system = &params->accounts[4];
  const SolPubkey *program_id = params->program_id;
  if (!requester->is_signer) return ERR_ACCOUNT_NOT_SIGNER;
  if (!requester->is_writable || !task->is_writable || !outbox->is_writable) return ERR_ACCOUNT_NOT_WRITABLE;
  if (!sol_is_zero(system->key->x, SOL_PUBKEY_LEN)) return ERR_WRONG_SYSTEM_PROGRAM;

  const u8 *d = params->data + 1;
  const u8 *task_nonce = d;
  u32 dst_domain = sol_read_u32_le(d + 8);
  const u8 *worker_board = d + 12;
  const u8 *payload = d + 44;
  u64 payload_len = params->data_len - 1 - 44;
  u64 err = request_check_v2(payload, payload_len);
  if (err) return err;
  if (be64(payload + R2_MAX_FEE) != 0) return ERR_TASK_FEE_TOO_LARGE;
  u64 max_fee = be64(payload + R2_MAX_FEE + 8);
  u64 deadline = be64(payload + R2_DEADLINE);
  if (deadline >> 63) return ERR_TASK_PAYLOAD_MALFORMED;
  i64 now = tb_now();
  if (now < 0) return ERR_SYSCALL_FAILED;
  if ((i64)deadline <= now) return ERR_TASK_DEADLINE_PASSED;
  /* A request to this chain itself would make its two verdict envelopes one message. */
  if (config->data_len >= CONFIG_LEN && sol_read_u32_le(config->data + CFG_DOMAIN) == dst_domain)
    return ERR_TASK_SAME_DOMAIN;

  SolPubkey expected;
  u8 bump;
  err = task2_address(program_id, requester->key->x, task_nonce, &expected, &bump);
  if (err) return err;
  if (!sol_pubkey_eq(&expected, task->key)) return ERR_TASK_WRONG_ADDRESS;
  if (sol_pubkey_eq(task->owner, program_id)) return ERR_TASK_NONCE_USED;
  err = tb_require_funds(requester, task, TASK2_LEN, max_fee);
  if (err) return err;
  u8 bump_seed = bump;
  SolBytes signer_seeds[4] = {{(const u8 *)TASK2_SEED, sizeof(TASK2_SEED) - 1},
                              {requester->key->x, 32},
                              {task_nonce, 8},
                              {&bump_seed, 1}};
  SolSignerSeeds signer = {signer_seeds, 4};
  PdaCreation creation = {requester, task, system, &signer, TASK2_LEN};
  err = create_pda(params, &creation);
  if (err) return err;
  if (max_fee) {
    err = tb_system_transfer(params, system, requester, task, max_fee);
    if (err) return err;
  }

  SolPubkey board;
  err = tb_board_address(program_id, &board);
  if (err) return err;
  Outgoing msg = {KIND_TASK_REQUEST, dst_domain, worker_board, board.x, payload, payload_len};
  u8 request_id[32];
  err = gateway_emit(program_id, outbox, config, &msg, request_id);
  if (err) return err;
  u64 nonce = sol_read_u64_le(outbox->data + OUTBOX_NONCE) - 1;
  u64 env_len = ENVELOPE_HEADER_LEN + payload_len;

  u8 *t = task->data;
  sol_memset_(t, 0, TASK2_LEN);
  sol_memcpy_(t + T2_MAGIC, TASK2_MAGIC_BYTES, 8);
  t[T2_VERSION_AT] = TASK2_VERSION;
  t[T2_BUMP] = bump;
  t[T2_STATE] = TASK2_STATE_OPEN;
  sol_write_u32_le(t + T2_DST_DOMAIN, dst_domain);
  sol_memcpy_(t + T2_REQUESTER, requester->key->x, 32);
  sol_memcpy_(t + T2_TASK_NONCE, task_nonce, 8);
  sol_write_u64_le(t + T2_DEADLINE, deadline);
  sol_write_u64_le(t + T2_MAX_FEE, max_fee);
  sol_write_u64_le(t + T2_CREATED_AT, (u64)now);
  sol_write_u64_le(t + T2_UPDATED_AT, (u64)now);
  sol_memcpy_(t + T2_EXECUTOR, payload + R2_EXECUTOR, EXECUTOR_LEN);
  sol_memcpy_(t + T2_WORKER_BOARD, worker_board, 32);
  sol_memcpy_(t + T2_REQUEST_ID, request_id, 32);
  sol_write_u64_le(t + T2_REQUEST_NONCE, nonce);
  sol_write_u32_le(t + T2_ENVELOPE_LEN, (u32)env_len);
  sol_memcpy_(t + T2_ENVELOPE, SCRATCH->envelope, env_len);
  set_return(request_id, nonce);
  return 0;
}

/* data: tag; accounts: [task (writable), requester (writable)]. Anyone may call it; after
 * deadline + SETTLEMENT_GRACE_SECONDS an open task's max_fee goes back to its requester. */
u64 taskboard_reclaim_v2(SolParameters *params) {
  if (params->account_count < 2) return ERR_NOT_ENOUGH_ACCOUNTS;
  SolAccountInfo *task = &params->accounts[0];
  SolAccountInfo *requester = &params->accounts[1];
  if (!task->is_writable) return ERR_ACCOUNT_NOT_WRITABLE;
  if (!task2_valid(task, params->program_id)) return ERR_TASK_NOT_FOUND;
  u8 *t = task->data;
  if (!sol_bytes_eq(requester->key->x, t + T2_REQUESTER, 32)) return ERR_NOT_REQUESTER;
  u64 err = recipient_check(requester, t + T2_REQUESTER);
  if (err) return err;
  if (t[T2_STATE] != TASK2_STATE_OPEN) return ERR_TASK_NOT_REFUNDABLE;
  i64 now = tb_now();
  if (now < 0) return ERR_SYSCALL_FAILED;
  if ((u64)now <= sol_read_u64_le(t + T2_DEADLINE) + SETTLEMENT_GRACE_SECONDS) return ERR_DEADLINE_NOT_PASSED;
  t[T2_STATE] = TASK2_STATE_REFUNDED;
  u64 amount = sol_read_u64_le(t + T2_MAX_FEE);
  sol_write_u64_le(t + T2_REFUND, amount);
  sol_write_u64_le(t + T2_UPDATED_AT, (u64)now);
  err = pay_or_credit(task, requester, amount, t + T2_REQUESTER_CREDIT);
  if (err) return err;
  sol_log("tessera: task refunded");
  return 0;
}

/* Pays a valid, matching, timely verdict on a result: price to the payout, the rest to the
 * requester. `fields` are the result's 144 claim bytes (output_hash .. price), already compared. */
typedef struct {
  SolAccountInfo *task, *payout, *requester; /* checked by taskboard_v2_check_delivery */
} Settlement;

static u64 settle(const Settlement *st, const u8 *result_id, const u8 *claim_fields, u64 submitted_at) {
  SolAccountInfo *task = st->task, *payout = st->payout, *requester = st->requester;
  u8 *t = task->data;
  if (submitted_at > sol_read_u64_le(t + T2_DEADLINE)) IGNORE2("result submitted after the deadline");
  U128 price = be128(claim_fields + (S2_PRICE - S2_OUTPUT_HASH));
  u64 max_fee = sol_read_u64_le(t + T2_MAX_FEE);
  if (price.hi != 0 || price.lo > max_fee) IGNORE2("claim price above max_fee");
  i64 now = tb_now();
  if (now < 0) return ERR_SYSCALL_FAILED;
  t[T2_STATE] = TASK2_STATE_COMPLETED; /* before moving lamports */
  sol_memcpy_(t + T2_RESULT_ID, result_id, 32);
  sol_memcpy_(t + T2_PAYOUT, claim_fields + (S2_PAYOUT - S2_OUTPUT_HASH), 32);
  sol_write_u64_le(t + T2_PRICE, price.lo);
  sol_write_u64_le(t + T2_REFUND, max_fee - price.lo);
  sol_write_u64_le(t + T2_UPDATED_AT, (u64)now);
  u64 err = pay_or_credit(task, payout, price.lo, t + T2_PAYOUT_CREDIT);
  if (err) return err;
  err = pay_or_credit(task, requester, max_fee - price.lo, t + T2_REQUESTER_CREDIT);
  if (err) return err;
  sol_log("tessera: task completed");
  return 0;
}

/* The result envelope `res` (its message id `result_id`) against the task: from the board the
 * request went to, well formed, for this request and executor. 0 = usable, else a reason logged. */
static bool result_usable(const u8 *t, const Envelope *res) {
  if (res->kind != KIND_TASK_RESULT || result_check_v2(res->payload, res->payload_len) != 0) {
    sol_log("tessera: task message ignored: malformed TASK_RESULT v2");
    return false;
  }
  if (res->src_domain != sol_read_u32_le(t + T2_DST_DOMAIN) || !sol_bytes_eq(res->src_sender, t + T2_WORKER_BOARD, 32)) {
    sol_log("tessera: task message ignored: result not from the worker board the request was sent to");
    return false;
  }
  if (!sol_bytes_eq(res->payload + S2_REQUEST_ID, t + T2_REQUEST_ID, 32) ||
      !sol_bytes_eq(res->payload + S2_EXECUTOR, t + T2_EXECUTOR, EXECUTOR_LEN)) {
    sol_log("tessera: task message ignored: result names another request or executor");
    return false;
  }
  return true;
}

/* TASK_RESULT v2 to the requester's board: recorded by its receipt; settles when a valid verdict
 * on it was kept. Accounts [board, task, payout, requester]. */
static u64 on_result_v2(SolParameters *params, const Envelope *env, const u8 message_id[32]) {
  if (env->payload_len < S2_MIN_LEN) IGNORE2("malformed TASK_RESULT v2");
  SolAccountInfo *task = &params->accounts[5];
  u8 *t = task->data;
  if (t[T2_STATE] != TASK2_STATE_OPEN) IGNORE2("task already completed or refunded");
  if (!result_usable(t, env)) return 0;
  if (!sol_bytes_eq(t + T2_PENDING_RESULT, message_id, 32)) {
    sol_log("tessera: task result recorded");
    return 0;
  }
  u8 fields_hash[32];
  SolBytes fields = {env->payload + S2_OUTPUT_HASH, CLAIM_FIELDS_LEN};
  if (sol_keccak256(&fields, 1, fields_hash) != 0) return ERR_SYSCALL_FAILED;
  if (!sol_bytes_eq(fields_hash, t + T2_PENDING_FIELDS, 32)) IGNORE2("verdict does not match its result");
  sol_log("tessera: task result recorded; applying its kept verdict");
  Settlement st = {task, &params->accounts[6], &params->accounts[7]};
  return settle(&st, message_id, env->payload + S2_OUTPUT_HASH, sol_read_u64_le(t + T2_PENDING_AT));
}

/* Verdict to the requester's board. Accounts [board, task, result receipt, payout, requester]. */
static u64 requester_verdict(SolParameters *params, const u8 *v) {
  SolAccountInfo *task = &params->accounts[5];
  SolAccountInfo *receipt = &params->accounts[6];
  u8 *t = task->data;
  if (t[T2_STATE] != TASK2_STATE_OPEN) IGNORE2("task already completed or refunded");
  if (v[V_VERDICT] != VERDICT_VALID) IGNORE2("result refused by the committee; the task stays open");
  Envelope res;
  if (!receipt_load(receipt, params->program_id, &res)) {
    /* The result is not here yet: keep the verdict (attack 1). */
    if (!sol_is_zero(t + T2_PENDING_RESULT, 32)) IGNORE2("another verdict is already kept for this task");
    u8 fields_hash[32];
    SolBytes fields = {v + V_OUTPUT_HASH, CLAIM_FIELDS_LEN};
    if (sol_keccak256(&fields, 1, fields_hash) != 0) return ERR_SYSCALL_FAILED;
    sol_memcpy_(t + T2_PENDING_RESULT, v + V_RESULT_ID, 32);
    sol_memcpy_(t + T2_PENDING_FIELDS, fields_hash, 32);
    sol_write_u64_le(t + T2_PENDING_AT, be64(v + V_SUBMITTED_AT));
    sol_log("tessera: task verdict kept until its result arrives");
    return 0;
  }
  if (!result_usable(t, &res)) return 0;
  if (!sol_bytes_eq(res.payload + S2_OUTPUT_HASH, v + V_OUTPUT_HASH, CLAIM_FIELDS_LEN))
    IGNORE2("verdict does not match its result");
  Settlement st = {task, &params->accounts[7], &params->accounts[8]};
  return settle(&st, v + V_RESULT_ID, v + V_OUTPUT_HASH, be64(v + V_SUBMITTED_AT));
}

/* --- serving side ----------------------------------------------------------------------------------- */

static u64 serve_address(const SolPubkey *program_id, const u8 *request_id, SolPubkey *out, u8 *bump) {
  SolBytes seeds[2] = {{(const u8 *)SERVE_SEED, sizeof(SERVE_SEED) - 1}, {request_id, 32}};
  if (sol_try_find_program_address(seeds, 2, program_id, out, bump) != 0) return ERR_SYSCALL_FAILED;
  return 0;
}

static void reopen(u8 *s) {
  s[SV_STATE] = SERVE_STATE_OPEN;
  sol_memset_(s + SV_CLAIMANT, 0, 32 + 32 + 16 + 8 + 8); /* claimant, payout, price, claim deadline, bond held */
}

/* The current claim's bond goes to refund_to (or is credited to it). */
static u64 forfeit(SolAccountInfo *serve, SolAccountInfo *refund_to) {
  u8 *s = serve->data;
  u64 bond = sol_read_u64_le(s + SV_BOND_HELD);
  sol_write_u64_le(s + SV_BOND_HELD, 0);
  return pay_or_credit(serve, refund_to, bond, s + SV_REFUND_CREDIT);
}

/* data: tag | payout (32, an address on the requester's chain); accounts: [claimant (signer,
 * writable: pays the bond, and the serve account's rent at the first claim), receipt PDA of the
 * request ["delivered", request_id], serve PDA ["serve", request_id] (writable), refund_to
 * (writable: gets the bond of an expired claim this claim replaces), system program].
 * Return data: price u128 LE | claim_deadline u64 LE. */
u64 taskboard_claim(SolParameters *params) {
  if (params->account_count < 5) return ERR_NOT_ENOUGH_ACCOUNTS;
  if (params->data_len != 1 + 32) return ERR_INVALID_INSTRUCTION_DATA;
  SolAccountInfo *claimant = &params->accounts[0];
  SolAccountInfo *receipt = &params->accounts[1];
  SolAccountInfo *serve = &params->accounts[2];
  SolAccountInfo *refund_to = &params->accounts[3];
  SolAccountInfo *system = &params->accounts[4];
  const SolPubkey *program_id = params->program_id;
  if (!claimant->is_signer) return ERR_ACCOUNT_NOT_SIGNER;
  if (!claimant->is_writable || !serve->is_writable) return ERR_ACCOUNT_NOT_WRITABLE;
  if (!sol_is_zero(system->key->x, SOL_PUBKEY_LEN)) return ERR_WRONG_SYSTEM_PROGRAM;
  const u8 *payout = params->data + 1;

  Envelope req;
  if (!receipt_load(receipt, program_id, &req)) return ERR_REQUEST_RECEIPT_INVALID;
  SolPubkey board;
  u64 err = tb_board_address(program_id, &board);
  if (err) return err;
  if (req.kind != KIND_TASK_REQUEST || !sol_bytes_eq(req.dst_receiver, board.x, 32)) return ERR_NOT_A_BOARD_REQUEST;
  /* Its serve account was settled and closed (CloseServe): never again (it would re-open the request). */
  if (receipt->data[RCPT_STATUS] == RECEIPT_STATUS_SERVE_CLOSED) return ERR_REQUEST_CLOSED;
  const u8 *p = req.payload;
  err = request_check_v2(p, req.payload_len);
  if (err) return err;
  if (be64(p + R2_BOND) != 0) return ERR_BOND_TOO_LARGE;
  u64 bond = be64(p + R2_BOND + 8);
  const u8 *request_id = receipt->data + RCPT_MESSAGE_ID;
  i64 now_signed = tb_now();
  if (now_signed < 0) return ERR_SYSCALL_FAILED;
  u64 now = (u64)now_signed, deadline = be64(p + R2_DEADLINE);
  if (now > deadline) return ERR_TASK_EXPIRED;

  SolPubkey expected;
  u8 bump;
  err = serve_address(program_id, request_id, &expected, &bump);
  if (err) return err;
  if (!sol_pubkey_eq(&expected, serve->key)) return ERR_SERVE_WRONG_ADDRESS;
  bool exists = sol_pubkey_eq(serve->owner, program_id);
  bool expire = false;
  if (exists) {
    if (!serve_valid(serve, program_id)) return ERR_SERVE_WRONG_ADDRESS;
    u8 state = serve->data[SV_STATE];
    if (state == SERVE_STATE_CLAIMED) {
      if (now <= sol_read_u64_le(serve->data + SV_CLAIM_DEADLINE)) return ERR_ALREADY_CLAIMED;
      expire = true;
    } else if (state == SERVE_STATE_ANSWERED) {
      return ERR_RESULT_PENDING;
    } else if (state == SERVE_STATE_CLOSED) {
      return ERR_REQUEST_CLOSED;
    }
  }
  if (sol_is_zero(payout, 32)) return ERR_ZERO_PAYOUT;
  err = recipient_check(refund_to, p + R2_REFUND_TO);
  if (err) return err;
  err = tb_require_funds(claimant, serve, SERVE_LEN, bond);
  if (err) return err;

  u32 window = sol_read_u32_be(p + R2_AUCTION_WINDOW);
  u64 auction_start = sol_read_u64_le(receipt->data + RCPT_UNIX_TIME);
  U128 price = auction_price(be128(p + R2_MAX_FEE), sol_read_u16_be(p + R2_START_BPS), window, auction_start, now);
  u64 claim_deadline = now + sol_read_u32_be(p + R2_CLAIM_WINDOW);
  if (claim_deadline > deadline) claim_deadline = deadline;

  if (!exists) {
    u8 bump_seed = bump;
    SolBytes signer_seeds[3] = {{(const u8 *)SERVE_SEED, sizeof(SERVE_SEED) - 1}, {request_id, 32}, {&bump_seed, 1}};
    SolSignerSeeds signer = {signer_seeds, 3};
    PdaCreation creation = {claimant, serve, system, &signer, SERVE_LEN};
    err = create_pda(params, &creation);
    if (err) return err;
    u8 *s = serve->data;
    sol_memset_(s, 0, SERVE_LEN);
    sol_memcpy_(s + SV_MAGIC, SERVE_MAGIC_BYTES, 8);
    s[SV_VERSION_AT] = SERVE_VERSION;
    s[SV_BUMP] = bump;
    s[SV_STATE] = SERVE_STATE_OPEN;
    sol_write_u32_le(s + SV_SRC_DOMAIN, req.src_domain);
    sol_memcpy_(s + SV_REQUEST_ID, request_id, 32);
    sol_memcpy_(s + SV_RENT_PAYER, claimant->key->x, 32);
    sol_memcpy_(s + SV_SRC_BOARD, req.src_sender, 32);
    sol_write_u64_le(s + SV_DEADLINE, deadline);
    sol_write_u64_le(s + SV_AUCTION_START, auction_start);
    sol_write_u32_le(s + SV_AUCTION_WINDOW, window);
    sol_write_u32_le(s + SV_CLAIM_WINDOW, sol_read_u32_be(p + R2_CLAIM_WINDOW));
    sol_write_u16_le(s + SV_START_BPS, sol_read_u16_be(p + R2_START_BPS));
    put_le128(s + SV_MAX_FEE, be128(p + R2_MAX_FEE));
    sol_write_u64_le(s + SV_BOND, bond);
    sol_memcpy_(s + SV_REFUND_TO, p + R2_REFUND_TO, 32);
    sol_memcpy_(s + SV_EXECUTOR, p + R2_EXECUTOR, EXECUTOR_LEN);
  }
  if (bond) {
    err = tb_system_transfer(params, system, claimant, serve, bond);
    if (err) return err;
  }
  u8 *s = serve->data;
  if (expire) {
    err = forfeit(serve, refund_to);
    if (err) return err;
    sol_log("tessera: claim expired; bond forfeited to refund_to");
  }
  s[SV_STATE] = SERVE_STATE_CLAIMED;
  sol_memcpy_(s + SV_CLAIMANT, claimant->key->x, 32);
  sol_memcpy_(s + SV_PAYOUT, payout, 32);
  put_le128(s + SV_PRICE, price);
  sol_write_u64_le(s + SV_CLAIM_DEADLINE, claim_deadline);
  sol_write_u64_le(s + SV_BOND_HELD, bond);
  sol_write_u32_le(s + SV_CLAIMS, sol_read_u32_le(s + SV_CLAIMS) + 1);
  sol_write_u64_le(s + SV_UPDATED_AT, now);
  u8 ret[24];
  put_le128(ret, price);
  sol_write_u64_le(ret + 16, claim_deadline);
  sol_set_return_data(ret, 24);
  sol_log("tessera: task claimed");
  return 0;
}

/* data: tag; accounts: [serve (writable), refund_to (writable)]. Anyone: a claim whose deadline
 * passed without a result forfeits its bond to refund_to; the task is open again. */
u64 taskboard_expire_claim(SolParameters *params) {
  if (params->account_count < 2) return ERR_NOT_ENOUGH_ACCOUNTS;
  SolAccountInfo *serve = &params->accounts[0];
  SolAccountInfo *refund_to = &params->accounts[1];
  if (!serve->is_writable) return ERR_ACCOUNT_NOT_WRITABLE;
  if (!serve_valid(serve, params->program_id)) return ERR_SERVE_WRONG_ADDRESS;
  u8 *s = serve->data;
  if (s[SV_STATE] != SERVE_STATE_CLAIMED) return ERR_NOT_CLAIMED;
  i64 now = tb_now();
  if (now < 0) return ERR_SYSCALL_FAILED;
  if ((u64)now <= sol_read_u64_le(s + SV_CLAIM_DEADLINE)) return ERR_CLAIM_NOT_EXPIRED;
  u64 err = recipient_check(refund_to, s + SV_REFUND_TO);
  if (err) return err;
  err = forfeit(serve, refund_to);
  if (err) return err;
  reopen(s);
  sol_write_u64_le(s + SV_UPDATED_AT, (u64)now);
  sol_log("tessera: claim expired; bond forfeited to refund_to");
  return 0;
}

/* data: tag | TASK_RESULT v2 payload; accounts: [claimant (signer), serve PDA (writable), outbox
 * PDA (writable), committee config PDA]. Only the claimant, by its claim deadline, with the
 * claim's claimant, payout and price. The envelope is stored in the serve account (and logged).
 * Return data: result_id (32) | nonce u64 LE. */
u64 taskboard_submit_result_v2(SolParameters *params) {
  if (params->account_count < 4) return ERR_NOT_ENOUGH_ACCOUNTS;
  SolAccountInfo *claimant = &params->accounts[0];
  SolAccountInfo *serve = &params->accounts[1];
  SolAccountInfo *outbox = &params->accounts[2];
  SolAccountInfo *config = &params->accounts[3];
  const SolPubkey *program_id = params->program_id;
  if (!claimant->is_signer) return ERR_ACCOUNT_NOT_SIGNER;
  if (!serve->is_writable || !outbox->is_writable) return ERR_ACCOUNT_NOT_WRITABLE;
  if (!serve_valid(serve, program_id)) return ERR_SERVE_WRONG_ADDRESS;
  u8 *s = serve->data;
  u8 state = s[SV_STATE];
  if (state == SERVE_STATE_ANSWERED || state == SERVE_STATE_CLOSED) return ERR_ALREADY_ANSWERED;
  if (state != SERVE_STATE_CLAIMED) return ERR_NOT_CLAIMED;
  if (!sol_bytes_eq(claimant->key->x, s + SV_CLAIMANT, 32)) return ERR_NOT_CLAIMANT;
  i64 now = tb_now();
  if (now < 0) return ERR_SYSCALL_FAILED;
  if ((u64)now > sol_read_u64_le(s + SV_CLAIM_DEADLINE)) return ERR_CLAIM_DEADLINE_PASSED;
  const u8 *payload = params->data + 1;
  u64 payload_len = params->data_len - 1;
  u64 err = result_check_v2(payload, payload_len);
  if (err) return err;
  if (!sol_bytes_eq(payload + S2_REQUEST_ID, s + SV_REQUEST_ID, 32)) return ERR_RESULT_REQUEST_MISMATCH;
  if (!sol_bytes_eq(payload + S2_CLAIMANT, claimant->key->x, 32) || !sol_bytes_eq(payload + S2_PAYOUT, s + SV_PAYOUT, 32) ||
      !u128_eq(be128(payload + S2_PRICE), le128(s + SV_PRICE)))
    return ERR_CLAIM_MISMATCH;
  if (!sol_bytes_eq(payload + S2_EXECUTOR, s + SV_EXECUTOR, EXECUTOR_LEN)) return ERR_RESULT_EXECUTOR_MISMATCH;

  SolPubkey board;
  err = tb_board_address(program_id, &board);
  if (err) return err;
  Outgoing msg = {KIND_TASK_RESULT, sol_read_u32_le(s + SV_SRC_DOMAIN), s + SV_SRC_BOARD, board.x, payload, payload_len};
  u8 result_id[32];
  err = gateway_emit(program_id, outbox, config, &msg, result_id); /* sets the return data */
  if (err) return err;
  u64 env_len = ENVELOPE_HEADER_LEN + payload_len;
  s[SV_STATE] = SERVE_STATE_ANSWERED;
  sol_memcpy_(s + SV_RESULT_ID, result_id, 32);
  sol_write_u64_le(s + SV_RESULT_NONCE, sol_read_u64_le(outbox->data + OUTBOX_NONCE) - 1);
  sol_write_u64_le(s + SV_SUBMITTED_AT, (u64)now);
  sol_write_u64_le(s + SV_UPDATED_AT, (u64)now);
  sol_write_u32_le(s + SV_ENVELOPE_LEN, (u32)env_len);
  sol_memcpy_(s + SV_ENVELOPE, SCRATCH->envelope, env_len);
  return 0;
}

/* data: tag; accounts: [serve (writable), claimant (writable)]. Anyone: no verdict came by
 * deadline + SETTLEMENT_GRACE_SECONDS (the committee abstained), so the bond goes back. */
u64 taskboard_release_bond(SolParameters *params) {
  if (params->account_count < 2) return ERR_NOT_ENOUGH_ACCOUNTS;
  SolAccountInfo *serve = &params->accounts[0];
  SolAccountInfo *claimant = &params->accounts[1];
  if (!serve->is_writable) return ERR_ACCOUNT_NOT_WRITABLE;
  if (!serve_valid(serve, params->program_id)) return ERR_SERVE_WRONG_ADDRESS;
  u8 *s = serve->data;
  if (s[SV_STATE] != SERVE_STATE_ANSWERED) return ERR_NO_RESULT_PENDING;
  i64 now = tb_now();
  if (now < 0) return ERR_SYSCALL_FAILED;
  u64 deadline = sol_read_u64_le(s + SV_DEADLINE);
  if (deadline > ~0ULL - SETTLEMENT_GRACE_SECONDS || (u64)now <= deadline + SETTLEMENT_GRACE_SECONDS)
    return ERR_DEADLINE_NOT_PASSED;
  u64 err = recipient_check(claimant, s + SV_CLAIMANT);
  if (err) return err;
  s[SV_STATE] = SERVE_STATE_CLOSED;
  sol_write_u64_le(s + SV_UPDATED_AT, (u64)now);
  u64 bond = sol_read_u64_le(s + SV_BOND_HELD);
  sol_write_u64_le(s + SV_BOND_HELD, 0);
  sol_memcpy_(s + SV_CREDITED, s + SV_CLAIMANT, 32);
  err = pay_or_credit(serve, claimant, bond, s + SV_CLAIMANT_CREDIT);
  if (err) return err;
  sol_log("tessera: bond released");
  return 0;
}

/* Verdict to the serving board. Accounts [board, serve, claimant, refund_to]. */
static bool serving_verdict_applies(const u8 *s, const u8 *v) {
  return s[SV_STATE] == SERVE_STATE_ANSWERED && sol_bytes_eq(s + SV_RESULT_ID, v + V_RESULT_ID, 32) &&
         sol_bytes_eq(v + V_CLAIMANT, s + SV_CLAIMANT, 32) && sol_bytes_eq(v + V_PAYOUT, s + SV_PAYOUT, 32) &&
         u128_eq(be128(v + V_PRICE), le128(s + SV_PRICE));
}

static u64 serving_verdict(SolParameters *params, const u8 *v) {
  SolAccountInfo *serve = &params->accounts[5];
  SolAccountInfo *claimant = &params->accounts[6];
  SolAccountInfo *refund_to = &params->accounts[7];
  u8 *s = serve->data;
  if (!serving_verdict_applies(s, v)) IGNORE2("verdict is not on the result waiting for one");
  i64 now = tb_now();
  if (now < 0) return ERR_SYSCALL_FAILED;
  sol_write_u64_le(s + SV_UPDATED_AT, (u64)now);
  if (v[V_VERDICT] == VERDICT_VALID) {
    s[SV_STATE] = SERVE_STATE_CLOSED;
    u64 bond = sol_read_u64_le(s + SV_BOND_HELD);
    sol_write_u64_le(s + SV_BOND_HELD, 0);
    sol_memcpy_(s + SV_CREDITED, s + SV_CLAIMANT, 32);
    u64 err = pay_or_credit(serve, claimant, bond, s + SV_CLAIMANT_CREDIT);
    if (err) return err;
    sol_log("tessera: bond returned");
    return 0;
  }
  u64 err = forfeit(serve, refund_to);
  if (err) return err;
  if ((u64)now <= sol_read_u64_le(s + SV_DEADLINE)) {
    reopen(s);
    sol_log("tessera: result refused; bond forfeited to refund_to; task reopened");
  } else {
    s[SV_STATE] = SERVE_STATE_CLOSED;
    sol_log("tessera: result refused; bond forfeited to refund_to");
  }
  return 0;
}

/* --- Withdraw -------------------------------------------------------------------------------------- */

/* data: tag; accounts: [task or serve account (writable), recipient (writable)]. Anyone: pays the
 * credits the record holds for `recipient` (payments that would have left it below rent exemption),
 * once it can take them. */
u64 taskboard_withdraw(SolParameters *params) {
  if (params->account_count < 2) return ERR_NOT_ENOUGH_ACCOUNTS;
  SolAccountInfo *record = &params->accounts[0];
  SolAccountInfo *recipient = &params->accounts[1];
  if (!record->is_writable || !recipient->is_writable) return ERR_ACCOUNT_NOT_WRITABLE;
  if (recipient->executable) return ERR_RECIPIENT_CANNOT_RECEIVE;
  if (sol_pubkey_eq(record->key, recipient->key)) return ERR_RECIPIENT_WRONG;
  u8 *r = record->data;
  u8 *credits[2];
  const u8 *owners[2];
  if (task2_valid(record, params->program_id)) {
    credits[0] = r + T2_PAYOUT_CREDIT, owners[0] = r + T2_PAYOUT;
    credits[1] = r + T2_REQUESTER_CREDIT, owners[1] = r + T2_REQUESTER;
  } else if (serve_valid(record, params->program_id)) {
    credits[0] = r + SV_REFUND_CREDIT, owners[0] = r + SV_REFUND_TO;
    credits[1] = r + SV_CLAIMANT_CREDIT, owners[1] = r + SV_CREDITED;
  } else {
    return ERR_TASK_NOT_FOUND;
  }
  u64 amount = 0;
  for (int i = 0; i < 2; i++)
    if (sol_bytes_eq(recipient->key->x, owners[i], 32)) amount += sol_read_u64_le(credits[i]);
  if (amount == 0) return ERR_NOTHING_TO_WITHDRAW;
  u64 minimum;
  u64 err = rent_exempt_minimum(recipient->data_len, &minimum);
  if (err) return err;
  if (*recipient->lamports + amount < minimum) return ERR_RECIPIENT_BELOW_RENT;
  for (int i = 0; i < 2; i++)
    if (sol_bytes_eq(recipient->key->x, owners[i], 32)) sol_write_u64_le(credits[i], 0);
  *record->lamports -= amount;
  *recipient->lamports += amount;
  sol_log("tessera: credit withdrawn");
  return 0;
}

/* --- closing settled records (rent back) ------------------------------------------------------------- */

/* Everything `from` holds (owned by this program) beyond `keep` lamports goes to `to`, which must be
 * the key `owed_to` names (whatever account the caller passes), writable and not executable. */
static u64 refund_rent(SolAccountInfo *from, SolAccountInfo *to, const u8 *owed_to, u64 keep) {
  u64 err = recipient_check(to, owed_to);
  if (err) return err;
  if (sol_pubkey_eq(from->key, to->key)) return ERR_RECIPIENT_WRONG;
  if (*from->lamports < keep) return ERR_INSUFFICIENT_LAMPORTS;
  *to->lamports += *from->lamports - keep;
  *from->lamports = keep;
  return 0;
}

/* The payer (`payer_key`) may close at once; anyone else once TASK_RETENTION_SECONDS have passed
 * since `since`. */
static u64 close_allowed(const SolAccountInfo *closer, const u8 *payer_key, u64 since) {
  if (!closer->is_signer) return ERR_ACCOUNT_NOT_SIGNER;
  if (sol_bytes_eq(closer->key->x, payer_key, 32)) return 0;
  i64 now = tb_now();
  if (now < 0) return ERR_SYSCALL_FAILED;
  if (since > ~0ULL - TASK_RETENTION_SECONDS || (u64)now < since + TASK_RETENTION_SECONDS) return ERR_CLOSE_TOO_EARLY;
  return 0;
}

/* data: tag; accounts: [closer (signer), task (writable), requester (writable)]. A task that is
 * settled (Completed or Refunded: its escrow is paid out) with no credit left (Withdraw first:
 * CREDITS_OUTSTANDING) gives its rent back to the requester (who paid it), whatever account is
 * passed. The requester may close at once, anyone TASK_RETENTION_SECONDS after settlement (its
 * updated_at). The account is not deleted but shrunk to a TOMBSTONE (TASK_TOMBSTONE_LEN = 40 bytes:
 * magic "TESSTOMB" + the request id; still owned by this program, holding its rent-exempt minimum):
 * RequestTask v2 with the same (requester, task_nonce) finds it and fails with TASK_NONCE_USED; a late
 * result or verdict of that request naming it is delivered as a no-op (receipt written, nothing
 * paid); every other delivery or instruction naming it fails (TASK_ACCOUNT_WRONG / TASK_NOT_FOUND:
 * not a task). Task nonces are random u64, so a bitmap by nonce window (as for receipts) would cost
 * an account per close; the tombstone costs 1,169,280 lamports of the 7.49M a task locks
 * (docs/TASKS.md "Closing settled records"). */
u64 taskboard_close_task(SolParameters *params) {
  if (params->account_count < 3) return ERR_NOT_ENOUGH_ACCOUNTS;
  if (params->data_len != 1) return ERR_INVALID_INSTRUCTION_DATA;
  SolAccountInfo *closer = &params->accounts[0];
  SolAccountInfo *task = &params->accounts[1];
  SolAccountInfo *requester = &params->accounts[2];
  if (!task->is_writable) return ERR_ACCOUNT_NOT_WRITABLE;
  if (!task2_valid(task, params->program_id)) return ERR_TASK_NOT_FOUND;
  u8 *t = task->data;
  if (t[T2_STATE] != TASK2_STATE_COMPLETED && t[T2_STATE] != TASK2_STATE_REFUNDED) return ERR_TASK_NOT_SETTLED;
  if (sol_read_u64_le(t + T2_PAYOUT_CREDIT) != 0 || sol_read_u64_le(t + T2_REQUESTER_CREDIT) != 0)
    return ERR_CREDITS_OUTSTANDING;
  u64 err = close_allowed(closer, t + T2_REQUESTER, sol_read_u64_le(t + T2_UPDATED_AT));
  if (err) return err;
  u64 keep;
  err = rent_exempt_minimum(TASK_TOMBSTONE_LEN, &keep);
  if (err) return err;
  err = refund_rent(task, requester, t + T2_REQUESTER, keep);
  if (err) return err;
  u8 request_id[32];
  sol_memcpy_(request_id, t + T2_REQUEST_ID, 32);
  sol_memset_(t, 0, task->data_len);
  account_resize(task, TASK_TOMBSTONE_LEN);
  sol_memcpy_(t + TOMB_MAGIC, TOMB_MAGIC_BYTES, 8);
  sol_memcpy_(t + TOMB_REQUEST_ID, request_id, 32);
  sol_log("tessera: task closed");
  return 0;
}

/* data: tag; accounts: [closer (signer), serve (writable), rent payer (writable: the claimant whose
 * first Claim created it), the request's receipt ["delivered", request_id] (writable)]. A serve
 * account that is settled — Closed (bond returned, forfeited or released), or Open past the
 * deadline (nobody can claim any more) — with no bond held and no credit left (CREDITS_OUTSTANDING)
 * is deleted, every lamport to its rent payer whatever account is passed. The payer may close at
 * once, anyone TASK_RETENTION_SECONDS after max(updated_at, deadline). Replay: the request's receipt
 * (never closed: board receipts are not closable) gets status RECEIPT_STATUS_SERVE_CLOSED, on which
 * Claim fails with REQUEST_CLOSED, so the serve account is never re-created; a late verdict of the
 * request naming the deleted address with that receipt is delivered as a no-op; a bond instruction
 * naming the deleted account fails (SERVE_WRONG_ADDRESS), and a re-delivered verdict finds its own
 * receipt (ALREADY_DELIVERED). */
u64 taskboard_close_serve(SolParameters *params) {
  if (params->account_count < 4) return ERR_NOT_ENOUGH_ACCOUNTS;
  if (params->data_len != 1) return ERR_INVALID_INSTRUCTION_DATA;
  SolAccountInfo *closer = &params->accounts[0];
  SolAccountInfo *serve = &params->accounts[1];
  SolAccountInfo *payer = &params->accounts[2];
  SolAccountInfo *receipt = &params->accounts[3];
  const SolPubkey *program_id = params->program_id;
  if (!serve->is_writable || !receipt->is_writable) return ERR_ACCOUNT_NOT_WRITABLE;
  /* A pre-upgrade account (SERVE_LEN_V1) names no rent payer: it stays (its bytes past 988 are not its own). */
  if (!serve_valid(serve, program_id) || serve->data_len < SERVE_LEN) return ERR_SERVE_WRONG_ADDRESS;
  u8 *s = serve->data;
  i64 now = tb_now();
  if (now < 0) return ERR_SYSCALL_FAILED;
  u64 deadline = sol_read_u64_le(s + SV_DEADLINE);
  bool settled = s[SV_STATE] == SERVE_STATE_CLOSED || (s[SV_STATE] == SERVE_STATE_OPEN && (u64)now > deadline);
  if (!settled || sol_read_u64_le(s + SV_BOND_HELD) != 0) return ERR_TASK_NOT_SETTLED;
  if (sol_read_u64_le(s + SV_REFUND_CREDIT) != 0 || sol_read_u64_le(s + SV_CLAIMANT_CREDIT) != 0)
    return ERR_CREDITS_OUTSTANDING;
  u64 since = sol_read_u64_le(s + SV_UPDATED_AT);
  if (deadline > since) since = deadline;
  u64 err = close_allowed(closer, s + SV_RENT_PAYER, since);
  if (err) return err;
  Envelope req;
  if (!receipt_load(receipt, program_id, &req) || !sol_bytes_eq(receipt->data + RCPT_MESSAGE_ID, s + SV_REQUEST_ID, 32))
    return ERR_REQUEST_RECEIPT_INVALID;
  err = refund_rent(serve, payer, s + SV_RENT_PAYER, 0);
  if (err) return err;
  receipt->data[RCPT_STATUS] = RECEIPT_STATUS_SERVE_CLOSED;
  sol_memset_(s, 0, serve->data_len); /* nothing later in the transaction reads it as live */
  sol_log("tessera: serve account closed");
  return 0;
}

/* --- deliveries ------------------------------------------------------------------------------------ */

/* Which account layout a v2 delivery needs, and every property of those accounts that the handler
 * relies on — checked here, before the pairing and before the receipt is written, so that a
 * delivery with a wrong or read-only account fails (and can be made again) instead of being
 * consumed. Whether a delivery pays (and so which recipients are checked) depends only on the
 * payload and on state, never on the accounts the deliverer chose.
 *   TASK_RESULT v2 (≥ 263 bytes): [board, task (w), payout (w), requester (w)]
 *   verdict, requester side:      [board, task (w), result receipt ["delivered", result_id], payout (w), requester (w)]
 *   verdict, serving side:        [board, serve (w), claimant (w), refund_to (w)]
 * A record closed for exactly this request makes the delivery a no-op (receipt written, nothing
 * paid; a live record would have ignored it too: it was settled):
 *   result or verdict, the task closed (CloseTask): [board, its tombstone (w)]
 *   verdict, the serve account closed (CloseServe): [board, ["serve", request_id] (w), the request's
 *                                                    receipt ["delivered", request_id] (SERVE_CLOSED)]
 * A shorter (malformed) v2 result needs only the board and is ignored. */
u64 taskboard_v2_check_delivery(SolParameters *params, const Envelope *env, const u8 message_id[32], bool *v2) {
  *v2 = taskboard_v2_message(env);
  if (!*v2) return 0;
  const SolPubkey *program_id = params->program_id;
  SolPubkey board;
  u64 err = tb_board_address(program_id, &board);
  if (err) return err;
  if (params->account_count < 5) return ERR_BOARD_ACCOUNTS_MISSING;
  if (!sol_pubkey_eq(params->accounts[4].key, &board)) return ERR_BOARD_WRONG_ADDRESS;
  const u8 *p = env->payload;
  if (env->kind == KIND_TASK_RESULT) {
    if (env->payload_len < S2_MIN_LEN) return 0;
    if (params->account_count < 6) return ERR_BOARD_ACCOUNTS_MISSING;
    SolAccountInfo *task = &params->accounts[5];
    if (tombstone_of(task, program_id, p + S2_REQUEST_ID)) /* closed: a no-op */
      return task->is_writable ? 0 : ERR_ACCOUNT_NOT_WRITABLE;
    if (!task2_valid(task, program_id) || !sol_bytes_eq(task->data + T2_REQUEST_ID, p + S2_REQUEST_ID, 32))
      return ERR_TASK_ACCOUNT_WRONG;
    if (params->account_count < 8) return ERR_BOARD_ACCOUNTS_MISSING;
    if (!task->is_writable) return ERR_ACCOUNT_NOT_WRITABLE;
    const u8 *t = task->data;
    if (t[T2_STATE] == TASK2_STATE_OPEN && sol_bytes_eq(t + T2_PENDING_RESULT, message_id, 32)) {
      err = recipient_check(&params->accounts[6], p + S2_PAYOUT);
      if (err) return err == ERR_RECIPIENT_WRONG ? ERR_PAYOUT_ACCOUNT_WRONG : err;
      err = recipient_check(&params->accounts[7], t + T2_REQUESTER);
      if (err) return err;
    }
    return 0;
  }
  /* a verdict: the record at accounts[5] says which board we are for this request */
  if (params->account_count < 6) return ERR_BOARD_ACCOUNTS_MISSING;
  SolAccountInfo *record = &params->accounts[5];
  if (!record->is_writable) return ERR_ACCOUNT_NOT_WRITABLE;
  if (task2_valid(record, program_id) && sol_bytes_eq(record->data + T2_REQUEST_ID, p + V_REQUEST_ID, 32)) {
    if (params->account_count < 9) return ERR_BOARD_ACCOUNTS_MISSING;
    SolPubkey expected;
    u8 bump;
    SolBytes seeds[2] = {{(const u8 *)RECEIPT_SEED, sizeof(RECEIPT_SEED) - 1}, {p + V_RESULT_ID, 32}};
    if (sol_try_find_program_address(seeds, 2, program_id, &expected, &bump) != 0) return ERR_SYSCALL_FAILED;
    if (!sol_pubkey_eq(&expected, params->accounts[6].key)) return ERR_RESULT_RECEIPT_WRONG_ADDRESS;
    const u8 *t = record->data;
    bool pays = t[T2_STATE] == TASK2_STATE_OPEN && p[V_VERDICT] == VERDICT_VALID &&
                sol_pubkey_eq(params->accounts[6].owner, program_id);
    if (pays) {
      err = recipient_check(&params->accounts[7], p + V_PAYOUT);
      if (err) return err == ERR_RECIPIENT_WRONG ? ERR_PAYOUT_ACCOUNT_WRONG : err;
      err = recipient_check(&params->accounts[8], t + T2_REQUESTER);
      if (err) return err;
    }
    return 0;
  }
  if (serve_valid(record, program_id) && sol_bytes_eq(record->data + SV_REQUEST_ID, p + V_REQUEST_ID, 32)) {
    if (params->account_count < 8) return ERR_BOARD_ACCOUNTS_MISSING;
    const u8 *s = record->data;
    if (serving_verdict_applies(s, p) && verdict_check(p, env->payload_len) == 0 && env->src_domain == COMMITTEE_DOMAIN &&
        sol_is_zero(env->src_sender, 32)) {
      if (p[V_VERDICT] == VERDICT_VALID) return recipient_check(&params->accounts[6], s + SV_CLAIMANT);
      return recipient_check(&params->accounts[7], s + SV_REFUND_TO);
    }
    return 0;
  }
  if (tombstone_of(record, program_id, p + V_REQUEST_ID)) return 0; /* the task closed: a no-op */
  if (params->account_count < 7) return ERR_TASK_ACCOUNT_WRONG;
  return serve_closed_check(record, &params->accounts[6], program_id, p + V_REQUEST_ID); /* a no-op, or refused */
}

u64 taskboard_v2_on_delivery(SolParameters *params, const Envelope *env, const u8 message_id[32]) {
  /* accounts[5] is the request's record, live or closed (taskboard_v2_check_delivery) */
  const SolAccountInfo *record = &params->accounts[5];
  if (env->kind == KIND_TASK_RESULT) {
    if (env->payload_len < S2_MIN_LEN) IGNORE2("malformed TASK_RESULT v2");
    if (!holds_task(record)) IGNORE2("its task was closed (CloseTask)");
    return on_result_v2(params, env, message_id);
  }
  if (env->src_domain != COMMITTEE_DOMAIN || !sol_is_zero(env->src_sender, 32))
    IGNORE2("verdict not from the committee");
  const u8 *v = env->payload;
  if (verdict_check(v, env->payload_len) != 0) IGNORE2("malformed PROOF_ATTESTATION v2");
  if (holds_task(record)) return requester_verdict(params, v);
  if (holds_serve(record)) return serving_verdict(params, v);
  if (record->data_len == TASK_TOMBSTONE_LEN && sol_bytes_eq(record->data + TOMB_MAGIC, TOMB_MAGIC_BYTES, 8))
    IGNORE2("its task was closed (CloseTask)");
  IGNORE2("its serve account was closed (CloseServe)");
}

/* --- CheckPayload v2 (stateless) -------------------------------------------------------------------- */

/* data: tag | what u8 | bytes. what 1/2/3: the TASK_REQUEST v2 / TASK_RESULT v2 / verdict decoder
 * the instructions use (fails with its error; no clock or lamport limits). what 0: the auction
 * price of max_fee u128 BE | start_bps u16 BE | window u32 BE | start u64 BE | now u64 BE, returned
 * as u128 BE. For the shared vectors (tests/vectors/tasks_v2.json) and for clients. */
u64 taskboard_check_payload_v2(SolParameters *params) {
  if (params->data_len < 2) return ERR_INVALID_INSTRUCTION_DATA;
  const u8 *p = params->data + 2;
  u64 len = params->data_len - 2;
  switch (params->data[1]) {
    case 0: {
      if (len != 16 + 2 + 4 + 8 + 8) return ERR_INVALID_INSTRUCTION_DATA;
      if (sol_read_u16_be(p + 16) > BPS) return ERR_TASK_TERMS_INVALID;
      U128 price = auction_price(be128(p), sol_read_u16_be(p + 16), sol_read_u32_be(p + 18), be64(p + 22), be64(p + 30));
      u8 out[16];
      put_be64(out, price.hi);
      put_be64(out + 8, price.lo);
      sol_set_return_data(out, 16);
      return 0;
    }
    case KIND_TASK_REQUEST:
      return request_check_v2(p, len);
    case KIND_TASK_RESULT:
      return result_check_v2(p, len);
    case KIND_PROOF_ATTESTATION:
      return verdict_check(p, len);
    default:
      return ERR_INVALID_INSTRUCTION_DATA;
  }
}
