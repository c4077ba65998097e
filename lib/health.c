/* connroute: resilience per lane — outlier ejection, circuit breakers, retry
 * throttling (docs/INTERNALS.md, "Resilience (lib/health.c)").
 *
 * Invariants:
 * - state lives in three fixed tables in BSS (addresses, breakers, lanes'
 *   token buckets) and in a table of pending raw connects; nothing is
 *   allocated, entries are claimed by CAS on their key and never freed;
 * - every figure is an atomic; state changes are CASes on one word, so a
 *   signal handler that connects in the middle of one of our calls can
 *   neither deadlock nor see a torn state. The one lock, the ejection
 *   decision (it must count a host's ejected addresses and let the least
 *   recently ejected back in), is a spin word held with every signal blocked
 *   and owned by a pid: a fork child never waits for a lock of its parent;
 * - an entry's key includes the lane's stable id and its settings hash:
 *   a reload that keeps the settings finds the same entries;
 * - a fork child inherits the state (what the parent learned about the
 *   upstreams is true for the child too); a half-open breaker whose probes
 *   belonged to a parent thread restarts its probes after breaker_open. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base.h"
#include "health.h"
#include "log.h"
#include "metrics.h"

#define RLX       memory_order_relaxed
#define ACQ       memory_order_acquire
#define REL       memory_order_release
#define PROBE_MAX 32 /* linear probing bound in the tables */

/* ------------------------------------------------------------------ clock */

static int64_t (*_Atomic clock_fn)(void);

int64_t cr_health_now(void)
{
	int64_t (*fn)(void) = atomic_load_explicit(&clock_fn, RLX);
	return fn ? fn() : cr_now_ms();
}

void cr_health_set_clock(int64_t (*fn)(void))
{
	atomic_store(&clock_fn, fn);
}

/* ------------------------------------------------------------ host hashes */

uint64_t cr_health_host_raw_group(uint16_t port)
{
	return cr_fnv64(CR_FNV64_INIT ^ 0x72617770ull, &port, sizeof(port)) | 1;
}

uint64_t cr_health_host_name(const char *host, int port)
{
	uint64_t h = cr_fnv64(CR_FNV64_INIT, host, strlen(host));
	return cr_fnv64(h, &port, sizeof(port)) | 1;
}

uint64_t cr_health_host_addr(const struct cr_dest *d)
{
	uint64_t h = cr_fnv64(CR_FNV64_INIT ^ 0x61646472ull, &d->family, sizeof(d->family));
	h = cr_fnv64(h, d->addr, d->family == AF_INET ? 4 : 16);
	return cr_fnv64(h, &d->port, sizeof(d->port)) | 1;
}

static void dest_text(const struct cr_dest *d, char *buf, size_t cap)
{
	char a[INET6_ADDRSTRLEN] = "?";
	inet_ntop(d->family == AF_INET6 ? AF_INET6 : AF_INET, d->addr, a, sizeof(a));
	snprintf(buf, cap, d->family == AF_INET6 ? "[%s]:%u" : "%s:%u", a, (unsigned)d->port);
}

/* ------------------------------------------------------- current settings */

/* Each lane id's settings hash in the published config (for showing only
 * the state that applies). 0: not published. */
static _Atomic uint64_t cur_hash[CR_MAX_LANE_IDS];

static int current(int lane, uint64_t hh)
{
	uint64_t c = atomic_load_explicit(&cur_hash[lane], RLX);
	return c == 0 || c == hh;
}

/* ------------------------------------------------------------- addresses */

struct haddr {
	_Atomic uint64_t key; /* 0 free; claimed by CAS */
	atomic_int ready;     /* the fields below the key are written */
	int lane;
	uint64_t hh, group;
	struct cr_dest d;        /* host always NULL */
	_Atomic uint32_t consec; /* consecutive failures */
	_Atomic int64_t until;   /* ejected until (ms); 0: in */
	_Atomic int64_t at;      /* last ejected at (ms) */
	_Atomic int64_t back;    /* last let back in at (ms) */
	_Atomic uint32_t count;  /* ejections, for the multiplier */
	atomic_int probing;      /* back in after an ejection, no success yet */
	_Atomic uint64_t total;  /* ejections ever (metrics) */
};

