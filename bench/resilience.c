/* bench/resilience: a libcurl client for bench/resilience.sh. THREADS threads, each with a
 * persistent handle, request URL in a closed loop (PAUSE ms between two requests) for
 * END ms. The host name resolves (CURLOPT_RESOLVE) to two addresses; even threads list A
 * first, odd threads B first (what DNS round-robin does across clients). An ordinary
 * program: it never includes connroute.h; the shim (or not) is the script's choice.
 *
 *   resilience URL HOST:PORT A B THREADS END_MS PAUSE_MS TIMEOUT_MS FAULT_MS HEAL_MS [CTL]
 *
 * With CTL (the control port of the test upstream on B), the client arms the faults itself,
 * on its own clock: at FAULT_MS B closes every request unanswered (drop), halfway to HEAL_MS
 * it hangs every request instead (hang_headers), at HEAL_MS it heals (plain GETs on a raw
 * socket).
 *
 * Prints one line per phase (healthy [0, FAULT), fault [FAULT, HEAL), healed [HEAL, END)):
 *   phase NAME requests=N errors=N error_pct=P p50_ms=X p99_ms=Y max_ms=Z
 * then, relative to FAULT and HEAL:
 *   fault_errors_after_ms=T errors_after=N requests_after=N error_pct_after=P p99_after_ms=Y
 *     (T: the last error of the first second after FAULT: errors before it are the ones
 *      that found the address failing before it was skipped)
 *   b_last_before_heal_ms=T b_first_after_heal_ms=T recovery_ms=T
 *     (requests served by B; recovery = first served by B after HEAL - HEAL) */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct rec {
	int t_ms;  /* start, since the run's start */
	int us;    /* latency */
	char ok;   /* CURLE_OK and status < 500 */
	char on_b; /* served by address B */
};

static const char *url, *hostport, *addr_a, *addr_b;
static int nthreads, end_ms, pause_ms, timeout_ms;
static struct timespec t0;
static struct rec *recs[64];
static int nrecs[64];
#define MAXREC 400000

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (ts.tv_sec - t0.tv_sec) * 1e3 + (ts.tv_nsec - t0.tv_nsec) / 1e6;
}

static size_t sink(void *p, size_t s, size_t n, void *u)
{
	(void)p;
	(void)u;
	return s * n;
}

static void *worker(void *arg)
{
	int me = (int)(intptr_t)arg;
	char res[256];
	snprintf(res, sizeof(res), "%s:%s,%s", hostport, me % 2 ? addr_b : addr_a,
		 me % 2 ? addr_a : addr_b);
	struct curl_slist *rl = curl_slist_append(NULL, res);
	CURL *h = curl_easy_init();
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_RESOLVE, rl);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
	recs[me] = calloc(MAXREC, sizeof(struct rec));
	while (nrecs[me] < MAXREC) {
		double s = now_ms();
		if (s >= end_ms)
			break;
		CURLcode rc = curl_easy_perform(h);
		double e = now_ms();
		long status = 0;
		char *ip = NULL;
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
		curl_easy_getinfo(h, CURLINFO_PRIMARY_IP, &ip);
		struct rec *r = &recs[me][nrecs[me]++];
		r->t_ms = (int)s;
		r->us = (int)((e - s) * 1000);
		r->ok = rc == CURLE_OK && status > 0 && status < 500;
		r->on_b = rc == CURLE_OK && ip && !strcmp(ip, addr_b);
		if (pause_ms)
			usleep((useconds_t)pause_ms * 1000);
	}
	curl_easy_cleanup(h);
	curl_slist_free_all(rl);
	return NULL;
}

static int ctl_port;

/* GET PATH on B's control port (a raw socket: no libcurl). */
static void ctl(const char *path)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)ctl_port)};
	inet_pton(AF_INET, addr_b, &a.sin_addr);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	char req[256], buf[512];
	if (fd < 0)
		return;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
		int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\n\r\n", path);
		if (write(fd, req, (size_t)n) == n)
			while (read(fd, buf, sizeof(buf)) > 0)
				;
	} else {
		fprintf(stderr, "resilience: control port: connect failed\n");
	}
	close(fd);
}

static void sleep_until(double ms)
{
	double d = ms - now_ms();
	if (d > 0)
		usleep((useconds_t)(d * 1000));
}

