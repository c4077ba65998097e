/* connroute: libcurl lanes — transfers driven by a multi handle
 * (docs/INTERNALS.md, "libcurl lanes", multi transfers).
 *
 * A transfer the app adds runs in the lane of the adding thread's key and
 * its destination, as an easy perform does: the lane's options (apply_lane
 * of perform.c), the multi's share of the lane (connections never cross
 * lanes), a limit unit (max_conns_per_host: no unit, no libcurl add; it
 * waits in the multi's queue), metrics, the access log and retries at
 * completion. Every hooked call on the multi pumps: collect completions,
 * admit what may start, fail what waited too long.
 *
 * Threads: a multi and its handles are driven by one thread at a time
 * (libcurl's rule), so a struct cr_mx, its transfers, messages and shares
 * are only touched by that thread. The table of multis is read without a
 * lock: only a multi's own driving thread inserts or removes its key. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alog_curl.h"
#include "base.h"
#include "cfgref.h"
#include "curl_int.h"
#include "key.h"
#include "lane.h"
#include "limit.h"
#include "log.h"
#include "metrics.h"

/* While something is queued, the queue is looked at this often at least
 * (a unit may be freed by another thread at any time). */
#define MX_CHECK_NS (20ull * 1000000ull)

enum {
	T_QUEUED, /* waiting for a unit: libcurl does not have it */
	T_ADDED,  /* in libcurl's multi, transferring */
	T_RETRY,  /* really removed, re-added once not_before has passed */
	T_DONE,   /* in libcurl's multi, finished: its message is ours */
	T_FAILED, /* refused by the queue: never in libcurl's multi */
	T_LOOSE,  /* in libcurl's multi after the app's curl_easy_reset: only
		     our share is left to give back at its removal */
};

struct mxshare {
	struct mxshare *next;
	const struct cr_lane *lane;
	unsigned cfgen;
	CURLSH *sh;
};

struct cr_mxt {
	struct cr_mxt *prev, *next;
	struct cr_mx *x;
	struct cr_curl_easy *e;
	int state;
	const struct cr_config *cfg; /* a reference, while routed */
	const struct cr_lane *lane;
	char key[CR_KEY_MAX];
	unsigned keyflags;
	uint32_t slot; /* CR_SLOT_NONE: unlimited */
	int unit;      /* holds a unit of slot */
	int inflight;  /* counted in the lane's inflight gauge */
	uint64_t t_start, deadline_ns, not_before_ns;
	long rt, waited_ms;
	int attempt;
	int asked; /* the breaker was asked (once per request) ... */
	int adm;   /* ... and answered this (CR_ADMIT_*: resil.c) */
	CURLcode last_rc;
	struct mxshare *share; /* set on the handle by us */
};

struct cr_mx {
	CURLM *m;
	struct cr_curllib *lib;
	struct cr_mxt *head, *tail;
	int nqueued; /* T_QUEUED + T_RETRY */
	int nadded;  /* T_ADDED */
	int admits;  /* real adds by pumps (admissions, retries), ever */
	int busy;    /* inside the real socket_all or wait/poll: libcurl's own nested
			curl_multi_perform/_timeout calls (through its PLT) pass through */
	CURLMsg **q; /* messages to deliver, oldest first */
	int qn, qcap;
	struct mxshare *shares;
	/* the app's timer callback, wrapped */
	curl_multi_timer_callback app_timer;
	void *app_timer_data;
	int lib_has;         /* libcurl wants a timer ... */
	uint64_t lib_exp_ns; /* ... at this time */
	uint64_t check_ns;   /* the queue's next periodic check */
	int kick;            /* a message of ours the app's loop must come back for */
	int armed;           /* the app's timer is set ... */
	uint64_t armed_ns;   /* ... for this time */
};

/* ------------------------------------------------------ the multi table */

#define MX_TAB  1024
#define MX_TOMB ((CURLM *)1)
static struct {
	CURLM *_Atomic key;
	struct cr_mx *_Atomic rec;
} mxtab[MX_TAB];
atomic_int cr_curl_mx_known;

static unsigned mx_hash(CURLM *m)
{
	uint64_t v = (uint64_t)(uintptr_t)m;
	v ^= v >> 17;
	v *= 0x9e3779b97f4a7c15ull;
	return (unsigned)(v >> 40) & (MX_TAB - 1);
}

struct cr_mx *cr_curl_mx_get_slow(CURLM *m)
{
	unsigned i = mx_hash(m);
	for (int n = 0; n < MX_TAB; n++, i = (i + 1) & (MX_TAB - 1)) {
		CURLM *k = atomic_load_explicit(&mxtab[i].key, memory_order_acquire);
		if (k == m)
			return atomic_load_explicit(&mxtab[i].rec, memory_order_relaxed);
		if (!k)
			return NULL;
	}
	return NULL;
}

