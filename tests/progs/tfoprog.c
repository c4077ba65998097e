/* tfoprog: a TCP Fast Open client. Each connection is made by sendto() (or sendmsg()) with
 * MSG_FASTOPEN on a fresh, never-connected socket carrying an HTTP/1.0 request: no
 * connect() call anywhere.
 *
 *   tfoprog [--sendmsg] [--nonblock] [--hold] [--defer-read] [--count N] [--server]
 *           [--metrics UNIXPATH] HOST PORT PATH
 *
 * Per connection it prints
 *   send I ret=R errno=NAME          what the Fast Open call returned (errno only when R < 0)
 *   resp I STATUSLINE | BODY         the response, read to EOF (when the send went out)
 *   info I syn_data=0|1              TCPI_OPT_SYN_DATA: the SYN carried the request
 * --nonblock: O_NONBLOCK sockets; EINPROGRESS (no Fast Open cookie yet: nothing was sent) is
 *   followed by poll, SO_ERROR and a plain send of the request, as a real client does.
 * --hold: every socket stays open until all are done.
 * --defer-read: every request is sent first, the responses are read after (with a slow
 *   PATH such as /delay/500, the connections overlap at the server).
 * --server: HOST/PORT are ignored; a server thread of this program listens on 127.0.0.1 with
 *   TCP_FASTOPEN and answers "peer=IP" to every request (for the data-in-SYN check, which
 *   needs a Fast Open server: the test upstream is none).
 * --metrics UNIXPATH: at the end, GET /metrics from that unix socket (connroute's endpoint,
 *   retried for 3 s) and print the lines of connroute_connections_opened_total.
 * Exit 0 when it ran (whatever the sends returned), 2 on bad usage. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifndef MSG_FASTOPEN
#define MSG_FASTOPEN 0x20000000
#endif

static const char *ename(int e)
{
	switch (e) {
	case EINPROGRESS: return "EINPROGRESS";
	case EAGAIN: return "EAGAIN";
	case ETIMEDOUT: return "ETIMEDOUT";
	case ECONNREFUSED: return "ECONNREFUSED";
	case EISCONN: return "EISCONN";
	case EALREADY: return "EALREADY";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	case EPIPE: return "EPIPE";
	case ENOTCONN: return "ENOTCONN";
	default: return strerror(e);
	}
}

static int wait_fd(int fd, short ev, int ms)
{
	struct pollfd p = {.fd = fd, .events = ev};
	return poll(&p, 1, ms) == 1;
}

/* ------------------------------------------------------------------ server */

static int srv_fd;

static void *serve(void *arg)
{
	(void)arg;
	for (;;) {
		struct sockaddr_in peer;
		socklen_t pl = sizeof(peer);
		int c = accept(srv_fd, (struct sockaddr *)&peer, &pl);
		if (c < 0)
			return NULL;
		char buf[2048];
		size_t got = 0;
		while (got < sizeof(buf) - 1) {
			ssize_t n = read(c, buf + got, sizeof(buf) - 1 - got);
			if (n <= 0)
				break;
			got += (size_t)n;
			buf[got] = '\0';
			if (strstr(buf, "\r\n\r\n"))
				break;
		}
		char body[64], resp[256];
		int bl = snprintf(body, sizeof(body), "peer=%s\n", inet_ntoa(peer.sin_addr));
		int rl = snprintf(resp, sizeof(resp), "HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s", bl,
				  body);
		if (write(c, resp, (size_t)rl) < 0)
			perror("write");
		close(c);
	}
}

static int start_server(void)
{
	srv_fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int q = 16;
	if (srv_fd < 0 || setsockopt(srv_fd, IPPROTO_TCP, TCP_FASTOPEN, &q, sizeof(q)) != 0 ||
	    bind(srv_fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(srv_fd, 64) != 0) {
		perror("server");
		exit(1);
	}
	socklen_t al = sizeof(a);
	getsockname(srv_fd, (struct sockaddr *)&a, &al);
	pthread_t t;
	pthread_create(&t, NULL, serve, NULL);
	pthread_detach(t);
	return ntohs(a.sin_port);
}

/* ------------------------------------------------------------------ client */

static void read_response(int i, int fd, int nonblock)
{
	char buf[4096];
	size_t got = 0;
	for (;;) {
		if (nonblock && !wait_fd(fd, POLLIN, 5000))
			break;
		ssize_t n = read(fd, buf + got, sizeof(buf) - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
		if (got == sizeof(buf) - 1)
			break;
	}
	buf[got] = '\0';
	char *eol = strstr(buf, "\r\n"), *body = strstr(buf, "\r\n\r\n");
	if (eol)
		*eol = '\0';
	printf("resp %d %s | %s", i, buf, body ? body + 4 : "\n");
	if (!body || body[4] == '\0' || body[strlen(body) - 1] != '\n')
		printf("\n");
}

static void finish(int k, int fd, int nonblock)
{
	read_response(k, fd, nonblock);
	struct tcp_info ti;
	socklen_t tl = sizeof(ti);
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) == 0)
		printf("info %d syn_data=%d\n", k, (ti.tcpi_options & TCPI_OPT_SYN_DATA) ? 1 : 0);
	fflush(stdout);
}

