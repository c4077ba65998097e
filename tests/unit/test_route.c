/* The raw-socket router (lib/route.c) driven directly, without LD_PRELOAD:
 * the pieces cr_engine_init wires (cr_real pointed at libc, the fd-release
 * registration, the limit table with its reaper) and a config published
 * through cr_engine_publish; connects go to a listener made by the test. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "engine.h"
#include "fdtab.h"
#include "real.h"
#include "key.h"
#include "limit.h"
#include "route.h"

static int lfd = -1;
static int lport;

/* What cr_engine_init wires before it publishes. */
static void wire(void)
{
	cr_real_resolve(); /* libc's, from a test binary */
	cr_route_set_owner();
	cr_fdtab_set_release(cr_route_release_fd);
	cr_assert_eq(cr_limits_init(256, cr_route_reap, NULL), 0);
	cr_key_set_default("default");
}

static void publish(const char *text)
{
	struct cr_config *cfg = calloc(1, sizeof(*cfg));
	struct cr_diag *d = calloc(1, sizeof(*d));
	cr_assert_not_null(cfg);
	cr_assert_not_null(d);
	cr_assert_eq(cr_config_load_string(text, "route.conf", cfg, d), 0, "%s", d->msg[0]);
	free(d);
	cr_engine_publish(cfg);
}

static int listener(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(listen(fd, 64), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &al), 0);
	lport = ntohs(a.sin_port);
	return fd;
}

static void setup(void)
{
	wire();
	lfd = listener();
}

static void teardown(void)
{
	if (lfd >= 0)
		close(lfd);
}

static struct sockaddr_in to_port(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	return a;
}

static int geti(int fd, int level, int name)
{
	int v = -12345;
	socklen_t l = sizeof(v);
	if (getsockopt(fd, level, name, &v, &l) != 0)
		return -12345;
	return v;
}

/* A non-blocking routed connect: 0 or -1/EINPROGRESS means "going". */
static int nb_connect(int fd, int *err)
{
	struct sockaddr_in a = to_port(lport);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	errno = 0;
	int r = cr_route_connect(fd, (struct sockaddr *)&a, sizeof(a));
	*err = r == 0 ? 0 : errno;
	return r;
}

TestSuite(route, .init = setup, .fini = teardown);