static int mx_insert(struct cr_mx *x)
{
	unsigned i = mx_hash(x->m);
	for (int n = 0; n < MX_TAB; n++, i = (i + 1) & (MX_TAB - 1)) {
		CURLM *k = atomic_load_explicit(&mxtab[i].key, memory_order_relaxed);
		if ((k == NULL || k == MX_TOMB) &&
		    atomic_compare_exchange_strong(&mxtab[i].key, &k, x->m)) {
			atomic_store_explicit(&mxtab[i].rec, x, memory_order_release);
			atomic_fetch_add(&cr_curl_mx_known, 1);
			return 0;
		}
	}
	return -1;
}

static void mx_delete(CURLM *m)
{
	unsigned i = mx_hash(m);
	for (int n = 0; n < MX_TAB; n++, i = (i + 1) & (MX_TAB - 1)) {
		CURLM *k = atomic_load_explicit(&mxtab[i].key, memory_order_acquire);
		if (k == m) {
			atomic_store_explicit(&mxtab[i].rec, NULL, memory_order_relaxed);
			atomic_store_explicit(&mxtab[i].key, MX_TOMB, memory_order_release);
			atomic_fetch_sub(&cr_curl_mx_known, 1);
			return;
		}
		if (!k)
			return;
	}
}

static struct cr_mx *mx_make(struct cr_curllib *lib, CURLM *m)
{
	struct cr_mx *x = cr_curl_mx_get(m);
	if (x)
		return x;
	x = calloc(1, sizeof(*x));
	if (!x)
		return NULL;
	x->m = m;
	x->lib = lib;
	if (mx_insert(x) != 0) {
		static atomic_int said;
		if (!atomic_exchange(&said, 1))
			cr_logmsg(CR_LL_WARN,
				  "libcurl: more than %d multi handles at once: "
				  "the others' transfers are not routed",
				  MX_TAB);
		free(x);
		return NULL;
	}
	return x;
}

struct cr_curllib *cr_curl_mx_lib(const struct cr_mx *x)
{
	return x->lib;
}

/* fork child: the parent's records are abandoned, never freed (its other
 * threads may have been inside them); the child's calls pass through. */
void cr_curl_mx_atfork_child(void)
{
	for (int i = 0; i < MX_TAB; i++) {
		atomic_store(&mxtab[i].key, NULL);
		atomic_store(&mxtab[i].rec, NULL);
	}
	atomic_store(&cr_curl_mx_known, 0);
}

/* ------------------------------------------------ left by a longjmp */

/* The last multi whose call was left by longjmp/siglongjmp (or pthread_exit)
 * on this thread, recorded by cr_curl_mx_left and settled by this thread's
 * next pump or add. */
static __thread CURLM *left_m;
__thread struct cr_mx *cr_curl_mx_left_x;

void cr_curl_mx_left(struct cr_mx *x)
{
	/* From glibc's unwinding, maybe in a signal handler: stores only. */
	x->busy = 0;
	left_m = x->m;
	cr_curl_mx_left_x = x;
}

static void unit_release(struct cr_mxt *t);
static void inflight_end(struct cr_mxt *t);

/* A longjmp out of an app's callback leaves libcurl's multi in its callback
 * for good: it answers every call with CURLM_RECURSIVE_API_CALL, so its
 * transfers never finish and no removal of them ever succeeds. Their units
 * go back at the thread's next multi pump or add or easy perform (a program
 * may never call the multi again; docs/INTERNALS.md, "Multi transfers", left by a longjmp);
 * a multi left any other way (a signal handler's jump out of a wait) still
 * works and keeps them. */
void cr_curl_mx_settle_left(void)
{
	struct cr_mx *x = cr_curl_mx_left_x;
	CURLM *m = left_m;
	cr_curl_mx_left_x = NULL;
	left_m = NULL;
	if (cr_curl_mx_get(m) != x) /* cleaned up since: X is gone */
		return;
	long ms;
	if (x->lib->fns.multi_timeout(m, &ms) != CURLM_RECURSIVE_API_CALL)
		return;
	for (struct cr_mxt *t = x->head; t; t = t->next)
		if (t->state == T_ADDED) {
			unit_release(t);
			inflight_end(t);
		}
}

/* ---------------------------------------------------------- messages */

static void msg_push(struct cr_mx *x, CURLMsg *msg)
{
	if (x->qn == x->qcap) {
		int cap = x->qcap ? x->qcap * 2 : 16;
		CURLMsg **q = realloc(x->q, sizeof(*q) * (size_t)cap);
		if (!q)
			return; /* lost, as libcurl loses one it cannot allocate */
		x->q = q;
		x->qcap = cap;
	}
	x->q[x->qn++] = msg;
}

