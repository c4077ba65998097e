/* payments: the demo client. A plain libcurl program (it never includes connroute.h) shaped
 * like the seed article's payment service before its fix:
 *
 *   - C "critical" threads make small, fast calls (GET CRITICAL_PATH, default "/");
 *   - B "batch" threads hit a slow endpoint (GET BATCH_PATH, default "/slow");
 *   - both go to the same upstream, and every request builds a new handle
 *     (curl_easy_init / setopt / perform / cleanup): the "new client per request"
 *     anti-pattern, so without help each request pays a TCP + TLS handshake;
 *   - one static, process-wide connection limit, --shared-limit N: a counting semaphore
 *     around every perform, the way a single tuned transport's MaxConnsPerHost serializes
 *     every caller behind the same N connections (0 = off).
 *
 * Each thread names itself (pthread_setname_np) "critical-N" or "batch-N" before its first
 * libcurl call, so that a connroute config's [threads] rules can give the two kinds of
 * thread different routing keys without any change to this program:
 *
 *   [threads]
 *   critical-* = payment-gateway/critical
 *   batch-* = reports/batch
 *
 *   payments [options] BASE_URL          e.g. https://localhost:8443
 *
 * Options:
 *   --critical N          critical threads [4]
 *   --batch N             batch threads [16]
 *   --duration-ms N       stop starting requests after N ms [10000]
 *   --shared-limit N      at most N performs in flight in the whole process (0 = off) [0]
 *   --critical-path P     [/]
 *   --batch-path P        [/slow]
 *   --critical-pause-ms N pause between two requests of a critical thread [0]
 *   --batch-pause-ms N    pause between two requests of a batch thread [0]
 *   --timeout-ms N        CURLOPT_TIMEOUT_MS of every request [10000]
 *   --cacert FILE         CURLOPT_CAINFO (else libcurl's default CA store)
 *   --insecure            no certificate verification
 *   --max-requests N      per thread, an upper bound [2000000]
 *   --dump FILE           one line per request: "<class> <ms> <ok 0|1> <start_ms> <thread>"
 *                         (start_ms: when it started, from the program's start)
 *   --slow-ms N           print a line with libcurl's timings for every request slower than
 *                         N ms: "slow <thread> <i> ms=.. code=.. connects=.. connect_ms=..
 *                         tls_ms=.. first_byte_ms=.. total_ms=.." (curl's own clock) [0 = off]
 *
 * Output (stdout), one line per class and a total; latency is measured from before
 * curl_easy_init to after curl_easy_cleanup (waiting for the shared limit included), and
 * the percentiles are taken over every request that completed, failed ones included:
 *   class=critical threads=C requests=N ok=N errors=N rps=R p50_ms=X p95_ms=X p99_ms=X max_ms=X
 *   class=batch ...
 *   total requests=N ok=N errors=N secs=S rps=R cpu_s=S shared_limit=N
 * Exit status 0 if every request was ok, 1 if some failed, 2 on bad usage. */
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

enum { CRIT = 0, BATCH = 1 };
static const char *const class_name[2] = {"critical", "batch"};

static struct {
	int threads[2];
	long duration_ms;
	int shared_limit;
	const char *path[2];
	long pause_ms[2];
	long timeout_ms;
	const char *cacert;
	int insecure;
	long max_requests;
	const char *dump;
	long slow_ms;
	const char *base;
} opt = {
	.threads = {4, 16},
	.duration_ms = 10000,
	.path = {"/", "/slow"},
	.timeout_ms = 10000,
	.max_requests = 2000000,
};

struct worker {
	pthread_t tid;
	int cls;
	int index;
	float *lat;      /* ms */
	float *start;    /* ms since the program's start */
	unsigned char *ok;
	long n, cap;
	long errors;
	char url[1024];
};

static sem_t limit_sem;
static long long t_start_ns, deadline_ns;
static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
	}
}

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("payments: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(2);
}

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
	return size * n;
}

static void record(struct worker *w, double start_ms, double ms, int ok)
{
	if (w->n == w->cap) {
		long cap = w->cap ? w->cap * 2 : 4096;
		float *l = realloc(w->lat, (size_t)cap * sizeof *l);
		if (!l)
			die("out of memory");
		w->lat = l;
		float *st = realloc(w->start, (size_t)cap * sizeof *st);
		if (!st)
			die("out of memory");
		w->start = st;
		unsigned char *o = realloc(w->ok, (size_t)cap);
		if (!o)
			die("out of memory");
		w->ok = o;
		w->cap = cap;
	}
	w->lat[w->n] = (float)ms;
	w->start[w->n] = (float)start_ms;
	w->ok[w->n] = (unsigned char)ok;
	w->n++;
	if (!ok)
		w->errors++;
}

