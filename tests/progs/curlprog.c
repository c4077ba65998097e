/* curlprog: an ordinary, configurable libcurl client. It never includes connroute.h: it is
 * the kind of unmodified program the shim must improve (or at least never break), and the
 * client of bench/reuse.sh.
 *
 *   curlprog [options] URL
 *
 * Modes (--mode):
 *   fresh               curl_easy_init/setopt/perform/cleanup for every request (the common
 *                       anti-pattern: without help, one new TCP (+TLS) connection each time)
 *   persistent          one handle per thread, reused for every request
 *   thread-per-request  a new thread per request (at most --threads at once), each doing
 *                       init/perform/cleanup
 *
 * Options:
 *   --threads N            worker threads (concurrency for thread-per-request) [1]
 *   --requests N           requests per thread (total for thread-per-request) [10]; with
 *                          --duration-ms this is the upper bound [1000000]
 *   --duration-ms N        stop starting requests after N ms
 *   --pause-ms N           sleep N ms between two requests of a thread
 *   --sync-first           a thread starts its request 1 only once every thread has done
 *                          its request 0 (a barrier; not with thread-per-request): a test
 *                          need not assume the threads start at the same time
 *   --path-seq P1,P2,...   request i goes to URL + P[i % count] (i counted per thread;
 *                          overall for thread-per-request)
 *   --cacert FILE  --insecure
 *   --method GET|POST|PUT|DELETE|HEAD   --data STR (POSTFIELDS; alone it means POST)
 *   --header 'H: v'        repeatable (HTTPHEADER)
 *   --cookies              cookie engine on every handle (COOKIEFILE "")
 *   --user U:P             USERPWD on every handle ...
 *   --user-first-only      ... or only on the handle of request 0 of each thread
 *   --own-share            the program's own CURLSH sharing CONNECT (mutex lock callbacks),
 *                          set on every handle
 *   --share-per-thread     each worker thread its own CURLSH (CONNECT, SSL_SESSION, DNS) for
 *                          all its handles: the best a program with a new handle per request
 *                          can do by itself (a reference for bench/reuse; not with
 *                          thread-per-request)
 *   --forbid-reuse  --fresh-connect
 *   --resolve H:P:A1[,A2]  CURLOPT_RESOLVE (one host name, several addresses)
 *   --timeout-ms N  --connect-timeout-ms N
 *   --errbuf               CURLOPT_ERRORBUFFER, printed on error
 *   --print-body           print the first line of each body as "body <line>"
 *   --print-body-all       print every line of each body as "body <line>"
 *   --print-conn           print "conn <X-Conn-Id>" per request
 *   --print-fds            print "fds_start N" and, after all cleanup, "fds_end N"
 *   --list-fds             as --print-fds, and then "fd <n> <target>" per open fd
 *   --quiet                no per-request lines
 *
 * Output: per request "req <thread> <i> code=<CURLcode> status=<http> conn=<id|-> ms=<ms>"
 * (+ " errbuf=<text>" on error with --errbuf), then the --print-* lines of that request; the
 * lines of one request are written together. At the end:
 *   summary requests=N ok=N errors=N secs=S rps=R p50_ms=X p99_ms=Y
 * ok = CURLE_OK and an HTTP status below 400. Exit status 0 when every request was ok, 1
 * when some failed, 2 on bad usage or setup failure. */
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "conn_id.h"

enum mode { M_FRESH, M_PERSISTENT, M_TPR };

static struct {
	enum mode mode;
	int threads;
	long requests;
	int requests_set;
	long duration_ms;
	long pause_ms;
	int sync_first;
	const char *url;
	char **paths;
	int npaths;
	const char *cacert;
	int insecure;
	const char *method;
	const char *data;
	struct curl_slist *headers;
	int cookies;
	const char *user;
	int user_first_only;
	int own_share;
	int share_per_thread;
	int forbid_reuse;
	int fresh_connect;
	struct curl_slist *resolve;
	long timeout_ms;
	long connect_timeout_ms;
	int errbuf;
	int print_body; /* 0 none, 1 first line, 2 all lines */
	int print_conn;
	int print_fds; /* 1 counts, 2 also lists */
	int quiet;
} opt = {.mode = M_FRESH, .threads = 1, .requests = 10, .method = "GET"};

