/* connroute: libcurl lanes — pooled, lane-isolated connections for
 * unmodified programs that use the easy interface. The interface the rest of
 * lib/ and shim/ use; lib/curl/curl_int.h is the module's own.
 *
 * Design (see docs/INTERNALS.md, "libcurl lanes"):
 * - a lane owns share handles (CONNECT | SSL_SESSION); a perform checks
 *   one out EXCLUSIVELY and leaves it attached to the handle afterwards
 *   (parked), so the handle keeps its connection exactly as without the
 *   shim; it goes back at cleanup, when the handle's next perform needs
 *   another pool, or when another handle of the pool needs it and the
 *   handle has been idle for a second; a share is attached to one handle
 *   at a time, so never used by two threads at once;
 * - the lane's knobs are applied when they differ from what the handle
 *   holds, and stay between performs where the app cannot observe them; a
 *   lane never loosens what the app asked (the smaller timeout wins);
 * - handles whose state is provably clean are recycled on cleanup (with
 *   their share, by undoing what the app set, or by a reset), anything
 *   else is really cleaned up;
 * - idle pooled connections are bounded per pool (max_idle_per_host) and
 *   closed after idle_timeout by the background thread's periodic sweep;
 * - every libcurl copy loaded in the process (OpenSSL and GnuTLS flavours,
 *   a privately loaded one) has its own function table, pools and lists.
 *
 * Threads: a handle is used by one thread at a time (libcurl's rule); the
 * handle table, pools and free lists are guarded by their own mutexes. */
#ifndef CR_CURL_LANES_H
#define CR_CURL_LANES_H

#define CURL_DISABLE_TYPECHECK   1
/* Apps still use deprecated options (CURLOPT_PUT, PROGRESSFUNCTION...):
 * we must recognise them. */
#define CURL_DISABLE_DEPRECATION 1
#include <curl/curl.h>
#include <stdatomic.h>
#include <stdint.h>

#include "config.h"

/* Share pools per libcurl copy: one per (lane, connection settings,
 * CURLOPT_RESOLVE flavour) in use. When all are busy a perform runs
 * unpooled (counted in unpooled_no_room, logged once). */
#define CR_CURL_SHARE_POOLS_MAX 128

/* The functions of one loaded libcurl. */
struct cr_curlfns {
	CURL *(*easy_init)(void);
	CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
	CURLcode (*easy_perform)(CURL *);
	void (*easy_cleanup)(CURL *);
	void (*easy_reset)(CURL *);
	CURL *(*easy_duphandle)(CURL *);
	CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
	CURLSH *(*share_init)(void);
	CURLSHcode (*share_setopt)(CURLSH *, CURLSHoption, ...);
	CURLSHcode (*share_cleanup)(CURLSH *);
	curl_version_info_data *(*version_info)(CURLversion);
	/* Optional (NULL in a libcurl without them). */
	CURLcode (*easy_upkeep)(CURL *);
	CURLHcode (*easy_header)(CURL *, const char *, size_t, unsigned int, int,
				 struct curl_header **);
	struct curl_header *(*easy_nextheader)(CURL *, unsigned int, int, struct curl_header *);
	/* The hooks below only pass through (and keep records): optional for
	 * lib/ (unit tests leave them NULL), always found by the shim. */
	CURLM *(*multi_init)(void);
	CURLMcode (*multi_add_handle)(CURLM *, CURL *);
	CURLMcode (*multi_remove_handle)(CURLM *, CURL *);
	CURLMcode (*multi_cleanup)(CURLM *);
	void (*global_cleanup)(void);
	/* The multi calls that drive transfers (multi.c); multi_poll,
	 * multi_socket_all and multi_socket may be NULL (older or newer
	 * libcurl). */
	CURLMcode (*multi_setopt)(CURLM *, CURLMoption, ...);
	CURLMcode (*multi_perform)(CURLM *, int *);
	CURLMcode (*multi_socket_action)(CURLM *, curl_socket_t, int, int *);
	CURLMcode (*multi_socket_all)(CURLM *, int *);
	CURLMcode (*multi_socket)(CURLM *, curl_socket_t, int *);
	CURLMcode (*multi_wait)(CURLM *, struct curl_waitfd *, unsigned, int, int *);
	CURLMcode (*multi_poll)(CURLM *, struct curl_waitfd *, unsigned, int, int *);
	CURLMcode (*multi_timeout)(CURLM *, long *);
	CURLMsg *(*multi_info_read)(CURLM *, int *);
	CURLMcode (*multi_fdset)(CURLM *, fd_set *, fd_set *, fd_set *, int *);
};

