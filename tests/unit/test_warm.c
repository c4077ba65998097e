/* Warm pools (lib/warm.c) driven directly, without LD_PRELOAD: a lane with
 * `prewarm = 127.0.0.1:PORT*N` pointing at a listener made by the test, the
 * refill thread started with cr_warm_kick. Every wait is bounded (3 s). */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine.h"
#include "fdtab.h"
#include "real.h"
#include "key.h"
#include "limit.h"
#include "route.h"
#include "warm.h"

static int lfd = -1;
static int lport;

static void setup(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	cr_real_resolve(); /* libc's, from a test binary */
	cr_route_set_owner();
	cr_fdtab_set_release(cr_route_release_fd);
	cr_assert_eq(cr_limits_init(256, cr_route_reap, NULL), 0);
	cr_key_set_default("default");
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	cr_assert_geq(lfd, 0);
	cr_assert_eq(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(listen(lfd, 64), 0);
	cr_assert_eq(getsockname(lfd, (struct sockaddr *)&a, &al), 0);
	lport = ntohs(a.sin_port);
}

static void teardown(void)
{
	if (lfd >= 0)
		close(lfd);
}

TestSuite(warm, .init = setup, .fini = teardown);

/* Publishes a config whose lane "w" prewarms COUNT sockets to the listener
 * (extra: more lines for lane w); returns lane w of the published config. */
static const struct cr_lane *publish_warm(int count, const char *extra)
{
	char text[512];
	snprintf(text, sizeof(text), "[lane w]\nprewarm = 127.0.0.1:%d*%d\n%s", lport, count, extra ? extra : "");
	struct cr_config *cfg = calloc(1, sizeof(*cfg));
	struct cr_diag *d = calloc(1, sizeof(*d));
	cr_assert_not_null(cfg);
	cr_assert_not_null(d);
	cr_assert_eq(cr_config_load_string(text, "warm.conf", cfg, d), 0, "%s", d->msg[0]);
	free(d);
	cr_engine_publish(cfg);
	const struct cr_config *cur = cr_cfgref_current();
	int i = cr_config_find_lane(cur, "w");
	cr_assert_geq(i, 0);
	return &cur->lanes[i];
}

static struct cr_dest listener_dest(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)lport),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct cr_dest d;
	cr_assert_eq(cr_dest_from_sockaddr(&d, &a, sizeof(a)), 0);
	return d;
}

/* Warm sockets the engine owns now: tracked fds flagged CR_FDF_WARM. */
static int warm_fds(int *out, int max)
{
	int n = 0;
	for (int fd = 0; fd < 8192; fd++) { /* ours live above a floor of at most 4096 */
		struct cr_fdinfo info;
		if (cr_fdtab_peek(fd, &info) && (info.flags & CR_FDF_WARM)) {
			if (n < max && out)
				out[n] = fd;
			n++;
		}
	}
	return n;
}

static int wait_warm_fds(int want, int ms)
{
	int64_t end = cr_now_ms() + ms;
	int n;
	while ((n = warm_fds(NULL, 0)) != want && cr_now_ms() < end)
		usleep(10000);
	return n;
}

static int take_within(const struct cr_lane *l, const struct cr_dest *d, uint32_t *slot, uint64_t *ino,
		       int ms)
{
	int64_t end = cr_now_ms() + ms;
	for (;;) {
		int fd = cr_warm_take(l, d, slot, ino);
		if (fd >= 0 || cr_now_ms() >= end)
			return fd;
		usleep(10000);
	}
}

static int peer_port(int fd)
{
	struct sockaddr_in a;
	socklen_t al = sizeof(a);
	if (getpeername(fd, (struct sockaddr *)&a, &al) != 0)
		return -errno;
	return ntohs(a.sin_port);
}

/* Accepts everything queued on the listener (up to max) within ms. */
static int accept_all(int *out, int max, int want, int ms)
{
	int n = 0;
	int64_t end = cr_now_ms() + ms;
	while (n < max && cr_now_ms() < end) {
		int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (c >= 0) {
			out[n++] = c;
			continue;
		}
		if (n >= want)
			break;
		usleep(10000);
	}
	return n;
}

