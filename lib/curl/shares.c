/* connroute: libcurl lanes — share pools (docs/INTERNALS.md, "libcurl
 * lanes", pools).
 *
 * Per library, a fixed table of pool slots. A pool is one (lane id, the
 * lane's connection settings, CURLOPT_RESOLVE flavour) and lends its share
 * handles exclusively. Slots are reused: a retired pool's slot is free once
 * its last share is destroyed, and when no slot is free the least recently
 * used pool with no share lent out is closed to make room. Only when every
 * pool has a share lent out does a perform run unpooled (counted, logged
 * once).
 *
 * Locks: a library's slot lock (claims of slots) before a pool's lock; the
 * fast path takes only the pool's. A pool's identity changes only with both
 * held; the lock-free lookup reads it as a hint and checks it again under
 * the pool's lock, so a perform never gets a share of a pool that became
 * another under it. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "curl_int.h"
#include "log.h"
#include "metrics.h"

#define SHARES_PER_POOL_MAX 512
#define CR_STR_(x) #x
#define CR_STR(x) CR_STR_(x)

struct cr_share_pool {
	/* identity */
	atomic_int lane;          /* stable lane id */
	_Atomic uint64_t conn_hash; /* the lane's connection settings */
	_Atomic uint64_t flavor;
	atomic_int retired;       /* the lane went away or changed: drain, close */

	pthread_mutex_t mu;
	struct cr_curl_share *free_head;
	int nshares;              /* alive (idle, lent out, or being made) */
	int nbusy;                /* lent out or being made */
	uint64_t last_used_ns;    /* last checkout */
};

static struct lib_pools {
	pthread_mutex_t mu;       /* claims slots */
	atomic_int n;             /* slots initialised: [0, n) */
	struct cr_share_pool pool[CR_CURL_SHARE_POOLS_MAX];
} pools[CR_CURL_LIBS_MAX];

static __thread struct cr_curl_share *tls_last_share;
static atomic_int warned_no_room;

/* Share structs whose handle was cleaned up, for the next share made. They
 * are never freed: another thread's tls_last_share may still point at one.
 * That thread only reads its busy flag after seeing (acquire) that it
 * belongs to the pool whose lock it holds; a share leaves its pool (pool
 * set to NULL) only under that lock, and joins one with a release store
 * after its fields are set. */
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

static inline int pool_is(struct cr_share_pool *p, int lane, uint64_t ch, uint64_t flavor)
{
	return atomic_load_explicit(&p->lane, memory_order_relaxed) == lane &&
	       atomic_load_explicit(&p->conn_hash, memory_order_relaxed) == ch &&
	       atomic_load_explicit(&p->flavor, memory_order_relaxed) == flavor &&
	       !atomic_load_explicit(&p->retired, memory_order_relaxed);
}

static struct cr_share_pool *pool_find(struct lib_pools *lp, const struct cr_lane *l, uint64_t flavor)
{
	int n = atomic_load_explicit(&lp->n, memory_order_acquire);
	for (int i = 0; i < n; i++)
		if (pool_is(&lp->pool[i], l->id, l->conn_hash, flavor))
			return &lp->pool[i];
	return NULL;
}

/* P becomes the pool of (L, FLAVOR), empty. P's lock held. */
static void pool_set(struct cr_share_pool *p, const struct cr_lane *l, uint64_t flavor, uint64_t now_ns)
{
	atomic_store_explicit(&p->lane, l->id, memory_order_relaxed);
	atomic_store_explicit(&p->conn_hash, l->conn_hash, memory_order_relaxed);
	atomic_store_explicit(&p->flavor, flavor, memory_order_relaxed);
	p->free_head = NULL;
	p->nshares = 0;
	p->nbusy = 0;
	p->last_used_ns = now_ns;
	atomic_store_explicit(&p->retired, 0, memory_order_relaxed);
}

/* Takes P's idle shares (P's lock held); the caller destroys them unlocked.
 * Busy and pool-less before the lock is dropped: a thread whose last share
 * one of them was will not take it again. */
static struct cr_curl_share *pool_detach_idle(struct cr_share_pool *p, int *nidle)
{
	struct cr_curl_share *idle = p->free_head;
	int k = 0;
	p->free_head = NULL;
	for (struct cr_curl_share *s = idle; s; s = s->next) {
		s->busy = 1;
		atomic_store_explicit(&s->pool, (struct cr_share_pool *)NULL, memory_order_relaxed);
		k++;
	}
	p->nshares -= k;
	*nidle = k;
	return idle;
}