static int fault_ms, heal_ms;

static void *faults(void *arg)
{
	(void)arg;
	ctl("/inject?fault=none");
	sleep_until(fault_ms);
	ctl("/inject?fault=drop&count=1000000");
	sleep_until((fault_ms + heal_ms) / 2.0);
	ctl("/inject?fault=none");
	ctl("/inject?fault=hang_headers&count=1000000&ms=5000");
	sleep_until(heal_ms);
	ctl("/inject?fault=none");
	return NULL;
}

static int cmp_int(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	return x < y ? -1 : x > y;
}

static int *lat;

/* Requests starting in [from, to): count, errors, latency quantiles. */
static void phase(const char *name, int from, int to)
{
	int n = 0, err = 0;
	for (int t = 0; t < nthreads; t++)
		for (int i = 0; i < nrecs[t]; i++) {
			struct rec *r = &recs[t][i];
			if (r->t_ms < from || r->t_ms >= to)
				continue;
			lat[n++] = r->us;
			err += !r->ok;
		}
	qsort(lat, (size_t)n, sizeof(int), cmp_int);
	printf("phase %s requests=%d errors=%d error_pct=%.2f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
	       name, n, err, n ? 100.0 * err / n : 0, n ? lat[n / 2] / 1e3 : 0,
	       n ? lat[(int)(n * 0.99)] / 1e3 : 0, n ? lat[n - 1] / 1e3 : 0);
}

int main(int argc, char **argv)
{
	if (argc != 11 && argc != 12) {
		fprintf(stderr, "usage: resilience URL HOST:PORT A B THREADS END_MS PAUSE_MS "
				"TIMEOUT_MS FAULT_MS HEAL_MS [CTL]\n");
		return 2;
	}
	url = argv[1];
	hostport = argv[2];
	addr_a = argv[3];
	addr_b = argv[4];
	nthreads = atoi(argv[5]);
	end_ms = atoi(argv[6]);
	pause_ms = atoi(argv[7]);
	timeout_ms = atoi(argv[8]);
	int fault = atoi(argv[9]), heal = atoi(argv[10]);
	fault_ms = fault;
	heal_ms = heal;
	ctl_port = argc == 12 ? atoi(argv[11]) : 0;
	if (nthreads < 1 || nthreads > 64)
		return 2;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pthread_t th[64], ft;
	if (ctl_port)
		pthread_create(&ft, NULL, faults, NULL);
	for (intptr_t i = 0; i < nthreads; i++)
		pthread_create(&th[i], NULL, worker, (void *)i);
	for (int i = 0; i < nthreads; i++)
		pthread_join(th[i], NULL);
	if (ctl_port)
		pthread_join(ft, NULL);
	lat = malloc(sizeof(int) * (size_t)MAXREC * (size_t)nthreads);
	phase("healthy", 0, fault);
	phase("fault", fault, heal);
	phase("healed", heal, end_ms);
	/* The errors that found B failing before it was skipped: those up to the last
	 * error in the first second of the fault. */
	int last = -1;
	for (int t = 0; t < nthreads; t++)
		for (int i = 0; i < nrecs[t]; i++) {
			struct rec *r = &recs[t][i];
			if (!r->ok && r->t_ms >= fault && r->t_ms < fault + 1000 && r->t_ms > last)
				last = r->t_ms;
		}
	int from = last >= 0 ? last + 1 : fault;
	char name[32];
	snprintf(name, sizeof(name), "fault_after_%dms", from - fault);
	phase(name, from, heal);
	int b_before = -1, b_after = -1;
	for (int t = 0; t < nthreads; t++)
		for (int i = 0; i < nrecs[t]; i++) {
			struct rec *r = &recs[t][i];
			if (!r->on_b)
				continue;
			if (r->t_ms < heal && r->t_ms >= fault && r->t_ms > b_before)
				b_before = r->t_ms;
			if (r->t_ms >= heal && (b_after < 0 || r->t_ms < b_after))
				b_after = r->t_ms;
		}
	printf("fault_errors_until_ms=%d b_last_ok_in_fault_ms=%d recovery_ms=%d\n",
	       last >= 0 ? last - fault : -1, b_before >= 0 ? b_before - fault : -1,
	       b_after >= 0 ? b_after - heal : -1);
	return 0;
}
