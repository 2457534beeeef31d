/* Tessera program-wide definitions: instruction tags, error codes, the heap scratch layout.
 * Every layout here is documented in contracts/solana/README.md; keep the two in step. */
#ifndef TESSERA_TESSERA_H
#define TESSERA_TESSERA_H

#include "sol.h"

/* Instruction tags (first byte of the instruction data). 16.. are left for the gateway
 * (send/deliver), the task board and feeds. */
enum {
  IX_PROBE = 0,
  IX_INIT_COMMITTEE = 1,
  IX_ROTATE_COMMITTEE = 2,
  IX_VERIFY_SIGNATURE = 3,
  IX_VERIFY_DIGEST = 4,
  IX_INIT_GATEWAY = 16,
  IX_SEND = 17,
  IX_DELIVER = 18,
  /* batches (batch.c) */
  IX_VERIFY_ROOT = 19,
  IX_DELIVER_WITH_PROOF = 20,
  IX_CLOSE_ROOT = 21,
  IX_CLOSE_RECEIPT = 22,
  IX_CHECK_BATCH = 23, /* stateless: the batch tree and root digest (vectors) */
  /* the pause switch (gateway.c) */
  IX_PAUSE = 24,
  IX_UNPAUSE = 25,
  /* fees (fees.c) */
  IX_SET_FEE_CONFIG = 26,
  IX_SET_BENEFICIARY = 27,
  IX_CLAIM_FEES = 28,
  IX_SEND_PAID = 29,
  IX_CHECK_QUOTE = 30, /* stateless: the quote formula (vectors) */
  /* 32..47: the task board (taskboard.c) */
  IX_TASK_REQUEST = 32,       /* task protocol v1, retired: fails with TASK_V1_RETIRED */
  IX_TASK_SUBMIT_RESULT = 33, /* v1, retired */
  IX_TASK_RECLAIM = 34,       /* v1, retired */
  /* task protocol v2 (taskboard_v2.c) */
  IX_TASK_REQUEST_V2 = 35,
  IX_TASK_CLAIM = 36,
  IX_TASK_SUBMIT_RESULT_V2 = 37,
  IX_TASK_EXPIRE_CLAIM = 38,
  IX_TASK_RELEASE_BOND = 39,
  IX_TASK_RECLAIM_V2 = 40,
  IX_TASK_WITHDRAW = 41,
  IX_TASK_CLOSE_TASK = 42,  /* rent back: a settled task account, left as an empty tombstone */
  IX_TASK_CLOSE_SERVE = 43, /* rent back: a settled serve account, the request's receipt marked */
  IX_TASK_CHECK_PAYLOAD_V2 = 47, /* stateless: the v2 decoders and the auction price (vectors) */
  /* 48..52: feeds (feeds.c) */
  IX_FEED_UPDATE = 48,
  IX_FEED_UPDATE_MANY = 49,        /* UpdateFeeds: every report of a signed feed root, one pairing */
  IX_FEED_VERIFY_ROOT = 50,        /* VerifyFeedRoot: one pairing into ["feedroot", root] */
  IX_FEED_UPDATE_WITH_PROOFS = 51, /* UpdateFeedsWithProofs: reports of a verified root, no pairing */
  IX_FEED_CLOSE_ROOT = 52,
  /* the admin handover, two steps (gateway.c) */
  IX_PROPOSE_ADMIN = 53, /* the admin names its successor (the zero key cancels) */
  IX_ACCEPT_ADMIN = 54,  /* the proposed admin signs and becomes the admin */
};

/* Custom error codes: the transaction fails with InstructionError(i, Custom(code)).
 * adapters/solana_program.py mirrors them in ProgramErrorCode. */
