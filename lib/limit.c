/* connroute: per (lane, destination) connection counters with bounded waits.
 *
 * Invariants:
 * - the table is allocated once by cr_limits_init (mmap: no malloc, so it is
 *   safe to reach from hooks called inside the host's allocator);
 * - an entry's identity (lane, family, addr, port) never changes once set;
 *   slot numbers are stable for the life of the process (fds store them);
 * - `inuse` only changes under `mu`; waiters sleep on `cv` and are woken by
 *   every release. */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "limit.h"
#include "log.h"

/* A thread waiting for a unit; lives on its stack, linked into its slot's
 * queue. Units go to waiters in arrival order: a freed unit wakes everyone
 * (one cv), but only the queue's head may take it. */
struct waiter {
	struct waiter *next, *prev;
};

struct entry {
	struct waiter *qhead, *qtail;
	int used;
	int lane;
	int family;
	uint16_t port;
	uint8_t addr[16];
	long inuse;
};

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct entry *tab;
	unsigned cap;      /* power of two */
	unsigned nused;
	int full_warned;
	cr_reap_fn reap;
	void *reap_ctx;
} L = {.mu = PTHREAD_MUTEX_INITIALIZER};

int cr_limits_init(unsigned capacity, cr_reap_fn reap, void *reap_ctx)
{
	unsigned cap = 64;
	pthread_condattr_t ca;
	if (L.tab)
		return 0;
	while (cap < capacity && cap < (1u << 20))
		cap <<= 1;
	void *p = mmap(NULL, cap * sizeof(struct entry), PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&L.cv, &ca);
	pthread_condattr_destroy(&ca);
	L.cap = cap;
	L.reap = reap;
	L.reap_ctx = reap_ctx;
	L.tab = p;
	return 0;
}

static uint32_t hash_dest(int lane, const struct cr_dest *d)
{
	uint32_t h = 2166136261u;
	const uint8_t *a = d->addr;
	h = (h ^ (uint32_t)lane) * 16777619u;
	h = (h ^ (uint32_t)d->family) * 16777619u;
	h = (h ^ d->port) * 16777619u;
	for (int i = 0; i < 16; i++)
		h = (h ^ a[i]) * 16777619u;
	return h;
}

static int same(const struct entry *e, int lane, const struct cr_dest *d)
{
	return e->lane == lane && e->family == d->family && e->port == d->port &&
	       memcmp(e->addr, d->addr, 16) == 0;
}

uint32_t cr_limit_slot(int lane, const struct cr_dest *d)
{
	uint32_t slot = CR_SLOT_NONE;
	if (!L.tab)
		return CR_SLOT_NONE;
	unsigned mask = L.cap - 1, i = hash_dest(lane, d) & mask;
	pthread_mutex_lock(&L.mu);
	for (unsigned n = 0; n < L.cap; n++, i = (i + 1) & mask) {
		struct entry *e = &L.tab[i];
		if (e->used && same(e, lane, d)) {
			slot = i + 1;
			break;
		}
		if (!e->used) {
			/* Keep the table at most 3/4 full so probes stay short. */
			if (L.nused + 1 > L.cap / 4 * 3)
				break;
			e->used = 1;
			e->lane = lane;
			e->family = d->family;
			e->port = d->port;
			memcpy(e->addr, d->addr, 16);
			L.nused++;
			slot = i + 1;
			break;
		}
	}
	int warn = slot == CR_SLOT_NONE && !L.full_warned;
	if (warn)
		L.full_warned = 1;
	pthread_mutex_unlock(&L.mu);
	if (warn)
		cr_logmsg(CR_LL_WARN, "limit table full (%u destinations); new destinations are not limited",
		       L.nused);
	return slot;
}

