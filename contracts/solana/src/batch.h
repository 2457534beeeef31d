/* Batch attestations (docs/PROTOCOL.md "Batch attestations", README.md "Batches and closing"):
 * VerifyRoot (one pairing per batch root, kept in a root account), DeliverWithProof (a message of a
 * verified root with its Merkle proof), CloseRoot, CloseReceipt (rent back, replay protection kept
 * in a per-source nonce bitmap), CheckBatch (stateless, for the shared vectors). */
#ifndef TESSERA_BATCH_H
#define TESSERA_BATCH_H

#include "envelope.h"
#include "tessera.h"

#define ROOT_SEED "root"     /* ["root", root] */
#define REPLAY_SEED "replay" /* ["replay", src_domain u32 LE, window u64 LE] */
#define TAG_ROOT "TESSERA/v1/ROOT"

#define BATCH_MAX_DEPTH 6
#define BATCH_MAX_SIZE 64

/* Root account layout (integers little-endian). */
#define ROOT_MAGIC 0 /* 8 bytes "TESSROOT" */
#define ROOT_VERSION_AT 8
#define ROOT_BUMP 9
#define ROOT_SRC_DOMAIN 12 /* u32 */
#define ROOT_DST_DOMAIN 16 /* u32: this chain's domain when verified */
#define ROOT_LEAF_COUNT 20 /* u32 */
#define ROOT_EPOCH 24      /* u32 */
#define ROOT_VERIFIED_AT 28 /* i64 */
#define ROOT_PAYER 36       /* 32 bytes: who paid the rent, gets it back */
#define ROOT_ROOT 68        /* 32 bytes */
#define ROOT_BOARD 100      /* 32 bytes: the task board PDA, so deliveries need not derive it */
#define ROOT_CONFIG 132     /* 32 bytes: the committee config PDA VerifyRoot checked (DeliverWithProof's pause check) */
#define ROOT_LEN 164
#define ROOT_VERSION 2      /* 1: 132 bytes, without ROOT_CONFIG (no longer accepted) */
#define ROOT_LEN_V1 132     /* a pre-upgrade root: DeliverWithProof refuses it, CloseRoot takes it */
#define ROOT_VERSION_V1 1

/* Replay bitmap account: one bit per nonce of one source domain, REPLAY_WINDOW nonces each. */
#define REPLAY_MAGIC 0 /* 8 bytes "TESSRPLY" */
#define REPLAY_VERSION_AT 8
#define REPLAY_BUMP 9
#define REPLAY_SRC_DOMAIN 12 /* u32 */
#define REPLAY_WINDOW_AT 16  /* u64: nonce >> REPLAY_WINDOW_BITS */
#define REPLAY_BITS 24       /* REPLAY_WINDOW / 8 bytes; bit (nonce mod REPLAY_WINDOW) = byte >> 3, 1 << (n & 7) */
#define REPLAY_WINDOW_BITS 13
#define REPLAY_WINDOW (1u << REPLAY_WINDOW_BITS)
#define REPLAY_LEN (REPLAY_BITS + REPLAY_WINDOW / 8)
#define REPLAY_VERSION 1

/* Seconds after which anyone may close a receipt (then its rent goes to the relayer that paid it),
 * and a root account (its rent to the payer). Before: the receiver / the payer only. */
#define RECEIPT_RETENTION_SECONDS 86400
#define ROOT_RETENTION_SECONDS 86400

u64 batch_verify_root(SolParameters *params);
u64 batch_deliver_with_proof(SolParameters *params);
u64 batch_close_root(SolParameters *params);
u64 batch_close_receipt(SolParameters *params);
u64 batch_check(SolParameters *params);

/* For every delivery (Deliver and DeliverWithProof), after the receipt check: a message whose
 * receipt may be closed (src_domain != 0, not to the task board) carries the replay bitmap of its
 * source and nonce window at accounts[4]; fails with ERR_DELIVERED_AND_CLOSED when its bit is set
 * (it was delivered and its receipt closed), ERR_REPLAY_WRONG_ADDRESS for another account. */
u64 batch_replay_check(SolParameters *params, const Envelope *env, bool to_board);

#endif
