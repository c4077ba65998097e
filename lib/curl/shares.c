/* connroute: libcurl lanes — share pools (docs/INTERNALS.md, "libcurl
 * lanes": pools, a share stays on its handle, idle bound and idle timeout).
 *
 * Per library, a fixed table of pool slots. A pool is one (lane id, the
 * lane's connection settings, CURLOPT_RESOLVE flavour). Each of its shares
 * is either free (in the pool's free list) or attached to exactly one
 * handle (in the pool's list of shares on handles): a handle the app holds,
 * or a recycled one in our free list of handles. A share on a handle stays
 * there between performs (parked); it moves to another handle only under
 * the pool's lock with the old holder pinned (CR_PIN_TAKE), so it is never
 * used by two threads at once.
 *
 * Idle shares (free, or on recycled handles) are bounded per pool by the
 * lane's max_idle_per_host and closed by cr_curl_idle_sweep (the background
 * thread) once idle for the lane's idle_timeout. Slots are reused: a retired
 * pool's slot is free once its last share is destroyed, and when no slot is
 * free the least recently used pool with no share on an app's handle is
 * closed to make room.
 *
 * Locks: a library's slot lock (claims of slots) before a pool's lock; the
 * fast path (a handle whose parked share fits) takes none. A pool's identity
 * changes only with both held and only when it has no share on an app's
 * handle; the lock-free lookup reads it as a hint and checks it again under
 * the pool's lock. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "cfgref.h"
#include "curl_int.h"
#include "health.h"
#include "log.h"
#include "metrics.h"

#define SHARES_PER_POOL_MAX 512
#define SWEEP_EVERY_MS      250
#define SWEEP_HANDLES_MAX   64
#define CR_STR_(x)          #x
#define CR_STR(x)           CR_STR_(x)

struct cr_share_pool {
	/* identity */
	atomic_int lane;            /* stable lane id */
	_Atomic uint64_t conn_hash; /* the lane's connection settings */
	_Atomic uint64_t flavor;
	atomic_int retired; /* the lane went away or changed: drain, close */

	pthread_mutex_t mu;
	struct cr_curl_share *free_head;  /* free shares, most recently returned first */
	struct cr_curl_share *on_handles; /* shares attached to handles */
	int nshares;                      /* alive: free, on handles, or being made */
	/* Changed under the lock, except the moves of a share between an
	 * app's handle and a recycled one (napp <-> nrecycled), done by the
	 * handle's owner with the handle pinned (no lock on init and cleanup);
	 * read without the lock for the idle bound. */
	atomic_int nfree;
	atomic_int nrecycled;         /* on handles in our free list */
	atomic_int napp;              /* on handles the app holds, or being made for one */
	_Atomic long max_idle;        /* the lane's max_idle_per_host, as of the last checkout */
	_Atomic long idle_timeout_ms; /* the lane's idle_timeout, likewise (read unlocked) */
	uint64_t last_used_ns;        /* last checkout */
};

static struct lib_pools {
	pthread_mutex_t mu; /* claims slots */
	atomic_int n;       /* slots initialised: [0, n) */
	struct cr_share_pool pool[CR_CURL_SHARE_POOLS_MAX];
} pools[CR_CURL_LIBS_MAX];

static __thread struct cr_curl_share *tls_last_share;
/* Bumped in a fork child: a share attached before the fork is the parent's
 * (its sockets are shared with it) and is abandoned, never used. */
static atomic_uint fork_gen;
static atomic_int warned_no_room;
static _Atomic uint64_t last_sweep_ns;
_Atomic long cr_curl_steal_idle_ms = CR_CURL_STEAL_IDLE_MS;
static _Atomic long sweep_every_ms = SWEEP_EVERY_MS;

void cr_curl_set_steal_idle_ms(long ms)
{
	atomic_store(&cr_curl_steal_idle_ms, ms);
}

void cr_curl_set_sweep_every_ms(long ms)
{
	atomic_store(&sweep_every_ms, ms);
}

/* Share structs whose handle was cleaned up, for the next share made. They
 * are never freed: another thread's tls_last_share may still point at one.
 * That thread only reads its state after seeing (acquire) that it belongs
 * to the pool whose lock it holds; a share leaves its pool (pool set to
 * NULL) only under that lock, and joins one with a release store after its
 * fields are set. */
static pthread_mutex_t dead_mu = PTHREAD_MUTEX_INITIALIZER;
static struct cr_curl_share *dead_head;

void cr_curl_shares_lib_init(int index)
{
	pthread_mutex_init(&pools[index].mu, NULL);
	atomic_store(&pools[index].n, 0);
}

void cr_curl_shares_atfork_child(void)
{
	/* The slots' locks are initialised again when they are claimed anew. */
	int n = cr_curl_lib_count();
	for (int i = 0; i < n; i++)
		cr_curl_shares_lib_init(i);
	pthread_mutex_init(&dead_mu, NULL);
	tls_last_share = NULL;
	atomic_fetch_add(&fork_gen, 1);
	/* Remembered lanes too: the child's first perform of each handle
	 * starts the child's own background thread (perform.c). */
	atomic_fetch_add(&cr_curl_cfg_gen, 1);
}

/* E's share was attached before a fork: let go of it without touching its
 * pool (the child's copy of the parent's). */
