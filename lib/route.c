/* connroute: routing of raw connect() calls and the close-family bookkeeping.
 *
 * Invariants (see also fdtab.h):
 * - a socket is tracked only when it holds a limit unit; untracked sockets
 *   cost close() nothing;
 * - the caller's O_NONBLOCK is never cleared; a blocking socket is made
 *   non-blocking only for the duration of a timed connect and restored
 *   before returning;
 * - a second connect() on a socket we already routed (EINPROGRESS, EALREADY,
 *   EISCONN paths) goes to the kernel untouched;
 * - errno: untouched on success, the kernel's on failure, ETIMEDOUT/EAGAIN
 *   for the lane's own timeouts and limits. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "alog.h"
#include "base.h"
#include "cfgref.h"
#include "fdtab.h"
#include "health.h"
#include "key.h"
#include "lane.h"
#include "limit.h"
#include "log.h"
#include "metrics.h"
#include "notice.h"
#include "real.h"
#include "route.h"
#include "deadline.h"
#include "sockopt.h"
#include "sockrec.h"
#include "sys.h"
#include "thread.h"
#include "warm.h"

atomic_int cr_route_raw;

/* The process whose accounting this is: set at init and by the fork child
 * handler. A vfork child (or posix_spawn's) shares our memory but runs no
 * atfork handler, so its getpid() differs: its closes before exec (python's
 * subprocess closes every fd) must not touch the parent's fd table and
 * limits, whose sockets stay open in the parent. */
static _Atomic pid_t owner_pid;

void cr_route_set_owner(void)
{
	atomic_store(&owner_pid, getpid());
}

static int in_vfork_child(void)
{
	return getpid() != atomic_load_explicit(&owner_pid, memory_order_relaxed);
}

_Static_assert(CR_MAX_LANE_IDS <= (1u << CR_FDTAB_LANE_BITS),
	       "a stable lane id must fit the fd table's lane field");

/* Would the host expect EINTR from an interrupted blocking connect? Only if
 * some signal has a handler installed without SA_RESTART. Only asked on the
 * rare EINTR path of a timed connect. */
static int host_expects_eintr(void)
{
	for (int s = 1; s < NSIG; s++) {
		struct sigaction sa;
		if (s == SIGKILL || s == SIGSTOP)
			continue;
		if (sigaction(s, NULL, &sa) != 0)
			continue;
		if (sa.sa_handler != SIG_DFL && sa.sa_handler != SIG_IGN &&
		    !(sa.sa_flags & SA_RESTART))
			return 1;
	}
	return 0;
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A blocking connect bounded by TIMEOUT_MS: made non-blocking for the
 * duration, waited for with poll, then restored. On timeout the attempt is
 * dissolved (connect to AF_UNSPEC) so the socket is left as a kernel timeout
 * would leave it: unconnected. */
static int timed_connect(int fd, const struct sockaddr *sa, socklen_t len, int flags,
			 long timeout_ms)
{
	int r, err = 0;
	if (fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0)
		return cr_real.connect(fd, sa, len);
	r = cr_real.connect(fd, sa, len);
	if (r == 0 || errno != EINPROGRESS) {
		err = r == 0 ? 0 : errno;
		goto out;
	}
	int64_t deadline = mono_ms() + timeout_ms;
	for (int rounds = 0; rounds < 100000; rounds++) {
		int64_t left = deadline - mono_ms();
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		if (left <= 0) {
			struct sockaddr unspec = {.sa_family = AF_UNSPEC};
			cr_real.connect(fd, &unspec, sizeof(unspec));
			err = ETIMEDOUT;
			break;
		}
		int n = poll(&p, 1, left > 1000000 ? 1000000 : (int)left);
		if (n < 0 && errno == EINTR) {
			if (host_expects_eintr()) {
				/* The kernel keeps connecting in the background,
				 * as it would for an interrupted blocking connect. */
				err = EINTR;
				break;
			}
			continue;
		}
		if (n < 0) {
			err = errno;
			break;
		}
		if (n > 0) {
			socklen_t el = sizeof(err);
			if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0)
				err = errno;
			break;
		}
	}
out:
	(void)fcntl(fd, F_SETFL, flags);
	if (err) {
		errno = err;
		return -1;
	}
	return 0;
}

void cr_route_release_fd(int fd, const struct cr_fdinfo *info, void *ctx)
{
	(void)ctx;
	cr_limit_release(info->slot);
	if (info->flags & CR_FDF_WARM)
		cr_warm_forget(fd); /* the app closed one of our warm sockets */
	else
		cr_m_conn_closed(info->lane);
}

