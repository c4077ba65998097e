/* Integration tests of libcurl multi lanes with real programs (issue 13, "libcurl multi
 * lanes"; docs/INTERNALS.md, "libcurl lanes"): programs that never call curl_easy_perform
 * and drive every transfer through a multi handle:
 *
 * - `curl --parallel --parallel-max N` (libcurl with OpenSSL);
 * - pycurl CurlMulti, perform() + select() (tests/multi/pycurl_multi.py; pycurl loads
 *   libcurl privately);
 * - PHP curl_multi_exec + curl_multi_select (tests/multi/curl_multi.php; php-curl and
 *   libcurl are loaded with RTLD_DEEPBIND);
 * - git ls-remote / clone / fetch over HTTP and HTTPS (tests/multi/git_client.sh), the
 *   smart protocol through nginx + fcgiwrap + git-http-backend; git-remote-http links
 *   libcurl-gnutls.
 *
 * Judged from outside: what the program printed (the same with and without the shim), and
 * what the server saw: the test upstream's /peers (client addresses), accepted, max_open,
 * max_inflight (requests being answered at once), nginx's access log ("ADDRESS CONNECTION
 * STATUS METHOD URI" per request). For curl, pycurl and PHP, each against the upstream:
 *   - the same output with and without the shim (HTTP, HTTPS; bodies, statuses, errors);
 *   - a lane `bind = 127.0.0.2` is the client address the server sees (127.0.0.1 without);
 *   - `max_conns_per_host = 2` with 8 slow transfers added at once: at most 2 requests and
 *     2 connections at the server, and every transfer succeeds (HTTP, HTTPS);
 *   - past `queue_timeout`, a queued transfer fails with CURLE_OPERATION_TIMEDOUT and a
 *     message naming lane, destination and limit, and never reaches the server;
 *   - two lanes in one multi (chosen by destination) keep their own address and limit;
 *   - connections are reused within the lane (24 requests, at most 4 connections);
 *   - the lane's `request_timeout` ends slow transfers;
 *   - (pycurl, PHP) the lane's metrics count the transfers (scraped from the live process).
 * For git: the same refs, commit ids and files (HTTP, HTTPS) in a lane with a limit; every
 * request in nginx's log from the lane's address, over kept-alive connections; the lane's
 * `min_tls` reaches git-remote-https (libcurl-gnutls).
 *
 * On a shim without multi routing, libcurl's connects inside curl_multi_perform still take
 * the raw connect() path: the bind address shows and connections are counted, but a
 * non-blocking connect at the limit fails at once (EAGAIN, transfers fail with
 * CURLE_COULDNT_CONNECT), and no curl-level option (timeouts, min_tls, metrics) applies.
 *
 * A missing tool skips the test with the Debian package to install (scripts/deps.sh), as
 * the rest of the suite does. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

/* The source tree's tests/multi/NAME (the tests run from the source tree, as make does). */
static const char *multi_script(const char *name)
{
	static char b[4][600];
	static int i;
	char *s = b[i++ % 4];
	char cwd[400];
	cr_assert_not_null(getcwd(cwd, sizeof(cwd)));
	snprintf(s, 600, "%s/tests/multi/%s", cwd, name);
	cr_assert_eq(access(s, R_OK), 0, "%s not found (run from the source tree)", s);
	return s;
}

/* ------------------------------------------------------ curl, pycurl, PHP: one runner */

enum client { CURL, PYCURL, PHP };

static const char *python_with_pycurl(void)
{
	const char *py = h_python("import pycurl");
	if (!py)
		cr_skip_test("pycurl is not installed (Debian: python3-pycurl)");
	return py;
}

static void need(enum client c)
{
	if (c == CURL && system("curl --version >/dev/null 2>&1") != 0)
		cr_skip_test("curl is not installed (Debian: curl)");
	if (c == PYCURL)
		python_with_pycurl();
	if (c == PHP && system("php -r 'exit(function_exists(\"curl_multi_exec\") ? 0 : 1);' "
			       ">/dev/null 2>&1") != 0)
		cr_skip_test("php-cli with php-curl is not installed (scripts/deps.sh)");
}

/* Drops what differs between two runs by nature: "after N ms" in libcurl's messages. */
static void normalize(char *s)
{
	char *p = s;
	while ((p = strstr(p, "after ")) != NULL) {
		char *q = p + 6, *e = q + strspn(q, "0123456789");
		if (e > q && strncmp(e, " ms", 3) == 0) {
			memmove(q, "N", 1);
			memmove(q + 1, e, strlen(e) + 1);
		}
		p += 6;
	}
}

/* curl --parallel writes its -w lines in completion order and the bodies to files: turn
 * them into the scripts' format, one line per URL in argument order. */