/* S has left its pool (pool NULL, set under the pool's lock). */
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

/* The least recently used pool with no share lent out, its lock held. */
static struct cr_share_pool *pool_lru_idle(struct lib_pools *lp, int n)
{
	for (int attempt = 0; attempt < 3; attempt++) {
		struct cr_share_pool *lru = NULL;
		uint64_t oldest = UINT64_MAX;
		for (int i = 0; i < n; i++) {
			struct cr_share_pool *p = &lp->pool[i];
			pthread_mutex_lock(&p->mu);
			if (!atomic_load(&p->retired) && p->nbusy == 0 && p->last_used_ns < oldest) {
				lru = p;
				oldest = p->last_used_ns;
			}
			pthread_mutex_unlock(&p->mu);
		}
		if (!lru)
			return NULL;
		pthread_mutex_lock(&lru->mu);
		if (!atomic_load(&lru->retired) && lru->nbusy == 0)
			return lru;
		pthread_mutex_unlock(&lru->mu); /* lent out meanwhile: look again */
	}
	return NULL;
}

/* A pool for (L, FLAVOR) with its lock held: the one another thread just
 * made; else a free slot (retired, its shares all gone); else a slot never
 * used; else the least recently used idle pool, whose idle shares go to
 * *EVICTED (destroy them unlocked). NULL when every pool has a share lent
 * out. The library's slot lock held. */
static struct cr_share_pool *pool_claim(struct lib_pools *lp, const struct cr_lane *l, uint64_t flavor,
					uint64_t now_ns, struct cr_curl_share **evicted)
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
	p = pool_lru_idle(lp, n);
	if (!p)
		return NULL;
	int nidle;
	int old_lane = atomic_load_explicit(&p->lane, memory_order_relaxed);
	*evicted = pool_detach_idle(p, &nidle);
	cr_m_idle(old_lane, -nidle);
	pool_set(p, l, flavor, now_ns);
	atomic_fetch_add(&cr_curl_ctr.pools_evicted, 1);
	return p;
}

static void no_room(const struct cr_curllib *lib, const struct cr_lane *l, const char *what)
{
	atomic_fetch_add(&cr_curl_ctr.unpooled_no_room, 1);
	if (!atomic_exchange(&warned_no_room, 1))
		cr_logmsg(CR_LL_WARN, "lane %s: %s: %s: performs run unpooled until one is free (logged once)",
			  l->name, lib->name, what);
}

static void free_unlink(struct cr_share_pool *p, struct cr_curl_share *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		p->free_head = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->prev = s->next = NULL;
}

/* A new share for P, whose count already includes it (taken back if it
 * cannot be made). */
static struct cr_curl_share *share_create(struct cr_curllib *lib, struct cr_share_pool *p)
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
		p->nbusy--;
		pthread_mutex_unlock(&p->mu);
		return NULL;
	}
	/* No lock callbacks: a share is only ever used by the one thread
	 * that checked it out, and the pool mutex orders the hand-overs. */
	lib->fns.share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
	lib->fns.share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
	lib->fns.share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
	s->sh = sh;
	s->busy = 1;
	s->prev = s->next = NULL;
	atomic_store_explicit(&s->pool, p, memory_order_release);
	atomic_fetch_add(&cr_curl_ctr.shares_created, 1);
	return s;
}

/* Lends a share of P, whose lock is held (and dropped here). */
static inline __attribute__((always_inline)) struct cr_curl_share *pool_lend(struct cr_curllib *lib, struct cr_share_pool *p,
					      const struct cr_lane *l, uint64_t now_ns)
{
	struct cr_curl_share *s, *last = tls_last_share;
	if (last && atomic_load_explicit(&last->pool, memory_order_acquire) == p && !last->busy)
		s = last;
	else
		s = p->free_head;
	if (s) {
		free_unlink(p, s);
		s->busy = 1;
	}
	int may_create = !s && p->nshares < SHARES_PER_POOL_MAX;
	if (s || may_create) {
		p->nbusy++;
		p->last_used_ns = now_ns;
	}
	if (may_create)
		p->nshares++;
	pthread_mutex_unlock(&p->mu);
	if (s) {
		cr_m_idle(l->id, -1);
		return s;
	}
	if (!may_create) {
		no_room(lib, l, "all " CR_STR(SHARES_PER_POOL_MAX) " shares of the pool have transfers in flight");
		return NULL;
	}
	return share_create(lib, p);
}

