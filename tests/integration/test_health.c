/* Integration tests of resilience per lane (lib/health.c, docs/INTERNALS.md
 * "Resilience"): unmodified programs under LD_PRELOAD against two test
 * upstreams on 127.0.0.1 and 127.0.0.2 with the same port (one host, two
 * addresses), judged from outside: what the program printed (errno, time,
 * libcurl's code and message) and what each server counted. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static struct h_upstream good, bad;
static int bad_fds[8], nbad;

/* The good one on 127.0.0.1, the other on 127.0.0.2 with the same port. */
static void start_pair(const char *const *bad_extra)
{
	cr_assert_eq(h_upstream_start(&good, NULL), 0);
	snprintf(h_dir, sizeof(h_dir), "%s", good.dir); /* where h_config writes */
	char port[16];
	snprintf(port, sizeof(port), "%d", good.port);
	const char *args[16] = {"--bind", "127.0.0.2", "--port", port};
	int n = 4;
	for (int i = 0; bad_extra && bad_extra[i] && n < 15; i++)
		args[n++] = bad_extra[i];
	args[n] = NULL;
	cr_assert_eq(h_upstream_start(&bad, args), 0);
}

/* 127.0.0.2 never accepts and its queue is full: a connect to it hangs. */
static void start_hanging(void)
{
	const char *extra[] = {"--no-accept", "--backlog", "0", NULL};
	start_pair(extra);
	nbad = h_fill_backlog(&bad, bad_fds, 8);
	cr_assert_geq(nbad, 1, "the backlog of 127.0.0.2 could not be filled");
}

static void stop_pair(void)
{
	for (int i = 0; i < nbad; i++)
		close(bad_fds[i]);
	nbad = 0;
	h_upstream_stop(&bad);
	h_upstream_stop(&good);
}

/* "connect S err E ms=N" (or ok): the errno name and the time. */
static int connect_line(const char *out, const char *s, char *err, size_t n, double *ms)
{
	char pat[32];
	snprintf(pat, sizeof(pat), "connect %s ", s);
	const char *p = strstr(out, pat);
	if (!p)
		return -1;
	p += strlen(pat);
	if (!strncmp(p, "ok", 2)) {
		snprintf(err, n, "ok");
	} else {
		int len = 0;
		sscanf(p, "err %31s%n", err, &len);
	}
	const char *m = strstr(p, "ms=");
	*ms = m ? atof(m + 3) : -1;
	return 0;
}

/* "At once": well below the 300 ms connect_timeout a connect the kernel is asked for would
 * hang (those take 250 ms or more), with room for a loaded machine's scheduling delays
 * (50 ms was outlasted). */
#define AT_ONCE_MS 200

static void expect_connect(const struct h_run *r, const char *s, const char *want, double min_ms,
			   double max_ms)
{
	char err[32] = "";
	double ms = -1;
	cr_assert_eq(connect_line(r->out, s, err, sizeof(err), &ms), 0, "no line for %s:\n%s", s,
		     r->out);
	cr_expect_str_eq(err, want, "connect %s:\n%s", s, r->out);
	cr_expect(ms >= min_ms && ms <= max_ms, "connect %s took %.0f ms, not %.0f..%.0f:\n%s", s,
		  ms, min_ms, max_ms, r->out);
}

static char cbuf[16][64];
static const char *cto(const char *s, const char *ip, int port)
{
	static int i;
	char *b = cbuf[i++ % 16];
	snprintf(b, 64, "connect=%s@%s:%d", s, ip, port);
	return b;
}

/* A raw connect() to an ejected address fails at once with ECONNREFUSED
 * (the kernel is not asked: it would hang); after eject_time one connect
 * probes it again (the kernel's own timeout), and its failure ejects it
 * again. The healthy address is never refused. */
Test(resilience, raw_connect_to_an_ejected_address_is_refused_at_once, .init = start_hanging,
     .fini = stop_pair)
{
	const char *env[] = {h_config("[lane default]\n"
					     "connect_timeout = 300ms\n"
					     "eject_after = 2\n"
					     "eject_time = 1s\n"),
			     NULL};
	int p = good.port;
	const char *argv[] = {"sockprog",
			      "tcp=g1",
			      cto("g1", "127.0.0.1", p),
			      "tcp=a",
			      cto("a", "127.0.0.2", p),
			      "tcp=b",
			      cto("b", "127.0.0.2", p),
			      "tcp=c",
			      cto("c", "127.0.0.2", p),
			      "tcp=g2",
			      cto("g2", "127.0.0.1", p),
			      "sleep=1100",
			      "tcp=d",
			      cto("d", "127.0.0.2", p),
			      "tcp=e",
			      cto("e", "127.0.0.2", p),
			      NULL};
	struct h_run r;
	h_run_ok(&r, argv, env, 1, 30000);
	expect_connect(&r, "g1", "ok", 0, 200);
	expect_connect(&r, "a", "ETIMEDOUT", 250, 1000);
	expect_connect(&r, "b", "ETIMEDOUT", 250, 1000);
	expect_connect(&r, "c", "ECONNREFUSED", 0, AT_ONCE_MS);
	expect_connect(&r, "g2", "ok", 0, 200);
	expect_connect(&r, "d", "ETIMEDOUT", 250, 1000); /* the probe */
	expect_connect(&r, "e", "ECONNREFUSED", 0, AT_ONCE_MS);
	h_run_free(&r);
}

