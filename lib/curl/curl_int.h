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
#include "lane.h"

#define CR_CURL_LIBS_MAX 4

/* ----------------------------------------------------------------- lib.c */

struct cr_curllib {
	const void *id;
	int index; /* 0 .. CR_CURL_LIBS_MAX-1 */
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
		performs_unpooled, unpooled_no_room, pools_evicted, limit_overflows, retries,
		shares_taken, shares_closed_idle, recycled_lazy, twins;
};
extern struct cr_curl_counters cr_curl_ctr;

/* ------------------------------------------------------------- handles.c */

enum cr_curl_method {
	CR_CURL_M_GET,
	CR_CURL_M_HEAD,
	CR_CURL_M_POST,
	CR_CURL_M_PUT,
	CR_CURL_M_OTHER
};

/* The options a lane may set on an app's handle (perform.c's table), in the
 * order they are applied. For each, the handle's record keeps the app's own
 * value and the value libcurl holds now (docs/INTERNALS.md, "libcurl
 * lanes": the lane's settings). */
enum cr_ov {
	OV_CONNECTTIMEOUT,
	OV_TIMEOUT,
	OV_MAXAGE,
	OV_MAXLIFETIME,
	OV_SSLVERSION,
	OV_SOCKOPTFUNCTION,
	OV_SOCKOPTDATA,
	OV_CLOSESOCKETFUNCTION,
	OV_CLOSESOCKETDATA,
	OV_OPENSOCKETFUNCTION,
	OV_OPENSOCKETDATA,
	OV_PROGRESSFUNCTION,
	OV_XFERINFOFUNCTION,
	OV_XFERINFODATA,
	OV_NOPROGRESS,
	OV_MAXCONNECTS,
	OV_SHARE,
	OV_HAPPY, /* HAPPY_EYEBALLS_TIMEOUT_MS: short while a host has an ejected address */
	OV_N
};
typedef void (*cr_ov_func)(void);
union cr_ov_val {
	long l;
	void *p;
	cr_ov_func f;
};

/* The pin of a handle (struct cr_curl_easy.pin): who may touch its libcurl
 * state and its record right now. */
enum { CR_PIN_FREE, CR_PIN_CALL, CR_PIN_TAKE };

/* Options we know (handles.c's table): at most 128, one bit each. */
#define CR_CURL_OPT_WORDS 2
/* Pure string options whose value we keep (CAINFO, CAPATH, USERAGENT). */
#define CR_CURL_PURE_STRS 3
#define CR_CURL_STR_MAX   256

struct cr_curl_share;

/* Addresses one attempt may try that resil.c remembers (libcurl's fallback
 * through a name's addresses). */
#define CR_CURL_TRIED_MAX 8

/* What we know of one easy handle. The fields up to `h` are the app's
 * settings of the handle's current life (zeroed, then set to libcurl's
 * defaults, by curl_easy_reset and when a recycled handle starts a new
 * life); `h` and what follows last as long as the handle. */
