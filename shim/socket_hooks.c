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
#include <stdatomic.h>
#include <unistd.h>

#include "base.h"
#include "engine.h"
#include "fdtab.h"
#include "real.h"
#include "route.h"
#include "shim.h"
#include "sockrec.h"
#include "warm.h"

__attribute__((noinline)) static int connect_slow(int (*fn)(int, const struct sockaddr *,
							    socklen_t),
						  int fd, const struct sockaddr *sa, socklen_t len)
{
	void *frame = __builtin_frame_address(0);
	if (cr_guard_held(frame)) {
		/* libcurl connecting a warm socket we gave it (libcurl 7.88
		 * ignores CURL_SOCKOPT_ALREADY_CONNECTED, curl issue 10626). */
		if (cr_fdtab_any() && cr_route_again0(fd))
			return 0;
		return fn(fd, sa, len);
	}
	/* cr_route_connect calls cr_real.connect, which is libc's connect for
	 * both names: __connect is an alias of the same code. */
	cr_guard_set(frame, 0); /* the mask: cr_route_*, once it routes */
	int r = cr_route_connect(fd, sa, len);
	cr_guard_clear();
	return r;
}

/* The fast path: nothing routes raw sockets, one load and a tail call. */
static inline int do_connect(int (*fn)(int, const struct sockaddr *, socklen_t), int fd,
			     const struct sockaddr *sa, socklen_t len)
{
	if (__builtin_expect(!atomic_load_explicit(&cr_route_raw, memory_order_relaxed), 1))
		return fn(fd, sa, len);
	return connect_slow(fn, fd, sa, len);
}

HOOK(int, connect, (int fd, const struct sockaddr *sa, socklen_t len))
{
	return do_connect(cr_real.connect, fd, sa, len);
}

HOOK(int, __connect, (int fd, const struct sockaddr *sa, socklen_t len))
{
	return do_connect(cr_real.__connect, fd, sa, len);
}

/* Kept out of line so the fast path below stays a load and a tail call. */
__attribute__((noinline)) static int close_tracked(int (*fn)(int), int fd)
{
	struct cr_closing c;
	int r;
	cr_route_close_begin(fd, &c);
	r = fn(fd);
	/* Linux frees the fd even when close() reports EINTR or EIO: the
	 * unit goes back whatever the result. */
	SAVE_ERRNO(cr_route_close_end(&c, 1));
	return r;
}

static inline int do_close(int (*fn)(int), int fd)
{
	/* (Pre-connect records need no forgetting here: they are keyed by the
	 * socket's inode, so a later socket on this number never sees them.) */
	if (__builtin_expect(!cr_fdtab_any(), 1))
		return fn(fd);
	return close_tracked(fn, fd);
}

HOOK(int, close, (int fd))
{
	return do_close(cr_real.close, fd);
}

HOOK(int, __close, (int fd))
{
	return do_close(cr_real.__close, fd);
}

/* Only a plain close_range releases units. CLOEXEC closes nothing now.
 * UNSHARE first gives the caller a private copy of the fd table and closes
 * the range in that copy only: threads sharing the old table still hold the
 * sockets, so the units stay taken (docs/INTERNALS.md, "fd ownership").
 * Where nobody shared it the fds are really gone: the inode check finds them. */
HOOK(int, close_range, (unsigned first, unsigned last, int flags))
{
	if (flags == 0 && first <= last && cr_fdtab_any())
		cr_route_forget_range(first, last);
	return cr_real.close_range(first, last, flags);
}

HOOK(void, closefrom, (int lowfd))
{
	if (cr_fdtab_any() && lowfd >= 0)
		cr_route_forget_range((unsigned)lowfd, ~0u);
	cr_real.closefrom(lowfd);
}

static int do_dup(int oldfd, int newfd, int flags, int is_dup3)
{
	struct cr_closing c;
	int r;
	if (atomic_load_explicit(&cr_warm_active, memory_order_relaxed) && oldfd != newfd)
		cr_sockrec_shared(oldfd);
	/* dup2(fd, fd) closes nothing. */
	if (!cr_fdtab_any() || oldfd == newfd)
		return is_dup3 ? cr_real.dup3(oldfd, newfd, flags) : cr_real.dup2(oldfd, newfd);
	cr_route_close_begin(newfd, &c);
	r = is_dup3 ? cr_real.dup3(oldfd, newfd, flags) : cr_real.dup2(oldfd, newfd);
	SAVE_ERRNO(cr_route_close_end(&c, r >= 0));
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
	int r = cr_real.setsockopt(fd, level, name, val, len);
	if (r == 0 && atomic_load_explicit(&cr_warm_active, memory_order_relaxed) &&
	    !cr_guard_held(__builtin_frame_address(0)))
		SAVE_ERRNO(cr_sockrec_setsockopt(fd, level, name, val, len));
	return r;
}

/* An fd registered with epoll before connect is never substituted: dup3
 * would leave the registration on the old file (nginx does this). */
HOOK(int, epoll_ctl, (int epfd, int op, int fd, struct epoll_event *ev))
{
	int r = cr_real.epoll_ctl(epfd, op, fd, ev);
	if (r == 0 && op == EPOLL_CTL_ADD &&
	    atomic_load_explicit(&cr_warm_active, memory_order_relaxed))
		SAVE_ERRNO(cr_sockrec_epoll_add(fd));
	return r;
}

/* A duplicated socket is never substituted: the other fd would keep the old,
 * never-connected socket. */
HOOK(int, dup, (int fd))
{
	int r = cr_real.dup(fd);
	if (r >= 0 && atomic_load_explicit(&cr_warm_active, memory_order_relaxed))
		SAVE_ERRNO(cr_sockrec_shared(fd));
	return r;
}
