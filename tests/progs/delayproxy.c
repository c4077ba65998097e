/* delayproxy: a loopback TCP proxy that delays every byte by a fixed one-way latency in each
 * direction, so that connection setup (TCP + TLS handshakes) costs real round trips in the
 * benchmarks (bench/latency.sh) without touching the host's network configuration.
 *
 *   delayproxy --target 127.0.0.1:PORT [--delay-ms MS | --delay-us US] [--listen-port N]
 *              [--port-file FILE] [--max-seconds N] [--max-conns N] [--queue-max BYTES]
 *              [--no-handshake-rtt]
 *
 * Listens on 127.0.0.1 (port N, default any free one; written to --port-file and to stdout
 * as "PORT <n>"). Each accepted connection gets its own connection to the target, which must
 * be a loopback address. Bytes read on one side are queued with a due time (arrival + delay)
 * and written to the other side when due: a timestamped FIFO per direction, one thread,
 * epoll + a timerfd. End of stream travels the same way (shutdown(SHUT_WR) when due); a reset
 * or an error on either side closes both at once.
 *
 * The TCP handshake: the client's connect() completes at once (the kernel accepts for us),
 * so its first bytes are held until one round trip plus one one-way delay after the accept,
 * which is when they would reach the server on a real path (SYN, SYN-ACK, then the data).
 * Client-speaks-first protocols (HTTP, TLS) thus see the same total time as on a link with
 * that latency; only the split between "connect" and "first byte" differs.
 * --no-handshake-rtt turns that off (only the per-byte delay remains).
 *
 * Bounds: --max-seconds [600] then exit; --max-conns [4096] (more are accepted and closed at
 * once); --queue-max [4 MiB] per direction (reading pauses beyond it). On exit (deadline,
 * SIGTERM, SIGINT) it prints "delayproxy: conns=N bytes_c2s=N bytes_s2c=N" to stderr. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define READ_CHUNK 65536

struct chunk {
	struct chunk *next;
	uint64_t due;
	size_t len, off;
	int eof;
	char data[];
};

struct conn;

/* One socket of a connection, as epoll sees it. */
struct end {
	struct conn *c;
	int fd;
	int side; /* 0 = client, 1 = server */
	int readable, writable;
};

/* Bytes travelling from end[from] to end[1 - from]. */
struct dir {
	struct chunk *head, *tail;
	size_t queued;
	int read_eof;  /* the source said EOF (queued as an eof chunk) */
	int done;      /* the EOF was delivered (SHUT_WR) */
};

struct conn {
	struct end e[2];
	struct dir d[2]; /* d[0]: client -> server, d[1]: server -> client */
	uint64_t hold_until; /* client -> server bytes not before this */
	int connecting;      /* server connect in progress */
	int dead;
	struct conn *prev, *next;
};

static struct {
	uint64_t delay_ns;
	struct sockaddr_in target;
	int listen_port;
	const char *port_file;
	long max_seconds;
	long max_conns;
	size_t queue_max;
	int handshake_rtt;
} opt = {.max_seconds = 600, .max_conns = 4096, .queue_max = 4u << 20, .handshake_rtt = 1};