struct cr_curl_easy {
	/* ---- the app's settings (this life) */
	CURLSH *app_share;
	long forbid_reuse;
	long app_timeout_ms;
	long app_connect_timeout_ms;
	long app_maxage_s;      /* libcurl default 118 */
	long app_maxlifetime_s; /* 0 */
	long app_maxconnects;   /* libcurl default 5 */
	long app_happy_ms;      /* HAPPY_EYEBALLS_TIMEOUT_MS, libcurl default 200 */
	long app_sslversion;    /* 0 = default */
	curl_sockopt_callback app_sockopt;
	void *app_sockopt_data;
	cr_ov_func app_opensocket_fn; /* the app opens its own sockets: no warm ones */
	void *app_opensocket_data;
	cr_ov_func app_closesocket_fn; /* ... or closes them itself: closes not counted */
	void *app_closesocket_data;
	curl_xferinfo_callback app_xferinfo;
	void *app_xferinfo_data;
	curl_progress_callback app_progress;
	int app_progress_on; /* libcurl calls a progress callback: the last of
				     PROGRESSFUNCTION / XFERINFOFUNCTION set was not NULL */
	long app_noprogress; /* libcurl default 1 */
	int app_bind;        /* INTERFACE or LOCALPORT set: curl binds itself */
	int connect_only;    /* CONNECT_ONLY 1 or 2: never pooled */
	int upkeep_set;      /* UPKEEP_INTERVAL_MS: never pooled */
	char *errbuf;
	struct curl_slist *resolve;
	struct curl_slist *headers;
	int method;      /* enum cr_curl_method */
	char custom[16]; /* CUSTOMREQUEST, upper-cased; "" if none or too long */
	int custom_set;
	int read_cb; /* READFUNCTION set: an upload stream we cannot replay */
	int seek_cb; /* ... unless SEEKFUNCTION lets libcurl rewind it */
	uint64_t set_now[CR_CURL_OPT_WORDS]; /* options (handles.c's index) set in this life */

	/* ---- the handle's own, for its whole existence */
	CURL *h;
	struct cr_curllib *lib;
	struct cr_curl_easy *next;
	atomic_int pin;     /* CR_PIN_*: see cr_curl_pin() */
	CURLM *multi;       /* the multi the handle is attached to, or NULL:
				     kept across a reset, never recycled while set */
	struct cr_mxt *mxt; /* its transfer in a multi we route (multi.c), or NULL;
			       only the thread driving that multi touches it */
	CURLMsg mx_msg;     /* the CURLMSG_DONE multi.c hands out for it: lives as long
			       as the handle, as libcurl's own (docs/INTERNALS.md,
			       "Multi transfers", messages) */

	/* Options that leave state surviving curl_easy_reset (cookies,
	 * credentials, HSTS, ...) or that we do not know: not recyclable. */
	int dirty;
	int performed;  /* some perform ran on it (results to hide from a new life) */
	int stale;      /* recycled, not performed since: the last life's results */
	int life_reset; /* this life must end with a real curl_easy_reset */
	int left;       /* a perform of it was left by a jump: libcurl's alone
			   (perform.c, cr_curl_perform_left) */
	/* The share parked on it when left: out of its pool before the record is freed. */
	struct cr_curl_share *left_share;
	uint64_t set_prev[CR_CURL_OPT_WORDS]; /* set in the last life, not put back yet */
	CURL *twin;                           /* answers getinfo/header of a stale handle */
	atomic_int in_freelist;               /* recycled, waiting for curl_easy_init */
	uint64_t freed_ns;                    /* when it was recycled */

	/* libcurl's value of each pure option (handles.c), where known */
	uint64_t lib_known[CR_CURL_OPT_WORDS];
	union cr_ov_val lib_val[64 * CR_CURL_OPT_WORDS];
	char lib_str[CR_CURL_PURE_STRS][CR_CURL_STR_MAX];

	union cr_ov_val held[OV_N]; /* the values libcurl holds now */
	unsigned ov_gen;            /* bumped whenever held or the app's value of one changes */
	/* the last apply of a lane's settings: skipped when nothing changed */
	const struct cr_config *ap_cfg;
	unsigned ap_cfgen;
	const struct cr_lane *ap_lane;
	unsigned ap_gen;
	int ap_warm;
	long ap_rt, ap_ct;
	/* the share of the last perform, and the lane and config it was of */
	struct cr_curl_share *sh_share;
	const struct cr_lane *sh_lane;
	const struct cr_config *sh_cfg;
	unsigned sh_cfgen;
	struct cr_curl_share *share; /* our share attached (parked), or NULL */
	unsigned share_fork;         /* shares.c's fork generation when it was attached */
	_Atomic uint64_t last_perform_ns;