/* Without the keys, the same program waits for the kernel every time. */
Test(resilience, raw_connect_without_ejection_always_tries, .init = start_hanging,
     .fini = stop_pair)
{
	const char *env[] = {h_config("[lane default]\nconnect_timeout = 300ms\n"), NULL};
	int p = good.port;
	const char *argv[] = {"sockprog",
			      "tcp=g1",
			      cto("g1", "127.0.0.1", p),
			      "tcp=a",
			      cto("a", "127.0.0.2", p),
			      "tcp=b",
			      cto("b", "127.0.0.2", p),
			      "tcp=c",
			      cto("c", "127.0.0.2", p),
			      NULL};
	struct h_run r;
	h_run_ok(&r, argv, env, 1, 30000);
	expect_connect(&r, "c", "ETIMEDOUT", 250, 1000);
	h_run_free(&r);
}

/* The breaker of address:port opens after breaker_min_requests failures
 * (ratio 1 >= 0.5): refused at once; after breaker_open one probe goes to
 * the kernel, fails, and the breaker opens again. */
Test(resilience, raw_breaker_opens_rejects_and_probes, .init = start_hanging, .fini = stop_pair)
{
	const char *env[] = {h_config("[lane default]\n"
					     "connect_timeout = 300ms\n"
					     "breaker_failure_ratio = 50%\n"
					     "breaker_min_requests = 3\n"
					     "breaker_open = 1s\n"
					     "breaker_probes = 1\n"),
			     NULL};
	int p = good.port;
	const char *argv[] = {"sockprog",
			      "tcp=a",
			      cto("a", "127.0.0.2", p),
			      "tcp=b",
			      cto("b", "127.0.0.2", p),
			      "tcp=c",
			      cto("c", "127.0.0.2", p),
			      "tcp=d",
			      cto("d", "127.0.0.2", p),
			      "tcp=g",
			      cto("g", "127.0.0.1", p),
			      "sleep=1100",
			      "tcp=e",
			      cto("e", "127.0.0.2", p),
			      "tcp=f",
			      cto("f", "127.0.0.2", p),
			      NULL};
	struct h_run r;
	h_run_ok(&r, argv, env, 1, 30000);
	expect_connect(&r, "c", "ETIMEDOUT", 250, 1000);
	expect_connect(&r, "d", "ECONNREFUSED", 0, AT_ONCE_MS);
	expect_connect(&r, "g", "ok", 0, 200); /* another address:port, another breaker */
	expect_connect(&r, "e", "ETIMEDOUT", 250, 1000);
	expect_connect(&r, "f", "ECONNREFUSED", 0, AT_ONCE_MS);
	h_run_free(&r);
}

/* A non-blocking connect's outcome is taken at its close: refused
 * connects (nothing listens on 127.0.0.3) eject the address, and the next
 * non-blocking connect to it fails at once, with ECONNREFUSED from
 * connect() itself rather than EINPROGRESS. */
Test(resilience, raw_nonblocking_outcome_is_taken_at_close, .init = start_hanging,
     .fini = stop_pair)
{
	const char *env[] = {h_config("[lane default]\n"
					     "eject_after = 2\n"
					     "eject_time = 10s\n"),
			     NULL};
	int p = good.port;
	const char *argv[] = {"sockprog",
			      "tcp=g",
			      cto("g", "127.0.0.1", p),
			      "tcp=a",
			      "nonblock=a",
			      cto("a", "127.0.0.3", p),
			      "wait=a",
			      "close=a",
			      "tcp=b",
			      "nonblock=b",
			      cto("b", "127.0.0.3", p),
			      "wait=b",
			      "close=b",
			      "tcp=c",
			      "nonblock=c",
			      cto("c", "127.0.0.3", p),
			      NULL};
	struct h_run r;
	h_run_ok(&r, argv, env, 1, 30000);
	expect_connect(&r, "c", "ECONNREFUSED", 0, AT_ONCE_MS);
	cr_expect(strstr(r.out, "connect a err EINPROGRESS") ||
			  strstr(r.out, "connect a err ECONNREFUSED"),
		  "%s", r.out);
	h_run_free(&r);
}