static struct haddr addrs[CR_HEALTH_ADDRS];

/* Per host (hashed, collisions share): until when some address of it is
 * ejected, for cr_health_host_has_ejected without a scan. */
#define NHINT 1024
static _Atomic int64_t host_until[NHINT];

static unsigned hint_of(const struct cr_lane *l, uint64_t group)
{
	uint64_t h = cr_fnv64(group, &l->id, sizeof(l->id));
	return (unsigned)(cr_fnv64(h, &l->health_hash, 8) % NHINT);
}

/* Recently ejected (lane, address) keys, for pooled connections. */
#define NEJ 64
static struct {
	_Atomic uint64_t key;
	_Atomic int64_t until;
} ej[NEJ];
atomic_uint cr_health_eject_gen;

uint64_t cr_health_conn_key(int lane_id, const struct cr_dest *d)
{
	uint64_t a = cr_health_host_addr(d);
	return cr_fnv64(cr_fnv64(CR_FNV64_INIT, &lane_id, sizeof(lane_id)), &a, 8) | 1;
}

int cr_health_conn_ejected(uint64_t key, int64_t now)
{
	unsigned i = (unsigned)(key % NEJ);
	return atomic_load_explicit(&ej[i].key, ACQ) == key &&
	       atomic_load_explicit(&ej[i].until, RLX) > now;
}

int cr_health_host_has_ejected(const struct cr_lane *l, uint64_t group, int64_t now)
{
	return atomic_load_explicit(&host_until[hint_of(l, group)], RLX) > now;
}
static atomic_int addrs_full_said;

static uint64_t addr_key(const struct cr_lane *l, uint64_t group, const struct cr_dest *d)
{
	uint64_t h = cr_fnv64(CR_FNV64_INIT, &l->id, sizeof(l->id));
	h = cr_fnv64(h, &l->health_hash, sizeof(l->health_hash));
	h = cr_fnv64(h, &group, sizeof(group));
	return cr_fnv64(h, &(uint64_t){cr_health_host_addr(d)}, 8) | 1;
}

/* The entry of (L, GROUP, D), claimed if new; NULL if the table is full
 * around it or the entry is being written by another thread. */
static struct haddr *addr_get(const struct cr_lane *l, uint64_t group, const struct cr_dest *d)
{
	uint64_t k = addr_key(l, group, d);
	for (unsigned i = 0; i < PROBE_MAX; i++) {
		struct haddr *a = &addrs[(k + i) % CR_HEALTH_ADDRS];
		uint64_t cur = atomic_load_explicit(&a->key, ACQ);
		if (cur == k)
			return atomic_load_explicit(&a->ready, ACQ) ? a : NULL;
		if (cur != 0)
			continue;
		if (!atomic_compare_exchange_strong(&a->key, &cur, k)) {
			if (cur == k)
				return atomic_load_explicit(&a->ready, ACQ) ? a : NULL;
			continue;
		}
		a->lane = l->id;
		a->hh = l->health_hash;
		a->group = group;
		a->d = *d;
		a->d.host = NULL;
		atomic_store_explicit(&a->ready, 1, REL);
		return a;
	}
	if (!atomic_exchange(&addrs_full_said, 1))
		cr_logmsg(CR_LL_WARN,
			  "resilience: the address table (%d) is full; new addresses are not "
			  "ejected",
			  CR_HEALTH_ADDRS);
	return NULL;
}

/* The ejection lock: a pid, so a fork child takes over one held by a thread
 * of its parent (that thread does not exist in the child). Held for a scan
 * of the table, with every signal blocked (a handler's connect must not
 * spin on it). */