	/* CURLOPT_URL, parsed once when it changes (not on every perform) */
	int url_ok;
	unsigned url_gen;
	int u_port;
	int u_family; /* AF_INET/AF_INET6 for an address literal, else AF_UNSPEC */
	uint8_t u_addr[16];
	char u_scheme[16];
	int u_sbit; /* the scheme's bit in pool_schemes (cr_scheme_bit of u_scheme) */
	char u_host[CR_HOST_MAX];
	char url_text[256];    /* the URL parsed last; "" if too long to keep */
	int url_in_state;      /* libcurl's current URL (EFFECTIVE_URL) is url_text: a
				     setopt of the same URL again changes nothing */
	unsigned url_norm_gen; /* url_gen whose transfer left EFFECTIVE_URL ... */
	int url_norm_same;     /* ... equal to url_text (no redirect, nothing normalised) */
	long last_code;        /* the last transfer's response code, if the app asked */
	int last_code_known;

	/* the lane of the last perform, valid for the same config, key and URL */
	const struct cr_config *lc_cfg;
	const struct cr_lane *lc_lane;
	unsigned lc_gen; /* cr_curl_cfg_gen */
	unsigned lc_url_gen;
	int lc_unmatched;
	const char *lc_key_ptr; /* where the key was read */
	int lc_key_const;       /* ... the process default: a constant string */
	char lc_key[CR_KEY_MAX];

	/* during a perform */
	const struct cr_lane
		*lane; /* NULL outside a perform: callbacks then do the app's part only */
	int warm_fd;   /* a warm socket handed to libcurl, -1 if none */
	long rht_ms;
	uint64_t rht_ref_ns; /* when the request was seen sent */
	uint64_t perform_t0_ns;
	long rt_ms; /* the request deadline in force (0 = none) */
	long ct_ms;
	int rht_fired;
	int rht_relaxed; /* first byte seen: deadline back to rt_ms */
	int new_conns;   /* sockets libcurl made during this attempt */
	int warm_used;   /* this attempt's connection came from the warm pool */
	int resends;     /* retries of this perform (the access log) */
	/* resilience (resil.c), per transfer: one handle is one transfer at a
	 * time, whether its perform is ours or a multi's (many transfers on one
	 * thread) */
	uint64_t hl_host; /* the URL's host:port (lib/health.c), set before it starts */
	int hl_ntried;    /* addresses libcurl opened sockets for this attempt */
	struct cr_dest hl_tried[CR_CURL_TRIED_MAX];
};

/* The record of a handle we know, or NULL. */
struct cr_curl_easy *cr_curl_handles_get_slow(CURL *h);
extern __thread struct cr_curl_easy *cr_curl_tls_e;
static inline struct cr_curl_easy *cr_curl_handles_get(CURL *h)
{
	if (h == cr_curl_tls_h &&
	    cr_curl_tls_gen == atomic_load_explicit(&cr_curl_easy_gen, memory_order_acquire))
		return cr_curl_tls_e;
	return cr_curl_handles_get_slow(h);
}
void cr_curl_handles_lib_init(int index);
void cr_curl_handles_atfork_child(void);
/* Cleans up LIB's recycled handles (curl_global_cleanup, exit). */
void cr_curl_handles_drain(struct cr_curllib *lib);

/* The pin. Every hooked call on a handle pins it (CR_PIN_CALL) for its
 * duration; a call nested in a callback finds it pinned already (returns 0:
 * nothing to undo). Another thread that takes a share from an idle handle
 * pins it with CR_PIN_TAKE, which fails while the owner is in a call; an
 * owner entering meanwhile waits (a few setopt calls). Returns what to pass
 * to cr_curl_unpin. */