/* The handle's messages go with it (libcurl drops them at its removal). */
static void msg_drop(struct cr_mx *x, CURL *h)
{
	int k = 0;
	for (int i = 0; i < x->qn; i++)
		if (x->q[i]->easy_handle != h)
			x->q[k++] = x->q[i];
	x->qn = k;
}

/* ---------------------------------------------------------- transfers */

static void link_t(struct cr_mx *x, struct cr_mxt *t)
{
	t->x = x;
	t->prev = x->tail;
	t->next = NULL;
	if (x->tail)
		x->tail->next = t;
	else
		x->head = t;
	x->tail = t;
}

static void unlink_t(struct cr_mx *x, struct cr_mxt *t)
{
	if (t->prev)
		t->prev->next = t->next;
	else
		x->head = t->next;
	if (t->next)
		t->next->prev = t->prev;
	else
		x->tail = t->prev;
}

static void set_state(struct cr_mxt *t, int st)
{
	struct cr_mx *x = t->x;
	if (t->state == T_QUEUED || t->state == T_RETRY)
		x->nqueued--;
	if (t->state == T_ADDED)
		x->nadded--;
	t->state = st;
	if (st == T_QUEUED || st == T_RETRY)
		x->nqueued++;
	if (st == T_ADDED)
		x->nadded++;
}

static void unit_release(struct cr_mxt *t)
{
	if (t->unit) {
		t->unit = 0;
		cr_limit_release(t->slot);
	}
}

static void inflight_end(struct cr_mxt *t)
{
	if (t->inflight) {
		t->inflight = 0;
		cr_m_inflight(t->lane->id, -1);
	}
}

/* The lane given back: unit, gauges, config reference. */
static void unroute_t(struct cr_mxt *t)
{
	if (!t->cfg)
		return;
	if (t->state == T_QUEUED)
		cr_m_queued(t->lane->id, -1);
	unit_release(t);
	inflight_end(t);
	if (t->e->lane == t->lane)
		t->e->lane = NULL;
	cr_cfgref_release(t->cfg);
	t->cfg = NULL;
}

/* The transfer's record goes: the app's values back on the handle (never
 * while libcurl's multi holds it: see the callers), its messages dropped. */
static void free_t(struct cr_mx *x, struct cr_mxt *t)
{
	struct cr_curl_easy *e = t->e;
	unroute_t(t);
	set_state(t, T_FAILED);
	int took = cr_curl_pin(e);
	cr_curl_put_back(e, e->h);
	cr_curl_unpin(e, took);
	msg_drop(x, e->h);
	unlink_t(x, t);
	e->mxt = NULL;
	free(t);
}

/* The multi's share of LANE (this config): made at its first use. */
static struct mxshare *share_for(struct cr_mx *x, const struct cr_lane *lane)
{
	unsigned gen = atomic_load_explicit(&cr_curl_cfg_gen, memory_order_relaxed);
	for (struct mxshare *s = x->shares; s; s = s->next)
		if (s->lane == lane && s->cfgen == gen)
			return s;
	const struct cr_curlfns *f = &x->lib->fns;
	CURLSH *sh = f->share_init();
	if (!sh)
		return NULL;
	/* No lock callbacks: only handles of this multi ever hold it, and a
	 * multi is driven by one thread at a time. */
	f->share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
	f->share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
	struct mxshare *s = calloc(1, sizeof(*s));
	if (!s) {
		f->share_cleanup(sh);
		return NULL;
	}
	s->lane = lane;
	s->cfgen = gen;
	s->sh = sh;
	s->next = x->shares;
	x->shares = s;
	atomic_fetch_add(&cr_curl_ctr.shares_created, 1);
	return s;
}

static void deliver(struct cr_mx *x, struct cr_mxt *t, CURLcode rc, int overflow);

/* Into libcurl's multi: the breaker, the lane's options and share, then the
 * real add. A transfer the breaker refuses is failed here (state T_FAILED,
 * its message queued): CURLM_OK all the same. */
