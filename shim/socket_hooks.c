/* connroute: connect() and the close family.
 *
 * Fast paths (docs/INTERNALS.md, "State machine"): a connect() with nothing to route costs one
 * relaxed load (cr_route_raw), a close() of an untracked fd one relaxed load
 * (cr_fdtab_count), each then a tail call into libc: no locks, no
 * allocation, no syscalls of our own. */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <stdatomic.h>
#include <unistd.h>

#include "engine.h"
#include "fdtab.h"
#include "route.h"
#include "shim.h"
#include "sockrec.h"
#include "warm.h"
#include "sys.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef CLOSE_RANGE_UNSHARE
#define CLOSE_RANGE_UNSHARE (1U << 1)
#endif

static inline int ret_errno(long r)
{
	if (r < 0) {
		errno = (int)-r;
		return -1;
	}
	return (int)r;
}

/* The routed connect this thread is in (its frame and the signal mask it
 * began with), NULL when the guard was set by someone else (a libcurl
 * perform). A signal handler may siglongjmp out of that connect (out of the
 * kernel's connect or the limit queue: docs/INTERNALS.md, "Raw connect"),
 * leaving the guard set; without the check below every later connect and
 * libcurl call of the thread would go unrouted. */
static __thread const char *routing_frame;
static __thread sigset_t routing_mask;

/* The guard is set and routing_frame is ours: is that routed connect still
 * running below us (we are in a handler that interrupted it), or was it
 * left by a jump? A handler runs deeper on the same stack, or on its
 * alternate stack, and with its signal blocked (unless SA_NODEFER); a
 * siglongjmp back into the app restores the app's mask. */
__attribute__((noinline)) int cr_shim_guard_left(void)
{
	char here;
	int saved = errno, left;
	if (!routing_frame)
		return 0;
	if ((uintptr_t)&here >= (uintptr_t)routing_frame) {
		stack_t ss;
		left = !(sigaltstack(NULL, &ss) == 0 && (ss.ss_flags & SS_ONSTACK));
	} else {
		sigset_t now;
		memset(&now, 0, sizeof(now));
		left = pthread_sigmask(SIG_SETMASK, NULL, &now) == 0 &&
		       memcmp(&now, &routing_mask, sizeof(now)) == 0;
	}
	errno = saved;
	if (left) {
		routing_frame = NULL;
		cr_in_shim = 0;
	}
	return left;
}

__attribute__((noinline)) static int connect_slow(int (*fn)(int, const struct sockaddr *, socklen_t),
						   int fd, const struct sockaddr *sa, socklen_t len)
{
	char here;
	if (cr_in_shim && !cr_shim_guard_left()) {
		/* libcurl connecting a warm socket we gave it (libcurl 7.88
		 * ignores CURL_SOCKOPT_ALREADY_CONNECTED, curl issue 10626). */
		if (cr_fdtab_any() && cr_route_again0(fd))
			return 0;
		return fn(fd, sa, len);
	}
	/* cr_route_connect calls cr_real.connect, which is libc's connect for
	 * both names: __connect is an alias of the same code. */
	int saved = errno;
	memset(&routing_mask, 0, sizeof(routing_mask));
	(void)pthread_sigmask(SIG_SETMASK, NULL, &routing_mask);
	errno = saved;
	routing_frame = &here;
	cr_in_shim = 1;
	int r = cr_route_connect(fd, sa, len);
	cr_in_shim = 0;
	routing_frame = NULL;
	return r;
}

/* The fast path: nothing routes raw sockets, one load and a tail call. */
static inline int do_connect(int (*fn)(int, const struct sockaddr *, socklen_t), int fd,
			     const struct sockaddr *sa, socklen_t len)
{
	if (__builtin_expect(!fn, 0))
		return ret_errno(cr_sys_connect(fd, sa, len));
	if (__builtin_expect(!atomic_load_explicit(&cr_route_raw, memory_order_relaxed), 1))
		return fn(fd, sa, len);
	return connect_slow(fn, fd, sa, len);
}

HOOK(int, connect, (int fd, const struct sockaddr *sa, socklen_t len))
{
	return do_connect(real.connect, fd, sa, len);
}

HOOK(int, __connect, (int fd, const struct sockaddr *sa, socklen_t len))
{
	return do_connect(real.connect_ ? real.connect_ : real.connect, fd, sa, len);
}

/* Kept out of line so the fast path below stays a load and a tail call. */
__attribute__((noinline)) static int close_tracked(int (*fn)(int), int fd)
{
	struct cr_closing c;
	int r;
	cr_route_close_begin(fd, &c);
	r = fn ? fn(fd) : ret_errno(cr_sys_close(fd));
	/* Linux frees the fd even when close() reports EINTR or EIO: the
	 * unit goes back whatever the result. */
	int e = errno;
	cr_route_close_end(&c, 1);
	errno = e;
	return r;
}