static atomic_int eject_lock;

static void lock_eject(sigset_t *old)
{
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, old);
	int me = getpid();
	for (;;) {
		int cur = 0;
		if (atomic_compare_exchange_weak(&eject_lock, &cur, me))
			return;
		/* Held by another process: a fork parent's thread, not ours. */
		if (cur != 0 && cur != me)
			atomic_compare_exchange_strong(&eject_lock, &cur, 0);
		else
			sched_yield();
	}
}

static void unlock_eject(const sigset_t *old)
{
	atomic_store_explicit(&eject_lock, 0, REL);
	pthread_sigmask(SIG_SETMASK, old, NULL);
}

static int same_host(const struct haddr *a, const struct haddr *b)
{
	return a->lane == b->lane && a->hh == b->hh && a->group == b->group;
}

/* Ejects A (under the lock) unless the cap forbids: at most
 * floor(known x eject_max) of the host's known addresses, never all; past
 * it, the least recently ejected address comes back in. */
static void eject(const struct cr_lane *l, struct haddr *a, int64_t now)
{
	sigset_t old;
	lock_eject(&old);
	if (atomic_load_explicit(&a->until, RLX) > now) { /* another thread did */
		unlock_eject(&old);
		return;
	}
	int known = 0, out = 0;
	for (int i = 0; i < CR_HEALTH_ADDRS; i++) {
		struct haddr *b = &addrs[i];
		if (!atomic_load_explicit(&b->ready, ACQ) || !same_host(a, b))
			continue;
		known++;
		if (b != a && atomic_load_explicit(&b->until, RLX) > now)
			out++;
	}
	int cap = (int)((double)known * l->eject_max + 1e-9);
	if (cap > known - 1)
		cap = known - 1;
	if (cap <= 0) {
		atomic_store_explicit(&a->consec, 0, RLX);
		unlock_eject(&old);
		return;
	}
	uint32_t n = atomic_fetch_add_explicit(&a->count, 1, RLX) + 1;
	long mult = n < CR_EJECT_MULT_MAX ? (long)n : CR_EJECT_MULT_MAX;
	atomic_store_explicit(&a->at, now, RLX);
	atomic_store_explicit(&a->until, now + (int64_t)l->eject_time_ms * mult, RLX);
	atomic_store_explicit(&a->consec, 0, RLX);
	atomic_store_explicit(&a->probing, 0, RLX);
	atomic_fetch_add_explicit(&a->total, 1, RLX);
	_Atomic int64_t *hu = &host_until[hint_of(l, a->group)];
	int64_t until = now + (int64_t)l->eject_time_ms * mult, hv = atomic_load(hu);
	while (hv < until && !atomic_compare_exchange_weak(hu, &hv, until))
		;
	uint64_t ck = cr_health_conn_key(l->id, &a->d);
	atomic_store_explicit(&ej[ck % NEJ].until, until, RLX);
	atomic_store_explicit(&ej[ck % NEJ].key, ck, REL);
	atomic_fetch_add_explicit(&cr_health_eject_gen, 1, REL);
	while (out + 1 > cap) { /* let the least recently ejected back in */
		struct haddr *oldest = NULL;
		int64_t oat = 0;
		for (int i = 0; i < CR_HEALTH_ADDRS; i++) {
			struct haddr *b = &addrs[i];
			if (b == a || !atomic_load_explicit(&b->ready, ACQ) || !same_host(a, b) ||
			    atomic_load_explicit(&b->until, RLX) <= now)
				continue;
			int64_t t = atomic_load_explicit(&b->at, RLX);
			if (!oldest || t < oat) {
				oldest = b;
				oat = t;
			}
		}
		if (!oldest)
			break;
		atomic_store_explicit(&oldest->until, 0, RLX);
		atomic_store_explicit(&oldest->back, now, RLX);
		atomic_store_explicit(&oldest->probing, 1, RLX);
		out--;
	}
	unlock_eject(&old);
	char t[64];
	dest_text(&a->d, t, sizeof(t));
	cr_logmsg(CR_LL_INFO, "lane %s: address %s ejected for %ld ms (ejection %u)", l->name, t,
		  (long)l->eject_time_ms * mult, n);
}