/* A socket the kernel has never connected: TCP state CLOSE (a connect in
 * progress is SYN_SENT, even though getpeername says ENOTCONN). */
static int never_connected(int fd)
{
	struct tcp_info ti;
	socklen_t tl = sizeof(ti);
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) != 0)
		return 0;
	return ti.tcpi_state == 7 /* TCP_CLOSE */;
}

/* Serves connect() from the lane's warm pool: only for a fresh, unbound,
 * never-connected TCP socket of the destination's family that was not
 * registered with epoll (dup3 would silently drop that registration). The
 * warm socket gets the app's recorded options, then the lane's (the lane
 * wins, as on the cold path), and takes the app's fd number, FD_CLOEXEC and
 * O_NONBLOCK. Returns 1 when served (*RET is connect's result). */
static int serve_warm(int fd, int family, const struct cr_lane *lane, const struct cr_dest *d,
		      uint64_t ino, int flags, int *ret)
{
	int dom = 0;
	socklen_t dl = sizeof(dom);
	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &dl) != 0 || dom != family)
		return 0;
	if (!never_connected(fd) || !cr_sockopt_unbound(fd) || !cr_sockrec_substitutable(fd, ino))
		return 0;
	uint32_t slot;
	uint64_t wino;
	int wfd = cr_warm_take(lane, d, &slot, &wino);
	if (wfd < 0)
		return 0;
	int fdflags = fcntl(fd, F_GETFD);
	/* The open file's owner and signal (F_SETOWN[_EX], F_SETSIG) go with
	 * the substitution, like its status flags (O_NONBLOCK, O_ASYNC): a
	 * SIGIO-driven client keeps its signals. */
	struct f_owner_ex owner = {0};
	int sig = fcntl(fd, F_GETSIG);
	if (fcntl(fd, F_GETOWN_EX, &owner) != 0 || sig < 0)
		fdflags = -1;
	if (fdflags < 0 || cr_sockrec_replay(fd, ino, wfd) != 0) {
		cr_real.close(wfd);
		cr_limit_release(slot);
		return 0;
	}
	cr_sockopt_apply(wfd, lane, family, 0);
	if (cr_sys_dup3(wfd, fd, (fdflags & FD_CLOEXEC) ? O_CLOEXEC : 0) < 0) {
		cr_real.close(wfd);
		cr_limit_release(slot);
		return 0;
	}
	cr_real.close(wfd);
	if (owner.pid)
		(void)fcntl(fd, F_SETOWN_EX, &owner);
	if (sig)
		(void)fcntl(fd, F_SETSIG, sig);
	(void)fcntl(fd, F_SETFL, flags); /* last: O_ASYNC once the owner is set */
	cr_sockrec_forget(fd);
	int nonblock = (flags & O_NONBLOCK) != 0;
	struct cr_fdinfo info = {.slot = slot,
				 .lane = lane->id,
				 .flags = CR_FDF_ROUTED | (nonblock ? CR_FDF_AGAIN0 : 0),
				 .ino = wino};
	cr_m_conn_opened(lane->id, 0, 1);
	if (cr_fdtab_put(fd, &info) != 0) {
		cr_limit_release(slot);
		cr_m_conn_closed(lane->id);
	}
	/* A non-blocking caller expects EINPROGRESS, then POLLOUT and
	 * SO_ERROR 0, or 0 from its next connect(): all of which it gets. */
	if (nonblock) {
		errno = EINPROGRESS;
		*ret = -1;
	} else {
		*ret = 0;
	}
	return 1;
}

void cr_route_reap(uint32_t slot, void *ctx)
{
	cr_fdtab_reap_slot(slot, cr_route_release_fd, ctx);
}

int cr_route_again0(int fd)
{
	struct cr_fdinfo now;
	if (!cr_fdtab_peek(fd, &now) || !(now.flags & CR_FDF_AGAIN0))
		return 0;
	if (cr_fd_inode(fd) != now.ino || !cr_fdtab_take(fd, &now))
		return 0;
	now.flags &= ~CR_FDF_AGAIN0;
	cr_fdtab_put(fd, &now);
	return 1;
}

/* Resilience (docs/INTERNALS.md, "Resilience (lib/health.c)"): an address
 * the lane ejected, or an address whose breaker is open, is refused at once
 * as a closed port would be: -1 with ECONNREFUSED, logged, CFG released.
 * Else 0, the breaker's admission kept for health_note (a thread-local:
 * nothing of this stays live across the connect of a lane without
 * resilience). */