static void curl_lines(struct h_run *r, const char *prefix, int n)
{
	size_t cap = 256 * (size_t)n + 64, len = 0;
	char *out = calloc(1, cap);
	cr_assert_not_null(out);
	for (int i = 0; i < n; i++) {
		char key[460], path[440];
		snprintf(path, sizeof(path), "%s%d", prefix, i);
		snprintf(key, sizeof(key), "=%s ", path);
		const char *l = r->out ? strstr(r->out, key) : NULL;
		int code = -1, exitcode = -1;
		char msg[200] = "";
		if (l)
			sscanf(l + strlen(key), "%d %d %199[^\n]", &exitcode, &code, msg);
		if (!l) {
			len += (size_t)snprintf(out + len, cap - len, "%d missing\n", i);
		} else if (exitcode != 0) {
			len += (size_t)snprintf(out + len, cap - len, "%d error %d %s\n", i, exitcode, msg);
		} else {
			char *body = h_read_file(path);
			size_t bl = body ? strlen(body) : 0;
			char first[17] = "";
			snprintf(first, sizeof(first), "%s", body ? body : "");
			for (char *q = first; *q; q++)
				if (*q < ' ' || *q > '~')
					*q = '.';
			len += (size_t)snprintf(out + len, cap - len, "%d ok %d %zu %s\n", i, code, bl, first);
			free(body);
		}
	}
	free(r->out);
	r->out = out;
	r->out_len = len;
}

/* Runs the client on urls (max: at most that many transfers at once, 0 = all), with the
 * config env (may be NULL) and with or without the shim. r->out is one line per URL, in
 * order: "I ok STATUS LENGTH FIRST-BYTES" or "I error CURLCODE MESSAGE" (normalized). The
 * scripts print bodies' first bytes as Python/JSON literals, curl's lines as they are: the
 * three formats are compared only with themselves. */
static void run_client(struct h_run *r, enum client c, const char *const *urls, int n, int max,
		       const char *env_conf, int preload)
{
	static int run_no;
	const char *argv[160]; /* curl: 14 + 3 per URL */
	char maxs[16], prefix[400];
	int k = 0;
	snprintf(maxs, sizeof(maxs), "%d", max);
	cr_assert_lt(n, 48);
	if (c == CURL) {
		snprintf(maxs, sizeof(maxs), "%d", max ? max : n);
		snprintf(prefix, sizeof(prefix), "%s/curl-%d-body", h_dir, run_no++);
		static char outs[48][420];
		argv[k++] = "curl";
		argv[k++] = "-sS";
		argv[k++] = "--no-progress-meter";
		argv[k++] = "--parallel";
		/* (without it, curl lets every transfer to a host wait until the first
		 * connection's response shows whether it multiplexes: 1 at once, then the rest) */
		argv[k++] = "--parallel-immediate";
		argv[k++] = "--parallel-max";
		argv[k++] = maxs;
		argv[k++] = "-w";
		argv[k++] = "=%{filename_effective} %{exitcode} %{http_code} %{errormsg}\\n";
		if (h_up.tls) {
			argv[k++] = "--cacert";
			argv[k++] = h_up.cert;
		}
		for (int i = 0; i < n; i++) {
			snprintf(outs[i], sizeof(outs[i]), "%s%d", prefix, i);
			argv[k++] = "-o";
			argv[k++] = outs[i];
			argv[k++] = urls[i];
		}
	} else {
		argv[k++] = c == PYCURL ? python_with_pycurl() : "php";
		argv[k++] = multi_script(c == PYCURL ? "pycurl_multi.py" : "curl_multi.php");
		argv[k++] = "--max";
		argv[k++] = maxs;
		if (h_up.tls) {
			argv[k++] = "--cainfo";
			argv[k++] = h_up.cert;
		}
		for (int i = 0; i < n; i++)
			argv[k++] = urls[i];
	}
	argv[k] = NULL;
	const char *env[] = {env_conf, NULL};
	h_run_ok(r, argv, env_conf ? env : NULL, preload, 30000);
	if (c == CURL)
		curl_lines(r, prefix, n);
	normalize(r->out);
}

/* The previous run's connections are closed: waits until the server saw it, so that
 * max_open and /peers start from none (a loaded server sees the closes late), then /reset. */
static void reset(struct h_upstream *u)
{
	h_wait_stat(u, "open", 0, 10000);
	cr_assert_eq(h_reset(u), 0);
}

/* n copies of base URL + path ("?i" appended: distinct URLs, as a real batch has). */
static const char *const *urls_of(const char *path, int n)
{
	static char b[48][200];
	static const char *u[49];
	cr_assert_lt(n, 48);
	for (int i = 0; i < n; i++) {
		snprintf(b[i], sizeof(b[i]), "%s://127.0.0.1:%d%s?%d", h_up.tls ? "https" : "http", h_up.port,
			 path, i);
		u[i] = b[i];
	}
	u[n] = NULL;
	return u;
}

#define LIMIT2 "[lane default]\nmax_conns_per_host = 2\nqueue_timeout = 10s\n"
#define BIND2  "[lane default]\nbind = 127.0.0.2\n"

/* (a) A mixed batch (bodies of several sizes, a slow one, a refused port) prints the same
 * with and without the shim, no config (the built-in lane). */
