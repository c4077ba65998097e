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

static const char *conf_env(struct h_upstream *u, const char *text)
{
	static char env[512];
	char path[400];
	cr_assert_eq(h_write_file(u->dir, "connroute.conf", text, path, sizeof(path)), 0);
	snprintf(env, sizeof(env), "CONNROUTE_CONFIG=%s", path);
	return env;
}

/* The good one on 127.0.0.1, the other on 127.0.0.2 with the same port. */
static void start_pair(const char *const *bad_extra)
{
	cr_assert_eq(h_upstream_start(&good, NULL), 0);
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

static void run(struct h_run *r, const char *const *argv, const char *const *env)
{
	cr_assert_eq(h_run(r, argv, env, 1, 30000), 0);
	cr_assert_eq(r->timed_out, 0, "program hung: %s", r->out);
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
	const char *env[] = {conf_env(&good, "[lane default]\n"
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
	run(&r, argv, env);
	expect_connect(&r, "g1", "ok", 0, 200);
	expect_connect(&r, "a", "ETIMEDOUT", 250, 1000);
	expect_connect(&r, "b", "ETIMEDOUT", 250, 1000);
	expect_connect(&r, "c", "ECONNREFUSED", 0, 50);
	expect_connect(&r, "g2", "ok", 0, 200);
	expect_connect(&r, "d", "ETIMEDOUT", 250, 1000); /* the probe */
	expect_connect(&r, "e", "ECONNREFUSED", 0, 50);
	h_run_free(&r);
}

/* Without the keys, the same program waits for the kernel every time. */
Test(resilience, raw_connect_without_ejection_always_tries, .init = start_hanging,
     .fini = stop_pair)
{
	const char *env[] = {conf_env(&good, "[lane default]\nconnect_timeout = 300ms\n"), NULL};
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
	run(&r, argv, env);
	expect_connect(&r, "c", "ETIMEDOUT", 250, 1000);
	h_run_free(&r);
}

/* The breaker of address:port opens after breaker_min_requests failures
 * (ratio 1 >= 0.5): refused at once; after breaker_open one probe goes to
 * the kernel, fails, and the breaker opens again. */
Test(resilience, raw_breaker_opens_rejects_and_probes, .init = start_hanging, .fini = stop_pair)
{
	const char *env[] = {conf_env(&good, "[lane default]\n"
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
	run(&r, argv, env);
	expect_connect(&r, "c", "ETIMEDOUT", 250, 1000);
	expect_connect(&r, "d", "ECONNREFUSED", 0, 50);
	expect_connect(&r, "g", "ok", 0, 200); /* another address:port, another breaker */
	expect_connect(&r, "e", "ETIMEDOUT", 250, 1000);
	expect_connect(&r, "f", "ECONNREFUSED", 0, 50);
	h_run_free(&r);
}

/* A non-blocking connect's outcome is taken at its close: refused
 * connects (nothing listens on 127.0.0.3) eject the address, and the next
 * non-blocking connect to it fails at once, with ECONNREFUSED from
 * connect() itself rather than EINPROGRESS. */
Test(resilience, raw_nonblocking_outcome_is_taken_at_close, .init = start_hanging,
     .fini = stop_pair)
{
	const char *env[] = {conf_env(&good, "[lane default]\n"
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
	run(&r, argv, env);
	expect_connect(&r, "c", "ECONNREFUSED", 0, 50);
	cr_expect(strstr(r.out, "connect a err EINPROGRESS") ||
			  strstr(r.out, "connect a err ECONNREFUSED"),
		  "%s", r.out);
	h_run_free(&r);
}