#define BODY_CAP (1u << 20)

static CURLSH *share;
static pthread_mutex_t share_mu[CURL_LOCK_DATA_LAST];
static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;
static long long t_start_ns, deadline_ns;
static float *lat;            /* ms, one slot per possible request */
static long lat_slots;        /* per thread (or total for thread-per-request) */
static long *row_n;           /* completed requests per latency row */
static atomic_long n_ok, n_err;

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

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory's own fd */
}

/* "fd <n> <readlink target>" for every open fd: what a leak consists of. */
static void list_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return;
	int self = dirfd(d);
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.' || atoi(e->d_name) == self)
			continue;
		char path[300], target[256];
		snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
		ssize_t n = readlink(path, target, sizeof target - 1);
		target[n > 0 ? n : 0] = '\0';
		printf("fd %s %s\n", e->d_name, target);
	}
	closedir(d);
}

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("curlprog: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(2);
}

/* ---- per-request state ----------------------------------------------------------- */

struct xfer {
	char *body;
	size_t len;
	char conn[32];
	char err[CURL_ERROR_SIZE];
};

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
	struct xfer *x = ud;
	size_t k = size * n;
	if (x->len < BODY_CAP) {
		size_t take = k < BODY_CAP - x->len ? k : BODY_CAP - x->len;
		memcpy(x->body + x->len, p, take);
		x->len += take;
	}
	return k; /* beyond the cap: discard, keep going */
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
	struct xfer *x = ud;
	conn_id_header(p, size * n, x->conn, sizeof x->conn);
	return size * n;
}

static void lock_cb(CURL *h, curl_lock_data data, curl_lock_access access, void *ud)
{
	if (data >= 0 && data < CURL_LOCK_DATA_LAST)
		pthread_mutex_lock(&share_mu[data]);
}

static void unlock_cb(CURL *h, curl_lock_data data, void *ud)
{
	if (data >= 0 && data < CURL_LOCK_DATA_LAST)
		pthread_mutex_unlock(&share_mu[data]);
}

/* Options set once per handle (whether fresh or persistent). */
static void setup_handle(CURL *h, struct xfer *x, long i, CURLSH *thread_share)
{
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
	if (opt.threads > 1 || opt.mode == M_TPR)
		curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	if (opt.cacert)
		curl_easy_setopt(h, CURLOPT_CAINFO, opt.cacert);
	if (opt.insecure) {
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	const char *m = opt.method;
	if (!strcmp(m, "POST")) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, opt.data ? opt.data : "");
	} else if (!strcmp(m, "HEAD")) {
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	} else if (strcmp(m, "GET") != 0) {
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, m);
		if (opt.data)
			curl_easy_setopt(h, CURLOPT_POSTFIELDS, opt.data);
	}
	if (opt.headers)
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, opt.headers);
	if (opt.cookies)
		curl_easy_setopt(h, CURLOPT_COOKIEFILE, "");
	if (opt.user && (!opt.user_first_only || i == 0))
		curl_easy_setopt(h, CURLOPT_USERPWD, opt.user);
	if (share)
		curl_easy_setopt(h, CURLOPT_SHARE, share);
	else if (thread_share)
		curl_easy_setopt(h, CURLOPT_SHARE, thread_share);
	if (opt.forbid_reuse)
		curl_easy_setopt(h, CURLOPT_FORBID_REUSE, 1L);
	if (opt.fresh_connect)
		curl_easy_setopt(h, CURLOPT_FRESH_CONNECT, 1L);
	if (opt.resolve)
		curl_easy_setopt(h, CURLOPT_RESOLVE, opt.resolve);
	if (opt.timeout_ms > 0)
		curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, opt.timeout_ms);
	if (opt.connect_timeout_ms > 0)
		curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, opt.connect_timeout_ms);
	if (opt.errbuf)
		curl_easy_setopt(h, CURLOPT_ERRORBUFFER, x->err);
}