static int abandon_forked(struct cr_curllib *lib, struct cr_curl_easy *e)
{
	if (e->share_fork == atomic_load_explicit(&fork_gen, memory_order_relaxed))
		return 0;
	if (e->held[OV_SHARE].p == e->share->sh) {
		lib->fns.easy_setopt(e->h, CURLOPT_SHARE, (CURLSH *)NULL);
		e->held[OV_SHARE].p = NULL;
		e->ov_gen++;
	}
	e->share = NULL;
	return 1;
}

uint64_t cr_curl_shares_flavor(const struct curl_slist *resolve)
{
	uint64_t h = CR_FNV64_INIT;
	int n = 0;
	for (const struct curl_slist *s = resolve; s && n < 256; s = s->next, n++)
		if (s->data)
			h = cr_fnv64(h, s->data, strlen(s->data) + 1);
	return n ? h : 0;
}

static inline int pool_is(const struct cr_share_pool *p, int lane, uint64_t ch, uint64_t flavor)
{
	return atomic_load_explicit(&p->lane, memory_order_relaxed) == lane &&
	       atomic_load_explicit(&p->conn_hash, memory_order_relaxed) == ch &&
	       atomic_load_explicit(&p->flavor, memory_order_relaxed) == flavor &&
	       !atomic_load_explicit(&p->retired, memory_order_relaxed);
}

int cr_curl_shares_fits(const struct cr_curl_easy *e, const struct cr_lane *l, uint64_t flavor)
{
	const struct cr_share_pool *p = atomic_load_explicit(&e->share->pool, memory_order_relaxed);
	return p && e->share_fork == atomic_load_explicit(&fork_gen, memory_order_relaxed) &&
	       pool_is(p, l->id, l->conn_hash, flavor);
}

static struct cr_share_pool *pool_find(struct lib_pools *lp, const struct cr_lane *l,
				       uint64_t flavor)
{
	int n = atomic_load_explicit(&lp->n, memory_order_acquire);
	for (int i = 0; i < n; i++)
		if (pool_is(&lp->pool[i], l->id, l->conn_hash, flavor))
			return &lp->pool[i];
	return NULL;
}

/* P becomes the pool of (L, FLAVOR), empty. P's lock held. */
static void pool_set(struct cr_share_pool *p, const struct cr_lane *l, uint64_t flavor,
		     uint64_t now_ns)
{
	atomic_store_explicit(&p->lane, l->id, memory_order_relaxed);
	atomic_store_explicit(&p->conn_hash, l->conn_hash, memory_order_relaxed);
	atomic_store_explicit(&p->flavor, flavor, memory_order_relaxed);
	p->free_head = NULL;
	p->on_handles = NULL;
	p->nshares = 0;
	atomic_store(&p->nfree, 0);
	atomic_store(&p->nrecycled, 0);
	atomic_store(&p->napp, 0);
	atomic_store_explicit(&p->max_idle, l->max_idle_per_host, memory_order_relaxed);
	atomic_store_explicit(&p->idle_timeout_ms, l->idle_timeout_ms, memory_order_relaxed);
	p->last_used_ns = now_ns;
	atomic_store_explicit(&p->retired, 0, memory_order_relaxed);
}

static inline int pool_lane(const struct cr_share_pool *p)
{
	return atomic_load_explicit(&p->lane, memory_order_relaxed);
}

/* ------------------------------------------------------------------ lists */

static void list_unlink(struct cr_curl_share **head, struct cr_curl_share *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		*head = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->prev = s->next = NULL;
}

static void list_push(struct cr_curl_share **head, struct cr_curl_share *s)
{
	s->prev = NULL;
	s->next = *head;
	if (*head)
		(*head)->prev = s;
	*head = s;
}

/* S leaves P for good (P's lock held): out of its list, uncounted, pool-less
 * before the lock is dropped, so a thread whose last share it was will not
 * take it again. The caller destroys it unlocked (chained on `next`). */
static void pool_drop(struct cr_share_pool *p, struct cr_curl_share *s, struct cr_curl_share **dead)
{
	if (s->state == CR_SH_FREE) {
		list_unlink(&p->free_head, s);
		atomic_fetch_sub(&p->nfree, 1);
	} else {
		list_unlink(&p->on_handles, s);
		atomic_fetch_sub(atomic_load(&s->recycled) ? &p->nrecycled : &p->napp, 1);
	}
	p->nshares--;
	s->state = CR_SH_HANDLE; /* never lent again */
	atomic_store(&s->recycled, 0);
	s->holder = NULL;
	atomic_store_explicit(&s->pool, (struct cr_share_pool *)NULL, memory_order_relaxed);
	s->next = *dead;
	*dead = s;
}

/* S has left its pool and no handle holds it. */
static void share_destroy(struct cr_curllib *lib, struct cr_curl_share *s)
{
	lib->fns.share_cleanup(s->sh); /* closes its idle connections */
	s->sh = NULL;
	pthread_mutex_lock(&dead_mu);
	s->next = dead_head;
	dead_head = s;
	pthread_mutex_unlock(&dead_mu);
}

static void shares_destroy(struct cr_curllib *lib, struct cr_curl_share *list)
{
	while (list) {
		struct cr_curl_share *next = list->next;
		share_destroy(lib, list);
		list = next;
	}
}

/* ------------------------------------------------------------ resilience */

