#include "taskboard.h"

#include "accounts.h"
#include "gateway.h"

/* The Solana twin of contracts/evm/src/TaskBoard.sol: same states, same checks, escrow in lamports.
 * Payload layouts: docs/PROTOCOL.md "AI-task payloads" (big-endian, packed). */

static const u8 TASK_MAGIC_BYTES[8] = {'T', 'E', 'S', 'S', 'T', 'A', 'S', 'K'};
static const u8 ANSWERED_MAGIC_BYTES[8] = {'T', 'E', 'S', 'S', 'A', 'N', 'S', 'W'};
static const u8 RECEIPT_MAGIC_BYTES_TB[8] = {'T', 'E', 'S', 'S', 'R', 'C', 'P', 'T'};

/* TASK_REQUEST payload */
#define REQ_EXECUTOR 0
#define REQ_MAX_FEE 16
#define REQ_DEADLINE 32
#define REQ_MODE 40
#define REQ_HEADER_LEN 41
/* TASK_RESULT payload */
#define RES_REQUEST_ID 0
#define RES_EXECUTOR 32
#define RES_OUTPUT_HASH 48
#define RES_WORKER 80
#define RES_PAYOUT 112
#define RES_PROOF_KIND 208
#define RES_PROOF_LEN 209
#define RES_MIN_LEN 214
/* PROOF_ATTESTATION payload */
#define ATT_REQUEST_ID 0
#define ATT_RESULT_ID 32
#define ATT_OUTPUT_HASH 64
#define ATT_WORKER 96
#define ATT_PAYOUT 128
#define ATT_METHOD 160
#define ATT_VERDICT 161
#define ATT_PAYLOAD_LEN 170

#define EXECUTOR_LEN 16
#define MAX_URI_LEN 256

#define IGNORE(reason)                                   \
  do {                                                   \
    sol_log("tessera: task message ignored: " reason);   \
    return 0;                                            \
  } while (0)

static u64 read_u64_be(const u8 *p) { return ((u64)sol_read_u32_be(p) << 32) | sol_read_u32_be(p + 4); }
static u16 read_u16_be(const u8 *p) { return sol_read_u16_be(p); }

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

/* TASK_REQUEST checks of RequestTask; writes the escrow (max_fee) and the deadline. */
static u64 request_check(const u8 *p, u64 len, i64 now, u64 *escrow, i64 *deadline) {
  if (len < REQ_HEADER_LEN + 2 || len > MAX_PAYLOAD_LEN) return ERR_TASK_PAYLOAD_MALFORMED;
  if (!executor_valid(p + REQ_EXECUTOR)) return ERR_TASK_EXECUTOR_INVALID;
  if (read_u64_be(p + REQ_MAX_FEE) != 0) return ERR_TASK_FEE_TOO_LARGE;
  *escrow = read_u64_be(p + REQ_MAX_FEE + 8);
  u64 d = read_u64_be(p + REQ_DEADLINE);
  if (d >> 63) return ERR_TASK_PAYLOAD_MALFORMED; /* beyond i64: no real deadline */
  if ((i64)d <= now) return ERR_TASK_DEADLINE_PASSED;
  *deadline = (i64)d;
  u8 mode = p[REQ_MODE];
  if (mode == 0) {
    if (len != REQ_HEADER_LEN + 2 + read_u16_be(p + REQ_HEADER_LEN)) return ERR_TASK_PAYLOAD_MALFORMED;
  } else if (mode == 1) {
    u64 at = REQ_HEADER_LEN + 32;
    if (len < at + 2) return ERR_TASK_PAYLOAD_MALFORMED;
    u64 n = read_u16_be(p + at);
    if (len != at + 2 + n) return ERR_TASK_PAYLOAD_MALFORMED;
    if (!uri_valid(p + at + 2, n)) return ERR_TASK_URI_INVALID;
  } else {
    return ERR_TASK_PAYLOAD_MALFORMED;
  }
  return 0;
}

/* TASK_RESULT layout checks (payloads.py TaskResult.decode), including keccak256(inline output) ==
 * output_hash. The worker's Ed25519 signature is left to the attesters. Refuses a zero payout,
 * which no chain can pay. */