static CURLMcode admit(struct cr_mx *x, struct cr_mxt *t, uint64_t now)
{
	struct cr_curl_easy *e = t->e;
	const struct cr_lane *lane = t->lane;
	if (t->state == T_QUEUED) {
		uint64_t w = now - t->t_start;
		cr_m_queued(lane->id, -1);
		cr_m_queue_wait(lane->id, w);
		t->waited_ms = (long)(w / 1000000ull);
	}
	int took = cr_curl_pin(e);
	/* Resilience (docs/INTERNALS.md, "Resilience"): the breaker of (lane,
	 * host) once per request, as the transfer is about to start (after the
	 * queue); open, it fails at once as an easy perform does (resil.c says
	 * so in the error buffer, metrics and access log), and the app gets a
	 * CURLMSG_DONE. Also sets the handle's per-transfer state that the
	 * opensocket callback (ejected addresses) and the completion use. */
	if (lane->health && !t->asked) {
		t->asked = 1;
		if (cr_curl_health_before(e, lane, t->key, t->t_start, &t->adm) != 0) {
			cr_curl_unpin(e, took);
			set_state(t, T_FAILED);
			deliver(x, t, CURLE_COULDNT_CONNECT, 1);
			/* libcurl's add would have called the app's timer: an
			 * event loop must come back to read the message. */
			x->kick = 1;
			return CURLM_OK;
		}
	}
	t->rt = cr_curl_apply_lane(e, t->cfg, lane, t->waited_ms);
	/* A scheme the lane does not pool runs in libcurl's own multi cache, as
	 * without the shim (docs/INTERNALS.md, "Pooled schemes"). */
	if (!e->app_share && !e->connect_only && cr_curl_scheme_pooled(lane, e)) {
		t->share = share_for(x, lane);
		if (t->share && e->held[OV_SHARE].p != t->share->sh)
			cr_curl_hold(e, OV_SHARE, (union cr_ov_val){.p = t->share->sh});
	}
	cr_curl_unpin(e, took);
	e->lane = lane;
	e->resends = 0;
	e->performed = 1;
	e->stale = 0;
	e->life_reset = 1; /* the multi's state stays behind on the handle */
	e->url_in_state = 0;
	if (lane->retries > 0) {
		cr_key_flags(t->key, &t->keyflags);
		cr_curl_retry_note_request(lane->id, t->t_start);
	}
	cr_curl_attempt_start(e, t->rt, now);
	CURLMcode rc = x->lib->fns.multi_add_handle(x->m, e->h);
	if (rc != CURLM_OK) {
		e->lane = NULL;
		return rc;
	}
	cr_m_inflight(lane->id, 1);
	t->inflight = 1;
	set_state(t, T_ADDED);
	x->admits++;
	return CURLM_OK;
}

/* Nothing more will happen to it: counted, logged, its message queued.
 * OVERFLOW: refused before libcurl had it (queue, breaker), counted and
 * logged already. */
static void deliver(struct cr_mx *x, struct cr_mxt *t, CURLcode rc, int overflow)
{
	struct cr_curl_easy *e = t->e;
	if (!overflow) {
		cr_curl_alog(e, t->lane, t->key, rc, t->t_start, t->waited_ms, 0);
		cr_m_request(t->lane->id, t->key, cr_now_ns() - t->t_start,
			     rc == CURLE_OK                   ? CR_OUT_OK
			     : rc == CURLE_OPERATION_TIMEDOUT ? CR_OUT_TIMEOUT
							      : CR_OUT_ERROR);
		if (e->rht_ms > 0 && e->rht_fired && rc == CURLE_OPERATION_TIMEDOUT && e->errbuf)
			snprintf(e->errbuf, CURL_ERROR_SIZE,
				 "connroute: lane '%s': no response headers within %ld ms "
				 "(response_header_timeout)",
				 t->lane->name, e->rht_ms);
	}
	inflight_end(t);
	unit_release(t);
	/* In the handle's record, not the transfer's: programs read the message
	 * again after curl_multi_remove_handle (libcurl 7.x keeps its own in the
	 * easy handle, so that works without us). */
	e->mx_msg.msg = CURLMSG_DONE;
	e->mx_msg.easy_handle = e->h;
	e->mx_msg.data.result = rc;
	msg_push(x, &e->mx_msg);
}

/* libcurl finished T's attempt with RC: retried where invisible to the
 * app, else delivered. */
static void complete(struct cr_mx *x, struct cr_mxt *t, CURLcode rc)
{
	struct cr_curl_easy *e = t->e;
	rc = cr_curl_attempt_end(e, rc, t->rt);
	int reported = 0; /* the attempt's outcome went to resil.c with the retry */
	if (rc != CURLE_OK && t->lane->retries > 0) {
		/* retry.c: the easy path's decision, budget and throttle */
		long pause = cr_curl_retry_next(e, t->lane, t->keyflags, t->attempt, rc, t->rt,
						t->t_start, t->waited_ms);
		if (pause >= 0 && x->lib->fns.multi_remove_handle(x->m, e->h) == CURLM_OK) {
			t->last_rc = rc;
			t->not_before_ns = cr_now_ns() + (uint64_t)pause * 1000000ull;
			set_state(t, T_RETRY);
			return;
		}
		reported = pause >= 0;
	}
	/* Resilience: the outcome, as after an easy perform (addresses tried,
	 * tokens, the breaker's window). */
	if (t->lane->health) {
		if (reported)
			cr_curl_health_request(e, t->lane, rc, t->adm);
		else
			cr_curl_health_after(e, t->lane, rc, t->adm);
	}
	set_state(t, T_DONE);
	deliver(x, t, rc, 0);
}

