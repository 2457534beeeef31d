/* The task board: AI-task requests with lamport escrow, claims, results and verdicts (task
 * protocol v2; docs/TASKS.md; layouts in README.md "Task board v2"). Task protocol v1 is retired. */
#ifndef TESSERA_TASKBOARD_H
#define TESSERA_TASKBOARD_H

#include "envelope.h"
#include "tessera.h"

/* The board is an address only (no account): the src_sender of what it sends, the dst_receiver of
 * what it is sent. */
#define BOARD_SEED "taskboard"

#define KIND_TASK_REQUEST 1
#define KIND_TASK_RESULT 2
#define KIND_PROOF_ATTESTATION 3

/* Helpers shared with taskboard_v2.c (defined in taskboard.c). */
bool tb_executor_valid(const u8 *p);
bool tb_uri_valid(const u8 *p, u64 len);
u64 tb_board_address(const SolPubkey *program_id, SolPubkey *out);
u64 tb_system_transfer(SolParameters *params, SolAccountInfo *system, SolAccountInfo *from, SolAccountInfo *to,
                       u64 lamports);
u64 tb_require_funds(const SolAccountInfo *payer, const SolAccountInfo *target, u64 space, u64 extra);
i64 tb_now(void);

/* RequestTask, SubmitResult, Reclaim (task protocol v1, retired): ERR_TASK_V1_RETIRED. */
u64 taskboard_v1_retired(SolParameters *params);

/* For the gateway's Deliver, before the signature check: sets *to_board when the envelope is
 * addressed to the board and then requires its extra accounts (accounts[4..]). ERR_* on a
 * missing or wrong account. */
u64 taskboard_check_delivery_accounts(SolParameters *params, const Envelope *env, const u8 message_id[32],
                                      bool *to_board);

/* After the receipt is written: applies a delivered v2 TASK_RESULT / PROOF_ATTESTATION. Content the
 * board cannot use (v1 results and attestations included) is logged ("tessera: task message ignored: <reason>") and returns 0, so a
 * delivery can never get stuck on it. */
u64 taskboard_on_delivery(SolParameters *params, const Envelope *env, const u8 message_id[32]);

/* ---- Task protocol v2 (taskboard_v2.c; docs/TASKS.md "Task protocol v2", README.md "Task board v2") ---- */

#define TASK2_SEED "task"   /* ["task", requester, task_nonce u64 LE]: requester side (attack 6) */
#define SERVE_SEED "serve"  /* ["serve", request_id]: serving side, created by the first Claim */

/* v2 task account (requester side). Integers little-endian; the request envelope verbatim. */
#define T2_MAGIC 0 /* "TESSTSK2" */
#define T2_VERSION_AT 8
#define T2_BUMP 9
#define T2_STATE 10
#define T2_DST_DOMAIN 12        /* u32 */
#define T2_REQUESTER 16         /* 32 */
#define T2_TASK_NONCE 48        /* u64: the requester's own nonce (PDA seed) */
#define T2_DEADLINE 56          /* u64 unix seconds (serving chain's clock) */
#define T2_MAX_FEE 64           /* u64 lamports escrowed */
#define T2_CREATED_AT 72        /* i64 */
#define T2_UPDATED_AT 80        /* i64 */
#define T2_EXECUTOR 88          /* 16 */
#define T2_WORKER_BOARD 104     /* 32 */
#define T2_REQUEST_ID 136       /* 32 */
#define T2_REQUEST_NONCE 168    /* u64: outbox nonce of the request envelope */
#define T2_PENDING_RESULT 176   /* 32: result id of a valid verdict kept before its result (0: none) */
#define T2_PENDING_FIELDS 208   /* 32: keccak256 of that verdict's output_hash..price (144 bytes) */
#define T2_PENDING_AT 240       /* u64: its submitted_at */
#define T2_RESULT_ID 248        /* 32: the result that was paid */
#define T2_PAYOUT 280           /* 32 */
#define T2_PRICE 312            /* u64 lamports paid to the payout */
#define T2_REFUND 320           /* u64 lamports refunded to the requester */
#define T2_PAYOUT_CREDIT 328    /* u64: held for Withdraw (payout could not take it yet) */
#define T2_REQUESTER_CREDIT 336 /* u64 */
#define T2_ENVELOPE_LEN 344     /* u32 */
#define T2_ENVELOPE 352         /* the TASK_REQUEST v2 envelope (82 + payload) */
#define TASK2_LEN (T2_ENVELOPE + ENVELOPE_HEADER_LEN + MAX_PAYLOAD_LEN + 2) /* 948 */
#define TASK2_VERSION 2