int cr_health_ejected(const struct cr_lane *l, uint64_t group, const struct cr_dest *d, int64_t now)
{
	struct haddr *a = addr_get(l, group, d);
	if (!a)
		return 0;
	int64_t until = atomic_load_explicit(&a->until, RLX);
	if (until == 0)
		return 0;
	if (now < until)
		return 1;
	/* Time is up: back in, on probation (one failure ejects it again). */
	if (atomic_compare_exchange_strong(&a->until, &until, 0)) {
		atomic_store_explicit(&a->back, now, RLX);
		atomic_store_explicit(&a->probing, 1, RLX);
	}
	return 0;
}

void cr_health_addr_result(const struct cr_lane *l, uint64_t group, const struct cr_dest *d, int ok,
			   int64_t now)
{
	struct haddr *a = addr_get(l, group, d);
	if (!a)
		return;
	if (ok) {
		if (atomic_load_explicit(&a->consec, RLX))
			atomic_store_explicit(&a->consec, 0, RLX);
		if (atomic_load_explicit(&a->probing, RLX))
			atomic_store_explicit(&a->probing, 0, RLX);
		/* In for long enough: the next ejection is short again. */
		if (atomic_load_explicit(&a->count, RLX) &&
		    now - atomic_load_explicit(&a->back, RLX) >=
			    (int64_t)l->eject_time_ms * CR_EJECT_MULT_MAX &&
		    atomic_load_explicit(&a->until, RLX) == 0)
			atomic_store_explicit(&a->count, 0, RLX);
		return;
	}
	int64_t until = atomic_load_explicit(&a->until, RLX);
	if (until != 0 && now < until)
		return; /* already out: a request that was in flight */
	if (atomic_load_explicit(&a->probing, RLX) ||
	    atomic_fetch_add_explicit(&a->consec, 1, RLX) + 1 >= (uint32_t)l->eject_after)
		eject(l, a, now);
}

int cr_health_ejected_count(int id, int64_t now)
{
	int n = 0;
	for (int i = 0; i < CR_HEALTH_ADDRS; i++) {
		struct haddr *a = &addrs[i];
		if (atomic_load_explicit(&a->ready, ACQ) && a->lane == id && current(id, a->hh) &&
		    atomic_load_explicit(&a->until, RLX) > now)
			n++;
	}
	return n;
}

/* --------------------------------------------------------------- breakers */

#define NBK 10 /* buckets of the window */

/* state word: state (2 bits) | issued probes (10) | good probes (10) |
 * since, ms (42) */
#define ST(s, iss, okc, since)                                              \
	((uint64_t)(s) | ((uint64_t)(iss) << 2) | ((uint64_t)(okc) << 12) | \
	 ((uint64_t)(since) << 22))
#define ST_STATE(w) ((int)((w)&3))
#define ST_ISS(w)   ((int)(((w) >> 2) & 1023))
#define ST_OK(w)    ((int)(((w) >> 12) & 1023))
#define ST_SINCE(w) ((int64_t)((w) >> 22))

/* bucket word: epoch (24 bits) | failures (20) | requests (20) */
#define BK(ep, f, n) (((uint64_t)(ep) << 40) | ((uint64_t)(f) << 20) | (uint64_t)(n))
#define BK_EP(w)     ((uint32_t)((w) >> 40))
#define BK_F(w)      ((uint32_t)(((w) >> 20) & 0xfffff))
#define BK_N(w)      ((uint32_t)((w)&0xfffff))
#define EP_MASK      0xffffffu

struct hbrk {
	_Atomic uint64_t key;
	atomic_int ready;
	int lane;
	uint64_t hh;
	char label[96];
	_Atomic uint64_t st;
	_Atomic uint64_t bk[NBK];
};

