/* connroute: per (lane, destination) connection counters with bounded waits.
 *
 * Invariants (docs/INTERNALS.md, "Limits"):
 * - the table and the waiter records are allocated once by cr_limits_init
 *   (mmap: no malloc, so it is safe to reach from hooks called inside the
 *   host's allocator);
 * - an entry's identity (lane, family, addr, port) never changes once set;
 *   slot numbers are stable for the life of the process (fds store them);
 * - `inuse` changes by CAS (never past the slot's max: the same check and
 *   increment in one step), the waiter records only under `mu`, held for
 *   a few instructions at a time with every signal blocked: a handler can
 *   neither deadlock on it (connect() is async-signal-safe, a handler may
 *   call it) nor siglongjmp out of it while held;
 * - nobody holds `mu` while waiting: a waiter sleeps on its own futex word,
 *   so a release wakes exactly the waiter whose turn it is (FIFO by ticket),
 *   not every waiter of every slot;
 * - a waiter record carries its deadline and its thread: a thread that
 *   siglongjmp'ed out of a wait leaves a record that stops counting at its
 *   deadline, and that the same thread's next wait removes at once. */
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "base.h"
#include "limit.h"
#include "log.h"

#define MAX_WAITERS 1024
/* A waiter looks at the queue at least this often, so a head that vanished
 * (siglongjmp) stops blocking the others once its deadline has passed. */
#define RECHECK_NS  100000000ull

struct waiter {
	_Atomic uint32_t word; /* futex: bumped to wake */
	uint32_t slot;         /* 0: free record */
	pid_t tid;
	uint64_t ticket;
	uint64_t deadline_ns;
};

struct entry {
	int used;
	int lane;
	int family;
	uint16_t port;
	uint8_t addr[16];
	/* Atomic: the uncontended paths (a unit free and nobody waiting, or an
	 * unlimited lane that only counts) take and give back units with one
	 * CAS and no lock; everything else happens under mu. */
	_Atomic long inuse;
	uint64_t tickets;     /* last ticket handed out */
	_Atomic int nwaiting; /* records with this slot (live or expired) */
};

static struct {
	pthread_mutex_t mu;
	struct entry *tab;
	struct waiter *w; /* MAX_WAITERS records */
	unsigned cap;     /* power of two */
	unsigned nused;
	int full_warned;
	cr_reap_fn reap;
	void *reap_ctx;
} L = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void lock(sigset_t *old)
{
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, old);
	pthread_mutex_lock(&L.mu);
}

static void unlock(const sigset_t *old)
{
	pthread_mutex_unlock(&L.mu);
	pthread_sigmask(SIG_SETMASK, old, NULL);
}

static void futex_wake(_Atomic uint32_t *word)
{
	SAVE_ERRNO(syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0));
}

/* Sleeps while *WORD == SEEN, at most NS. Any return is fine: the caller
 * looks again. */
static void futex_wait(_Atomic uint32_t *word, uint32_t seen, uint64_t ns)
{
	struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000ull),
			      .tv_nsec = (long)(ns % 1000000000ull)};
	SAVE_ERRNO(syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, seen, &ts, NULL, 0));
}

/* Takes a unit if one is free (MAX <= 0: unlimited, counted only). Lock-free;
 * the callers decide whether waiters go first. */
static int take_unit(struct entry *e, long max)
{
	long n = atomic_load(&e->inuse);
	while (max <= 0 || n < max)
		if (atomic_compare_exchange_weak(&e->inuse, &n, n + 1))
			return 1;
	return 0;
}

static void free_waiter(struct waiter *w)
{
	if (w->slot)
		L.tab[w->slot - 1].nwaiting--;
	w->slot = 0;
}

/* Under mu: the waiter whose turn it is at SLOT (lowest ticket among the
 * records whose deadline has not passed); expired records are freed. */
static struct waiter *head_of(uint32_t slot, uint64_t now)
{
	struct waiter *h = NULL;
	struct entry *e = &L.tab[slot - 1];
	for (int i = 0, seen = 0; i < MAX_WAITERS && seen < e->nwaiting; i++) {
		struct waiter *w = &L.w[i];
		if (w->slot != slot)
			continue;
		seen++;
		if (now >= w->deadline_ns) {
			free_waiter(w);
			seen--;
			continue;
		}
		if (!h || w->ticket < h->ticket)
			h = w;
	}
	return h;
}

/* Under mu: wakes SLOT's head if a unit is free for it. */
static void wake_head(uint32_t slot, long max, uint64_t now)
{
	struct entry *e = &L.tab[slot - 1];
	if (!atomic_load(&e->nwaiting) || (max > 0 && atomic_load(&e->inuse) >= max))
		return;
	struct waiter *h = head_of(slot, now);
	if (h) {
		atomic_fetch_add(&h->word, 1);
		futex_wake(&h->word);
	}
}