static __thread int tls_adm;

__attribute__((noinline, cold)) static int health_refuse(const struct cr_lane *lane,
							 const char *key, const struct cr_dest *d,
							 const struct cr_config *cfg)
{
	int64_t now = cr_health_now();
	int refused = 0, *adm = &tls_adm;
	*adm = CR_ADMIT_YES;
	if ((lane->health & CR_H_EJECT) &&
	    cr_health_ejected(lane, cr_health_host_raw_group(d->port), d, now))
		refused = CR_ALOG_F_EJECTED;
	else if ((lane->health & CR_H_BREAKER) &&
		 (*adm = cr_health_admit_addr(lane, d, now)) == CR_ADMIT_NO)
		refused = CR_ALOG_F_BREAKER;
	if (!refused)
		return 0;
	cr_alog_connect(lane, key, d, 0, -1, ECONNREFUSED, refused);
	cr_cfgref_release(cfg);
	errno = ECONNREFUSED;
	return -1;
}

/* A connect's outcome, when known now: only what says something about the
 * upstream counts (a refused, unreachable or timed out connect). A
 * non-blocking connect in progress is decided at its close. */
__attribute__((noinline, cold)) static void health_note(int fd, uint64_t ino,
							const struct cr_lane *lane,
							const struct cr_dest *d, long r, int err)
{
	int adm = tls_adm;
	if (r < 0 && (err == EINPROGRESS || err == EINTR)) {
		/* The fd's entry says so (HPEND): its close decides (the same
		 * take-and-put as cr_route_again0). */
		struct cr_fdinfo now;
		if (!cr_fdtab_peek(fd, &now) || now.ino != ino || !cr_fdtab_take(fd, &now))
			return;
		now.flags |= CR_FDF_HPEND;
		if (cr_fdtab_put(fd, &now) != 0) {
			cr_route_release_fd(fd, &now, NULL);
			return;
		}
		cr_health_pending(fd, ino, lane, d, adm);
		return;
	}
	if (r >= 0)
		err = 0;
	int ok = err == 0;
	if (!ok && err != ECONNREFUSED && err != ETIMEDOUT && err != EHOSTUNREACH &&
	    err != ENETUNREACH && err != ECONNRESET && err != ECONNABORTED)
		return;
	int64_t now = cr_health_now();
	if (lane->health & CR_H_EJECT)
		cr_health_addr_result(lane, cr_health_host_raw_group(d->port), d, ok, now);
	if (lane->health & CR_H_BREAKER)
		cr_health_result(lane, cr_health_host_addr(d), adm, ok, now);
}

#define KCALL() (kcall ? kcall(sctx) : cr_real.connect(fd, sa, len))

/* The routed connect; KCALL, when not NULL, is the kernel call in place of
 * connect() (a Fast Open send, which connects and sends at once: see
 * cr_route_fastopen). */