Test(warm, no_thread_no_pool_take_returns_minus_one)
{
	const struct cr_lane *l = publish_warm(2, NULL);
	struct cr_dest d = listener_dest();
	uint32_t slot;
	uint64_t ino;
	cr_expect(atomic_load(&cr_warm_active), "a prewarm lane makes warm pools active");
	cr_expect_eq(cr_warm_take(l, &d, &slot, &ino), -1, "nothing is prewarmed before a kick");
	usleep(200000);
	cr_expect_eq(warm_fds(NULL, 0), 0, "publishing alone starts no thread");
	cr_expect_eq(cr_warm_evict(l, &d), 0);
}

Test(warm, refill_thread_fills_and_take_gives_a_connected_nonblocking_socket)
{
	const struct cr_lane *l = publish_warm(2, NULL);
	struct cr_dest d = listener_dest();
	cr_warm_kick();
	cr_assert_eq(wait_warm_fds(2, 3000), 2, "the pool fills to its target of 2");
	uint32_t slot = 0;
	uint64_t ino = 0;
	int fd = take_within(l, &d, &slot, &ino, 3000);
	cr_assert_geq(fd, 0);
	cr_expect_eq(peer_port(fd), lport, "its peer is the listener");
	cr_expect(fcntl(fd, F_GETFL) & O_NONBLOCK, "non-blocking");
	cr_expect(fcntl(fd, F_GETFD) & FD_CLOEXEC, "close-on-exec");
	cr_expect_eq(ino, cr_fd_inode(fd), "the inode handed out is the socket's");
	struct cr_fdinfo info;
	cr_expect_not(cr_fdtab_peek(fd, &info), "taken: no longer tracked as the engine's");
	/* The refill thread puts the pool back at its target. */
	cr_expect_eq(wait_warm_fds(2, 3000), 2);
	/* Its data path works: the listener sees the same connection. */
	int acc[8];
	int na = accept_all(acc, 8, 3, 3000);
	cr_expect_eq(na, 3, "2 ready + 1 taken");
	cr_expect_eq(write(fd, "x", 1), 1);
	int seen = 0;
	for (int i = 0; i < na; i++) {
		char c;
		struct pollfd p = {.fd = acc[i], .events = POLLIN};
		if (poll(&p, 1, 200) == 1 && read(acc[i], &c, 1) == 1 && c == 'x')
			seen++;
	}
	cr_expect_eq(seen, 1);
	close(fd);
	cr_limit_release(slot);
	for (int i = 0; i < na; i++)
		close(acc[i]);
}

Test(warm, take_within_the_limit_then_close_frees_the_unit)
{
	/* The lane's limit is 2 and the pool wants 2: the refill may only
	 * replace a taken socket once its unit is given back. */
	const struct cr_lane *l = publish_warm(2, "max_conns_per_host = 2\nqueue_timeout = 100ms\n");
	struct cr_dest d = listener_dest();
	cr_warm_kick();
	cr_assert_eq(wait_warm_fds(2, 3000), 2);
	uint32_t slot;
	uint64_t ino;
	int fd = take_within(l, &d, &slot, &ino, 3000);
	cr_assert_geq(fd, 0);
	cr_expect_neq(slot, CR_SLOT_NONE, "a limited lane's warm socket carries a unit");
	cr_expect_eq(cr_limit_inuse(slot), 2);
	usleep(300000);
	cr_expect_eq(warm_fds(NULL, 0), 1, "at the limit: no refill while the taken one holds its unit");
	close(fd);
	cr_limit_release(slot);
	cr_expect_eq(wait_warm_fds(2, 3000), 2, "the unit given back is refilled");
	cr_expect_eq(cr_limit_inuse(slot), 2);
}

