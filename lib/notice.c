/* connroute: once-per-lane, once-per-key and rate-limited notices; see notice.h. */
#include <arpa/inet.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "base.h"
#include "key.h"
#include "log.h"
#include "notice.h"

#define KEYS_MAX        64  /* unmatched keys announced; then one line says so */
#define REFUSED_MAX     256 /* (lane, destination) pairs announced */
#define REFUSED_PER_MIN 10  /* refusal lines per minute, in all */

static atomic_uchar lane_seen[CR_MAX_LANE_IDS];
static _Atomic uint64_t keys_seen[KEYS_MAX];
static atomic_int keys_full;
static _Atomic uint64_t refused_seen[REFUSED_MAX];
static _Atomic int64_t window_start; /* ms of the current minute of refusal lines */
static atomic_int window_lines;

/* Claims H (not 0) in TABLE: 1 if it is new, 0 if seen (or the table is full, -1). */
static int claim(_Atomic uint64_t *table, int n, uint64_t h)
{
	for (int i = 0, at = (int)(h % (uint64_t)n); i < n; i++, at = (at + 1) % n) {
		uint64_t cur = atomic_load_explicit(&table[at], memory_order_relaxed);
		if (cur == h)
			return 0;
		if (cur == 0) {
			if (atomic_compare_exchange_strong(&table[at], &cur, h))
				return 1;
			if (cur == h)
				return 0;
		}
	}
	return -1;
}

void cr_notice_lane(const struct cr_lane *lane, const char *key, int unmatched)
{
	int id = lane->id;
	if (id >= 0 && id < CR_MAX_LANE_IDS &&
	    !atomic_load_explicit(&lane_seen[id], memory_order_relaxed) &&
	    !atomic_exchange(&lane_seen[id], 1))
		cr_logmsg(CR_LL_INFO, "lane %s: first use (key '%.127s')", lane->name,
			  key ? key : "");
	if (!unmatched || !key || !strcmp(key, "default"))
		return;
	size_t klen = cr_key_flags(key, NULL);
	uint64_t h = cr_fnv64(CR_FNV64_INIT, key, klen) | 1; /* never 0: 0 is a free slot */
	int r = claim(keys_seen, KEYS_MAX, h);
	if (r > 0)
		cr_logmsg(CR_LL_INFO,
			  "key '%.*s' matches no lane: using lane default (a typo? "
			  "`connroute check FILE --key %.*s` shows why)",
			  (int)klen, key, (int)klen, key);
	else if (r < 0 && !atomic_exchange(&keys_full, 1))
		cr_logmsg(CR_LL_INFO,
			  "more than %d keys matched no lane; no more are listed "
			  "(connroute_unmatched_keys_total counts them)",
			  KEYS_MAX);
}

static void dest_text(const struct cr_dest *d, char *buf, size_t n)
{
	char a[INET6_ADDRSTRLEN] = "?";
	if (d->host && d->host[0])
		snprintf(buf, n, "%.200s:%u", d->host, (unsigned)d->port);
	else if (d->family == AF_INET6 && inet_ntop(AF_INET6, d->addr, a, sizeof(a)))
		snprintf(buf, n, "[%s]:%u", a, (unsigned)d->port);
	else if (d->family == AF_INET && inet_ntop(AF_INET, d->addr, a, sizeof(a)))
		snprintf(buf, n, "%s:%u", a, (unsigned)d->port);
	else
		snprintf(buf, n, "?:%u", (unsigned)d->port);
}

/* At most REFUSED_PER_MIN lines a minute: a storm of refusals to many
 * destinations must not become a storm of log lines. */
static int may_log(void)
{
	int64_t now = cr_now_ms(),
		start = atomic_load_explicit(&window_start, memory_order_relaxed);
	if (now - start >= 60000 && atomic_compare_exchange_strong(&window_start, &start, now))
		atomic_store(&window_lines, 0);
	return atomic_fetch_add(&window_lines, 1) < REFUSED_PER_MIN;
}

void cr_notice_refused(const struct cr_lane *lane, const struct cr_dest *d, int nonblock)
{
	uint64_t h = cr_fnv64(CR_FNV64_INIT, &lane->id, sizeof(lane->id));
	h = cr_fnv64(h, &d->port, sizeof(d->port));
	if (d->host)
		h = cr_fnv64(h, d->host, strlen(d->host));
	else
		h = cr_fnv64(h, d->addr, sizeof(d->addr));
	h |= 1;
	for (int i = 0; i < REFUSED_MAX; i++) { /* seen: one relaxed load per probe */
		uint64_t cur = atomic_load_explicit(&refused_seen[(h + (uint64_t)i) % REFUSED_MAX],
						    memory_order_relaxed);
		if (cur == h)
			return;
		if (cur == 0)
			break;
	}
	if (!may_log() || claim(refused_seen, REFUSED_MAX, h) <= 0)
		return;
	char dest[240];
	dest_text(d, dest, sizeof(dest));
	if (nonblock)
		cr_logmsg(
			CR_LL_WARN,
			"lane %s: a non-blocking connect to %s failed with EAGAIN: the lane "
			"is at max_conns_per_host = %ld for it (further refusals for this lane and "
			"destination are counted in connroute_limit_overflows_total, not logged)",
			lane->name, dest, lane->max_conns_per_host);
	else
		cr_logmsg(CR_LL_WARN,
			  "lane %s: a connection to %s waited queue_timeout = %ldms and was "
			  "refused: the lane is at max_conns_per_host = %ld for it (further "
			  "refusals for "
			  "this lane and destination are counted in "
			  "connroute_limit_overflows_total, not "
			  "logged)",
			  lane->name, dest, lane->queue_timeout_ms, lane->max_conns_per_host);
}

void cr_notice_reset(void)
{
	for (int i = 0; i < CR_MAX_LANE_IDS; i++)
		atomic_store(&lane_seen[i], 0);
	for (int i = 0; i < KEYS_MAX; i++)
		atomic_store(&keys_seen[i], 0);
	for (int i = 0; i < REFUSED_MAX; i++)
		atomic_store(&refused_seen[i], 0);
	atomic_store(&keys_full, 0);
	atomic_store(&window_start, 0);
	atomic_store(&window_lines, 0);
}