static long route(int fd, const struct sockaddr *sa, socklen_t len, ssize_t (*kcall)(void *),
		  void *sctx)
{
	struct cr_dest d;
	struct cr_fdinfo old;
	int proto = 0, flags, saved = errno, unmatched = 0;
	long r;
	socklen_t pl = sizeof(proto);
	uint64_t ino;
	uint32_t slot = CR_SLOT_NONE;

	int raw = atomic_load_explicit(&cr_route_raw, memory_order_relaxed);
	if (raw & CR_RAW_KICK) {
		atomic_fetch_and(&cr_route_raw, ~CR_RAW_KICK);
		cr_kick();
	}
	if (!(raw & CR_RAW_WORK) || cr_dest_from_sockaddr(&d, sa, len) != 0)
		return KCALL();
	if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &pl) != 0 || proto != IPPROTO_TCP ||
	    in_vfork_child()) {
		errno = saved;
		return KCALL();
	}
	ino = cr_fd_inode(fd);
	if (cr_fdtab_peek(fd, &old)) {
		if (old.ino == ino) { /* connect again on a socket we routed */
			if (!kcall && cr_route_again0(fd)) {
				errno = saved;
				return 0;
			}
			return KCALL();
		}
		/* The fd was closed behind our back and reused: settle it. */
		if (cr_fdtab_take(fd, &old))
			cr_route_release_fd(fd, &old, NULL);
	}

	/* A reference, not a peek: the connect may block for a long time
	 * and a reload must not free the lane under it. */
	const struct cr_config *cfg = cr_cfgref_acquire();
	if (!cfg) {
		errno = saved;
		return KCALL();
	}
	const char *key = cr_key_resolve(cfg);
	const struct cr_lane *lane = cr_lane_select(cfg, key, &d, &unmatched);
	cr_notice_lane(lane, key, unmatched);
	if (lane->passthrough) {
		cr_cfgref_release(cfg);
		errno = saved;
		return KCALL();
	}
	cr_kick();
	/* From here the call may block (a limit queue, a connect): a handler may
	 * siglongjmp out of it. The guard remembers the mask to tell that apart
	 * from a handler's nested call (lib/base.h). */
	cr_guard_record_mask();
	if (unmatched && strcmp(key, "default") != 0)
		cr_m_unmatched();

	flags = fcntl(fd, F_GETFL);
	if (flags < 0)
		flags = 0;
	int nonblock = (flags & O_NONBLOCK) != 0;
	if (__builtin_expect(lane->health != 0, 0) && health_refuse(lane, key, &d, cfg) != 0)
		return -1;
	int warm = !kcall && cr_warm_lane_has_pools(lane);
	if (warm) {
		int ret;
		cr_warm_kick();
		uint64_t tw = lane->alog_on ? cr_now_ns() : 0;
		if (serve_warm(fd, sa->sa_family, lane, &d, ino, flags, &ret)) {
			int e = ret == 0 ? saved : errno;
			cr_warm_note(lane, &d, 0);
			/* A warm socket is connected: a success (a half-open
			 * breaker's probe must report, or it never closes). */
			if (__builtin_expect(lane->health != 0, 0))
				health_note(fd, ino, lane, &d, 0, 0);
			cr_alog_connect(lane, key, &d, 0, (int64_t)(cr_now_ns() - tw), 0,
					CR_ALOG_F_WARM);
			cr_cfgref_release(cfg);
			errno = e;
			return ret;
		}
	}
	cr_sockopt_apply(fd, lane, sa->sa_family, 1);

	uint64_t waited = 0;
	if (lane->max_conns_per_host > 0) {
		slot = cr_limit_slot(lane->id, &d);
		/* Ready warm sockets hold units too: one that cannot serve this
		 * connect (bound, epoll-registered, ...) gives its unit up rather
		 * than starve it. */
		if (warm && cr_limit_inuse(slot) >= lane->max_conns_per_host)
			cr_warm_evict(lane, &d);
		long wait_ms = nonblock ? 0 : lane->queue_timeout_ms;
		if (wait_ms > 0)
			cr_m_queued(lane->id, 1);
		int rc;
		if (!warm) {
			rc = cr_limit_acquire(slot, lane->max_conns_per_host, wait_ms, &waited);
		} else {
			/* A unit freed while we wait may be taken by the refill
			 * for a warm socket (it stands back only once we wait):
			 * wait in short steps, and between them give any warm
			 * socket that became ready back to this connect. */
			long left = wait_ms;
			for (int steps = 0;; steps++) {
				long step = left > 10 ? 10 : left;
				uint64_t w = 0;
				rc = cr_limit_acquire(slot, lane->max_conns_per_host, step, &w);
				waited += w;
				if (rc == 0 || left <= step || steps > 100000)
					break;
				left -= step;
				cr_warm_evict(lane, &d);
			}
		}
		if (wait_ms > 0)
			cr_m_queued(lane->id, -1);
		if (waited)
			cr_m_queue_wait(lane->id, waited);
		if (rc != 0) {
			cr_m_overflow(lane->id);
			cr_notice_refused(lane, &d, nonblock);
			cr_logmsg(CR_LL_DEBUG, "lane %s: connect refused at limit %ld (%s)",
				  lane->name, lane->max_conns_per_host,
				  nonblock ? "non-blocking" : "queue timeout");
			cr_alog_connect(lane, key, &d, waited, -1, nonblock ? EAGAIN : ETIMEDOUT,
					CR_ALOG_F_OVERFLOW);
			cr_cfgref_release(cfg);
			errno = nonblock ? EAGAIN : ETIMEDOUT;
			return -1;
		}
	}

	uint64_t t0 = cr_now_ns();
	/* The unit belongs to the fd before any wait: whatever happens to this
	 * call (a siglongjmp out of the connect), the app's close of the fd
	 * gives it back, or the reaper finds it (docs/INTERNALS.md, "Raw
	 * connect"). */
	struct cr_fdinfo info = {
		.slot = slot, .lane = lane->id, .flags = CR_FDF_ROUTED, .ino = ino};
	int tracked = cr_fdtab_put(fd, &info) == 0;
	errno = saved;
	if (kcall) {
		r = kcall(sctx);
	} else if (!nonblock && lane->connect_timeout_ms > 0) {
		long h = cr_deadline_arm(fd, ino,
					 t0 + (uint64_t)lane->connect_timeout_ms * 1000000ull);
		if (h >= 0) {
			/* The kernel's own blocking connect: its signal and
			 * SO_SNDTIMEO semantics are the app's. */
			r = cr_real.connect(fd, sa, len);
			int ce = errno;
			if (cr_deadline_disarm(h)) {
				r = -1;
				ce = ETIMEDOUT;
			}
			errno = ce;
		} else {
			r = timed_connect(fd, sa, len, flags, lane->connect_timeout_ms);
		}
	} else {
		r = cr_real.connect(fd, sa, len);
	}
	int e = r >= 0 ? saved : errno; /* errno untouched on success */

	/* EINPROGRESS/EINTR: the kernel goes on connecting; the socket holds
	 * its unit (if any) until closed. Every routed socket is tracked, so
	 * its close is counted. */
	int open = r >= 0 || e == EINPROGRESS || e == EINTR;
	uint64_t took = r >= 0 || !nonblock ? cr_now_ns() - t0 : 0;
	cr_m_conn_opened(lane->id, took, open);
	if (warm && open)
		cr_warm_note(lane, &d, took ? took : 1); /* nonzero: a cold connect */
	if (!tracked) {
		cr_limit_release(slot); /* untrackable fd: do not leak the unit */
		if (open)
			cr_m_conn_closed(lane->id);
	} else if (!open) {
		struct cr_fdinfo back;
		/* Failed: the unit goes back, unless a racing close (another
		 * thread's) took the entry and released it already. */
		if (cr_fdtab_take(fd, &back))
			cr_limit_release(back.slot);
	}
	if (__builtin_expect(lane->health != 0, 0))
		health_note(fd, ino, lane, &d, r, e);
	cr_alog_connect(lane, key, &d, waited, r == 0 || !nonblock ? (int64_t)took : -1,
			r == 0 ? 0 : e, 0);
	cr_cfgref_release(cfg);
	errno = e;
	return r;
}