Test(warm, evict_closes_one_ready_socket)
{
	const struct cr_lane *l = publish_warm(1, "max_conns_per_host = 1\nqueue_timeout = 100ms\n");
	struct cr_dest d = listener_dest();
	cr_warm_kick();
	cr_assert_eq(wait_warm_fds(1, 3000), 1);
	int w;
	warm_fds(&w, 1);
	uint64_t wino = cr_fd_inode(w);
	int acc[4];
	int na = accept_all(acc, 4, 1, 3000);
	cr_assert_eq(na, 1);
	cr_expect_eq(cr_warm_evict(l, &d), 1);
	/* The server sees the evicted connection end. */
	struct pollfd p = {.fd = acc[0], .events = POLLIN};
	char c;
	cr_expect_eq(poll(&p, 1, 3000), 1);
	cr_expect_eq(read(acc[0], &c, 1), 0, "EOF on the evicted connection");
	cr_expect_neq(cr_fd_inode(w), wino, "the evicted socket is closed");
	close(acc[0]);
	/* Its unit is free again: the pool refills (a leaked unit would keep
	 * the limit of 1 taken forever). */
	cr_expect_eq(wait_warm_fds(1, 3000), 1);
	cr_expect_eq(accept_all(acc, 4, 1, 3000), 1);
	close(acc[0]);
}

Test(warm, app_closing_a_warm_socket_is_forgotten_and_refilled)
{
	const struct cr_lane *l = publish_warm(1, "max_conns_per_host = 1\nqueue_timeout = 100ms\n");
	struct cr_dest d = listener_dest();
	cr_warm_kick();
	cr_assert_eq(wait_warm_fds(1, 3000), 1);
	int w;
	warm_fds(&w, 1);
	uint64_t wino = cr_fd_inode(w);
	/* The app closes it (closefrom, a stray close): the close hook takes
	 * the entry and gives back the unit through cr_route_release_fd, which
	 * tells the pool to forget the socket. */
	cr_expect_eq(cr_route_close_fd(w), 0);
	cr_expect_eq(wait_warm_fds(1, 3000), 1, "refilled after the unit came back");
	uint32_t slot;
	uint64_t ino;
	int fd = take_within(l, &d, &slot, &ino, 3000);
	cr_assert_geq(fd, 0);
	cr_expect_neq(ino, wino, "never the closed socket");
	cr_expect_eq(peer_port(fd), lport);
	cr_expect_eq(cr_limit_inuse(slot), 1);
	close(fd);
	cr_limit_release(slot);
}

Test(warm, forget_of_an_unknown_fd_is_harmless)
{
	publish_warm(1, NULL);
	cr_warm_forget(12345);
	cr_warm_forget(-1);
	cr_expect_eq(warm_fds(NULL, 0), 0);
}

Test(warm, routed_connect_is_served_from_the_pool)
{
	publish_warm(1, "max_conns_per_host = 1\nqueue_timeout = 100ms\nnodelay = on\n");
	cr_key_set("w");
	cr_warm_kick();
	cr_assert_eq(wait_warm_fds(1, 3000), 1);
	int w;
	warm_fds(&w, 1);
	uint64_t wino = cr_fd_inode(w);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)lport),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	errno = 555;
	cr_assert_eq(cr_route_connect(fd, (struct sockaddr *)&a, sizeof(a)), 0, "%s", strerror(errno));
	cr_expect_eq(errno, 555, "errno untouched on success");
	cr_expect_eq(cr_fd_inode(fd), wino, "the app's fd now holds the warm socket");
	cr_expect_eq(fcntl(fd, F_GETFL) & O_NONBLOCK, 0, "the app's blocking mode, not the pool's");
	cr_expect_eq(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0, "the app's FD_CLOEXEC, not the pool's");
	struct cr_fdinfo info;
	cr_assert(cr_fdtab_peek(fd, &info));
	cr_expect(info.flags & CR_FDF_ROUTED);
	cr_expect_not(info.flags & CR_FDF_WARM);
	cr_expect_eq(cr_route_close_fd(fd), 0);
	/* The unit came back with the close: the pool refills. */
	cr_expect_eq(wait_warm_fds(1, 3000), 1);
	cr_key_set(NULL);
}