int cr_curl_pin_slow(struct cr_curl_easy *e);
static inline int cr_curl_pin(struct cr_curl_easy *e)
{
	int x = CR_PIN_FREE;
	if (atomic_compare_exchange_strong_explicit(&e->pin, &x, CR_PIN_CALL, memory_order_acquire,
						    memory_order_relaxed))
		return 1;
	if (x == CR_PIN_CALL)
		return 0;
	return cr_curl_pin_slow(e);
}
static inline void cr_curl_unpin(struct cr_curl_easy *e, int took)
{
	if (took)
		atomic_store_explicit(&e->pin, CR_PIN_FREE, memory_order_release);
}
/* Pins an idle handle for a taker; 0 if its owner is inside a call. */
static inline int cr_curl_pin_take(struct cr_curl_easy *e)
{
	int x = CR_PIN_FREE;
	return atomic_compare_exchange_strong_explicit(&e->pin, &x, CR_PIN_TAKE,
						       memory_order_acquire, memory_order_relaxed);
}

/* Sets an overridable option to V and records that libcurl holds it. */
void cr_curl_hold(struct cr_curl_easy *e, enum cr_ov i, union cr_ov_val v);
/* Puts the app's values back on TARGET (E's handle or a duplicate of it)
 * for every option whose held value is not the app's. */
void cr_curl_put_back(struct cr_curl_easy *e, CURL *target);
/* Records that libcurl holds the app's value of every option (after
 * cr_curl_put_back on the handle itself, or for a new duplicate). */
void cr_curl_held_app(struct cr_curl_easy *e);
/* The options the last life set and this one did not, back to libcurl's
 * defaults; drops the twin. Before anything observes the handle. */
void cr_curl_settle(struct cr_curl_easy *e);
/* libcurl's FOLLOWLOCATION is known to be off (no redirect can change the
 * handle's URL). */
int cr_curl_no_follow(const struct cr_curl_easy *e);
/* Destroys a handle we own entirely (a recycled one nobody holds). */
void cr_curl_handles_destroy(struct cr_curl_easy *e);
/* The recycled handles of LIB not used since BEFORE_NS (at most MAX):
 * taken out of the free list, pinned (CR_PIN_TAKE), for the sweep. */
int cr_curl_handles_take_idle(struct cr_curllib *lib, uint64_t before_ns, struct cr_curl_easy **out,
			      int max);

/* -------------------------------------------------------------- shares.c */

struct cr_share_pool;

/* A share taken from an idle app handle must have been idle this long
 * (docs/INTERNALS.md, "libcurl lanes": when a share goes back, rule 4);
 * cr_curl_set_steal_idle_ms (tests) changes it. */
#define CR_CURL_STEAL_IDLE_MS 1000
extern _Atomic long cr_curl_steal_idle_ms;

enum { CR_SH_FREE, CR_SH_HANDLE };

/* One share handle of a pool. The struct is never freed, only reused for a
 * later share: another thread's last-used pointer may still point at it
 * (see shares.c). Fields are its pool's lock's unless said otherwise. */
struct cr_curl_share {
	CURLSH *sh;
	struct cr_share_pool *_Atomic pool; /* read without the pool's lock */
	int state; /* CR_SH_FREE (in the pool's free list) or CR_SH_HANDLE */
	/* CR_SH_HANDLE: its handle is in our free list. Changed only with the
	 * handle pinned (and read by takers before they pin it, as a hint). */
	atomic_int recycled;
	struct cr_curl_easy *holder;       /* CR_SH_HANDLE: the handle it is attached to */
	_Atomic uint64_t idle_since_ns;    /* free or recycled: since when */
	struct cr_curl_share *prev, *next; /* the pool's free list (most recent first)
					      or its list of shares on handles */
	/* resilience: the (lane, address) keys its connections went to, and the
	 * ejection generation it was last found clean at (lib/health.c) */
	_Atomic uint64_t haddr[4];
	atomic_uint hidx, hgen;
};

/* Resilience: S's connections went to the address of KEY (its owner's
 * thread, after an attempt). */
void cr_curl_shares_note_addr(struct cr_curl_share *s, uint64_t key);
/* Has E's parked share (E pinned by its perform) a connection to an address
 * ejected now? Then _discard closes it (libcurl closes its connections). */