static struct hbrk brks[CR_HEALTH_HOSTS];
static atomic_int brks_full_said;

static struct hbrk *brk_get(const struct cr_lane *l, uint64_t host, const char *label, int port,
			    const struct cr_dest *d)
{
	uint64_t k = cr_fnv64(CR_FNV64_INIT, &l->id, sizeof(l->id));
	k = cr_fnv64(k, &l->health_hash, sizeof(l->health_hash));
	k = cr_fnv64(k, &host, sizeof(host)) | 1;
	for (unsigned i = 0; i < PROBE_MAX; i++) {
		struct hbrk *b = &brks[(k + i) % CR_HEALTH_HOSTS];
		uint64_t cur = atomic_load_explicit(&b->key, ACQ);
		if (cur == k)
			return atomic_load_explicit(&b->ready, ACQ) ? b : NULL;
		if (cur != 0)
			continue;
		if (!atomic_compare_exchange_strong(&b->key, &cur, k)) {
			if (cur == k)
				return atomic_load_explicit(&b->ready, ACQ) ? b : NULL;
			continue;
		}
		b->lane = l->id;
		b->hh = l->health_hash;
		if (d)
			dest_text(d, b->label, sizeof(b->label));
		else if (port >= 0)
			snprintf(b->label, sizeof(b->label), "%.80s:%d", label ? label : "?", port);
		else
			snprintf(b->label, sizeof(b->label), "%s", label ? label : "?");
		atomic_store_explicit(&b->ready, 1, REL);
		return b;
	}
	if (!atomic_exchange(&brks_full_said, 1))
		cr_logmsg(CR_LL_WARN,
			  "resilience: the breaker table (%d) is full; new hosts have no breaker",
			  CR_HEALTH_HOSTS);
	return NULL;
}

static int64_t bk_width(const struct cr_lane *l)
{
	int64_t w = l->breaker_window_ms / NBK;
	return w > 0 ? w : 1;
}

static void bk_clear(struct hbrk *b)
{
	for (int i = 0; i < NBK; i++)
		atomic_store_explicit(&b->bk[i], 0, RLX);
}

/* Counts one outcome in the bucket of NOW; returns the window's totals. */
static void bk_add(const struct cr_lane *l, struct hbrk *b, int ok, int64_t now, uint32_t *n,
		   uint32_t *f)
{
	uint32_t ep = (uint32_t)(now / bk_width(l)) & EP_MASK;
	_Atomic uint64_t *w = &b->bk[ep % NBK];
	uint64_t cur = atomic_load_explicit(w, RLX), nw;
	do {
		uint32_t cn = BK_EP(cur) == ep ? BK_N(cur) : 0,
			 cf = BK_EP(cur) == ep ? BK_F(cur) : 0;
		if (cn < 0xfffff)
			cn++;
		if (!ok && cf < 0xfffff)
			cf++;
		nw = BK(ep, cf, cn);
	} while (!atomic_compare_exchange_weak_explicit(w, &cur, nw, RLX, RLX));
	*n = *f = 0;
	for (int i = 0; i < NBK; i++) {
		uint64_t v = atomic_load_explicit(&b->bk[i], RLX);
		if (((ep - BK_EP(v)) & EP_MASK) < NBK) {
			*n += BK_N(v);
			*f += BK_F(v);
		}
	}
}