/* Pooled connections to an ejected address are closed (docs/INTERNALS.md,
 * "Resilience"): a free share holding one is dropped when a checkout comes
 * to it or by the next sweep; a share parked on a handle at that handle's
 * next perform (cr_curl_shares_discard). A share checked out by another
 * thread is never touched. */
void cr_curl_shares_note_addr(struct cr_curl_share *s, uint64_t key)
{
	for (int i = 0; i < 4; i++)
		if (atomic_load_explicit(&s->haddr[i], memory_order_relaxed) == key)
			return;
	unsigned i = atomic_fetch_add_explicit(&s->hidx, 1, memory_order_relaxed) % 4;
	atomic_store_explicit(&s->haddr[i], key, memory_order_relaxed);
}

static int share_doomed(struct cr_curl_share *s)
{
	unsigned g = atomic_load_explicit(&cr_health_eject_gen, memory_order_acquire);
	if (atomic_load_explicit(&s->hgen, memory_order_relaxed) == g)
		return 0; /* nothing ejected since it was found clean */
	int64_t now = cr_health_now();
	for (int i = 0; i < 4; i++) {
		uint64_t k = atomic_load_explicit(&s->haddr[i], memory_order_relaxed);
		if (k && cr_health_conn_ejected(k, now))
			return 1;
	}
	atomic_store_explicit(&s->hgen, g, memory_order_relaxed);
	return 0;
}

int cr_curl_shares_doomed(const struct cr_curl_easy *e)
{
	return e->share && share_doomed(e->share);
}

/* Detaches S from the handle V that holds it; V is pinned by the caller (a
 * taker with CR_PIN_TAKE, or V's own call). */
static void detach(struct cr_curllib *lib, struct cr_curl_easy *v)
{
	lib->fns.easy_setopt(v->h, CURLOPT_SHARE, (CURLSH *)NULL);
	v->held[OV_SHARE].p = NULL;
	v->ov_gen++;
	v->share = NULL;
}

/* Takes the idle shares of P (P's lock held, P has no share on an app's
 * handle): free ones, and those on recycled handles, which are detached
 * from them. 0, or -1 if a recycled handle is pinned right now (init is
 * handing it out): P cannot be emptied. */
static int pool_take_all_idle(struct cr_curllib *lib, struct cr_share_pool *p,
			      struct cr_curl_share **dead)
{
	int lane = pool_lane(p), nidle = 0;
	for (struct cr_curl_share *s = p->on_handles; s; s = s->next)
		if (!atomic_load(&s->recycled) || !cr_curl_pin_take(s->holder)) {
			/* undo the pins taken so far */
			for (struct cr_curl_share *t = p->on_handles; t != s; t = t->next)
				cr_curl_unpin(t->holder, 1);
			return -1;
		}
	while (p->on_handles) {
		struct cr_curl_share *s = p->on_handles;
		struct cr_curl_easy *v = s->holder;
		detach(lib, v);
		pool_drop(p, s, dead);
		cr_curl_unpin(v, 1);
		nidle++;
	}
	while (p->free_head) {
		pool_drop(p, p->free_head, dead);
		nidle++;
	}
	cr_m_idle(lane, -nidle);
	return 0;
}

/* ------------------------------------------------------------ pool slots */

/* The least recently used pool with no share on an app's handle, emptied
 * (its idle shares to *DEAD), its lock held. */
static struct cr_share_pool *pool_lru_idle(struct cr_curllib *lib, struct lib_pools *lp, int n,
					   struct cr_curl_share **dead)
{
	for (int attempt = 0; attempt < 3; attempt++) {
		struct cr_share_pool *lru = NULL;
		uint64_t oldest = UINT64_MAX;
		for (int i = 0; i < n; i++) {
			struct cr_share_pool *p = &lp->pool[i];
			pthread_mutex_lock(&p->mu);
			if (!atomic_load(&p->retired) && atomic_load(&p->napp) == 0 &&
			    p->last_used_ns < oldest) {
				lru = p;
				oldest = p->last_used_ns;
			}
			pthread_mutex_unlock(&p->mu);
		}
		if (!lru)
			return NULL;
		pthread_mutex_lock(&lru->mu);
		if (!atomic_load(&lru->retired) && atomic_load(&lru->napp) == 0 &&
		    pool_take_all_idle(lib, lru, dead) == 0)
			return lru;
		pthread_mutex_unlock(&lru->mu); /* lent out meanwhile: look again */
	}
	return NULL;
}

/* A pool for (L, FLAVOR) with its lock held: the one another thread just
 * made; else a free slot (retired, its shares all gone); else a slot never
 * used; else the least recently used pool with no share on an app's handle,
 * whose idle shares go to *EVICTED (destroy them unlocked). NULL when every
 * pool has a share on an app's handle. The library's slot lock held. */
