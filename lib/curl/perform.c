/* connroute: libcurl lanes — the perform path (docs/INTERNALS.md, "libcurl
 * lanes"):
 *
 *   pick the lane -> limit -> apply the lane's overrides -> check out a
 *   share -> perform, with retries -> check the share in -> restore the
 *   app's values -> count.
 *
 * Every option the lane sets on an app's handle goes through one struct,
 * cr_curl_override: applying marks the option changed; restoring puts back,
 * in reverse order, exactly the marked ones, each from the app's own value
 * recorded by its setopt calls (struct cr_curl_easy). Nothing else sets an
 * option on an app's handle, so what a perform changed is always put back. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "alog_curl.h"
#include "base.h"
#include "curl_int.h"
#include "cfgref.h"
#include "thread.h"
#include "key.h"
#include "lane.h"
#include "limit.h"
#include "metrics.h"
#include "notice.h"
#include "warm.h"

/* ---------------------------------------------------- apply and restore */

/* The options a lane may change for one perform, in the order they are
 * applied; they are put back in reverse (XFERINFOFUNCTION before
 * PROGRESSFUNCTION: setting the former, even to NULL, decides whether
 * libcurl calls the latter). */
enum ov {
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
	OV_MAXCONNECTS,           /* these two with the share: */
	OV_SHARE,                 /* put back before it is checked in */
	OV_N
};
#define OV_BIT(i) (1u << (i))

typedef void (*ov_func_t)(void);
union ov_val {
	long l;
	void *p;
	ov_func_t f;
};

enum { OV_LONG, OV_PTR, OV_FUNC };
#define OV_APP(field) offsetof(struct cr_curl_easy, field)
#define OV_APP_NONE SIZE_MAX /* set only when the app has none: put back NULL */

static const struct {
	CURLoption opt;
	int type;
	size_t app;               /* where struct cr_curl_easy keeps the app's value */
} ov_opts[OV_N] = {
	[OV_CONNECTTIMEOUT] = {CURLOPT_CONNECTTIMEOUT_MS, OV_LONG, OV_APP(app_connect_timeout_ms)},
	[OV_TIMEOUT] = {CURLOPT_TIMEOUT_MS, OV_LONG, OV_APP(app_timeout_ms)},
	[OV_MAXAGE] = {CURLOPT_MAXAGE_CONN, OV_LONG, OV_APP(app_maxage_s)},
	[OV_MAXLIFETIME] = {CURLOPT_MAXLIFETIME_CONN, OV_LONG, OV_APP(app_maxlifetime_s)},
	[OV_SSLVERSION] = {CURLOPT_SSLVERSION, OV_LONG, OV_APP(app_sslversion)},
	[OV_SOCKOPTFUNCTION] = {CURLOPT_SOCKOPTFUNCTION, OV_FUNC, OV_APP(app_sockopt)},
	[OV_SOCKOPTDATA] = {CURLOPT_SOCKOPTDATA, OV_PTR, OV_APP(app_sockopt_data)},
	[OV_CLOSESOCKETFUNCTION] = {CURLOPT_CLOSESOCKETFUNCTION, OV_FUNC, OV_APP_NONE},
	[OV_CLOSESOCKETDATA] = {CURLOPT_CLOSESOCKETDATA, OV_PTR, OV_APP_NONE},
	[OV_OPENSOCKETFUNCTION] = {CURLOPT_OPENSOCKETFUNCTION, OV_FUNC, OV_APP_NONE},
	[OV_OPENSOCKETDATA] = {CURLOPT_OPENSOCKETDATA, OV_PTR, OV_APP_NONE},
	[OV_PROGRESSFUNCTION] = {CURLOPT_PROGRESSFUNCTION, OV_FUNC, OV_APP(app_progress)},
	[OV_XFERINFOFUNCTION] = {CURLOPT_XFERINFOFUNCTION, OV_FUNC, OV_APP(app_xferinfo)},
	[OV_XFERINFODATA] = {CURLOPT_XFERINFODATA, OV_PTR, OV_APP(app_xferinfo_data)},
	[OV_NOPROGRESS] = {CURLOPT_NOPROGRESS, OV_LONG, OV_APP(app_noprogress)},
	[OV_MAXCONNECTS] = {CURLOPT_MAXCONNECTS, OV_LONG, OV_APP(app_maxconnects)},
	[OV_SHARE] = {CURLOPT_SHARE, OV_PTR, OV_APP(app_share)},
};

