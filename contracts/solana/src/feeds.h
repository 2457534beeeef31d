/* Feed accounts: committee-signed feed reports verified and stored on-chain (docs/FEEDS.md;
 * layout in README.md "Feeds"). */
#ifndef TESSERA_FEEDS_H
#define TESSERA_FEEDS_H

#include "tessera.h"

#define FEED_SEED "feed"
#define FEED_TAG "TESSERA/v1/FEED" /* relay.protocol.TAG_FEED: what the report digest starts with */
#define FEED_EVENT_TAG "TESSERA_FEED" /* first sol_log_data field of an update; the report is the second */

/* FeedReport, 122 bytes, big-endian (docs/FEEDS.md "Byte layouts"). */
#define REPORT_LEN 122
#define RPT_FEED_ID 0
#define RPT_ROUND 32
#define RPT_PRICE 40
#define RPT_CONFIDENCE 72
#define RPT_DECIMALS 104
#define RPT_OBSERVATIONS 105
#define RPT_OBSERVED_AT 106
#define RPT_PUBLISHED_AT 114
#define MAX_FEED_DECIMALS 18

/* Time bounds of an update (docs/FEEDS.md "Time bounds"; relay.feeds.aggregate and FeedStore.sol
 * use the same numbers). Without them a report with observed_at = 2^64 - 1 would freeze the feed:
 * every later report would be older than the stored one. */
#define FEED_MAX_OBSERVED_AFTER_PUBLISHED_MS 60000ULL /* observed_at <= published_at + this */
#define FEED_MAX_AHEAD_OF_CLOCK_MS 120000ULL          /* both times <= Clock unix time (ms) + this */

/* Feed account layout (PDA ["feed", feed_id]); program integers little-endian. See README.md. */
#define FEED_MAGIC 0 /* 8 bytes "TESSFEED" */
#define FEED_VERSION_AT 8
#define FEED_BUMP 9
#define FEED_DECIMALS 10
#define FEED_OBSERVATIONS 11
#define FEED_FLAGS 12 /* bit 0: price fits i128; bit 1: confidence fits u128 */
#define FEED_EPOCH 16
#define FEED_ID 24
#define FEED_ROUND 56
#define FEED_OBSERVED_AT 64
#define FEED_PUBLISHED_AT 72
#define FEED_UPDATED_SLOT 80
#define FEED_UPDATED_UNIX 88
#define FEED_UPDATE_COUNT 96
#define FEED_PRICE_I128 104
#define FEED_CONFIDENCE_U128 120
#define FEED_PRICE_BE 136
#define FEED_CONFIDENCE_BE 168
#define FEED_SIGNATURE 200
#define FEED_LEN 264
#define FEED_VERSION 1

#define FEED_FLAG_PRICE_FITS_I128 1
#define FEED_FLAG_CONFIDENCE_FITS_U128 2
/* bit 2: stored by UpdateFeeds / UpdateFeedsWithProofs: σ is the committee's signature over the feed
 * root that held the report (docs/PROTOCOL.md "Feed roots"), not over the report's own digest. */
#define FEED_FLAG_ROOT_SIGNED 4

/* Feed roots: one committee signature over the reports of a round (relay/feeds/multi.py). */
#define FEED_ROOT_TAG "TESSERA/v1/FEEDROOT" /* TAG_FEED | "ROOT" */
#define FEED_ROOT_SEED "feedroot"           /* ["feedroot", root] */
#define FEED_ROOT_MAX_LEAVES 64
#define FEED_ROOT_RETENTION_SECONDS 86400
/* Feed-root account (integers little-endian). */
#define FROOT_MAGIC 0 /* 8 bytes "TESSFROT" */
#define FROOT_VERSION_AT 8
#define FROOT_BUMP 9
#define FROOT_LEAF_COUNT 10 /* u8 */
#define FROOT_EPOCH 12      /* u32 */
#define FROOT_VERIFIED_AT 16 /* i64 */
#define FROOT_PAYER 24      /* 32: paid the rent, gets it back */
#define FROOT_ROOT 56       /* 32 */
#define FROOT_SIGNATURE 88  /* 64: σ over the feed-root digest */
#define FROOT_LEN 152
#define FROOT_VERSION 1
_Static_assert(FROOT_LEN != PROBE_ACCOUNT_LEN, "probe targets must not be able to alias a feed-root account");

_Static_assert(FEED_LEN != PROBE_ACCOUNT_LEN, "probe targets must not be able to alias a feed account");

u64 feeds_update(SolParameters *params);
u64 feeds_update_many(SolParameters *params);
u64 feeds_verify_root(SolParameters *params);
u64 feeds_update_with_proofs(SolParameters *params);
u64 feeds_close_root(SolParameters *params);

#endif
