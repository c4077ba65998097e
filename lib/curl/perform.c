/* connroute: libcurl lanes — the perform path (docs/INTERNALS.md, "libcurl
 * lanes"):
 *
 *   pick the lane -> limit -> bring the handle's settings to the lane's ->
 *   make sure the handle holds a share of the lane's pool -> perform, with
 *   retries -> count.
 *
 * Every option the lane sets on an app's handle is one entry of ov_opts.
 * For each, the handle's record keeps the app's own value (its setopt
 * calls) and the value libcurl holds (`held`); the lane's value is set only
 * when it differs from `held`, and nothing is put back when the perform
 * returns: the app cannot observe these options (docs/INTERNALS.md, "the
 * lane's settings"), and cr_curl_put_back gives them back where a handle or
 * a duplicate of it leaves our hands. */
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

enum { OV_LONG, OV_PTR, OV_FUNC };
#define OV_APP(field) offsetof(struct cr_curl_easy, field)

static const struct {
	CURLoption opt;
	int type;
	size_t app; /* where struct cr_curl_easy keeps the app's value */
} ov_opts[OV_N] = {
	[OV_CONNECTTIMEOUT] = {CURLOPT_CONNECTTIMEOUT_MS, OV_LONG, OV_APP(app_connect_timeout_ms)},
	[OV_TIMEOUT] = {CURLOPT_TIMEOUT_MS, OV_LONG, OV_APP(app_timeout_ms)},
	[OV_MAXAGE] = {CURLOPT_MAXAGE_CONN, OV_LONG, OV_APP(app_maxage_s)},
	[OV_MAXLIFETIME] = {CURLOPT_MAXLIFETIME_CONN, OV_LONG, OV_APP(app_maxlifetime_s)},
	[OV_SSLVERSION] = {CURLOPT_SSLVERSION, OV_LONG, OV_APP(app_sslversion)},
	[OV_SOCKOPTFUNCTION] = {CURLOPT_SOCKOPTFUNCTION, OV_FUNC, OV_APP(app_sockopt)},
	[OV_SOCKOPTDATA] = {CURLOPT_SOCKOPTDATA, OV_PTR, OV_APP(app_sockopt_data)},
	[OV_CLOSESOCKETFUNCTION] = {CURLOPT_CLOSESOCKETFUNCTION, OV_FUNC,
				    OV_APP(app_closesocket_fn)},
	[OV_CLOSESOCKETDATA] = {CURLOPT_CLOSESOCKETDATA, OV_PTR, OV_APP(app_closesocket_data)},
	[OV_OPENSOCKETFUNCTION] = {CURLOPT_OPENSOCKETFUNCTION, OV_FUNC, OV_APP(app_opensocket_fn)},
	[OV_OPENSOCKETDATA] = {CURLOPT_OPENSOCKETDATA, OV_PTR, OV_APP(app_opensocket_data)},
	[OV_PROGRESSFUNCTION] = {CURLOPT_PROGRESSFUNCTION, OV_FUNC, OV_APP(app_progress)},
	[OV_XFERINFOFUNCTION] = {CURLOPT_XFERINFOFUNCTION, OV_FUNC, OV_APP(app_xferinfo)},
	[OV_XFERINFODATA] = {CURLOPT_XFERINFODATA, OV_PTR, OV_APP(app_xferinfo_data)},
	[OV_NOPROGRESS] = {CURLOPT_NOPROGRESS, OV_LONG, OV_APP(app_noprogress)},
	[OV_MAXCONNECTS] = {CURLOPT_MAXCONNECTS, OV_LONG, OV_APP(app_maxconnects)},
	[OV_SHARE] = {CURLOPT_SHARE, OV_PTR, OV_APP(app_share)},
	[OV_HAPPY] = {CURLOPT_HAPPY_EYEBALLS_TIMEOUT_MS, OV_LONG, OV_APP(app_happy_ms)},
};

/* The app's value of option I (every kind fits the union's bytes). */
static inline union cr_ov_val app_val(const struct cr_curl_easy *e, int i)
{
	union cr_ov_val v = {.l = 0};
	memcpy(&v, (const char *)e + ov_opts[i].app, sizeof(long));
	return v;
}

static inline int same(union cr_ov_val a, union cr_ov_val b)
{
	return memcmp(&a, &b, sizeof(a)) == 0;
}

static void set_on(const struct cr_curl_easy *e, CURL *t, int i, union cr_ov_val v)
{
	CURLcode (*setopt)(CURL *, CURLoption, ...) = e->lib->fns.easy_setopt;
	if (ov_opts[i].type == OV_LONG)
		setopt(t, ov_opts[i].opt, v.l);
	else if (ov_opts[i].type == OV_PTR)
		setopt(t, ov_opts[i].opt, v.p);
	else
		setopt(t, ov_opts[i].opt, v.f);
}