static void scrape(const char *path)
{
	for (int tries = 0; tries < 60; tries++) {
		int fd = socket(AF_UNIX, SOCK_STREAM, 0);
		struct sockaddr_un un = {.sun_family = AF_UNIX};
		snprintf(un.sun_path, sizeof(un.sun_path), "%s", path);
		if (connect(fd, (struct sockaddr *)&un, sizeof(un)) == 0) {
			const char *req = "GET /metrics HTTP/1.0\r\n\r\n";
			if (write(fd, req, strlen(req)) > 0) {
				static char buf[1 << 16];
				size_t got = 0;
				ssize_t n;
				while (got < sizeof(buf) - 1 && (n = read(fd, buf + got, sizeof(buf) - 1 - got)) > 0)
					got += (size_t)n;
				buf[got] = '\0';
				for (char *l = strtok(buf, "\n"); l; l = strtok(NULL, "\n"))
					if (strncmp(l, "connroute_connections_opened_total", 34) == 0)
						printf("metric %s\n", l);
			}
			close(fd);
			return;
		}
		close(fd);
		struct timespec ts = {0, 50 * 1000000L};
		nanosleep(&ts, NULL);
	}
	printf("metric none\n");
}

int main(int argc, char **argv)
{
	int use_msg = 0, nonblock = 0, hold = 0, count = 1, server = 0, defer = 0;
	const char *metrics = NULL;
	int i;
	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--sendmsg"))
			use_msg = 1;
		else if (!strcmp(argv[i], "--nonblock"))
			nonblock = 1;
		else if (!strcmp(argv[i], "--hold"))
			hold = 1;
		else if (!strcmp(argv[i], "--defer-read"))
			defer = hold = 1;
		else if (!strcmp(argv[i], "--server"))
			server = 1;
		else if (!strcmp(argv[i], "--count") && i + 1 < argc)
			count = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--metrics") && i + 1 < argc)
			metrics = argv[++i];
		else
			break;
	}
	if (argc - i != 3 || count < 1 || count > 64) {
		fprintf(stderr, "usage: tfoprog [--sendmsg] [--nonblock] [--hold] [--defer-read] [--count N] "
				"[--server] [--metrics UNIXPATH] HOST PORT PATH\n");
		return 2;
	}
	const char *host = argv[i], *path = argv[i + 2];
	int port = server ? start_server() : atoi(argv[i + 1]);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	if (server)
		host = "127.0.0.1";
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
		fprintf(stderr, "tfoprog: bad IPv4 address %s\n", host);
		return 2;
	}
	char req[512];
	int rl = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, host);
	int fds[64], sent_ok[64];
	for (int k = 0; k < count; k++) {
		int fd = socket(AF_INET, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0), 0);
		fds[k] = fd;
		ssize_t r;
		errno = 0;
		if (use_msg) {
			struct iovec iov = {.iov_base = req, .iov_len = (size_t)rl};
			struct msghdr m = {.msg_name = &sa, .msg_namelen = sizeof(sa), .msg_iov = &iov,
					   .msg_iovlen = 1};
			r = sendmsg(fd, &m, MSG_FASTOPEN | MSG_NOSIGNAL);
		} else {
			r = sendto(fd, req, (size_t)rl, MSG_FASTOPEN | MSG_NOSIGNAL, (struct sockaddr *)&sa,
				   sizeof(sa));
		}
		int e = errno;
		if (r >= 0)
			printf("send %d ret=%zd\n", k, r);
		else
			printf("send %d ret=-1 errno=%s\n", k, ename(e));
		int sent = r == rl;
		if (r < 0 && e == EINPROGRESS) {
			/* No cookie yet: the SYN went without data; connect, then send. */
			int err = 0;
			socklen_t el = sizeof(err);
			if (wait_fd(fd, POLLOUT, 5000) && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 &&
			    err == 0)
				sent = send(fd, req, (size_t)rl, MSG_NOSIGNAL) == rl;
			else
				printf("conn %d failed: %s\n", k, ename(err ? err : ETIMEDOUT));
		}
		sent_ok[k] = sent;
		if (sent && !defer)
			finish(k, fd, nonblock);
		fflush(stdout);
		if (!hold) {
			close(fd);
			fds[k] = -1;
		}
	}
	for (int k = 0; defer && k < count; k++)
		if (sent_ok[k])
			finish(k, fds[k], nonblock);
	for (int k = 0; k < count; k++)
		if (fds[k] >= 0)
			close(fds[k]);
	if (metrics)
		scrape(metrics);
	return 0;
}