static int admit(const struct cr_lane *l, uint64_t host, const char *label, int port,
		 const struct cr_dest *d, int64_t now, int *state)
{
	struct hbrk *b = brk_get(l, host, label, port, d);
	if (state)
		*state = CR_BRK_CLOSED;
	if (!b)
		return CR_ADMIT_YES;
	uint64_t w = atomic_load_explicit(&b->st, ACQ);
	for (;;) {
		int s = ST_STATE(w);
		if (state)
			*state = s;
		if (s == CR_BRK_CLOSED)
			return CR_ADMIT_YES;
		uint64_t nw;
		if (s == CR_BRK_OPEN) {
			if (now < ST_SINCE(w) + l->breaker_open_ms)
				break;
			nw = ST(CR_BRK_HALF, 1, 0, now);
		} else if (ST_ISS(w) < l->breaker_probes) {
			nw = ST(CR_BRK_HALF, ST_ISS(w) + 1, ST_OK(w), ST_SINCE(w));
		} else if (now - ST_SINCE(w) >= l->breaker_open_ms) {
			/* Probes that never reported (a thread gone, a parent's
			 * probe in a fork child): probe again. */
			nw = ST(CR_BRK_HALF, 1, 0, now);
		} else {
			break;
		}
		if (atomic_compare_exchange_weak_explicit(&b->st, &w, nw, memory_order_acq_rel,
							  ACQ)) {
			if (state)
				*state = CR_BRK_HALF;
			return CR_ADMIT_PROBE;
		}
	}
	cr_m_breaker_rejected(l->id);
	return CR_ADMIT_NO;
}

int cr_health_admit(const struct cr_lane *l, uint64_t host, const char *name, int port, int64_t now,
		    int *state)
{
	return admit(l, host, name, port, NULL, now, state);
}

int cr_health_admit_addr(const struct cr_lane *l, const struct cr_dest *d, int64_t now)
{
	return admit(l, cr_health_host_addr(d), NULL, -1, d, now, NULL);
}

static void brk_open(const struct cr_lane *l, struct hbrk *b, uint64_t from, int64_t now)
{
	if (atomic_compare_exchange_strong(&b->st, &from, ST(CR_BRK_OPEN, 0, 0, now)))
		cr_logmsg(CR_LL_INFO, "lane %s: circuit breaker open for %s (%ld ms)", l->name,
			  b->label, l->breaker_open_ms);
}

void cr_health_result(const struct cr_lane *l, uint64_t host, int admitted, int ok, int64_t now)
{
	if (admitted == CR_ADMIT_NO)
		return;
	struct hbrk *b = brk_get(l, host, NULL, -1, NULL);
	if (!b)
		return;
	uint64_t w = atomic_load_explicit(&b->st, ACQ);
	switch (ST_STATE(w)) {
	case CR_BRK_CLOSED: {
		uint32_t n, f;
		bk_add(l, b, ok, now, &n, &f);
		if (!ok && n >= (uint32_t)l->breaker_min_requests &&
		    (double)f >= l->breaker_failure_ratio * (double)n)
			brk_open(l, b, w, now);
		return;
	}
	case CR_BRK_HALF:
		if (admitted != CR_ADMIT_PROBE)
			return; /* admitted before it opened: says nothing of now */
		if (!ok) {
			brk_open(l, b, w, now);
			return;
		}
		for (;;) {
			if (ST_STATE(w) != CR_BRK_HALF)
				return;
			uint64_t nw = ST_OK(w) + 1 >= l->breaker_probes
					      ? ST(CR_BRK_CLOSED, 0, 0, now)
					      : ST(CR_BRK_HALF, ST_ISS(w), ST_OK(w) + 1,
						   ST_SINCE(w));
			if (atomic_compare_exchange_weak(&b->st, &w, nw)) {
				if (ST_STATE(nw) == CR_BRK_CLOSED) {
					bk_clear(b);
					cr_logmsg(CR_LL_INFO,
						  "lane %s: circuit breaker closed for %s", l->name,
						  b->label);
				}
				return;
			}
		}
	default: return;
	}
}

/* ----------------------------------------------------------------- tokens */

/* Milli-tokens per lane id, with the settings they were filled for. */
static struct {
	_Atomic uint64_t hh;
	_Atomic int64_t milli;
} tokens[CR_MAX_LANE_IDS];