static void deadline_after(struct timespec *ts, long ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int cr_limit_acquire(uint32_t slot, long max, long wait_ms, uint64_t *waited_ns)
{
	struct entry *e;
	struct timespec dl;
	uint64_t t0 = 0;
	int rc = 0;

	if (waited_ns)
		*waited_ns = 0;
	if (slot == CR_SLOT_NONE)
		return 0;
	e = &L.tab[slot - 1];
	pthread_mutex_lock(&L.mu);
	if (max <= 0 || (e->inuse < max && !e->qhead)) {
		e->inuse++;
		pthread_mutex_unlock(&L.mu);
		return 0;
	}
	pthread_mutex_unlock(&L.mu);

	/* Full. Before waiting or failing, look for counts held by fds whose
	 * close we did not see (a raw syscall, io_uring): the fd table checks
	 * each of this slot's fds against its socket inode. */
	if (L.reap)
		L.reap(slot, L.reap_ctx);
	pthread_mutex_lock(&L.mu);
	if (e->inuse < max && !e->qhead) {
		e->inuse++;
		pthread_mutex_unlock(&L.mu);
		return 0;
	}
	if (wait_ms <= 0) {
		pthread_mutex_unlock(&L.mu);
		return -EAGAIN;
	}
	t0 = mono_ns();
	deadline_after(&dl, wait_ms);
	struct waiter me = {.next = NULL, .prev = e->qtail};
	if (e->qtail)
		e->qtail->next = &me;
	else
		e->qhead = &me;
	e->qtail = &me;
	while (!(e->qhead == &me && e->inuse < max)) {
		int w = pthread_cond_timedwait(&L.cv, &L.mu, &dl);
		if (w == ETIMEDOUT) {
			rc = e->qhead == &me && e->inuse < max ? 0 : -ETIMEDOUT;
			break;
		}
	}
	/* Leave the queue; if a unit is free, the next in line may take it. */
	if (me.prev)
		me.prev->next = me.next;
	else
		e->qhead = me.next;
	if (me.next)
		me.next->prev = me.prev;
	else
		e->qtail = me.prev;
	if (rc == 0)
		e->inuse++;
	int wake_next = e->qhead && e->inuse < max;
	pthread_mutex_unlock(&L.mu);
	if (wake_next)
		pthread_cond_broadcast(&L.cv);
	if (waited_ns)
		*waited_ns = mono_ns() - t0;
	return rc;
}

void cr_limit_release(uint32_t slot)
{
	struct entry *e;
	if (slot == CR_SLOT_NONE || !L.tab || slot > L.cap)
		return;
	e = &L.tab[slot - 1];
	pthread_mutex_lock(&L.mu);
	if (e->inuse > 0)
		e->inuse--;
	int wake = e->qhead != NULL;
	pthread_mutex_unlock(&L.mu);
	/* One cv for all slots: broadcast so the waiter of this slot is among
	 * those woken. Waits are rare (only at a lane's limit). */
	if (wake)
		pthread_cond_broadcast(&L.cv);
}

long cr_limit_inuse(uint32_t slot)
{
	long n;
	if (slot == CR_SLOT_NONE || !L.tab || slot > L.cap)
		return 0;
	pthread_mutex_lock(&L.mu);
	n = L.tab[slot - 1].inuse;
	pthread_mutex_unlock(&L.mu);
	return n;
}

int cr_limit_waiting(uint32_t slot)
{
	int w;
	if (slot == CR_SLOT_NONE || !L.tab || slot > L.cap)
		return 0;
	pthread_mutex_lock(&L.mu);
	w = L.tab[slot - 1].qhead != NULL;
	pthread_mutex_unlock(&L.mu);
	return w;
}

void cr_limits_atfork_prepare(void)
{
	pthread_mutex_lock(&L.mu);
}

void cr_limits_atfork_parent(void)
{
	pthread_mutex_unlock(&L.mu);
}

void cr_limits_atfork_child(void)
{
	/* Threads that waited in the parent do not exist here: a fresh cv and
	 * zero waiters. Counts stay: the child inherited the fds that hold them
	 * and releases them when it closes its copies. */
	pthread_condattr_t ca;
	for (unsigned i = 0; L.tab && i < L.cap; i++) {
		L.tab[i].qhead = L.tab[i].qtail = NULL;
	}
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&L.cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_unlock(&L.mu);
}
