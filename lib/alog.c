/* connroute: the access log's ring; see alog.h.
 *
 * A bounded MPSC queue of fixed-size slots in BSS (a process that never logs
 * touches none of its pages), after Vyukov's bounded queue: each slot has a
 * sequence number. A producer claims position POS with one CAS on the tail
 * when slot POS % CAP has sequence POS (free for this lap), fills the
 * record in place, and publishes it by storing POS + 1 (release). The
 * consumer takes the slot at the head when its sequence is HEAD + 1, copies
 * the record out and frees the slot for the next lap (HEAD + CAP). A full
 * ring (the slot at the tail still holds last lap's record) is a drop,
 * never a wait; so is losing the CAS 64 times in a row.
 *
 * What this does not survive: a thread leaving between its claim and its
 * publish (a signal handler that siglongjmps out of the ~100 ns in
 * between). The consumer then stops at that slot and every later record is
 * dropped and counted: the log stops, the host never notices.
 *
 * The capacity comes from `[global] access_log_buffer` when the first
 * record of the process (or of a fork child) is put: changing it needs a
 * restart. */
#include <errno.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "alog.h"
#include "base.h"
#include "cfgref.h"
#include "metrics.h"

struct slot {
	_Alignas(64) _Atomic uint64_t seq;
	uint64_t pos; /* the claimed position, for the publish */
	struct cr_alog_rec rec;
};

static struct slot ring[CR_ALOG_BUFFER_MAX];

#define RLX memory_order_relaxed

static struct {
	_Alignas(64) _Atomic uint64_t tail; /* next position to claim */
	_Alignas(64) _Atomic uint64_t head; /* next position to take */
	_Alignas(64) atomic_int state;      /* 0 empty, 1 being set up, 2 ready */
	uint64_t cap, mask;
	int forced_cap;          /* tests */
	atomic_uint wake_word;   /* futex: the writer sleeps on it */
	atomic_int wake_pending; /* a wake was sent since the last take */
} R;

static _Atomic uint64_t dropped[CR_MAX_LANE_IDS];
static atomic_uchar lane_off[CR_MAX_LANE_IDS];

/* ------------------------------------------------------------ the ring */

static unsigned configured_cap(void)
{
	unsigned cap = CR_ALOG_BUFFER_DEFAULT;
	const struct cr_config *cfg = cr_cfgref_current();
	if (R.forced_cap)
		cap = (unsigned)R.forced_cap;
	else if (cfg && cfg->access_log_buffer >= CR_ALOG_BUFFER_MIN &&
		 cfg->access_log_buffer <= CR_ALOG_BUFFER_MAX)
		cap = (unsigned)cfg->access_log_buffer;
	/* a power of two (the parser enforces it; a forced size too) */
	while (cap & (cap - 1))
		cap &= cap - 1;
	return cap < 2 ? 2 : cap;
}

/* Sets the ring up once per process: the first producer does it (a few
 * thousand stores, once), others drop their record meanwhile. */
static int ring_ready(void)
{
	int st = atomic_load_explicit(&R.state, memory_order_acquire);
	if (st == 2)
		return 1;
	if (st != 0 || !atomic_compare_exchange_strong(&R.state, &st, 1))
		return 0;
	uint64_t cap = configured_cap();
	for (uint64_t i = 0; i < cap; i++)
		atomic_store_explicit(&ring[i].seq, i, RLX);
	R.cap = cap;
	R.mask = cap - 1;
	atomic_store_explicit(&R.head, 0, RLX);
	atomic_store_explicit(&R.tail, 0, RLX);
	atomic_store_explicit(&R.wake_pending, 0, RLX);
	atomic_store_explicit(&R.state, 2, memory_order_release);
	return 1;
}