void cr_curl_hold(struct cr_curl_easy *e, enum cr_ov i, union cr_ov_val v)
{
	set_on(e, e->h, i, v);
	e->held[i] = v;
	e->ov_gen++;
}

/* The value of option I should be V: one setopt if libcurl holds another. */
static inline void want(struct cr_curl_easy *e, enum cr_ov i, union cr_ov_val v)
{
	if (!same(e->held[i], v))
		cr_curl_hold(e, i, v);
}

static inline void want_long(struct cr_curl_easy *e, enum cr_ov i, long v)
{
	if (e->held[i].l != v)
		cr_curl_hold(e, i, (union cr_ov_val){.l = v});
}

/* PROGRESSFUNCTION and XFERINFOFUNCTION: libcurl calls a progress callback
 * if the last of the two set was not NULL, so when either must change both
 * are set, in the order that leaves that as ON says. */
static void progress_pair(struct cr_curl_easy *e, CURL *t, const union cr_ov_val *from,
			  union cr_ov_val p, union cr_ov_val x, int on)
{
	if (same(from[OV_PROGRESSFUNCTION], p) && same(from[OV_XFERINFOFUNCTION], x))
		return;
	int p_last = on ? p.f != NULL : p.f == NULL;
	if (p_last) {
		set_on(e, t, OV_XFERINFOFUNCTION, x);
		set_on(e, t, OV_PROGRESSFUNCTION, p);
	} else {
		set_on(e, t, OV_PROGRESSFUNCTION, p);
		set_on(e, t, OV_XFERINFOFUNCTION, x);
	}
	if (t == e->h) {
		e->held[OV_PROGRESSFUNCTION] = p;
		e->held[OV_XFERINFOFUNCTION] = x;
		e->ov_gen++;
	}
}

void cr_curl_put_back(struct cr_curl_easy *e, CURL *t)
{
	union cr_ov_val held[OV_N];
	memcpy(held, e->held, sizeof(held));
	for (int i = 0; i < OV_N; i++) {
		if (i == OV_PROGRESSFUNCTION || i == OV_XFERINFOFUNCTION)
			continue;
		union cr_ov_val a = app_val(e, i);
		/* A duplicate holds no share whatever the original holds. */
		if (i == OV_SHARE && t != e->h)
			continue;
		if (!same(held[i], a)) {
			set_on(e, t, i, a);
			if (t == e->h) {
				e->held[i] = a;
				e->ov_gen++;
			}
		}
	}
	progress_pair(e, t, held, app_val(e, OV_PROGRESSFUNCTION), app_val(e, OV_XFERINFOFUNCTION),
		      e->app_progress_on);
}

void cr_curl_held_app(struct cr_curl_easy *e)
{
	for (int i = 0; i < OV_N; i++)
		e->held[i] = app_val(e, i);
	e->ov_gen++;
}

void cr_curl_perform_set_timeout(struct cr_curl_easy *e, long ms)
{
	want_long(e, OV_TIMEOUT, ms);
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
	/* Outside a perform of ours (a multi transfer): the app's part only. */
	if (e->lane && e->rht_ms > 0 && !e->rht_fired && !e->rht_relaxed) {
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
			return e->app_xferinfo(e->app_xferinfo_data, dltotal, dlnow, ultotal,
					       ulnow);
		if (e->app_progress)
			return e->app_progress(e->app_xferinfo_data, (double)dltotal, (double)dlnow,
					       (double)ultotal, (double)ulnow);
	}
	return 0;
}

/* The lane's settings for this perform: each option is set only if libcurl
 * holds another value (a persistent handle in the same lane: none). Options
 * the lane leaves alone get the app's value back. Returns the request
 * deadline in ms (0 = none). A lane never loosens what the app asked: the
 * smaller non-zero timeout wins, and the time queued for a limit
 * (WAITED_MS) counts against request_timeout. */