static void set_url(CURL *h, long i, char *buf, size_t n)
{
	if (opt.npaths) {
		snprintf(buf, n, "%s%s", opt.url, opt.paths[i % opt.npaths]);
		curl_easy_setopt(h, CURLOPT_URL, buf);
	} else {
		curl_easy_setopt(h, CURLOPT_URL, opt.url);
	}
}

/* Prints one request's lines in one write so threads do not interleave them. */
static void report(int thread, long i, CURLcode rc, long status, struct xfer *x, double ms)
{
	int ok = rc == CURLE_OK && status < 400;
	atomic_fetch_add(ok ? &n_ok : &n_err, 1);
	if (opt.quiet)
		return;
	char *out = NULL;
	size_t outlen = 0;
	FILE *f = open_memstream(&out, &outlen);
	if (!f)
		return;
	fprintf(f, "req %d %ld code=%d status=%ld conn=%s ms=%.3f", thread, i, (int)rc, status,
		x->conn[0] ? x->conn : "-", ms);
	if (rc != CURLE_OK && opt.errbuf)
		fprintf(f, " errbuf=%s", x->err[0] ? x->err : "-");
	fputc('\n', f);
	if (opt.print_conn)
		fprintf(f, "conn %s\n", x->conn[0] ? x->conn : "-");
	if (opt.print_body) {
		size_t p = 0;
		while (p < x->len) {
			size_t e = p;
			while (e < x->len && x->body[e] != '\n')
				e++;
			size_t l = e - p;
			if (l && x->body[p + l - 1] == '\r')
				l--;
			fprintf(f, "body %.*s\n", (int)l, x->body + p);
			if (opt.print_body == 1)
				break;
			p = e + 1;
		}
	}
	fclose(f);
	pthread_mutex_lock(&out_mu);
	fwrite(out, 1, outlen, stdout);
	pthread_mutex_unlock(&out_mu);
	free(out);
}

static int keep_going(long i)
{
	if (i >= opt.requests)
		return 0;
	return !deadline_ns || now_ns() < deadline_ns;
}

/* One request on handle h (already set up); fills latency slot. */
static void do_request(CURL *h, struct xfer *x, int thread, long i, long long t0, int fresh)
{
	char url[2048];
	x->len = 0;
	x->conn[0] = '\0';
	x->err[0] = '\0';
	set_url(h, i, url, sizeof url);
	CURLcode rc = curl_easy_perform(h);
	long status = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	if (fresh)
		curl_easy_cleanup(h);
	double ms = (double)(now_ns() - t0) / 1e6;
	if (opt.mode == M_TPR) {
		lat[i] = (float)ms;
		__atomic_fetch_add(&row_n[0], 1, __ATOMIC_RELAXED);
	} else {
		lat[(long)thread * lat_slots + i] = (float)ms; /* row of this thread only */
		row_n[thread] = i + 1;
	}
	report(thread, i, rc, status, x, ms);
}

static pthread_barrier_t first_done; /* --sync-first */