/* v2 serve account (serving side). */
#define SV_MAGIC 0 /* "TESSSERV" */
#define SV_VERSION_AT 8
#define SV_BUMP 9
#define SV_STATE 10
#define SV_SRC_DOMAIN 12       /* u32: the requester's chain */
#define SV_REQUEST_ID 16       /* 32 */
#define SV_SRC_BOARD 48        /* 32: the requester's board (where results go) */
#define SV_DEADLINE 80         /* u64 */
#define SV_AUCTION_START 88    /* u64: unix time of the request's delivery here (receipt) */
#define SV_AUCTION_WINDOW 96   /* u32 */
#define SV_CLAIM_WINDOW 100    /* u32 */
#define SV_START_BPS 104       /* u16 */
#define SV_CLAIMS 108          /* u32: claims made so far */
#define SV_MAX_FEE 112         /* u128 LE (requester chain's unit) */
#define SV_BOND 128            /* u64 lamports */
#define SV_REFUND_TO 136       /* 32 */
#define SV_EXECUTOR 168        /* 16 */
#define SV_CLAIMANT 184        /* 32: signer of the current claim */
#define SV_PAYOUT 216          /* 32: payout of the current claim (requester's chain) */
#define SV_PRICE 248           /* u128 LE: price of the current claim */
#define SV_CLAIM_DEADLINE 264  /* u64 */
#define SV_BOND_HELD 272       /* u64: lamports of the current claim's bond held here */
#define SV_REFUND_CREDIT 280   /* u64: forfeits refund_to could not take yet (Withdraw) */
#define SV_CLAIMANT_CREDIT 288 /* u64: a returned bond the claimant could not take yet */
#define SV_CREDITED 296        /* 32: whom SV_CLAIMANT_CREDIT belongs to */
#define SV_RESULT_ID 328       /* 32: the last result sent */
#define SV_RESULT_NONCE 360    /* u64: its outbox nonce */
#define SV_SUBMITTED_AT 368    /* u64: its Clock unix time (the verdict's submitted_at) */
#define SV_UPDATED_AT 376      /* i64 */
#define SV_ENVELOPE_LEN 384    /* u32 */
#define SV_ENVELOPE 392        /* the last TASK_RESULT v2 envelope sent (82 + payload) */
#define SV_RENT_PAYER 988      /* 32: the claimant whose first Claim created (paid for) the account */
#define SERVE_LEN (SV_RENT_PAYER + 32) /* 1020 */
#define SERVE_LEN_V1 SV_RENT_PAYER /* 988: serve accounts created before CloseServe (no rent payer) */
#define SERVE_VERSION 1

/* What CloseTask leaves of a settled task (same PDA, still owned by this program): a TOMBSTONE of
 * TASK_TOMBSTONE_LEN bytes, the magic then the request id. RequestTask v2 finds the address taken
 * (TASK_NONCE_USED); a late TASK_RESULT / verdict of exactly that request naming it is delivered as a
 * no-op (its receipt written, nothing paid). Only CloseTask writes this magic, and only into the
 * account of a valid v2 task whose request id it copies: a tombstone is the closed task of its
 * request. Tombstones of the first CloseTask (0 bytes) carry no request id: deliveries to them are
 * still refused (TASK_ACCOUNT_WRONG). */
#define TOMB_MAGIC 0 /* "TESSTOMB" */
#define TOMB_REQUEST_ID 8
#define TASK_TOMBSTONE_LEN 40
_Static_assert(TASK_TOMBSTONE_LEN != PROBE_ACCOUNT_LEN, "probe targets must not be able to alias a task tombstone");

#define TASK2_STATE_OPEN 1
#define TASK2_STATE_COMPLETED 3
#define TASK2_STATE_REFUNDED 4

#define SERVE_STATE_OPEN 1
#define SERVE_STATE_CLAIMED 2
#define SERVE_STATE_ANSWERED 3
#define SERVE_STATE_CLOSED 4

/* docs/TASKS.md: reclaim (requester side) and ReleaseBond (serving side) open at deadline + this. */
#define SETTLEMENT_GRACE_SECONDS 1800
/* CloseTask / CloseServe: the rent payer may close a settled record at once, anyone this long after. */
#define TASK_RETENTION_SECONDS 86400
/* The status byte of a TASK_REQUEST's delivery receipt (RCPT_STATUS) once its serve account was
 * closed: Claim refuses the request for good (REQUEST_CLOSED), so the closed serve account is never
 * re-created. */
#define RECEIPT_STATUS_SERVE_CLOSED 2

u64 taskboard_request_v2(SolParameters *params);
u64 taskboard_claim(SolParameters *params);
u64 taskboard_submit_result_v2(SolParameters *params);
u64 taskboard_expire_claim(SolParameters *params);
u64 taskboard_release_bond(SolParameters *params);
u64 taskboard_reclaim_v2(SolParameters *params);
u64 taskboard_withdraw(SolParameters *params);
u64 taskboard_close_task(SolParameters *params);
u64 taskboard_close_serve(SolParameters *params);
u64 taskboard_check_payload_v2(SolParameters *params);

/* Deliver of a v2 TASK_RESULT / verdict to the board. *v2 = whether the envelope is one; then the
 * first checks its extra accounts (before the pairing and the receipt), the second applies it. */
bool taskboard_v2_message(const Envelope *env); /* a v2 TASK_RESULT or verdict by its version byte */
u64 taskboard_v2_check_delivery(SolParameters *params, const Envelope *env, const u8 message_id[32], bool *v2);
u64 taskboard_v2_on_delivery(SolParameters *params, const Envelope *env, const u8 message_id[32]);

#endif