Test(route, lane_socket_options_applied_errno_untouched)
{
	publish("[lane default]\nnodelay = on\nkeepalive = 31s\nkeepalive_interval = 7s\n"
		"keepalive_count = 4\ntos = 0x10\npriority = 3\nconnect_timeout = 2s\n");
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_geq(fd, 0);
	struct sockaddr_in a = to_port(lport);
	errno = 4242;
	int r = cr_route_connect(fd, (struct sockaddr *)&a, sizeof(a));
	cr_assert_eq(r, 0, "blocking routed connect: %s", strerror(errno));
	cr_expect_eq(errno, 4242, "errno untouched on success");
	cr_expect_eq(geti(fd, IPPROTO_TCP, TCP_NODELAY), 1);
	cr_expect_eq(geti(fd, SOL_SOCKET, SO_KEEPALIVE), 1);
	cr_expect_eq(geti(fd, IPPROTO_TCP, TCP_KEEPIDLE), 31);
	cr_expect_eq(geti(fd, IPPROTO_TCP, TCP_KEEPINTVL), 7);
	cr_expect_eq(geti(fd, IPPROTO_TCP, TCP_KEEPCNT), 4);
	cr_expect_eq(geti(fd, IPPROTO_IP, IP_TOS), 0x10);
	cr_expect_eq(geti(fd, SOL_SOCKET, SO_PRIORITY), 3);
	/* The blocking socket stays blocking (the timed connect restores it). */
	cr_expect_eq(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
	struct cr_fdinfo info;
	cr_expect(cr_fdtab_peek(fd, &info), "a routed socket is tracked");
	cr_expect(info.flags & CR_FDF_ROUTED);
	errno = 4343;
	cr_expect_eq(cr_route_close_fd(fd), 0);
	cr_expect_eq(errno, 4343, "close: errno untouched on success");
	cr_expect_not(cr_fdtab_peek(fd, &info), "the close took the entry");
	cr_expect_not(cr_fdtab_any());
}

Test(route, passthrough_lane_changes_nothing)
{
	/* Built-in style: the default lane applies nothing. */
	publish("[lane other]\nnodelay = on\n");
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = to_port(lport);
	errno = 77;
	cr_assert_eq(cr_route_connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_expect_eq(errno, 77);
	cr_expect_eq(geti(fd, IPPROTO_TCP, TCP_NODELAY), 0, "the other lane's option leaks");
	cr_expect_not(cr_fdtab_any(), "a pass-through connect is not tracked");
	close(fd);
}

Test(route, limit_one_nonblocking_second_gets_eagain_until_close)
{
	publish("[lane default]\nmax_conns_per_host = 1\nqueue_timeout = 200ms\n");
	int a = socket(AF_INET, SOCK_STREAM, 0), b = socket(AF_INET, SOCK_STREAM, 0),
	    c = socket(AF_INET, SOCK_STREAM, 0);
	int err;
	int r = nb_connect(a, &err);
	cr_assert(r == 0 || err == EINPROGRESS, "first connect: %s", strerror(err));
	r = nb_connect(b, &err);
	cr_expect_eq(r, -1);
	cr_expect_eq(err, EAGAIN, "second connect at the limit: %s", strerror(err));
	struct cr_fdinfo info;
	cr_expect_not(cr_fdtab_peek(b, &info), "a refused connect is not tracked");
	cr_expect_eq(cr_route_close_fd(a), 0);
	r = nb_connect(c, &err);
	cr_expect(r == 0 || err == EINPROGRESS, "after the close the unit is free: %s", strerror(err));
	cr_route_close_fd(b);
	cr_route_close_fd(c);
	cr_expect_not(cr_fdtab_any());
}

Test(route, limit_blocking_waits_queue_timeout_then_etimedout)
{
	publish("[lane default]\nmax_conns_per_host = 1\nqueue_timeout = 150ms\n");
	int a = socket(AF_INET, SOCK_STREAM, 0), b = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = to_port(lport);
	cr_assert_eq(cr_route_connect(a, (struct sockaddr *)&sa, sizeof(sa)), 0);
	int64_t t0 = cr_now_ms();
	errno = 0;
	cr_expect_eq(cr_route_connect(b, (struct sockaddr *)&sa, sizeof(sa)), -1);
	cr_expect_eq(errno, ETIMEDOUT);
	int64_t took = cr_now_ms() - t0;
	cr_expect(took >= 140 && took < 3000, "waited %lld ms", (long long)took);
	cr_route_close_fd(a);
	close(b);
}

Test(route, refused_connect_gives_the_unit_back_with_the_kernels_errno)
{
	publish("[lane default]\nmax_conns_per_host = 1\nqueue_timeout = 100ms\n");
	/* A port nobody listens on: the listener's, after closing it. */
	int dead = lport;
	close(lfd);
	lfd = -1;
	struct sockaddr_in sa = to_port(dead);
	for (int i = 0; i < 3; i++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		errno = 0;
		cr_expect_eq(cr_route_connect(fd, (struct sockaddr *)&sa, sizeof(sa)), -1);
		cr_expect_eq(errno, ECONNREFUSED, "connect %d: %s (a leaked unit would give ETIMEDOUT)", i,
			     strerror(errno));
		close(fd);
	}
	cr_expect_not(cr_fdtab_any());
}

Test(route, udp_passes_through)
{
	publish("[lane default]\nmax_conns_per_host = 1\nqueue_timeout = 100ms\npriority = 4\n");
	struct sockaddr_in sa = to_port(lport);
	int u[3];
	for (int i = 0; i < 3; i++) {
		u[i] = socket(AF_INET, SOCK_DGRAM, 0);
		errno = 99;
		cr_expect_eq(cr_route_connect(u[i], (struct sockaddr *)&sa, sizeof(sa)), 0,
			     "udp connect %d: %s", i, strerror(errno));
		cr_expect_eq(errno, 99, "errno untouched");
		cr_expect_neq(geti(u[i], SOL_SOCKET, SO_PRIORITY), 4, "lane option on a UDP socket");
	}
	cr_expect_not(cr_fdtab_any(), "UDP sockets are not tracked nor limited");
	/* And a unix socket's connect is the kernel's, errno included. */
	int x = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un un = {.sun_family = AF_UNIX};
	strcpy(un.sun_path, "/nonexistent/cr.sock");
	errno = 0;
	cr_expect_eq(cr_route_connect(x, (struct sockaddr *)&un, sizeof(un)), -1);
	cr_expect_eq(errno, ENOENT);
	for (int i = 0; i < 3; i++)
		close(u[i]);
	close(x);
}

Test(route, connect_again_on_a_routed_socket_goes_to_the_kernel)
{
	publish("[lane default]\nmax_conns_per_host = 1\nqueue_timeout = 100ms\n");
	int fd = socket(AF_INET, SOCK_STREAM, 0), err;
	int r = nb_connect(fd, &err);
	cr_assert(r == 0 || err == EINPROGRESS);
	struct pollfd p = {.fd = fd, .events = POLLOUT};
	cr_assert_eq(poll(&p, 1, 3000), 1);
	/* Further connects are not counted against the limit of 1: the
	 * kernel answers (0 once for the completed connect, then EISCONN),
	 * never the lane (EAGAIN). */
	r = nb_connect(fd, &err);
	cr_expect(r == 0 || err == EISCONN, "%s", strerror(err));
	r = nb_connect(fd, &err);
	cr_expect_eq(r, -1);
	cr_expect_eq(err, EISCONN, "%s", strerror(err));
	cr_route_close_fd(fd);
}

Test(route, missed_close_is_settled_on_fd_reuse)
{
	publish("[lane default]\nmax_conns_per_host = 1\nqueue_timeout = 100ms\n");
	int fd = socket(AF_INET, SOCK_STREAM, 0), err;
	int r = nb_connect(fd, &err);
	cr_assert(r == 0 || err == EINPROGRESS);
	close(fd); /* behind the router's back */
	int again = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_eq(again, fd, "the number is reused");
	r = nb_connect(again, &err);
	cr_expect(r == 0 || err == EINPROGRESS, "the stale entry's unit was given back: %s", strerror(err));
	cr_route_close_fd(again);
	cr_expect_not(cr_fdtab_any());
}
