/* sockprog: a small, unmodified socket program driven by its arguments, so
 * integration tests can make it do exactly one scenario and read what it
 * observed. It never includes connroute.h: it is an ordinary host program.
 *
 * Each argument is one step; sockets are named by a letter/word:
 *   tcp=S  tcp6=S  udp=S  unix=S     create a socket
 *   nonblock=S                       set O_NONBLOCK
 *   bind=S@ADDR                      bind to ADDR, port 0
 *   nodelay0=S                       setsockopt(TCP_NODELAY, 0)
 *   connect=S@HOST:PORT              connect (HOST an IPv4/IPv6 literal, or a UNIX path
 *                                    for unix sockets); prints connect S ok|err ERRNO ms
 *   wait=S                           poll POLLOUT (5 s) and print SO_ERROR
 *   opts=S                           print the socket options and the local address
 *   flags=S                          print O_NONBLOCK and FD_CLOEXEC
 *   get=S:/PATH                      HTTP/1.1 GET on the socket, print the body's first line
 *   close=S  __close=S  close_range=S  closefrom=S  sys_close=S  fclose=S
 *   dup2=A:B                         dup2(fd of A, fd of B)
 *   fork_close=S                     fork; the child closes S and exits 0
 *   fork_hold=S                      fork; the child exits without closing anything
 *   sleep=MS   fdcount
 * Steps for warm pools (socket state set before connect, then observed):
 *   setopt=S:LEVEL:NAME:VAL          setsockopt(int VAL); prints setopt S ok|err ERRNO
 *   getopt=S:LEVEL:NAME              prints getopt S LEVEL:NAME=V (-1 on error)
 *   rcvbuf=S:N  keepalive1=S         setsockopt(SO_RCVBUF, N) / setsockopt(SO_KEEPALIVE, 1)
 *   epoll=S                          register S with this program's epoll instance (EPOLLIN|
 *                                    EPOLLOUT, created on first use)
 *   epwait=S                         epoll_wait (2 s) for S: prints epwait S out|in|none
 *   dup=S:T                          T = dup(S) (a second name for the same open file)
 *   peer=S                           getpeername: prints peer S ok PORT | peer S err ERRNO
 *   read=S                           poll POLLIN (2 s), read, print read S <first line>|eof|
 *                                    timeout|err ERRNO
 *   fork_fdcount                     fork; the child prints fork_fdcount N (its open fds)
 *   sys_closeabove=S                 raw syscall close_range(fd of S + 1, ~0): closes every
 *                                    higher fd behind the shim's back
 *   close_range_unshare=S            close_range(fd of S, fd of S, CLOSE_RANGE_UNSHARE)
 *   thread_unshare=S                 a second thread calls close_range(fd of S, ~0,
 *                                    CLOSE_RANGE_UNSHARE): it closes only that thread's new
 *                                    private fd table. Prints thread_unshare S ok|err ERRNO
 *                                    closed_there=0|1 (S is gone in the thread's table)
 * Steps for long-running scenarios (live reload, resource limits):
 *   rename=SRC:DST                   rename(2) a file (swap a config in place); prints
 *                                    rename ok|err ERRNO
 *   await_opt=LEVEL:NAME:VAL@HOST:PORT
 *                                    every 50 ms for at most 5 s: a new TCP socket, a blocking
 *                                    connect, getsockopt(LEVEL, NAME), close; until it reads
 *                                    VAL (the lane changed by a reload). Prints await_opt ok
 *                                    tries=N | await_opt timeout last=V
 *   nproc=N                          setrlimit(RLIMIT_NPROC, N): no thread can be created
 *                                    beyond it (not for root); prints nproc ok|err ERRNO
 */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>
#include <pthread.h>

#include "sockutil.h"

#ifndef CLOSE_RANGE_UNSHARE
#define CLOSE_RANGE_UNSHARE (1U << 1)
#endif

#define MAXS 64
static struct {
	char name[32];
	int fd;
	int family;
} socks[MAXS];
static int nsocks;

static int find(const char *name, size_t len)
{
	for (int i = 0; i < nsocks; i++)
		if (strlen(socks[i].name) == len && memcmp(socks[i].name, name, len) == 0)
			return i;
	fprintf(stderr, "sockprog: unknown socket '%.*s'\n", (int)len, name);
	exit(2);
}