static int ep, tfd;
static struct conn *conns;
static long nconns, total_conns;
static unsigned long long bytes[2];
static struct conn *dead_list[1024];
static int ndead;

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("delayproxy: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(2);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void set_nodelay(int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void conn_free_queues(struct conn *c)
{
	for (int k = 0; k < 2; k++) {
		struct chunk *ch = c->d[k].head;
		while (ch) {
			struct chunk *n = ch->next;
			free(ch);
			ch = n;
		}
		c->d[k].head = c->d[k].tail = NULL;
		c->d[k].queued = 0;
	}
}

/* Closes both sockets; the struct is freed after the event batch (epoll may still hold
 * pointers to it in the current batch). */
static void conn_kill(struct conn *c)
{
	if (c->dead)
		return;
	c->dead = 1;
	for (int k = 0; k < 2; k++) {
		if (c->e[k].fd >= 0) {
			epoll_ctl(ep, EPOLL_CTL_DEL, c->e[k].fd, NULL);
			close(c->e[k].fd);
			c->e[k].fd = -1;
		}
	}
	conn_free_queues(c);
	if (c->prev)
		c->prev->next = c->next;
	else
		conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	nconns--;
	if (ndead < (int)(sizeof dead_list / sizeof dead_list[0]))
		dead_list[ndead++] = c;
	/* else: leaked until exit, never touched again (bounded by the batch size anyway) */
}

static void enqueue(struct conn *c, int k, const char *buf, size_t n, int eof, uint64_t t)
{
	struct chunk *ch = malloc(sizeof *ch + n);
	if (!ch) {
		conn_kill(c);
		return;
	}
	ch->next = NULL;
	ch->len = n;
	ch->off = 0;
	ch->eof = eof;
	ch->due = t + opt.delay_ns;
	if (k == 0 && ch->due < c->hold_until)
		ch->due = c->hold_until;
	if (c->d[k].tail && ch->due < c->d[k].tail->due)
		ch->due = c->d[k].tail->due;
	if (n)
		memcpy(ch->data, buf, n);
	if (c->d[k].tail)
		c->d[k].tail->next = ch;
	else
		c->d[k].head = ch;
	c->d[k].tail = ch;
	c->d[k].queued += n;
}

/* Reads what end k has (up to the queue bound) into direction k. */
static void pump_in(struct conn *c, int k)
{
	static char buf[READ_CHUNK];
	struct end *e = &c->e[k];
	struct dir *d = &c->d[k];
	while (!c->dead && e->readable && !d->read_eof && d->queued < opt.queue_max) {
		ssize_t n = recv(e->fd, buf, sizeof buf, 0);
		uint64_t t = now_ns();
		if (n > 0) {
			bytes[k] += (unsigned long long)n;
			enqueue(c, k, buf, (size_t)n, 0, t);
		} else if (n == 0) {
			d->read_eof = 1;
			enqueue(c, k, NULL, 0, 1, t);
		} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
			e->readable = 0;
		} else if (errno != EINTR) {
			conn_kill(c);
		}
	}
}

/* Writes the due bytes of direction k to the other end. */
static void pump_out(struct conn *c, int k, uint64_t t)
{
	struct end *to = &c->e[1 - k];
	struct dir *d = &c->d[k];
	while (!c->dead && d->head && d->head->due <= t && to->writable && !(k == 0 && c->connecting)) {
		struct chunk *ch = d->head;
		if (ch->eof) {
			shutdown(to->fd, SHUT_WR);
			d->done = 1;
		} else {
			ssize_t n = send(to->fd, ch->data + ch->off, ch->len - ch->off, MSG_NOSIGNAL);
			if (n < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK) {
					to->writable = 0;
					return;
				}
				if (errno == EINTR)
					continue;
				conn_kill(c);
				return;
			}
			ch->off += (size_t)n;
			d->queued -= (size_t)n;
			if (ch->off < ch->len)
				continue;
		}
		d->head = ch->next;
		if (!d->head)
			d->tail = NULL;
		free(ch);
	}
	if (!c->dead && c->d[0].done && c->d[1].done)
		conn_kill(c);
}

static void on_accept(int lfd)
{
	for (int i = 0; i < 256; i++) {
		int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cfd < 0)
			return;
		if (nconns >= opt.max_conns) {
			close(cfd);
			continue;
		}
		int sfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (sfd < 0) {
			close(cfd);
			continue;
		}
		set_nodelay(cfd);
		set_nodelay(sfd);
		int r = connect(sfd, (struct sockaddr *)&opt.target, sizeof opt.target);
		if (r != 0 && errno != EINPROGRESS) {
			close(sfd);
			close(cfd);
			continue;
		}
		struct conn *c = calloc(1, sizeof *c);
		if (!c) {
			close(sfd);
			close(cfd);
			continue;
		}
		uint64_t t = now_ns();
		c->hold_until = opt.handshake_rtt ? t + 3 * opt.delay_ns : 0;
		c->connecting = r != 0;
		for (int k = 0; k < 2; k++) {
			c->e[k].c = c;
			c->e[k].side = k;
			c->e[k].fd = k == 0 ? cfd : sfd;
		}
		c->e[1].writable = !c->connecting;
		c->next = conns;
		if (conns)
			conns->prev = c;
		conns = c;
		nconns++;
		total_conns++;
		for (int k = 0; k < 2; k++) {
			struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
						 .data.ptr = &c->e[k]};
			if (epoll_ctl(ep, EPOLL_CTL_ADD, c->e[k].fd, &ev) != 0) {
				conn_kill(c);
				break;
			}
		}
	}
}

