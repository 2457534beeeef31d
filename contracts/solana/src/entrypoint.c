/* The one entrypoint: parse the input, dispatch on the instruction's first byte. */
#include "batch.h"
#include "committee.h"
#include "feeds.h"
#include "fees.h"
#include "gateway.h"
#include "taskboard.h"
#include "tessera.h"

/* data: tag | payload; accounts: [target (writable, owned by this program, exactly 32 bytes)].
 * Logs, hashes the payload with keccak256 and returns/stores the hash: a smoke test of the
 * toolchain, the syscalls and account writes. */
static u64 probe(SolParameters *params) {
  sol_log("tessera: probe");
  if (params->account_count < 1) return ERR_NOT_ENOUGH_ACCOUNTS;
  SolAccountInfo *target = &params->accounts[0];
  if (!target->is_writable) return ERR_ACCOUNT_NOT_WRITABLE;
  if (!sol_pubkey_eq(target->owner, params->program_id)) return ERR_WRONG_ACCOUNT_OWNER;
  if (target->data_len != PROBE_ACCOUNT_LEN) return ERR_WRONG_ACCOUNT_SIZE;
  SolBytes payload = {params->data + 1, params->data_len - 1};
  u8 hash[32];
  if (sol_keccak256(&payload, 1, hash) != 0) return ERR_SYSCALL_FAILED;
  SolBytes logged = {hash, 32};
  sol_log_data(&logged, 1);
  sol_set_return_data(hash, 32);
  sol_memcpy_(target->data, hash, 32);
  return 0;
}

uint64_t entrypoint(const uint8_t *input) {
  SolParameters *params = &SCRATCH->params;
  if (!sol_deserialize(input, params)) return ERR_TOO_MANY_ACCOUNTS;
  if (params->data_len == 0) return ERR_UNKNOWN_INSTRUCTION;
  switch (params->data[0]) {
    case IX_PROBE:
      return probe(params);
    case IX_INIT_COMMITTEE:
      return committee_init(params);
    case IX_ROTATE_COMMITTEE:
      return committee_rotate(params);
    case IX_VERIFY_SIGNATURE:
      return committee_verify_signature(params);
    case IX_VERIFY_DIGEST:
      return committee_verify_digest(params);
    case IX_INIT_GATEWAY:
      return gateway_init(params);
    case IX_SEND:
      return gateway_send(params);
    case IX_DELIVER:
      return gateway_deliver(params);
    case IX_VERIFY_ROOT:
      return batch_verify_root(params);
    case IX_DELIVER_WITH_PROOF:
      return batch_deliver_with_proof(params);
    case IX_CLOSE_ROOT:
      return batch_close_root(params);
    case IX_CLOSE_RECEIPT:
      return batch_close_receipt(params);
    case IX_CHECK_BATCH:
      return batch_check(params);
    case IX_PAUSE:
      return gateway_set_paused(params, 1);
    case IX_UNPAUSE:
      return gateway_set_paused(params, 0);
    case IX_SET_FEE_CONFIG:
      return fees_set_config(params);
    case IX_SET_BENEFICIARY:
      return fees_set_beneficiary(params);
    case IX_CLAIM_FEES:
      return fees_claim(params);
    case IX_SEND_PAID:
      return fees_send_paid(params);
    case IX_CHECK_QUOTE:
      return fees_check_quote(params);
    case IX_TASK_REQUEST:
    case IX_TASK_SUBMIT_RESULT:
    case IX_TASK_RECLAIM:
      return taskboard_v1_retired(params);
    case IX_TASK_REQUEST_V2:
      return taskboard_request_v2(params);
    case IX_TASK_CLAIM:
      return taskboard_claim(params);
    case IX_TASK_SUBMIT_RESULT_V2:
      return taskboard_submit_result_v2(params);
    case IX_TASK_EXPIRE_CLAIM:
      return taskboard_expire_claim(params);
    case IX_TASK_RELEASE_BOND:
      return taskboard_release_bond(params);
    case IX_TASK_RECLAIM_V2:
      return taskboard_reclaim_v2(params);
    case IX_TASK_WITHDRAW:
      return taskboard_withdraw(params);
    case IX_TASK_CLOSE_TASK:
      return taskboard_close_task(params);
    case IX_TASK_CLOSE_SERVE:
      return taskboard_close_serve(params);
    case IX_TASK_CHECK_PAYLOAD_V2:
      return taskboard_check_payload_v2(params);
    case IX_FEED_UPDATE:
      return feeds_update(params);
    case IX_FEED_UPDATE_MANY:
      return feeds_update_many(params);
    case IX_FEED_VERIFY_ROOT:
      return feeds_verify_root(params);
    case IX_FEED_UPDATE_WITH_PROOFS:
      return feeds_update_with_proofs(params);
    case IX_FEED_CLOSE_ROOT:
      return feeds_close_root(params);
    case IX_PROPOSE_ADMIN:
      return gateway_propose_admin(params);
    case IX_ACCEPT_ADMIN:
      return gateway_accept_admin(params);
    default:
      return ERR_UNKNOWN_INSTRUCTION;
  }
}