static void same_output(enum client c)
{
	need(c);
	char refused[64];
	snprintf(refused, sizeof(refused), "http://127.0.0.1:%d/", h_free_port());
	static char sz[6][200];
	const char *paths[] = {"/size/0", "/size/1", "/size/70000", "/size/1000000", "/delay/200", "/"};
	const char *urls[8];
	for (int i = 0; i < 6; i++) {
		snprintf(sz[i], sizeof(sz[i]), "%s://127.0.0.1:%d%s", h_up.tls ? "https" : "http", h_up.port,
			 paths[i]);
		urls[i] = sz[i];
	}
	urls[6] = refused;
	urls[7] = NULL;
	struct h_run a, b;
	run_client(&a, c, urls, 7, 0, NULL, 0);
	run_client(&b, c, urls, 7, 0, NULL, 1);
	cr_expect_eq(h_count_str(a.out, " ok 200 "), 6, "without the shim:\n%s%s", a.out, a.err);
	cr_expect_eq(h_count_str(a.out, " error 7 "), 1, "without the shim:\n%s%s", a.out, a.err);
	cr_expect_str_eq(b.out, a.out, "the same output with the shim");
	cr_expect_eq(b.status, a.status, "exit status: %s", b.err);
	h_run_free(&a);
	h_run_free(&b);
}

/* (b) bind = 127.0.0.2: every connection the server accepted for the multi's transfers
 * comes from the lane's address (without the shim: 127.0.0.1); the output is the same. */
static void bind_address(enum client c)
{
	need(c);
	const char *env = h_config(BIND2);
	const char *const *u = urls_of("/delay/100", 6);
	struct h_run a, b;
	run_client(&a, c, u, 6, 0, env, 0);
	char *pa = h_peers(&h_up);
	reset(&h_up);
	run_client(&b, c, u, 6, 0, env, 1);
	char *pb = h_peers(&h_up);
	cr_expect_eq(a.status, 0, "%s%s", a.out, a.err);
	cr_expect_eq(h_count_str(a.out, " ok 200 "), 6, "%s", a.out);
	cr_expect_gt(h_count_str(pa, " 127.0.0.1:"), 0, "without the shim: %s", pa);
	cr_expect_eq(h_count_str(pa, " 127.0.0.2:"), 0, "without the shim: %s", pa);
	cr_expect_eq(b.status, 0, "with the shim: %s%s", b.out, b.err);
	cr_expect_gt(h_count_str(pb, " 127.0.0.2:"), 0, "the server saw: %s", pb);
	cr_expect_eq(h_count_str(pb, " 127.0.0.1:"), 0, "a connection from outside the lane: %s", pb);
	cr_expect_str_eq(b.out, a.out);
	free(pa);
	free(pb);
	h_run_free(&a);
	h_run_free(&b);
}

/* (c) max_conns_per_host = 2, 8 transfers of 400 ms added at once: without the shim the
 * server answers 8 at once; with it at most 2 requests and 2 connections at once, and all 8
 * still succeed (they waited in the lane's queue, not failed), with the same output. */
static void limit_holds(enum client c)
{
	need(c);
	const char *env = h_config(LIMIT2);
	const char *const *u = urls_of("/delay/400", 8);
	struct h_run a, b;
	run_client(&a, c, u, 8, 0, env, 0);
	long a_inflight = h_stat(&h_up, "max_inflight");
	reset(&h_up);
	run_client(&b, c, u, 8, 0, env, 1);
	long b_inflight = h_stat(&h_up, "max_inflight"), b_open = h_stat(&h_up, "max_open");
	long b_requests = h_stat(&h_up, "requests");
	cr_expect_eq(a.status, 0, "%s%s", a.out, a.err);
	/* More than the limit at once without the shim is what makes the limit's check
	 * below mean something; all 8 at once is not required: under load the handshakes
	 * of the last transfers may start after the first ones got their answers. */
	cr_expect_gt(a_inflight, 2, "without the shim the transfers run at once: at most %ld", a_inflight);
	cr_expect_eq(b.status, 0, "every transfer succeeded under the limit:\n%s%s", b.out, b.err);
	cr_expect_eq(h_count_str(b.out, " ok 200 "), 8, "%s", b.out);
	cr_expect_eq(b_requests, 8, "each transfer reached the server once");
	cr_expect_leq(b_inflight, 2, "requests answered at once at the server");
	cr_expect_leq(b_open, 2, "connections open at once at the server");
	cr_expect_str_eq(b.out, a.out);
	h_run_free(&a);
	h_run_free(&b);
}

/* (d) 24 transfers, at most 4 at once, in a configured lane: the lane's connections are
 * reused (the server accepts at most 4 for 24 requests), as the multi's own cache does
 * without the shim; the same output. */