static void on_event(struct end *e, uint32_t ev, uint64_t t)
{
	struct conn *c = e->c;
	if (c->dead)
		return;
	if (e->side == 1 && c->connecting && (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
		int err = 0;
		socklen_t el = sizeof err;
		getsockopt(e->fd, SOL_SOCKET, SO_ERROR, &err, &el);
		if (err) {
			conn_kill(c);
			return;
		}
		c->connecting = 0;
	}
	if (ev & EPOLLOUT)
		e->writable = 1;
	if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		e->readable = 1;
	pump_in(c, e->side);
	if (!c->dead)
		pump_out(c, 1 - e->side, t); /* bytes waiting to be written to this end */
}

static void parse_target(const char *s)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	if (!colon || (size_t)(colon - s) >= sizeof host)
		die("--target wants IPV4:PORT, got '%s'", s);
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	long port = strtol(colon + 1, NULL, 10);
	if (port <= 0 || port > 65535)
		die("bad port in --target '%s'", s);
	opt.target.sin_family = AF_INET;
	opt.target.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &opt.target.sin_addr) != 1)
		die("--target wants a numeric IPv4 address, got '%s'", host);
	if ((ntohl(opt.target.sin_addr.s_addr) >> 24) != 127)
		die("--target must be a loopback address (127.0.0.0/8), got '%s'", host);
}

static long parse_long(const char *name, const char *s, long lo, long hi)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || !*s || *end || v < lo || v > hi)
		die("bad value for %s: '%s' (want %ld..%ld)", name, s, lo, hi);
	return v;
}

static void usage(void)
{
	fputs("usage: delayproxy --target 127.0.0.1:PORT [--delay-ms MS | --delay-us US]\n"
	      "  [--listen-port N] [--port-file FILE] [--max-seconds N] [--max-conns N]\n"
	      "  [--queue-max BYTES] [--no-handshake-rtt]\n",
	      stderr);
	exit(2);
}