/* What one perform changed on the app's handle: bit i of CHANGED means
 * option ov_opts[i] holds VAL[i], the lane's value, and the app's own value
 * goes back when the perform ends. */
struct cr_curl_override {
	uint32_t changed;
	union ov_val val[OV_N];
};

/* Marks option I changed to the lane's value V (the caller sets it). */
static inline void ov_mark(struct cr_curl_easy *e, enum ov i, union ov_val v)
{
	e->ov->changed |= OV_BIT(i);
	e->ov->val[i] = v;
}

static void ov_long(struct cr_curl_easy *e, enum ov i, long v)
{
	ov_mark(e, i, (union ov_val){.l = v});
	e->lib->fns.easy_setopt(e->h, ov_opts[i].opt, v);
}

static void ov_ptr(struct cr_curl_easy *e, enum ov i, void *v)
{
	ov_mark(e, i, (union ov_val){.p = v});
	e->lib->fns.easy_setopt(e->h, ov_opts[i].opt, v);
}

static void ov_func(struct cr_curl_easy *e, enum ov i, ov_func_t v)
{
	ov_mark(e, i, (union ov_val){.f = v});
	e->lib->fns.easy_setopt(e->h, ov_opts[i].opt, v);
}

/* The lane's value V, unless it is the app's own already. */
static void ov_long_unless_app(struct cr_curl_easy *e, enum ov i, long v)
{
	long app;
	memcpy(&app, (const char *)e + ov_opts[i].app, sizeof(app));
	if (v != app)
		ov_long(e, i, v);
}

/* Puts back the app's values of the changed options among WHICH, last
 * changed first. Unrolled and inlined: with the table and WHICH constant,
 * each entry is a bit test and, if set, one setopt of the app's field. */
static inline __attribute__((always_inline)) void ov_restore(struct cr_curl_easy *e, uint32_t which)
{
	CURLcode (*setopt)(CURL *, CURLoption, ...) = e->lib->fns.easy_setopt;
	uint32_t m = e->ov->changed & which;
	e->ov->changed &= ~m;
#pragma GCC unroll 32
	for (int i = OV_N - 1; i >= 0; i--) {
		if (!(m & OV_BIT(i)))
			continue;
		size_t off = ov_opts[i].app;
		if (ov_opts[i].type == OV_LONG) {
			long v;
			memcpy(&v, (const char *)e + off, sizeof(v));
			setopt(e->h, ov_opts[i].opt, v);
		} else if (ov_opts[i].type == OV_PTR) {
			void *v = NULL;
			if (off != OV_APP_NONE)
				memcpy(&v, (const char *)e + off, sizeof(v));
			setopt(e->h, ov_opts[i].opt, v);
		} else {
			ov_func_t v = NULL;
			if (off != OV_APP_NONE)
				memcpy(&v, (const char *)e + off, sizeof(v));
			setopt(e->h, ov_opts[i].opt, v);
		}
	}
}

void cr_curl_perform_set_timeout(struct cr_curl_easy *e, long ms)
{
	if (e->ov)
		ov_long(e, OV_TIMEOUT, ms);
	else
		e->lib->fns.easy_setopt(e->h, CURLOPT_TIMEOUT_MS, ms);
}

/* response_header_timeout: from the moment the request is sent (connection
 * up, any upload done) until the first response byte.
 *
 * libcurl's easy interface offers no per-phase timer, so the deadline is
 * carried by CURLOPT_TIMEOUT_MS, which libcurl re-reads on every check: it
 * starts at connect + rht (so a timer is armed that early), is tightened to
 * "sent + rht" when this callback sees the request go out, and is relaxed to
 * the request timeout once the first byte arrives. Between libcurl's wakeups
 * (at most a second apart) the callback aborts on its own. */