static void connections_reused(enum client c)
{
	need(c);
	const char *env = h_config(BIND2);
	const char *const *u = urls_of("/delay/20", 24);
	struct h_run a, b;
	run_client(&a, c, u, 24, 4, env, 0);
	long a_acc = h_stat(&h_up, "accepted");
	reset(&h_up);
	run_client(&b, c, u, 24, 4, env, 1);
	long b_acc = h_stat(&h_up, "accepted"), b_req = h_stat(&h_up, "requests");
	cr_expect_eq(a.status, 0, "%s%s", a.out, a.err);
	cr_expect_leq(a_acc, 4, "without the shim");
	cr_expect_eq(b.status, 0, "%s%s", b.out, b.err);
	cr_expect_eq(b_req, 24);
	cr_expect_leq(b_acc, 4, "connections for 24 requests, at most 4 at once");
	cr_expect_str_eq(b.out, a.out);
	h_run_free(&a);
	h_run_free(&b);
}

/* A lane's request_timeout = 300ms ends 3 s transfers at the lane's bound: each fails with
 * CURLE_OPERATION_TIMEDOUT (28), delivered like libcurl's own errors, well before 3 s (the
 * program's whole run is timed, its start included: 1.2 s of 1.5 s was too close on a
 * loaded machine).
 * Without the shim they succeed. (The raw connect() path cannot do this: it sees sockets,
 * not transfers.) */
static void request_timeout(enum client c)
{
	need(c);
	const char *env = h_config("[lane default]\nrequest_timeout = 300ms\n");
	const char *const *u = urls_of("/delay/3000", 3);
	struct h_run a, b;
	run_client(&a, c, u, 3, 0, env, 0);
	run_client(&b, c, u, 3, 0, env, 1);
	cr_expect_eq(h_count_str(a.out, " ok 200 "), 3, "without the shim: %s%s", a.out, a.err);
	cr_expect_eq(h_count_str(b.out, " error 28 "), 3, "with the shim, the lane's timeout:\n%s%s",
		     b.out, b.err);
	cr_expect_lt(b.secs, 2.2, "the transfers ended at the lane's bound, not the server's answer: %.1f s",
		     b.secs);
	h_run_free(&a);
	h_run_free(&b);
}

/* The queue's overflow: max_conns_per_host = 2, queue_timeout = 300ms, 6 transfers of 1 s
 * added at once: 2 run and succeed; the 4 others wait in the lane's queue, never reach the
 * server, and fail after queue_timeout with CURLE_OPERATION_TIMEDOUT (28) and a message
 * naming the lane, the destination and the limit, delivered like libcurl's own errors.
 * Without the shim all 6 succeed. */
static void queue_overflow(enum client c)
{
	need(c);
	const char *env = h_config("[lane default]\nmax_conns_per_host = 2\nqueue_timeout = 300ms\n");
	const char *const *u = urls_of("/delay/1000", 6);
	struct h_run a, b;
	run_client(&a, c, u, 6, 0, env, 0);
	reset(&h_up);
	run_client(&b, c, u, 6, 0, env, 1);
	cr_expect_eq(h_count_str(a.out, " ok 200 "), 6, "without the shim: %s%s", a.out, a.err);
	cr_expect_eq(h_count_str(b.out, " ok 200 "), 2, "with the shim:\n%s%s", b.out, b.err);
	cr_expect_eq(h_count_str(b.out, " error 28 "), 4, "queued past queue_timeout:\n%s%s", b.out,
		     b.err);
	cr_expect_eq(h_count_str(b.out, "lane 'default'"), 4, "the message names the lane:\n%s", b.out);
	cr_expect_eq(h_count_str(b.out, "max_conns_per_host = 2"), 4, "and the limit:\n%s", b.out);
	cr_expect_eq(h_count_str(b.out, "127.0.0.1"), 4, "and the destination:\n%s", b.out);
	cr_expect_eq(h_stat(&h_up, "requests"), 2, "a queued transfer reached the server");
	cr_expect_leq(h_stat(&h_up, "max_inflight"), 2);
	cr_expect_lt(b.secs, 3.0);
	h_run_free(&a);
	h_run_free(&b);
}

/* Two lanes in one multi, chosen by destination: lane `narrow` (hosts = *:PORT of the second
 * server, bind = 127.0.0.3, max_conns_per_host = 1) and lane default (bind = 127.0.0.2, no
 * limit); 4 transfers of 300 ms to each server, all added at once. Each server sees only
 * its lane's address; the narrow lane's server answers one at a time while the other
 * answers all 4 at once (a lane's queue never holds back another lane's transfers); every
 * transfer succeeds, with the same output as without the shim. */
static struct h_upstream up2;

static void stop_both(void)
{
	h_upstream_stop(&up2);
	h_upstream_stop(&h_up);
}

