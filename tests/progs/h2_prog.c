/* h2_prog: an ordinary socket program (no connroute.h) for tests/integration/test_hosts2.c,
 * driven by its arguments like sockprog, with the steps those tests need on top: waiting
 * for the test (a file appears), renaming its own thread, and probing a connection limit
 * over time. Each argument is one step:
 *   tcp=S  nonblock=S  close=S  sleep=MS
 *   bind=S@ADDR                      bind to ADDR, port 0
 *   connect=S@HOST:PORT              connect (IPv4 literal); prints connect S ok | err ERRNO
 *                                    (EINPROGRESS is an error line, as from connect())
 *   get=S:/PATH                      HTTP/1.1 GET, prints get S <body's first line> | err ...
 *   name=NAME                        pthread_setname_np on this (the only) thread
 *   waitfile=PATH                    wait up to 20 s for PATH to exist; prints waitfile ok |
 *                                    timeout
 *   limitprobe=HOST:PORT:MS          for up to MS ms, every 100 ms: two fresh non-blocking
 *                                    sockets connect to HOST:PORT; when the second gets EAGAIN
 *                                    prints "limitprobe eagain after N ms" and stops, else
 *                                    closes both and tries again; "limitprobe none" at the end
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sockutil.h"

#define MAXS 64
static struct {
	char name[32];
	int fd;
} socks[MAXS];
static int nsocks;

static int find(const char *name, size_t len)
{
	for (int i = 0; i < nsocks; i++)
		if (strlen(socks[i].name) == len && memcmp(socks[i].name, name, len) == 0)
			return i;
	fprintf(stderr, "h2_prog: unknown socket '%.*s'\n", (int)len, name);
	exit(2);
}

static void add(const char *name, int fd)
{
	if (fd < 0 || nsocks >= MAXS) {
		printf("socket %s err %s\n", name, errname(errno));
		exit(1);
	}
	snprintf(socks[nsocks].name, sizeof(socks[nsocks].name), "%s", name);
	socks[nsocks].fd = fd;
	nsocks++;
}

/* "HOST:PORT[:REST]" -> sockaddr_in; *rest (may be NULL) gets what follows PORT. */
static void make_addr(struct sockaddr_in *in, const char *spec, const char **rest)
{
	char host[64];
	const char *c = strchr(spec, ':');
	size_t hl = c ? (size_t)(c - spec) : strlen(spec);
	if (hl >= sizeof(host))
		hl = sizeof(host) - 1;
	memcpy(host, spec, hl);
	host[hl] = '\0';
	memset(in, 0, sizeof(*in));
	in->sin_family = AF_INET;
	in->sin_port = htons((uint16_t)(c ? atoi(c + 1) : 0));
	inet_pton(AF_INET, host, &in->sin_addr);
	if (rest) {
		const char *c2 = c ? strchr(c + 1, ':') : NULL;
		*rest = c2 ? c2 + 1 : "";
	}
}

static int nb_socket(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd >= 0)
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	return fd;
}

static void limitprobe(const char *spec)
{
	struct sockaddr_in in;
	const char *rest;
	make_addr(&in, spec, &rest);
	long ms = atol(rest);
	double t0 = now_ms();
	while (now_ms() - t0 < ms) {
		int b = nb_socket(), c = nb_socket();
		int rb = connect(b, (struct sockaddr *)&in, sizeof(in));
		int eb = errno;
		int rc = connect(c, (struct sockaddr *)&in, sizeof(in));
		int ec = errno;
		close(b);
		close(c);
		if (rb != 0 && eb != EINPROGRESS) {
			printf("limitprobe first err %s\n", errname(eb));
			return;
		}
		if (rc != 0 && ec == EAGAIN) {
			printf("limitprobe eagain after %.0f ms\n", now_ms() - t0);
			return;
		}
		sleep_ms(100);
	}
	printf("limitprobe none\n");
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

		if (!strcmp(op, "tcp")) {
			add(arg, socket(AF_INET, SOCK_STREAM, 0));
		} else if (!strcmp(op, "nonblock")) {
			int fd = socks[find(arg, strlen(arg))].fd;
			fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
		} else if (!strcmp(op, "close")) {
			int r = close(socks[find(arg, strlen(arg))].fd);
			printf("close %s %s\n", arg, r == 0 ? "ok" : errname(errno));
		} else if (!strcmp(op, "sleep")) {
			sleep_ms(atol(arg));
		} else if (!strcmp(op, "bind") || !strcmp(op, "connect")) {
			const char *at = strchr(arg, '@');
			if (!at) {
				fprintf(stderr, "h2_prog: %s needs S@ADDR\n", op);
				return 2;
			}
			int s = find(arg, (size_t)(at - arg));
			struct sockaddr_in in;
			make_addr(&in, at + 1, NULL);
			errno = 0;
			int r = !strcmp(op, "bind") ? bind(socks[s].fd, (struct sockaddr *)&in, sizeof(in))
						    : connect(socks[s].fd, (struct sockaddr *)&in, sizeof(in));
			int e = errno;
			if (r == 0)
				printf("%s %s ok\n", op, socks[s].name);
			else
				printf("%s %s err %s\n", op, socks[s].name, errname(e));
		} else if (!strcmp(op, "get")) {
			const char *colon = strchr(arg, ':');
			if (!colon) {
				fprintf(stderr, "h2_prog: get needs S:/PATH\n");
				return 2;
			}
			int s = find(arg, (size_t)(colon - arg));
			do_get(socks[s].name, socks[s].fd, colon + 1);
		} else if (!strcmp(op, "name")) {
			int r = pthread_setname_np(pthread_self(), arg);
			printf("name %s %s\n", arg, r == 0 ? "ok" : "err");
		} else if (!strcmp(op, "waitfile")) {
			double t0 = now_ms();
			while (access(arg, F_OK) != 0 && now_ms() - t0 < 20000)
				sleep_ms(10);
			printf("waitfile %s\n", access(arg, F_OK) == 0 ? "ok" : "timeout");
		} else if (!strcmp(op, "limitprobe")) {
			limitprobe(arg);
		} else {
			fprintf(stderr, "h2_prog: unknown step '%s'\n", a);
			return 2;
		}
	}
	return 0;
}
