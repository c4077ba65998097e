/* connlat: connect() latency and first-request latency of fresh connections, one at a time,
 * the way a program that opens a connection per request sees them (the client of
 * bench/prewarm.sh). It never includes connroute.h: run it with and without the shim.
 *
 *   connlat --target 127.0.0.1:PORT [--n N] [--gap-us US] [--path /P] [--warmup N]
 *           [--settle-ms MS] [--kick 127.0.0.1:PORT] [--nonblock]
 *
 * Each of N [200] iterations: socket(); t0; connect() (blocking, or with --nonblock:
 * non-blocking, then poll for POLLOUT); t1; with --path: send "GET P HTTP/1.1" with
 * "Connection: close" and read the whole response (Content-Length); t2; close(); sleep
 * --gap-us [2000]. connect = t1 - t0; first request = t2 - t0 (connect + request + response:
 * the time to the first answer on a new connection).
 *
 * Before measuring: --kick ADDR makes one connect() there and closes it (a routed connect
 * starts the shim's refill thread), then --settle-ms [300] of sleep, then --warmup [1]
 * unmeasured iterations.
 *
 * Output, one line:
 *   connlat n=N errors=E connect_p50_us=X connect_p99_us=X connect_mean_us=X
 *           req_p50_us=X req_p99_us=X req_mean_us=X
 * (req_* are 0 without --path). Exit 0 when every iteration succeeded, 1 otherwise, 2 on bad
 * usage. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int parse_addr(const char *spec, struct sockaddr_in *a)
{
	char host[64];
	const char *colon = strrchr(spec, ':');
	if (!colon || (size_t)(colon - spec) >= sizeof(host))
		return -1;
	memcpy(host, spec, (size_t)(colon - spec));
	host[colon - spec] = '\0';
	memset(a, 0, sizeof(*a));
	a->sin_family = AF_INET;
	a->sin_port = htons((uint16_t)atoi(colon + 1));
	return inet_pton(AF_INET, host, &a->sin_addr) == 1 ? 0 : -1;
}

static int cmp_d(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;
	return a < b ? -1 : a > b;
}

static double pct(double *v, int n, double p)
{
	if (n <= 0)
		return 0;
	int i = (int)(p * (n - 1) + 0.5);
	return v[i];
}

static double mean(const double *v, int n)
{
	double s = 0;
	for (int i = 0; i < n; i++)
		s += v[i];
	return n > 0 ? s / n : 0;
}

/* One request with Connection: close; reads to the end of the Content-Length body (or EOF).
 * 0 on a complete 2xx/3xx response. */
static int request(int fd, const char *path)
{
	char req[512], buf[16384];
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", path);
	if (write(fd, req, (size_t)n) != n)
		return -1;
	size_t got = 0;
	double deadline = now_us() + 10e6;
	while (got < sizeof(buf) - 1 && now_us() < deadline) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 100) <= 0)
			continue;
		ssize_t r = read(fd, buf + got, sizeof(buf) - 1 - got);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
		buf[got] = '\0';
		char *body = strstr(buf, "\r\n\r\n");
		char *cl = strcasestr(buf, "Content-Length:");
		if (body && cl && got >= (size_t)(body + 4 - buf) + (size_t)atol(cl + 15))
			break;
	}
	buf[got] = '\0';
	return (got > 12 && !strncmp(buf, "HTTP/1.", 7) && (buf[9] == '2' || buf[9] == '3')) ? 0 : -1;
}

static int one(const struct sockaddr_in *a, const char *path, int nonblock, double *c_us, double *r_us)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	if (nonblock)
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	double t0 = now_us();
	int r = connect(fd, (const struct sockaddr *)a, sizeof(*a));
	if (r != 0 && nonblock && errno == EINPROGRESS) {
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		int err = 0;
		socklen_t el = sizeof(err);
		r = poll(&p, 1, 10000) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err == 0 ? 0 : -1;
	}
	double t1 = now_us();
	if (r == 0 && path) {
		if (nonblock)
			fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
		r = request(fd, path);
	}
	double t2 = now_us();
	close(fd);
	*c_us = t1 - t0;
	*r_us = t2 - t0;
	return r;
}

int main(int argc, char **argv)
{
	const char *target = NULL, *path = NULL, *kick = NULL;
	int n = 200, warmup = 1, settle_ms = 300, nonblock = 0;
	long gap_us = 2000;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--nonblock")) {
			nonblock = 1;
			continue;
		}
		if (!v) {
			fprintf(stderr, "connlat: %s needs a value\n", a);
			return 2;
		}
		if (!strcmp(a, "--target"))
			target = v;
		else if (!strcmp(a, "--n"))
			n = atoi(v);
		else if (!strcmp(a, "--gap-us"))
			gap_us = atol(v);
		else if (!strcmp(a, "--path"))
			path = v;
		else if (!strcmp(a, "--warmup"))
			warmup = atoi(v);
		else if (!strcmp(a, "--settle-ms"))
			settle_ms = atoi(v);
		else if (!strcmp(a, "--kick"))
			kick = v;
		else {
			fprintf(stderr, "connlat: unknown option %s\n", a);
			return 2;
		}
		i++;
	}
	struct sockaddr_in addr, kaddr;
	if (!target || parse_addr(target, &addr) != 0 || n < 1 || n > 1000000 || (kick && parse_addr(kick, &kaddr) != 0)) {
		fprintf(stderr, "usage: connlat --target 127.0.0.1:PORT [--n N] [--gap-us US] [--path /P] "
				"[--warmup N] [--settle-ms MS] [--kick 127.0.0.1:PORT] [--nonblock]\n");
		return 2;
	}
	if (kick) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd >= 0) {
			(void)connect(fd, (struct sockaddr *)&kaddr, sizeof(kaddr));
			close(fd);
		}
	}
	if (settle_ms > 0)
		usleep((useconds_t)settle_ms * 1000);
	double *cs = calloc((size_t)n, sizeof(double)), *rs = calloc((size_t)n, sizeof(double));
	if (!cs || !rs)
		return 2;
	int errors = 0, m = 0;
	for (int i = 0; i < warmup + n; i++) {
		double c, r;
		int rc = one(&addr, path, nonblock, &c, &r);
		if (i >= warmup) {
			if (rc != 0) {
				errors++;
			} else {
				cs[m] = c;
				rs[m] = r;
				m++;
			}
		}
		if (gap_us > 0)
			usleep((useconds_t)gap_us);
	}
	double cmean = mean(cs, m), rmean = mean(rs, m);
	qsort(cs, (size_t)m, sizeof(double), cmp_d);
	qsort(rs, (size_t)m, sizeof(double), cmp_d);
	printf("connlat n=%d errors=%d connect_p50_us=%.1f connect_p99_us=%.1f connect_mean_us=%.1f "
	       "req_p50_us=%.1f req_p99_us=%.1f req_mean_us=%.1f\n",
	       m, errors, pct(cs, m, 0.5), pct(cs, m, 0.99), cmean, path ? pct(rs, m, 0.5) : 0,
	       path ? pct(rs, m, 0.99) : 0, path ? rmean : 0);
	free(cs);
	free(rs);
	return errors ? 1 : 0;
}