static int fd_of(const char *name)
{
	return socks[find(name, strlen(name))].fd;
}

static void add(const char *name, int fd, int family)
{
	if (fd < 0) {
		printf("socket %s err %s\n", name, errname(errno));
		exit(1);
	}
	snprintf(socks[nsocks].name, sizeof(socks[nsocks].name), "%s", name);
	socks[nsocks].fd = fd;
	socks[nsocks].family = family;
	nsocks++;
}

static socklen_t make_addr(struct sockaddr_storage *ss, int family, const char *spec)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_UNIX) {
		struct sockaddr_un *un = (struct sockaddr_un *)ss;
		un->sun_family = AF_UNIX;
		snprintf(un->sun_path, sizeof(un->sun_path), "%s", spec);
		return sizeof(*un);
	}
	char host[128];
	const char *colon = strrchr(spec, ':');
	int port = colon ? atoi(colon + 1) : 0;
	size_t hl = colon ? (size_t)(colon - spec) : strlen(spec);
	if (hl >= sizeof(host))
		hl = sizeof(host) - 1;
	memcpy(host, spec, hl);
	host[hl] = '\0';
	if (host[0] == '[') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}
	if (strchr(host, ':')) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		inet_pton(AF_INET6, host, &in6->sin6_addr);
		return sizeof(*in6);
	}
	struct sockaddr_in *in = (struct sockaddr_in *)ss;
	in->sin_family = AF_INET;
	in->sin_port = htons((uint16_t)port);
	inet_pton(AF_INET, host, &in->sin_addr);
	return sizeof(*in);
}

static int geti(int fd, int level, int name)
{
	int v = -1;
	socklen_t l = sizeof(v);
	if (getsockopt(fd, level, name, &v, &l) != 0)
		return -1;
	return v;
}

static void print_opts(const char *name, int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char addr[INET6_ADDRSTRLEN] = "?";
	getsockname(fd, (struct sockaddr *)&ss, &sl);
	if (ss.ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, addr, sizeof(addr));
	else if (ss.ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, addr, sizeof(addr));
	printf("opts %s nodelay=%d keepalive=%d keepidle=%d keepintvl=%d keepcnt=%d tos=%d "
	       "priority=%d mark=%d local=%s\n",
	       name, geti(fd, IPPROTO_TCP, TCP_NODELAY), geti(fd, SOL_SOCKET, SO_KEEPALIVE),
	       geti(fd, IPPROTO_TCP, TCP_KEEPIDLE), geti(fd, IPPROTO_TCP, TCP_KEEPINTVL),
	       geti(fd, IPPROTO_TCP, TCP_KEEPCNT),
	       ss.ss_family == AF_INET6 ? geti(fd, IPPROTO_IPV6, IPV6_TCLASS) : geti(fd, IPPROTO_IP, IP_TOS),
	       geti(fd, SOL_SOCKET, SO_PRIORITY), geti(fd, SOL_SOCKET, SO_MARK), addr);
}

static int count_fds(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the DIR's own fd */
}

extern int __close(int) __attribute__((weak));

static int epfd = -1;

/* "S:REST": the socket named before the first colon; *rest gets what follows it. */
static int sock_colon(const char *arg, const char **rest)
{
	const char *colon = strchr(arg, ':');
	if (!colon) {
		fprintf(stderr, "sockprog: '%s' needs S:...\n", arg);
		exit(2);
	}
	*rest = colon + 1;
	return find(arg, (size_t)(colon - arg));
}

static void do_read(const char *name, int fd)
{
	char buf[512];
	struct pollfd p = {.fd = fd, .events = POLLIN};
	int n = poll(&p, 1, 2000);
	if (n <= 0) {
		printf("read %s timeout\n", name);
		return;
	}
	ssize_t r = read(fd, buf, sizeof(buf) - 1);
	if (r < 0) {
		printf("read %s err %s\n", name, errname(errno));
		return;
	}
	if (r == 0) {
		printf("read %s eof\n", name);
		return;
	}
	buf[r] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	printf("read %s %s\n", name, buf);
}

struct unshare_arg {
	int fd, r, err, closed_there;
};

