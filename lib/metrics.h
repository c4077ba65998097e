/* connroute: per-lane metrics, recorded from hooks, rendered for Prometheus.
 *
 * Lanes are identified by their stable id (cr_lane.id, the same for the same
 * lane name across config reloads), 0 <= id < CR_MAX_LANE_IDS. Recording is
 * lock-free (relaxed atomics on per-lane counters and fixed-bucket
 * histograms) and never allocates: a scrape never blocks a hook. Label sets
 * derived from keys (upstream, priority) are bounded per lane; past the bound
 * they fold into upstream="other". */
#ifndef CR_METRICS_H
#define CR_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "lane.h" /* CR_MAX_LANE_IDS */

enum cr_outcome { CR_OUT_OK = 0, CR_OUT_ERROR, CR_OUT_TIMEOUT, CR_OUT_OVERFLOW, CR_OUT_N };

/* Lane names, for labels (set by the engine when it assigns ids). */
void cr_metrics_set_lane_name(int id, const char *name);

/* Connections: a routed connect() or a new libcurl connection.
 * ok=0: the connect failed. CONNECT_NS 0 = duration unknown (not observed). */
void cr_m_conn_opened(int id, uint64_t connect_ns, int ok);
void cr_m_conn_closed(int id);     /* a routed raw socket closed */
void cr_m_idle(int id, int delta); /* pooled idle connections (libcurl shares at rest) */

/* Limits. */
void cr_m_queued(int id, int delta);       /* waiting for a unit now */
void cr_m_queue_wait(int id, uint64_t ns); /* observed once per wait that happened */
void cr_m_overflow(int id);                /* refused at the limit */

/* Requests (libcurl performs). KEY is the routing key (upstream/priority
 * parsed from it for labels). */
void cr_m_inflight(int id, int delta);
void cr_m_request(int id, const char *key, uint64_t ns, int outcome);
void cr_m_retry(int id, const char *key,
		const char *reason); /* reason: connect|timeout|transport */

/* Warm pools (issue: warm pools). */
void cr_m_warm(int id, int hit);

/* Access log lines lost (ring full, output failing): lib/alog.c. */
void cr_m_alog_dropped(int id, uint64_t n);

/* Resilience (lib/health.c). */
void cr_m_breaker_rejected(int id); /* refused by an open breaker */
void cr_m_retry_throttled(int id);  /* a retry not made: the token bucket is low */
/* The resilience module's state, read at each scrape (registered by it, a
 * higher layer): FN calls EMIT for each ejected address (what 0), each
 * address ever ejected with its ejections (1), each breaker with its state
 * (2). */
typedef void (*cr_m_emit_fn)(void *ctx, int lane, const char *label, int64_t v);
void cr_metrics_set_health(void (*fn)(int what, cr_m_emit_fn emit, void *ctx));

/* Process-wide. */
void cr_m_unmatched(void); /* a key fell back to lane default */
void cr_m_reload(int ok);  /* a config reload: applied or rejected */

/* Prometheus text exposition format 0.0.4 into BUF (NUL-terminated).
 * Returns the length it needed (may exceed CAP: call again bigger). */
size_t cr_metrics_render(char *buf, size_t cap);

/* Tests. */
void cr_metrics_reset(void);

#endif
