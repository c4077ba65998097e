/* connroute: what the socket hooks do once they decided to look closer.
 * Every function here has the errno contract of the call it stands for:
 * errno untouched on success, exactly the real call's (or the documented
 * lane error) on failure. */
#ifndef CR_ROUTE_H
#define CR_ROUTE_H

#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>

#include "fdtab.h"
#include "sockopt.h"
#include <stdatomic.h>

/* The one load a non-routed connect() pays; 0 = nothing to do. Set by the
 * engine at each publish (and in a fork child):
 * CR_RAW_WORK: some lane has work for a raw connect();
 * CR_RAW_KICK: the process has a config file (or a metrics endpoint) and
 * its background thread may not run yet: the next connect starts it, even
 * one that no lane routes, so the file is watched (then the bit clears). */
extern atomic_int cr_route_raw;
#define CR_RAW_WORK 1
#define CR_RAW_KICK 2

/* connect() for a socket the engine may route: TCP over IPv4/IPv6 only,
 * everything else goes straight to cr_real.connect. */
int cr_route_connect(int fd, const struct sockaddr *sa, socklen_t len);

/* sendto/sendmsg with MSG_FASTOPEN: connects and sends in one call. On a
 * TCP socket the kernel has never connected, the same routing as connect()
 * (lane options, limit, metrics, fd tracking) with KCALL(CTX) as the kernel
 * call; no warm socket (it would be connected already: EISCONN) and no
 * connect_timeout (its shutdown would make the blocked send raise SIGPIPE).
 * Otherwise just KCALL(CTX). Returns what KCALL returned, errno as
 * cr_route_connect's contract. */
ssize_t cr_route_fastopen(int fd, const struct sockaddr *sa, socklen_t len,
			  ssize_t (*kcall)(void *), void *ctx);

/* A warm socket handed out for a connect that the kernel would answer
 * with 0 next time (a non-blocking caller's re-connect; libcurl's connect on
 * a socket from its opensocket callback): if FD is one, clears the mark and
 * returns 1 (answer 0 without calling the kernel). */
int cr_route_again0(int fd);

/* Called with the fd's entry already taken (see fdtab.h): gives back what
 * the fd held. */
void cr_route_release_fd(int fd, const struct cr_fdinfo *info, void *ctx);

/* Bookkeeping around the real close-family calls. Each *_begin takes the
 * entries (before the real call), each *_end releases or restores them. */
struct cr_closing {
	int tracked;
	int fd;
	struct cr_fdinfo info;
};
void cr_route_close_begin(int fd, struct cr_closing *c);
void cr_route_close_end(struct cr_closing *c, int ok);

/* Records this process as the owner of the accounting (init, fork child):
 * calls from a vfork child (same memory, other pid) leave it alone. */
void cr_route_set_owner(void);

/* close() with the bookkeeping, never through the hook (for callbacks the
 * engine gives libcurl). */
int cr_route_close_fd(int fd);

/* close_range/closefrom: takes and releases every tracked fd in range. */
void cr_route_forget_range(unsigned first, unsigned last);

/* The reaper for cr_limits_init. */
void cr_route_reap(uint32_t slot, void *ctx);

#endif