static int xferinfo_cb(void *clientp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	struct cr_curl_easy *e = clientp;
	if (e->rht_ms > 0 && !e->rht_fired && !e->rht_relaxed) {
		const struct cr_curlfns *f = &e->lib->fns;
		curl_off_t pre = 0, start = 0;
		f->easy_getinfo(e->h, CURLINFO_PRETRANSFER_TIME_T, &pre);
		f->easy_getinfo(e->h, CURLINFO_STARTTRANSFER_TIME_T, &start);
		uint64_t t = cr_now_ns();
		if (start > 0) {
			e->rht_relaxed = 1;
			cr_curl_perform_set_timeout(e, e->rt_ms);
		} else if (pre > 0 && (ultotal <= 0 || ulnow >= ultotal)) {
			if (!e->rht_ref_ns) {
				e->rht_ref_ns = t;
				long d = (long)((t - e->perform_t0_ns) / 1000000ull) + e->rht_ms;
				cr_curl_perform_set_timeout(e, cr_curl_min_nonzero(e->rt_ms, d));
			} else if (t - e->rht_ref_ns >= (uint64_t)e->rht_ms * 1000000ull) {
				e->rht_fired = 1;
				return 1;
			}
		}
	}
	if (!e->app_noprogress) {
		if (e->app_xferinfo)
			return e->app_xferinfo(e->app_xferinfo_data, dltotal, dlnow, ultotal, ulnow);
		if (e->app_progress)
			return e->app_progress(e->app_xferinfo_data, (double)dltotal, (double)dlnow,
					       (double)ultotal, (double)ulnow);
	}
	return 0;
}

/* The lane's settings for this perform, applied through E's override
 * struct. Returns the request deadline in ms (0 = none). A lane never
 * loosens what the app asked: the smaller non-zero timeout wins, and the
 * time queued for a limit (WAITED_MS) counts against request_timeout. */
static long apply_lane(struct cr_curl_easy *e, const struct cr_lane *lane, long waited_ms)
{
	long ct = cr_curl_min_nonzero(e->app_connect_timeout_ms, lane->connect_timeout_ms);
	long rt = lane->request_timeout_ms > 0 ? lane->request_timeout_ms - waited_ms : 0;
	if (lane->request_timeout_ms > 0 && rt < 1)
		rt = 1;
	rt = cr_curl_min_nonzero(e->app_timeout_ms, rt);
	long maxage = e->app_maxage_s;
	if (lane->idle_timeout_ms > 0) {
		long s = lane->idle_timeout_ms / 1000 > 0 ? lane->idle_timeout_ms / 1000 : 1;
		if (s < maxage)
			maxage = s;
	}
	long life = e->app_maxlifetime_s;
	if (lane->max_lifetime_ms > 0) {
		long s = lane->max_lifetime_ms / 1000 > 0 ? lane->max_lifetime_ms / 1000 : 1;
		life = life > 0 && life < s ? life : s;
	}
	long sslv = e->app_sslversion;
	if (lane->min_tls > 0) {
		long want = lane->min_tls == 10 ? CURL_SSLVERSION_TLSv1_0
			    : lane->min_tls == 11 ? CURL_SSLVERSION_TLSv1_1
			    : lane->min_tls == 12 ? CURL_SSLVERSION_TLSv1_2
						  : CURL_SSLVERSION_TLSv1_3;
		long app_min = sslv & 0xffff, app_max = sslv & ~0xffffL;
		if (app_min < want || app_min == CURL_SSLVERSION_DEFAULT)
			sslv = app_max | want;
	}
	e->rht_ms = lane->response_header_timeout_ms;
	e->ct_ms = ct;

	ov_long_unless_app(e, OV_CONNECTTIMEOUT, ct);
	if (rt != e->app_timeout_ms || e->rht_ms > 0)
		ov_long(e, OV_TIMEOUT, rt);
	ov_long_unless_app(e, OV_MAXAGE, maxage);
	if (e->lib->has_maxlifetime)
		ov_long_unless_app(e, OV_MAXLIFETIME, life);
	ov_long_unless_app(e, OV_SSLVERSION, sslv);
	/* Always: new connections are counted there, and get the lane's options. */
	ov_func(e, OV_SOCKOPTFUNCTION, (ov_func_t)cr_curl_sockets_opt);
	ov_ptr(e, OV_SOCKOPTDATA, e);
	if (!e->app_closesocket) {
		ov_func(e, OV_CLOSESOCKETFUNCTION, (ov_func_t)cr_curl_sockets_close);
		ov_ptr(e, OV_CLOSESOCKETDATA, (void *)(intptr_t)(lane->id + 1));
	}
	e->warm_fd = -1;
	if (cr_warm_lane_has_pools(lane) && !e->app_opensocket) {
		ov_func(e, OV_OPENSOCKETFUNCTION, (ov_func_t)cr_curl_sockets_open);
		ov_ptr(e, OV_OPENSOCKETDATA, e);
	}
	if (e->rht_ms > 0) {
		/* Our callback chains the app's, whichever kind it set. */
		if (e->app_progress && !e->app_xferinfo)
			ov_func(e, OV_PROGRESSFUNCTION, (ov_func_t)NULL);
		ov_func(e, OV_XFERINFOFUNCTION, (ov_func_t)xferinfo_cb);
		ov_ptr(e, OV_XFERINFODATA, e);
		ov_long(e, OV_NOPROGRESS, 0L);
	}
	return rt;
}

