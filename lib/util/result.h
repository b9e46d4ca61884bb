/* result.h - internal facts about kvtc_result that the public header does
 * not promise. */
#ifndef KVTC_UTIL_RESULT_H
#define KVTC_UTIL_RESULT_H

#include "kvtc.h"

/* Number of result codes this library knows (codes are 0..KVI_RESULT_COUNT-1).
 * Internal on purpose: a public count would change with every new code. */
#define KVI_RESULT_COUNT ((int)KVTC_ERR_BAD_BLOCK_TABLE + 1)

#endif