#undef KCALL

int cr_route_connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	return (int)route(fd, sa, len, NULL, NULL);
}

ssize_t cr_route_fastopen(int fd, const struct sockaddr *sa, socklen_t len,
			  ssize_t (*kcall)(void *), void *ctx)
{
	int saved = errno;
	/* Only a socket the kernel has never connected: on any other one the
	 * call is a plain send (or the kernel's EISCONN/EALREADY). */
	if (!sa || in_vfork_child() || !never_connected(fd)) {
		errno = saved;
		return kcall(ctx);
	}
	errno = saved;
	return route(fd, sa, len, kcall, ctx);
}

void cr_route_close_begin(int fd, struct cr_closing *c)
{
	c->fd = fd;
	c->tracked = !in_vfork_child() && cr_fdtab_take(fd, &c->info);
	if (__builtin_expect(c->tracked && (c->info.flags & CR_FDF_HPEND), 0)) {
		/* How its non-blocking connect ended, while the socket is open. */
		const struct cr_config *cfg = cr_cfgref_acquire();
		cr_health_pending_settle(fd, c->info.ino, cfg);
		if (cfg)
			cr_cfgref_release(cfg);
	}
}

void cr_route_close_end(struct cr_closing *c, int ok)
{
	if (!c->tracked)
		return;
	if (ok) {
		cr_route_release_fd(c->fd, &c->info, NULL);
		return;
	}
	/* The real call failed and the fd is still open (EBADF cannot happen
	 * for a tracked fd unless closed behind our back; then the inode check
	 * settles it later): put the entry back. */
	if (cr_fdtab_put(c->fd, &c->info) != 0)
		cr_route_release_fd(c->fd, &c->info, NULL);
}

int cr_route_close_fd(int fd)
{
	struct cr_closing c;
	cr_route_close_begin(fd, &c);
	int r = cr_real.close(fd);
	int e = errno;
	cr_route_close_end(&c, 1);
	errno = e;
	return r;
}

void cr_route_forget_range(unsigned first, unsigned last)
{
	if (in_vfork_child())
		return;
	cr_fdtab_take_range(first, last, cr_route_release_fd, NULL);
}