/* Taking the outcome at close must not take the socket's pending error:
 * the app closes one of two fds of a refused non-blocking connect and
 * reads SO_ERROR on the other (reading SO_ERROR clears it). Without the
 * shim it reads ECONNREFUSED; so must it with the shim. */
Test(resilience, raw_nonblocking_close_of_a_dup_keeps_the_pending_error, .init = start_hanging,
     .fini = stop_pair)
{
	const char *env[] = {h_config("[lane default]\n"
					     "eject_after = 2\n"
					     "eject_time = 10s\n"),
			     NULL};
	int p = good.port;
	const char *argv[] = {"sockprog",	       "tcp=a", "nonblock=a",
			      cto("a", "127.0.0.3", p), "sleep=100", "dup=a:b",
			      "close=a",	       "wait=b", NULL};
	for (int shim = 0; shim < 2; shim++) {
		struct h_run r;
		h_run_ok(&r, argv, env, shim, 30000);
		cr_assert(strstr(r.out, "connect a err EINPROGRESS"), "%s", r.out);
		cr_expect(strstr(r.out, "wait b ready ECONNREFUSED"), "shim %d:\n%s", shim, r.out);
		h_run_free(&r);
	}
}

static void start_two(void);

/* A half-open breaker's probe served by a warm socket reports its success:
 * 127.0.0.2 is down (two refused connects open the breaker), comes back,
 * the lane's warm pool refills; after breaker_open the probe (probes = 1)
 * is served warm and closes the breaker, so the next connect goes through.
 * (Unreported, the breaker stayed half-open with its one probe out and
 * refused every connect until breaker_open passed again, and again.) */
Test(resilience, raw_breaker_probe_served_warm_closes_it, .init = start_two, .fini = stop_pair)
{
	int p = good.port;
	char text[256], ps[16];
	snprintf(text, sizeof(text),
		 "[lane default]\nprewarm = 127.0.0.2:%d*2\nbreaker_failure_ratio = 0.5\n"
		 "breaker_min_requests = 2\nbreaker_open = 2s\nbreaker_probes = 1\n",
		 p);
	const char *env[] = {h_config(text), NULL};
	cr_assert_eq(h_upstream_stop(&bad), 0);
	const char *argv[] = {"sockprog",
			      "tcp=a",
			      cto("a", "127.0.0.2", p),
			      "tcp=b",
			      cto("b", "127.0.0.2", p),
			      "sleep=2600",
			      "tcp=c",
			      cto("c", "127.0.0.2", p),
			      "tcp=d",
			      cto("d", "127.0.0.2", p),
			      NULL};
	struct h_bg b = {0};
	memcpy(b.argv, argv, sizeof(argv));
	memcpy(b.env, env, sizeof(env));
	h_bg_start(&b);
	usleep(300 * 1000);
	snprintf(ps, sizeof(ps), "%d", p);
	const char *args[] = {"--bind", "127.0.0.2", "--port", ps, NULL};
	cr_assert_eq(h_upstream_start(&bad, args), 0);
	h_bg_wait(&b);
	cr_assert_eq(b.rc, 0);
	expect_connect(&b.r, "b", "ECONNREFUSED", 0, AT_ONCE_MS);
	expect_connect(&b.r, "c", "ok", 0, AT_ONCE_MS);
	expect_connect(&b.r, "d", "ok", 0, AT_ONCE_MS);
	/* The pool had refilled: its connections were accepted. */
	cr_expect_eq(h_stat(&bad, "accepted") >= 2, 1, "%s", b.r.out);
	h_run_free(&b.r);
}

/* ------------------------------------------------------------- libcurl */

static void start_two(void)
{
	start_pair(NULL);
}

static void arm(struct h_upstream *u, const char *q)
{
	char *s = h_get(u, q);
	cr_assert_not_null(s);
	free(s);
}

static long summary(const char *out, const char *field)
{
	const char *p = strstr(out, "summary ");
	char pat[32];
	snprintf(pat, sizeof(pat), " %s=", field);
	p = p ? strstr(p, pat) : NULL;
	return p ? atol(p + strlen(pat)) : -1;
}

static char url[128], resolve[128];
static void host_url(int port, const char *first, const char *second)
{
	snprintf(url, sizeof(url), "http://api.test:%d/", port);
	snprintf(resolve, sizeof(resolve), "api.test:%d:%s,%s", port, first, second);
}

/* 127.0.0.2 closes every connection without an answer (CURLE_GOT_NOTHING). After eject_after failures libcurl
 * is made to skip it (CURL_SOCKET_BAD from the opensocket callback: libcurl
 * goes on to 127.0.0.1): the server on 127.0.0.2 accepts nothing more until
 * eject_time has passed, then one probe, which fails and ejects it again
 * for twice as long. */
