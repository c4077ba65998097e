/* Integration tests of the libcurl side: unmodified libcurl programs (tests/progs/curlprog,
 * curlkeys, a pycurl script) run with and without LD_PRELOAD against the test upstream (and
 * once against a private nginx), observed from outside only: what the program printed and
 * what the server counted on its control port. Nothing here knows how the hooks work.
 *
 * Pattern: the no-shim half of a test first proves the scenario means what the test says
 * (e.g. 50 fresh handles really make 50 connections), then h_reset, then the shim half. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

/* Closes idle connections after 150 ms, so a pooled connection is dead on its next use. */
static void start_short_idle(void)
{
	const char *args[] = {"--idle-timeout-ms", "150", NULL};
	h_start_with(args);
}

/* Value of name=... on curlprog's summary line, -1 if absent. */
static long summary(const struct h_run *r, const char *name)
{
	const char *s = strstr(r->out, "\nsummary ");
	if (!s && strncmp(r->out, "summary ", 8) == 0)
		s = r->out;
	if (!s)
		return -1;
	char key[64];
	snprintf(key, sizeof(key), " %s=", name);
	const char *eol = strchr(s + 1, '\n');
	const char *k = strstr(s, key);
	if (!k || (eol && k > eol))
		return -1;
	return strtol(k + strlen(key), NULL, 10);
}

/* Value after "name " at the start of a line (curlprog --print-fds), -1 if absent. */
static long line_value(const char *out, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = out; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (!strncmp(p, name, n) && p[n] == ' ')
			return strtol(p + n + 1, NULL, 10);
	return -1;
}

static void expect_all_ok(const struct h_run *r, long n, const char *what)
{
	cr_expect_eq(summary(r, "requests"), n, "%s: %s\n%s", what, r->out, r->err);
	cr_expect_eq(summary(r, "ok"), n, "%s: %s\n%s", what, r->out, r->err);
	cr_expect_eq(r->status, 0, "%s: exit %d\n%s", what, r->status, r->err);
}

static void reset(void)
{
	/* Connections of the previous run are closed by then: wait until the server saw it,
	 * so max_open starts from zero. */
	h_wait_stat(&h_up, "open", 0, 10000);
	cr_assert_eq(h_reset(&h_up), 0);
}

/* ------------------------------------------------------------------- reuse */

Test(curl_reuse, fresh_handles_over_http_share_connections, .init = h_start_plain, .fini = h_stop)
{
	struct h_run a, b;
	H_RUN(&a, NULL, 0, "curlprog", "--mode", "fresh", "--requests", "50", "--quiet", h_path_url("/"));
	expect_all_ok(&a, 50, "no shim");
	cr_assert_eq(h_stat(&h_up, "accepted"), 50, "without the shim every handle connects anew");
	reset();
	H_RUN(&b, NULL, 1, "curlprog", "--mode", "fresh", "--requests", "50", "--quiet", h_path_url("/"));
	expect_all_ok(&b, 50, "shim");
	cr_expect_leq(h_stat(&h_up, "accepted"), 2);
	cr_expect_eq(h_stat(&h_up, "requests"), 50);
	h_run_free(&a);
	h_run_free(&b);
}

Test(curl_reuse, fresh_handles_over_https_share_connections, .init = h_start_tls, .fini = h_stop)
{
	struct h_run a, b;
	H_RUN(&a, NULL, 0, "curlprog", "--mode", "fresh", "--requests", "50", "--quiet", "--cacert",
	    h_up.cert, h_path_url("/"));
	expect_all_ok(&a, 50, "no shim");
	cr_assert_eq(h_stat(&h_up, "tls_handshakes"), 50);
	reset();
	H_RUN(&b, NULL, 1, "curlprog", "--mode", "fresh", "--requests", "50", "--quiet", "--cacert",
	    h_up.cert, h_path_url("/"));
	expect_all_ok(&b, 50, "shim");
	cr_expect_leq(h_stat(&h_up, "tls_handshakes"), 2);
	cr_expect_leq(h_stat(&h_up, "accepted"), 2);
	cr_expect_eq(h_stat(&h_up, "tls_failed"), 0);
	h_run_free(&a);
	h_run_free(&b);
}

Test(curl_reuse, persistent_handle_is_unchanged, .init = h_start_plain, .fini = h_stop)
{
	struct h_run a, b;
	H_RUN(&a, NULL, 0, "curlprog", "--mode", "persistent", "--requests", "50", "--quiet", h_path_url("/"));
	expect_all_ok(&a, 50, "no shim");
	cr_assert_eq(h_stat(&h_up, "accepted"), 1);
	reset();
	H_RUN(&b, NULL, 1, "curlprog", "--mode", "persistent", "--requests", "50", "--quiet", h_path_url("/"));
	expect_all_ok(&b, 50, "shim");
	cr_expect_eq(h_stat(&h_up, "accepted"), 1);
	cr_expect_eq(h_stat(&h_up, "requests"), 50);
	h_run_free(&a);
	h_run_free(&b);
}