static struct cr_share_pool *pool_claim(struct cr_curllib *lib, struct lib_pools *lp,
					const struct cr_lane *l, uint64_t flavor, uint64_t now_ns,
					struct cr_curl_share **evicted)
{
	int n = atomic_load_explicit(&lp->n, memory_order_relaxed);
	struct cr_share_pool *p = pool_find(lp, l, flavor);
	if (p) {
		pthread_mutex_lock(&p->mu);
		if (pool_is(p, l->id, l->conn_hash, flavor))
			return p;
		pthread_mutex_unlock(&p->mu);
	}
	for (int i = 0; i < n; i++) {
		p = &lp->pool[i];
		if (!atomic_load_explicit(&p->retired, memory_order_relaxed))
			continue;
		pthread_mutex_lock(&p->mu);
		if (atomic_load(&p->retired) && p->nshares == 0) {
			pool_set(p, l, flavor, now_ns);
			return p;
		}
		pthread_mutex_unlock(&p->mu);
	}
	if (n < CR_CURL_SHARE_POOLS_MAX) {
		p = &lp->pool[n];
		pthread_mutex_init(&p->mu, NULL);
		pthread_mutex_lock(&p->mu);
		pool_set(p, l, flavor, now_ns);
		atomic_store_explicit(&lp->n, n + 1, memory_order_release);
		return p;
	}
	p = pool_lru_idle(lib, lp, n, evicted);
	if (!p)
		return NULL;
	pool_set(p, l, flavor, now_ns);
	atomic_fetch_add(&cr_curl_ctr.pools_evicted, 1);
	return p;
}

static void no_room(const struct cr_curllib *lib, const struct cr_lane *l, const char *what)
{
	atomic_fetch_add(&cr_curl_ctr.unpooled_no_room, 1);
	if (!atomic_exchange(&warned_no_room, 1))
		cr_logmsg(CR_LL_WARN,
			  "lane %s: %s: %s: performs run unpooled until one is free (logged once)",
			  l->name, lib->name, what);
}

/* --------------------------------------------------------------- lending */

/* S goes on E's handle list entry (P's lock held). */
static inline void on_handle(struct cr_share_pool *p, struct cr_curl_share *s,
			     struct cr_curl_easy *e)
{
	s->state = CR_SH_HANDLE;
	atomic_store_explicit(&s->recycled, 0, memory_order_relaxed);
	s->holder = e;
	list_push(&p->on_handles, s);
}

/* A new share for P, whose counts already include it for E (taken back if
 * it cannot be made). */
static struct cr_curl_share *share_create(struct cr_curllib *lib, struct cr_share_pool *p,
					  struct cr_curl_easy *e)
{
	pthread_mutex_lock(&dead_mu);
	struct cr_curl_share *s = dead_head;
	if (s)
		dead_head = s->next;
	pthread_mutex_unlock(&dead_mu);
	if (!s)
		s = calloc(1, sizeof(*s));
	CURLSH *sh = lib->fns.share_init();
	if (!s || !sh) {
		if (s) {
			pthread_mutex_lock(&dead_mu);
			s->next = dead_head;
			dead_head = s;
			pthread_mutex_unlock(&dead_mu);
		}
		if (sh)
			lib->fns.share_cleanup(sh);
		pthread_mutex_lock(&p->mu);
		p->nshares--;
		atomic_fetch_sub(&p->napp, 1);
		pthread_mutex_unlock(&p->mu);
		return NULL;
	}
	/* No lock callbacks: a share is attached to one handle at a time, used
	 * only by the thread in a call on that handle, and moved between
	 * handles under the pool's lock with both pinned. */
	/* Not DNS: a shared DNS cache costs libcurl 7.88 some 2,000
	 * instructions per transfer, and a handle keeps its own cache across
	 * performs and recycling anyway. */
	for (int i = 0; i < 4; i++)
		atomic_store_explicit(&s->haddr[i], 0, memory_order_relaxed);
	atomic_store_explicit(&s->hgen, atomic_load(&cr_health_eject_gen), memory_order_relaxed);
	lib->fns.share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
	lib->fns.share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
	s->sh = sh;
	pthread_mutex_lock(&p->mu);
	on_handle(p, s, e);
	atomic_store_explicit(&s->pool, p, memory_order_release);
	pthread_mutex_unlock(&p->mu);
	atomic_fetch_add(&cr_curl_ctr.shares_created, 1);
	return s;
}

/* A share on another handle of P that may be taken (P's lock held): one on
 * a recycled handle first (the least recently recycled), else one on an
 * app's handle that has not performed for CR_CURL_STEAL_IDLE_MS (the least
 * recently used). Its holder is returned pinned (CR_PIN_TAKE). */
static struct cr_curl_share *pool_takeable(struct cr_share_pool *p, uint64_t now_ns)
{
	uint64_t idle_before = now_ns - (uint64_t)atomic_load_explicit(&cr_curl_steal_idle_ms,
								       memory_order_relaxed) *
						1000000ull;
	for (int pass = 0; pass < 2; pass++) {
		for (int tries = 0; tries < 3; tries++) {
			struct cr_curl_share *best = NULL;
			uint64_t best_t = UINT64_MAX;
			for (struct cr_curl_share *s = p->on_handles; s; s = s->next) {
				int rec = atomic_load_explicit(&s->recycled, memory_order_relaxed);
				uint64_t t = pass == 0 ? atomic_load_explicit(&s->idle_since_ns,
									      memory_order_relaxed)
						       : atomic_load_explicit(
								 &s->holder->last_perform_ns,
								 memory_order_relaxed);
				if ((pass == 0) != (rec != 0) || (pass == 1 && t > idle_before))
					continue;
				if (t < best_t) {
					best = s;
					best_t = t;
				}
			}
			if (!best)
				break;
			/* Pinned, its recycled flag is stable: check it again. */
			if (cr_curl_pin_take(best->holder)) {
				if ((pass == 0) == (atomic_load(&best->recycled) != 0))
					return best;
				cr_curl_unpin(best->holder, 1);
			}
			/* its owner is in a call: not this one, look again */
			if (pass == 1)
				break;
		}
	}
	return NULL;
}