int cr_curl_shares_doomed(const struct cr_curl_easy *e);
void cr_curl_shares_discard(struct cr_curllib *lib, struct cr_curl_easy *e);
/* S was parked on HOLDER (attached in fork generation FORK) when a jump
 * left HOLDER's perform: libcurl's dead transfer keeps its connection in S.
 * S leaves its pool for good, never lent or cleaned up. HOLDER is only
 * compared, never read: it may be gone. */
void cr_curl_shares_abandon(struct cr_curl_share *s, const struct cr_curl_easy *holder,
			    unsigned fork);

/* The pool flavour of a handle's CURLOPT_RESOLVE list (0: none). */
uint64_t cr_curl_shares_flavor(const struct curl_slist *resolve);
/* Does E's share belong to the (live) pool of (LANE, FLAVOR), in this
 * process (not before a fork)? Lock-free: E is pinned by the caller, so
 * its share's pool cannot become another one. */
int cr_curl_shares_fits(const struct cr_curl_easy *e, const struct cr_lane *lane, uint64_t flavor);
/* A share of LANE's pool for FLAVOR for E (pinned by the caller, holding
 * none), attached to it (CURLOPT_SHARE) and parked on it until it goes
 * back; NULL when none can be had (the perform then runs unpooled). NOW_NS
 * dates the pool's last use (least recently used idle pools make room).
 * MAY_TAKE: when no share is free, one may be taken from another handle
 * (docs/INTERNALS.md, "libcurl lanes", rule 4). */
struct cr_curl_share *cr_curl_shares_checkout(struct cr_curllib *lib, struct cr_curl_easy *e,
					      const struct cr_lane *lane, uint64_t flavor,
					      uint64_t now_ns, int may_take);
/* E's share (E pinned) leaves it: detached, and checked in (free) or
 * closed (its pool retired, or already max_idle_per_host idle shares). */
void cr_curl_shares_release(struct cr_curllib *lib, struct cr_curl_easy *e);
/* E (pinned), holding a share, goes into our free list of handles (IN = 1)
 * or comes out of it (IN = 0). Going in, a share beyond its pool's idle
 * bound is released (closed). */
void cr_curl_shares_recycled(struct cr_curllib *lib, struct cr_curl_easy *e, int in,
			     uint64_t now_ns);
/* Is S (on a recycled handle) idle for its pool's idle_timeout, or its
 * pool retired? For the sweep. */
int cr_curl_shares_expired(struct cr_curl_share *s, uint64_t now_ns);
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
 * response_header_timeout), recorded as held. */
void cr_curl_perform_set_timeout(struct cr_curl_easy *e, long ms);

/* The pieces of the perform path the multi interface shares (multi.c):
 * the lane of E for the thread's key (KEY: where it was read); the lane's
 * options on E (returns the request deadline in ms, 0 = none); the limit
 * slot of E's destination in LANE; a transfer refused at the limit
 * (counted, logged, said in the app's error buffer; SHOWN_MS is the wait
 * the message names); an attempt's start and end (response-header
 * deadline, new connections counted; returns the transfer's code). */
const struct cr_lane *cr_curl_lane_for(const struct cr_config *cfg, struct cr_curl_easy *e,
				       const char **key);
long cr_curl_apply_lane(struct cr_curl_easy *e, const struct cr_config *cfg,
			const struct cr_lane *lane, long waited_ms);
uint32_t cr_curl_limit_slot(const struct cr_curl_easy *e, const struct cr_lane *lane);
void cr_curl_limit_refused(struct cr_curl_easy *e, const struct cr_lane *lane, const char *key,
			   uint64_t t_start, long waited_ms, long shown_ms);
void cr_curl_attempt_start(struct cr_curl_easy *e, long rt_ms, uint64_t t0_ns);
CURLcode cr_curl_attempt_end(struct cr_curl_easy *e, CURLcode rc, long rt_ms);

/* --------------------------------------------------------------- multi.c */

