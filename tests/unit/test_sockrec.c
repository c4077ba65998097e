/* Records of what the app did to a socket before connecting it
 * (lib/sockrec.c): which sockets a warm socket may stand in for, and the
 * options replayed onto it. */
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fdtab.h"
#include "sockrec.h"

static int tcp(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_geq(fd, 0);
	return fd;
}

static int geti(int fd, int level, int name)
{
	int v = -12345;
	socklen_t l = sizeof(v);
	if (getsockopt(fd, level, name, &v, &l) != 0)
		return -12345;
	return v;
}

/* What the setsockopt hook does: the real call, then the record. */
static void setopt(int fd, int level, int name, int val)
{
	cr_assert_eq(setsockopt(fd, level, name, &val, sizeof(val)), 0);
	cr_sockrec_setsockopt(fd, level, name, &val, sizeof(val));
}

Test(sockrec, fresh_socket_is_substitutable)
{
	int fd = tcp();
	cr_expect(cr_sockrec_substitutable(fd, cr_fd_inode(fd)));
	int to = tcp();
	cr_expect_eq(cr_sockrec_replay(fd, cr_fd_inode(fd), to), 0, "nothing to replay");
	close(fd);
	close(to);
}

Test(sockrec, epoll_registered_is_not_substitutable)
{
	int fd = tcp();
	uint64_t ino = cr_fd_inode(fd);
	cr_sockrec_epoll_add(fd);
	cr_expect_not(cr_sockrec_substitutable(fd, ino), "dup3 would drop the epoll registration");
	close(fd);
}

Test(sockrec, duplicated_is_not_substitutable)
{
	int fd = tcp();
	uint64_t ino = cr_fd_inode(fd);
	int other = dup(fd);
	cr_sockrec_shared(fd);
	cr_expect_not(cr_sockrec_substitutable(fd, ino), "the other fd would keep the old socket");
	close(other);
	close(fd);
}

Test(sockrec, replayable_options_are_replayed)
{
	int fd = tcp(), to = tcp();
	uint64_t ino = cr_fd_inode(fd);
	setopt(fd, SOL_SOCKET, SO_KEEPALIVE, 1);
	setopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, 42);
	setopt(fd, IPPROTO_TCP, TCP_NODELAY, 1);
	setopt(fd, IPPROTO_IP, IP_TOS, 0x20);
	setopt(fd, SOL_SOCKET, SO_REUSEADDR, 1); /* only matters before bind: skipped */
	setopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, 43); /* set twice: the last value */
	cr_expect(cr_sockrec_substitutable(fd, ino));
	cr_assert_eq(cr_sockrec_replay(fd, ino, to), 0);
	cr_expect_eq(geti(to, SOL_SOCKET, SO_KEEPALIVE), 1);
	cr_expect_eq(geti(to, IPPROTO_TCP, TCP_KEEPIDLE), 43);
	cr_expect_eq(geti(to, IPPROTO_TCP, TCP_NODELAY), 1);
	cr_expect_eq(geti(to, IPPROTO_IP, IP_TOS), 0x20);
	cr_expect_eq(geti(to, SOL_SOCKET, SO_REUSEADDR), 0, "SO_REUSEADDR is not replayed");
	close(fd);
	close(to);
}

Test(sockrec, syn_time_options_are_not_substitutable)
{
	int a = tcp(), b = tcp();
	setopt(a, SOL_SOCKET, SO_RCVBUF, 65536); /* window scaling is fixed at SYN time */
	cr_expect_not(cr_sockrec_substitutable(a, cr_fd_inode(a)));
	setopt(b, IPPROTO_TCP, TCP_MAXSEG, 1000);
	cr_expect_not(cr_sockrec_substitutable(b, cr_fd_inode(b)));
	close(a);
	close(b);
}