struct cr_curl_share *cr_curl_shares_checkout(struct cr_curllib *lib, const struct cr_lane *l,
					      uint64_t flavor, uint64_t now_ns)
{
	struct lib_pools *lp = &pools[lib->index];
	/* A pool found without a lock may have become another before we hold
	 * its lock (retired, or its slot reused): look again. */
	for (int attempt = 0; attempt < 3; attempt++) {
		struct cr_share_pool *p = pool_find(lp, l, flavor);
		if (p) {
			pthread_mutex_lock(&p->mu);
			if (pool_is(p, l->id, l->conn_hash, flavor))
				return pool_lend(lib, p, l, now_ns);
			pthread_mutex_unlock(&p->mu);
			continue;
		}
		struct cr_curl_share *evicted = NULL;
		pthread_mutex_lock(&lp->mu);
		p = pool_claim(lp, l, flavor, now_ns, &evicted);
		pthread_mutex_unlock(&lp->mu);
		if (!p) {
			no_room(lib, l, "all " CR_STR(CR_CURL_SHARE_POOLS_MAX) " share pools have transfers in flight");
			return NULL;
		}
		struct cr_curl_share *s = pool_lend(lib, p, l, now_ns);
		shares_destroy(lib, evicted);
		return s;
	}
	return NULL;
}

void cr_curl_shares_checkin(struct cr_curllib *lib, struct cr_curl_share *s)
{
	/* A lent share's pool cannot change: retiring leaves lent shares to
	 * drain here, and only pools with none lent out are evicted. */
	struct cr_share_pool *p = atomic_load_explicit(&s->pool, memory_order_relaxed);
	pthread_mutex_lock(&p->mu);
	int drain = atomic_load(&p->retired);
	int lane = atomic_load_explicit(&p->lane, memory_order_relaxed);
	p->nbusy--;
	if (drain) {
		p->nshares--;
		atomic_store_explicit(&s->pool, (struct cr_share_pool *)NULL, memory_order_relaxed);
	} else {
		s->busy = 0;
		s->prev = NULL;
		s->next = p->free_head;
		if (p->free_head)
			p->free_head->prev = s;
		p->free_head = s;
	}
	pthread_mutex_unlock(&p->mu);
	if (drain) {
		if (tls_last_share == s)
			tls_last_share = NULL;
		share_destroy(lib, s);
		return;
	}
	cr_m_idle(lane, 1);
	tls_last_share = s;
}

/* After a reload: pools whose lane is gone or whose connection settings
 * changed stop lending; their idle shares are closed now, lent ones when
 * their transfer ends. In-flight transfers are never interrupted. */
void cr_curl_shares_retire(const struct cr_config *cfg)
{
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
			int lane = atomic_load_explicit(&p->lane, memory_order_relaxed);
			uint64_t ch = atomic_load_explicit(&p->conn_hash, memory_order_relaxed);
			for (int k = 0; k < cfg->nlanes && !keep; k++)
				keep = cfg->lanes[k].id == lane && cfg->lanes[k].conn_hash == ch &&
				       cfg->lanes[k].max_idle_per_host > 0;
			struct cr_curl_share *idle = NULL;
			if (!keep && !atomic_load(&p->retired)) {
				atomic_store(&p->retired, 1);
				idle = pool_detach_idle(p, &nidle);
			}
			pthread_mutex_unlock(&p->mu);
			if (nidle)
				cr_m_idle(lane, -nidle);
			shares_destroy(lib, idle);
		}
	}
}

/* Closing the pools (docs/INTERNALS.md, "libcurl lanes", closing the pools):
 * one idle share at a time leaves its pool under the pool's lock, exactly as
 * an eviction takes it, and is cleaned up unlocked: libcurl closes its
 * connections as it would have in the app's own curl_easy_cleanup (FTP QUIT,
 * TLS close_notify). Never waits for a lock. */
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
			struct cr_curl_share *s = p->free_head;
			int lane = atomic_load_explicit(&p->lane, memory_order_relaxed);
			if (s) {
				free_unlink(p, s);
				s->busy = 1;
				atomic_store_explicit(&s->pool, (struct cr_share_pool *)NULL, memory_order_relaxed);
				p->nshares--;
			}
			if (p->nbusy > 0)
				left = -1;
			pthread_mutex_unlock(&p->mu);
			if (!s)
				break;
			cr_m_idle(lane, -1);
			cr_curl_lib_bound_close(lib, s->sh);
			share_destroy(lib, s);
		}
	}
	return left;
}

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
		n += p->nbusy;
		pthread_mutex_unlock(&p->mu);
	}
	return n;
}
