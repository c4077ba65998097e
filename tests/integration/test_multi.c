/* Integration tests of multi transfers in lanes (docs/INTERNALS.md, "libcurl lanes", multi
 * transfers): tests/progs/multiprog, an ordinary libcurl multi-interface program (perform +
 * poll loop, socket_action + epoll + single-shot timer), run with and without LD_PRELOAD
 * against the test upstream and judged from outside: its output, and what the server saw
 * (/stats max_inflight, accepted, /peers client addresses).
 *
 * Pattern: the no-shim half first proves the scenario means what the test says, then
 * h_reset, then the shim half. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static void reset(void)
{
	h_wait_stat(&h_up, "open", 0, 10000);
	cr_assert_eq(h_reset(&h_up), 0);
}

/* Lines "x ..." with " rc <code> " in them. */
static int count_rc(const char *out, int rc)
{
	char needle[32];
	snprintf(needle, sizeof(needle), " rc %d ", rc);
	return h_count_str(out, needle);
}

/* ------------------------------------------------------------ plain runs */

static void plain_case(const char *mode)
{
	struct h_run a, b;
	H_RUN(&a, NULL, 0, "multiprog", mode, h_path_url("/"), "-n", "5", "-t", "2");
	H_RUN(&b, NULL, 1, "multiprog", mode, h_path_url("/"), "-n", "5", "-t", "2");
	cr_expect_eq(a.status, 0, "%s\n%s", a.out, a.err);
	cr_expect_eq(count_rc(a.out, 0), 10, "%s", a.out);
	cr_expect_str_eq(b.out, a.out, "output differs with the shim");
	cr_expect_eq(b.status, a.status);
	h_run_free(&a);
	h_run_free(&b);
}

Test(multi, plain_perform_same_output, .init = h_start_plain, .fini = h_stop)
{
	plain_case("perform");
}

Test(multi, plain_socket_same_output, .init = h_start_plain, .fini = h_stop)
{
	plain_case("socket");
}

Test(multi, plain_wait_same_output, .init = h_start_plain, .fini = h_stop)
{
	plain_case("wait");
}

/* --------------------------------------------------------- socket options */

static void bind_case(const char *mode)
{
	struct h_run a, b;
	const char *env[] = {h_config("[lane default]\nbind = 127.0.0.2\n"), NULL};
	H_RUN(&a, env, 0, "multiprog", mode, h_path_url("/"), "-n", "3");
	cr_assert_eq(a.status, 0, "%s\n%s", a.out, a.err);
	char *p = h_peers(&h_up);
	cr_assert_not_null(p);
	cr_expect_eq(h_count_str(p, "127.0.0.2:"), 0, "without the shim: %s", p);
	free(p);
	reset();
	H_RUN(&b, env, 1, "multiprog", mode, h_path_url("/"), "-n", "3");
	cr_assert_eq(b.status, 0, "%s\n%s", b.out, b.err);
	p = h_peers(&h_up);
	cr_assert_not_null(p);
	cr_expect_geq(h_count_str(p, "127.0.0.2:"), 1, "the lane's bind is not the client: %s", p);
	cr_expect_eq(h_count_str(p, "127.0.0.1:"), 0, "a connection outside the lane: %s", p);
	free(p);
	h_run_free(&a);
	h_run_free(&b);
}

Test(multi, lane_bind_perform, .init = h_start_plain, .fini = h_stop)
{
	bind_case("perform");
}

Test(multi, lane_bind_socket, .init = h_start_plain, .fini = h_stop)
{
	bind_case("socket");
}

/* ------------------------------------------------------------------ limits */