struct cr_curllib; /* one per loaded libcurl */

/* lib.c. Registers a libcurl copy (its functions must all be non-NULL
 * except version_info). Returns NULL when the table is full. */
struct cr_curllib *cr_curl_lib_add(const void *id, const struct cr_curlfns *fns, const char *name);
struct cr_curllib *cr_curl_lib_find(const void *id);
const struct cr_curlfns *cr_curl_lib_fns(const struct cr_curllib *lib);
/* The library a known handle belongs to, or NULL. Inline for the hooks:
 * the handle this thread looked up last is remembered (handles.c), valid
 * while no handle record was freed since (cr_curl_easy_gen). */
struct cr_curllib *cr_curl_lib_of_slow(CURL *h);
extern __thread CURL *cr_curl_tls_h;
extern __thread struct cr_curllib *cr_curl_tls_lib;
extern __thread unsigned long cr_curl_tls_gen;
extern atomic_ulong cr_curl_easy_gen;
static inline struct cr_curllib *cr_curl_lib_of(CURL *h)
{
	if (h == cr_curl_tls_h &&
	    cr_curl_tls_gen == atomic_load_explicit(&cr_curl_easy_gen, memory_order_acquire))
		return cr_curl_tls_lib;
	return cr_curl_lib_of_slow(h);
}

/* fork: the child must never use the parent's pooled connections (the
 * sockets are shared with the parent). Abandons every pool and free list. */
void cr_curl_atfork_child(void);

/* handles.c: multi membership, recorded by the shim's curl_multi_* hooks
 * (and multi.c) for the handles we know (docs/INTERNALS.md, "libcurl
 * lanes", handle recycling): a handle attached to a multi is never
 * recycled. */
void cr_curl_multi_added(CURLM *m, CURL *h);
void cr_curl_multi_removed(CURLM *m, CURL *h);
/* M is gone (curl_multi_cleanup): libcurl left its easy handles alone,
 * detached. */
void cr_curl_multi_gone(CURLM *m);

/* multi.c: transfers driven by the app's multi handles run in lanes
 * (docs/INTERNALS.md, "libcurl lanes", multi transfers). A multi is known
 * from the app's first add of a handle we know (or its setopt of
 * CURLMOPT_TIMERFUNCTION/TIMERDATA) while READY; any other (libcurl's
 * private multi of an easy perform) costs one relaxed load, or one probe
 * of the table while the process has known multis, and passes through. */
struct cr_mx;
extern atomic_int cr_curl_mx_known;
struct cr_mx *cr_curl_mx_get_slow(CURLM *m);
static inline struct cr_mx *cr_curl_mx_get(CURLM *m)
{
	if (!atomic_load_explicit(&cr_curl_mx_known, memory_order_relaxed))
		return NULL;
	return cr_curl_mx_get_slow(m);
}
struct cr_curllib *cr_curl_mx_lib(const struct cr_mx *x);
/* The app adds H to M (READY, not libcurl's own add): routed if we know
 * H; M becomes known. Does the real add (or queues the transfer). */
CURLMcode cr_curl_mx_add(struct cr_curllib *lib, CURLM *m, CURL *h);
/* The calls on a known multi X: each does what the real call does, after
 * and before pumping X's queue (completions, admissions, expiries). */
CURLMcode cr_curl_mx_remove(struct cr_mx *x, CURL *h);
CURLMcode cr_curl_mx_cleanup(struct cr_mx *x); /* X is freed */
CURLMcode cr_curl_mx_perform(struct cr_mx *x, int *running);
CURLMcode cr_curl_mx_socket_action(struct cr_mx *x, curl_socket_t s, int ev, int *running);
CURLMcode cr_curl_mx_socket_all(struct cr_mx *x, int *running);
CURLMcode cr_curl_mx_wait(struct cr_mx *x, struct curl_waitfd *fds, unsigned n, int timeout_ms,
			  int *numfds, int poll);