Test(resilience, curl_skips_an_ejected_address_and_probes_it_after_eject_time,
     .init = start_two, .fini = stop_pair)
{
	arm(&bad, "/inject?fault=drop&count=1000");
	const char *env[] = {h_config("[lane default]\n"
					     "eject_after = 2\n"
					     "eject_time = 1s\n"),
			     NULL};
	host_url(good.port, "127.0.0.2", "127.0.0.1");
	/* A new connection per request (else the pooled one to 127.0.0.1 serves
	 * everything and no probe is ever needed). */
	const char *argv[] = {"curlprog",   "--mode", "fresh",	   "--forbid-reuse",
			      "--requests", "25",     "--pause-ms", "100",
			      "--resolve",  resolve,  url,	   NULL};
	struct h_run r;
	h_run_ok(&r, argv, env, 1, 30000);
	/* 2 failures, ejected for 1 s (~10 requests to 127.0.0.1), 1 probe
	 * that fails, ejected for 2 s: past the end of the run. */
	cr_expect_eq(h_stat(&bad, "accepted"), 3, "%s", r.out);
	cr_expect_eq(summary(r.out, "errors"), 3, "%s", r.out);
	cr_expect_eq(h_stat(&good, "requests"), 22, "%s", r.out);
	/* Skipping it costs nothing: libcurl's 200 ms happy-eyeballs wait
	 * before the next address is made short while one is ejected. */
	const char *p99 = strstr(r.out, "p99_ms=");
	cr_expect(p99 && atof(p99 + 7) < 100, "%s", r.out);
	h_run_free(&r);
}

/* The same program without the keys: libcurl goes to 127.0.0.2 first
 * every time (its fallback is for connect failures only). */
Test(resilience, curl_without_ejection_keeps_failing, .init = start_two, .fini = stop_pair)
{
	arm(&bad, "/inject?fault=drop&count=1000");
	const char *env[] = {h_config("[lane default]\nmax_idle_per_host = 8\n"), NULL};
	host_url(good.port, "127.0.0.2", "127.0.0.1");
	const char *argv[] = {"curlprog",  "--mode",  "fresh", "--forbid-reuse", "--requests",
			      "10",	   "--resolve", resolve, url,		   NULL};
	struct h_run r;
	h_run_ok(&r, argv, env, 1, 30000);
	char *sb = h_get(&bad, "/stats"), *sg = h_get(&good, "/stats");
	cr_expect_eq(summary(r.out, "errors"), 10, "%s\nbad:\n%s\ngood:\n%s", r.out, sb, sg);
	cr_expect_eq(h_stat(&bad, "accepted"), 10, "%s", r.out);
	free(sb);
	free(sg);
	h_run_free(&r);
}

/* The breaker of api.test:PORT opens after 4 failures in 4 requests,
 * refuses at once with CURLE_COULDNT_CONNECT (7) and a message naming lane,
 * host and state (nothing reaches the server), then lets 2 probes through
 * after breaker_open; they succeed (the fault is spent) and it closes. */
Test(resilience, curl_breaker_opens_rejects_probes_and_closes, .init = start_two,
     .fini = stop_pair)
{
	arm(&good, "/inject?fault=drop&count=4");
	const char *env[] = {h_config("[lane default]\n"
					     "breaker_failure_ratio = 0.5\n"
					     "breaker_min_requests = 4\n"
					     "breaker_open = 1s\n"
					     "breaker_probes = 2\n"),
			     NULL};
	char u[128];
	snprintf(u, sizeof(u), "http://127.0.0.1:%d/", good.port);
	const char *argv[] = {"curlprog", "--mode", "persistent", "--requests", "25",
			      "--pause-ms", "100", "--errbuf", u, NULL};
	struct h_run r;
	h_run_ok(&r, argv, env, 1, 30000);
	char want[160];
	snprintf(want, sizeof(want),
		 " errbuf=connroute: lane 'default': circuit breaker open for 127.0.0.1:%d; "
		 "request not sent\n",
		 good.port);
	const char *rej = strstr(r.out, want);
	cr_expect(rej, "%s", r.out);
	/* refused at once: code 7, well under a millisecond */
	const char *line = rej;
	while (line > r.out && line[-1] != '\n')
		line--;
	cr_expect(strstr(line, "code=7 status=0 conn=- ms=0.") == strstr(line, "code="),
		  "%.200s", line);
	long errors = summary(r.out, "errors"), ok = summary(r.out, "ok");
	cr_expect(errors >= 4 + 7 && errors <= 4 + 12, "4 failures, then ~1 s refused: %s", r.out);
	cr_expect_eq(h_stat(&good, "requests"), ok + 4, "refused requests never reach the server");
	cr_expect_eq(h_stat(&good, "accepted") - 4, 1, "one connection after the probes: %s",
		     r.out);
	/* Closed again: the last requests are ok. */
	cr_expect(strstr(r.out, "req 0 24 code=0 status=200"), "%s", r.out);
	h_run_free(&r);
}