static void two_lanes(enum client c)
{
	need(c);
	cr_assert_eq(h_upstream_start(&up2, NULL), 0);
	char text[400];
	snprintf(text, sizeof(text),
		 "[lane narrow]\nmatch = *\nhosts = *:%d\nbind = 127.0.0.3\nmax_conns_per_host = 1\n"
		 "queue_timeout = 10s\n[lane default]\nbind = 127.0.0.2\n",
		 up2.port);
	const char *env = h_config(text);
	static char b2[8][200];
	const char *urls[9];
	for (int i = 0; i < 8; i++) {
		snprintf(b2[i], sizeof(b2[i]), "http://127.0.0.1:%d/delay/300?%d", i % 2 ? up2.port : h_up.port,
			 i);
		urls[i] = b2[i];
	}
	urls[8] = NULL;
	struct h_run a, b;
	run_client(&a, c, urls, 8, 0, env, 0);
	long a1 = h_stat(&h_up, "max_inflight"), a2 = h_stat(&up2, "max_inflight");
	reset(&h_up);
	reset(&up2);
	run_client(&b, c, urls, 8, 0, env, 1);
	char *p1 = h_peers(&h_up), *p2 = h_peers(&up2);
	cr_expect_eq(a.status, 0, "%s%s", a.out, a.err);
	cr_expect_geq(a1, 3, "without the shim");
	cr_expect_geq(a2, 3, "without the shim");
	cr_expect_eq(b.status, 0, "every transfer succeeded:\n%s%s", b.out, b.err);
	cr_expect_geq(h_stat(&h_up, "max_inflight"), 3, "the default lane is not held back");
	cr_expect_eq(h_stat(&up2, "max_inflight"), 1, "the narrow lane's limit");
	cr_expect_eq(h_stat(&up2, "max_open"), 1, "the narrow lane's limit, in connections");
	cr_expect_gt(h_count_str(p1, " 127.0.0.2:"), 0, "%s", p1);
	cr_expect_eq(h_count_str(p1, " 127.0.0.3:") + h_count_str(p1, " 127.0.0.1:"), 0,
		     "only the default lane's address: %s", p1);
	cr_expect_gt(h_count_str(p2, " 127.0.0.3:"), 0, "%s", p2);
	cr_expect_eq(h_count_str(p2, " 127.0.0.2:") + h_count_str(p2, " 127.0.0.1:"), 0,
		     "only the narrow lane's address: %s", p2);
	cr_expect_str_eq(b.out, a.out);
	free(p1);
	free(p2);
	h_run_free(&a);
	h_run_free(&b);
}

/* ------------------------------------------------- metrics of multi transfers (live) */

/* The scrape of the process's metrics socket DIR/m-PID.sock (waits up to 10 s for it):
 * malloc'd, or NULL. */
static char *scrape_live(void)
{
	char sock[600] = "";
	for (int i = 0; i < 1000 && !sock[0]; i++) {
		DIR *d = opendir(h_dir);
		struct dirent *e;
		while (d && (e = readdir(d)))
			if (!strncmp(e->d_name, "m-", 2) && strstr(e->d_name, ".sock"))
				snprintf(sock, sizeof(sock), "unix:%s/%s", h_dir, e->d_name);
		if (d)
			closedir(d);
		if (!sock[0]) {
			struct timespec ts = {0, 10 * 1000000L};
			nanosleep(&ts, NULL);
		}
	}
	if (!sock[0])
		return NULL;
	char cli[400];
	snprintf(cli, sizeof(cli), "%s/connroute", h_build());
	const char *argv[] = {cli, "stats", "--raw", sock, NULL};
	struct h_run r;
	if (h_run(&r, argv, NULL, 0, 10000) != 0 || r.status != 0) {
		if (r.err)
			fprintf(stderr, "connroute stats: %s\n", r.err);
		h_run_free(&r);
		return NULL;
	}
	free(r.err);
	return r.out;
}

/* The lane's metrics count the multi's transfers: 6 transfers in a lane, scraped from the
 * live process (it waits for a file before exiting): http_client_requests_total{lane=
 * "default",outcome="ok"} is 6, the server's count. */
static void metrics_counted(enum client c)
{
	need(c);
	char text[600], hold[400];
	snprintf(text, sizeof(text), "[global]\nmetrics = unix:%s/m-%%p.sock\n" BIND2, h_dir);
	snprintf(hold, sizeof(hold), "%s/hold", h_dir);
	struct h_bg b = {0};
	const char *const *u = urls_of("/delay/50", 6);
	int k = 0;
	b.argv[k++] = c == PYCURL ? python_with_pycurl() : "php";
	b.argv[k++] = multi_script(c == PYCURL ? "pycurl_multi.py" : "curl_multi.php");
	b.argv[k++] = "--hold-until";
	b.argv[k++] = hold;
	for (int i = 0; i < 6; i++)
		b.argv[k++] = u[i];
	b.argv[k] = NULL;
	b.env[0] = h_config(text);
	h_bg_start(&b);
	cr_expect_eq(h_wait_stat(&h_up, "requests", 6, 10000), 6, "the transfers reached the server");
	char *t = NULL;
	double ok = -1;
	/* asked until counted; the program holds for at most 10 s */
	for (long long end = h_now_ms() + 8000; h_now_ms() < end;) {
		free(t);
		t = scrape_live();
		ok = t ? h_metric_sum(t, "http_client_requests_total", "outcome=\"ok\"") : -1;
		if (ok >= 6)
			break;
		h_sleep_ms(50);
	}
	FILE *f = fopen(hold, "w");
	if (f)
		fclose(f);
	h_bg_wait(&b);
	cr_assert_eq(b.rc, 0);
	cr_expect_eq(b.r.status, 0, "%s%s", b.r.out, b.r.err);
	cr_expect_not_null(t, "no metrics scrape");
	cr_expect_eq(ok, 6, "requests counted ok in the lane:\n%s", t ? t : "");
	cr_expect_eq(h_metric_sum(t ? t : "", "http_client_requests_total", "lane=\"default\""), 6,
		     "every one in lane default");
	free(t);
	h_run_free(&b.r);
}