CURLMcode cr_curl_mx_timeout(struct cr_mx *x, long *ms);
CURLMcode cr_curl_mx_fdset(struct cr_mx *x, fd_set *r, fd_set *w, fd_set *ex, int *max_fd);
CURLMsg *cr_curl_mx_info_read(struct cr_mx *x, int *msgs_in_queue);
/* A call on X that runs the app's callbacks (perform, socket_action,
 * socket_all, wait/poll) was left by longjmp, siglongjmp or pthread_exit:
 * called from glibc's unwinding (a cleanup buffer of the hook), maybe in a
 * signal handler; stores only. */
void cr_curl_mx_left(struct cr_mx *x);
/* The multi left on this thread, not settled yet: settled by its next
 * multi pump or add, and by its next easy perform (the program may never
 * call the multi again while its units block the easy transfers). */
extern __thread struct cr_mx *cr_curl_mx_left_x;
void cr_curl_mx_settle_left(void);
static inline void cr_curl_mx_left_check(void)
{
	if (__builtin_expect(cr_curl_mx_left_x != NULL, 0))
		cr_curl_mx_settle_left();
}
/* The app's curl_multi_setopt of CURLMOPT_TIMERFUNCTION or TIMERDATA (P):
 * M becomes known, the app's callback is wrapped. */
CURLMcode cr_curl_mx_setopt(struct cr_curllib *lib, CURLM *m, CURLMoption opt, void *p);

/* lib.c. Pooled connections are closed by libcurl, as the app's own
 * curl_easy_cleanup would have closed them (docs/INTERNALS.md, "libcurl
 * lanes", closing the pools): at exit (armed once per library by its first
 * perform, so the handler runs before the TLS library's own exit handlers),
 * and at the app's curl_global_cleanup (LIB's pools). Never while a perform is
 * in flight anywhere (cr_curl_performing), nor in a vfork child; bounded in
 * time. */
void cr_curl_exit_arm(struct cr_curllib *lib);
void cr_curl_drain(struct cr_curllib *lib);
/* Performs in flight in the process, routed or not (the shim's perform hook
 * counts them). */
extern atomic_int cr_curl_performing;

/* handles.c and perform.c: the easy calls, engine side. Each does what the
 * real call does, plus the lane's work. */
CURL *cr_curl_init(struct cr_curllib *lib);
CURLcode cr_curl_setopt(struct cr_curllib *lib, CURL *h, CURLoption opt, void *ptr, long lval,
			curl_off_t oval);
CURLcode cr_curl_perform(struct cr_curllib *lib, CURL *h);

/* A perform left by a jump (docs/INTERNALS.md, "libcurl lanes", left by a
 * jump). What one curl_easy_perform holds, as far as a longjmp/siglongjmp
 * out of an app's callback (or pthread_exit) must know: on the stack of
 * the shim's perform hook, filled by perform.c as the perform takes each
 * thing (and cleared as it gives it back). Start it with CR_CURL_PFRAME0. */
struct cr_curl_easy;
struct cr_curl_pframe {
	struct cr_curl_easy *e;      /* the handle's record, once known */
	const struct cr_config *cfg; /* a counted config reference */
	uint32_t slot;               /* a limit unit (0, CR_SLOT_NONE: none) */
	int lane_id;                 /* the lane's inflight gauge was raised (-1: no) */
};
#define CR_CURL_PFRAME0           \
	{                         \
		NULL, NULL, 0, -1 \
	}
CURLcode cr_curl_perform_in(struct cr_curllib *lib, CURL *h, struct cr_curl_pframe *pf);
/* PF's perform was left (called from glibc's unwinding of the hook's
 * cleanup buffer, maybe inside a signal handler): stores and lock-free
 * atomics only. The handle is libcurl's alone from now on (never routed,
 * recycled or set again); what the perform held is given back by the next
 * cr_curl_left_settle. */
