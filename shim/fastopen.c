/* connroute: TCP Fast Open. sendto()/sendmsg() with MSG_FASTOPEN connect an
 * unconnected TCP socket (and send in its SYN) without any connect(): they
 * take connect()'s routing (lib/route.c, cr_route_fastopen), the kernel call
 * being the app's own send, so the data, the result and errno are the
 * kernel's. Every other send is one flag test and a tail call into libc
 * (docs/INTERNALS.md, "TCP Fast Open"). */
#include <stdatomic.h>
#include <sys/socket.h>

#include "base.h"
#include "engine.h"
#include "real.h"
#include "route.h"
#include "shim.h"

struct sendto_call {
	int fd;
	const void *buf;
	size_t n;
	int flags;
	const struct sockaddr *sa;
	socklen_t len;
};

static ssize_t call_sendto(void *p)
{
	const struct sendto_call *c = p;
	return cr_real.sendto(c->fd, c->buf, c->n, c->flags, c->sa, c->len);
}

struct sendmsg_call {
	int fd;
	const struct msghdr *msg;
	int flags;
};

static ssize_t call_sendmsg(void *p)
{
	const struct sendmsg_call *c = p;
	return cr_real.sendmsg(c->fd, c->msg, c->flags);
}

/* As connect_slow in shim/socket_hooks.c: nothing routes raw sockets, or a
 * call of ours is on the stack (the recursion guard): straight through. */
__attribute__((noinline)) static ssize_t fastopen(int fd, const struct sockaddr *sa, socklen_t len,
						  ssize_t (*kcall)(void *), void *ctx)
{
	void *frame = __builtin_frame_address(0);
	if (!atomic_load_explicit(&cr_route_raw, memory_order_relaxed) || cr_guard_held(frame))
		return kcall(ctx);
	cr_guard_set(frame, 0); /* the mask: cr_route_*, once it routes */
	ssize_t r = cr_route_fastopen(fd, sa, len, kcall, ctx);
	cr_guard_clear();
	return r;
}

HOOK(ssize_t, sendto,
     (int fd, const void *buf, size_t n, int flags, const struct sockaddr *sa, socklen_t len))
{
	if (__builtin_expect(!(flags & MSG_FASTOPEN), 1))
		return cr_real.sendto(fd, buf, n, flags, sa, len);
	struct sendto_call c = {fd, buf, n, flags, sa, len};
	return fastopen(fd, sa, len, call_sendto, &c);
}

HOOK(ssize_t, sendmsg, (int fd, const struct msghdr *msg, int flags))
{
	if (__builtin_expect(!(flags & MSG_FASTOPEN), 1))
		return cr_real.sendmsg(fd, msg, flags);
	struct sendmsg_call c = {fd, msg, flags};
	return fastopen(fd, msg ? (const struct sockaddr *)msg->msg_name : NULL,
			msg ? msg->msg_namelen : 0, call_sendmsg, &c);
}
