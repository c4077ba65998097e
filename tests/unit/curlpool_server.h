/* A tiny in-process HTTP/1.1 keep-alive server for the curlpool tests:
 * answers every request with "ok", counts accepted connections and
 * requests. Requests for /hold... are answered only once ts_release() is
 * called after ts_hold(). */
#ifndef CURLPOOL_SERVER_H
#define CURLPOOL_SERVER_H

#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int ts_lfd = -1, ts_portnum;
static atomic_int ts_acc, ts_stopping, ts_reqs, ts_holding;
static pthread_t ts_thr;

static void *ts_conn(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char buf[4096];
	size_t have = 0;
	for (int rounds = 0; rounds < 100000 && !atomic_load(&ts_stopping); rounds++) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 100) <= 0)
			continue;
		ssize_t n = read(fd, buf + have, sizeof(buf) - have - 1);
		if (n <= 0)
			break;
		have += (size_t)n;
		buf[have] = '\0';
		char *end;
		while ((end = strstr(buf, "\r\n\r\n"))) {
			atomic_fetch_add(&ts_reqs, 1);
			while (!strncmp(buf, "GET /hold", 9) && atomic_load(&ts_holding) && !atomic_load(&ts_stopping))
				usleep(1000);
			static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n";
			if (write(fd, resp, sizeof(resp) - 1) < 0)
				goto out;
			size_t used = (size_t)(end + 4 - buf);
			memmove(buf, end + 4, have - used + 1);
			have -= used;
		}
	}
out:
	close(fd);
	return NULL;
}

static void *ts_loop(void *arg)
{
	(void)arg;
	while (!atomic_load(&ts_stopping)) {
		struct pollfd p = {.fd = ts_lfd, .events = POLLIN};
		if (poll(&p, 1, 50) <= 0)
			continue;
		int c = accept(ts_lfd, NULL, NULL);
		if (c < 0)
			continue;
		atomic_fetch_add(&ts_acc, 1);
		pthread_t t;
		pthread_create(&t, NULL, ts_conn, (void *)(intptr_t)c);
		pthread_detach(t);
	}
	return NULL;
}

static void ts_start(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sa);
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	ts_lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bind(ts_lfd, (struct sockaddr *)&sa, sizeof(sa));
	listen(ts_lfd, 128);
	getsockname(ts_lfd, (struct sockaddr *)&sa, &sl);
	ts_portnum = ntohs(sa.sin_port);
	pthread_create(&ts_thr, NULL, ts_loop, NULL);
}

static void ts_stop(void)
{
	atomic_store(&ts_stopping, 1);
	pthread_join(ts_thr, NULL);
	close(ts_lfd);
}

static int ts_port(void)
{
	return ts_portnum;
}

static int ts_accepted(void)
{
	return atomic_load(&ts_acc);
}

static inline int ts_requests(void)
{
	return atomic_load(&ts_reqs);
}

static inline void ts_hold(void)
{
	atomic_store(&ts_holding, 1);
}

static inline void ts_release(void)
{
	atomic_store(&ts_holding, 0);
}

#endif