/* A request the breaker refuses reads as the failed connect it stands
 * for: one handle alternates a healthy host (200) and a host where nothing
 * listens. Without the shim each request to the latter ends code=7
 * status=0; with it, once the breaker is open, the handle's getinfo must
 * not answer the previous transfer's 200. */
Test(resilience, curl_breaker_refusal_shows_no_previous_response_code, .init = start_two,
     .fini = stop_pair)
{
	const char *env[] = {h_config("[lane default]\n"
					     "breaker_failure_ratio = 0.5\n"
					     "breaker_min_requests = 2\n"
					     "breaker_open = 30s\n"),
			     NULL};
	char seq[64];
	snprintf(seq, sizeof(seq), "1:%d/,3:%d/", good.port, good.port);
	const char *argv[] = {"curlprog", "--mode",	"persistent", "--requests",
			      "8",	  "--path-seq", seq,	      "--errbuf",
			      "http://127.0.0.", NULL};
	for (int shim = 0; shim < 2; shim++) {
		struct h_run r;
		h_run_ok(&r, argv, env, shim, 30000);
		for (int i = 1; i < 8; i += 2) {
			char want[48];
			snprintf(want, sizeof(want), "req 0 %d code=7 status=0 ", i);
			cr_expect(strstr(r.out, want), "shim %d, request %d:\n%s", shim, i, r.out);
		}
		if (shim)
			cr_expect(strstr(r.out, "circuit breaker open for 127.0.0.3"), "%s", r.out);
		h_run_free(&r);
	}
}

/* Retry throttling: every request gets no answer; retries = 2 with a budget
 * that never binds. The token bucket (4, at most half spent before
 * throttling) allows the first request's two retries, then none: the
 * server sees 3 + 1 + 1 + 1 + 1 attempts for 5 requests, not 15. */
Test(resilience, curl_retry_throttling_stops_retries, .init = start_two, .fini = stop_pair)
{
	arm(&good, "/inject?fault=drop&count=1000");
	const char *conf = "[lane default]\n"
			   "retries = 2\n"
			   "retry_budget = 100%%\n"
			   "retry_budget_min = 1000\n"
			   "%s";
	char text[256];
	snprintf(text, sizeof(text), conf, "retry_tokens = 4\n");
	const char *env[] = {h_config(text), NULL};
	char u[128];
	snprintf(u, sizeof(u), "http://127.0.0.1:%d/", good.port);
	const char *argv[] = {"curlprog", "--mode", "persistent", "--requests", "5", u, NULL};
	struct h_run r;
	h_run_ok(&r, argv, env, 1, 30000);
	cr_expect_eq(h_stat(&good, "accepted"), 7, "%s", r.out);
	h_run_free(&r);
	h_reset(&good);
	arm(&good, "/inject?fault=drop&count=1000");
	snprintf(text, sizeof(text), conf, "");
	const char *env2[] = {h_config(text), NULL};
	h_run_ok(&r, argv, env2, 1, 30000);
	cr_expect_eq(h_stat(&good, "accepted"), 15, "without retry_tokens: %s", r.out);
	h_run_free(&r);
}

/* Pooled connections to an ejected address are closed: 4 persistent
 * handles hold connections to 127.0.0.2 (the name's first address); two
 * requests on it then hang past the app's timeout and eject it. The other
 * handles' live connections to it are not used again: their next perform
 * closes their share and connects to 127.0.0.1, so 127.0.0.2 sees almost
 * nothing after the fault (without this, those handles would keep sending
 * it every request). */
