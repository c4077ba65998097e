/* connroute: libcurl lanes — one access log line per perform (lib/alog.h). */
#ifndef CR_ALOG_CURL_H
#define CR_ALOG_CURL_H

#include <stdint.h>

#include "curl_int.h"

/* Logs the perform of E in LANE (if the lane logs): RC its result, T_START
 * when it began (ns, monotonic), WAITED_MS queued for a limit. After its last
 * attempt and before the share is detached (libcurl's connection details
 * are read then). OVERFLOW: 1 refused at the limit, 2 by the circuit
 * breaker; nothing performed (the
 * handle's details are a previous transfer's: not read). */
void cr_curl_alog_(struct cr_curl_easy *e, const struct cr_lane *lane, const char *key, CURLcode rc,
		   uint64_t t_start, long waited_ms, int overflow);
static inline void cr_curl_alog(struct cr_curl_easy *e, const struct cr_lane *lane, const char *key,
				CURLcode rc, uint64_t t_start, long waited_ms, int overflow)
{
	if (lane->alog_on)
		cr_curl_alog_(e, lane, key, rc, t_start, waited_ms, overflow);
}

#endif