Test(multi_pycurl, lane_metrics_count_the_transfers, .init = h_start_plain, .fini = h_stop)
{
	metrics_counted(PYCURL);
}

Test(multi_php, lane_metrics_count_the_transfers, .init = h_start_plain, .fini = h_stop)
{
	metrics_counted(PHP);
}

#define CLIENT_TESTS(suite, c)                                                                   \
	Test(suite, same_output_with_and_without_the_shim_http, .init = h_start_plain, .fini = h_stop) \
	{                                                                                        \
		same_output(c);                                                                  \
	}                                                                                        \
	Test(suite, same_output_with_and_without_the_shim_https, .init = h_start_tls, .fini = h_stop) \
	{                                                                                        \
		same_output(c);                                                                  \
	}                                                                                        \
	Test(suite, lane_bind_address_seen_by_the_server, .init = h_start_plain, .fini = h_stop)      \
	{                                                                                        \
		bind_address(c);                                                                 \
	}                                                                                        \
	Test(suite, lane_limit_holds_at_the_server_and_every_transfer_succeeds,                   \
	     .init = h_start_plain, .fini = h_stop)                                                  \
	{                                                                                        \
		limit_holds(c);                                                                  \
	}                                                                                        \
	Test(suite, lane_limit_holds_at_the_server_over_https, .init = h_start_tls, .fini = h_stop)   \
	{                                                                                        \
		limit_holds(c);                                                                  \
	}                                                                                        \
	Test(suite, lane_queue_overflow_fails_with_timeout_naming_lane_and_limit,                 \
	     .init = h_start_plain, .fini = h_stop)                                                  \
	{                                                                                        \
		queue_overflow(c);                                                               \
	}                                                                                        \
	Test(suite, two_lanes_in_one_multi_keep_their_own_address_and_limit,                      \
	     .init = h_start_plain, .fini = stop_both)                                             \
	{                                                                                        \
		two_lanes(c);                                                                    \
	}                                                                                        \
	Test(suite, lane_connections_reused_across_transfers, .init = h_start_plain, .fini = h_stop)  \
	{                                                                                        \
		connections_reused(c);                                                           \
	}                                                                                        \
	Test(suite, lane_request_timeout_ends_slow_transfers, .init = h_start_plain, .fini = h_stop)  \
	{                                                                                        \
		request_timeout(c);                                                              \
	}

CLIENT_TESTS(multi_curl_parallel, CURL)
CLIENT_TESTS(multi_pycurl, PYCURL)
CLIENT_TESTS(multi_php, PHP)

/* ---------------------------------------------- git over HTTP(S): nginx + git-http-backend */

static struct h_nginx ngx;
static pid_t fcgi_pid;
static char later_commit[64];

static void git_stop(void)
{
	h_spawn_stop(fcgi_pid, 2000);
	fcgi_pid = 0;
	h_nginx_stop(&ngx);
}

/* The served repository: three commits on main (text, a 300 kB file, a subdirectory, an
 * empty file), a branch and an annotated tag; plus a commit no ref names yet
 * (later_commit), set as refs/heads/later between a client's clone and fetch. */
static void make_repos(void)
{
	char cmd[3000];
	snprintf(cmd, sizeof(cmd),
		 "set -e; export HOME=%s GIT_CONFIG_NOSYSTEM=1 GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@x "
		 "GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@x GIT_AUTHOR_DATE='2026-01-01T00:00:00Z' "
		 "GIT_COMMITTER_DATE='2026-01-01T00:00:00Z'; cd %s; "
		 "git init -q --bare -b main repos/r.git; git init -q -b main src; cd src; "
		 "echo one > a.txt; seq 1 50000 > big.txt; mkdir -p sub/deep; : > sub/empty; "
		 "printf 'x\\ny\\n' > sub/deep/f; git add -A; git commit -qm one; "
		 "echo two >> a.txt; git commit -qam two; git branch side; "
		 "seq 3 3 30000 > sub/more.txt; git add -A; git commit -qm three; "
		 "git tag -a v1 -m v1; git push -q ../repos/r.git main side v1; "
		 "git checkout -q -b later; echo later > later.txt; seq 1 7 90000 >> big.txt; git add -A; "
		 "git commit -qm later; git push -q ../repos/r.git later:refs/heads/later; "
		 "git --git-dir=../repos/r.git update-ref -d refs/heads/later; "
		 "git rev-parse HEAD > ../later.id",
		 ngx.dir, ngx.dir);
	cr_assert_eq(system(cmd), 0, "could not make the repositories");
	char path[400];
	snprintf(path, sizeof(path), "%s/later.id", ngx.dir);
	char *id = h_read_file(path);
	cr_assert_not_null(id);
	snprintf(later_commit, sizeof(later_commit), "%.40s", id);
	free(id);
}