Test(resilience, curl_pooled_connections_to_an_ejected_address_are_closed, .init = start_two,
     .fini = stop_pair)
{
	char text[512], spec[300], cli[300];
	snprintf(spec, sizeof(spec), "unix:%s/m.sock", good.dir);
	snprintf(text, sizeof(text), "[global]\nmetrics = %s\n[lane default]\neject_after = 2\neject_time = 30s\n",
		 spec);
	snprintf(cli, sizeof(cli), "%s/connroute", h_build());
	const char *env[] = {h_config(text), NULL};
	host_url(good.port, "127.0.0.2", "127.0.0.1");
	const char *argv[] = {"curlprog",     "--mode",	   "persistent", "--threads",
			      "4",	      "--requests", "60",	  "--pause-ms",
			      "20",	      "--timeout-ms", "200",	  "--resolve",
			      resolve,	      url,	   NULL};
	struct h_bg b = {0};
	memcpy(b.argv, argv, sizeof(argv));
	memcpy(b.env, env, sizeof(env));
	h_bg_start(&b);
	/* Observed, not timed (fixed pauses were outlasted on a loaded machine): the
	 * handles have used 127.0.0.2, then the two hung requests timed out (200 ms) and
	 * ejected it, as the lane's metrics say. */
	long before = 0;
	for (long long end = h_now_ms() + 10000; (before = h_stat(&bad, "requests")) <= 4 && h_now_ms() < end;)
		usleep(10 * 1000);
	arm(&bad, "/inject?fault=hang_headers&count=2&ms=2000");
	char want[160];
	snprintf(want, sizeof(want), "connroute_ejections_total{lane=\"default\",address=\"127.0.0.2:%d\"} 1\n",
		 good.port);
	int ejected = 0;
	for (long long end = h_now_ms() + 10000; !ejected && h_now_ms() < end && !atomic_load(&b.finished);) {
		struct h_run r;
		const char *a[] = {cli, "stats", "--raw", spec, NULL};
		if (h_run(&r, a, NULL, 0, 5000) == 0 && r.status == 0 && strstr(r.out, want))
			ejected = 1;
		h_run_free(&r);
		if (!ejected)
			usleep(20 * 1000);
	}
	long mid = h_stat(&bad, "requests");
	h_bg_wait(&b);
	cr_assert_eq(b.rc, 0);
	long after = h_stat(&bad, "requests");
	cr_expect_gt(before, 4, "the handles used 127.0.0.2 first: %s", b.r.out);
	cr_expect(ejected, "127.0.0.2 was not ejected while the program ran: %s", b.r.out);
	cr_expect_leq(after - mid, 2, "127.0.0.2 got %ld requests after its ejection:\n%s",
		      after - mid, b.r.out);
	cr_expect_gt(h_stat(&good, "requests"), 100, "%s", b.r.out);
	cr_expect_leq(summary(b.r.out, "errors"), 4, "%s", b.r.out);
	h_run_free(&b.r);
}

/* `connroute stats` shows the ejected addresses and the breakers not
 * closed; the metrics endpoint has them per address and host. */
Test(resilience, stats_show_ejected_addresses_and_open_breakers, .init = start_two,
     .fini = stop_pair)
{
	char text[512], spec[300];
	snprintf(spec, sizeof(spec), "unix:%s/m.sock", good.dir);
	snprintf(text, sizeof(text),
		 "[global]\nmetrics = %s\n[lane default]\neject_after = 2\neject_time = 30s\n"
		 "breaker_failure_ratio = 0.5\nbreaker_min_requests = 2\nbreaker_open = 30s\n",
		 spec);
	const char *env[] = {h_config(text), NULL};
	int p = good.port;
	const char *argv[] = {"sockprog",
			      "tcp=g",
			      cto("g", "127.0.0.1", p),
			      "tcp=a",
			      cto("a", "127.0.0.3", p),
			      "tcp=b",
			      cto("b", "127.0.0.3", p),
			      "sleep=2500",
			      NULL};
	struct h_bg b = {0};
	memcpy(b.argv, argv, sizeof(argv));
	memcpy(b.env, env, sizeof(env));
	h_bg_start(&b);
	char cli[300];
	snprintf(cli, sizeof(cli), "%s/connroute", h_build());
	struct h_run r = {0};
	int found = 0;
	for (int i = 0; i < 40 && !found; i++) {
		usleep(50 * 1000);
		const char *a[] = {cli, "stats", spec, NULL};
		h_run_free(&r);
		if (h_run(&r, a, NULL, 0, 5000) == 0 && r.status == 0 && strstr(r.out, "breaker:"))
			found = 1;
	}
	char want[160];
	snprintf(want, sizeof(want), "ejected: lane default, address 127.0.0.3:%d, ", p);
	cr_expect(found && strstr(r.out, want), "%s\n%s", r.out, r.err);
	snprintf(want, sizeof(want), "breaker: lane default, host 127.0.0.3:%d, open\n", p);
	cr_expect(strstr(r.out, want), "%s", r.out);
	h_run_free(&r);
	const char *raw[] = {cli, "stats", "--raw", spec, NULL};
	cr_assert_eq(h_run(&r, raw, NULL, 0, 5000), 0);
	snprintf(want, sizeof(want),
		 "connroute_ejections_total{lane=\"default\",address=\"127.0.0.3:%d\"} 1\n", p);
	cr_expect(strstr(r.out, "connroute_ejected_remaining_seconds{"), "%s", strstr(r.out, "# HELP connroute_ejected_remaining"));
	cr_expect(strstr(r.out, want), "%s", r.out);
	cr_expect(strstr(r.out, "connroute_ejected{lane=\"default\"} 1\n"), "%s", strstr(r.out, "connroute_ejections_total") ? strstr(r.out, "connroute_ejections_total") : r.out);
	h_run_free(&r);
	const char *js[] = {cli, "stats", "--json", spec, NULL};
	cr_assert_eq(h_run(&r, js, NULL, 0, 5000), 0);
	snprintf(want, sizeof(want),
		 "\"breakers\":[{\"lane\":\"default\",\"host\":\"127.0.0.3:%d\",\"state\":\"open\"}]", p);
	cr_expect(strstr(r.out, want), "%s", r.out);
	h_run_free(&r);
	h_bg_wait(&b);
	h_run_free(&b.r);
}