Test(curl_reuse, fresh_handles_in_four_threads, .init = h_start_plain, .fini = h_stop)
{
	struct h_run a, b;
	H_RUN(&a, NULL, 0, "curlprog", "--mode", "fresh", "--threads", "4", "--requests", "25", "--quiet",
	    h_path_url("/"));
	expect_all_ok(&a, 100, "no shim");
	cr_assert_eq(h_stat(&h_up, "accepted"), 100);
	reset();
	H_RUN(&b, NULL, 1, "curlprog", "--mode", "fresh", "--threads", "4", "--requests", "25", "--quiet",
	    h_path_url("/"));
	expect_all_ok(&b, 100, "shim");
	cr_expect_leq(h_stat(&h_up, "accepted"), 8);
	cr_expect_eq(h_stat(&h_up, "requests"), 100);
	h_run_free(&a);
	h_run_free(&b);
}

Test(curl_reuse, thread_per_request_reuses_across_threads, .init = h_start_plain, .fini = h_stop)
{
	struct h_run a, b;
	H_RUN(&a, NULL, 0, "curlprog", "--mode", "thread-per-request", "--threads", "4", "--requests", "40",
	    "--quiet", h_path_url("/"));
	expect_all_ok(&a, 40, "no shim");
	cr_assert_eq(h_stat(&h_up, "accepted"), 40);
	reset();
	H_RUN(&b, NULL, 1, "curlprog", "--mode", "thread-per-request", "--threads", "4", "--requests", "40",
	    "--quiet", h_path_url("/"));
	expect_all_ok(&b, 40, "shim");
	cr_expect_leq(h_stat(&h_up, "accepted"), 8, "connections must outlive the threads that made them");
	h_run_free(&a);
	h_run_free(&b);
}

/* Both printed X-Conn-Id values and the server agree that requests went over few
 * connections (the header is what the app saw; accepted is what the server saw). */
Test(curl_reuse, printed_conn_ids_show_reuse, .init = h_start_plain, .fini = h_stop)
{
	struct h_run b;
	H_RUN(&b, NULL, 1, "curlprog", "--mode", "fresh", "--requests", "10", "--print-conn", h_path_url("/conn"));
	expect_all_ok(&b, 10, "shim");
	int distinct = 0;
	char seen[16][32];
	for (const char *p = b.out; (p = strstr(p, "\nconn ")); p++) {
		char id[32] = "";
		if (sscanf(p + 6, "%31s", id) != 1)
			continue;
		int dup = 0;
		for (int i = 0; i < distinct; i++)
			dup |= !strcmp(seen[i], id);
		if (!dup && distinct < 16)
			snprintf(seen[distinct++], sizeof(seen[0]), "%s", id);
	}
	cr_expect_geq(distinct, 1, "%s", b.out);
	cr_expect_leq(distinct, 2, "%s", b.out);
	cr_expect_eq(h_count_str(b.out, "conn=-"), 0, "%s", b.out);
	h_run_free(&b);
}

/* --------------------------------------------------------------- isolation */

#define MAX_IDS 64
struct idset {
	long v[MAX_IDS];
	int n;
	int requests;
};

static void idset_add(struct idset *s, long id)
{
	s->requests++;
	for (int i = 0; i < s->n; i++)
		if (s->v[i] == id)
			return;
	if (s->n < MAX_IDS)
		s->v[s->n++] = id;
}

static int idsets_disjoint(const struct idset *a, const struct idset *b, long *common)
{
	for (int i = 0; i < a->n; i++)
		for (int j = 0; j < b->n; j++)
			if (a->v[i] == b->v[j]) {
				*common = a->v[i];
				return 0;
			}
	return 1;
}