static u64 result_check(const u8 *p, u64 len) {
  if (len < RES_MIN_LEN || len > MAX_PAYLOAD_LEN) return ERR_RESULT_MALFORMED;
  if (!executor_valid(p + RES_EXECUTOR)) return ERR_TASK_EXECUTOR_INVALID;
  if (sol_is_zero(p + RES_PAYOUT, 32)) return ERR_RESULT_MALFORMED;
  u8 proof_kind = p[RES_PROOF_KIND];
  u64 proof_len = read_u16_be(p + RES_PROOF_LEN);
  if (proof_kind > 3 || (proof_kind == 0 && proof_len != 0)) return ERR_RESULT_MALFORMED;
  u64 at = RES_PROOF_LEN + 2 + proof_len;
  if (len < at + 3) return ERR_RESULT_MALFORMED;
  u8 mode = p[at];
  u64 n = read_u16_be(p + at + 1);
  if (len != at + 3 + n) return ERR_RESULT_MALFORMED;
  if (mode == 0) {
    u8 hash[32];
    SolBytes output = {p + at + 3, n};
    if (sol_keccak256(&output, 1, hash) != 0) return ERR_SYSCALL_FAILED;
    if (!sol_bytes_eq(hash, p + RES_OUTPUT_HASH, 32)) return ERR_RESULT_MALFORMED;
  } else if (mode == 1) {
    if (!uri_valid(p + at + 3, n)) return ERR_TASK_URI_INVALID;
  } else {
    return ERR_RESULT_MALFORMED;
  }
  return 0;
}

static u64 board_address(const SolPubkey *program_id, SolPubkey *out) {
  SolBytes seeds[1] = {{(const u8 *)BOARD_SEED, sizeof(BOARD_SEED) - 1}};
  u8 bump;
  if (sol_try_find_program_address(seeds, 1, program_id, out, &bump) != 0) return ERR_SYSCALL_FAILED;
  return 0;
}

/* ["<seed>", id] PDA of this program; *bump receives the canonical bump. */
static u64 id_address(const char *seed, u64 seed_len, const u8 id[32], const SolPubkey *program_id, SolPubkey *out,
                      u8 *bump) {
  SolBytes seeds[2] = {{(const u8 *)seed, seed_len}, {id, 32}};
  if (sol_try_find_program_address(seeds, 2, program_id, out, bump) != 0) return ERR_SYSCALL_FAILED;
  return 0;
}