static void *worker(void *arg)
{
	int thread = (int)(long)arg;
	struct xfer x = {.body = malloc(BODY_CAP)};
	if (!x.body)
		die("out of memory");
	CURL *h = NULL;
	CURLSH *ts = NULL;
	if (opt.share_per_thread) {
		ts = curl_share_init();
		if (!ts || curl_share_setopt(ts, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT) != CURLSHE_OK ||
		    curl_share_setopt(ts, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK ||
		    curl_share_setopt(ts, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK)
			die("cannot set up a per-thread share");
	}
	for (long i = 0; keep_going(i); i++) {
		if (i && opt.pause_ms)
			sleep_ms(opt.pause_ms);
		long long t0 = now_ns();
		if (opt.mode == M_FRESH || !h) {
			h = curl_easy_init();
			if (!h)
				die("curl_easy_init failed");
			setup_handle(h, &x, i, ts);
		}
		do_request(h, &x, thread, i, t0, opt.mode == M_FRESH);
		if (opt.mode == M_FRESH)
			h = NULL;
		if (i == 0 && opt.sync_first)
			pthread_barrier_wait(&first_done);
	}
	if (h)
		curl_easy_cleanup(h);
	if (ts)
		curl_share_cleanup(ts);
	free(x.body);
	return NULL;
}

/* ---- thread-per-request -------------------------------------------------------------- */

static sem_t slots;

static void *one_request(void *arg)
{
	long i = (long)arg;
	struct xfer x = {.body = malloc(BODY_CAP)};
	if (!x.body)
		die("out of memory");
	long long t0 = now_ns();
	CURL *h = curl_easy_init();
	if (!h)
		die("curl_easy_init failed");
	setup_handle(h, &x, i, NULL);
	do_request(h, &x, (int)i, i, t0, 1);
	free(x.body);
	sem_post(&slots);
	return NULL;
}

static void run_tpr(void)
{
	if (sem_init(&slots, 0, (unsigned)opt.threads) != 0)
		die("sem_init: %s", strerror(errno));
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	for (long i = 0; keep_going(i); i++) {
		if (i && opt.pause_ms)
			sleep_ms(opt.pause_ms);
		while (sem_wait(&slots) != 0 && errno == EINTR) {
		}
		pthread_t t;
		int e = pthread_create(&t, &attr, one_request, (void *)i);
		if (e)
			die("pthread_create: %s", strerror(e));
	}
	/* Every slot back = every request thread done with libcurl. */
	for (int k = 0; k < opt.threads; k++)
		while (sem_wait(&slots) != 0 && errno == EINTR) {
		}
	pthread_attr_destroy(&attr);
	sem_destroy(&slots);
}

/* ---- main -------------------------------------------------------------------------------- */

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return (x > y) - (x < y);
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

static void split_paths(const char *s)
{
	char *copy = strdup(s);
	if (!copy)
		die("out of memory");
	int n = 1;
	for (const char *p = s; *p; p++)
		n += *p == ',';
	opt.paths = calloc((size_t)n, sizeof *opt.paths);
	if (!opt.paths)
		die("out of memory");
	char *save = NULL;
	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
		opt.paths[opt.npaths++] = t;
	if (!opt.npaths)
		die("--path-seq wants at least one path");
}

static void usage(void)
{
	fputs("usage: curlprog [--mode fresh|persistent|thread-per-request] [--threads N]\n"
	      "  [--requests N] [--duration-ms N] [--pause-ms N] [--path-seq P1,P2,...]\n"
	      "  [--cacert FILE] [--insecure] [--method M] [--data STR] [--header 'H: v']...\n"
	      "  [--cookies] [--user U:P [--user-first-only]] [--own-share|--share-per-thread]\n"
	      "  [--forbid-reuse] [--fresh-connect] [--resolve H:P:A,..] [--timeout-ms N] [--connect-timeout-ms N] [--errbuf]\n"
	      "  [--print-body|--print-body-all] [--print-conn] [--print-fds|--list-fds] [--quiet] URL\n",
	      stderr);
	exit(2);
}

int main(int argc, char **argv)
{
	int fds_start = count_fds();
	for (int a = 1; a < argc; a++) {
		const char *s = argv[a];
#define ARG() (a + 1 < argc ? argv[++a] : (usage(), ""))
		if (!strcmp(s, "--mode")) {
			const char *m = ARG();
			if (!strcmp(m, "fresh"))
				opt.mode = M_FRESH;
			else if (!strcmp(m, "persistent"))
				opt.mode = M_PERSISTENT;
			else if (!strcmp(m, "thread-per-request"))
				opt.mode = M_TPR;
			else
				die("bad --mode '%s'", m);
		} else if (!strcmp(s, "--threads")) {
			opt.threads = (int)parse_long(s, ARG(), 1, 1024);
		} else if (!strcmp(s, "--requests")) {
			opt.requests = parse_long(s, ARG(), 0, 100000000);
			opt.requests_set = 1;
		} else if (!strcmp(s, "--duration-ms")) {
			opt.duration_ms = parse_long(s, ARG(), 1, 86400000);
		} else if (!strcmp(s, "--pause-ms")) {
			opt.pause_ms = parse_long(s, ARG(), 0, 600000);
		} else if (!strcmp(s, "--sync-first")) {
			opt.sync_first = 1;
		} else if (!strcmp(s, "--path-seq")) {
			split_paths(ARG());
		} else if (!strcmp(s, "--cacert")) {
			opt.cacert = ARG();
		} else if (!strcmp(s, "--insecure")) {
			opt.insecure = 1;
		} else if (!strcmp(s, "--method")) {
			opt.method = ARG();
			if (strcmp(opt.method, "GET") && strcmp(opt.method, "POST") &&
			    strcmp(opt.method, "PUT") && strcmp(opt.method, "DELETE") &&
			    strcmp(opt.method, "HEAD"))
				die("bad --method '%s'", opt.method);
		} else if (!strcmp(s, "--data")) {
			opt.data = ARG();
		} else if (!strcmp(s, "--header")) {
			struct curl_slist *l = curl_slist_append(opt.headers, ARG());
			if (!l)
				die("out of memory");
			opt.headers = l;
		} else if (!strcmp(s, "--cookies")) {
			opt.cookies = 1;
		} else if (!strcmp(s, "--user")) {
			opt.user = ARG();
		} else if (!strcmp(s, "--user-first-only")) {
			opt.user_first_only = 1;
		} else if (!strcmp(s, "--own-share")) {
			opt.own_share = 1;
		} else if (!strcmp(s, "--share-per-thread")) {
			opt.share_per_thread = 1;
		} else if (!strcmp(s, "--forbid-reuse")) {
			opt.forbid_reuse = 1;
		} else if (!strcmp(s, "--fresh-connect")) {
			opt.fresh_connect = 1;
		} else if (!strcmp(s, "--resolve")) {
			opt.resolve = curl_slist_append(opt.resolve, ARG());
		} else if (!strcmp(s, "--timeout-ms")) {
			opt.timeout_ms = parse_long(s, ARG(), 1, 86400000);
		} else if (!strcmp(s, "--connect-timeout-ms")) {
			opt.connect_timeout_ms = parse_long(s, ARG(), 1, 86400000);
		} else if (!strcmp(s, "--errbuf")) {
			opt.errbuf = 1;
		} else if (!strcmp(s, "--print-body")) {
			opt.print_body = 1;
		} else if (!strcmp(s, "--print-body-all")) {
			opt.print_body = 2;
		} else if (!strcmp(s, "--print-conn")) {
			opt.print_conn = 1;
		} else if (!strcmp(s, "--print-fds")) {
			opt.print_fds = opt.print_fds ? opt.print_fds : 1;
		} else if (!strcmp(s, "--list-fds")) {
			opt.print_fds = 2;
		} else if (!strcmp(s, "--quiet")) {
			opt.quiet = 1;
		} else if (!strcmp(s, "-h") || !strcmp(s, "--help")) {
			usage();
		} else if (s[0] == '-' && s[1]) {
			die("unknown option '%s'", s);
		} else if (!opt.url) {
			opt.url = s;
		} else {
			usage();
		}
#undef ARG
	}
	if (!opt.url)
		usage();
	if (!strcmp(opt.method, "GET") && opt.data)
		opt.method = "POST";
	if (opt.share_per_thread && (opt.own_share || opt.mode == M_TPR))
		die("--share-per-thread goes with neither --own-share nor thread-per-request");
	if (opt.duration_ms && !opt.requests_set)
		opt.requests = 1000000;
	if (opt.sync_first && (opt.mode == M_TPR || opt.duration_ms))
		die("--sync-first goes with neither thread-per-request nor --duration-ms");
	if (opt.sync_first && pthread_barrier_init(&first_done, NULL, (unsigned)opt.threads) != 0)
		die("pthread_barrier_init failed");

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		die("curl_global_init failed");
	if (opt.own_share) {
		for (int k = 0; k < CURL_LOCK_DATA_LAST; k++)
			pthread_mutex_init(&share_mu[k], NULL);
		share = curl_share_init();
		if (!share)
			die("curl_share_init failed");
		curl_share_setopt(share, CURLSHOPT_LOCKFUNC, lock_cb);
		curl_share_setopt(share, CURLSHOPT_UNLOCKFUNC, unlock_cb);
		if (curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT) != CURLSHE_OK)
			die("this libcurl cannot share connections");
	}

	/* Latencies: preallocated; pages are touched only as requests complete. */
	lat_slots = opt.requests ? opt.requests : 1;
	long total_slots = opt.mode == M_TPR ? lat_slots : lat_slots * opt.threads;
	lat = malloc((size_t)total_slots * sizeof *lat);
	row_n = calloc((size_t)opt.threads, sizeof *row_n);
	if (!lat || !row_n)
		die("cannot allocate %ld latency slots", total_slots);

	t_start_ns = now_ns();
	if (opt.duration_ms)
		deadline_ns = t_start_ns + opt.duration_ms * 1000000LL;
	if (opt.mode == M_TPR) {
		run_tpr();
	} else {
		pthread_t *t = calloc((size_t)opt.threads, sizeof *t);
		if (!t)
			die("out of memory");
		for (int k = 0; k < opt.threads; k++) {
			int e = pthread_create(&t[k], NULL, worker, (void *)(long)k);
			if (e)
				die("pthread_create: %s", strerror(e));
		}
		for (int k = 0; k < opt.threads; k++)
			pthread_join(t[k], NULL);
		free(t);
	}
	double secs = (double)(now_ns() - t_start_ns) / 1e9;

	/* Gather the latencies of completed requests into one sorted run. */
	long rows = opt.mode == M_TPR ? 1 : opt.threads;
	long n = 0;
	for (long r = 0; r < rows; r++) {
		long k = row_n[r];
		if (n != r * lat_slots)
			memmove(lat + n, lat + r * lat_slots, (size_t)k * sizeof *lat);
		n += k;
	}
	qsort(lat, (size_t)n, sizeof *lat, cmp_float);
	double p50 = n ? lat[(n - 1) * 50 / 100] : 0, p99 = n ? lat[(n - 1) * 99 / 100] : 0;
	long ok = atomic_load(&n_ok), err = atomic_load(&n_err);
	printf("summary requests=%ld ok=%ld errors=%ld secs=%.3f rps=%.1f p50_ms=%.3f p99_ms=%.3f\n",
	       ok + err, ok, err, secs, secs > 0 ? (double)(ok + err) / secs : 0.0, p50, p99);
	free(lat);

	if (share)
		curl_share_cleanup(share);
	curl_slist_free_all(opt.headers);
	curl_global_cleanup();
	if (opt.print_fds)
		printf("fds_start %d\nfds_end %d\n", fds_start, count_fds());
	if (opt.print_fds == 2)
		list_fds();
	fflush(stdout);
	return err ? 1 : 0;
}