/* Parses curlkeys output into the conn ids seen per key. */
static void parse_keys(const char *out, const char *key, struct idset *s)
{
	char prefix[160];
	snprintf(prefix, sizeof(prefix), "key %s conn ", key);
	size_t n = strlen(prefix);
	memset(s, 0, sizeof(*s));
	for (const char *p = out; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (!strncmp(p, prefix, n))
			idset_add(s, strtol(p + n, NULL, 10));
}

static const char *lanes_conf = "[lane critical]\nmatch = */critical\n"
				"[lane batch]\nmatch = */batch\n";

static void isolation_case(int serial)
{
	struct h_run a, b;
	const char *env[] = {h_config(lanes_conf), NULL};
	const char *argv_s[] = {"curlkeys", "-s", "-n", "5", h_url, "a/critical", "b/batch", NULL};
	const char *argv_p[] = {"curlkeys", "-n", "5", h_url, "a/critical", "b/batch", NULL};
	const char *const *argv = serial ? argv_s : argv_p;

	h_run_ok(&a, argv, env, 0, 30000);
	cr_assert_eq(a.status, 0, "%s\n%s", a.out, a.err);
	struct idset ca, ba;
	parse_keys(a.out, "a/critical", &ca);
	parse_keys(a.out, "b/batch", &ba);
	cr_assert_eq(ca.requests, 5, "%s", a.out);
	cr_assert_eq(ba.requests, 5, "%s", a.out);
	cr_assert_eq(ca.n + ba.n, 10, "without the shim every request connects anew: %s", a.out);
	reset();

	h_run_ok(&b, argv, env, 1, 30000);
	cr_expect_eq(b.status, 0, "%s\n%s", b.out, b.err);
	cr_expect_eq(h_count_str(b.out, "setkey"), 0, "connroute_set_key failed under the shim: %s", b.out);
	struct idset c, s;
	parse_keys(b.out, "a/critical", &c);
	parse_keys(b.out, "b/batch", &s);
	cr_assert_eq(c.requests, 5, "%s", b.out);
	cr_assert_eq(s.requests, 5, "%s", b.out);
	long common = 0;
	cr_expect(idsets_disjoint(&c, &s, &common),
		  "connection %ld served both the critical and the batch lane:\n%s", common, b.out);
	cr_expect_leq(c.n, 2, "critical lane did not reuse: %s", b.out);
	cr_expect_leq(s.n, 2, "batch lane did not reuse: %s", b.out);
	cr_expect_leq(h_stat(&h_up, "accepted"), 4);
	h_run_free(&a);
	h_run_free(&b);
}

/* Serial: the critical thread finishes first and leaves its idle connection behind; the
 * batch thread must not get it. */
Test(curl_lanes, lanes_never_share_connections_serial, .init = h_start_plain, .fini = h_stop)
{
	isolation_case(1);
}

Test(curl_lanes, lanes_never_share_connections_concurrent, .init = h_start_plain, .fini = h_stop)
{
	isolation_case(0);
}

/* ------------------------------------------------ state that must not cross handles */

Test(curl_safety, cookies_never_cross_handles, .init = h_start_plain, .fini = h_stop)
{
	struct h_run ctl, ctl2, b;
	/* Control: one persistent handle with the cookie engine does send the cookie back. */
	H_RUN(&ctl, NULL, 0, "curlprog", "--mode", "persistent", "--requests", "3", "--cookies",
	    "--print-body-all", "--path-seq", "/cookie/set?session=secret,/headers,/headers", h_url);
	expect_all_ok(&ctl, 3, "control");
	cr_assert_eq(h_count_str(ctl.out, "Cookie: session=secret"), 2, "%s", ctl.out);
	/* ... and so it does under the shim (the app's own handle keeps its cookies). */
	H_RUN(&ctl2, NULL, 1, "curlprog", "--mode", "persistent", "--requests", "3", "--cookies",
	    "--print-body-all", "--path-seq", "/cookie/set?session=secret,/headers,/headers", h_url);
	expect_all_ok(&ctl2, 3, "control under the shim");
	cr_expect_eq(h_count_str(ctl2.out, "Cookie: session=secret"), 2, "%s", ctl2.out);
	reset();
	/* New handles: each has its own, empty cookie jar, whatever connection it gets. */
	H_RUN(&b, NULL, 1, "curlprog", "--mode", "fresh", "--requests", "3", "--cookies", "--print-body-all",
	    "--path-seq", "/cookie/set?session=secret,/headers,/headers", h_url);
	expect_all_ok(&b, 3, "shim");
	cr_expect_eq(h_count_str(b.out, "Cookie:"), 0, "a new handle sent another handle's cookie:\n%s", b.out);
	cr_expect_eq(h_count_str(b.out, "body Host:"), 2, "%s", b.out);
	cr_expect_leq(h_stat(&h_up, "accepted"), 2);
	h_run_free(&ctl);
	h_run_free(&ctl2);
	h_run_free(&b);
}

Test(curl_safety, credentials_never_cross_handles, .init = h_start_plain, .fini = h_stop)
{
	struct h_run a, b;
	/* Only request 0's handle sets USERPWD; requests 1..3 are new handles without it. */
	H_RUN(&a, NULL, 0, "curlprog", "--mode", "fresh", "--requests", "4", "--user", "alice:s3cret",
	    "--user-first-only", "--print-body-all", h_path_url("/headers"));
	expect_all_ok(&a, 4, "no shim");
	cr_assert_eq(h_count_str(a.out, "Authorization: Basic"), 1, "%s", a.out);
	reset();
	H_RUN(&b, NULL, 1, "curlprog", "--mode", "fresh", "--requests", "4", "--user", "alice:s3cret",
	    "--user-first-only", "--print-body-all", h_path_url("/headers"));
	expect_all_ok(&b, 4, "shim");
	cr_expect_eq(h_count_str(b.out, "Authorization:"), 1, "credentials crossed handles:\n%s", b.out);
	/* The one that has it sent it first. */
	const char *first_req = strstr(b.out, "req 0 0 ");
	const char *second_req = strstr(b.out, "req 0 1 ");
	const char *auth = strstr(b.out, "Authorization:");
	cr_expect(first_req && second_req && auth && auth > first_req && auth < second_req, "%s", b.out);
	cr_expect_leq(h_stat(&h_up, "accepted"), 2);
	h_run_free(&a);
	h_run_free(&b);
}

/* Same over TLS: a reused TLS connection must not carry one handle's identity either. */
Test(curl_safety, credentials_never_cross_handles_tls, .init = h_start_tls, .fini = h_stop)
{
	struct h_run b;
	H_RUN(&b, NULL, 1, "curlprog", "--mode", "fresh", "--requests", "4", "--user", "alice:s3cret",
	    "--user-first-only", "--print-body-all", "--cacert", h_up.cert, h_path_url("/headers"));
	expect_all_ok(&b, 4, "shim");
	cr_expect_eq(h_count_str(b.out, "Authorization:"), 1, "credentials crossed handles:\n%s", b.out);
	cr_expect_leq(h_stat(&h_up, "tls_handshakes"), 2);
	h_run_free(&b);
}

/* The app's own CURLSH (CONNECT shared) is kept: the same reuse as without the shim. */
Test(curl_safety, own_share_is_respected, .init = h_start_plain, .fini = h_stop)
{
	struct h_run a, b;
	H_RUN(&a, NULL, 0, "curlprog", "--mode", "fresh", "--requests", "20", "--own-share", "--quiet",
	    h_path_url("/"));
	expect_all_ok(&a, 20, "no shim");
	long without = h_stat(&h_up, "accepted");
	cr_assert_eq(without, 1, "the app's share reuses by itself");
	reset();
	H_RUN(&b, NULL, 1, "curlprog", "--mode", "fresh", "--requests", "20", "--own-share", "--quiet",
	    h_path_url("/"));
	expect_all_ok(&b, 20, "shim");
	cr_expect_eq(h_stat(&h_up, "accepted"), without);
	cr_expect_eq(h_stat(&h_up, "requests"), 20);
	h_run_free(&a);
	h_run_free(&b);
}

Test(curl_safety, forbid_reuse_is_respected, .init = h_start_plain, .fini = h_stop)
{
	struct h_run b;
	H_RUN(&b, NULL, 1, "curlprog", "--mode", "fresh", "--requests", "10", "--forbid-reuse", "--quiet",
	    h_path_url("/"));
	expect_all_ok(&b, 10, "shim");
	cr_expect_eq(h_stat(&h_up, "accepted"), 10);
	h_run_free(&b);
}

Test(curl_safety, fresh_connect_is_respected, .init = h_start_plain, .fini = h_stop)
{
	struct h_run b;
	H_RUN(&b, NULL, 1, "curlprog", "--mode", "fresh", "--requests", "10", "--fresh-connect", "--quiet",
	    h_path_url("/"));
	expect_all_ok(&b, 10, "shim");
	cr_expect_eq(h_stat(&h_up, "accepted"), 10);
	h_run_free(&b);
}

Test(curl_safety, post_is_sent_exactly_once, .init = h_start_plain, .fini = h_stop)
{
	struct h_run b;
	H_RUN(&b, NULL, 1, "curlprog", "--mode", "fresh", "--requests", "10", "--method", "POST", "--data",
	    "amount=10", "--quiet", h_path_url("/"));
	expect_all_ok(&b, 10, "shim");
	cr_expect_eq(h_stat(&h_up, "requests_post"), 10);
	cr_expect_eq(h_stat(&h_up, "requests"), 10);
	cr_expect_leq(h_stat(&h_up, "accepted"), 2);
	h_run_free(&b);
}

/* The server drops idle connections after 150 ms; the app waits 400 ms between requests,
 * so every pooled connection is dead when the next handle would take it. Requests must
 * still succeed, each reaching the server exactly once. */
Test(curl_safety, dead_pooled_connection_post_sent_once, .init = start_short_idle, .fini = h_stop)
{
	struct h_run a, b;
	H_RUN(&a, NULL, 0, "curlprog", "--mode", "fresh", "--requests", "5", "--pause-ms", "400", "--method",
	    "POST", "--data", "x=1", "--quiet", h_path_url("/"));
	expect_all_ok(&a, 5, "no shim");
	cr_assert_eq(h_stat(&h_up, "requests_post"), 5);
	reset();
	H_RUN(&b, NULL, 1, "curlprog", "--mode", "fresh", "--requests", "5", "--pause-ms", "400", "--method",
	    "POST", "--data", "x=1", "--quiet", h_path_url("/"));
	expect_all_ok(&b, 5, "shim");
	cr_expect_eq(h_stat(&h_up, "requests_post"), 5);
	cr_expect_eq(h_stat(&h_up, "requests"), 5);
	h_run_free(&a);
	h_run_free(&b);
}

Test(curl_safety, dead_pooled_connection_get_sent_once, .init = start_short_idle, .fini = h_stop)
{
	struct h_run b;
	H_RUN(&b, NULL, 1, "curlprog", "--mode", "fresh", "--requests", "5", "--pause-ms", "400", "--quiet",
	    h_path_url("/"));
	expect_all_ok(&b, 5, "shim");
	cr_expect_eq(h_stat(&h_up, "requests_get"), 5);
	h_run_free(&b);
}

/* ------------------------------------------------------------ limits, timeouts */

Test(curl_limits, per_host_limit_and_queue_timeout, .init = h_start_plain, .fini = h_stop)
{
	struct h_run a, b;
	const char *env[] = {h_config("[lane default]\nmax_conns_per_host = 2\nqueue_timeout = 200ms\n"), NULL};
	/* Without the shim the config means nothing: all four run at once. */
	H_RUN(&a, env, 0, "curlprog", "--mode", "fresh", "--threads", "4", "--requests", "1", "--errbuf",
	    h_path_url("/delay/500"));
	expect_all_ok(&a, 4, "no shim");
	/* more than the limit at once (all four need not overlap: under load a thread may
	 * start after another's request was answered) */
	cr_assert_gt(h_stat(&h_up, "max_open"), 2, "without the shim: %ld at once", h_stat(&h_up, "max_open"));
	reset();
	H_RUN(&b, env, 1, "curlprog", "--mode", "fresh", "--threads", "4", "--requests", "1", "--errbuf",
	    h_path_url("/delay/500"));
	cr_expect_leq(h_stat(&h_up, "max_open"), 2);
	long ok = summary(&b, "ok"), errors = summary(&b, "errors");
	cr_expect_eq(ok + errors, 4, "%s\n%s", b.out, b.err);
	cr_expect_geq(ok, 1, "%s", b.out);
	cr_expect_leq(ok, 2, "%s", b.out);
	cr_expect_geq(errors, 2, "%s", b.out);
	cr_expect_leq(h_stat(&h_up, "path_delay"), 2, "a queued request reached the server");
	/* Every failed request: CURLE_OPERATION_TIMEDOUT with a message naming lane and limit. */
	int failed = 0;
	for (const char *p = b.out; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (strncmp(p, "req ", 4) != 0)
			continue;
		const char *eol = strchr(p, '\n');
		size_t len = eol ? (size_t)(eol - p) : strlen(p);
		char line[512];
		snprintf(line, sizeof(line), "%.*s", (int)(len < 511 ? len : 511), p);
		if (strstr(line, " code=0 "))
			continue;
		failed++;
		cr_expect(strstr(line, " code=28 ") != NULL, "want CURLE_OPERATION_TIMEDOUT: %s", line);
		const char *eb = strstr(line, "errbuf=");
		cr_expect(eb != NULL, "no error text: %s", line);
		if (eb) {
			cr_expect(strstr(eb, "default") != NULL, "error text does not name the lane: %s", line);
			cr_expect(strstr(eb, "2") != NULL, "error text does not give the limit: %s", line);
		}
	}
	cr_expect_eq(failed, errors, "%s", b.out);
	h_run_free(&a);
	h_run_free(&b);
}

/* ms=... of curlprog's first request line. */
static double first_ms(const struct h_run *r)
{
	const char *p = strstr(r->out, " ms=");
	return p ? strtod(p + 4, NULL) : -1;
}

static long first_code(const struct h_run *r)
{
	const char *p = strstr(r->out, " code=");
	return p ? strtol(p + 6, NULL, 10) : -1;
}

Test(curl_limits, lane_request_timeout_applies, .init = h_start_plain, .fini = h_stop)
{
	struct h_run a, b, c;
	const char *env[] = {h_config("[lane default]\nconnect_timeout = 300ms\nrequest_timeout = 300ms\n"), NULL};
	H_RUN(&a, env, 0, "curlprog", "--requests", "1", h_path_url("/delay/3000"));
	cr_assert_eq(first_code(&a), 0, "without the shim the slow request completes: %s", a.out);
	H_RUN(&b, env, 1, "curlprog", "--requests", "1", "--errbuf", h_path_url("/delay/3000"));
	cr_expect_eq(first_code(&b), 28, "%s\n%s", b.out, b.err);
	cr_expect_lt(first_ms(&b), 2500.0, "%s", b.out);
	/* A larger timeout of the app does not lift the lane's. */
	H_RUN(&c, env, 1, "curlprog", "--requests", "1", "--timeout-ms", "10000", h_path_url("/delay/3000"));
	cr_expect_eq(first_code(&c), 28, "%s\n%s", c.out, c.err);
	cr_expect_lt(first_ms(&c), 2500.0, "%s", c.out);
	h_run_free(&a);
	h_run_free(&b);
	h_run_free(&c);
}

Test(curl_limits, app_smaller_timeout_wins, .init = h_start_plain, .fini = h_stop)
{
	struct h_run b;
	const char *env[] = {h_config("[lane default]\nrequest_timeout = 2500ms\n"), NULL};
	H_RUN(&b, env, 1, "curlprog", "--requests", "1", "--timeout-ms", "100", h_path_url("/delay/3000"));
	cr_expect_eq(first_code(&b), 28, "%s\n%s", b.out, b.err);
	cr_expect_lt(first_ms(&b), 1500.0, "the app's 100 ms did not win over the lane's 2.5 s: %s", b.out);
	h_run_free(&b);
}

/* ----------------------------------------------------------------------- fds */

/* fds at exit, after every handle is cleaned up: without the shim libcurl gives all back;
 * with it, what the pools keep must be bounded by the concurrency, never grow with the
 * number of requests. slack: what the shim may keep (idle connections and per-pool
 * overhead). --list-fds prints what the fds are when the bound is missed. */
static void fd_case(const char *mode, const char *threads, const char *requests, long slack)
{
	struct h_run a, b;
	H_RUN(&a, NULL, 0, "curlprog", "--mode", mode, "--threads", threads, "--requests", requests, "--quiet",
	    "--print-fds", h_path_url("/"));
	cr_assert_eq(a.status, 0, "%s\n%s", a.out, a.err);
	long base = line_value(a.out, "fds_end");
	cr_assert_geq(base, 0, "%s", a.out);
	cr_expect_eq(base, line_value(a.out, "fds_start"), "libcurl alone leaks fds? %s", a.out);
	H_RUN(&b, NULL, 1, "curlprog", "--mode", mode, "--threads", threads, "--requests", requests, "--quiet",
	    "--list-fds", h_path_url("/"));
	cr_assert_eq(b.status, 0, "%s\n%s", b.out, b.err);
	long end = line_value(b.out, "fds_end");
	cr_expect_geq(end, 0, "%s", b.out);
	cr_expect_leq(end, base + slack, "fds at exit: %ld with the shim, %ld without:\n%s", end, base, b.out);
	h_run_free(&a);
	h_run_free(&b);
}

Test(curl_fds, fresh_handles_keep_fds_bounded, .init = h_start_plain, .fini = h_stop)
{
	fd_case("fresh", "1", "30", 8);
}

/* 120 requests, at most 4 at once: 4 x 4 allows a connection plus some per-pool fds for
 * each of 4 concurrent users, far below one per request. */
Test(curl_fds, thread_per_request_keeps_fds_bounded, .init = h_start_plain, .fini = h_stop)
{
	fd_case("thread-per-request", "4", "120", 16);
}

/* -------------------------------------------------------------------- pycurl */

static const char *pycurl_script =
	"import io, sys\n"
	"import pycurl\n"
	"url, n = sys.argv[1], int(sys.argv[2])\n"
	"cafile = sys.argv[3] if len(sys.argv) > 3 else None\n"
	"ok = 0\n"
	"for i in range(n):\n"
	"    c = pycurl.Curl()\n"
	"    buf = io.BytesIO()\n"
	"    c.setopt(pycurl.URL, url)\n"
	"    c.setopt(pycurl.WRITEDATA, buf)\n"
	"    c.setopt(pycurl.TIMEOUT_MS, 10000)\n"
	"    if cafile:\n"
	"        c.setopt(pycurl.CAINFO, cafile)\n"
	"    try:\n"
	"        c.perform()\n"
	"        if c.getinfo(pycurl.RESPONSE_CODE) == 200 and buf.getvalue() == b'ok\\n':\n"
	"            ok += 1\n"
	"    except pycurl.error as e:\n"
	"        print('error', e)\n"
	"    c.close()\n"
	"print('ok', ok)\n";

/* A python3 that has pycurl (Debian's python3-pycurl lives with /usr/bin/python3, which
 * need not be the first python3 in PATH), or NULL. */
static const char *find_pycurl_python(void)
{
	return h_python("import pycurl");
}

static void pycurl_case(int tls)
{
	const char *py = find_pycurl_python();
	if (!py)
		cr_skip_test("pycurl is not installed (Debian: python3-pycurl)");
	char script[400];
	cr_assert_eq(h_write_file(h_dir, "pycurl_fresh.py", pycurl_script, script, sizeof(script)), 0);
	struct h_run a, b;
	const char *argv_plain[] = {py, script, h_path_url("/"), "20", NULL};
	const char *argv_tls[] = {py, script, h_path_url("/"), "20", h_up.cert, NULL};
	const char *const *argv = tls ? argv_tls : argv_plain;
	h_run_ok(&a, argv, NULL, 0, 30000);
	cr_assert(strstr(a.out, "ok 20\n") != NULL, "%s\n%s", a.out, a.err);
	cr_assert_eq(h_stat(&h_up, tls ? "tls_handshakes" : "accepted"), 20);
	reset();
	h_run_ok(&b, argv, NULL, 1, 30000);
	cr_expect(strstr(b.out, "ok 20\n") != NULL, "%s\n%s", b.out, b.err);
	cr_expect_eq(b.status, 0, "%s", b.err);
	cr_expect_leq(h_stat(&h_up, "accepted"), 2);
	if (tls)
		cr_expect_leq(h_stat(&h_up, "tls_handshakes"), 2);
	h_run_free(&a);
	h_run_free(&b);
}

Test(curl_pycurl, new_pycurl_handle_per_request_http, .init = h_start_plain, .fini = h_stop)
{
	pycurl_case(0);
}

Test(curl_pycurl, new_pycurl_handle_per_request_https, .init = h_start_tls, .fini = h_stop)
{
	pycurl_case(1);
}

/* --------------------------------------------------------------------- nginx */

static char ngx_dir[256];
static int ngx_http, ngx_https;

/* scripts/nginx.sh: next to the build dir (build/../scripts), else from the cwd (make runs
 * the tests from the source tree). */
static const char *ngx_script(void)
{
	static char path[600];
	snprintf(path, sizeof(path), "%s/../scripts/nginx.sh", h_build());
	if (access(path, R_OK) == 0)
		return path;
	snprintf(path, sizeof(path), "scripts/nginx.sh");
	return access(path, R_OK) == 0 ? path : NULL;
}

static long ngx_accepts(void)
{
	int fd = h_connect("127.0.0.1", ngx_http, 5000);
	if (fd < 0)
		return -1;
	int st = 0;
	char *body = NULL;
	long v = -1;
	if (h_sock_http(fd, "GET", "/stub_status", NULL, NULL, &st, &body) == 0 && st == 200 && body) {
		const char *p = strstr(body, "requests");
		if (p)
			v = strtol(p + strlen("requests"), NULL, 10);
	}
	free(body);
	close(fd);
	return v;
}

static void ngx_start(void)
{
	if (access("/usr/sbin/nginx", X_OK) != 0 && system("command -v nginx >/dev/null 2>&1") != 0)
		cr_skip_test("nginx is not installed (Debian: nginx-light)");
	const char *script = ngx_script();
	if (!script)
		cr_skip_test("scripts/nginx.sh not found (run from the source tree)");
	char tmpl[] = "/tmp/cr-nginx-XXXXXX";
	cr_assert_not_null(mkdtemp(tmpl));
	snprintf(ngx_dir, sizeof(ngx_dir), "%s", tmpl);
	struct h_run r;
	const char *argv[] = {"bash", script, "start", ngx_dir, NULL};
	cr_assert_eq(h_run(&r, argv, NULL, 0, 30000), 0);
	cr_assert_eq(r.status, 0, "nginx.sh start: %s\n%s", r.out, r.err);
	const char *h = strstr(r.out, "HTTP_PORT="), *s = strstr(r.out, "HTTPS_PORT=");
	cr_assert(h && s, "%s", r.out);
	ngx_http = atoi(h + 10);
	ngx_https = atoi(s + 11);
	h_run_free(&r);
}

static void ngx_stop(void)
{
	const char *script = ngx_script();
	if (!ngx_dir[0])
		return;
	struct h_run r;
	const char *argv[] = {"bash", script ? script : "scripts/nginx.sh", "stop", ngx_dir, NULL};
	if (h_run(&r, argv, NULL, 0, 30000) == 0)
		h_run_free(&r);
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", ngx_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", ngx_dir);
}