enum {
  ERR_UNKNOWN_INSTRUCTION = 1,
  ERR_INVALID_INSTRUCTION_DATA = 2,
  ERR_NOT_ENOUGH_ACCOUNTS = 3,
  ERR_ACCOUNT_NOT_WRITABLE = 4,
  ERR_ACCOUNT_NOT_SIGNER = 5,
  ERR_WRONG_ACCOUNT_OWNER = 6,
  ERR_ACCOUNT_TOO_SMALL = 7,
  ERR_TOO_MANY_ACCOUNTS = 8,
  ERR_SYSCALL_FAILED = 9,
  ERR_WRONG_ACCOUNT_SIZE = 10,

  ERR_CONFIG_WRONG_ADDRESS = 0x10,
  ERR_CONFIG_ALREADY_INITIALIZED = 0x11,
  ERR_CONFIG_NOT_INITIALIZED = 0x12,
  ERR_NOT_UPGRADE_AUTHORITY = 0x13,
  ERR_WRONG_PROGRAM_DATA = 0x14,
  ERR_WRONG_SYSTEM_PROGRAM = 0x15,
  ERR_BAD_THRESHOLD = 0x16,

  ERR_EPOCH_UNKNOWN = 0x20,
  ERR_EPOCH_EXPIRED = 0x21,
  ERR_ENVELOPE_MALFORMED = 0x22,
  ERR_WRONG_MESSAGE_KIND = 0x23,
  ERR_WRONG_DESTINATION_DOMAIN = 0x24,
  ERR_WRONG_SOURCE_DOMAIN = 0x25,
  ERR_ROTATION_PAYLOAD_MALFORMED = 0x26,
  ERR_ROTATION_WRONG_EPOCH = 0x27,
  ERR_ROTATION_NOT_CURRENT_SIGNER = 0x28,
  ERR_WRONG_SOURCE_SENDER = 0x29,        /* a rotation's src_sender is not zero (the committee's) */
  ERR_WRONG_DESTINATION_RECEIVER = 0x2a, /* a rotation's dst_receiver is not this program's id */

  ERR_SIGNATURE_INFINITY = 0x30,
  ERR_SIGNATURE_NOT_ON_CURVE = 0x31,
  ERR_KEY_INFINITY = 0x32,
  ERR_HINT_OUT_OF_RANGE = 0x33,
  ERR_HINT_NOT_ON_CURVE = 0x34,
  ERR_PAIRING_INPUT_INVALID = 0x35,
  ERR_SIGNATURE_INVALID = 0x36,
  ERR_HINT_NOT_CANONICAL = 0x37,
  ERR_KEY_OUT_OF_RANGE = 0x38,
  ERR_KEY_NOT_IN_SUBGROUP = 0x39, /* a key to store is off the twist or outside the order-r subgroup */

  ERR_ALREADY_DELIVERED = 0x40,
  ERR_RECEIPT_WRONG_ADDRESS = 0x41,
  ERR_OUTBOX_WRONG_ADDRESS = 0x42,
  ERR_OUTBOX_ALREADY_INITIALIZED = 0x43,
  ERR_OUTBOX_NOT_INITIALIZED = 0x44,
  ERR_PAYLOAD_TOO_LONG = 0x45,
  ERR_NONCE_EXHAUSTED = 0x46,
  ERR_RENT_UNSUPPORTED = 0x47,
  ERR_GATEWAY_PAUSED = 0x48, /* Send, Deliver, VerifyRoot, DeliverWithProof while paused: the admin unpauses */
  ERR_NOT_ADMIN = 0x49,      /* an admin instruction signed by another key than the committee config's admin */
  ERR_NO_ADMIN_PENDING = 0x4a,  /* AcceptAdmin while no admin is proposed */
  ERR_NOT_PENDING_ADMIN = 0x4b, /* AcceptAdmin signed by another key than the proposed admin */