static void retry_now(struct cr_mx *x, struct cr_mxt *t, uint64_t now)
{
	struct cr_curl_easy *e = t->e;
	long left = 0;
	if (t->rt > 0) {
		left = t->rt - (long)((now - t->t_start) / 1000000ull) - t->waited_ms;
		if (left < 1)
			left = 1;
		cr_curl_perform_set_timeout(e, left);
	}
	cr_curl_retry_count(t->lane, t->key, t->attempt, t->last_rc);
	t->attempt++;
	e->resends = t->attempt;
	cr_curl_attempt_start(e, left, now);
	if (x->lib->fns.multi_add_handle(x->m, e->h) == CURLM_OK) {
		set_state(t, T_ADDED);
		x->admits++;
		return;
	}
	if (t->lane->health) /* its last attempt went to resil.c with the retry */
		cr_curl_health_request(e, t->lane, t->last_rc, t->adm);
	set_state(t, T_DONE);
	deliver(x, t, t->last_rc, 0);
}

/* Refused by the queue: a CURLMSG_DONE like libcurl's own errors. */
static void expire(struct cr_mx *x, struct cr_mxt *t, uint64_t now)
{
	uint64_t w = now - t->t_start;
	cr_m_queued(t->lane->id, -1);
	cr_m_queue_wait(t->lane->id, w);
	t->waited_ms = (long)(w / 1000000ull);
	set_state(t, T_FAILED);
	cr_curl_limit_refused(t->e, t->lane, t->key, t->t_start, t->waited_ms, t->waited_ms);
	deliver(x, t, CURLE_OPERATION_TIMEDOUT, 1);
}

/* libcurl's messages into ours; our transfers are finished there. */
static void collect(struct cr_mx *x)
{
	CURLMsg *msg;
	int left;
	while ((msg = x->lib->fns.multi_info_read(x->m, &left))) {
		if (msg->msg == CURLMSG_DONE) {
			struct cr_curl_easy *e = cr_curl_handles_get(msg->easy_handle);
			struct cr_mxt *t = e ? e->mxt : NULL;
			if (t && t->x == x && t->state == T_ADDED) {
				complete(x, t, msg->data.result);
				continue;
			}
		}
		msg_push(x, msg); /* libcurl's: valid until the handle's removal */
	}
}

/* Collect, then admit what may start (and retries whose pause is over),
 * then fail what waited too long. A unit refused to one transfer is not
 * tried for a later one of the same slot (first come, first served). */
static void pump(struct cr_mx *x)
{
	if (cr_curl_mx_left_x)
		cr_curl_mx_settle_left();
	x->kick = 0; /* the app is here: it reads messages after this call */
	if (x->nadded > 0)
		collect(x);
	if (!x->nqueued)
		return;
	uint64_t now = cr_now_ns();
	uint32_t refused[8];
	int nref = 0;
	for (struct cr_mxt *t = x->head, *next; t; t = next) {
		next = t->next;
		if (t->state == T_RETRY) {
			if (now >= t->not_before_ns)
				retry_now(x, t, now);
			continue;
		}
		if (t->state != T_QUEUED)
			continue;
		int blocked = nref == (int)ARRAY_SIZE(refused);
		for (int i = 0; i < nref && !blocked; i++)
			blocked = refused[i] == t->slot;
		if (!blocked &&
		    cr_limit_acquire(t->slot, t->lane->max_conns_per_host, 0, NULL) == 0) {
			t->unit = 1;
			if (admit(x, t, now) == CURLM_OK)
				continue;
			unit_release(t); /* libcurl refused (a call from a callback): later */
			cr_m_queued(t->lane->id, 1);
		} else if (!blocked) {
			refused[nref++] = t->slot;
		}
		if (t->deadline_ns && now >= t->deadline_ns)
			expire(x, t, now);
	}
}

