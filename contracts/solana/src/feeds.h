/* Feed accounts: committee-signed feed reports verified and stored on-chain (docs/FEEDS.md;
 * layout in README.md "Feeds"). */
#ifndef TESSERA_FEEDS_H
#define TESSERA_FEEDS_H

#include "tessera.h"

u64 feeds_update(SolParameters *params);

#endif