int cr_limits_init(unsigned capacity, cr_reap_fn reap, void *reap_ctx)
{
	unsigned cap = 64;
	if (L.tab)
		return 0;
	while (cap < capacity && cap < (1u << 20))
		cap <<= 1;
	size_t tsz = cap * sizeof(struct entry), wsz = MAX_WAITERS * sizeof(struct waiter);
	void *p = mmap(NULL, tsz + wsz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	L.w = (struct waiter *)((char *)p + tsz);
	L.cap = cap;
	L.reap = reap;
	L.reap_ctx = reap_ctx;
	L.tab = p;
	return 0;
}

static uint32_t hash_dest(int lane, const struct cr_dest *d)
{
	uint32_t h = cr_fnv32(CR_FNV32_INIT, &lane, sizeof(lane));
	h = cr_fnv32(h, &d->family, sizeof(d->family));
	h = cr_fnv32(h, &d->port, sizeof(d->port));
	return cr_fnv32(h, d->addr, 16);
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
	sigset_t old;
	lock(&old);
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
	unlock(&old);
	if (warn)
		cr_logmsg(CR_LL_WARN,
			  "limit table full (%u destinations); new destinations are not limited",
			  L.nused);
	return slot;
}

int cr_limit_acquire(uint32_t slot, long max, long wait_ms, uint64_t *waited_ns)
{
	sigset_t old;
	if (waited_ns)
		*waited_ns = 0;
	if (slot == CR_SLOT_NONE)
		return 0;
	struct entry *e = &L.tab[slot - 1];
	/* Unlimited, or a unit free and nobody queued: no lock. (A waiter that
	 * registers at this very moment may see this unit go first: it had
	 * not arrived yet.) */
	if (max <= 0 || !atomic_load(&e->nwaiting)) {
		if (take_unit(e, max))
			return 0;
	} else {
		lock(&old);
		int took = !head_of(slot, cr_now_ns()) && take_unit(e, max);
		unlock(&old);
		if (took)
			return 0;
	}

	/* Full. Before waiting or failing, look for counts held by fds whose
	 * close we did not see (a raw syscall, io_uring): the fd table checks
	 * each of this slot's fds against its socket inode. */
	if (L.reap)
		L.reap(slot, L.reap_ctx);
	uint64_t t0 = cr_now_ns();
	pid_t me = (pid_t)syscall(SYS_gettid);
	struct waiter *w = NULL;
	lock(&old);
	/* A record this thread left behind (it siglongjmp'ed out of a wait)
	 * is gone now, before anything looks at the queue: it must not hold
	 * back even this thread's non-blocking connect. */
	for (int i = 0; i < MAX_WAITERS; i++)
		if (L.w[i].slot && L.w[i].tid == me)
			free_waiter(&L.w[i]);
	if (!head_of(slot, t0) && take_unit(e, max)) {
		unlock(&old);
		return 0;
	}
	if (wait_ms <= 0) {
		unlock(&old);
		return -EAGAIN;
	}
	for (int i = 0; i < MAX_WAITERS && !w; i++)
		if (!L.w[i].slot)
			w = &L.w[i];
	if (!w) {
		unlock(&old);
		return -EAGAIN; /* more than MAX_WAITERS waiting: refuse, never block unbounded */
	}
	w->slot = slot;
	w->tid = me;
	w->ticket = ++e->tickets;
	w->deadline_ns = t0 + (uint64_t)wait_ms * 1000000ull;
	e->nwaiting++;
	int rc = -ETIMEDOUT;
	for (;;) {
		uint64_t now = cr_now_ns();
		if (head_of(slot, now) == w && take_unit(e, max)) {
			rc = 0;
			break;
		}
		if (now >= w->deadline_ns)
			break;
		uint32_t seen = atomic_load(&w->word);
		unlock(&old);
		uint64_t left = w->deadline_ns - now;
		futex_wait(&w->word, seen, left < RECHECK_NS ? left : RECHECK_NS);
		lock(&old);
		if (w->slot != slot || w->tid != me)
			break; /* freed under us (fork child reset): give up */
	}
	if (w->slot == slot && w->tid == me)
		free_waiter(w);
	/* A unit may still be free for the next in line. */
	wake_head(slot, max, cr_now_ns());
	unlock(&old);
	if (waited_ns)
		*waited_ns = cr_now_ns() - t0;
	return rc;
}

void cr_limit_release(uint32_t slot)
{
	sigset_t old;
	if (slot == CR_SLOT_NONE || !L.tab || slot > L.cap)
		return;
	struct entry *e = &L.tab[slot - 1];
	long n = atomic_load(&e->inuse);
	while (n > 0 && !atomic_compare_exchange_weak(&e->inuse, &n, n - 1))
		;
	/* Someone waits: wake the one whose turn it is, and only that one.
	 * (A waiter registers under mu and then looks at the count; this
	 * decrement came first or it sees nwaiting: no wake-up is lost.) It
	 * checks the count itself (its max is its lane's): wake it whatever
	 * max. */
	if (atomic_load(&e->nwaiting)) {
		lock(&old);
		wake_head(slot, 0, cr_now_ns());
		unlock(&old);
	}
}

long cr_limit_inuse(uint32_t slot)
{
	if (slot == CR_SLOT_NONE || !L.tab || slot > L.cap)
		return 0;
	return atomic_load(&L.tab[slot - 1].inuse);
}

int cr_limit_waiting(uint32_t slot)
{
	int w;
	sigset_t old;
	if (slot == CR_SLOT_NONE || !L.tab || slot > L.cap)
		return 0;
	lock(&old);
	w = head_of(slot, cr_now_ns()) != NULL;
	unlock(&old);
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
	/* Threads that waited in the parent do not exist here. */
	for (int i = 0; L.w && i < MAX_WAITERS; i++)
		L.w[i].slot = 0;
	for (unsigned i = 0; L.tab && i < L.cap; i++)
		L.tab[i].nwaiting = 0;
	pthread_mutex_unlock(&L.mu);
}

void cr_limits_reset_child(void)
{
	/* The child starts with its own accounting: units taken in the parent
	 * by threads (transfers in flight) that do not exist here would
	 * otherwise be lost for the life of the child. The fd table is reset
	 * alongside (cr_fdtab_reset_child), so the parent's fds the child
	 * inherited give nothing back when the child closes them. */
	for (unsigned i = 0; L.tab && i < L.cap; i++)
		atomic_store(&L.tab[i].inuse, 0);
}