/* A reload that keeps the lane's resilience keys keeps its state (the
 * address stays ejected); one that changes them starts afresh. The reloads
 * are seen through SO_PRIORITY, changed by each file. */
Test(resilience, reload_keeps_state_unless_the_settings_change, .init = start_hanging,
     .fini = stop_pair)
{
	static const char *const confs[] = {"priority = 1\neject_time = 30s\n",
					    "priority = 2\neject_time = 30s\n",
					    "priority = 3\neject_time = 20s\n"};
	char path[3][400], text[256], env_conf[450];
	for (int i = 0; i < 3; i++) {
		char name[32];
		snprintf(name, sizeof(name), "c%d.conf", i);
		snprintf(text, sizeof(text),
			 "[lane default]\nconnect_timeout = 300ms\neject_after = 2\n%s", confs[i]);
		cr_assert_eq(h_write_file(good.dir, i ? name : "connroute.conf", text, path[i],
					  sizeof(path[i])),
			     0);
	}
	snprintf(env_conf, sizeof(env_conf), "CONNROUTE_CONFIG=%s", path[0]);
	const char *env[] = {env_conf, NULL};
	int p = good.port;
	char r1[900], r2[900], w1[64], w2[64];
	snprintf(r1, sizeof(r1), "rename=%s:%s", path[1], path[0]);
	snprintf(r2, sizeof(r2), "rename=%s:%s", path[2], path[0]);
	snprintf(w1, sizeof(w1), "await_opt=1:12:2@127.0.0.1:%d", p);
	snprintf(w2, sizeof(w2), "await_opt=1:12:3@127.0.0.1:%d", p);
	const char *argv[] = {"sockprog", "tcp=g", cto("g", "127.0.0.1", p), "tcp=a",
			      cto("a", "127.0.0.2", p), "tcp=b", cto("b", "127.0.0.2", p), r1, w1,
			      "tcp=c", cto("c", "127.0.0.2", p), r2, w2, "tcp=d",
			      cto("d", "127.0.0.2", p), NULL};
	struct h_run r;
	h_run_ok(&r, argv, env, 1, 30000);
	cr_assert(strstr(r.out, "await_opt ok") && !strstr(r.out, "await_opt timeout"),
		  "the reloads were not seen: %s\n%s", r.out, r.err);
	expect_connect(&r, "b", "ETIMEDOUT", 250, 1000);
	expect_connect(&r, "c", "ECONNREFUSED", 0, AT_ONCE_MS); /* same settings: still ejected */
	expect_connect(&r, "d", "ETIMEDOUT", 250, 1000); /* eject_time changed: afresh */
	h_run_free(&r);
}

/* ------------------------------------------------------ libcurl multi */

/* Multi transfers (tests/progs/multiprog) feed the breaker of
 * 127.0.0.1:PORT and are refused by it at admission: round 0's four
 * transfers get no answer (52) and open it; round 1's four fail at once
 * with CURLE_COULDNT_CONNECT (7) and the easy path's message, delivered by
 * curl_multi_info_read, logged breaker_open, never reaching the server;
 * after breaker_open, round 2's probes succeed. In socket mode nothing of
 * round 1 reaches libcurl: the app's timer must still bring its loop back
 * for the messages. */
static void multi_breaker_case(const char *mode)
{
	arm(&good, "/inject?fault=drop&count=4");
	char logpath[400], text[600];
	snprintf(logpath, sizeof(logpath), "%s/access.log", good.dir);
	snprintf(text, sizeof(text),
		 "[global]\naccess_log = %s\n[lane default]\n"
		 "breaker_failure_ratio = 0.5\n"
		 "breaker_min_requests = 4\n"
		 "breaker_open = 1s\n"
		 "breaker_probes = 4\n",
		 logpath);
	const char *env[] = {h_config(text), NULL};
	char u[128];
	snprintf(u, sizeof(u), "http://127.0.0.1:%d/", good.port);
	const char *argv[] = {"multiprog", mode, u,   "-n", "4", "-r", "3",
			      "-p",	 "700", "-a", "-e", NULL};
	struct h_run r;
	h_run_ok(&r, argv, env, 1, 30000);
	char want[200];
	for (int i = 0; i < 4; i++) {
		snprintf(want, sizeof(want), "r 0 0 %d rc 52 ", i);
		cr_expect(strstr(r.out, want), "%s\n%s", r.out, r.err);
		snprintf(want, sizeof(want),
			 "r 1 0 %d rc 7 http 0 err connroute: lane 'default': circuit breaker "
			 "open for 127.0.0.1:%d; request not sent\n",
			 i, good.port);
		cr_expect(strstr(r.out, want), "%s\n%s", r.out, r.err);
		snprintf(want, sizeof(want), "r 2 0 %d rc 0 http 200", i);
		cr_expect(strstr(r.out, want), "%s\n%s", r.out, r.err);
	}
	/* 4 dropped + 4 probes: the refused ones never reached it */
	cr_expect_eq(h_stat(&good, "requests"), 8, "%s", r.out);
	char *log = h_read_file(logpath);
	cr_assert_not_null(log, "no access log");
	cr_expect_eq(h_count_str(log, "\"outcome\":\"breaker_open\""), 4, "%s", log);
	free(log);
	h_run_free(&r);
}