/* ---------------------------------------------------------------- perform */

static void errbuf_set(struct cr_curl_easy *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void errbuf_set(struct cr_curl_easy *e, const char *fmt, ...)
{
	va_list ap;
	if (!e->errbuf)
		return;
	va_start(ap, fmt);
	vsnprintf(e->errbuf, CURL_ERROR_SIZE, fmt, ap);
	va_end(ap);
}

/* Which lane: the thread's key and the destination (a literal address also
 * matches CIDR rules). */
static const struct cr_lane *pick_lane(const struct cr_config *cfg, const struct cr_curl_easy *e,
				       const char **key)
{
	struct cr_dest d = {.family = e->u_family, .port = (uint16_t)e->u_port, .host = e->u_host};
	memcpy(d.addr, e->u_addr, 16);
	int unmatched = 0;
	*key = cr_key_resolve(cfg);
	const struct cr_lane *lane = cr_lane_select(cfg, *key, &d, &unmatched);
	cr_notice_lane(lane, *key, unmatched);
	cr_kick();
	if (atomic_load_explicit(&cr_warm_active, memory_order_relaxed))
		cr_warm_kick();
	if (unmatched && strcmp(*key, "default") != 0)
		cr_m_unmatched();
	return lane;
}

/* Limit: in-flight transfers per (lane, scheme://host:port). 0 with the
 * unit in *SLOT (CR_SLOT_NONE: unlimited), or -1 at the limit (counted, and
 * said in the app's error buffer). */
static int limit(struct cr_curl_easy *e, const struct cr_lane *lane, const char *key, uint64_t t_start,
		 uint32_t *slot, long *waited_ms)
{
	uint64_t waited_ns = 0;
	*slot = CR_SLOT_NONE;
	*waited_ms = 0;
	if (lane->max_conns_per_host <= 0)
		return 0;
	const char *scheme = e->u_scheme, *host = e->u_host;
	struct cr_dest ld = {.family = AF_UNSPEC, .port = (uint16_t)e->u_port};
	uint64_t a = cr_fnv64(CR_FNV64_INIT, scheme, strlen(scheme));
	a = cr_fnv64(a, host, strlen(host));
	uint64_t b = cr_fnv64(a ^ 0x9e3779b97f4a7c15ull, host, strlen(host));
	memcpy(ld.addr, &a, 8);
	memcpy(ld.addr + 8, &b, 8);
	*slot = cr_limit_slot(lane->id, &ld);
	cr_m_queued(lane->id, 1);
	int lrc = cr_limit_acquire(*slot, lane->max_conns_per_host, lane->queue_timeout_ms, &waited_ns);
	cr_m_queued(lane->id, -1);
	if (waited_ns)
		cr_m_queue_wait(lane->id, waited_ns);
	*waited_ms = (long)(waited_ns / 1000000ull);
	if (lrc == 0)
		return 0;
	atomic_fetch_add(&cr_curl_ctr.limit_overflows, 1);
	cr_m_overflow(lane->id);
	cr_notice_refused(lane, &(struct cr_dest){.family = AF_UNSPEC, .port = (uint16_t)e->u_port, .host = host}, 0);
	cr_m_request(lane->id, key, cr_now_ns() - t_start, CR_OUT_OVERFLOW);
	cr_curl_alog(e, lane, key, CURLE_OPERATION_TIMEDOUT, t_start, *waited_ms, 1);
	errbuf_set(e,
		   "connroute: lane '%s': %ld transfers to %s://%s:%d already in flight "
		   "(max_conns_per_host = %ld); waited %ld ms (queue_timeout)",
		   lane->name, lane->max_conns_per_host, scheme, host, e->u_port, lane->max_conns_per_host,
		   lane->queue_timeout_ms);
	return -1;
}

/* One perform with deadline RT_MS (0 = none). A response_header_timeout
 * expiry, whether our callback aborted or libcurl's timer fired first,
 * reads as the timeout it is and is flagged for the message. */
static CURLcode perform_once(struct cr_curl_easy *e, long rt_ms)
{
	const struct cr_curlfns *f = &e->lib->fns;
	e->rht_ref_ns = 0;
	e->rht_fired = 0;
	e->rht_relaxed = 0;
	e->rt_ms = rt_ms;
	e->new_conns = 0;
	e->warm_used = 0;
	e->perform_t0_ns = cr_now_ns();
	/* libcurl gives a new connection's connect whatever is left of the
	 * total timeout when it starts (the happy-eyeballs timer is set before
	 * the socket exists), so the first deadline must leave the connect its
	 * own time: connect + rht; it is tightened once the request is sent. */
	if (e->rht_ms > 0)
		ov_long(e, OV_TIMEOUT, cr_curl_min_nonzero(rt_ms, e->rht_ms + (e->ct_ms > 0 ? e->ct_ms : 0)));
	CURLcode rc = f->easy_perform(e->h);
	if (e->new_conns)
		cr_curl_sockets_count(e);
	if (e->rht_fired && rc == CURLE_ABORTED_BY_CALLBACK)
		rc = CURLE_OPERATION_TIMEDOUT;
	if (e->rht_ms > 0 && rc == CURLE_OPERATION_TIMEDOUT && !e->rht_fired) {
		/* A header timeout only if the request went out (else it was the
		 * connect that timed out) and no byte came back. */
		curl_off_t start = 0, pre = 0;
		f->easy_getinfo(e->h, CURLINFO_STARTTRANSFER_TIME_T, &start);
		f->easy_getinfo(e->h, CURLINFO_PRETRANSFER_TIME_T, &pre);
		long spent = (long)((cr_now_ns() - e->perform_t0_ns) / 1000000ull);
		if (start == 0 && pre > 0 && (rt_ms <= 0 || spent < rt_ms))
			e->rht_fired = 1;
	}
	return rc;
}

/* The first attempt, then retries while retry.c allows them, each within
 * what is left of the deadline RT_MS. */
static CURLcode perform_with_retries(struct cr_curl_easy *e, const struct cr_lane *lane, const char *key,
				     long rt, long waited_ms)
{
	uint64_t t0 = cr_now_ns();
	unsigned keyflags = 0;
	cr_key_flags(key, &keyflags);
	cr_curl_retry_note_request(lane->id, t0);
	cr_m_inflight(lane->id, 1);
	e->resends = 0;
	CURLcode rc = perform_once(e, rt);
	long pause;
	for (int attempt = 0;
	     rc != CURLE_OK && (pause = cr_curl_retry_next(e, lane, keyflags, attempt, rc, rt, t0, waited_ms)) >= 0;
	     attempt++) {
		if (pause > 0) {
			struct timespec ts = {.tv_sec = pause / 1000, .tv_nsec = (pause % 1000) * 1000000L};
			nanosleep(&ts, NULL);
		}
		long left = 0;
		if (rt > 0) {
			left = rt - (long)((cr_now_ns() - t0) / 1000000ull) - waited_ms;
			if (left < 1)
				left = 1;
			ov_long(e, OV_TIMEOUT, left);
		}
		cr_curl_retry_count(lane, key, attempt, rc);
		e->resends = attempt + 1;
		rc = perform_once(e, rt > 0 ? left : 0);
	}
	return rc;
}

static CURLcode perform_routed(struct cr_curllib *lib, struct cr_curl_easy *e, const struct cr_config *cfg)
{
	const char *key;
	const struct cr_lane *lane = pick_lane(cfg, e, &key);
	e->lane = lane;
	uint64_t t_start = cr_now_ns();

	uint32_t slot;
	long waited_ms;
	if (limit(e, lane, key, t_start, &slot, &waited_ms) != 0) {
		e->lane = NULL;
		return CURLE_OPERATION_TIMEDOUT;
	}

	struct cr_curl_override ov;
	ov.changed = 0;
	e->ov = &ov;
	long rt = apply_lane(e, lane, waited_ms);

	/* A handle with its own closesocket callback is never pooled: libcurl
	 * runs the callback inside curl_easy_cleanup of the handle that made the
	 * connection, and the app may free its data right after; a pooled
	 * connection would outlive both. */
	struct cr_curl_share *s = NULL;
	if (!e->app_share && !e->forbid_reuse && !e->app_closesocket && lane->max_idle_per_host > 0)
		s = cr_curl_shares_checkout(lib, lane, e->resolve ? cr_curl_shares_flavor(e->resolve) : 0, t_start);
	if (s) {
		ov_long_unless_app(e, OV_MAXCONNECTS, lane->max_idle_per_host);
		ov_ptr(e, OV_SHARE, s->sh);
		atomic_fetch_add(&cr_curl_ctr.performs_pooled, 1);
	} else {
		atomic_fetch_add(&cr_curl_ctr.performs_unpooled, 1);
		e->dirty = 1; /* the handle's own cache may now hold a connection */
	}

	CURLcode rc = perform_with_retries(e, lane, key, rt, waited_ms);
	cr_curl_alog(e, lane, key, rc, t_start, waited_ms, 0); /* before the share is detached */

	if (s) {
		ov_restore(e, OV_BIT(OV_MAXCONNECTS) | OV_BIT(OV_SHARE));
		cr_curl_shares_checkin(lib, s);
	}
	ov_restore(e, ~0u);
	e->ov = NULL;
	e->warm_fd = -1; /* one taken but never used was closed by libcurl */
	if (e->rht_ms > 0 && e->rht_fired && rc == CURLE_OPERATION_TIMEDOUT)
		errbuf_set(e, "connroute: lane '%s': no response headers within %ld ms (response_header_timeout)",
			   lane->name, e->rht_ms);

	cr_m_inflight(lane->id, -1);
	cr_m_request(lane->id, key, cr_now_ns() - t_start,
		     rc == CURLE_OK ? CR_OUT_OK : rc == CURLE_OPERATION_TIMEDOUT ? CR_OUT_TIMEOUT : CR_OUT_ERROR);
	e->lane = NULL;
	if (slot != CR_SLOT_NONE)
		cr_limit_release(slot);
	return rc;
}

CURLcode cr_curl_perform(struct cr_curllib *lib, CURL *h)
{
	const struct cr_curlfns *f = &lib->fns;
	struct cr_curl_easy *e = cr_curl_handles_get(h);
	if (!e || !e->url_ok) {
		atomic_fetch_add(&cr_curl_ctr.performs_unpooled, 1);
		if (e)
			e->dirty = 1; /* its private cache may now hold a connection */
		return f->easy_perform(h);
	}
	/* Held for the whole perform: a reload must not free the lane under a
	 * transfer (nor cancel its dial). */
	const struct cr_config *cfg = cr_cfgref_acquire();
	if (!cfg)
		return f->easy_perform(h);
	CURLcode rc = perform_routed(lib, e, cfg);
	cr_cfgref_release(cfg);
	return rc;
}