void cr_curl_perform_left(struct cr_curl_pframe *pf);
/* Performs left whose units, shares, gauges and config references are not
 * given back yet (any thread's). */
extern atomic_int cr_curl_left_n;
void cr_curl_left_settle(void);
/* The fork child keeps no parent's unit to give back (lib.c). */
void cr_curl_left_atfork_child(void);
/* At the next easy call of any thread (init, perform, cleanup, a multi
 * add), the background thread's next turn and the closing of the pools. */
static inline void cr_curl_left_check(void)
{
	if (__builtin_expect(atomic_load_explicit(&cr_curl_left_n, memory_order_relaxed) != 0, 0))
		cr_curl_left_settle();
}
void cr_curl_cleanup(struct cr_curllib *lib, CURL *h);
void cr_curl_reset(struct cr_curllib *lib, CURL *h);
CURL *cr_curl_duphandle(struct cr_curllib *lib, CURL *h);
CURLcode cr_curl_getinfo(struct cr_curllib *lib, CURL *h, CURLINFO info, void *arg);
CURLcode cr_curl_upkeep(struct cr_curllib *lib, CURL *h);
CURLHcode cr_curl_header(struct cr_curllib *lib, CURL *h, const char *name, size_t index,
			 unsigned int origin, int request, struct curl_header **hout);
struct curl_header *cr_curl_nextheader(struct cr_curllib *lib, CURL *h, unsigned int origin,
				       int request, struct curl_header *prev);

/* A handle leaves the easy interface (curl_multi_add_handle): the app's
 * values of every option the lane set go back on it and its share goes
 * back to its pool, so the multi interface sees exactly the app's handle. */
void cr_curl_unroute(struct cr_curllib *lib, CURL *h);

/* shares.c. The background thread's periodic job (registered at init with
 * cr_periodic_register): closes pooled connections idle for the lane's
 * idle_timeout, keeps every pool within max_idle_per_host idle shares,
 * cleans up recycled handles unused for idle_timeout. Never touches a share
 * checked out or on a handle the app holds. */
void cr_curl_idle_sweep(void);
/* Tests: how long a handle must not have performed before another handle of
 * its pool may take its share (default 1000 ms); the sweep's pace (default
 * every 250 ms). */
void cr_curl_set_steal_idle_ms(long ms);
void cr_curl_set_sweep_every_ms(long ms);
/* 1 if this process may pool libcurl connections (some lane pools them with
 * an idle timeout): the background thread must then run for the sweep. */
int cr_curl_idle_wanted(void);

/* handles.c. Parses [scheme://][user@]host[:port]/... into lowercase scheme
 * (without "scheme://", libcurl's guess from the host name: ftp., dict.,
 * ldap., imap., smtp., pop3., else http) and host, and a port (default
 * 80/443 by scheme). 0 or -1. Exposed for tests. */
int cr_curl_parse_url(const char *url, char *scheme, size_t slen, char *host, size_t hlen,
		      int *port);

/* prewarm.c. prewarm_url: fills each lane's pools with whole connections
 * (TLS included). Called on the warm-pool thread after a config change or
 * when a libcurl copy is first seen. */
void cr_curl_prewarm(const struct cr_config *cfg);

/* lib.c. Statistics for tests and metrics. */
struct cr_curl_stats {
	long shares_created;
	long handles_recycled;
	long handles_reused;
	long performs_pooled;
	long performs_unpooled;
	long unpooled_no_room; /* of which: no pool slot or share left (all busy) */
	long pools_evicted;    /* idle pools closed to make room for another */
	long limit_overflows;
	long retries;
	long shares_taken;       /* from idle handles for another handle of the pool */
	long shares_closed_idle; /* closed by the idle bound or the idle_timeout sweep */
	long recycled_lazy;      /* recycled by undoing what the app set (no reset) */
	long twins;              /* stale handles answered by a twin */
};
void cr_curl_stats(struct cr_curl_stats *out);

/* A new config was published: pools whose lane is gone or changed stop
 * lending (their idle shares are destroyed once nobody holds them). */
void cr_curl_shares_retire(const struct cr_config *cfg);

#endif