/* The address is checked by the caller; owner + magic say the program wrote it. */
static bool task_valid(const SolAccountInfo *task, const SolPubkey *program_id) {
  return sol_pubkey_eq(task->owner, program_id) && task->data_len >= TASK_LEN &&
         sol_bytes_eq(task->data + TASK_MAGIC, TASK_MAGIC_BYTES, 8) && task->data[TASK_VERSION_AT] == TASK_VERSION;
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

/* data: tag | dst_domain u32 LE | worker_board (32) | TASK_REQUEST payload (rest);
 * accounts: [requester (signer, writable), task PDA ["task", request_id] (writable), outbox PDA
 * (writable), committee config PDA, system program].
 * Sends the request through the outbox with the board as sender, then creates the task account
 * holding rent + max_fee. The client derives the task address from the outbox nonce it read; if
 * another Send took that nonce first the address is wrong (TASK_WRONG_ADDRESS): read and retry.
 * Return data: request_id (32) | nonce u64 LE, as Send. */
u64 taskboard_request(SolParameters *params) {
  if (params->account_count < 5) return ERR_NOT_ENOUGH_ACCOUNTS;
  if (params->data_len < 1 + 4 + 32) return ERR_INVALID_INSTRUCTION_DATA;
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
  const u8 *payload = d + 36;
  u64 payload_len = params->data_len - 1 - 36;
  i64 now = now_unix();
  if (now < 0) return ERR_SYSCALL_FAILED;
  u64 escrow;
  i64 deadline;
  u64 err = request_check(payload, payload_len, now, &escrow, &deadline);
  if (err) return err;

  SolPubkey board;
  err = board_address(program_id, &board);
  if (err) return err;
  Outgoing msg = {KIND_TASK_REQUEST, sol_read_u32_le(d), d + 4, board.x, payload, payload_len};
  u8 request_id[32];
  err = gateway_emit(program_id, outbox, config, &msg, request_id);
  if (err) return err;

  SolPubkey expected;
  u8 bump;
  err = id_address(TASK_SEED, sizeof(TASK_SEED) - 1, request_id, program_id, &expected, &bump);
  if (err) return err;
  if (!sol_pubkey_eq(&expected, task->key)) return ERR_TASK_WRONG_ADDRESS;
  u8 bump_seed = bump;
  SolBytes signer_seeds[3] = {{(const u8 *)TASK_SEED, sizeof(TASK_SEED) - 1}, {request_id, 32}, {&bump_seed, 1}};
  SolSignerSeeds signer = {signer_seeds, 3};
  err = require_funds(requester, task, TASK_LEN, escrow);
  if (err) return err;
  PdaCreation creation = {requester, task, system, &signer, TASK_LEN};
  err = create_pda(params, &creation);
  if (err) return err;
  if (escrow) {
    err = system_transfer(params, system, requester, task, escrow);
    if (err) return err;
  }

  u8 *t = task->data;
  sol_memset_(t, 0, TASK_LEN);
  sol_memcpy_(t + TASK_MAGIC, TASK_MAGIC_BYTES, 8);
  t[TASK_VERSION_AT] = TASK_VERSION;
  t[TASK_BUMP] = bump;
  t[TASK_STATE] = TASK_STATE_OPEN;
  sol_write_u32_le(t + TASK_DST_DOMAIN, msg.dst_domain);
  sol_memcpy_(t + TASK_REQUESTER, requester->key->x, 32);
  sol_write_u64_le(t + TASK_DEADLINE, (u64)deadline);
  sol_write_u64_le(t + TASK_ESCROW, escrow);
  sol_memcpy_(t + TASK_EXECUTOR, payload + REQ_EXECUTOR, EXECUTOR_LEN);
  sol_memcpy_(t + TASK_WORKER_BOARD, d + 4, 32);
  sol_memcpy_(t + TASK_REQUEST_ID, request_id, 32);
  sol_write_u64_le(t + TASK_CREATED_AT, (u64)now);
  sol_write_u64_le(t + TASK_UPDATED_AT, (u64)now);

  /* The CPIs above reset the return data gateway_emit set. */
  u8 ret[40];
  sol_memcpy_(ret, request_id, 32);
  sol_write_u64_le(ret + 32, sol_read_u64_le(outbox->data + OUTBOX_NONCE) - 1);
  sol_set_return_data(ret, 40);
  return 0;
}

/* data: tag | TASK_RESULT payload; accounts: [worker (signer, writable: pays the answered
 * account), receipt PDA of the TASK_REQUEST ["delivered", request_id], answered PDA
 * ["answered", request_id] (writable), outbox PDA (writable), committee config PDA, system program].
 * Sends the result back to the requester's board (the request's source) with the board as sender;
 * at most once per request. Return data: result_id (32) | nonce u64 LE. */
u64 taskboard_submit_result(SolParameters *params) {
  if (params->account_count < 6) return ERR_NOT_ENOUGH_ACCOUNTS;
  SolAccountInfo *worker = &params->accounts[0];
  SolAccountInfo *receipt = &params->accounts[1];
  SolAccountInfo *answered = &params->accounts[2];
  SolAccountInfo *outbox = &params->accounts[3];
  SolAccountInfo *config = &params->accounts[4];
  SolAccountInfo *system = &params->accounts[5];
  const SolPubkey *program_id = params->program_id;
  if (!worker->is_signer) return ERR_ACCOUNT_NOT_SIGNER;
  if (!worker->is_writable || !answered->is_writable || !outbox->is_writable) return ERR_ACCOUNT_NOT_WRITABLE;
  if (!sol_is_zero(system->key->x, SOL_PUBKEY_LEN)) return ERR_WRONG_SYSTEM_PROGRAM;
  const u8 *payload = params->data + 1;
  u64 payload_len = params->data_len - 1;

  /* The receipt: written by the gateway only, at ["delivered", message_id] with its bump. */
  const u8 *r = receipt->data;
  if (!sol_pubkey_eq(receipt->owner, program_id) || receipt->data_len < RCPT_ENVELOPE ||
      !sol_bytes_eq(r + RCPT_MAGIC, RECEIPT_MAGIC_BYTES_TB, 8) || r[RCPT_VERSION_AT] != RECEIPT_VERSION)
    return ERR_REQUEST_RECEIPT_INVALID;
  u64 env_len = sol_read_u32_le(r + RCPT_ENVELOPE_LEN);
  if (receipt->data_len < RCPT_ENVELOPE + env_len) return ERR_REQUEST_RECEIPT_INVALID;
  const u8 *request_id = r + RCPT_MESSAGE_ID;
  u8 rbump = r[RCPT_BUMP];
  SolBytes rseeds[3] = {{(const u8 *)RECEIPT_SEED, sizeof(RECEIPT_SEED) - 1}, {request_id, 32}, {&rbump, 1}};
  SolPubkey expected;
  if (sol_create_program_address(rseeds, 3, program_id, &expected) != 0 || !sol_pubkey_eq(&expected, receipt->key))
    return ERR_REQUEST_RECEIPT_INVALID;
  Envelope request;
  if (!envelope_parse(r + RCPT_ENVELOPE, env_len, &request)) return ERR_REQUEST_RECEIPT_INVALID;
  SolPubkey board;
  u64 err = board_address(program_id, &board);
  if (err) return err;
  if (request.kind != KIND_TASK_REQUEST || !sol_bytes_eq(request.dst_receiver, board.x, 32) ||
      request.payload_len < REQ_HEADER_LEN)
    return ERR_NOT_A_BOARD_REQUEST;

  err = result_check(payload, payload_len);
  if (err) return err;
  if (!sol_bytes_eq(payload + RES_REQUEST_ID, request_id, 32)) return ERR_RESULT_REQUEST_MISMATCH;
  if (!sol_bytes_eq(payload + RES_EXECUTOR, request.payload + REQ_EXECUTOR, EXECUTOR_LEN))
    return ERR_RESULT_EXECUTOR_MISMATCH;
  i64 now = now_unix();
  if (now < 0) return ERR_SYSCALL_FAILED;
  if ((u64)now > read_u64_be(request.payload + REQ_DEADLINE)) return ERR_TASK_EXPIRED;

  u8 bump;
  err = id_address(ANSWERED_SEED, sizeof(ANSWERED_SEED) - 1, request_id, program_id, &expected, &bump);
  if (err) return err;
  if (!sol_pubkey_eq(&expected, answered->key)) return ERR_ANSWERED_WRONG_ADDRESS;
  if (sol_pubkey_eq(answered->owner, program_id)) return ERR_ALREADY_ANSWERED;
  u8 bump_seed = bump;
  SolBytes signer_seeds[3] = {
      {(const u8 *)ANSWERED_SEED, sizeof(ANSWERED_SEED) - 1}, {request_id, 32}, {&bump_seed, 1}};
  SolSignerSeeds signer = {signer_seeds, 3};
  err = require_funds(worker, answered, ANSWERED_LEN, 0);
  if (err) return err;
  PdaCreation creation = {worker, answered, system, &signer, ANSWERED_LEN};
  err = create_pda(params, &creation);
  if (err) return err;

  /* Last, so its return data (result_id | nonce) is what the transaction returns. */
  Outgoing msg = {KIND_TASK_RESULT, request.src_domain, request.src_sender, board.x, payload, payload_len};
  u8 result_id[32];
  err = gateway_emit(program_id, outbox, config, &msg, result_id);
  if (err) return err;

  u8 *a = answered->data;
  sol_memset_(a, 0, ANSWERED_LEN);
  sol_memcpy_(a + ANS_MAGIC, ANSWERED_MAGIC_BYTES, 8);
  a[ANS_VERSION_AT] = ANSWERED_VERSION;
  a[ANS_BUMP] = bump;
  sol_memcpy_(a + ANS_REQUEST_ID, request_id, 32);
  sol_memcpy_(a + ANS_RESULT_ID, result_id, 32);
  sol_memcpy_(a + ANS_SUBMITTER, worker->key->x, 32);
  sol_write_u64_le(a + ANS_ANSWERED_AT, (u64)now);
  return 0;
}

/* data: tag; accounts: [requester (writable), task PDA (writable)]. Anyone may call it; the escrow
 * goes to the task's requester only, after the deadline (after deadline + grace once a result was
 * recorded). The account stays, in state Refunded, so late messages find the task closed. */
u64 taskboard_reclaim(SolParameters *params) {
  if (params->account_count < 2) return ERR_NOT_ENOUGH_ACCOUNTS;
  SolAccountInfo *requester = &params->accounts[0];
  SolAccountInfo *task = &params->accounts[1];
  const SolPubkey *program_id = params->program_id;
  if (!requester->is_writable || !task->is_writable) return ERR_ACCOUNT_NOT_WRITABLE;
  if (!task_valid(task, program_id)) return ERR_TASK_NOT_FOUND;
  u8 *t = task->data;
  u8 bump = t[TASK_BUMP];
  SolBytes seeds[3] = {{(const u8 *)TASK_SEED, sizeof(TASK_SEED) - 1}, {t + TASK_REQUEST_ID, 32}, {&bump, 1}};
  SolPubkey expected;
  if (sol_create_program_address(seeds, 3, program_id, &expected) != 0 || !sol_pubkey_eq(&expected, task->key))
    return ERR_TASK_NOT_FOUND;
  if (!sol_bytes_eq(requester->key->x, t + TASK_REQUESTER, 32)) return ERR_NOT_REQUESTER;
  u8 state = t[TASK_STATE];
  if (state != TASK_STATE_OPEN && state != TASK_STATE_RESULT_RECEIVED) return ERR_TASK_NOT_REFUNDABLE;
  i64 after = (i64)sol_read_u64_le(t + TASK_DEADLINE);
  if (state == TASK_STATE_RESULT_RECEIVED) after += ATTESTATION_GRACE_SECONDS;
  i64 now = now_unix();
  if (now < 0) return ERR_SYSCALL_FAILED;
  if (now <= after) return ERR_DEADLINE_NOT_PASSED;
  u64 escrow = sol_read_u64_le(t + TASK_ESCROW);
  t[TASK_STATE] = TASK_STATE_REFUNDED;
  sol_write_u64_le(t + TASK_UPDATED_AT, (u64)now);
  /* A program may debit the accounts it owns directly; the rent stays. */
  *task->lamports -= escrow;
  *requester->lamports += escrow;
  sol_log("tessera: task refunded");
  return 0;
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
  /* The relayer derives these from the payload; when it cannot (a payload too short or of the
   * wrong size), only the board account is needed and the message is ignored later. */
  u64 need = 5;
  if (env->kind == KIND_TASK_RESULT && env->payload_len >= 32) need = 6;
  if (env->kind == KIND_PROOF_ATTESTATION && env->payload_len == ATT_PAYLOAD_LEN) need = 7;
  if (params->account_count < need) return ERR_BOARD_ACCOUNTS_MISSING;
  if (!sol_pubkey_eq(params->accounts[4].key, &board)) return ERR_BOARD_WRONG_ADDRESS;
  if (need >= 6) {
    SolAccountInfo *task = &params->accounts[5];
    SolPubkey expected;
    u8 bump;
    err = id_address(TASK_SEED, sizeof(TASK_SEED) - 1, env->payload, params->program_id, &expected, &bump);
    if (err) return err;
    if (!sol_pubkey_eq(&expected, task->key)) return ERR_TASK_WRONG_ADDRESS;
    if (!task->is_writable) return ERR_ACCOUNT_NOT_WRITABLE;
  }
  if (need == 7 && !sol_bytes_eq(params->accounts[6].key->x, env->payload + ATT_PAYOUT, 32))
    return ERR_PAYOUT_ACCOUNT_WRONG;
  return 0;
}

/* TaskBoard.sol _onResult: the first result from the asked board, in time, for the same executor. */
static u64 on_result(SolParameters *params, const Envelope *env, const u8 message_id[32]) {
  const u8 *p = env->payload;
  if (env->payload_len < 32 || result_check(p, env->payload_len) != 0) IGNORE("malformed TASK_RESULT");
  SolAccountInfo *task = &params->accounts[5];
  if (!task_valid(task, params->program_id)) IGNORE("result for an unknown request");
  u8 *t = task->data;
  if (env->src_domain != sol_read_u32_le(t + TASK_DST_DOMAIN) ||
      !sol_bytes_eq(env->src_sender, t + TASK_WORKER_BOARD, 32))
    IGNORE("result not from the worker board the request was sent to");
  if (t[TASK_STATE] != TASK_STATE_OPEN) IGNORE("request already has a result or is closed");
  i64 now = now_unix();
  if (now < 0) return ERR_SYSCALL_FAILED;
  if (now > (i64)sol_read_u64_le(t + TASK_DEADLINE)) IGNORE("result after the deadline");
  if (!sol_bytes_eq(p + RES_EXECUTOR, t + TASK_EXECUTOR, EXECUTOR_LEN))
    IGNORE("result names another executor than the request");
  t[TASK_STATE] = TASK_STATE_RESULT_RECEIVED;
  sol_memcpy_(t + TASK_RESULT_ID, message_id, 32);
  sol_memcpy_(t + TASK_OUTPUT_HASH, p + RES_OUTPUT_HASH, 32);
  sol_memcpy_(t + TASK_WORKER, p + RES_WORKER, 32);
  sol_memcpy_(t + TASK_PAYOUT, p + RES_PAYOUT, 32);
  sol_write_u64_le(t + TASK_UPDATED_AT, (u64)now);
  sol_log("tessera: task result recorded");
  return 0;
}

/* TaskBoard.sol _onAttestation: only the committee (domain 0, zero sender), matching the recorded
 * result; pays the escrow to the payout account. */
static u64 on_attestation(SolParameters *params, const Envelope *env) {
  if (env->src_domain != COMMITTEE_DOMAIN || !sol_is_zero(env->src_sender, 32))
    IGNORE("attestation not from the committee");
  const u8 *p = env->payload;
  if (env->payload_len != ATT_PAYLOAD_LEN || p[ATT_METHOD] < 1 || p[ATT_METHOD] > 3 || p[ATT_VERDICT] != 1)
    IGNORE("malformed PROOF_ATTESTATION");
  SolAccountInfo *task = &params->accounts[5];
  SolAccountInfo *payout = &params->accounts[6];
  if (!task_valid(task, params->program_id)) IGNORE("attestation for an unknown request");
  u8 *t = task->data;
  u8 state = t[TASK_STATE];
  if (state == TASK_STATE_OPEN) IGNORE("attestation before any result");
  if (state != TASK_STATE_RESULT_RECEIVED) IGNORE("task already completed or refunded");
  if (!sol_bytes_eq(p + ATT_RESULT_ID, t + TASK_RESULT_ID, 32) ||
      !sol_bytes_eq(p + ATT_OUTPUT_HASH, t + TASK_OUTPUT_HASH, 32) ||
      !sol_bytes_eq(p + ATT_WORKER, t + TASK_WORKER, 32) || !sol_bytes_eq(p + ATT_PAYOUT, t + TASK_PAYOUT, 32))
    IGNORE("attestation does not match the recorded result");
  u64 escrow = sol_read_u64_le(t + TASK_ESCROW);
  if (escrow) {
    /* The runtime would fail the whole delivery on these; the requester reclaims after the grace. */
    if (payout->executable || !payout->is_writable) IGNORE("payout account cannot receive lamports");
    u64 minimum;
    u64 err = rent_exempt_minimum(payout->data_len, &minimum);
    if (err) return err;
    if (*payout->lamports + escrow < minimum)
      IGNORE("payout account would stay below the rent-exempt minimum; fund it before the attestation lands");
  }
  i64 now = now_unix();
  if (now < 0) return ERR_SYSCALL_FAILED;
  t[TASK_STATE] = TASK_STATE_COMPLETED; /* before moving lamports, as the EVM twin */
  sol_write_u64_le(t + TASK_UPDATED_AT, (u64)now);
  *task->lamports -= escrow;
  *payout->lamports += escrow;
  sol_log("tessera: task completed");
  return 0;
}

u64 taskboard_on_delivery(SolParameters *params, const Envelope *env, const u8 message_id[32]) {
  if (env->kind == KIND_TASK_REQUEST) return 0; /* served from the receipt (SubmitResult, Claim) */
  if (taskboard_v2_message(env)) return taskboard_v2_on_delivery(params, env, message_id);
  if (env->kind == KIND_TASK_RESULT) return on_result(params, env, message_id);
  if (env->kind == KIND_PROOF_ATTESTATION) return on_attestation(params, env);
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
