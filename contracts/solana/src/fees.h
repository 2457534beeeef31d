/* Delivery fees (issue 14 item 3): the per-destination fee config (PDA ["fee", dst_domain u32 LE]),
 * the fee vault (PDA ["fee_vault"]), SetFeeConfig / SetBeneficiary / ClaimFees and SendPaid.
 * Layouts are documented in README.md ("Fees"); keep the two in step. */
#ifndef TESSERA_FEES_H
#define TESSERA_FEES_H

#include "tessera.h"

#define FEE_SEED "fee"
#define FEE_VAULT_SEED "fee_vault"
#define FEE_EVENT_TAG "TESSERA_FEE" /* sol_log_data fields: tag, message_id (32), fee lamports u64 LE */

/* Fee config account layout (integers little-endian). */
#define FEE_MAGIC 0 /* 8 bytes "TESSFEEC" */
#define FEE_VERSION_AT 8
#define FEE_BUMP 9
#define FEE_DST_DECIMALS 10 /* u8: decimals of the destination's native token (18 for ETH) */
#define FEE_DST_DOMAIN 12   /* u32 */
#define FEE_GAS_PRICE 16    /* u64: destination smallest units (wei) per gas */
#define FEE_BASE_GAS 24     /* u64 */
#define FEE_GAS_PER_BYTE_MILLI 32 /* u64: gas per payload byte, x 1000 */
#define FEE_MARGIN_BPS 40   /* u16 */
#define FEE_MAX_AGE 44      /* u32: seconds a feed price may be old */
#define FEE_DST_FEED 48     /* 32: the feed account (this program's) of the destination token's price */
#define FEE_SOL_FEED 80     /* 32: the feed account of SOL's price, same quote currency */
#define FEE_UPDATED_AT 112  /* i64 */
#define FEE_LEN 120
#define FEE_VERSION 1

/* Fee vault layout. Its lamports above rent are the fees collected and not claimed yet. */
#define VAULT_MAGIC 0 /* 8 bytes "TESSVALT" */
#define VAULT_VERSION_AT 8
#define VAULT_BUMP 9
#define VAULT_BENEFICIARY 16 /* 32: zero until SetBeneficiary */
#define VAULT_COLLECTED 48   /* u64: lamports charged by SendPaid, all time */
#define VAULT_LEN 56
#define VAULT_VERSION 1

u64 fees_set_config(SolParameters *params);
u64 fees_set_beneficiary(SolParameters *params);
u64 fees_claim(SolParameters *params);
u64 fees_send_paid(SolParameters *params);
u64 fees_check_quote(SolParameters *params);

#endif
