/* Shared by the raw-socket test programs (sockprog, h2_prog, h2_sigio): errno names as the
 * tests read them, a monotonic clock, a sleep that survives signals, and one bounded HTTP
 * GET on a connected socket that prints "get NAME BODY" or "get NAME err WHY". */
#ifndef CR_PROGS_SOCKUTIL_H
#define CR_PROGS_SOCKUTIL_H

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static inline const char *errname(int e)
{
	switch (e) {
	case EAGAIN: return "EAGAIN";
	case ETIMEDOUT: return "ETIMEDOUT";
	case EINPROGRESS: return "EINPROGRESS";
	case ECONNREFUSED: return "ECONNREFUSED";
	case EALREADY: return "EALREADY";
	case EISCONN: return "EISCONN";
	case EBADF: return "EBADF";
	case EINVAL: return "EINVAL";
	case ENOENT: return "ENOENT";
	case EINTR: return "EINTR";
	case ENOSYS: return "ENOSYS";
	case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
	case ENETUNREACH: return "ENETUNREACH";
	case ENOTCONN: return "ENOTCONN";
	case ENOTSOCK: return "ENOTSOCK";
	case ECONNRESET: return "ECONNRESET";
	case EPIPE: return "EPIPE";
	case ENOPROTOOPT: return "ENOPROTOOPT";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	default: return "E?";
	}
}

static inline double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static inline void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
	}
}

static inline void do_get(const char *name, int fd, const char *path)
{
	char req[512], buf[8192];
	size_t got = 0;
	snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n", path);
	if (write(fd, req, strlen(req)) < 0) {
		printf("get %s err %s\n", name, errname(errno));
		return;
	}
	struct pollfd p = {.fd = fd, .events = POLLIN};
	double deadline = now_ms() + 5000;
	while (got < sizeof(buf) - 1 && now_ms() < deadline) {
		if (poll(&p, 1, 100) <= 0)
			continue;
		ssize_t n = read(fd, buf + got, sizeof(buf) - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
		buf[got] = '\0';
		char *body = strstr(buf, "\r\n\r\n");
		char *cl = strcasestr(buf, "Content-Length:");
		if (body && cl && got >= (size_t)(body + 4 - buf) + (size_t)atoi(cl + 15))
			break;
	}
	buf[got] = '\0';
	char *body = strstr(buf, "\r\n\r\n");
	if (!body) {
		printf("get %s err noresponse\n", name);
		return;
	}
	body += 4;
	body[strcspn(body, "\r\n")] = '\0';
	printf("get %s %s\n", name, body);
}

#endif