/* Lends a share of P to E (P's lock held, dropped here). Free shares with
 * a connection to an ejected address go to *DEAD on the way. */
static struct cr_curl_share *pool_lend(struct cr_curllib *lib, struct cr_share_pool *p,
				       struct cr_curl_easy *e, const struct cr_lane *l,
				       uint64_t now_ns, int may_take, struct cr_curl_share **dead)
{
	struct cr_curl_share *s, *last = tls_last_share;
	if (atomic_load_explicit(&p->max_idle, memory_order_relaxed) != l->max_idle_per_host)
		atomic_store_explicit(&p->max_idle, l->max_idle_per_host, memory_order_relaxed);
	if (atomic_load_explicit(&p->idle_timeout_ms, memory_order_relaxed) != l->idle_timeout_ms)
		atomic_store_explicit(&p->idle_timeout_ms, l->idle_timeout_ms,
				      memory_order_relaxed);
	p->last_used_ns = now_ns;
	if (last && atomic_load_explicit(&last->pool, memory_order_acquire) == p &&
	    last->state == CR_SH_FREE)
		s = last;
	else
		s = p->free_head;
	int doomed = 0;
	while (s && share_doomed(s)) {
		pool_drop(p, s, dead);
		doomed++;
		s = p->free_head;
	}
	if (doomed) {
		cr_m_idle(l->id, -doomed);
		atomic_fetch_add(&cr_curl_ctr.shares_closed_idle, doomed);
	}
	if (s) {
		list_unlink(&p->free_head, s);
		atomic_fetch_sub(&p->nfree, 1);
		atomic_fetch_add(&p->napp, 1);
		on_handle(p, s, e);
		pthread_mutex_unlock(&p->mu);
		cr_m_idle(l->id, -1);
		return s;
	}
	s = may_take ? pool_takeable(p, now_ns) : NULL;
	if (s) {
		struct cr_curl_easy *v = s->holder;
		int was_recycled = atomic_load(&s->recycled);
		detach(lib, v);
		list_unlink(&p->on_handles, s);
		if (was_recycled) {
			atomic_fetch_sub(&p->nrecycled, 1);
			atomic_fetch_add(&p->napp, 1);
		}
		on_handle(p, s, e);
		cr_curl_unpin(v, 1);
		pthread_mutex_unlock(&p->mu);
		if (was_recycled)
			cr_m_idle(l->id, -1);
		atomic_fetch_add(&cr_curl_ctr.shares_taken, 1);
		return s;
	}
	if (p->nshares >= SHARES_PER_POOL_MAX) {
		pthread_mutex_unlock(&p->mu);
		no_room(lib, l,
			"all " CR_STR(SHARES_PER_POOL_MAX) " shares of the pool are in use");
		return NULL;
	}
	p->nshares++;
	atomic_fetch_add(&p->napp, 1);
	pthread_mutex_unlock(&p->mu);
	return share_create(lib, p, e);
}

struct cr_curl_share *cr_curl_shares_checkout(struct cr_curllib *lib, struct cr_curl_easy *e,
					      const struct cr_lane *l, uint64_t flavor,
					      uint64_t now_ns, int may_take)
{
	struct lib_pools *lp = &pools[lib->index];
	struct cr_curl_share *s = NULL, *dead = NULL;
	/* A pool found without a lock may have become another before we hold
	 * its lock (retired, or its slot reused): look again. */
	for (int attempt = 0; attempt < 3 && !s; attempt++) {
		struct cr_share_pool *p = pool_find(lp, l, flavor);
		if (p) {
			pthread_mutex_lock(&p->mu);
			if (pool_is(p, l->id, l->conn_hash, flavor)) {
				s = pool_lend(lib, p, e, l, now_ns, may_take, &dead);
				break;
			}
			pthread_mutex_unlock(&p->mu);
			continue;
		}
		struct cr_curl_share *evicted = NULL;
		pthread_mutex_lock(&lp->mu);
		p = pool_claim(lib, lp, l, flavor, now_ns, &evicted);
		pthread_mutex_unlock(&lp->mu);
		if (!p) {
			no_room(lib, l,
				"all " CR_STR(CR_CURL_SHARE_POOLS_MAX) " share pools are in use");
			return NULL;
		}
		s = pool_lend(lib, p, e, l, now_ns, may_take, &dead);
		shares_destroy(lib, evicted);
		break;
	}
	shares_destroy(lib, dead);
	if (s) {
		union cr_ov_val v = {.p = s->sh};
		cr_curl_hold(e, OV_SHARE, v);
		e->share = s;
		e->share_fork = atomic_load_explicit(&fork_gen, memory_order_relaxed);
	}
	return s;
}

/* The pool S belongs to, locked. S is on a handle pinned by the caller, so
 * its pool cannot change (a pool with a share on a pinned handle is neither
 * emptied nor reused). */
static struct cr_share_pool *lock_pool_of(struct cr_curl_share *s)
{
	struct cr_share_pool *p = atomic_load_explicit(&s->pool, memory_order_acquire);
	pthread_mutex_lock(&p->mu);
	return p;
}