Test(sockrec, overflow_is_not_substitutable_nor_replayed)
{
	int a = tcp(), b = tcp(), to = tcp();
	/* A value longer than a record holds. */
	char big[32] = {0};
	cr_sockrec_setsockopt(a, SOL_SOCKET, SO_KEEPALIVE, big, sizeof(big));
	cr_expect_not(cr_sockrec_substitutable(a, cr_fd_inode(a)));
	cr_expect_eq(cr_sockrec_replay(a, cr_fd_inode(a), to), -1);
	/* More distinct options than a record holds (8). */
	static const int names[] = {TCP_NODELAY, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT, TCP_USER_TIMEOUT,
				    TCP_QUICKACK, TCP_NOTSENT_LOWAT};
	for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		setopt(b, IPPROTO_TCP, names[i], 1);
	setopt(b, SOL_SOCKET, SO_KEEPALIVE, 1);
	cr_expect(cr_sockrec_substitutable(b, cr_fd_inode(b)), "8 options fit");
	setopt(b, SOL_SOCKET, SO_SNDBUF, 65536);
	cr_expect_not(cr_sockrec_substitutable(b, cr_fd_inode(b)), "a 9th does not: not faithful");
	cr_expect_eq(cr_sockrec_replay(b, cr_fd_inode(b), to), -1);
	close(a);
	close(b);
	close(to);
}

Test(sockrec, stale_record_of_another_socket_is_never_used)
{
	int fd = tcp();
	uint64_t old = cr_fd_inode(fd);
	setopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, 99);
	cr_sockrec_epoll_add(fd);
	close(fd); /* a close the records never saw */
	int again = tcp();
	cr_assert_eq(again, fd, "the number is reused");
	uint64_t ino = cr_fd_inode(again);
	cr_assert_neq(ino, old);
	cr_expect(cr_sockrec_substitutable(again, ino), "the old socket's epoll mark does not apply");
	int to = tcp();
	int dflt = geti(to, IPPROTO_TCP, TCP_KEEPIDLE);
	cr_expect_eq(cr_sockrec_replay(again, ino, to), 0);
	cr_expect_eq(geti(to, IPPROTO_TCP, TCP_KEEPIDLE), dflt, "the old socket's option is not replayed");
	/* A record made for the new socket resets the old one's. */
	setopt(again, IPPROTO_TCP, TCP_KEEPINTVL, 11);
	cr_expect(cr_sockrec_substitutable(again, ino));
	cr_expect_eq(cr_sockrec_replay(again, ino, to), 0);
	cr_expect_eq(geti(to, IPPROTO_TCP, TCP_KEEPINTVL), 11);
	cr_expect_eq(geti(to, IPPROTO_TCP, TCP_KEEPIDLE), dflt);
	close(again);
	close(to);
}

Test(sockrec, replay_asked_with_another_inode_replays_nothing)
{
	int fd = tcp(), to = tcp();
	setopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, 77);
	int dflt = geti(to, IPPROTO_TCP, TCP_KEEPIDLE);
	cr_expect_eq(cr_sockrec_replay(fd, cr_fd_inode(fd) + 1, to), 0);
	cr_expect_eq(geti(to, IPPROTO_TCP, TCP_KEEPIDLE), dflt);
	close(fd);
	close(to);
}

Test(sockrec, forget_drops_the_record)
{
	int fd = tcp(), to = tcp();
	uint64_t ino = cr_fd_inode(fd);
	cr_sockrec_epoll_add(fd);
	setopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, 55);
	cr_sockrec_forget(fd);
	cr_expect(cr_sockrec_substitutable(fd, ino));
	int dflt = geti(to, IPPROTO_TCP, TCP_KEEPIDLE);
	cr_expect_eq(cr_sockrec_replay(fd, ino, to), 0);
	cr_expect_eq(geti(to, IPPROTO_TCP, TCP_KEEPIDLE), dflt);
	cr_sockrec_forget(4000); /* never recorded: harmless */
	close(fd);
	close(to);
}

Test(sockrec, closed_fd_records_nothing)
{
	int fd = tcp();
	close(fd);
	int v = 1;
	cr_sockrec_setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, sizeof(v));
	cr_sockrec_epoll_add(fd);
	int again = tcp();
	cr_assert_eq(again, fd);
	cr_expect(cr_sockrec_substitutable(again, cr_fd_inode(again)));
	close(again);
}