static void print_slow(struct worker *w, long i, CURL *h, CURLcode rc, double ms)
{
	curl_off_t c = 0, a = 0, st = 0, tot = 0;
	long connects = 0;
	curl_easy_getinfo(h, CURLINFO_CONNECT_TIME_T, &c);
	curl_easy_getinfo(h, CURLINFO_APPCONNECT_TIME_T, &a);
	curl_easy_getinfo(h, CURLINFO_STARTTRANSFER_TIME_T, &st);
	curl_easy_getinfo(h, CURLINFO_TOTAL_TIME_T, &tot);
	curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &connects);
	pthread_mutex_lock(&out_mu);
	printf("slow %s-%d %ld at_ms=%.0f ms=%.3f code=%d connects=%ld connect_ms=%.3f tls_ms=%.3f "
	       "first_byte_ms=%.3f total_ms=%.3f\n",
	       class_name[w->cls], w->index, i, (double)(now_ns() - t_start_ns) / 1e6 - ms, ms, (int)rc,
	       connects, (double)c / 1e3, (double)a / 1e3, (double)st / 1e3, (double)tot / 1e3);
	fflush(stdout);
	pthread_mutex_unlock(&out_mu);
}

static void *run(void *arg)
{
	struct worker *w = arg;
	char name[16];
	snprintf(name, sizeof name, "%s-%d", class_name[w->cls], w->index);
	pthread_setname_np(pthread_self(), name);

	for (long i = 0; i < opt.max_requests && now_ns() < deadline_ns; i++) {
		if (i && opt.pause_ms[w->cls])
			sleep_ms(opt.pause_ms[w->cls]);
		long long t0 = now_ns();
		/* A new client per request, as the legacy code did. */
		CURL *h = curl_easy_init();
		if (!h)
			die("curl_easy_init failed");
		curl_easy_setopt(h, CURLOPT_URL, w->url);
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
		curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, opt.timeout_ms);
		if (opt.cacert)
			curl_easy_setopt(h, CURLOPT_CAINFO, opt.cacert);
		if (opt.insecure) {
			curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
			curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
		}
		if (opt.shared_limit)
			while (sem_wait(&limit_sem) != 0 && errno == EINTR) {
			}
		CURLcode rc = curl_easy_perform(h);
		if (opt.shared_limit)
			sem_post(&limit_sem);
		long status = 0;
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
		double ms = (double)(now_ns() - t0) / 1e6;
		if (opt.slow_ms && ms >= (double)opt.slow_ms)
			print_slow(w, i, h, rc, ms);
		curl_easy_cleanup(h);
		ms = (double)(now_ns() - t0) / 1e6;
		record(w, (double)(t0 - t_start_ns) / 1e6, ms, rc == CURLE_OK && status > 0 && status < 400);
	}
	return NULL;
}

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted run. */
static double pct(const float *v, long n, double p)
{
	if (n <= 0)
		return 0;
	long k = (long)(p / 100.0 * (double)n + 0.999999);
	if (k < 1)
		k = 1;
	if (k > n)
		k = n;
	return v[k - 1];
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
	fputs("usage: payments [--critical N] [--batch N] [--duration-ms N] [--shared-limit N]\n"
	      "  [--critical-path P] [--batch-path P] [--critical-pause-ms N] [--batch-pause-ms N]\n"
	      "  [--timeout-ms N] [--cacert FILE] [--insecure] [--max-requests N] [--dump FILE]\n"
	      "  [--slow-ms N]\n"
	      "  BASE_URL\n",
	      stderr);
	exit(2);
}