static void *unshare_thread(void *p)
{
	struct unshare_arg *u = p;
	u->r = close_range((unsigned)u->fd, ~0u, CLOSE_RANGE_UNSHARE);
	u->err = errno;
	u->closed_there = fcntl(u->fd, F_GETFD) < 0 && errno == EBADF;
	return NULL;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 1; i < argc; i++) {
		char *a = argv[i], *eq = strchr(a, '=');
		char op[32];
		const char *arg = eq ? eq + 1 : "";
		size_t ol = eq ? (size_t)(eq - a) : strlen(a);
		if (ol >= sizeof(op))
			ol = sizeof(op) - 1;
		memcpy(op, a, ol);
		op[ol] = '\0';

		if (!strcmp(op, "tcp"))
			add(arg, socket(AF_INET, SOCK_STREAM, 0), AF_INET);
		else if (!strcmp(op, "tcp6"))
			add(arg, socket(AF_INET6, SOCK_STREAM, 0), AF_INET6);
		else if (!strcmp(op, "udp"))
			add(arg, socket(AF_INET, SOCK_DGRAM, 0), AF_INET);
		else if (!strcmp(op, "unix"))
			add(arg, socket(AF_UNIX, SOCK_STREAM, 0), AF_UNIX);
		else if (!strcmp(op, "nonblock")) {
			int fd = fd_of(arg);
			fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
		} else if (!strcmp(op, "nodelay0")) {
			int z = 0;
			setsockopt(fd_of(arg), IPPROTO_TCP, TCP_NODELAY, &z, sizeof(z));
		} else if (!strcmp(op, "bind") || !strcmp(op, "connect")) {
			const char *at = strchr(arg, '@');
			if (!at) {
				fprintf(stderr, "sockprog: %s needs S@ADDR\n", op);
				return 2;
			}
			int s = find(arg, (size_t)(at - arg));
			struct sockaddr_storage ss;
			socklen_t sl;
			if (!strcmp(op, "bind")) {
				char spec[160];
				snprintf(spec, sizeof(spec), "%s:0", at + 1);
				sl = make_addr(&ss, socks[s].family, spec);
				int r = bind(socks[s].fd, (struct sockaddr *)&ss, sl);
				printf("bind %s %s\n", socks[s].name, r == 0 ? "ok" : errname(errno));
				continue;
			}
			sl = make_addr(&ss, socks[s].family, at + 1);
			double t0 = now_ms();
			errno = 0;
			int r = connect(socks[s].fd, (struct sockaddr *)&ss, sl);
			int e = errno;
			double ms = now_ms() - t0;
			if (r == 0)
				printf("connect %s ok errno=%d ms=%.0f\n", socks[s].name, e, ms);
			else
				printf("connect %s err %s ms=%.0f\n", socks[s].name, errname(e), ms);
		} else if (!strcmp(op, "wait")) {
			int fd = fd_of(arg), err = 0;
			socklen_t el = sizeof(err);
			struct pollfd p = {.fd = fd, .events = POLLOUT};
			int n = poll(&p, 1, 5000);
			getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
			printf("wait %s %s %s\n", arg, n > 0 ? "ready" : "timeout", err ? errname(err) : "ok");
		} else if (!strcmp(op, "opts")) {
			print_opts(arg, fd_of(arg));
		} else if (!strcmp(op, "flags")) {
			int fd = fd_of(arg);
			printf("flags %s nonblock=%d cloexec=%d\n", arg, (fcntl(fd, F_GETFL) & O_NONBLOCK) != 0,
			       (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
		} else if (!strcmp(op, "get")) {
			const char *colon = strchr(arg, ':');
			int s = find(arg, (size_t)(colon - arg));
			do_get(socks[s].name, socks[s].fd, colon + 1);
		} else if (!strcmp(op, "close")) {
			int r = close(fd_of(arg));
			printf("close %s %s\n", arg, r == 0 ? "ok" : errname(errno));
		} else if (!strcmp(op, "__close")) {
			int r = __close ? __close(fd_of(arg)) : close(fd_of(arg));
			printf("__close %s %s\n", arg, r == 0 ? "ok" : errname(errno));
		} else if (!strcmp(op, "close_range")) {
			int fd = fd_of(arg);
			int r = close_range((unsigned)fd, (unsigned)fd, 0);
			printf("close_range %s %s\n", arg, r == 0 ? "ok" : errname(errno));
		} else if (!strcmp(op, "close_range_unshare")) {
			int fd = fd_of(arg);
			int r = close_range((unsigned)fd, (unsigned)fd, CLOSE_RANGE_UNSHARE);
			printf("close_range_unshare %s %s\n", arg, r == 0 ? "ok" : errname(errno));
		} else if (!strcmp(op, "thread_unshare")) {
			struct unshare_arg u = {.fd = fd_of(arg)};
			pthread_t t;
			pthread_create(&t, NULL, unshare_thread, &u);
			pthread_join(t, NULL);
			printf("thread_unshare %s %s closed_there=%d\n", arg, u.r == 0 ? "ok" : errname(u.err),
			       u.closed_there);
		} else if (!strcmp(op, "closefrom")) {
			closefrom(fd_of(arg));
			printf("closefrom %s done\n", arg);
		} else if (!strcmp(op, "sys_close")) {
			long r = syscall(SYS_close, fd_of(arg));
			printf("sys_close %s %s\n", arg, r == 0 ? "ok" : errname(errno));
		} else if (!strcmp(op, "fclose")) {
			FILE *f = fdopen(fd_of(arg), "r+");
			int r = f ? fclose(f) : -1;
			printf("fclose %s %s\n", arg, r == 0 ? "ok" : errname(errno));
		} else if (!strcmp(op, "dup2")) {
			const char *colon = strchr(arg, ':');
			int a1 = socks[find(arg, (size_t)(colon - arg))].fd, b1 = fd_of(colon + 1);
			int r = dup2(a1, b1);
			printf("dup2 %s %s\n", arg, r >= 0 ? "ok" : errname(errno));
		} else if (!strcmp(op, "fork_close") || !strcmp(op, "fork_hold")) {
			int fd = fd_of(arg);
			fflush(stdout);
			pid_t pid = fork();
			if (pid == 0) {
				if (!strcmp(op, "fork_close"))
					close(fd);
				_exit(0);
			}
			int st = 0;
			waitpid(pid, &st, 0);
			printf("%s %s child=%d\n", op, arg, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
		} else if (!strcmp(op, "sleep")) {
			usleep((useconds_t)atoi(arg) * 1000);
		} else if (!strcmp(op, "fdcount")) {
			printf("fdcount %d\n", count_fds());
		} else if (!strcmp(op, "setopt") || !strcmp(op, "getopt")) {
			const char *rest;
			int s = sock_colon(arg, &rest);
			int level = atoi(rest), name = -1, val = 0;
			const char *c2 = strchr(rest, ':');
			if (c2) {
				name = atoi(c2 + 1);
				const char *c3 = strchr(c2 + 1, ':');
				val = c3 ? atoi(c3 + 1) : 0;
			}
			if (!strcmp(op, "getopt")) {
				printf("getopt %s %d:%d=%d\n", socks[s].name, level, name, geti(socks[s].fd, level, name));
			} else {
				int r = setsockopt(socks[s].fd, level, name, &val, sizeof(val));
				printf("setopt %s %s\n", socks[s].name, r == 0 ? "ok" : errname(errno));
			}
		} else if (!strcmp(op, "rcvbuf")) {
			const char *rest;
			int s = sock_colon(arg, &rest);
			int v = atoi(rest);
			int r = setsockopt(socks[s].fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
			printf("rcvbuf %s %s\n", socks[s].name, r == 0 ? "ok" : errname(errno));
		} else if (!strcmp(op, "keepalive1")) {
			int one = 1;
			int r = setsockopt(fd_of(arg), SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
			printf("keepalive1 %s %s\n", arg, r == 0 ? "ok" : errname(errno));
		} else if (!strcmp(op, "epoll")) {
			if (epfd < 0)
				epfd = epoll_create1(EPOLL_CLOEXEC);
			int s = find(arg, strlen(arg));
			struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)s};
			int r = epoll_ctl(epfd, EPOLL_CTL_ADD, socks[s].fd, &ev);
			printf("epoll %s %s\n", arg, r == 0 ? "ok" : errname(errno));
		} else if (!strcmp(op, "epwait")) {
			int s = find(arg, strlen(arg));
			const char *what = "none";
			double deadline = now_ms() + 2000;
			while (epfd >= 0 && now_ms() < deadline && !strcmp(what, "none")) {
				struct epoll_event evs[MAXS];
				int n = epoll_wait(epfd, evs, MAXS, 100);
				for (int k = 0; k < n; k++)
					if (evs[k].data.u32 == (uint32_t)s)
						what = (evs[k].events & EPOLLOUT) ? "out" : "in";
			}
			printf("epwait %s %s\n", arg, what);
		} else if (!strcmp(op, "dup")) {
			const char *rest;
			int s = sock_colon(arg, &rest);
			add(rest, dup(socks[s].fd), socks[s].family);
			printf("dup %s %s\n", socks[s].name, rest);
		} else if (!strcmp(op, "peer")) {
			struct sockaddr_storage ss;
			socklen_t sl = sizeof(ss);
			if (getpeername(fd_of(arg), (struct sockaddr *)&ss, &sl) == 0)
				printf("peer %s ok %d\n", arg,
				       ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
								       : ((struct sockaddr_in *)&ss)->sin_port));
			else
				printf("peer %s err %s\n", arg, errname(errno));
		} else if (!strcmp(op, "read")) {
			do_read(arg, fd_of(arg));
		} else if (!strcmp(op, "fork_fdcount")) {
			fflush(stdout);
			pid_t pid = fork();
			if (pid == 0) {
				printf("fork_fdcount %d\n", count_fds());
				fflush(stdout);
				_exit(0);
			}
			int st = 0;
			waitpid(pid, &st, 0);
		} else if (!strcmp(op, "sys_closeabove")) {
			long r = syscall(SYS_close_range, (unsigned)fd_of(arg) + 1, ~0u, 0u);
			printf("sys_closeabove %s %s\n", arg, r == 0 ? "ok" : errname(errno));
		} else if (!strcmp(op, "rename")) {
			char src[512];
			const char *colon = strchr(arg, ':');
			if (!colon || (size_t)(colon - arg) >= sizeof(src)) {
				fprintf(stderr, "sockprog: rename needs SRC:DST\n");
				return 2;
			}
			memcpy(src, arg, (size_t)(colon - arg));
			src[colon - arg] = '\0';
			int r = rename(src, colon + 1);
			printf("rename %s\n", r == 0 ? "ok" : errname(errno));
		} else if (!strcmp(op, "await_opt")) {
			const char *at = strchr(arg, '@');
			int level = atoi(arg), name = -1, want = 0, last = -1, tries = 0, ok = 0;
			const char *c2 = strchr(arg, ':');
			if (!at || !c2 || c2 > at) {
				fprintf(stderr, "sockprog: await_opt needs LEVEL:NAME:VAL@HOST:PORT\n");
				return 2;
			}
			name = atoi(c2 + 1);
			const char *c3 = strchr(c2 + 1, ':');
			want = c3 && c3 < at ? atoi(c3 + 1) : 0;
			struct sockaddr_storage ss;
			socklen_t sl = make_addr(&ss, AF_INET, at + 1);
			double deadline = now_ms() + 5000;
			while (!ok && now_ms() < deadline) {
				int fd = socket(ss.ss_family, SOCK_STREAM, 0);
				tries++;
				if (fd >= 0 && connect(fd, (struct sockaddr *)&ss, sl) == 0) {
					last = geti(fd, level, name);
					ok = last == want;
				}
				if (fd >= 0)
					close(fd);
				if (!ok)
					usleep(50000);
			}
			if (ok)
				printf("await_opt ok tries=%d\n", tries);
			else
				printf("await_opt timeout last=%d\n", last);
		} else if (!strcmp(op, "nproc")) {
			struct rlimit rl = {.rlim_cur = (rlim_t)atol(arg), .rlim_max = (rlim_t)atol(arg)};
			int r = setrlimit(RLIMIT_NPROC, &rl);
			printf("nproc %s\n", r == 0 ? "ok" : errname(errno));
		} else {
			fprintf(stderr, "sockprog: unknown step '%s'\n", a);
			return 2;
		}
	}
	return 0;
}