/* When the queue must be looked at next (0: nothing queued). */
static uint64_t next_check(struct cr_mx *x, uint64_t now)
{
	if (x->kick)
		return now;
	if (!x->nqueued) {
		x->check_ns = 0;
		return 0;
	}
	/* A fixed schedule, not "now + 20 ms" at every call: the app's timer
	 * is re-armed only when what it must be changed. */
	if (x->check_ns <= now)
		x->check_ns = now + MX_CHECK_NS;
	uint64_t t_next = x->check_ns;
	for (const struct cr_mxt *t = x->head; t; t = t->next) {
		if (t->state == T_QUEUED && t->deadline_ns && t->deadline_ns < t_next)
			t_next = t->deadline_ns;
		if (t->state == T_RETRY && t->not_before_ns < t_next)
			t_next = t->not_before_ns;
	}
	return t_next > now ? t_next : now;
}

/* --------------------------------------------------------------- timer */

/* The app's timer must fire at the earlier of libcurl's expiry and the
 * queue's next check. FORCE: libcurl called the callback (it expects the
 * app to be told). Returns the app's answer. */
static int timer_arm(struct cr_mx *x, uint64_t now, int force)
{
	int want = x->lib_has;
	uint64_t at = x->lib_exp_ns;
	uint64_t q = next_check(x, now);
	if (q && (!want || q < at)) {
		want = 1;
		at = q;
	}
	if (!force && want == x->armed && (!want || at == x->armed_ns))
		return 0;
	x->armed = want;
	x->armed_ns = at;
	long ms = -1;
	if (want)
		ms = at <= now ? 0 : (long)((at - now + 999999ull) / 1000000ull);
	return x->app_timer(x->m, ms, x->app_timer_data);
}

static int timer_cb(CURLM *m, long ms, void *userp)
{
	struct cr_mx *x = userp;
	(void)m;
	uint64_t now = cr_now_ns();
	x->lib_has = ms >= 0;
	x->lib_exp_ns = ms >= 0 ? now + (uint64_t)ms * 1000000ull : 0;
	if (!x->app_timer)
		return 0;
	return timer_arm(x, now, 1);
}

/* After a pump: the app's timer re-armed if what it must be changed. */
static void timer_sync(struct cr_mx *x)
{
	if (!x->app_timer)
		return;
	uint64_t now = cr_now_ns();
	if (x->armed && x->armed_ns <= now)
		x->armed = 0; /* fired (single-shot) or about to: empty */
	timer_arm(x, now, 0);
}

CURLMcode cr_curl_mx_setopt(struct cr_curllib *lib, CURLM *m, CURLMoption opt, void *p)
{
	const struct cr_curlfns *f = &lib->fns;
	struct cr_mx *x = mx_make(lib, m);
	if (!x)
		return f->multi_setopt(m, opt, p);
	if (opt == CURLMOPT_TIMERDATA) {
		x->app_timer_data = p;
		return CURLM_OK;
	}
	/* CURLMOPT_TIMERFUNCTION */
	CURLMcode rc = f->multi_setopt(m, CURLMOPT_TIMERFUNCTION, p ? (void *)timer_cb : NULL);
	if (rc != CURLM_OK)
		return rc;
	f->multi_setopt(m, CURLMOPT_TIMERDATA, (void *)x);
	x->app_timer = (curl_multi_timer_callback)p;
	x->armed = 0;
	return CURLM_OK;
}

/* ----------------------------------------------------------- the calls */

CURLMcode cr_curl_mx_add(struct cr_curllib *lib, CURLM *m, CURL *h)
{
	const struct cr_curlfns *f = &lib->fns;
	struct cr_curl_easy *e = cr_curl_handles_get(h);
	if (cr_curl_mx_left_x)
		cr_curl_mx_settle_left();
	if (!e || e->left) /* left by a jump: libcurl's alone (perform.c) */
		return f->multi_add_handle(m, h);
	if (e->mxt)
		return CURLM_ADDED_ALREADY;
	/* The multi sees the app's handle: no share parked on it by an earlier
	 * perform (another thread could take that share meanwhile). */
	cr_curl_unroute(lib, h);
	const struct cr_config *cfg = e->url_ok ? cr_cfgref_acquire() : NULL;
	struct cr_mx *x = cfg ? mx_make(lib, m) : NULL;
	struct cr_mxt *t = x ? calloc(1, sizeof(*t)) : NULL;
	if (!t) {
		if (cfg)
			cr_cfgref_release(cfg);
		CURLMcode rc = f->multi_add_handle(m, h);
		if (rc == CURLM_OK)
			cr_curl_multi_added(m, h);
		return rc;
	}
	const char *key;
	t->e = e;
	t->cfg = cfg;
	t->lane = cr_curl_lane_for(cfg, e, &key);
	snprintf(t->key, sizeof(t->key), "%s", key);
	t->t_start = cr_now_ns();
	t->slot = CR_SLOT_NONE;
	t->state = T_FAILED; /* counted by set_state from here on */
	link_t(x, t);
	e->mxt = t;
	const struct cr_lane *lane = t->lane;
	int queue = 0;
	if (lane->max_conns_per_host > 0) {
		t->slot = cr_curl_limit_slot(e, lane);
		/* Behind the multi's own queue for the slot: first come, first
		 * served. */
		int behind = 0;
		for (struct cr_mxt *o = x->head; o && !behind; o = o->next)
			behind = o != t && o->state == T_QUEUED && o->slot == t->slot;
		if (t->slot == CR_SLOT_NONE)
			; /* the limit table is full: not limited (limit.c) */
		else if (!behind &&
			 cr_limit_acquire(t->slot, lane->max_conns_per_host, 0, NULL) == 0)
			t->unit = 1;
		else
			queue = 1;
	}
	if (queue) {
		long rt = cr_curl_min_nonzero(e->app_timeout_ms, lane->request_timeout_ms);
		long wait = lane->queue_timeout_ms > 0 ? lane->queue_timeout_ms : 0;
		if (rt > 0 && (wait == 0 || rt < wait))
			wait = rt;
		t->deadline_ns = t->t_start + (uint64_t)wait * 1000000ull;
		cr_m_queued(lane->id, 1);
		set_state(t, T_QUEUED);
		cr_curl_multi_added(m, h);
		/* Never through libcurl: the app's event loop must still come
		 * back for it. */
		timer_sync(x);
		return CURLM_OK;
	}
	CURLMcode rc = admit(x, t, t->t_start);
	if (rc != CURLM_OK) {
		free_t(x, t);
		return rc;
	}
	cr_curl_multi_added(m, h);
	if (x->kick) /* refused by the breaker: its message is waiting */
		timer_sync(x);
	return CURLM_OK;
}

