/* connflood: many threads, a new TCP connection per request (the client of bench/limitq.sh).
 * It never includes connroute.h.
 *
 *   connflood PORT THREADS SECONDS [PATH]
 *
 * Each thread, until SECONDS have passed: socket(); blocking connect() to 127.0.0.1:PORT;
 * "GET PATH [/] HTTP/1.1" with Connection: close; read until EOF; close(). A failed connect
 * (a connection limit's queue timeout under connroute) counts as an error. One line at the
 * end, with this process's own CPU time (getrusage):
 *   connflood threads=N secs=S requests=R errors=E rps=X user_s=U sys_s=Y
 * Exit 0. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_in dst;
static const char *path = "/";
static double end_at;
static atomic_long requests, errors;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int one(void)
{
	char buf[4096];
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&dst, sizeof(dst)) != 0) {
		close(fd);
		return -1;
	}
	int n = snprintf(buf, sizeof(buf), "GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", path);
	int ok = write(fd, buf, (size_t)n) == n;
	size_t got = 0;
	for (;;) {
		ssize_t k = read(fd, buf, sizeof(buf));
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		got += (size_t)k;
	}
	close(fd);
	return ok && got > 0 ? 0 : -1;
}

static void *worker(void *arg)
{
	(void)arg;
	while (now_s() < end_at) {
		if (one() == 0)
			atomic_fetch_add(&requests, 1);
		else
			atomic_fetch_add(&errors, 1);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 4 || argc > 5) {
		fprintf(stderr, "usage: connflood PORT THREADS SECONDS [PATH]\n");
		return 2;
	}
	int n = atoi(argv[2]);
	double secs = atof(argv[3]);
	if (n < 1 || n > 4096 || secs <= 0)
		return 2;
	if (argc == 5)
		path = argv[4];
	dst.sin_family = AF_INET;
	dst.sin_port = htons((uint16_t)atoi(argv[1]));
	inet_pton(AF_INET, "127.0.0.1", &dst.sin_addr);
	pthread_t *t = calloc((size_t)n, sizeof(*t));
	pthread_attr_t at;
	pthread_attr_init(&at);
	pthread_attr_setstacksize(&at, 256 * 1024);
	double t0 = now_s();
	end_at = t0 + secs;
	int started = 0;
	for (; started < n; started++)
		if (pthread_create(&t[started], &at, worker, NULL) != 0)
			break;
	for (int i = 0; i < started; i++)
		pthread_join(t[i], NULL);
	double el = now_s() - t0;
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	printf("connflood threads=%d secs=%.2f requests=%ld errors=%ld rps=%.0f user_s=%.2f sys_s=%.2f\n", started,
	       el, atomic_load(&requests), atomic_load(&errors), atomic_load(&requests) / el,
	       ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6, ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
	free(t);
	return 0;
}