static _Atomic int64_t *tok(const struct cr_lane *l)
{
	unsigned id = (unsigned)l->id % CR_MAX_LANE_IDS;
	uint64_t h = atomic_load_explicit(&tokens[id].hh, ACQ);
	if (h != l->health_hash &&
	    atomic_compare_exchange_strong(&tokens[id].hh, &h, l->health_hash))
		atomic_store(&tokens[id].milli, (int64_t)l->retry_tokens * 1000);
	return &tokens[id].milli;
}

void cr_health_tokens_result(const struct cr_lane *l, int ok)
{
	_Atomic int64_t *t = tok(l);
	int64_t max = (int64_t)l->retry_tokens * 1000, cur = atomic_load_explicit(t, RLX), nv;
	int64_t give = (int64_t)(l->retry_token_ratio * 1000.0 + 0.5);
	do {
		nv = ok ? cur + give : cur - 1000;
		if (nv > max)
			nv = max;
		if (nv < 0)
			nv = 0;
		if (nv == cur)
			return;
	} while (!atomic_compare_exchange_weak_explicit(t, &cur, nv, RLX, RLX));
}

int cr_health_retry_allowed(const struct cr_lane *l)
{
	if (!(l->health & CR_H_THROTTLE))
		return 1;
	if (atomic_load_explicit(tok(l), RLX) > (int64_t)l->retry_tokens * 500)
		return 1;
	cr_m_retry_throttled(l->id);
	return 0;
}

/* ------------------------------------------------- pending raw connects */

#define NPEND     1024
/* A slot's ino: 0 free, PEND_BUSY while one thread writes or reads its
 * fields (it owns them then: no other thread touches them), else the
 * pending socket's inode. Nobody waits for a busy slot: a note gives up
 * (that outcome is dropped), and so does a settle (the slot holds another
 * fd's connect by then), so a signal handler's connect or close in the
 * middle of ours cannot deadlock. */
#define PEND_BUSY UINT64_MAX
static struct pend {
	_Atomic uint64_t ino;
	int fd, lane, admitted;
	uint64_t hh;
	struct cr_dest d;
} pend[NPEND];

void cr_health_pending(int fd, uint64_t ino, const struct cr_lane *l, const struct cr_dest *d,
		       int admitted)
{
	struct pend *p = &pend[(unsigned)fd % NPEND];
	if (!ino || ino == PEND_BUSY)
		return;
	/* A slot still held by another fd's pending connect: that one is
	 * overwritten (its outcome dropped). */
	uint64_t cur = atomic_load_explicit(&p->ino, RLX);
	if (cur == PEND_BUSY ||
	    !atomic_compare_exchange_strong_explicit(&p->ino, &cur, PEND_BUSY, ACQ, RLX))
		return;
	p->fd = fd;
	p->lane = l->id;
	p->admitted = admitted;
	p->hh = l->health_hash;
	p->d = *d;
	p->d.host = NULL;
	atomic_store_explicit(&p->ino, ino, REL);
}

/* How did the connect of FD end? 1 connected (now or before), 0 failed,
 * -1 unknown. Only what reads nothing away: never SO_ERROR, which clears
 * the pending error, and the fd being closed may be one of several
 * (dup, fork) through which the app still reads it. */
static int connect_outcome(int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
		return 1;
	struct tcp_info ti;
	socklen_t tl = sizeof(ti);
	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) != 0)
		return -1;
	if (ti.tcpi_state == 2 /* TCP_SYN_SENT */)
		return 0; /* given up while connecting: a timeout */
	/* Options negotiated by a SYN-ACK: it was connected (then reset or
	 * shut down); none: the connect was refused or timed out. */
	if (ti.tcpi_options & (TCPI_OPT_TIMESTAMPS | TCPI_OPT_SACK | TCPI_OPT_WSCALE))
		return 1;
	/* Closed without a SYN-ACK ever measured: refused, unreachable or
	 * timed out (the kernel's own timeout). */
	return ti.tcpi_state == 7 /* TCP_CLOSE */ && ti.tcpi_rtt == 0 ? 0 : -1;
}