static long apply_lane(struct cr_curl_easy *e, const struct cr_config *cfg,
		       const struct cr_lane *lane, long waited_ms)
{
	/* The same lane of the same config as the last perform, and nothing
	 * held or set by the app since: libcurl holds the lane's values. */
	unsigned cfgen = atomic_load_explicit(&cr_curl_cfg_gen, memory_order_relaxed);
	if (lane->health & CR_H_EJECT)
		cr_curl_health_eyeballs(e, lane); /* lib/curl/resil.c */
	/* Our opensocket callback: warm sockets, and skipping ejected addresses. */
	int warm = (cr_warm_lane_has_pools(lane) || (lane->health & CR_H_EJECT)) &&
		   !e->app_opensocket_fn;
	e->warm_fd = -1;
	if (e->ap_lane == lane && e->ap_cfg == cfg && e->ap_cfgen == cfgen &&
	    e->ap_gen == e->ov_gen && e->ap_warm == warm && waited_ms == 0 &&
	    lane->response_header_timeout_ms <= 0) {
		e->rht_ms = 0;
		e->ct_ms = e->ap_ct;
		return e->ap_rt;
	}
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
		long w = lane->min_tls == 10   ? CURL_SSLVERSION_TLSv1_0
			 : lane->min_tls == 11 ? CURL_SSLVERSION_TLSv1_1
			 : lane->min_tls == 12 ? CURL_SSLVERSION_TLSv1_2
					       : CURL_SSLVERSION_TLSv1_3;
		long app_min = sslv & 0xffff, app_max = sslv & ~0xffffL;
		if (app_min < w || app_min == CURL_SSLVERSION_DEFAULT)
			sslv = app_max | w;
	}
	e->rht_ms = lane->response_header_timeout_ms;
	e->ct_ms = ct;

	want_long(e, OV_CONNECTTIMEOUT, ct);
	want_long(e, OV_TIMEOUT, rt);
	want_long(e, OV_MAXAGE, maxage);
	if (e->lib->has_maxlifetime)
		want_long(e, OV_MAXLIFETIME, life);
	want_long(e, OV_SSLVERSION, sslv);
	if (!(lane->health & CR_H_EJECT))
		want_long(e, OV_HAPPY, e->app_happy_ms);
	/* Always ours: new connections are counted there, and get the lane's
	 * options (the app's callback is chained). */
	want(e, OV_SOCKOPTFUNCTION, (union cr_ov_val){.f = (cr_ov_func)cr_curl_sockets_opt});
	want(e, OV_SOCKOPTDATA, (union cr_ov_val){.p = e});
	if (!e->app_closesocket_fn) {
		want(e, OV_CLOSESOCKETFUNCTION,
		     (union cr_ov_val){.f = (cr_ov_func)cr_curl_sockets_close});
		want(e, OV_CLOSESOCKETDATA,
		     (union cr_ov_val){.p = (void *)(intptr_t)(lane->id + 1)});
	}
	if (warm) {
		want(e, OV_OPENSOCKETFUNCTION,
		     (union cr_ov_val){.f = (cr_ov_func)cr_curl_sockets_open});
		want(e, OV_OPENSOCKETDATA, (union cr_ov_val){.p = e});
	} else {
		want(e, OV_OPENSOCKETFUNCTION, (union cr_ov_val){.f = e->app_opensocket_fn});
		want(e, OV_OPENSOCKETDATA, (union cr_ov_val){.p = e->app_opensocket_data});
	}
	if (e->rht_ms > 0) {
		/* Our callback chains the app's, whichever kind it set. */
		union cr_ov_val p = {.f = (cr_ov_func)(e->app_progress && !e->app_xferinfo
							       ? NULL
							       : e->app_progress)};
		progress_pair(e, e->h, e->held, p, (union cr_ov_val){.f = (cr_ov_func)xferinfo_cb},
			      1);
		want(e, OV_XFERINFODATA, (union cr_ov_val){.p = e});
		want_long(e, OV_NOPROGRESS, 0L);
	} else {
		progress_pair(e, e->h, e->held, (union cr_ov_val){.f = (cr_ov_func)e->app_progress},
			      (union cr_ov_val){.f = (cr_ov_func)e->app_xferinfo},
			      e->app_progress_on);
		want(e, OV_XFERINFODATA, (union cr_ov_val){.p = e->app_xferinfo_data});
		want_long(e, OV_NOPROGRESS, e->app_noprogress);
	}
	e->ap_cfg = cfg;
	e->ap_cfgen = cfgen;
	e->ap_lane = lane;
	e->ap_gen = e->ov_gen;
	e->ap_warm = warm;
	e->ap_rt = rt;
	e->ap_ct = ct;
	return rt;
}

/* ---------------------------------------------------------------- perform */