int main(int argc, char **argv)
{
	int have_target = 0;
	for (int a = 1; a < argc; a++) {
		const char *s = argv[a];
#define ARG() (a + 1 < argc ? argv[++a] : (usage(), ""))
		if (!strcmp(s, "--target")) {
			parse_target(ARG());
			have_target = 1;
		} else if (!strcmp(s, "--delay-ms")) {
			opt.delay_ns = (uint64_t)parse_long(s, ARG(), 0, 10000) * 1000000ull;
		} else if (!strcmp(s, "--delay-us")) {
			opt.delay_ns = (uint64_t)parse_long(s, ARG(), 0, 10000000) * 1000ull;
		} else if (!strcmp(s, "--listen-port")) {
			opt.listen_port = (int)parse_long(s, ARG(), 0, 65535);
		} else if (!strcmp(s, "--port-file")) {
			opt.port_file = ARG();
		} else if (!strcmp(s, "--max-seconds")) {
			opt.max_seconds = parse_long(s, ARG(), 1, 86400);
		} else if (!strcmp(s, "--max-conns")) {
			opt.max_conns = parse_long(s, ARG(), 1, 100000);
		} else if (!strcmp(s, "--queue-max")) {
			opt.queue_max = (size_t)parse_long(s, ARG(), 4096, 1L << 30);
		} else if (!strcmp(s, "--no-handshake-rtt")) {
			opt.handshake_rtt = 0;
		} else {
			usage();
		}
#undef ARG
	}
	if (!have_target)
		usage();

	sigset_t ss;
	sigemptyset(&ss);
	sigaddset(&ss, SIGTERM);
	sigaddset(&ss, SIGINT);
	sigprocmask(SIG_BLOCK, &ss, NULL);
	signal(SIGPIPE, SIG_IGN);
	int sfd = signalfd(-1, &ss, SFD_NONBLOCK | SFD_CLOEXEC);

	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		die("socket: %s", strerror(errno));
	int one = 1;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in la = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.listen_port)};
	la.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(lfd, (struct sockaddr *)&la, sizeof la) != 0)
		die("bind 127.0.0.1:%d: %s", opt.listen_port, strerror(errno));
	if (listen(lfd, 4096) != 0)
		die("listen: %s", strerror(errno));
	socklen_t ll = sizeof la;
	getsockname(lfd, (struct sockaddr *)&la, &ll);
	int port = ntohs(la.sin_port);

	ep = epoll_create1(EPOLL_CLOEXEC);
	tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (ep < 0 || tfd < 0 || sfd < 0)
		die("epoll/timerfd/signalfd: %s", strerror(errno));
	/* data.ptr NULL/&lfd/&tfd/&sfd tell the special fds apart from connection ends */
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &lfd};
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	ev.data.ptr = &tfd;
	epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
	ev.data.ptr = &sfd;
	epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev);

	if (opt.port_file) {
		char tmp[4096];
		snprintf(tmp, sizeof tmp, "%s.tmp", opt.port_file);
		FILE *f = fopen(tmp, "w");
		if (!f || fprintf(f, "%d\n", port) < 0 || fclose(f) != 0 || rename(tmp, opt.port_file) != 0)
			die("cannot write %s", opt.port_file);
	}
	printf("PORT %d\n", port);
	fflush(stdout);

	uint64_t deadline = now_ns() + (uint64_t)opt.max_seconds * 1000000000ull;
	int running = 1;
	struct epoll_event evs[256];
	uint64_t armed = 0;
	while (running) {
		uint64_t t = now_ns();
		if (t >= deadline)
			break;
		/* The earliest due chunk that can be written: the timer. */
		uint64_t next = 0;
		for (struct conn *c = conns; c; c = c->next)
			for (int k = 0; k < 2; k++) {
				struct chunk *h = c->d[k].head;
				if (h && c->e[1 - k].writable && !(k == 0 && c->connecting) && (!next || h->due < next))
					next = h->due;
			}
		if (next != armed) {
			struct itimerspec its = {0};
			if (next) {
				uint64_t n = next > t ? next : t + 1;
				its.it_value.tv_sec = (time_t)(n / 1000000000ull);
				its.it_value.tv_nsec = (long)(n % 1000000000ull);
			}
			timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
			armed = next;
		}
		uint64_t left_ms = (deadline - t) / 1000000ull + 1;
		int n = epoll_wait(ep, evs, 256, left_ms > 1000 ? 1000 : (int)left_ms);
		if (n < 0 && errno != EINTR)
			die("epoll_wait: %s", strerror(errno));
		t = now_ns();
		for (int i = 0; i < n; i++) {
			void *p = evs[i].data.ptr;
			if (p == &lfd) {
				on_accept(lfd);
			} else if (p == &tfd) {
				uint64_t x;
				while (read(tfd, &x, sizeof x) > 0) {
				}
				armed = 0;
			} else if (p == &sfd) {
				running = 0;
			} else {
				on_event(p, evs[i].events, t);
			}
		}
		t = now_ns();
		for (struct conn *c = conns, *nx; c; c = nx) {
			nx = c->next;
			pump_out(c, 0, t);
			if (!c->dead)
				pump_out(c, 1, t);
			/* reading may have paused at the queue bound */
			for (int k = 0; k < 2 && !c->dead; k++)
				if (c->e[k].readable && !c->d[k].read_eof && c->d[k].queued < opt.queue_max)
					pump_in(c, k);
			/* only c can have died here, and c->next stays readable until the free below */
		}
		for (int i = 0; i < ndead; i++)
			free(dead_list[i]);
		ndead = 0;
	}
	while (conns)
		conn_kill(conns);
	for (int i = 0; i < ndead; i++)
		free(dead_list[i]);
	fprintf(stderr, "delayproxy: conns=%ld bytes_c2s=%llu bytes_s2c=%llu\n", total_conns, bytes[0],
		bytes[1]);
	return 0;
}
