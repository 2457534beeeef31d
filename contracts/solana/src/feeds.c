#include "feeds.h"

/* Not implemented yet. */
u64 feeds_update(SolParameters *params) { (void)params; return ERR_UNKNOWN_INSTRUCTION; }