Test(curl_nginx, fresh_handles_over_https_to_nginx, .fini = ngx_stop)
{
	ngx_start();
	char u[128], ca[300];
	snprintf(u, sizeof(u), "https://localhost:%d/", ngx_https);
	snprintf(ca, sizeof(ca), "%s/cert.pem", ngx_dir);
	struct h_run a, b;
	/* Each reading of stub_status is a connection of its own: delta = after - before - 1. */
	long k0 = ngx_accepts();
	cr_assert_geq(k0, 0);
	H_RUN(&a, NULL, 0, "curlprog", "--mode", "fresh", "--threads", "2", "--requests", "20", "--quiet",
	    "--cacert", ca, u);
	expect_all_ok(&a, 40, "no shim");
	long k1 = ngx_accepts();
	cr_assert_eq(k1 - k0 - 1, 40, "without the shim: one connection per request");
	H_RUN(&b, NULL, 1, "curlprog", "--mode", "fresh", "--threads", "2", "--requests", "20", "--quiet",
	    "--cacert", ca, u);
	expect_all_ok(&b, 40, "shim");
	long k2 = ngx_accepts();
	cr_expect_leq(k2 - k1 - 1, 4, "connections accepted by nginx with the shim");
	h_run_free(&a);
	h_run_free(&b);
}

