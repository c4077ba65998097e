/* connroute: telling the operator what the shim does, once (docs/INTERNALS.md,
 * "Logging"). At info: the first time each lane is used, and each key that
 * matched no lane (once per key: a mistyped key would otherwise fall to lane
 * default silently). At warn: the first limit refusal per lane and
 * destination, at most a few lines a minute in all (the count of every
 * refusal is connroute_limit_overflows_total).
 *
 * Called from the routed paths (route.c, curl/perform.c): lock-free, no
 * allocation; once a lane has been announced, a call is one relaxed load. */
#ifndef CR_NOTICE_H
#define CR_NOTICE_H

#include "config.h"
#include "lane.h"

/* After a lane was picked for KEY (UNMATCHED: the fallback to default). */
void cr_notice_lane(const struct cr_lane *lane, const char *key, int unmatched);

/* A connect or transfer to D refused at the lane's max_conns_per_host:
 * NONBLOCK, at once (EAGAIN); else after queue_timeout. */
void cr_notice_refused(const struct cr_lane *lane, const struct cr_dest *d, int nonblock);

/* Tests: forget what was announced. */
void cr_notice_reset(void);

#endif
