#include "taskboard.h"

/* Not implemented yet. */
u64 taskboard_request(SolParameters *params) { (void)params; return ERR_UNKNOWN_INSTRUCTION; }
u64 taskboard_submit_result(SolParameters *params) { (void)params; return ERR_UNKNOWN_INSTRUCTION; }
u64 taskboard_reclaim(SolParameters *params) { (void)params; return ERR_UNKNOWN_INSTRUCTION; }