static void git_start_with(const char *extra);

static void git_start(void)
{
	git_start_with("");
}

/* extra: more text for nginx's server block */
static void git_start_with(const char *extra)
{
	if (system("git --version >/dev/null 2>&1") != 0)
		cr_skip_test("git is not installed (Debian: git)");
	if (access("/usr/sbin/fcgiwrap", X_OK) != 0)
		cr_skip_test("fcgiwrap is not installed (Debian: fcgiwrap; scripts/deps.sh)");
	if (access("/usr/lib/git-core/git-http-backend", X_OK) != 0)
		cr_skip_test("git-http-backend is not installed (Debian: git)");
	static const char locations[] =
		"  location ~ ^/git(/.*)$ {\n"
		"   client_max_body_size 0;\n"
		"   fastcgi_pass unix:@DIR@/fcgi.sock;\n"
		"   fastcgi_param SCRIPT_FILENAME /usr/lib/git-core/git-http-backend;\n"
		"   fastcgi_param GIT_PROJECT_ROOT @DIR@/repos;\n"
		"   fastcgi_param GIT_HTTP_EXPORT_ALL \"\";\n"
		"   fastcgi_param PATH_INFO $1;\n"
		"   fastcgi_param QUERY_STRING $query_string;\n"
		"   fastcgi_param REQUEST_METHOD $request_method;\n"
		"   fastcgi_param CONTENT_TYPE $content_type;\n"
		"   fastcgi_param CONTENT_LENGTH $content_length;\n"
		"   fastcgi_param REMOTE_ADDR $remote_addr;\n"
		"   fastcgi_param SERVER_PROTOCOL $server_protocol;\n"
		"  }\n";
	char *text = malloc(strlen(locations) + strlen(extra) + 1);
	cr_assert_not_null(text);
	strcpy(text, locations);
	strcat(text, extra);
	int rc = h_nginx_start(&ngx, text);
	free(text);
	if (rc == -2)
		cr_skip_test("nginx is not installed (Debian: nginx-light)");
	cr_assert_eq(rc, 0, "nginx did not start");
	snprintf(h_dir, sizeof(h_dir), "%s", ngx.dir);
	make_repos();
	char sock[400], spec[420], log[400];
	snprintf(sock, sizeof(sock), "%s/fcgi.sock", ngx.dir);
	snprintf(spec, sizeof(spec), "unix:%s", sock);
	snprintf(log, sizeof(log), "%s/fcgiwrap.log", ngx.dir);
	const char *argv[] = {"/usr/sbin/fcgiwrap", "-c", "2", "-s", spec, NULL};
	fcgi_pid = h_spawn(argv, NULL, log);
	cr_assert_gt(fcgi_pid, 0);
	struct stat st;
	for (int i = 0; i < 200 && stat(sock, &st) != 0; i++) {
		struct timespec ts = {0, 10 * 1000000L};
		nanosleep(&ts, NULL);
	}
	cr_assert_eq(stat(sock, &st), 0, "fcgiwrap made no socket");
}

/* git_client.sh against the repository over http or https, in a fresh work dir. */
static void run_git(struct h_run *r, int tls, const char *env_conf, int preload)
{
	static int n;
	char url[200], work[400], bare[400], ca[420];
	snprintf(url, sizeof(url), "%s://127.0.0.1:%d/git/r.git", tls ? "https" : "http",
		 tls ? ngx.port : ngx.plain_port);
	snprintf(work, sizeof(work), "%s/work-%d", ngx.dir, n++);
	cr_assert_eq(mkdir(work, 0755), 0);
	snprintf(bare, sizeof(bare), "%s/repos/r.git", ngx.dir);
	snprintf(ca, sizeof(ca), "GIT_SSL_CAINFO=%s", ngx.cert);
	const char *argv[] = {"/bin/bash", multi_script("git_client.sh"), url, work, bare, later_commit,
			      NULL};
	const char *env[] = {ca, env_conf, NULL};
	h_run_ok(r, argv, env, preload, 30000);
}

/* (a) ls-remote, clone, fetch: the same refs, commit ids and working-tree files with and
 * without the shim, in a configured lane (the routed path, not the pass-through) with
 * max_conns_per_host = 1: git's transfers go through the lane's admission queue. */