Test(resilience, multi_breaker_opens_and_rejects_perform, .init = start_two, .fini = stop_pair)
{
	multi_breaker_case("perform");
}

Test(resilience, multi_breaker_opens_and_rejects_socket, .init = start_two, .fini = stop_pair)
{
	multi_breaker_case("socket");
}

/* Multi transfers eject 127.0.0.2 (it closes every connection unanswered)
 * and then skip it through the opensocket callback: with a connection per
 * transfer, it accepts only the two that ejected it, 127.0.0.1 serves the
 * rest (without resilience it would get one connection per transfer, as
 * curl_without_ejection_keeps_failing shows for easy performs). */
static void multi_eject_case(const char *mode)
{
	arm(&bad, "/inject?fault=drop&count=1000");
	const char *env[] = {h_config("[lane default]\n"
					     "eject_after = 2\n"
					     "eject_time = 30s\n"),
			     NULL};
	host_url(good.port, "127.0.0.2", "127.0.0.1");
	const char *argv[] = {"multiprog", mode, url, "-n", "2", "-r", "6",
			      "-F",	   "-a", "-R", resolve, NULL};
	struct h_run r;
	h_run_ok(&r, argv, env, 1, 30000);
	cr_expect_eq(h_stat(&bad, "accepted"), 2, "%s\n%s\nbad: %ld accepted", r.out, r.err, h_stat(&bad, "accepted"));
	cr_expect_eq(h_count_str(r.out, " rc 0 http 200\n"), 10, "%s", r.out); /* the r lines */
	cr_expect_eq(h_stat(&good, "requests"), 10, "%s", r.out);
	h_run_free(&r);
}

Test(resilience, multi_skips_an_ejected_address_perform, .init = start_two, .fini = stop_pair)
{
	multi_eject_case("perform");
}

Test(resilience, multi_skips_an_ejected_address_socket, .init = start_two, .fini = stop_pair)
{
	multi_eject_case("socket");
}

/* Retry throttling for multi transfers: the easy path's decision (retry.c),
 * fed by their completions. A bucket of 4 tokens, each success gives one
 * back: round 0's request is dropped three times (two retries, then the
 * bucket is at 1), rounds 1 and 2 succeed (back to 3), so round 3's
 * dropped request is retried once more (3 > half) before the bucket is at
 * half again: 2 attempts. Without the successes counted it would get none. */
Test(resilience, multi_retry_throttling_counts_completions, .init = start_two, .fini = stop_pair)
{
	arm(&good, "/inject?fault=drop&count=3");
	const char *env[] = {h_config("[lane default]\n"
					     "retries = 2\n"
					     "retry_budget = 100%\n"
					     "retry_budget_min = 1000\n"
					     "retry_tokens = 4\n"
					     "retry_token_ratio = 1\n"),
			     NULL};
	char u[128];
	snprintf(u, sizeof(u), "http://127.0.0.1:%d/", good.port);
	/* -F: a new connection each time (no replay by libcurl of a dead reused one) */
	const char *argv[] = {"multiprog", "perform", u, "-r", "4", "-p", "400", "-a", "-F", NULL};
	struct h_bg b = {0};
	memcpy(b.argv, argv, sizeof(argv));
	memcpy(b.env, env, sizeof(env));
	h_bg_start(&b);
	/* rounds 0-2 done: 3 dropped + 2 answered; round 3 starts 400 ms later */
	long n = h_wait_stat(&good, "requests", 5, 5000);
	arm(&good, "/inject?fault=drop&count=3");
	h_bg_wait(&b);
	cr_assert_eq(b.rc, 0);
	cr_expect_eq(n, 5, "%s", b.r.out);
	cr_expect(strstr(b.r.out, "r 0 0 0 rc 52 http 0\n"), "%s", b.r.out);
	cr_expect(strstr(b.r.out, "r 2 0 0 rc 0 http 200\n"), "%s", b.r.out);
	cr_expect(strstr(b.r.out, "r 3 0 0 rc 52 http 0\n"), "%s", b.r.out);
	long total = h_stat(&good, "requests");
	cr_expect_eq(total, 5 + 2, "round 3: one retry (%ld requests): %s", total, b.r.out);
	h_run_free(&b.r);
}
