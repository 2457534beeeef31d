/* The task board: AI-task requests with lamport escrow, results and attested payouts
 * (docs/TASKS.md; layouts in README.md "Task board"). */
#ifndef TESSERA_TASKBOARD_H
#define TESSERA_TASKBOARD_H

#include "tessera.h"

u64 taskboard_request(SolParameters *params);
u64 taskboard_submit_result(SolParameters *params);
u64 taskboard_reclaim(SolParameters *params);

#endif
