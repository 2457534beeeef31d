/* The task board: AI-task requests with lamport escrow, results and attested payouts
 * (docs/TASKS.md; layouts in README.md "Task board"). */
#ifndef TESSERA_TASKBOARD_H
#define TESSERA_TASKBOARD_H

#include "envelope.h"
#include "tessera.h"

/* The board is an address only (no account): the src_sender of what it sends, the dst_receiver of
 * what it is sent. */
#define BOARD_SEED "taskboard"
#define TASK_SEED "task"         /* ["task", request_id]: the requester-side record + escrow */
#define ANSWERED_SEED "answered" /* ["answered", request_id]: one result per served request */

#define KIND_TASK_REQUEST 1
#define KIND_TASK_RESULT 2
#define KIND_PROOF_ATTESTATION 3

/* Task account layout (integers little-endian; protocol bytes verbatim). */
#define TASK_MAGIC 0 /* 8 bytes "TESSTASK" */
#define TASK_VERSION_AT 8
#define TASK_BUMP 9
#define TASK_STATE 10
#define TASK_DST_DOMAIN 12   /* u32: where the request went */
#define TASK_REQUESTER 16    /* 32: who paid the escrow and gets it back on reclaim */
#define TASK_DEADLINE 48     /* i64 unix seconds */
#define TASK_ESCROW 56       /* u64 lamports held on top of the account's rent */
#define TASK_EXECUTOR 64     /* 16 */
#define TASK_WORKER_BOARD 80 /* 32: the only sender whose TASK_RESULT counts */
#define TASK_REQUEST_ID 112  /* 32 */
#define TASK_RESULT_ID 144   /* 32: message id of the recorded TASK_RESULT */
#define TASK_OUTPUT_HASH 176 /* 32 */
#define TASK_WORKER 208      /* 32: Ed25519 key of the worker */
#define TASK_PAYOUT 240      /* 32: who gets the escrow once attested */
#define TASK_CREATED_AT 272  /* i64 */
#define TASK_UPDATED_AT 280  /* i64 */
#define TASK_LEN 288
#define TASK_VERSION 1

/* Same numbering as relay.tasks.board.TaskState and TaskBoard.sol. */
#define TASK_STATE_OPEN 1
#define TASK_STATE_RESULT_RECEIVED 2
#define TASK_STATE_COMPLETED 3
#define TASK_STATE_REFUNDED 4

/* Answered account layout: the serving side's "a result was sent" marker. */
#define ANS_MAGIC 0 /* 8 bytes "TESSANSW" */
#define ANS_VERSION_AT 8
#define ANS_BUMP 9
#define ANS_REQUEST_ID 16
#define ANS_RESULT_ID 48  /* message id of the TASK_RESULT sent */
#define ANS_SUBMITTER 80  /* the transaction signer that submitted it */
#define ANS_ANSWERED_AT 112 /* i64 */
#define ANSWERED_LEN 120
#define ANSWERED_VERSION 1

/* After the deadline a recorded result can still be attested this long before the requester may
 * reclaim (TaskBoard.sol's attestationGrace). */
#define ATTESTATION_GRACE_SECONDS 300

u64 taskboard_request(SolParameters *params);
u64 taskboard_submit_result(SolParameters *params);
u64 taskboard_reclaim(SolParameters *params);

/* For the gateway's Deliver, before the signature check: sets *to_board when the envelope is
 * addressed to the board and then requires its extra accounts (accounts[4..]). ERR_* on a
 * missing or wrong account. */
u64 taskboard_check_delivery_accounts(SolParameters *params, const Envelope *env, bool *to_board);

/* After the receipt is written: applies a delivered TASK_RESULT / PROOF_ATTESTATION. Content the
 * board cannot use is logged ("tessera: task message ignored: <reason>") and returns 0, so a
 * delivery can never get stuck on it. */
u64 taskboard_on_delivery(SolParameters *params, const Envelope *env, const u8 message_id[32]);

#endif