static struct slot *claim(void)
{
	if (!ring_ready())
		return NULL;
	uint64_t pos = atomic_load_explicit(&R.tail, RLX);
	for (int tries = 0; tries < 64; tries++) {
		struct slot *s = &ring[pos & R.mask];
		uint64_t seq = atomic_load_explicit(&s->seq, memory_order_acquire);
		int64_t dif = (int64_t)(seq - pos);
		if (dif == 0) {
			if (atomic_compare_exchange_weak_explicit(&R.tail, &pos, pos + 1, RLX,
								  RLX)) {
				s->pos = pos;
				return s;
			}
		} else if (dif < 0) {
			return NULL; /* last lap's record is still there: full */
		} else {
			pos = atomic_load_explicit(&R.tail, RLX);
		}
	}
	return NULL;
}

static void futex_wake(void)
{
	atomic_fetch_add(&R.wake_word, 1);
	SAVE_ERRNO(syscall(SYS_futex, &R.wake_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0));
}

static void publish(struct slot *s)
{
	uint64_t pos = s->pos;
	atomic_store_explicit(&s->seq, pos + 1, memory_order_release);
	/* Half full: wake the writer, once until it next takes (it also
	 * wakes by itself a few times a second). */
	uint64_t head = atomic_load_explicit(&R.head, RLX);
	if (pos + 1 - head >= R.cap / 2 && !atomic_load_explicit(&R.wake_pending, RLX) &&
	    !atomic_exchange(&R.wake_pending, 1))
		futex_wake();
}

size_t cr_alog_take(struct cr_alog_rec *out, size_t max)
{
	if (atomic_load_explicit(&R.state, memory_order_acquire) != 2)
		return 0;
	uint64_t head = atomic_load_explicit(&R.head, RLX);
	size_t n = 0;
	while (n < max) {
		struct slot *s = &ring[head & R.mask];
		if (atomic_load_explicit(&s->seq, memory_order_acquire) != head + 1)
			break;
		memcpy(&out[n++], &s->rec, sizeof(s->rec));
		atomic_store_explicit(&s->seq, head + R.cap, memory_order_release);
		head++;
	}
	atomic_store_explicit(&R.head, head, memory_order_release);
	atomic_store_explicit(&R.wake_pending, 0, RLX);
	return n;
}

size_t cr_alog_pending(void)
{
	if (atomic_load_explicit(&R.state, memory_order_acquire) != 2)
		return 0;
	uint64_t h = atomic_load_explicit(&R.head, RLX), t = atomic_load_explicit(&R.tail, RLX);
	return t > h ? (size_t)(t - h) : 0;
}

void cr_alog_wait(int ms)
{
	unsigned w = atomic_load(&R.wake_word);
	if (atomic_load_explicit(&R.state, memory_order_acquire) == 2 &&
	    cr_alog_pending() >= R.cap / 2)
		return;
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	SAVE_ERRNO(syscall(SYS_futex, &R.wake_word, FUTEX_WAIT_PRIVATE, w, &ts, NULL, 0));
}

unsigned cr_alog_capacity(void)
{
	return atomic_load_explicit(&R.state, memory_order_acquire) == 2 ? (unsigned)R.cap : 0;
}

void cr_alog_drop(int id, uint64_t n)
{
	if (id < 0 || id >= CR_MAX_LANE_IDS || !n)
		return;
	atomic_fetch_add_explicit(&dropped[id], n, RLX);
	cr_m_alog_dropped(id, n);
}

uint64_t cr_alog_dropped(int id)
{
	return id >= 0 && id < CR_MAX_LANE_IDS ? atomic_load_explicit(&dropped[id], RLX) : 0;
}

void cr_alog_lane_off(int id, int off)
{
	if (id >= 0 && id < CR_MAX_LANE_IDS)
		atomic_store_explicit(&lane_off[id], off ? 1 : 0, RLX);
}

static atomic_uint fork_gen = 1;

void cr_alog_atfork_child(void)
{
	/* Slots the parent's other threads had claimed would never be
	 * published here: start over, lazily, with an empty ring. */
	atomic_store(&R.state, 0);
	atomic_fetch_add(&fork_gen, 1); /* every cached tid is the parent's */
}