CURLMcode cr_curl_mx_remove(struct cr_mx *x, CURL *h)
{
	const struct cr_curlfns *f = &x->lib->fns;
	struct cr_curl_easy *e = cr_curl_handles_get(h);
	struct cr_mxt *t = e ? e->mxt : NULL;
	if (!t || t->x != x) {
		CURLMcode rc = f->multi_remove_handle(x->m, h);
		if (rc == CURLM_OK) {
			msg_drop(x, h);
			if (e)
				cr_curl_multi_removed(x->m, h);
		}
		return rc;
	}
	if (t->state == T_ADDED || t->state == T_DONE || t->state == T_LOOSE) {
		CURLMcode rc = f->multi_remove_handle(x->m, h);
		if (rc != CURLM_OK)
			return rc;
	}
	/* Removed before it completed: not a request (nothing was answered). */
	free_t(x, t);
	cr_curl_multi_removed(x->m, h);
	pump(x); /* its unit may let another one start */
	timer_sync(x);
	return CURLM_OK;
}

void cr_curl_mx_forget(struct cr_curl_easy *e, int how)
{
	struct cr_mxt *t = e->mxt;
	struct cr_mx *x = t->x;
	int in_lib = t->state == T_ADDED || t->state == T_DONE || t->state == T_LOOSE;
	if (how == CR_MX_RESET && in_lib) {
		/* libcurl keeps it in the multi and keeps its share: both go at
		 * the handle's removal. */
		unroute_t(t);
		set_state(t, T_LOOSE);
		msg_drop(x, e->h);
		return;
	}
	if (in_lib && x->lib->fns.multi_remove_handle(x->m, e->h) == CURLM_OK)
		cr_curl_multi_removed(x->m, e->h);
	free_t(x, t);
}

CURLMcode cr_curl_mx_cleanup(struct cr_mx *x)
{
	CURLM *m = x->m;
	/* Out of the table first: the address may be a new multi's as soon as
	 * libcurl freed it. */
	mx_delete(m);
	CURLMcode rc = x->lib->fns.multi_cleanup(m);
	if (rc != CURLM_OK) {
		if (mx_insert(x) != 0) /* the slot is ours again unless the table filled */
			cr_logmsg(CR_LL_WARN, "libcurl: multi handle records lost");
		return rc;
	}
	/* libcurl left the easy handles alone, detached: our values off them,
	 * then the shares can go (none held by a handle any more). */
	while (x->head)
		free_t(x, x->head);
	for (struct mxshare *s = x->shares, *n; s; s = n) {
		n = s->next;
		if (x->lib->fns.share_cleanup(s->sh) != CURLSHE_OK)
			cr_logmsg(CR_LL_INFO, "libcurl: a multi's share is still held by a handle "
					      "(its own CURLOPT_SHARE set meanwhile?): left open");
		free(s);
	}
	free(x->q);
	free(x);
	return rc;
}

/* After libcurl ran the multi (perform, socket_action, socket_all) and
 * answered RC: a pump admits what the run freed, *running becomes what the
 * app's `while (running)` loop must count (libcurl's answer, the transfers
 * that pump added after libcurl counted, and those still queued), and the
 * app's timer is re-armed. Returns RC. */