static void limit_case(const char *mode)
{
	struct h_run a, b;
	const char *env[] = {
		h_config("[lane default]\nmax_conns_per_host = 2\nqueue_timeout = 20s\n"), NULL};
	H_RUN(&a, env, 0, "multiprog", mode, h_path_url("/delay/300"), "-n", "10", "-e");
	cr_assert_eq(a.status, 0, "%s\n%s", a.out, a.err);
	cr_assert_gt(h_stat(&h_up, "max_inflight"), 2, "without the shim all run at once");
	reset();
	H_RUN(&b, env, 1, "multiprog", mode, h_path_url("/delay/300"), "-n", "10", "-e");
	cr_expect_eq(b.status, 0, "%s\n%s", b.out, b.err);
	cr_expect_eq(count_rc(b.out, 0), 10, "%s\n%s", b.out, b.err);
	cr_expect_leq(h_stat(&h_up, "max_inflight"), 2);
	cr_expect_eq(h_stat(&h_up, "path_delay"), 10);
	/* The lane's connections are reused by its queued transfers. */
	cr_expect_leq(h_stat(&h_up, "accepted"), 2, "%s", b.out);
	h_run_free(&a);
	h_run_free(&b);
}

Test(multi, limit_perform_all_succeed, .init = h_start_plain, .fini = h_stop)
{
	limit_case("perform");
}

Test(multi, limit_socket_all_succeed, .init = h_start_plain, .fini = h_stop)
{
	limit_case("socket");
}

Test(multi, limit_wait_all_succeed, .init = h_start_plain, .fini = h_stop)
{
	limit_case("wait");
}

static void overflow_case(const char *mode)
{
	struct h_run b;
	const char *env[] = {
		h_config("[lane default]\nmax_conns_per_host = 2\nqueue_timeout = 200ms\n"), NULL};
	H_RUN(&b, env, 1, "multiprog", mode, h_path_url("/delay/1000"), "-n", "6", "-e");
	cr_expect_eq(count_rc(b.out, 0), 2, "%s\n%s", b.out, b.err);
	cr_expect_eq(count_rc(b.out, 28), 4, "%s\n%s", b.out, b.err);
	cr_expect_eq(h_count_str(b.out, "lane 'default'"), 4, "%s", b.out);
	cr_expect_eq(h_count_str(b.out, "max_conns_per_host = 2"), 4, "%s", b.out);
	cr_expect_eq(h_count_str(b.out, "127.0.0.1:"), 4, "%s", b.out);
	cr_expect_leq(h_stat(&h_up, "path_delay"), 2, "a queued transfer reached the server");
	cr_expect_eq(b.status, 1);
	h_run_free(&b);
}

Test(multi, queue_timeout_perform, .init = h_start_plain, .fini = h_stop)
{
	overflow_case("perform");
}

Test(multi, queue_timeout_socket, .init = h_start_plain, .fini = h_stop)
{
	overflow_case("socket");
}

/* ------------------------------------------------------- lanes kept apart */

/* Two threads, two keys, two lanes: each lane's connections carry its own address, and a
 * thread's transfers only ever used its lane's connections. */
static void lanes_case(const char *mode)
{
	struct h_run b;
	const char *env[] = {h_config("[lane a]\nmatch = */a\nbind = 127.0.0.2\nmax_conns_per_host = 1\n"
				    "queue_timeout = 20s\n"
				    "[lane b]\nmatch = */b\nbind = 127.0.0.3\nmax_conns_per_host = 1\n"
				    "queue_timeout = 20s\n"),
			     NULL};
	H_RUN(&b, env, 1, "multiprog", mode, h_path_url("/conn"), "-n", "5", "-t", "2", "-k",
	    "t/a,t/b", "-c");
	cr_assert_eq(b.status, 0, "%s\n%s", b.out, b.err);
	/* One connection per lane, reused by its five transfers. */
	cr_expect_eq(h_stat(&h_up, "accepted"), 2, "%s", b.out);
	char *p = h_peers(&h_up);
	cr_assert_not_null(p);
	cr_expect_eq(h_count_str(p, "127.0.0.2:"), 1, "%s", p);
	cr_expect_eq(h_count_str(p, "127.0.0.3:"), 1, "%s", p);
	/* Thread 0's connection id is the 127.0.0.2 one, thread 1's the 127.0.0.3 one. */
	long id2 = -1, id3 = -1;
	for (const char *l = p; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
		long id = strtol(l, NULL, 10);
		if (!strncmp(strchr(l, ' ') + 1, "127.0.0.2:", 10))
			id2 = id;
		if (!strncmp(strchr(l, ' ') + 1, "127.0.0.3:", 10))
			id3 = id;
	}
	free(p);
	char want[64];
	snprintf(want, sizeof(want), " conn %ld\n", id2);
	int n0 = 0, n1 = 0;
	for (const char *l = b.out; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
		const char *eol = strchr(l, '\n');
		if (!strncmp(l, "x 0 ", 4))
			n0 += !strncmp(strstr(l, " conn "), want, strlen(want));
		snprintf(want, sizeof(want), " conn %ld\n", id3);
		if (!strncmp(l, "x 1 ", 4))
			n1 += !strncmp(strstr(l, " conn "), want, strlen(want));
		snprintf(want, sizeof(want), " conn %ld\n", id2);
		(void)eol;
	}
	cr_expect_eq(n0, 5, "thread 0 (lane a) used another connection: %s", b.out);
	cr_expect_eq(n1, 5, "thread 1 (lane b) used another connection: %s", b.out);
	h_run_free(&b);
}