static inline int over_bound(struct cr_share_pool *p)
{
	return atomic_load(&p->nfree) + atomic_load(&p->nrecycled) >=
	       atomic_load_explicit(&p->max_idle, memory_order_relaxed);
}

/* S, off its handle, becomes free or (retired pool, idle bound reached) is
 * dropped to *DEAD. P's lock held. Returns 1 if it went free. */
static int settle_free(struct cr_share_pool *p, struct cr_curl_share *s, uint64_t now_ns,
		       struct cr_curl_share **dead)
{
	if (atomic_load(&p->retired) || over_bound(p)) {
		if (!atomic_load(&p->retired))
			atomic_fetch_add(&cr_curl_ctr.shares_closed_idle, 1);
		pool_drop(p, s, dead);
		return 0;
	}
	list_unlink(&p->on_handles, s);
	atomic_fetch_sub(atomic_load(&s->recycled) ? &p->nrecycled : &p->napp, 1);
	s->state = CR_SH_FREE;
	atomic_store(&s->recycled, 0);
	s->holder = NULL;
	atomic_store_explicit(&s->idle_since_ns, now_ns, memory_order_relaxed);
	list_push(&p->free_head, s);
	atomic_fetch_add(&p->nfree, 1);
	return 1;
}

/* The handle's share, taken off the handle (NULL: none, or a fork child's
 * abandoned one). The app may have replaced it with its own (CURLOPT_SHARE):
 * libcurl detached ours then. */
static struct cr_curl_share *take_off(struct cr_curllib *lib, struct cr_curl_easy *e)
{
	struct cr_curl_share *s = e->share;
	if (!s || abandon_forked(lib, e))
		return NULL;
	if (e->held[OV_SHARE].p == s->sh)
		detach(lib, e);
	e->share = NULL;
	return s;
}

void cr_curl_shares_release(struct cr_curllib *lib, struct cr_curl_easy *e)
{
	struct cr_curl_share *s = take_off(lib, e), *dead = NULL;
	if (!s)
		return;
	uint64_t now = cr_now_ns();
	struct cr_share_pool *p = lock_pool_of(s);
	int lane = pool_lane(p), was_recycled = atomic_load(&s->recycled);
	int went_free = settle_free(p, s, now, &dead);
	pthread_mutex_unlock(&p->mu);
	if (went_free - was_recycled)
		cr_m_idle(lane, went_free - was_recycled);
	if (went_free)
		tls_last_share = s;
	shares_destroy(lib, dead);
}

void cr_curl_shares_discard(struct cr_curllib *lib, struct cr_curl_easy *e)
{
	struct cr_curl_share *s = take_off(lib, e), *dead = NULL;
	if (!s)
		return;
	struct cr_share_pool *p = lock_pool_of(s);
	pool_drop(p, s, &dead);
	pthread_mutex_unlock(&p->mu);
	atomic_fetch_add(&cr_curl_ctr.shares_closed_idle, 1);
	shares_destroy(lib, dead);
}

void cr_curl_shares_abandon(struct cr_curl_share *s, const struct cr_curl_easy *holder,
			    unsigned fork)
{
	/* Left before a fork: the parent's (its pool is not this process's). */
	if (fork != atomic_load_explicit(&fork_gen, memory_order_relaxed))
		return;
	struct cr_share_pool *p = atomic_load_explicit(&s->pool, memory_order_acquire);
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	/* Never lent since: its holder's pin was left held (takers skip it). */
	if (atomic_load(&s->pool) == p && s->state == CR_SH_HANDLE && s->holder == holder) {
		list_unlink(&p->on_handles, s);
		atomic_fetch_sub(atomic_load(&s->recycled) ? &p->nrecycled : &p->napp, 1);
		p->nshares--;
		atomic_store(&s->recycled, 0);
		s->holder = NULL;
		/* Not in the dead list: never reused, its CURLSH never cleaned up
		 * (the handle may still be attached to it, its connection stays
		 * open, as libcurl leaves the handle's private multi). */
		atomic_store_explicit(&s->pool, (struct cr_share_pool *)NULL, memory_order_relaxed);
	}
	pthread_mutex_unlock(&p->mu);
}

/* No lock on the way in and out of the free list of handles (every
 * new-handle-per-request perform does both): the owner has E pinned, so no
 * taker looks at S's recycled flag meanwhile, and the counts are atomic.
 * Concurrent cleanups may overshoot the idle bound by a few; the sweep
 * trims it. */
void cr_curl_shares_recycled(struct cr_curllib *lib, struct cr_curl_easy *e, int in,
			     uint64_t now_ns)
{
	struct cr_curl_share *s = e->share, *dead = NULL;
	if (!s || abandon_forked(lib, e))
		return;
	struct cr_share_pool *p = atomic_load_explicit(&s->pool, memory_order_acquire);
	int lane = pool_lane(p);
	if (in && !atomic_load_explicit(&s->recycled, memory_order_relaxed)) {
		if (atomic_load_explicit(&p->retired, memory_order_relaxed) || over_bound(p)) {
			/* Closed as curl_easy_cleanup would close the handle's own
			 * connection: the pool has enough idle ones. */
			pthread_mutex_lock(&p->mu);
			if (!atomic_load(&p->retired))
				atomic_fetch_add(&cr_curl_ctr.shares_closed_idle, 1);
			detach(lib, e);
			pool_drop(p, s, &dead);
			pthread_mutex_unlock(&p->mu);
			shares_destroy(lib, dead);
			return;
		}
		atomic_store_explicit(&s->idle_since_ns, now_ns, memory_order_relaxed);
		atomic_store_explicit(&s->recycled, 1, memory_order_relaxed);
		atomic_fetch_sub_explicit(&p->napp, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&p->nrecycled, 1, memory_order_relaxed);
		cr_m_idle(lane, 1);
	} else if (!in && atomic_load_explicit(&s->recycled, memory_order_relaxed)) {
		atomic_store_explicit(&s->recycled, 0, memory_order_relaxed);
		atomic_fetch_sub_explicit(&p->nrecycled, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&p->napp, 1, memory_order_relaxed);
		cr_m_idle(lane, -1);
	}
}