static inline int do_close(int (*fn)(int), int fd)
{
	/* (Pre-connect records need no forgetting here: they are keyed by the
	 * socket's inode, so a later socket on this number never sees them.) */
	if (__builtin_expect(!cr_fdtab_any(), 1))
		return fn ? fn(fd) : ret_errno(cr_sys_close(fd));
	return close_tracked(fn, fd);
}

HOOK(int, close, (int fd))
{
	return do_close(real.close, fd);
}

HOOK(int, __close, (int fd))
{
	return do_close(real.close_ ? real.close_ : real.close, fd);
}

HOOK(int, close_range, (unsigned first, unsigned last, int flags))
{
	int r;
	if (!cr_fdtab_any() || (flags & CLOSE_RANGE_CLOEXEC) ||
	    (flags & ~(int)(CLOSE_RANGE_CLOEXEC | CLOSE_RANGE_UNSHARE)) || first > last)
		return real.close_range ? real.close_range(first, last, flags)
					: ret_errno(cr_sys_close_range(first, last, (unsigned)flags));
	cr_route_forget_range(first, last);
	r = real.close_range ? real.close_range(first, last, flags)
			     : ret_errno(cr_sys_close_range(first, last, (unsigned)flags));
	return r;
}

HOOK(void, closefrom, (int lowfd))
{
	if (cr_fdtab_any() && lowfd >= 0)
		cr_route_forget_range((unsigned)lowfd, ~0u);
	if (real.closefrom) {
		real.closefrom(lowfd);
		return;
	}
	int e = errno;
	(void)cr_sys_close_range(lowfd < 0 ? 0 : (unsigned)lowfd, ~0u, 0);
	errno = e;
}

static int do_dup(int oldfd, int newfd, int flags, int is_dup3)
{
	struct cr_closing c;
	int r;
	if (atomic_load_explicit(&cr_warm_active, memory_order_relaxed) && oldfd != newfd)
		cr_sockrec_shared(oldfd);
	/* dup2(fd, fd) closes nothing. */
	if (!cr_fdtab_any() || oldfd == newfd) {
		if (is_dup3)
			return real.dup3 ? real.dup3(oldfd, newfd, flags)
					 : ret_errno(cr_sys_dup3(oldfd, newfd, flags));
		return real.dup2 ? real.dup2(oldfd, newfd) : ret_errno(cr_sys_dup3(oldfd, newfd, 0));
	}
	cr_route_close_begin(newfd, &c);
	if (is_dup3)
		r = real.dup3 ? real.dup3(oldfd, newfd, flags) : ret_errno(cr_sys_dup3(oldfd, newfd, flags));
	else
		r = real.dup2 ? real.dup2(oldfd, newfd) : ret_errno(cr_sys_dup3(oldfd, newfd, 0));
	int e = errno;
	cr_route_close_end(&c, r >= 0);
	errno = e;
	return r;
}

HOOK(int, dup2, (int oldfd, int newfd))
{
	return do_dup(oldfd, newfd, 0, 0);
}

HOOK(int, dup3, (int oldfd, int newfd, int flags))
{
	return do_dup(oldfd, newfd, flags, 1);
}

/* Recorded only while warm pools exist: a warm socket substituted for this
 * one must carry what the app set on it before connecting. */
HOOK(int, setsockopt, (int fd, int level, int name, const void *val, socklen_t len))
{
	int r = real.setsockopt ? real.setsockopt(fd, level, name, val, len)
				: (int)ret_errno(syscall(SYS_setsockopt, fd, level, name, val, len));
	if (r == 0 && atomic_load_explicit(&cr_warm_active, memory_order_relaxed) && !cr_in_shim) {
		int e = errno;
		cr_sockrec_setsockopt(fd, level, name, val, len);
		errno = e;
	}
	return r;
}

/* An fd registered with epoll before connect is never substituted: dup3
 * would leave the registration on the old file (nginx does this). */
HOOK(int, epoll_ctl, (int epfd, int op, int fd, struct epoll_event *ev))
{
	int r = real.epoll_ctl ? real.epoll_ctl(epfd, op, fd, ev)
			       : (int)ret_errno(syscall(SYS_epoll_ctl, epfd, op, fd, ev));
	if (r == 0 && op == EPOLL_CTL_ADD && atomic_load_explicit(&cr_warm_active, memory_order_relaxed)) {
		int e = errno;
		cr_sockrec_epoll_add(fd);
		errno = e;
	}
	return r;
}

/* A duplicated socket is never substituted: the other fd would keep the old,
 * never-connected socket. */
HOOK(int, dup, (int fd))
{
	int r = real.dup ? real.dup(fd) : (int)ret_errno(syscall(SYS_dup, fd));
	if (r >= 0 && atomic_load_explicit(&cr_warm_active, memory_order_relaxed)) {
		int e = errno;
		cr_sockrec_shared(fd);
		errno = e;
	}
	return r;
}