Test(multi, lanes_apart_perform, .init = h_start_plain, .fini = h_stop)
{
	lanes_case("perform");
}

Test(multi, lanes_apart_socket, .init = h_start_plain, .fini = h_stop)
{
	lanes_case("socket");
}

/* ----------------------------------------------------------------- retries */

/* retries = 2: a GET the server drops unanswered reaches it three times; the app sees
 * one CURLMSG_DONE with the last error (52, as without the shim), in either loop. */
static void retry_case(const char *mode)
{
	struct h_run a, b;
	const char *env[] = {h_config("[lane default]\nretries = 2\n"), NULL};
	H_RUN(&a, env, 0, "multiprog", mode, h_path_url("/fault/drop"), "-n", "2");
	cr_assert_eq(h_stat(&h_up, "path_fault"), 2, "without the shim: one attempt each");
	cr_expect_eq(count_rc(a.out, 52), 2, "%s", a.out);
	reset();
	H_RUN(&b, env, 1, "multiprog", mode, h_path_url("/fault/drop"), "-n", "2");
	cr_expect_str_eq(b.out, a.out, "the app sees what it saw without the shim");
	cr_expect_eq(h_stat(&h_up, "path_fault"), 6, "each GET retried twice");
	h_run_free(&a);
	h_run_free(&b);
}

Test(multi, retries_perform, .init = h_start_plain, .fini = h_stop)
{
	retry_case("perform");
}

Test(multi, retries_socket, .init = h_start_plain, .fini = h_stop)
{
	retry_case("socket");
}

/* ------------------------------------------------------------ access log */

/* One line per multi transfer at its completion, refused ones as overflow; libcurl's own
 * connects are the lane's business, never logged as raw connects. */
Test(multi, access_log_per_transfer, .init = h_start_plain, .fini = h_stop)
{
	struct h_run b;
	char logpath[400], text[800];
	snprintf(logpath, sizeof(logpath), "%s/access.log", h_dir);
	snprintf(text, sizeof(text),
		 "[global]\naccess_log = %s\n[lane default]\nmax_conns_per_host = 2\n"
		 "queue_timeout = 200ms\n",
		 logpath);
	const char *env[] = {h_config(text), NULL};
	H_RUN(&b, env, 1, "multiprog", "perform", h_path_url("/delay/1000"), "-n", "6");
	char *log = h_read_file(logpath);
	cr_assert_not_null(log, "no access log");
	cr_expect_eq(h_count_str(log, "\"connroute.kind\":\"http\""), 6, "%s", log);
	cr_expect_eq(h_count_str(log, "\"outcome\":\"ok\""), 2, "%s", log);
	cr_expect_eq(h_count_str(log, "\"outcome\":\"overflow\""), 4, "%s", log);
	cr_expect_eq(h_count_str(log, "\"url.path\":\"/delay/1000\""), 2, "%s", log);
	cr_expect_eq(h_count_str(log, "\"connroute.kind\":\"connect\""), 0, "%s", log);
	free(log);
	h_run_free(&b);
}