/* ------------------------------------------------------------- retries */

/* retries = 2: a GET the server drops unanswered reaches it three times; a
 * POST exactly once; a POST carrying an Idempotency-Key three times. */
Test(curl_retries, idempotent_requests_only, .init = h_start_plain, .fini = h_stop)
{
	struct h_run a, g, p, k;
	const char *env[] = {h_config("[lane default]\nretries = 2\n"), NULL};
	H_RUN(&a, env, 0, "curlprog", "--requests", "1", h_path_url("/fault/drop"));
	cr_assert_eq(h_stat(&h_up, "path_fault"), 1, "without the shim: one attempt");
	cr_expect_eq(first_code(&a), 52, "%s", a.out);
	reset();
	H_RUN(&g, env, 1, "curlprog", "--requests", "1", h_path_url("/fault/drop"));
	cr_expect_eq(first_code(&g), 52, "the last error is the app's: %s", g.out);
	cr_expect_eq(h_stat(&h_up, "path_fault"), 3, "GET retried twice");
	reset();
	H_RUN(&p, env, 1, "curlprog", "--requests", "1", "--method", "POST", "--data", "x=1",
	    h_path_url("/fault/drop"));
	cr_expect_eq(first_code(&p), 52, "%s", p.out);
	cr_expect_eq(h_stat(&h_up, "path_fault"), 1, "a POST is never sent twice");
	reset();
	H_RUN(&k, env, 1, "curlprog", "--requests", "1", "--method", "POST", "--data", "x=1", "--header",
	    "Idempotency-Key: 42", h_path_url("/fault/drop"));
	cr_expect_eq(h_stat(&h_up, "path_fault"), 3, "a POST with an Idempotency-Key may be retried");
	h_run_free(&a);
	h_run_free(&g);
	h_run_free(&p);
	h_run_free(&k);
}