void cr_alog_reset(unsigned cap)
{
	R.forced_cap = cap > CR_ALOG_BUFFER_MAX ? CR_ALOG_BUFFER_MAX : (int)cap;
	atomic_store(&R.state, 0);
	for (int i = 0; i < CR_MAX_LANE_IDS; i++) {
		atomic_store(&dropped[i], 0);
		atomic_store(&lane_off[i], 0);
	}
}

/* ------------------------------------------------------------ producers */

static __thread int tls_tid;
static __thread unsigned tls_gen;
static __thread uint64_t tls_rnd;

/* The thread's id, asked once per thread (and again in a fork child). */
static int my_tid(void)
{
	unsigned g = atomic_load_explicit(&fork_gen, RLX);
	if (tls_gen != g) {
		long t;
		SAVE_ERRNO(t = syscall(SYS_gettid));
		tls_tid = (int)t;
		tls_gen = g;
	}
	return tls_tid;
}

/* Uniform in [0, 1): xorshift64*, per thread. */
static double draw(int64_t seed)
{
	uint64_t x = tls_rnd;
	if (!x)
		x = ((uint64_t)(unsigned)my_tid() << 32) ^ (uint64_t)seed ^ 0x9e3779b97f4a7c15ull;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	tls_rnd = x;
	return (double)((x * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

/* Copies S (at most MAX bytes, stopping at STOP1 or STOP2 if not 0) as
 * string I. */
static void put_str(struct cr_alog_rec *r, size_t *used, int i, const char *s, size_t max,
		    char stop1, char stop2)
{
	if (!s || *used >= CR_ALOG_STR) {
		r->str_off[i] = CR_ALOG_NOSTR;
		return;
	}
	size_t room = CR_ALOG_STR - *used - 1, n = 0;
	if (max > room)
		max = room;
	if (stop1)
		while (n < max && s[n] && s[n] != stop1 && s[n] != stop2)
			n++;
	else
		n = strnlen(s, max);
	r->str_off[i] = (uint16_t)*used;
	memcpy(r->str + *used, s, n);
	r->str[*used + n] = '\0';
	*used += n + 1;
}

void cr_alog_put(const struct cr_alog_call *c)
{
	const struct cr_lane *l = c->lane;
	int id = l->id;
	if (!l->alog_on || id < 0 || id >= CR_MAX_LANE_IDS ||
	    atomic_load_explicit(&lane_off[id], RLX))
		return;
	int64_t total = c->dur_ns[CR_AD_TOTAL];
	if (l->access_log_slow_ms > 0 && total < (int64_t)l->access_log_slow_ms * 1000000)
		return;
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now); /* vDSO: no system call */
	int64_t wall = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
	if (l->access_log_sample < 1 && draw(wall) >= l->access_log_sample)
		return;

	struct slot *s = claim();
	if (!s) {
		cr_alog_drop(id, 1);
		return;
	}
	struct cr_alog_rec *r = &s->rec;
	r->wall_ns = wall - (total > 0 ? total : 0);
	memcpy(r->dur_ns, c->dur_ns, sizeof(r->dur_ns));
	r->status = c->status;
	r->tid = my_tid();
	r->lane = (uint16_t)id;
	r->server_port = (uint16_t)c->server_port;
	r->peer_port = (uint16_t)c->peer_port;
	r->local_port = (uint16_t)c->local_port;
	r->kind = (uint8_t)c->kind;
	r->outcome = (uint8_t)c->outcome;
	r->reused = (int8_t)c->reused;
	r->warm = (int8_t)c->warm;
	r->resends = (uint8_t)(c->resends > 255 ? 255 : c->resends);
	r->peer_family = 0;
	if (c->peer_addr && (c->peer_family == AF_INET || c->peer_family == AF_INET6)) {
		r->peer_family = (uint8_t)c->peer_family;
		memcpy(r->peer_addr, c->peer_addr, c->peer_family == AF_INET ? 4 : 16);
	}
	size_t used = 0;
	/* Bounded first, the path last: it gets what is left, at most
	 * CR_ALOG_PATH_MAX bytes. Never a fragment; a query only if asked. */
	put_str(r, &used, CR_AS_KEY, c->key, CR_KEY_MAX - 1, 0, 0);
	put_str(r, &used, CR_AS_METHOD, c->method, 15, 0, 0);
	put_str(r, &used, CR_AS_SCHEME, c->scheme, 15, 0, 0);
	put_str(r, &used, CR_AS_ERROR, c->error, 31, 0, 0);
	put_str(r, &used, CR_AS_PEER, c->peer_text, 45, 0, 0);
	put_str(r, &used, CR_AS_HOST, c->host, CR_HOST_MAX - 1, 0, 0);
	put_str(r, &used, CR_AS_PATH, c->path, CR_ALOG_PATH_MAX, '#',
		l->access_log_query > 0 ? '#' : '?');
	publish(s);
}

/* ------------------------------------------------------------ raw connects */

#define E(x) [x] = #x
static const char *const errno_names[] = {
	E(EPERM),           E(ENOENT),       E(EINTR),        E(EIO),          E(EBADF),
	E(EAGAIN),          E(ENOMEM),       E(EACCES),       E(EFAULT),       E(EBUSY),
	E(EINVAL),          E(ENFILE),       E(EMFILE),       E(ENOSPC),       E(EPIPE),
	E(ENOSYS),          E(ENOTSOCK),     E(EDESTADDRREQ), E(EPROTOTYPE),   E(ENOPROTOOPT),
	E(EPROTONOSUPPORT), E(EOPNOTSUPP),   E(EAFNOSUPPORT), E(EADDRINUSE),   E(EADDRNOTAVAIL),
	E(ENETDOWN),        E(ENETUNREACH),  E(ENETRESET),    E(ECONNABORTED), E(ECONNRESET),
	E(ENOBUFS),         E(EISCONN),      E(ENOTCONN),     E(ETIMEDOUT),    E(ECONNREFUSED),
	E(EHOSTDOWN),       E(EHOSTUNREACH), E(EALREADY),     E(EINPROGRESS),  E(ELOOP),
	E(ENAMETOOLONG),    E(ENXIO),        E(EROFS),        E(EDQUOT),       E(EFBIG),
};
#undef E

const char *cr_alog_errno_name(int err)
{
	if (err <= 0 || (size_t)err >= ARRAY_SIZE(errno_names))
		return NULL;
	return errno_names[err];
}

void cr_alog_connect_(const struct cr_lane *lane, const char *key, const struct cr_dest *d,
		      uint64_t queue_ns, int64_t connect_ns, int err, int flags)
{
	struct cr_alog_call c = {
		.lane = lane,
		.kind = CR_ALOG_CONNECT,
		.key = key,
		.server_port = d->port,
		.peer_family = d->family,
		.peer_addr = d->addr,
		.peer_port = d->port,
		.reused = 0,
		.warm = (flags & CR_ALOG_F_WARM) != 0,
		.resends = 0,
	};
	for (int i = 0; i < CR_AD_N; i++)
		c.dur_ns[i] = -1;
	c.dur_ns[CR_AD_QUEUE] = (int64_t)queue_ns;
	c.dur_ns[CR_AD_CONNECT] = connect_ns;
	c.dur_ns[CR_AD_TOTAL] = (int64_t)queue_ns + (connect_ns > 0 ? connect_ns : 0);
	if (flags & CR_ALOG_F_OVERFLOW)
		c.outcome = CR_ALOG_OVERFLOW;
	else if (flags & CR_ALOG_F_EJECTED)
		c.outcome = CR_ALOG_EJECTED;
	else if (flags & CR_ALOG_F_BREAKER)
		c.outcome = CR_ALOG_BREAKER;
	else if (err == 0 || err == EINPROGRESS)
		c.outcome = CR_ALOG_OK;
	else if (err == ETIMEDOUT)
		c.outcome = CR_ALOG_TIMEOUT;
	else
		c.outcome = CR_ALOG_ERROR;
	if (err && err != EINPROGRESS)
		c.error = cr_alog_errno_name(err);
	cr_alog_put(&c);
}