struct cr_mxt;
/* curl_easy_perform of a handle in a multi of ours: libcurl's refusal. */
CURLcode cr_curl_mx_easy_perform(struct cr_curllib *lib, struct cr_curl_easy *e);
/* E (pinned or owned by the caller) leaves its multi transfer: the handle
 * is cleaned up (HOW = CR_MX_CLEANUP: really removed from the multi first,
 * everything given back) or reset (CR_MX_RESET: unit, config and lane given
 * back; the share stays on the handle until its removal). */
enum { CR_MX_CLEANUP, CR_MX_RESET };
void cr_curl_mx_forget(struct cr_curl_easy *e, int how);
void cr_curl_mx_atfork_child(void);

/* Bumped at every re-publish of the config (perform.c). */
extern atomic_uint cr_curl_cfg_gen;

/* sockets.c: connections libcurl closed through our closesocket callback in
 * this thread (a perform compares it before and after). */
extern __thread unsigned long cr_curl_tls_closes;

/* The smaller of two timeouts where <= 0 means none. */
/* Whether LANE pools connections of E's URL scheme across handles
 * (pool_schemes; docs/INTERNALS.md, "Pooled schemes"): one bit test. */
static inline int cr_curl_scheme_pooled(const struct cr_lane *lane, const struct cr_curl_easy *e)
{
	return (int)(((unsigned long long)lane->pool_schemes >> e->u_sbit) & 1u);
}

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

/* --------------------------------------------------------------- resil.c */

/* Resilience of a routed transfer of E in LANE (only when lane->health): an
 * easy perform, or a multi transfer at its admission and completion.
 * Before it, the breaker (-1: refused, the error buffer, metrics and access
 * log say so; the transfer fails with CURLE_COULDNT_CONNECT, nothing sent),
 * with *ADM the admission to pass to after; after it, the final outcome. A
 * failed attempt that is retried is reported by retry.c (_attempt); _request
 * is the final outcome for the breaker alone (its last attempt reported so).
 * The state between the calls is E's (hl_*): one transfer per handle. */
int cr_curl_health_before(struct cr_curl_easy *e, const struct cr_lane *lane, const char *key,
			  uint64_t t_start, int *adm);
void cr_curl_health_after(struct cr_curl_easy *e, const struct cr_lane *lane, CURLcode rc, int adm);
void cr_curl_health_request(struct cr_curl_easy *e, const struct cr_lane *lane, CURLcode rc,
			    int adm);
void cr_curl_health_attempt(struct cr_curl_easy *e, const struct cr_lane *lane, CURLcode rc);
struct cr_dest;
/* Before a perform in a lane with ejection: while the URL's host has an
 * ejected address, libcurl's happy-eyeballs timeout is made short, so
 * skipping that address costs nothing (libcurl 7.88 waits that timeout
 * before it tries the next address of a name, however fast the first one
 * failed); else the app's value. */
void cr_curl_health_eyeballs(struct cr_curl_easy *e, const struct cr_lane *lane);
/* The opensocket callback: 1 if libcurl must skip address D (ejected);
 * else D is remembered as tried by this attempt. */
int cr_curl_health_skip(struct cr_curl_easy *e, const struct cr_dest *d);

/* --------------------------------------------------------------- retry.c */

/* A request of LANE starts at T (the budget counts requests). */
void cr_curl_retry_note_request(int lane_id, uint64_t t_ns);
/* Should attempt ATTEMPT (0 = the first retry) follow the failure RC? -1 if
 * not, else the pause in ms before it. Takes from the lane's budget when it
 * answers yes. RT_MS is the request deadline (0 = none), T0_NS the start of
 * the first attempt, WAITED_MS the time queued for a limit before it. */
long cr_curl_retry_next(struct cr_curl_easy *e, const struct cr_lane *lane, unsigned keyflags,
			int attempt, CURLcode rc, long rt_ms, uint64_t t0_ns, long waited_ms);
/* A retry is made now: counted and logged. */
void cr_curl_retry_count(const struct cr_lane *lane, const char *key, int attempt, CURLcode rc);

#endif