/* response_header_timeout: a slow GET times out at the lane's header
 * deadline and is retried; the app sees the timeout code and message. */
Test(curl_retries, response_header_timeout_then_retry, .init = h_start_plain, .fini = h_stop)
{
	struct h_run r;
	const char *env[] = {h_config("[lane default]\nresponse_header_timeout = 200ms\nretries = 1\n"), NULL};
	H_RUN(&r, env, 1, "curlprog", "--requests", "1", "--errbuf", h_path_url("/delay/2000"));
	cr_expect_eq(first_code(&r), 28, "%s", r.out);
	cr_expect(strstr(r.out, "response_header_timeout") != NULL, "%s", r.out);
	cr_expect_lt(first_ms(&r), 1900.0, "%s", r.out);
	cr_expect_eq(h_stat(&h_up, "path_delay"), 2, "one retry");
	h_run_free(&r);
}

/* A perform refused at the limit reads as the timeout it reports: its
 * handle's getinfo shows no response (status 0), not the 200 of the
 * handle's previous request (libcurl's answer for a transfer that timed out
 * before any response). Two persistent handles: request 0 quick (both
 * served), request 1 slow: one holds the lane's only unit, the other is
 * refused after queue_timeout. --sync-first: no request 1 starts before both
 * requests 0 are done (else, with a thread started late, its request 0 met
 * the other's slow request 1 and was refused too: two refusals). */