  /* 0x50..0x6F: the task board (taskboard.c) */
  ERR_TASK_PAYLOAD_MALFORMED = 0x50,    /* TASK_REQUEST: lengths, input mode or trailing bytes */
  ERR_TASK_EXECUTOR_INVALID = 0x51,     /* not 1..16 printable ASCII bytes followed by zero padding */
  ERR_TASK_FEE_TOO_LARGE = 0x52,        /* max_fee (u128) does not fit u64 lamports */
  ERR_TASK_DEADLINE_PASSED = 0x53,      /* RequestTask: deadline <= Clock unix time */
  ERR_TASK_URI_INVALID = 0x54,          /* scheme, length, whitespace or control bytes */
  ERR_TASK_WRONG_ADDRESS = 0x55,        /* task account != PDA ["task", request_id] (RequestTask: nonce race) */
  ERR_BOARD_ACCOUNTS_MISSING = 0x56,    /* Deliver to the board without its extra accounts */
  ERR_BOARD_WRONG_ADDRESS = 0x57,       /* the board account is not the PDA ["taskboard"] */
  ERR_PAYOUT_ACCOUNT_WRONG = 0x58,      /* Deliver of an attestation: payout account != its payout key */
  ERR_REQUEST_RECEIPT_INVALID = 0x59,   /* SubmitResult: not a delivery receipt of this program */
  ERR_NOT_A_BOARD_REQUEST = 0x5a,       /* SubmitResult: the receipt is not a TASK_REQUEST to the board */
  ERR_RESULT_MALFORMED = 0x5b,          /* TASK_RESULT payload does not follow the layout */
  ERR_RESULT_REQUEST_MISMATCH = 0x5c,   /* result.request_id != the receipt's message id */
  ERR_RESULT_EXECUTOR_MISMATCH = 0x5d,  /* result executor != request executor */
  ERR_TASK_EXPIRED = 0x5e,              /* SubmitResult after the request's deadline */
  ERR_ALREADY_ANSWERED = 0x5f,          /* the answered PDA exists: a result was sent already */
  ERR_ANSWERED_WRONG_ADDRESS = 0x60,    /* (task protocol v1, retired; the code stays reserved) */
  ERR_TASK_NOT_FOUND = 0x61,            /* Reclaim: not a task account of this program */
  ERR_TASK_NOT_REFUNDABLE = 0x62,       /* Reclaim: completed or refunded already */
  ERR_DEADLINE_NOT_PASSED = 0x63,       /* Reclaim: before deadline (+ grace once a result was recorded) */
  ERR_NOT_REQUESTER = 0x64,             /* Reclaim: the refund account is not the task's requester */
  ERR_INSUFFICIENT_LAMPORTS = 0x65,     /* the paying signer cannot cover the new account's rent (+ escrow) */
  ERR_TASK_V1_RETIRED = 0x66,           /* RequestTask / SubmitResult / Reclaim (v1): use the v2 instructions */