/* After a reload: pools whose lane is gone or whose connection settings
 * changed stop lending; their free shares are closed now, those on handles
 * when they leave them (the holder's next perform or cleanup; the sweep for
 * recycled handles). In-flight transfers are never interrupted. */
void cr_curl_shares_retire(const struct cr_config *cfg)
{
	atomic_fetch_add(&cr_curl_cfg_gen, 1);
	int nl = cr_curl_lib_count();
	for (int li = 0; li < nl; li++) {
		struct cr_curllib *lib = cr_curl_lib_at(li);
		struct lib_pools *lp = &pools[lib->index];
		int np = atomic_load_explicit(&lp->n, memory_order_acquire);
		for (int i = 0; i < np; i++) {
			struct cr_share_pool *p = &lp->pool[i];
			int keep = 0, nidle = 0;
			if (atomic_load(&p->retired))
				continue;
			pthread_mutex_lock(&p->mu);
			int lane = pool_lane(p);
			uint64_t ch = atomic_load_explicit(&p->conn_hash, memory_order_relaxed);
			for (int k = 0; k < cfg->nlanes && !keep; k++)
				keep = cfg->lanes[k].id == lane && cfg->lanes[k].conn_hash == ch &&
				       cfg->lanes[k].max_idle_per_host > 0;
			struct cr_curl_share *dead = NULL;
			if (!keep && !atomic_load(&p->retired)) {
				atomic_store(&p->retired, 1);
				while (p->free_head) {
					pool_drop(p, p->free_head, &dead);
					nidle++;
				}
			}
			pthread_mutex_unlock(&p->mu);
			if (nidle)
				cr_m_idle(lane, -nidle);
			shares_destroy(lib, dead);
		}
	}
}

/* ------------------------------------------------------------ idle sweep */

/* Free shares of P idle for its idle_timeout, and the oldest beyond its
 * idle bound, to *DEAD. P's lock held. */
static int pool_sweep(struct cr_share_pool *p, uint64_t now_ns, struct cr_curl_share **dead)
{
	int n = 0;
	long tmo_ms = atomic_load_explicit(&p->idle_timeout_ms, memory_order_relaxed);
	uint64_t tmo = tmo_ms > 0 ? (uint64_t)tmo_ms * 1000000ull : UINT64_MAX;
	/* The free list is most recent first: walk it from its oldest end. */
	struct cr_curl_share *last = p->free_head;
	while (last && last->next)
		last = last->next;
	for (struct cr_curl_share *s = last; s;) {
		struct cr_curl_share *prev = s->prev;
		uint64_t since = atomic_load_explicit(&s->idle_since_ns, memory_order_relaxed);
		int expired = (tmo != UINT64_MAX && now_ns - since >= tmo) || share_doomed(s);
		if (expired || atomic_load(&p->nfree) + atomic_load(&p->nrecycled) >
				       atomic_load(&p->max_idle)) {
			pool_drop(p, s, dead);
			n++;
		}
		s = prev;
	}
	return n;
}

void cr_curl_idle_sweep(void)
{
	cr_curl_left_check(); /* performs left by a jump: their units back */
	uint64_t now = cr_now_ns(), last = atomic_load(&last_sweep_ns);
	if (now - last < (uint64_t)atomic_load(&sweep_every_ms) * 1000000ull ||
	    !atomic_compare_exchange_strong(&last_sweep_ns, &last, now))
		return;
	int nl = cr_curl_lib_count();
	for (int li = 0; li < nl; li++) {
		struct cr_curllib *lib = cr_curl_lib_at(li);
		struct lib_pools *lp = &pools[lib->index];
		int np = atomic_load_explicit(&lp->n, memory_order_acquire);
		for (int i = 0; i < np; i++) {
			struct cr_share_pool *p = &lp->pool[i];
			struct cr_curl_share *dead = NULL;
			pthread_mutex_lock(&p->mu);
			int lane = pool_lane(p), n = pool_sweep(p, now, &dead);
			pthread_mutex_unlock(&p->mu);
			if (n) {
				cr_m_idle(lane, -n);
				atomic_fetch_add(&cr_curl_ctr.shares_closed_idle, n);
			}
			shares_destroy(lib, dead);
		}
		/* Recycled handles nobody took for their idle_timeout (or whose
		 * pool was retired): their shares are closed, they are cleaned up. */
		struct cr_curl_easy *idle[SWEEP_HANDLES_MAX];
		int k = cr_curl_handles_take_idle(lib, now, idle, SWEEP_HANDLES_MAX);
		for (int j = 0; j < k; j++) {
			struct cr_curl_easy *e = idle[j];
			struct cr_curl_share *s = e->share, *dead = NULL;
			if (s) {
				detach(lib, e);
				struct cr_share_pool *p = lock_pool_of(s);
				int lane = pool_lane(p), was = atomic_load(&s->recycled);
				pool_drop(p, s, &dead);
				pthread_mutex_unlock(&p->mu);
				if (was) {
					cr_m_idle(lane, -1);
					atomic_fetch_add(&cr_curl_ctr.shares_closed_idle, 1);
				}
				shares_destroy(lib, dead);
			}
			cr_curl_handles_destroy(e);
		}
	}
}