Test(curl_limits, refused_perform_shows_no_previous_response, .init = h_start_plain, .fini = h_stop)
{
	struct h_run r;
	const char *env[] = {h_config("[lane default]\nmax_conns_per_host = 1\nqueue_timeout = 300ms\n"),
			     NULL};
	H_RUN(&r, env, 1, "curlprog", "--mode", "persistent", "--threads", "2", "--requests", "2",
	    "--sync-first", "--path-seq", "/,/delay/1500", "--errbuf", h_path_url(""));
	int refused = 0;
	for (const char *p = r.out; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (strncmp(p, "req ", 4) != 0)
			continue;
		const char *eol = strchr(p, '\n');
		char line[512];
		snprintf(line, sizeof(line), "%.*s", (int)(eol ? eol - p : (long)strlen(p)), p);
		if (!strstr(line, " code=28 "))
			continue;
		refused++;
		int thread = -1, i = -1;
		sscanf(line, "req %d %d", &thread, &i);
		cr_expect_eq(i, 1, "refused, the handle's request after its 200: %s", line);
		cr_expect(strstr(line, " status=0 ") != NULL, "a refused perform shows a response: %s",
			  line);
	}
	cr_expect_eq(refused, 1, "%s\n%s", r.out, r.err);
	h_run_free(&r);
}