  /* 0x80..0x9F: task protocol v2 (taskboard_v2.c) */
  ERR_TASK_TERMS_INVALID = 0x80,         /* start_bps > 10000, claim_window 0 or refund_to zero */
  ERR_TASK_VERSION_UNSUPPORTED = 0x81,   /* the payload's version byte is not 2 */
  ERR_TASK_SAME_DOMAIN = 0x82,           /* RequestTask v2 to this chain's own domain */
  ERR_BOND_TOO_LARGE = 0x83,             /* Claim: the request's bond does not fit u64 lamports */
  ERR_SERVE_WRONG_ADDRESS = 0x84,        /* not the serve account ["serve", request_id] */
  ERR_ALREADY_CLAIMED = 0x85,            /* Claim while another claim runs */
  ERR_RESULT_PENDING = 0x86,             /* Claim while a result waits for its verdict */
  ERR_REQUEST_CLOSED = 0x87,             /* Claim once the bond was settled for the last time */
  ERR_ZERO_PAYOUT = 0x88,
  ERR_NOT_CLAIMED = 0x89,                /* SubmitResult v2 / ExpireClaim without a running claim */
  ERR_NOT_CLAIMANT = 0x8a,               /* SubmitResult v2 by another signer than the claimant */
  ERR_CLAIM_DEADLINE_PASSED = 0x8b,
  ERR_CLAIM_MISMATCH = 0x8c,             /* the result's claimant, payout or price is not the claim's */
  ERR_CLAIM_NOT_EXPIRED = 0x8d,
  ERR_NO_RESULT_PENDING = 0x8e,          /* ReleaseBond without a result waiting for a verdict */
  ERR_RECIPIENT_WRONG = 0x8f,            /* an account paid lamports is not the one the record names */
  ERR_RECIPIENT_CANNOT_RECEIVE = 0x90,   /* an account paid lamports is executable */
  ERR_NOTHING_TO_WITHDRAW = 0x91,
  ERR_RECIPIENT_BELOW_RENT = 0x92,       /* Withdraw: the credit would leave it below rent exemption */
  ERR_VERDICT_MALFORMED = 0x93,          /* PROOF_ATTESTATION v2 layout (CheckPayload only) */
  ERR_RESULT_RECEIPT_WRONG_ADDRESS = 0x94, /* verdict delivery: not ["delivered", result_id] */
  ERR_TASK_NONCE_USED = 0x95,            /* RequestTask v2: the task account exists already */
  ERR_TASK_ACCOUNT_WRONG = 0x96,         /* delivery: not the v2 task / serve account of the request */
  ERR_TASK_NOT_SETTLED = 0x97,           /* CloseTask / CloseServe before the record was settled */
  ERR_CREDITS_OUTSTANDING = 0x98,        /* CloseTask / CloseServe while a credit waits for Withdraw */

  /* 0x70..0x7F: feeds (feeds.c) */
  ERR_FEED_REPORT_MALFORMED = 0x70,   /* data is not tag | attestation (133) | report (122) */
  ERR_FEED_ID_INVALID = 0x71,         /* not 1..32 printable ASCII bytes followed by zero padding */
  ERR_FEED_DECIMALS_INVALID = 0x72,   /* decimals > 18 */
  ERR_FEED_NO_OBSERVATIONS = 0x73,    /* observations == 0 */
  ERR_FEED_WRONG_ADDRESS = 0x74,      /* the feed account is not the PDA ["feed", feed_id] */
  ERR_FEED_STALE_ROUND = 0x75,        /* round <= stored round, or observed_at < stored */
  ERR_FEED_DECIMALS_CHANGED = 0x76,   /* decimals differ from the stored feed's */
  ERR_FEED_ACCOUNT_INVALID = 0x77,    /* owned by this program but not a feed account */
  ERR_FEED_OBSERVED_AFTER_PUBLISHED = 0x78, /* observed_at > published_at + FEED_MAX_OBSERVED_AFTER_PUBLISHED_MS */
  ERR_FEED_AHEAD_OF_CLOCK = 0x79,     /* observed_at or published_at > Clock unix time + FEED_MAX_AHEAD_OF_CLOCK_MS */
  ERR_FEED_ROOT_SIZE_INVALID = 0x7a,  /* a feed root's leaf count outside 1..64 */
  ERR_FEED_NOT_IN_ROOT = 0x7b,        /* a report's proof has the wrong length or leads to another root */
  ERR_FEED_ROOT_WRONG_ADDRESS = 0x7c, /* not the PDA ["feedroot", root] */
  ERR_FEED_ROOT_ALREADY_VERIFIED = 0x7d,
  ERR_FEED_ROOT_NOT_VERIFIED = 0x7e,  /* not a live feed-root account (never verified, or closed) */

