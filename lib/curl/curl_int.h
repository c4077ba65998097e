/* connroute: libcurl lanes, the module's internal interface (lib/curl/ only).
 *
 * One concern a file (docs/INTERNALS.md, "libcurl lanes"):
 *   lib.c      the libcurl copies in the process and their function tables;
 *              fork; statistics
 *   handles.c  the easy-handle table (the app's own settings per handle),
 *              the option allowlist, recycling of clean handles
 *   shares.c   share pools: checkout, checkin, retire, slot reuse
 *   perform.c  the perform path and the apply/restore of the lane's options
 *   sockets.c  libcurl's socket callbacks: warm sockets, the lane's socket
 *              options, connection counts
 *   retry.c    idempotency, retry budget, backoff
 *   prewarm.c  prewarm_url
 * Each file keeps its per-library state in its own table, indexed by
 * cr_curllib.index. */
#ifndef CR_CURL_INT_H
#define CR_CURL_INT_H

#include <stdatomic.h>
#include <stdint.h>

#include "lanes.h"
#include "config.h"

#define CR_CURL_LIBS_MAX 4

/* ----------------------------------------------------------------- lib.c */

struct cr_curllib {
	const void *id;
	int index;                /* 0 .. CR_CURL_LIBS_MAX-1 */
	char name[128];
	struct cr_curlfns fns;
	int has_maxlifetime;      /* libcurl >= 7.80 */
	int already_connected_ok; /* CURL_SOCKOPT_ALREADY_CONNECTED works (not 7.87-7.88) */
};

/* Before the share SH is cleaned up by the pools' closing: the wait for a
 * server's answer to libcurl's goodbye (FTP, IMAP, POP3, SMTP) is bounded by
 * CR_CURL_CLOSE_RESPONSE_S, not libcurl's default of minutes. */
void cr_curl_lib_bound_close(struct cr_curllib *lib, CURLSH *sh);
#define CR_CURL_CLOSE_RESPONSE_S 1L

/* The registered libraries: index 0 .. cr_curl_lib_count()-1. */
int cr_curl_lib_count(void);
struct cr_curllib *cr_curl_lib_at(int i);

/* Statistics (cr_curl_stats), counted where they happen. */
struct cr_curl_counters {
	atomic_long shares_created, handles_recycled, handles_reused, performs_pooled,
		performs_unpooled, unpooled_no_room, pools_evicted, limit_overflows, retries;
};
extern struct cr_curl_counters cr_curl_ctr;

/* ------------------------------------------------------------- handles.c */

enum cr_curl_method { CR_CURL_M_GET, CR_CURL_M_HEAD, CR_CURL_M_POST, CR_CURL_M_PUT, CR_CURL_M_OTHER };

struct cr_curl_override; /* perform.c */

/* What we know of one easy handle: the app's own settings for everything
 * the lane may override during a perform, so they can be put back. */
struct cr_curl_easy {
	CURL *h;
	struct cr_curllib *lib;
	struct cr_curl_easy *next;

	CURLSH *app_share;
	CURLM *multi;             /* the multi the handle is attached to, or NULL:
				     kept across a reset, never recycled while set */
	long forbid_reuse;
	long app_timeout_ms;
	long app_connect_timeout_ms;
	long app_maxage_s;        /* libcurl default 118 */
	long app_maxlifetime_s;   /* 0 */
	long app_maxconnects;     /* libcurl default 5 */
	long app_sslversion;      /* 0 = default */
	curl_sockopt_callback app_sockopt;
	void *app_sockopt_data;
	int app_opensocket;       /* the app opens its own sockets: no warm ones */
	int app_closesocket;      /* ... or closes them itself: closes not counted */
	curl_xferinfo_callback app_xferinfo;
	void *app_xferinfo_data;
	curl_progress_callback app_progress;
	long app_noprogress;      /* libcurl default 1 */
	int app_bind;             /* INTERFACE or LOCALPORT set: curl binds itself */
	char *errbuf;
	/* CURLOPT_URL, parsed once when set (not on every perform) */
	int url_ok;
	int u_port;
	int u_family;             /* AF_INET/AF_INET6 for an address literal, else AF_UNSPEC */
	uint8_t u_addr[16];
	char u_scheme[16];
	char u_host[CR_HOST_MAX];
	struct curl_slist *resolve;
	struct curl_slist *headers;
	int method;               /* enum cr_curl_method */
	char custom[16];          /* CUSTOMREQUEST, upper-cased; "" if none or too long */
	int custom_set;
	int read_cb;              /* READFUNCTION set: an upload stream we cannot replay */
	int seek_cb;              /* ... unless SEEKFUNCTION lets libcurl rewind it */

	/* Options that leave state surviving curl_easy_reset (cookies,
	 * credentials, HSTS, ...) or that we do not know: not recyclable. */
	int dirty;