void cr_health_pending_settle(int fd, uint64_t ino, const struct cr_config *cfg)
{
	struct pend *p = &pend[(unsigned)fd % NPEND];
	uint64_t cur = ino;
	if (!cfg || !ino || ino == PEND_BUSY ||
	    !atomic_compare_exchange_strong_explicit(&p->ino, &cur, PEND_BUSY, ACQ, RLX))
		return;
	/* The fields are ours until the slot is given back: copied first. */
	int pfd = p->fd, lane = p->lane, admitted = p->admitted;
	uint64_t hh = p->hh;
	struct cr_dest d = p->d;
	/* Another fd number of the same slot: not ours, left as it was. */
	atomic_store_explicit(&p->ino, pfd == fd ? 0 : ino, REL);
	if (pfd != fd)
		return;
	const struct cr_lane *l = NULL;
	for (int i = 0; i < cfg->nlanes; i++)
		if (cfg->lanes[i].id == lane && cfg->lanes[i].health_hash == hh)
			l = &cfg->lanes[i];
	if (!l)
		return;
	int saved = errno;
	int ok = connect_outcome(fd);
	errno = saved;
	if (ok < 0)
		return;
	int64_t now = cr_health_now();
	if (l->health & CR_H_EJECT)
		cr_health_addr_result(l, cr_health_host_raw_group(d.port), &d, ok, now);
	if (l->health & CR_H_BREAKER)
		cr_health_result(l, cr_health_host_addr(&d), admitted, ok, now);
}

/* -------------------------------------------------------------- observing */

static void metrics_each(int what, void (*fn)(void *, int, const char *, int64_t), void *ctx)
{
	cr_health_each(what, fn, ctx, cr_health_now());
}

void cr_health_publish(const struct cr_config *cfg)
{
	for (int i = 0; i < cfg->nlanes; i++) {
		int id = cfg->lanes[i].id;
		if (id >= 0 && id < CR_MAX_LANE_IDS)
			atomic_store_explicit(&cur_hash[id], cfg->lanes[i].health_hash, RLX);
	}
	cr_metrics_set_health(metrics_each);
}

void cr_health_each(int what, void (*fn)(void *ctx, int lane, const char *label, int64_t v),
		    void *ctx, int64_t now)
{
	char t[64];
	if (what == 0 || what == 1) {
		for (int i = 0; i < CR_HEALTH_ADDRS; i++) {
			struct haddr *a = &addrs[i];
			if (!atomic_load_explicit(&a->ready, ACQ) || !current(a->lane, a->hh))
				continue;
			uint64_t total = atomic_load_explicit(&a->total, RLX);
			/* Read once: another thread may let it back in (0) meanwhile,
			 * and the time left must not come out negative. */
			int64_t until = atomic_load_explicit(&a->until, RLX);
			if (what == 0 && until <= now)
				continue;
			if (what == 1 && total == 0)
				continue;
			dest_text(&a->d, t, sizeof(t));
			fn(ctx, a->lane, t, what == 0 ? until - now : (int64_t)total);
		}
		return;
	}
	for (int i = 0; i < CR_HEALTH_HOSTS; i++) {
		struct hbrk *b = &brks[i];
		if (!atomic_load_explicit(&b->ready, ACQ) || !current(b->lane, b->hh))
			continue;
		fn(ctx, b->lane, b->label, ST_STATE(atomic_load_explicit(&b->st, RLX)));
	}
}

void cr_health_reset(void)
{
	memset(addrs, 0, sizeof(addrs));
	memset(brks, 0, sizeof(brks));
	memset(tokens, 0, sizeof(tokens));
	memset(pend, 0, sizeof(pend));
	memset(host_until, 0, sizeof(host_until));
	memset(ej, 0, sizeof(ej));
	memset(cur_hash, 0, sizeof(cur_hash));
	atomic_store(&eject_lock, 0);
}