int cr_curl_shares_expired(struct cr_curl_share *s, uint64_t now_ns)
{
	struct cr_share_pool *p = atomic_load_explicit(&s->pool, memory_order_acquire);
	if (!p)
		return 1;
	pthread_mutex_lock(&p->mu);
	uint64_t since = atomic_load_explicit(&s->idle_since_ns, memory_order_relaxed);
	long tmo = atomic_load(&p->idle_timeout_ms);
	int r = atomic_load(&p->retired) ||
		atomic_load(&p->nfree) + atomic_load(&p->nrecycled) > atomic_load(&p->max_idle) ||
		(tmo > 0 && now_ns - since >= (uint64_t)tmo * 1000000ull);
	pthread_mutex_unlock(&p->mu);
	return r;
}

int cr_curl_idle_wanted(void)
{
	const struct cr_config *cfg = cr_cfgref_acquire();
	int want = 0;
	for (int i = 0; cfg && i < cfg->nlanes && !want; i++)
		want = cfg->lanes[i].max_idle_per_host > 0 && cfg->lanes[i].idle_timeout_ms > 0;
	if (cfg)
		cr_cfgref_release(cfg);
	return want;
}

/* ------------------------------------------------------ closing the pools */

/* Closing the pools (docs/INTERNALS.md, "libcurl lanes", closing the pools):
 * one idle share at a time leaves its pool under the pool's lock, exactly as
 * an eviction takes it, and is cleaned up unlocked: libcurl closes its
 * connections as it would have in the app's own curl_easy_cleanup (FTP QUIT,
 * TLS close_notify). Idle shares are the free ones and those parked on
 * recycled handles (in our free list: nobody holds them; detached under a
 * taker's pin, which fails while curl_easy_init is handing the handle out).
 * A share parked on a handle the app holds is lent to that handle: the app
 * may still perform on it from another thread, so it is never cleaned up
 * here (its connection ends with the process, or goes back to the pool at
 * the handle's cleanup). Never waits for a lock. */
int cr_curl_shares_drain(struct cr_curllib *lib, uint64_t deadline_ns)
{
	struct lib_pools *lp = &pools[lib->index];
	int np = atomic_load_explicit(&lp->n, memory_order_acquire), left = 0;
	for (int i = 0; i < np; i++) {
		struct cr_share_pool *p = &lp->pool[i];
		for (;;) {
			if (cr_now_ns() >= deadline_ns)
				return -1;
			if (pthread_mutex_trylock(&p->mu) != 0) {
				left = -1;
				break;
			}
			int lane = pool_lane(p), idle = 0;
			struct cr_curl_share *s = p->free_head, *dead = NULL;
			if (s) {
				pool_drop(p, s, &dead);
				idle = 1;
			} else {
				for (s = p->on_handles; s; s = s->next) {
					if (!atomic_load(&s->recycled))
						continue; /* lent to a handle the app holds */
					if (!cr_curl_pin_take(s->holder))
						continue; /* being handed out right now */
					struct cr_curl_easy *v = s->holder;
					detach(lib, v);
					pool_drop(p, s, &dead);
					cr_curl_unpin(v, 1);
					idle = 1;
					break;
				}
			}
			if (!dead && p->on_handles)
				left = -1;
			pthread_mutex_unlock(&p->mu);
			if (!dead)
				break;
			if (idle)
				cr_m_idle(lane, -1);
			cr_curl_lib_bound_close(lib, dead->sh);
			share_destroy(lib, dead);
		}
	}
	return left;
}

/* Shares of LIB in use by a call right now: on a handle pinned for a call
 * (a perform, a prewarm, an upkeep or getinfo of the connection). A share
 * merely parked on an app's handle is not counted: the drain leaves it
 * alone anyway. */
int cr_curl_shares_lent(struct cr_curllib *lib)
{
	struct lib_pools *lp = &pools[lib->index];
	int np = atomic_load_explicit(&lp->n, memory_order_acquire), n = 0;
	for (int i = 0; i < np; i++) {
		struct cr_share_pool *p = &lp->pool[i];
		if (pthread_mutex_trylock(&p->mu) != 0) {
			n++; /* someone is lending or returning one right now */
			continue;
		}
		/* Under the pool's lock a holder stays valid: a handle's share
		 * leaves it under this lock before its record is freed. */
		for (struct cr_curl_share *s = p->on_handles; s; s = s->next)
			if (!atomic_load(&s->recycled) &&
			    atomic_load_explicit(&s->holder->pin, memory_order_relaxed) ==
				    CR_PIN_CALL)
				n++;
		pthread_mutex_unlock(&p->mu);
	}
	return n;
}
