/* connroute: the outbound access log, request side (docs/access-log.md,
 * docs/INTERNALS.md "Access log").
 *
 * One record per libcurl request and per routed raw connect() of a lane
 * whose `access_log` is set. The request path fills a fixed-size record in
 * a bounded lock-free ring (many producers, one consumer) and goes on: it
 * never allocates, never locks, never blocks and makes no system call (a
 * thread's first record asks its tid once; a ring filling up wakes the
 * writer once per half ring). When the ring is full, or a producer loses
 * the race for a slot too often, the record is dropped and counted per lane
 * (connroute_access_log_dropped_total): a request is never delayed for its
 * log line. The writer (lib/alog_writer.c, on connroute's own thread) takes
 * the records out, formats them as JSON lines and writes them.
 *
 * Metrics layer (3): it reads the lane's settings (layer 2) and counts
 * drops in the metrics table. */
#ifndef CR_ALOG_H
#define CR_ALOG_H

#include <stdint.h>

#include "config.h"
#include "lane.h"

enum cr_alog_kind { CR_ALOG_HTTP = 1, CR_ALOG_CONNECT = 2 };

/* The "outcome" field. */
enum cr_alog_outcome {
	CR_ALOG_OK = 0,
	CR_ALOG_HTTP_ERROR, /* a response with status >= 400 */
	CR_ALOG_TIMEOUT,
	CR_ALOG_OVERFLOW, /* refused at the lane's max_conns_per_host */
	CR_ALOG_ERROR,
	CR_ALOG_EJECTED, /* a raw connect to an address the lane ejected (lib/health.c) */
	CR_ALOG_BREAKER, /* refused by the lane's open circuit breaker (lib/health.c) */
	CR_ALOG_NOUT
};

/* Durations, in this order in a line. */
enum cr_alog_dur {
	CR_AD_DNS,
	CR_AD_CONNECT,
	CR_AD_TLS,
	CR_AD_TTFB,
	CR_AD_TOTAL,
	CR_AD_QUEUE,
	CR_AD_N
};

/* Strings of a record. */
enum cr_alog_str {
	CR_AS_KEY,
	CR_AS_METHOD,
	CR_AS_SCHEME,
	CR_AS_HOST,
	CR_AS_PATH,
	CR_AS_ERROR,
	CR_AS_PEER,
	CR_AS_N
};

#define CR_ALOG_PATH_MAX 256 /* bytes of url.path kept: a longer path is cut */
#define CR_ALOG_STR      512 /* string bytes per record */
#define CR_ALOG_NOSTR    0xffff

/* One call, as the writer receives it. Durations in ns, -1 = not measured
 * (a reused connection has no connect); strings NUL-terminated in STR. */
struct cr_alog_rec {
	int64_t wall_ns; /* CLOCK_REALTIME at the start of the call */
	int64_t dur_ns[CR_AD_N];
	int32_t status; /* HTTP status, 0 = no response */
	int32_t tid;
	uint16_t lane;                               /* stable lane id */
	uint16_t server_port, peer_port, local_port; /* 0 = unknown */
	uint8_t kind, outcome;
	int8_t reused, warm; /* -1 = unknown */
	uint8_t resends;     /* retries connroute made */
	uint8_t peer_family; /* AF_INET, AF_INET6, 0 = no address (or as text in STR) */
	uint8_t peer_addr[16];
	uint16_t str_off[CR_AS_N]; /* offset in STR, CR_ALOG_NOSTR = absent */
	char str[CR_ALOG_STR];
};

/* What a call site knows about one call. Strings are copied (bounded) into
 * the record; NULL = absent. PATH may hold a query and a fragment: the
 * fragment is never logged, the query only with access_log_query = on. */
struct cr_alog_call {
	const struct cr_lane *lane;
	int kind, outcome;
	const char *key, *method, *scheme, *host, *path, *error;
	int server_port;
	int status;
	int peer_family;       /* 0: no PEER_ADDR */
	const void *peer_addr; /* 4 or 16 bytes, network order */
	const char *peer_text; /* or the address as text (libcurl's PRIMARY_IP) */
	int peer_port, local_port;
	int64_t dur_ns[CR_AD_N]; /* -1 = not measured */
	int reused, warm;        /* -1 = unknown */
	int resends;
};

/* Logs C if its lane logs, the sampling draw keeps it and it is at least
 * access_log_slow slow. errno is preserved. */
void cr_alog_put(const struct cr_alog_call *c);

/* A routed raw connect() of LANE (logging) to D: QUEUE_NS waited for a
 * limit unit, CONNECT_NS in connect (-1: not measured: a non-blocking
 * connect still in progress, a refused one), ERR the errno the app gets (0,
 * EINPROGRESS: fine). FLAGS: */
#define CR_ALOG_F_WARM     1 /* served from the warm pool */
#define CR_ALOG_F_OVERFLOW 2 /* refused at the limit */
#define CR_ALOG_F_EJECTED  4 /* refused: the address is ejected */
#define CR_ALOG_F_BREAKER  8 /* refused: the breaker is open */
void cr_alog_connect_(const struct cr_lane *lane, const char *key, const struct cr_dest *d,
		      uint64_t queue_ns, int64_t connect_ns, int err, int flags);
static inline void cr_alog_connect(const struct cr_lane *lane, const char *key,
				   const struct cr_dest *d, uint64_t queue_ns, int64_t connect_ns,
				   int err, int flags)
{
	if (lane->alog_on)
		cr_alog_connect_(lane, key, d, queue_ns, connect_ns, err, flags);
}

/* The name of an errno value ("ECONNREFUSED"), or NULL. */
const char *cr_alog_errno_name(int err);

/* ------------------------------------------------------------ consumer */

/* Copies up to MAX records, oldest first, into OUT and frees their slots.
 * One consumer at a time: the caller serialises (lib/alog_writer.c). */
size_t cr_alog_take(struct cr_alog_rec *out, size_t max);
/* Records claimed and not yet taken. */
size_t cr_alog_pending(void);
/* Sleeps until the ring is half full or MS milliseconds pass. */
void cr_alog_wait(int ms);
/* N records of lane ID lost (the ring was full, or their output failed):
 * counted in connroute_access_log_dropped_total and for the writer's
 * report. Lines dropped in all for lane ID since the start. */
void cr_alog_drop(int id, uint64_t n);
uint64_t cr_alog_dropped(int id);
/* The writer turns lane ID's logging off while its output cannot be
 * opened (the request path then does not even fill records), and on again. */
void cr_alog_lane_off(int id, int off);

/* Fork child: the parent's records are the parent's to write; threads that
 * were filling slots do not exist here. Async-signal-safe. */
void cr_alog_atfork_child(void);

/* Tests: an empty ring of CAP records (0: the configured size, taken at the
 * first record), drop counts and off flags cleared. Not thread-safe. */
void cr_alog_reset(unsigned cap);
/* The ring's capacity (0 before the first record). */
unsigned cr_alog_capacity(void);

#endif