static CURLMcode after_run(struct cr_mx *x, CURLMcode rc, int *running)
{
	int a = x->admits;
	pump(x);
	if (rc == CURLM_OK && running)
		*running += (x->admits - a) + x->nqueued;
	timer_sync(x);
	return rc;
}

CURLMcode cr_curl_mx_perform(struct cr_mx *x, int *running)
{
	if (x->busy) /* libcurl's curl_multi_socket_all calls it: counted there */
		return x->lib->fns.multi_perform(x->m, running);
	pump(x);
	CURLMcode rc = x->lib->fns.multi_perform(x->m, running);
	return after_run(x, rc, running);
}

CURLMcode cr_curl_mx_socket_action(struct cr_mx *x, curl_socket_t s, int ev, int *running)
{
	if (s == CURL_SOCKET_TIMEOUT && x->armed && x->armed_ns <= cr_now_ns() + 1000000ull)
		x->armed = 0; /* the app's single-shot timer fired */
	pump(x);
	CURLMcode rc = x->lib->fns.multi_socket_action(x->m, s, ev, running);
	return after_run(x, rc, running);
}

CURLMcode cr_curl_mx_socket_all(struct cr_mx *x, int *running)
{
	pump(x);
	x->busy = 1;
	CURLMcode rc = x->lib->fns.multi_socket_all
			       ? x->lib->fns.multi_socket_all(x->m, running)
			       : x->lib->fns.multi_socket_action(x->m, CURL_SOCKET_TIMEOUT, 0,
								 running);
	x->busy = 0;
	return after_run(x, rc, running);
}

CURLMcode cr_curl_mx_wait(struct cr_mx *x, struct curl_waitfd *fds, unsigned n, int timeout_ms,
			  int *numfds, int poll)
{
	pump(x);
	uint64_t now = cr_now_ns();
	uint64_t q = next_check(x, now);
	if (q) {
		long cap = (long)((q - now + 999999ull) / 1000000ull);
		if (cap < timeout_ms)
			timeout_ms = (int)cap;
	}
	const struct cr_curlfns *f = &x->lib->fns;
	x->busy = 1; /* libcurl's wait asks its own curl_multi_timeout */
	CURLMcode rc = poll && f->multi_poll ? f->multi_poll(x->m, fds, n, timeout_ms, numfds)
					     : f->multi_wait(x->m, fds, n, timeout_ms, numfds);
	x->busy = 0;
	pump(x);
	timer_sync(x);
	return rc;
}

CURLMcode cr_curl_mx_timeout(struct cr_mx *x, long *ms)
{
	if (x->busy) /* libcurl's wait asks it: our cap is on the wait already */
		return x->lib->fns.multi_timeout(x->m, ms);
	pump(x);
	CURLMcode rc = x->lib->fns.multi_timeout(x->m, ms);
	uint64_t now = cr_now_ns();
	uint64_t q = next_check(x, now);
	if (rc == CURLM_OK && ms && q) {
		long ours = (long)((q - now + 999999ull) / 1000000ull);
		if (*ms < 0 || ours < *ms)
			*ms = ours;
	}
	timer_sync(x);
	return rc;
}

CURLMcode cr_curl_mx_fdset(struct cr_mx *x, fd_set *r, fd_set *w, fd_set *ex, int *max_fd)
{
	pump(x);
	CURLMcode rc = x->lib->fns.multi_fdset(x->m, r, w, ex, max_fd);
	timer_sync(x);
	return rc;
}

CURLMsg *cr_curl_mx_info_read(struct cr_mx *x, int *msgs_in_queue)
{
	collect(x); /* handles we do not know may have messages too */
	pump(x);
	timer_sync(x);
	CURLMsg *msg = NULL;
	if (x->qn > 0) {
		msg = x->q[0];
		memmove(x->q, x->q + 1, sizeof(*x->q) * (size_t)(x->qn - 1));
		x->qn--;
	}
	if (msgs_in_queue)
		*msgs_in_queue = x->qn;
	return msg;
}

CURLcode cr_curl_mx_easy_perform(struct cr_curllib *lib, struct cr_curl_easy *e)
{
	int in_lib = e->mxt->state == T_ADDED || e->mxt->state == T_DONE ||
		     e->mxt->state == T_LOOSE;
	if (in_lib)
		return lib->fns.easy_perform(e->h); /* libcurl's own refusal */
	if (e->errbuf)
		snprintf(e->errbuf, CURL_ERROR_SIZE, "easy handle already used in multi handle");
	return CURLE_FAILED_INIT;
}