int main(int argc, char **argv)
{
	for (int a = 1; a < argc; a++) {
		const char *s = argv[a];
#define ARG() (a + 1 < argc ? argv[++a] : (usage(), ""))
		if (!strcmp(s, "--critical"))
			opt.threads[CRIT] = (int)parse_long(s, ARG(), 0, 512);
		else if (!strcmp(s, "--batch"))
			opt.threads[BATCH] = (int)parse_long(s, ARG(), 0, 512);
		else if (!strcmp(s, "--duration-ms"))
			opt.duration_ms = parse_long(s, ARG(), 1, 3600000);
		else if (!strcmp(s, "--shared-limit"))
			opt.shared_limit = (int)parse_long(s, ARG(), 0, 100000);
		else if (!strcmp(s, "--critical-path"))
			opt.path[CRIT] = ARG();
		else if (!strcmp(s, "--batch-path"))
			opt.path[BATCH] = ARG();
		else if (!strcmp(s, "--critical-pause-ms"))
			opt.pause_ms[CRIT] = parse_long(s, ARG(), 0, 60000);
		else if (!strcmp(s, "--batch-pause-ms"))
			opt.pause_ms[BATCH] = parse_long(s, ARG(), 0, 60000);
		else if (!strcmp(s, "--timeout-ms"))
			opt.timeout_ms = parse_long(s, ARG(), 1, 3600000);
		else if (!strcmp(s, "--cacert"))
			opt.cacert = ARG();
		else if (!strcmp(s, "--insecure"))
			opt.insecure = 1;
		else if (!strcmp(s, "--max-requests"))
			opt.max_requests = parse_long(s, ARG(), 1, 100000000);
		else if (!strcmp(s, "--dump"))
			opt.dump = ARG();
		else if (!strcmp(s, "--slow-ms"))
			opt.slow_ms = parse_long(s, ARG(), 0, 3600000);
		else if (!strcmp(s, "-h") || !strcmp(s, "--help"))
			usage();
		else if (s[0] == '-' && s[1])
			die("unknown option '%s'", s);
		else if (!opt.base)
			opt.base = s;
		else
			usage();
#undef ARG
	}
	if (!opt.base)
		usage();
	if (opt.threads[CRIT] + opt.threads[BATCH] == 0)
		die("no threads (--critical 0 --batch 0)");
	size_t bl = strlen(opt.base);
	while (bl > 0 && opt.base[bl - 1] == '/')
		bl--;

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		die("curl_global_init failed");
	if (opt.shared_limit && sem_init(&limit_sem, 0, (unsigned)opt.shared_limit) != 0)
		die("sem_init: %s", strerror(errno));

	int nw = opt.threads[CRIT] + opt.threads[BATCH];
	struct worker *w = calloc((size_t)nw, sizeof *w);
	if (!w)
		die("out of memory");
	t_start_ns = now_ns();
	deadline_ns = t_start_ns + opt.duration_ms * 1000000LL;
	for (int k = 0, c = 0; c < 2; c++) {
		for (int i = 0; i < opt.threads[c]; i++, k++) {
			w[k].cls = c;
			w[k].index = i;
			const char *p = opt.path[c];
			snprintf(w[k].url, sizeof w[k].url, "%.*s%s%s", (int)bl, opt.base,
				 p[0] == '/' ? "" : "/", p);
			int e = pthread_create(&w[k].tid, NULL, run, &w[k]);
			if (e)
				die("pthread_create: %s", strerror(e));
		}
	}
	for (int k = 0; k < nw; k++)
		pthread_join(w[k].tid, NULL);
	double secs = (double)(now_ns() - t_start_ns) / 1e9;

	FILE *dump = NULL;
	if (opt.dump && !(dump = fopen(opt.dump, "w")))
		die("cannot write %s: %s", opt.dump, strerror(errno));

	long tot_n = 0, tot_err = 0;
	for (int c = 0; c < 2; c++) {
		long n = 0, errs = 0;
		for (int k = 0; k < nw; k++)
			if (w[k].cls == c)
				n += w[k].n;
		float *all = malloc((size_t)(n ? n : 1) * sizeof *all);
		if (!all)
			die("out of memory");
		long m = 0;
		for (int k = 0; k < nw; k++) {
			if (w[k].cls != c)
				continue;
			errs += w[k].errors;
			for (long j = 0; j < w[k].n; j++) {
				all[m++] = w[k].lat[j];
				if (dump)
					fprintf(dump, "%s %.3f %d %.1f %d\n", class_name[c], w[k].lat[j],
						w[k].ok[j], w[k].start[j], w[k].index);
			}
		}
		qsort(all, (size_t)n, sizeof *all, cmp_float);
		if (opt.threads[c])
			printf("class=%s threads=%d requests=%ld ok=%ld errors=%ld rps=%.1f p50_ms=%.3f "
			       "p95_ms=%.3f p99_ms=%.3f max_ms=%.3f\n",
			       class_name[c], opt.threads[c], n, n - errs, errs, (double)n / secs,
			       pct(all, n, 50), pct(all, n, 95), pct(all, n, 99), n ? all[n - 1] : 0.0);
		free(all);
		tot_n += n;
		tot_err += errs;
	}
	if (dump && fclose(dump) != 0)
		die("cannot write %s", opt.dump);

	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
		     (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
	printf("total requests=%ld ok=%ld errors=%ld secs=%.3f rps=%.1f cpu_s=%.3f shared_limit=%d\n",
	       tot_n, tot_n - tot_err, tot_err, secs, (double)tot_n / secs, cpu, opt.shared_limit);
	fflush(stdout);

	for (int k = 0; k < nw; k++) {
		free(w[k].lat);
		free(w[k].start);
		free(w[k].ok);
	}
	free(w);
	if (opt.shared_limit)
		sem_destroy(&limit_sem);
	curl_global_cleanup();
	return tot_err ? 1 : 0;
}