	/* during a perform */
	const struct cr_lane *lane;
	struct cr_curl_override *ov; /* what the lane changed (NULL: not an app's handle) */
	int warm_fd;              /* a warm socket handed to libcurl, -1 if none */
	long rht_ms;
	uint64_t rht_ref_ns;      /* when the request was seen sent */
	uint64_t perform_t0_ns;
	long rt_ms;               /* the request deadline in force (0 = none) */
	long ct_ms;
	int rht_fired;
	int rht_relaxed;          /* first byte seen: deadline back to rt_ms */
	int new_conns;            /* sockets libcurl made during this attempt */
	int warm_used;            /* this attempt's connection came from the warm pool */
	int resends;              /* retries of this perform (the access log) */
};

/* The record of a handle we know, or NULL. */
struct cr_curl_easy *cr_curl_handles_get(CURL *h);
void cr_curl_handles_lib_init(int index);
void cr_curl_handles_atfork_child(void);
/* Cleans up LIB's recycled handles (curl_global_cleanup, exit). */
void cr_curl_handles_drain(struct cr_curllib *lib);

/* -------------------------------------------------------------- shares.c */

struct cr_share_pool;

/* One share handle of a pool. The struct is never freed, only reused for a
 * later share: another thread's last-used pointer may still point at it
 * (see shares.c). */
struct cr_curl_share {
	CURLSH *sh;
	struct cr_share_pool *_Atomic pool; /* read without the pool's lock */
	int busy;
	struct cr_curl_share *prev, *next;  /* free list, most recently returned first */
};

/* The pool flavour of a handle's CURLOPT_RESOLVE list (0: none). */
uint64_t cr_curl_shares_flavor(const struct curl_slist *resolve);
/* A share of LANE's pool for FLAVOR, exclusively the caller's until checked
 * in; NULL when none can be had (the perform then runs unpooled). NOW_NS
 * dates the pool's last use (least recently used idle pools make room). */
struct cr_curl_share *cr_curl_shares_checkout(struct cr_curllib *lib, const struct cr_lane *lane,
					      uint64_t flavor, uint64_t now_ns);
void cr_curl_shares_checkin(struct cr_curllib *lib, struct cr_curl_share *s);
void cr_curl_shares_lib_init(int index);
void cr_curl_shares_atfork_child(void);
/* Cleans up LIB's idle shares one by one, which closes their connections
 * the way libcurl closes them (lib.c: exit, curl_global_cleanup), until
 * DEADLINE_NS; shares lent out are left alone. 0 when every pool was
 * emptied, -1 when some share was left (lent out, busy lock, deadline). */
int cr_curl_shares_drain(struct cr_curllib *lib, uint64_t deadline_ns);
/* Shares of LIB lent out now (a perform or a prewarm in flight). */
int cr_curl_shares_lent(struct cr_curllib *lib);

/* ------------------------------------------------------------- perform.c */

/* Changes the handle's CURLOPT_TIMEOUT_MS during a perform (the deadlines of
 * response_header_timeout), recorded so the app's value is put back. */
void cr_curl_perform_set_timeout(struct cr_curl_easy *e, long ms);

/* The smaller of two timeouts where <= 0 means none. */
static inline long cr_curl_min_nonzero(long a, long b)
{
	if (a <= 0)
		return b > 0 ? b : 0;
	if (b <= 0)
		return a;
	return a < b ? a : b;
}

/* ------------------------------------------------------------- sockets.c */

/* libcurl's callbacks; CLIENTP is the handle's struct cr_curl_easy, except
 * for close, whose data is the lane id + 1 (libcurl copies it into each
 * connection: it must never be a pointer that can go stale). */
curl_socket_t cr_curl_sockets_open(void *clientp, curlsocktype purpose, struct curl_sockaddr *a);
int cr_curl_sockets_opt(void *clientp, curl_socket_t fd, curlsocktype purpose);
int cr_curl_sockets_close(void *clientp, curl_socket_t fd);
/* After a perform attempt: counts the connections it made, once each. */
void cr_curl_sockets_count(struct cr_curl_easy *e);

/* --------------------------------------------------------------- retry.c */

/* A request of LANE starts at T (the budget counts requests). */
void cr_curl_retry_note_request(int lane_id, uint64_t t_ns);
/* Should attempt ATTEMPT (0 = the first retry) follow the failure RC? -1 if
 * not, else the pause in ms before it. Takes from the lane's budget when it
 * answers yes. RT_MS is the request deadline (0 = none), T0_NS the start of
 * the first attempt, WAITED_MS the time queued for a limit before it. */
long cr_curl_retry_next(const struct cr_curl_easy *e, const struct cr_lane *lane, unsigned keyflags,
			int attempt, CURLcode rc, long rt_ms, uint64_t t0_ns, long waited_ms);
/* A retry is made now: counted and logged. */
void cr_curl_retry_count(const struct cr_lane *lane, const char *key, int attempt, CURLcode rc);

#endif