static void errbuf_set(struct cr_curl_easy *e, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void errbuf_set(struct cr_curl_easy *e, const char *fmt, ...)
{
	va_list ap;
	if (!e->errbuf)
		return;
	va_start(ap, fmt);
	vsnprintf(e->errbuf, CURL_ERROR_SIZE, fmt, ap);
	va_end(ap);
}

/* Bumped at every re-publish of the config (cr_curl_shares_retire): a
 * handle's remembered lane is for one config, and a later config may be
 * allocated where an old one was. */
atomic_uint cr_curl_cfg_gen;

/* Which lane: the thread's key and the destination (a literal address also
 * matches CIDR rules). Remembered by the handle for the same config, key
 * and URL: a persistent handle does not match rules again. */
static const struct cr_lane *pick_lane(const struct cr_config *cfg, struct cr_curl_easy *e,
				       const char **key)
{
	*key = cr_key_resolve(cfg);
	unsigned gen = atomic_load_explicit(&cr_curl_cfg_gen, memory_order_acquire);
	const struct cr_lane *lane;
	int unmatched;
	/* The process default key (no API key, no thread rule) is one string
	 * for the life of the process: the same pointer is the same key. */
	if (e->lc_cfg == cfg && e->lc_gen == gen && e->lc_url_gen == e->url_gen &&
	    ((*key == e->lc_key_ptr && e->lc_key_const) || strcmp(*key, e->lc_key) == 0)) {
		lane = e->lc_lane;
		unmatched = e->lc_unmatched;
	} else {
		struct cr_dest d = {
			.family = e->u_family, .port = (uint16_t)e->u_port, .host = e->u_host};
		memcpy(d.addr, e->u_addr, 16);
		unmatched = 0;
		lane = cr_lane_select(cfg, *key, &d, &unmatched);
		/* Once per lane and unmatched key: a remembered lane was noticed
		 * when it was picked. */
		cr_notice_lane(lane, *key, unmatched);
		unmatched = unmatched && strcmp(*key, "default") != 0;
		size_t n = strlen(*key);
		e->lc_lane = NULL;
		if (n < sizeof(e->lc_key)) {
			memcpy(e->lc_key, *key, n + 1);
			e->lc_cfg = cfg;
			e->lc_gen = gen;
			e->lc_url_gen = e->url_gen;
			e->lc_lane = lane;
			e->lc_unmatched = unmatched;
			e->lc_key_ptr = *key;
			e->lc_key_const = *key == cr_key_default();
		}
		/* The background thread starts at a process's first routed
		 * perform; once a handle remembers its lane, it has been kicked
		 * in this process (a fork child forgets every remembered lane). */
		cr_kick();
	}
	if (atomic_load_explicit(&cr_warm_active, memory_order_relaxed))
		cr_warm_kick();
	if (unmatched)
		cr_m_unmatched();
	return lane;
}

/* Limit: in-flight transfers per (lane, scheme://host:port). 0 with the
 * unit in *SLOT (CR_SLOT_NONE: unlimited), or -1 at the limit (counted, and
 * said in the app's error buffer). */
static int limit(struct cr_curl_easy *e, const struct cr_lane *lane, const char *key,
		 uint64_t t_start, uint32_t *slot, long *waited_ms)
{
	uint64_t waited_ns = 0;
	*slot = CR_SLOT_NONE;
	*waited_ms = 0;
	if (lane->max_conns_per_host <= 0)
		return 0;
	*slot = cr_curl_limit_slot(e, lane);
	cr_m_queued(lane->id, 1);
	int lrc = cr_limit_acquire(*slot, lane->max_conns_per_host, lane->queue_timeout_ms,
				   &waited_ns);
	cr_m_queued(lane->id, -1);
	if (waited_ns)
		cr_m_queue_wait(lane->id, waited_ns);
	*waited_ms = (long)(waited_ns / 1000000ull);
	if (lrc == 0)
		return 0;
	cr_curl_limit_refused(e, lane, key, t_start, *waited_ms, lane->queue_timeout_ms);
	return -1;
}

uint32_t cr_curl_limit_slot(const struct cr_curl_easy *e, const struct cr_lane *lane)
{
	const char *scheme = e->u_scheme, *host = e->u_host;
	struct cr_dest ld = {.family = AF_UNSPEC, .port = (uint16_t)e->u_port};
	uint64_t a = cr_fnv64(CR_FNV64_INIT, scheme, strlen(scheme));
	a = cr_fnv64(a, host, strlen(host));
	uint64_t b = cr_fnv64(a ^ 0x9e3779b97f4a7c15ull, host, strlen(host));
	memcpy(ld.addr, &a, 8);
	memcpy(ld.addr + 8, &b, 8);
	return cr_limit_slot(lane->id, &ld);
}

void cr_curl_limit_refused(struct cr_curl_easy *e, const struct cr_lane *lane, const char *key,
			   uint64_t t_start, long waited_ms, long shown_ms)
{
	const char *scheme = e->u_scheme, *host = e->u_host;
	atomic_fetch_add(&cr_curl_ctr.limit_overflows, 1);
	cr_m_overflow(lane->id);
	cr_notice_refused(
		lane,
		&(struct cr_dest){.family = AF_UNSPEC, .port = (uint16_t)e->u_port, .host = host},
		0);
	cr_m_request(lane->id, key, cr_now_ns() - t_start, CR_OUT_OVERFLOW);
	cr_curl_alog(e, lane, key, CURLE_OPERATION_TIMEDOUT, t_start, waited_ms, 1);
	/* As for the timeout it reports, the handle's results are not the
	 * previous transfer's (RESPONSE_CODE 0, not its 200): a performed handle
	 * is answered by a fresh twin until its next perform (handles.c,
	 * cr_curl_getinfo), as after a breaker refusal (resil.c). */
	e->stale = e->performed;
	errbuf_set(e,
		   "connroute: lane '%s': %ld transfers to %s://%s:%d already in flight "
		   "(max_conns_per_host = %ld); waited %ld ms (queue_timeout)",
		   lane->name, lane->max_conns_per_host, scheme, host, e->u_port,
		   lane->max_conns_per_host, shown_ms);
}

/* One perform with deadline RT_MS (0 = none), started at T0_NS. A
 * response_header_timeout expiry, whether our callback aborted or
 * libcurl's timer fired first, reads as the timeout it is and is flagged
 * for the message. */
static CURLcode perform_once(struct cr_curl_easy *e, long rt_ms, uint64_t t0_ns)
{
	cr_curl_attempt_start(e, rt_ms, t0_ns);
	CURLcode rc = e->lib->fns.easy_perform(e->h);
	return cr_curl_attempt_end(e, rc, rt_ms);
}

void cr_curl_attempt_start(struct cr_curl_easy *e, long rt_ms, uint64_t t0_ns)
{
	e->rht_ref_ns = 0;
	e->rht_fired = 0;
	e->rht_relaxed = 0;
	e->rt_ms = rt_ms;
	e->new_conns = 0;
	e->warm_used = 0;
	e->perform_t0_ns = t0_ns;
	/* libcurl gives a new connection's connect whatever is left of the
	 * total timeout when it starts (the happy-eyeballs timer is set before
	 * the socket exists), so the first deadline must leave the connect its
	 * own time: connect + rht; it is tightened once the request is sent. */
	if (e->rht_ms > 0)
		want_long(e, OV_TIMEOUT,
			  cr_curl_min_nonzero(rt_ms, e->rht_ms + (e->ct_ms > 0 ? e->ct_ms : 0)));
}

CURLcode cr_curl_attempt_end(struct cr_curl_easy *e, CURLcode rc, long rt_ms)
{
	const struct cr_curlfns *f = &e->lib->fns;
	if (e->new_conns) {
		/* libcurl's "connection died, retrying" counter only goes back
		 * to 0 with a reset: this life ends with one. */
		e->life_reset = 1;
		cr_curl_sockets_count(e);
	}
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
static CURLcode perform_with_retries(struct cr_curl_easy *e, const struct cr_lane *lane,
				     const char *key, long rt, long waited_ms, uint64_t t0,
				     struct cr_curl_pframe *pf)
{
	unsigned keyflags = 0;
	/* The retry budget counts requests; a lane without retries needs none. */
	if (lane->retries > 0) {
		cr_key_flags(key, &keyflags);
		cr_curl_retry_note_request(lane->id, t0);
	}
	cr_m_inflight(lane->id, 1);
	pf->lane_id = lane->id;
	e->resends = 0;
	CURLcode rc = perform_once(e, rt, t0);
	long pause;
	for (int attempt = 0;
	     rc != CURLE_OK &&
	     (pause = cr_curl_retry_next(e, lane, keyflags, attempt, rc, rt, t0, waited_ms)) >= 0;
	     attempt++) {
		if (pause > 0) {
			struct timespec ts = {.tv_sec = pause / 1000,
					      .tv_nsec = (pause % 1000) * 1000000L};
			nanosleep(&ts, NULL);
		}
		uint64_t t = cr_now_ns();
		long left = 0;
		if (rt > 0) {
			left = rt - (long)((t - t0) / 1000000ull) - waited_ms;
			if (left < 1)
				left = 1;
			want_long(e, OV_TIMEOUT, left);
		}
		cr_curl_retry_count(lane, key, attempt, rc);
		e->resends = attempt + 1;
		rc = perform_once(e, rt > 0 ? left : 0, t);
	}
	return rc;
}

static CURLcode perform_routed(struct cr_curllib *lib, struct cr_curl_easy *e,
			       const struct cr_config *cfg, struct cr_curl_pframe *pf)
{
	const char *key;
	const struct cr_lane *lane = pick_lane(cfg, e, &key);
	e->lane = lane;
	uint64_t t_start = cr_now_ns();

	int adm = 0; /* resilience: the breaker's admission (lib/curl/resil.c) */
	if (lane->health && cr_curl_health_before(e, lane, key, t_start, &adm) != 0) {
		e->lane = NULL;
		return CURLE_COULDNT_CONNECT;
	}
	uint32_t slot;
	long waited_ms;
	if (limit(e, lane, key, t_start, &slot, &waited_ms) != 0) {
		e->lane = NULL;
		return CURLE_OPERATION_TIMEDOUT;
	}
	pf->slot = slot;
	long rt = apply_lane(e, cfg, lane, waited_ms);

	/* The share: the one parked on the handle if it is of this lane's pool
	 * (a persistent handle: no lock, no setopt), else another. */
	/* A handle with its own closesocket callback is never pooled: libcurl
	 * runs the callback inside curl_easy_cleanup of the handle that made the
	 * connection, and the app may free its data right after; a pooled
	 * connection would outlive both. */
	/* Only the lane's pool_schemes are pooled across handles: a session
	 * protocol's connection (FTP, IMAP, SMTP...) is the app's client, ended
	 * by its curl_easy_cleanup (docs/INTERNALS.md, "Pooled schemes"); the
	 * handle then keeps it in its own cache and is never recycled (dirty). */
	int poolable = !e->app_share && !e->forbid_reuse && !e->app_closesocket_fn &&
		       !e->connect_only && !e->upkeep_set && lane->max_idle_per_host > 0 &&
		       cr_curl_scheme_pooled(lane, e);
	uint64_t flavor = e->resolve ? cr_curl_shares_flavor(e->resolve) : 0;
	struct cr_curl_share *s = e->share;
	/* The share of the last perform, for the same lane of the same config
	 * (a reload or a fork changes cr_curl_cfg_gen, a retired pool comes
	 * with a reload): it fits. */
	unsigned cfgen = atomic_load_explicit(&cr_curl_cfg_gen, memory_order_relaxed);
	int same = s && s == e->sh_share && e->sh_lane == lane && e->sh_cfg == cfg &&
		   e->sh_cfgen == cfgen && !e->resolve;
	if (s && (!poolable || (!same && !cr_curl_shares_fits(e, lane, flavor)))) {
		cr_curl_shares_release(lib, e);
		s = NULL;
	}
	if (poolable && !s)
		s = cr_curl_shares_checkout(lib, e, lane, flavor, t_start, 1);
	e->sh_share = s;
	e->sh_lane = lane;
	e->sh_cfg = cfg;
	e->sh_cfgen = cfgen;
	if (s) {
		want_long(e, OV_MAXCONNECTS, lane->max_idle_per_host);
		atomic_fetch_add_explicit(&cr_curl_ctr.performs_pooled, 1, memory_order_relaxed);
	} else {
		want_long(e, OV_MAXCONNECTS, e->app_maxconnects);
		atomic_fetch_add_explicit(&cr_curl_ctr.performs_unpooled, 1, memory_order_relaxed);
		e->dirty = 1; /* the handle's own cache may now hold a connection */
	}

	e->performed = 1;
	e->stale = 0; /* the perform starts from clean results (Curl_pretransfer) */
	unsigned long closes = cr_curl_tls_closes;
	CURLcode rc = perform_with_retries(e, lane, key, rt, waited_ms, t_start, pf);
	if (lane->health)
		cr_curl_health_after(e, lane, rc, adm);
	cr_curl_alog(e, lane, key, rc, t_start, waited_ms, 0); /* before the share is detached */
	if (cr_curl_tls_closes != closes)
		e->life_reset = 1; /* a connection died under it: see perform_once */

	e->warm_fd = -1; /* one taken but never used was closed by libcurl */
	if (e->rht_ms > 0 && e->rht_fired && rc == CURLE_OPERATION_TIMEDOUT)
		errbuf_set(e,
			   "connroute: lane '%s': no response headers within %ld ms "
			   "(response_header_timeout)",
			   lane->name, e->rht_ms);

	/* Does libcurl's current URL read as the one the app set? Then setting
	 * the same one again can be skipped (handles.c). */
	e->last_code_known = 0;
	if (e->url_text[0]) {
		/* The same URL with no redirect possible (FOLLOWLOCATION known off,
		 * no unknown option) ends as it ended last time: asked once per URL. */
		if (e->url_norm_gen == e->url_gen && !e->dirty && cr_curl_no_follow(e)) {
			e->url_in_state = e->url_norm_same;
		} else {
			char *eu = NULL;
			lib->fns.easy_getinfo(e->h, CURLINFO_EFFECTIVE_URL, &eu);
			e->url_in_state = e->url_norm_same = eu && strcmp(eu, e->url_text) == 0;
			e->url_norm_gen = e->url_gen;
		}
	}

	uint64_t t_end = cr_now_ns();
	atomic_store_explicit(&e->last_perform_ns, t_end, memory_order_relaxed);
	cr_m_inflight(lane->id, -1);
	pf->lane_id = -1;
	cr_m_request(lane->id, key, t_end - t_start,
		     rc == CURLE_OK                   ? CR_OUT_OK
		     : rc == CURLE_OPERATION_TIMEDOUT ? CR_OUT_TIMEOUT
						      : CR_OUT_ERROR);
	e->lane = NULL;
	if (slot != CR_SLOT_NONE) {
		/* A lane with a per-host limit: transfers wait for one another,
		 * and the next one (another handle, another thread) must find this
		 * connection free rather than open one beside it while this handle
		 * sits idle: the share goes back before the unit does. */
		if (e->share)
			cr_curl_shares_release(lib, e);
		pf->slot = CR_SLOT_NONE;
		cr_limit_release(slot);
	}
	return rc;
}

const struct cr_lane *cr_curl_lane_for(const struct cr_config *cfg, struct cr_curl_easy *e,
				       const char **key)
{
	return pick_lane(cfg, e, key);
}

long cr_curl_apply_lane(struct cr_curl_easy *e, const struct cr_config *cfg,
			const struct cr_lane *lane, long waited_ms)
{
	return apply_lane(e, cfg, lane, waited_ms);
}

/* A perform we do not route: the handle as the app made it, without our
 * share (libcurl's private cache). */
static CURLcode perform_unrouted(struct cr_curllib *lib, struct cr_curl_easy *e)
{
	atomic_fetch_add(&cr_curl_ctr.performs_unpooled, 1);
	if (e->share)
		cr_curl_shares_release(lib, e);
	cr_curl_put_back(e, e->h);
	e->dirty = 1; /* its private cache may now hold a connection */
	e->performed = 1;
	e->stale = 0;
	e->life_reset = 1;
	e->url_in_state = 0;
	return lib->fns.easy_perform(e->h);
}

CURLcode cr_curl_perform(struct cr_curllib *lib, CURL *h)
{
	struct cr_curl_pframe pf = CR_CURL_PFRAME0;
	return cr_curl_perform_in(lib, h, &pf);
}

CURLcode cr_curl_perform_in(struct cr_curllib *lib, CURL *h, struct cr_curl_pframe *pf)
{
	struct cr_curl_easy *e = cr_curl_handles_get(h);
	if (!e) {
		atomic_fetch_add(&cr_curl_ctr.performs_unpooled, 1);
		return lib->fns.easy_perform(h);
	}
	if (__builtin_expect(e->mxt != NULL || e->left, 0)) {
		/* In a multi through our hooks (maybe only queued there):
		 * libcurl's refusal, and nothing of the lane's is taken off it. */
		if (e->mxt)
			return cr_curl_mx_easy_perform(lib, e);
		/* Left by a jump: libcurl's alone (it refuses). */
		return lib->fns.easy_perform(h);
	}
	int took = cr_curl_pin(e);
	pf->e = e;
	if (e->twin || (e->set_prev[0] & ~e->set_now[0]) || (e->set_prev[1] & ~e->set_now[1]))
		cr_curl_settle(e);
	else
		e->set_prev[0] = e->set_prev[1] =
			0; /* set again in this life: nothing to put back */
	CURLcode rc;
	/* Held for the whole perform: a reload must not free the lane under a
	 * transfer (nor cancel its dial). */
	/* A handle attached to a multi is the multi's: libcurl refuses to
	 * perform it, and a share parked on it would be the multi's transfer's. */
	const struct cr_config *cfg = e->url_ok && !e->multi ? cr_cfgref_acquire() : NULL;
	if (cfg) {
		pf->cfg = cfg;
		rc = perform_routed(lib, e, cfg, pf);
		pf->cfg = NULL;
		cr_cfgref_release(cfg);
	} else {
		rc = perform_unrouted(lib, e);
	}
	cr_curl_unpin(e, took);
	return rc;
}

/* ------------------------------------------------------ left by a jump */

/* Performs left by a jump whose things are not given back yet: a fixed
 * table in BSS, claimed by CAS (cr_curl_perform_left may run in a signal
 * handler, on any thread), given back by whichever thread settles first.
 * Beyond CR_CURL_LEFT_MAX left at once, the rest keep their units, gauges
 * and references; a share is also reachable from its handle (left_share),
 * so it leaves its pool at that handle's cleanup in any case. */
#define CR_CURL_LEFT_MAX 16
enum { LEFT_FREE, LEFT_BUSY, LEFT_FULL };
static struct {
	atomic_int state;
	struct cr_curl_share *share;
	const struct cr_curl_easy *holder; /* compared only */
	unsigned share_fork;
	const struct cr_config *cfg;
	uint32_t slot;
	int lane_id;
} left_tab[CR_CURL_LEFT_MAX];
atomic_int cr_curl_left_n;

void cr_curl_perform_left(struct cr_curl_pframe *pf)
{
	struct cr_curl_easy *e = pf->e;
	struct cr_curl_share *s = NULL;
	if (e) {
		/* libcurl's dead transfer holds the handle for good: its later
		 * calls answer as without us (perform, multi add: refused;
		 * cleanup: libcurl's own, never recycled). The share parked on it
		 * holds the transfer's connection: never set on it again, never
		 * given to another handle (its pin stays held: no taker takes
		 * it before it leaves its pool). */
		s = e->share;
		e->share = NULL;
		/* Abandoned by the handle's cleanup at the latest, before its
		 * record is freed: the share must never list a freed holder,
		 * whether or not the table below has room or was settled. */
		e->left_share = s;
		e->held[OV_SHARE].p = NULL;
		e->ov_gen++;
		e->left = 1;
		e->dirty = 1;
		e->lane = NULL;
	}
	if (!s && !pf->cfg && pf->slot == CR_SLOT_NONE && pf->lane_id < 0)
		return;
	for (int i = 0; i < CR_CURL_LEFT_MAX; i++) {
		int x = LEFT_FREE;
		if (!atomic_compare_exchange_strong(&left_tab[i].state, &x, LEFT_BUSY))
			continue;
		left_tab[i].share = s;
		left_tab[i].holder = e;
		left_tab[i].share_fork = e ? e->share_fork : 0;
		left_tab[i].cfg = pf->cfg;
		left_tab[i].slot = pf->slot;
		left_tab[i].lane_id = pf->lane_id;
		atomic_store_explicit(&left_tab[i].state, LEFT_FULL, memory_order_release);
		atomic_fetch_add(&cr_curl_left_n, 1);
		return;
	}
	/* Full: the unit, gauge and reference are kept (docs/INTERNALS.md);
	 * the share leaves its pool at the handle's cleanup. */
}

/* In a fork child: the parent's units are not the child's (its limit counts
 * start at 0, cr_limits_reset_child), so an entry gives none back there: it
 * would give back one a child's transfer holds (one more than
 * max_conns_per_host). Its gauge and config reference are the child's copies
 * (inherited counts): still settled. An entry half written or half read by a
 * thread that did not survive the fork is dropped. Stores only. */
void cr_curl_left_atfork_child(void)
{
	int n = 0;
	for (int i = 0; i < CR_CURL_LEFT_MAX; i++) {
		left_tab[i].slot = CR_SLOT_NONE;
		if (atomic_load(&left_tab[i].state) == LEFT_FULL)
			n++;
		else
			atomic_store(&left_tab[i].state, LEFT_FREE);
	}
	atomic_store(&cr_curl_left_n, n);
}

void cr_curl_left_settle(void)
{
	for (int i = 0; i < CR_CURL_LEFT_MAX; i++) {
		int x = LEFT_FULL;
		if (!atomic_compare_exchange_strong(&left_tab[i].state, &x, LEFT_BUSY))
			continue;
		struct cr_curl_share *s = left_tab[i].share;
		const struct cr_curl_easy *holder = left_tab[i].holder;
		unsigned fork = left_tab[i].share_fork;
		const struct cr_config *cfg = left_tab[i].cfg;
		uint32_t slot = left_tab[i].slot;
		int lane_id = left_tab[i].lane_id;
		atomic_store_explicit(&left_tab[i].state, LEFT_FREE, memory_order_release);
		atomic_fetch_sub(&cr_curl_left_n, 1);
		/* The share leaves its pool before the unit goes back (rule 5). */
		if (s)
			cr_curl_shares_abandon(s, holder, fork);
		if (lane_id >= 0)
			cr_m_inflight(lane_id, -1);
		if (slot != CR_SLOT_NONE)
			cr_limit_release(slot);
		if (cfg)
			cr_cfgref_release(cfg);
	}
}