static void git_same(int tls)
{
	git_start();
	const char *env = h_config(BIND2 "max_conns_per_host = 1\nqueue_timeout = 10s\n");
	struct h_run a, b;
	run_git(&a, tls, env, 0);
	run_git(&b, tls, env, 1);
	cr_expect_eq(a.status, 0, "without the shim:\n%s%s", a.out, a.err);
	cr_expect(strstr(a.out, later_commit) != NULL, "the fetch brought the later commit:\n%s",
		  a.out);
	cr_expect(strstr(a.out, "refs/tags/v1\n") != NULL, "%s", a.out);
	cr_expect_eq(h_count_str(a.out, "  ./"), 11, "the working tree's files, twice:\n%s", a.out);
	cr_expect_eq(b.status, 0, "with the shim:\n%s%s", b.out, b.err);
	cr_expect_str_eq(b.out, a.out, "git's view is the same with the shim");
	h_run_free(&a);
	h_run_free(&b);
}

Test(multi_git, clone_fetch_ls_remote_same_with_and_without_the_shim_http, .fini = git_stop)
{
	git_same(0);
}

Test(multi_git, clone_fetch_ls_remote_same_with_and_without_the_shim_https, .fini = git_stop)
{
	git_same(1);
}

/* (b), (d) bind = 127.0.0.2: every request nginx logged for git-remote-http(s) (libcurl-
 * gnutls, one multi handle per process) comes from the lane's address, and each git process
 * kept its connection alive (fewer connections than requests), as without the shim. */
Test(multi_git, lane_bind_address_in_nginx_log_and_connections_kept_alive, .fini = git_stop)
{
	git_start();
	const char *env = h_config(BIND2);
	for (int tls = 0; tls < 2; tls++) {
		struct h_run a, b;
		int lines, from, conns;
		run_git(&a, tls, env, 0);
		char *la = h_nginx_log_take(&ngx);
		conns = h_log_conns(la, "127.0.0.1", &lines, &from);
		cr_expect_eq(a.status, 0, "%s%s", a.out, a.err);
		cr_expect_geq(lines, 8, "%s", la);
		cr_expect_eq(from, lines, "without the shim (tls %d): %s", tls, la);
		cr_expect_eq(h_count_str(la, " 200 "), lines, "%s", la);
		cr_expect_lt(conns, lines, "git keeps its connections alive: %s", la);
		cr_expect_gt(h_count_str(la, " POST /git/r.git/git-upload-pack\n"), 0,
			     "the smart protocol: %s", la);
		run_git(&b, tls, env, 1);
		char *lb = h_nginx_log_take(&ngx);
		conns = h_log_conns(lb, "127.0.0.2", &lines, &from);
		cr_expect_eq(b.status, 0, "%s%s", b.out, b.err);
		cr_expect_geq(lines, 8, "%s", lb);
		cr_expect_eq(from, lines, "every request from the lane's address (tls %d):\n%s", tls, lb);
		cr_expect_eq(h_count_str(lb, " 200 "), lines, "%s", lb);
		cr_expect_lt(conns, lines, "connections reused within the lane: %s", lb);
		cr_expect_str_eq(b.out, a.out);
		free(la);
		free(lb);
		h_run_free(&a);
		h_run_free(&b);
	}
}

/* A lane option only a routed libcurl transfer can carry (the raw connect() path sees a
 * socket, not TLS): nginx speaks TLS 1.2 only, the lane says min_tls = 1.3. Without the
 * shim git ls-remote works; with it, git-remote-https (libcurl-gnutls, a multi transfer)
 * refuses the handshake: git fails and nginx logs no request. */
Test(multi_git, lane_min_tls_reaches_git_remote_https, .fini = git_stop)
{
	git_start_with("  ssl_protocols TLSv1.2;\n");
	const char *env_conf = h_config("[lane default]\nmin_tls = 1.3\n");
	char url[200], ca[420], home[300];
	snprintf(url, sizeof(url), "https://127.0.0.1:%d/git/r.git", ngx.port);
	snprintf(ca, sizeof(ca), "GIT_SSL_CAINFO=%s", ngx.cert);
	snprintf(home, sizeof(home), "HOME=%s", ngx.dir);
	const char *env[] = {ca, home, "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0", env_conf, NULL};
	const char *argv[] = {"git", "ls-remote", url, NULL};
	struct h_run a, b;
	cr_assert_eq(h_run(&a, argv, env, 0, 30000), 0);
	char *la = h_nginx_log_take(&ngx);
	cr_assert_eq(h_run(&b, argv, env, 1, 30000), 0);
	char *lb = h_nginx_log_take(&ngx);
	cr_expect_eq(a.status, 0, "without the shim: %s%s", a.out, a.err);
	cr_expect(strstr(a.out, "refs/heads/main\n") != NULL, "%s", a.out);
	cr_expect_gt(h_count_str(la, " 200 "), 0, "%s", la);
	cr_expect_neq(b.status, 0, "with the shim the lane's min_tls = 1.3 refuses TLS 1.2:\n%s%s",
		      b.out, b.err);
	cr_expect_eq(strlen(lb), 0, "nginx got no request: %s", lb);
	free(la);
	free(lb);
	h_run_free(&a);
	h_run_free(&b);
}