  /* 0xA0..0xAF: batches, closing receipts and roots (batch.c) */
  ERR_BATCH_SIZE_INVALID = 0xa0,     /* leaf count outside 1..64, or a leaf index past it */
  ERR_PROOF_INVALID = 0xa1,          /* the proof has the wrong length or leads to another root */
  ERR_ROOT_WRONG_ADDRESS = 0xa2,     /* not the PDA ["root", root] */
  ERR_ROOT_ALREADY_VERIFIED = 0xa3,
  ERR_ROOT_NOT_VERIFIED = 0xa4,      /* not a live root account (never verified, or closed) */
  ERR_LANE_MISMATCH = 0xa5,          /* the envelope's src_domain is not the root's */
  ERR_REPLAY_WRONG_ADDRESS = 0xa6,   /* not the replay bitmap PDA of the message's source and window */
  ERR_DELIVERED_AND_CLOSED = 0xa7,   /* delivered before and its receipt closed (bitmap bit set) */
  ERR_RECEIPT_NOT_CLOSABLE = 0xa8,   /* a committee message (src 0) or a delivery to the task board */
  ERR_CLOSE_TOO_EARLY = 0xa9,        /* not the receiver / payer, and the retention period runs */
  ERR_NOT_A_RECEIPT = 0xaa,

  /* 0xB0..0xBF: fees (fees.c) */
  ERR_FEE_WRONG_ADDRESS = 0xb0,  /* the fee account is not the PDA ["fee", dst_domain] of this send */
  ERR_FEE_NOT_CONFIGURED = 0xb1, /* no fee config of this program at that address (SetFeeConfig) */
  ERR_FEE_FEED_MISMATCH = 0xb2,  /* a price feed account is not the one the fee config names */
  ERR_FEE_FEED_INVALID = 0xb3,   /* not a feed account of this program, or no positive price */
  ERR_FEE_PRICE_STALE = 0xb4,    /* a feed price older than the fee config's max age: never a zero fee */
  ERR_FEE_ABOVE_MAX = 0xb5,      /* SendPaid: the quote exceeds the caller's max_fee */
  ERR_FEE_REQUIRED = 0xb6,       /* Send (17) once fees are configured: use SendPaid (29) */
  ERR_VAULT_WRONG_ADDRESS = 0xb7,
  ERR_NOT_BENEFICIARY = 0xb8,    /* ClaimFees by another signer than the vault's beneficiary */
  ERR_NOTHING_TO_CLAIM = 0xb9,
  ERR_FEE_CONFIG_INVALID = 0xba, /* gas_price 0, decimals > 36, a zero or repeated feed, zero beneficiary */
  ERR_FEE_OVERFLOW = 0xbb,       /* the quote does not fit (u64 lamports, 127-bit intermediates) */
};

/* Probe writes only to accounts of exactly this size; no other account type may have it, so a
 * probe can never overwrite program state such as the committee config. */
#define PROBE_ACCOUNT_LEN 32

#define G1_LEN 64
#define G2_LEN 128

/* The signature block shared by RotateCommittee, VerifySignature (and the gateway's deliver):
 * epoch u32 LE | sigma G1 (64) | hint: k u8 | y (32) | y_sqrt (32). */
#define ATTESTATION_LEN (4 + G1_LEN + 1 + 32 + 32)

/* Scratch memory for buffers over the 512-byte stack frame limit. One instruction runs per
 * program invocation, so a fixed layout without an allocator is enough. */
typedef struct {
  SolParameters params;
  u8 pairing_input[2 * (G1_LEN + G2_LEN)];
  u8 group_op_input[2 * G1_LEN];
  u8 group_op_output[G1_LEN];
  u8 cpi_data[64];
  SolAccountMeta cpi_metas[4];
  u8 envelope[82 + 512]; /* Send builds its envelope here (header + MAX_PAYLOAD_LEN) */
  u8 feed_leaves[64 * 32]; /* UpdateFeeds: the leaves, then the levels above, of a feed root */
  const u8 *feed_items[64]; /* UpdateFeedsWithProofs: each item's report */
  u8 feed_bumps[64];        /* the feed PDAs' bumps between the checks and the writes */
} Scratch;

_Static_assert(sizeof(Scratch) <= SOL_HEAP_LEN, "the scratch layout must fit in the default heap");

#define SCRATCH ((Scratch *)SOL_HEAP_START)

#endif
