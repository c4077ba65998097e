/* Integration tests of the metrics endpoint, `connroute stats`/`reload` and live reload:
 * tests/progs/curlprog runs under the shim against the test upstream, with
 * `[global] metrics` set, while the test scrapes it from outside with build/connroute and
 * compares what the shim reported with what the server counted on its control port.
 *
 * The workload runs in a thread of the test (h_run blocks until the program exits); the
 * test finds the program's endpoint by its socket file, DIR/m-<pid>.sock (`%p` expanded). */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static char cfgpath[400];

static void start(void)
{
	h_start_plain();
	snprintf(cfgpath, sizeof(cfgpath), "%s/connroute.conf", h_dir);
}

/* Writes the config as a deployment would: a new file renamed over the old one. */
static void write_config(const char *text)
{
	char tmp[450];
	cr_assert_eq(h_write_file(h_dir, "connroute.conf.new", text, tmp, sizeof(tmp)), 0);
	cr_assert_eq(rename(tmp, cfgpath), 0);
}

/* "[global]\nmetrics = unix:DIR/m-%p.sock\n" + REST */
static void write_config_unix(const char *rest)
{
	char text[2048];
	snprintf(text, sizeof(text), "[global]\nmetrics = unix:%s/m-%%p.sock\n%s", h_dir, rest);
	write_config(text);
}

/* Waits (10 s) for DIR/m-<pid>.sock; returns the pid, fills PATH. */
static long wait_socket(char *path, size_t n)
{
	for (int i = 0; i < 1000; i++) {
		DIR *d = opendir(h_dir);
		struct dirent *e;
		long pid = 0;
		while (d && (e = readdir(d)))
			if (!strncmp(e->d_name, "m-", 2) && strstr(e->d_name, ".sock")) {
				int w = snprintf(path, n, "%s/%s", h_dir, e->d_name);
				if (w > 0 && (size_t)w < n)
					pid = strtol(e->d_name + 2, NULL, 10);
			}
		if (d)
			closedir(d);
		if (pid > 0)
			return pid;
		h_sleep_ms(10);
	}
	cr_assert_fail("no metrics socket appeared in %s", h_dir);
	return -1;
}

/* ------------------------------------------------------------------- the CLI */

static const char *cli(void)
{
	static char p[400];
	snprintf(p, sizeof(p), "%s/connroute", h_build());
	return p;
}

/* build/connroute ARGS...; the result in R (free with h_run_free). */
#define CLI(r, ...)                                                                  \
	do {                                                                         \
		const char *argv_[] = {cli(), __VA_ARGS__, NULL};                    \
		cr_assert_eq(h_run((r), argv_, NULL, 0, 20000), 0);                  \
		cr_assert_eq((r)->timed_out, 0, "connroute %s hung", argv_[1]);      \
	} while (0)

/* A scrape through `connroute stats --raw` (malloc'd). */
static char *scrape(const char *spec)
{
	struct h_run r;
	CLI(&r, "stats", "--raw", spec);
	cr_assert_eq(r.status, 0, "connroute stats --raw %s: %s", spec, r.err);
	free(r.err);
	return r.out;
}

/* The value of the sample NAME{LABELS} exactly; -1 if absent. */
static double mval(const char *text, const char *series)
{
	size_t n = strlen(series);
	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (!strncmp(p, series, n) && p[n] == ' ')
			return strtod(p + n + 1, NULL);
	return -1;
}

static long summary(const struct h_run *r, const char *name)
{
	const char *s = strstr(r->out, "summary ");
	char key[64];
	if (!s)
		return -1;
	snprintf(key, sizeof(key), " %s=", name);
	const char *k = strstr(s, key);
	return k ? strtol(k + strlen(key), NULL, 10) : -1;
}

static void curlprog_args(struct h_bg *b, const char *const *args)
{
	int i = 0;
	b->argv[i++] = "curlprog";
	for (; args[i - 1] && i < 23; i++)
		b->argv[i] = args[i - 1];
	b->argv[i] = NULL;
}

/* ---------------------------------------------------------------------- tests */

/* Two threads, ten fast requests each, then one slow request each (/delay): while the
 * slow ones are held by the server, the figures are still: what the shim counted must be
 * what the server saw. */
Test(metrics, scrape_during_load_matches_the_server, .init = start, .fini = h_stop)
{
	struct h_bg b = {.timeout_ms = 60000};
	char seq[256] = "", sock[400], spec[420];
	for (int i = 0; i < 10; i++)
		strcat(seq, "/,");
	strcat(seq, "/delay/3000");
	write_config_unix("[lane critical]\nmatch = */critical\n");
	static char envc[450];
	snprintf(envc, sizeof(envc), "CONNROUTE_CONFIG=%s", cfgpath);
	b.env[0] = envc;
	b.env[1] = "CONNROUTE_KEY=pay/critical";
	const char *args[] = {"--mode", "fresh", "--threads", "2", "--requests", "11", "--pause-ms", "20",
			      "--quiet", "--path-seq", seq, h_url, NULL};
	curlprog_args(&b, args);
	h_bg_start(&b);

	long pid = wait_socket(sock, sizeof(sock));
	snprintf(spec, sizeof(spec), "unix:%s", sock);
	struct stat st;
	cr_assert_eq(stat(sock, &st), 0);
	cr_expect(S_ISSOCK(st.st_mode));
	cr_expect_eq(st.st_mode & 0777, 0600, "socket mode %o", st.st_mode & 0777);

	cr_assert_eq(h_wait_stat(&h_up, "path_delay", 2, 10000), 2, "the slow requests did not arrive");
	char *t = scrape(spec);
	long root = h_stat(&h_up, "path_root"), accepted = h_stat(&h_up, "accepted");
	cr_expect_eq(root, 20);
	cr_expect_eq(mval(t, "http_client_requests_total{lane=\"critical\",outcome=\"ok\"}"), root, "%s", t);
	cr_expect_eq(h_metric_sum(t, "http_client_requests_total", "lane=\"critical\""), root);
	cr_expect_eq(mval(t, "connroute_inflight_requests{lane=\"critical\"}"), h_stat(&h_up, "path_delay"));
	cr_expect_eq(mval(t, "http_client_request_duration_seconds_count{lane=\"critical\",upstream=\"pay\","
			     "priority=\"critical\"}"),
		     root, "%s", t);
	/* A libcurl connection is counted when the perform that made it returns: the two
	 * slow requests may each have needed a connection of their own (when one thread's
	 * pooled connection served all fast requests) not counted yet. */
	double opened = mval(t, "connroute_connections_opened_total{lane=\"critical\"}");
	char *peers = h_peers(&h_up);
	cr_expect(opened <= accepted && opened >= accepted - 2 && opened >= 1,
		  "opened %.0f, server accepted %ld:\n%s\npeers:\n%s", opened, accepted, t, peers);
	free(peers);
	cr_expect_eq(h_metric_sum(t, "connroute_connect_duration_seconds_count", "lane=\"critical\""), opened);
	cr_expect_eq(mval(t, "connroute_connections_active{lane=\"critical\"}"), opened,
		     "libcurl closes nothing here");
	cr_expect_eq(mval(t, "connroute_limit_overflows_total{lane=\"critical\"}"), 0);
	cr_expect_eq(mval(t, "connroute_unmatched_keys_total"), 0);
	cr_expect_eq(h_metric_sum(t, "http_client_requests_total", "lane=\"default\""), 0, "nothing in lane default");
	free(t);

	h_bg_join(&b);
	cr_expect_eq(b.r.status, 0, "%s\n%s", b.r.out, b.r.err);
	cr_expect_eq(summary(&b.r, "ok"), 22, "%s", b.r.out);
	cr_expect_neq(access(sock, F_OK), 0, "the socket file outlived the process %ld", pid);
	h_run_free(&b.r);
}

static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof(a);
	cr_assert_geq(fd, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &l), 0);
	close(fd);
	return ntohs(a.sin_port);
}

/* The TCP listener, and promtool's verdict on what it serves. */
Test(metrics, promtool_accepts_a_live_scrape_over_tcp, .init = start, .fini = h_stop)
{
	int have_promtool = system("command -v promtool >/dev/null 2>&1") == 0;
	struct h_bg b = {.timeout_ms = 60000};
	char spec[64], text[256];
	int port = free_port();
	snprintf(spec, sizeof(spec), "127.0.0.1:%d", port);
	snprintf(text, sizeof(text), "[global]\nmetrics = %s\n[lane critical]\nmatch = */critical\n"
				     "max_conns_per_host = 2\nretries = 1\n", spec);
	write_config(text);
	static char envc[450];
	snprintf(envc, sizeof(envc), "CONNROUTE_CONFIG=%s", cfgpath);
	b.env[0] = envc;
	b.env[1] = "CONNROUTE_KEY=pay/critical";
	const char *args[] = {"--mode", "fresh", "--threads", "3", "--requests", "6", "--quiet",
			      "--path-seq", "/,/delay/400,/fault/drop", h_url, NULL};
	curlprog_args(&b, args);
	h_bg_start(&b);

	char *t = NULL;
	/* The listener starts with the first routed request. */
	for (int i = 0; i < 200; i++) {
		struct h_run r;
		CLI(&r, "stats", "--raw", spec);
		if (r.status == 0 && mval(r.out, "http_client_requests_total{lane=\"critical\",outcome=\"ok\"}") >= 2) {
			t = r.out;
			free(r.err);
			break;
		}
		h_run_free(&r);
		h_sleep_ms(25);
	}
	cr_assert_not_null(t, "no scrape over TCP");
	cr_expect(strstr(t, "# TYPE http_client_request_duration_seconds histogram\n") != NULL);
	if (have_promtool) {
		char path[400];
		cr_assert_eq(h_write_file(h_dir, "scrape.txt", t, path, sizeof(path)), 0);
		char cmd[900];
		snprintf(cmd, sizeof(cmd), "promtool check metrics < %s > %s.out 2>&1", path, path);
		int rc = system(cmd);
		char out[450];
		snprintf(out, sizeof(out), "%s.out", path);
		char *msg = h_read_file(out);
		cr_expect_eq(rc, 0, "promtool check metrics: %s", msg ? msg : "");
		cr_expect(msg && !msg[0], "promtool lint: %s", msg ? msg : "");
		free(msg);
	}
	free(t);
	h_bg_join(&b);
	h_run_free(&b.r);
	if (!have_promtool)
		cr_skip_test("promtool is not installed (Debian: prometheus): scraped over TCP only");
}

/* Limit 4 -> 1 while four threads keep requests of 150 ms in flight. In-flight requests
 * finish on the old lanes; no request fails; afterwards at most one request at a time
 * reaches the server. RETIRE: the new config also changes a setting pooled connections
 * carry (keepalive), so the old pools must drain and close: then the server never again
 * sees more than one connection per thread open. Without it the lane keeps its pooled connections
 * (limits apply per request), and only the requests at once at the server show the limit.
 * Everything is observed at the server (max_inflight, max_open, path_delay), not paced: fixed
 * pauses and request rates were outlasted on a loaded machine. */
static void reload_case(int retire)
{
	struct h_bg b = {.timeout_ms = 60000};
	char sock[400], spec[420];
	write_config_unix("[lane default]\nmax_conns_per_host = 4\nqueue_timeout = 20s\n");
	static char envc[450];
	snprintf(envc, sizeof(envc), "CONNROUTE_CONFIG=%s", cfgpath);
	b.env[0] = envc;
	const char *args[] = {"--mode", "fresh", "--threads", "4", "--requests", "1000", "--duration-ms", "5000",
			      "--quiet", "--path-seq", "/delay/150", h_url, NULL};
	curlprog_args(&b, args);
	h_bg_start(&b);
	wait_socket(sock, sizeof(sock));
	snprintf(spec, sizeof(spec), "unix:%s", sock);

	cr_expect_eq(h_wait_stat(&h_up, "max_inflight", 4, 10000), 4, "four requests at once before the reload");
	cr_expect_eq(h_wait_stat(&h_up, "max_open", 4, 10000), 4, "four connections at once before the reload");

	write_config_unix(retire ? "[lane default]\nmax_conns_per_host = 1\nqueue_timeout = 20s\n"
				   "keepalive = 30s\n"
				 : "[lane default]\nmax_conns_per_host = 1\nqueue_timeout = 20s\n");
	struct h_run r;
	CLI(&r, "reload", spec);
	cr_expect_eq(r.status, 0, "%s%s", r.out, r.err);
	cr_expect(!strcmp(r.out, "applied\n") || !strcmp(r.out, "unchanged\n"), "%s", r.out);
	h_run_free(&r);

	if (retire) {
		long open = -1;
		for (int i = 0; i < 300 && (open = h_stat(&h_up, "open")) > 1; i++)
			h_sleep_ms(10);
		cr_expect_leq(open, 1, "the old pools' connections stayed open");
	}
	/* the requests in flight at the reload finish (150 ms each) */
	long inflight = -1;
	for (long long end = h_now_ms() + 10000; (inflight = h_stat(&h_up, "inflight")) > 1 && h_now_ms() < end;)
		h_sleep_ms(10);
	cr_expect_leq(inflight, 1, "the requests of the old lanes did not finish");
	h_reset(&h_up); /* max_inflight := inflight, path_delay := 0 */
	long done = 0;
	for (long long end = h_now_ms() + 10000; (done = h_stat(&h_up, "path_delay")) < 6 && h_now_ms() < end;)
		h_sleep_ms(10);
	cr_expect_geq(done, 6, "the lane stalled after the reload");
	cr_expect_leq(h_stat(&h_up, "max_inflight"), 1, "%ld requests at once after the reload (limit 1)",
		      h_stat(&h_up, "max_inflight"));
	/* libcurl lanes v2: a thread's next handle gets the share its last one
	 * returned (docs/INTERNALS.md, "libcurl lanes"), so each of the four
	 * threads keeps one connection of the new pool, used one at a time (the
	 * limit counts transfers); never a fifth beside them. */
	if (retire)
		cr_expect_leq(h_stat(&h_up, "max_open"), 4, "more connections than threads after the reload: %ld",
			      h_stat(&h_up, "max_open"));

	char *t = scrape(spec);
	cr_expect_geq(mval(t, "connroute_config_reloads_total{result=\"ok\"}"), 1, "%s", t);
	cr_expect_eq(mval(t, "connroute_config_reloads_total{result=\"error\"}"), 0);
	cr_expect_eq(mval(t, "connroute_limit_overflows_total{lane=\"default\"}"), 0);
	free(t);

	h_bg_join(&b);
	cr_expect_eq(b.r.status, 0, "%s\n%s", b.r.out, b.r.err);
	cr_expect_eq(summary(&b.r, "errors"), 0, "%s", b.r.out);
	cr_expect_gt(summary(&b.r, "ok"), 20, "%s", b.r.out);
	h_run_free(&b.r);
}

Test(metrics, reload_in_flight_applies_the_new_limit, .init = start, .fini = h_stop)
{
	reload_case(0);
}

Test(metrics, reload_in_flight_retires_changed_pools, .init = start, .fini = h_stop)
{
	reload_case(1);
}

/* A broken file: the watcher rejects it once (one FILE:LINE line, one error counted, not
 * one per second), `connroute reload` says rejected (exit 1), and the old lanes go on. */
Test(metrics, broken_reload_keeps_the_old_config, .init = start, .fini = h_stop)
{
	struct h_bg b = {.timeout_ms = 60000};
	char sock[400], spec[420];
	write_config_unix("[lane critical]\nmatch = */critical\n");
	static char envc[450];
	snprintf(envc, sizeof(envc), "CONNROUTE_CONFIG=%s", cfgpath);
	b.env[0] = envc;
	b.env[1] = "CONNROUTE_KEY=pay/critical";
	const char *args[] = {"--mode", "fresh", "--requests", "60", "--pause-ms", "100", "--quiet", h_url,
			      NULL};
	curlprog_args(&b, args);
	h_bg_start(&b);
	wait_socket(sock, sizeof(sock));
	snprintf(spec, sizeof(spec), "unix:%s", sock);

	/* Line 5 is wrong. */
	write_config_unix("[lane critical]\nmatch = */critical\nmax_conns_per_host = lots\n");
	char *t = NULL;
	double err = -1;
	for (long long end = h_now_ms() + 10000;;) { /* the watcher looks twice, a second apart */
		free(t);
		t = scrape(spec);
		if ((err = mval(t, "connroute_config_reloads_total{result=\"error\"}")) >= 1 || h_now_ms() > end)
			break;
		h_sleep_ms(100);
	}
	cr_expect_eq(err, 1, "the watcher did not reject the file: %s", t);
	double before = mval(t, "http_client_requests_total{lane=\"critical\",outcome=\"ok\"}");
	free(t);
	h_sleep_ms(1500);
	t = scrape(spec);
	cr_expect_eq(mval(t, "connroute_config_reloads_total{result=\"error\"}"), 1,
		     "the same broken file was counted again");
	cr_expect_eq(mval(t, "connroute_config_reloads_total{result=\"ok\"}"), 0);
	cr_expect_gt(mval(t, "http_client_requests_total{lane=\"critical\",outcome=\"ok\"}"), before,
		     "lane critical stopped");
	free(t);

	struct h_run r;
	CLI(&r, "reload", spec);
	cr_expect_eq(r.status, 1, "%s%s", r.out, r.err);
	cr_expect_str_eq(r.out, "rejected\n");
	h_run_free(&r);
	t = scrape(spec);
	cr_expect_eq(mval(t, "connroute_config_reloads_total{result=\"error\"}"), 2);
	free(t);

	h_bg_join(&b);
	cr_expect_eq(b.r.status, 0, "%s\n%s", b.r.out, b.r.err);
	cr_expect_eq(summary(&b.r, "ok"), 60, "%s", b.r.out);
	cr_expect_eq(h_count_str(b.r.err, "connroute.conf:5:"), 2,
		     "one FILE:LINE line per rejected reload:\n%s", b.r.err);
	h_run_free(&b.r);
}

/* Columns of the row of LANE in a `connroute stats` table; 0 if absent. */
static int table_row(const char *out, const char *lane, char cols[12][32])
{
	size_t n = strlen(lane);
	for (const char *p = out; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (!strncmp(p, lane, n) && p[n] == ' ') {
			int k = sscanf(p, "%31s %31s %31s %31s %31s %31s %31s %31s %31s %31s %31s %31s", cols[0],
				       cols[1], cols[2], cols[3], cols[4], cols[5], cols[6], cols[7], cols[8],
				       cols[9], cols[10], cols[11]);
			return k;
		}
	return 0;
}

Test(metrics, stats_table_of_a_running_program, .init = start, .fini = h_stop)
{
	struct h_bg b = {.timeout_ms = 60000};
	char sock[400], pidarg[32];
	write_config_unix("[lane critical]\nmatch = */critical\n");
	static char envc[450];
	snprintf(envc, sizeof(envc), "CONNROUTE_CONFIG=%s", cfgpath);
	b.env[0] = envc;
	b.env[1] = "CONNROUTE_KEY=orders/bulk"; /* matches no lane: default, counted unmatched */
	const char *args[] = {"--mode", "fresh", "--threads", "2", "--requests", "40", "--pause-ms", "50",
			      "--quiet", "--path-seq", "/,/delay/20", h_url, NULL};
	curlprog_args(&b, args);
	h_bg_start(&b);
	long pid = wait_socket(sock, sizeof(sock));
	snprintf(pidarg, sizeof(pidarg), "%ld", pid);

	/* asked until a request has completed (not after a fixed pause: a loaded machine may
	 * not have finished one by then) */
	struct h_run r;
	char c[12][32];
	for (long long end = h_now_ms() + 10000;; h_sleep_ms(50)) {
		CLI(&r, "stats", pidarg);
		if ((table_row(r.out, "default", c) == 12 && atol(c[5]) > 0) || h_now_ms() > end)
			break;
		h_run_free(&r);
	}
	cr_expect_eq(r.status, 0, "%s", r.err);
	char head[500];
	snprintf(head, sizeof(head), "pid %ld, unix:%.400s", pid, sock);
	cr_expect(strstr(r.out, head) != NULL, "%s", r.out);
	cr_expect(strstr(r.out, "LANE") && strstr(r.out, "ACTIVE") && strstr(r.out, "IDLE") &&
			  strstr(r.out, "QUEUED") && strstr(r.out, "INFLIGHT") && strstr(r.out, "REQ/S") &&
			  strstr(r.out, "P50") && strstr(r.out, "P99") && strstr(r.out, "OVERFLOWS") &&
			  strstr(r.out, "RETRIES") && strstr(r.out, "UNMATCHED"),
		  "%s", r.out);
	cr_assert_eq(table_row(r.out, "default", c), 12, "%s", r.out);
	cr_expect_gt(atol(c[5]), 0, "requests: %s", r.out);
	cr_expect_str_eq(c[6], "-", "no req/s from a single look");
	cr_expect_gt(atof(c[7]), 0, "p50: %s", r.out);
	cr_expect_geq(atof(c[8]), atof(c[7]), "p99 >= p50: %s", r.out);
	cr_expect_gt(atol(c[11]), 0, "unmatched keys on lane default: %s", r.out);
	cr_expect_eq(table_row(r.out, "critical", c), 12, "a lane of the config without traffic: %s", r.out);
	cr_expect_str_eq(c[5], "0");
	cr_expect_str_eq(c[11], "-");
	h_run_free(&r);

	CLI(&r, "stats", pidarg, "--watch", "0.4", "--count", "3");
	cr_expect_eq(r.status, 0, "%s", r.err);
	cr_expect_eq(h_count_str(r.out, "connroute stats: pid"), 3, "%s", r.out);
	const char *last = strstr(r.out, "over the last interval");
	cr_expect_not_null(last, "%s", r.out);
	if (last) {
		cr_assert_eq(table_row(last, "default", c), 12, "%s", r.out);
		cr_expect_gt(atof(c[6]), 1.0, "req/s while the program runs: %s", r.out);
	}
	h_run_free(&r);

	/* Without an argument: this program, unless tests running alongside make it
	 * ambiguous (then it is in the list). */
	CLI(&r, "stats");
	if (r.status == 0)
		cr_expect(strstr(r.out, "connroute stats: pid") != NULL, "%s", r.out);
	else
		cr_expect(strstr(r.err, pidarg) != NULL, "%s", r.err);
	h_run_free(&r);

	CLI(&r, "reload", pidarg);
	cr_expect_eq(r.status, 0, "%s%s", r.out, r.err);
	h_run_free(&r);

	h_bg_join(&b);
	cr_expect_eq(b.r.status, 0, "%s\n%s", b.r.out, b.r.err);
	h_run_free(&b.r);

	/* Gone: a clear error, not a hang. */
	CLI(&r, "stats", "unix:/nonexistent/connroute.sock");
	cr_expect_eq(r.status, 1);
	cr_expect(strstr(r.err, "cannot connect") != NULL, "%s", r.err);
	h_run_free(&r);
}

/* Raw HTTP on the endpoint: unknown paths are 404, and a client that connects and says
 * nothing delays a scrape by the 1 s read timeout at most. */
Test(metrics, endpoint_http_and_a_silent_client, .init = start, .fini = h_stop)
{
	struct h_bg b = {.timeout_ms = 60000};
	char sock[400], spec[420];
	write_config_unix("");
	static char envc[450];
	snprintf(envc, sizeof(envc), "CONNROUTE_CONFIG=%s", cfgpath);
	b.env[0] = envc;
	const char *args[] = {"--mode", "fresh", "--requests", "30", "--pause-ms", "100", "--quiet", h_url,
			      NULL};
	curlprog_args(&b, args);
	h_bg_start(&b);
	wait_socket(sock, sizeof(sock));
	snprintf(spec, sizeof(spec), "unix:%s", sock);

	struct sockaddr_un a = {.sun_family = AF_UNIX};
	cr_assert_lt(strlen(sock), sizeof(a.sun_path));
	memcpy(a.sun_path, sock, strlen(sock) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	const char *req = "GET /nope HTTP/1.0\r\n\r\n";
	cr_assert_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	char buf[512] = "";
	ssize_t k = 0, n = 0;
	while (n < (ssize_t)sizeof(buf) - 1 && (k = read(fd, buf + n, sizeof(buf) - 1 - (size_t)n)) > 0)
		n += k;
	buf[n > 0 ? n : 0] = '\0';
	cr_expect(strncmp(buf, "HTTP/1.0 404", 12) == 0, "%s", buf);
	close(fd);

	int silent = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_eq(connect(silent, (struct sockaddr *)&a, sizeof(a)), 0);
	long long t0 = h_now_ms();
	char *t = scrape(spec);
	long long took = h_now_ms() - t0;
	cr_expect_lt(took, 3500, "a silent client held the endpoint for %lld ms", took);
	cr_expect(strstr(t, "connroute_config_reloads_total") != NULL, "%s", t);
	free(t);
	close(silent);

	h_bg_join(&b);
	cr_expect_eq(b.r.status, 0, "%s\n%s", b.r.out, b.r.err);
	h_run_free(&b.r);
}

/* ------------------------------------------------- libcurl connections, counted once */

/* /peers: connections that served at least one request, by state. */
static void used_peers(long *open, long *closed)
{
	char *p = h_peers(&h_up);
	*open = *closed = 0;
	for (const char *l = p; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
		char state[16];
		long id, reqs;
		if (sscanf(l, "%ld %*s %15s %ld", &id, state, &reqs) == 3 && reqs > 0)
			*(strcmp(state, "open") ? closed : open) += 1;
	}
	free(p);
}

/* Runs curlprog (fresh handles, ARGS) under CONF until its last request, /delay/3000,
 * is in flight, then scrapes: *T gets the scrape, *OPEN / *CLOSED the server's used
 * connections by state at that moment. The program is joined. */
static void run_and_scrape(const char *conf, const char *const *args, char **t, long *open, long *closed)
{
	struct h_bg b = {.timeout_ms = 60000};
	char sock[400], spec[420];
	write_config_unix(conf);
	static char envc[450];
	snprintf(envc, sizeof(envc), "CONNROUTE_CONFIG=%s", cfgpath);
	b.env[0] = envc;
	curlprog_args(&b, args);
	h_bg_start(&b);
	wait_socket(sock, sizeof(sock));
	snprintf(spec, sizeof(spec), "unix:%s", sock);
	cr_assert_eq(h_wait_stat(&h_up, "path_delay", 1, 10000), 1, "the last request did not arrive");
	/* the server sees the earlier connections' closes: only the one in flight stays open
	 * (asked until then, within the 3 s of the last request; a fixed pause was outlasted
	 * on a loaded machine) */
	for (long long end = h_now_ms() + 2500;; h_sleep_ms(20)) {
		used_peers(open, closed);
		if (*open <= 1 || h_now_ms() > end)
			break;
	}
	*t = scrape(spec);
	h_bg_join(&b);
	cr_expect_eq(b.r.status, 0, "%s\n%s", b.r.out, b.r.err);
	h_run_free(&b.r);
}

/* Without libcurl pooling, every transfer opens a connection; with prewarm it is a warm
 * socket handed to libcurl by the opensocket callback. Each is one connection opened and,
 * at curl_easy_cleanup, one closed: neither the hand-out nor the close counts twice. */
Test(metrics, libcurl_warm_connections_count_once, .init = start, .fini = h_stop)
{
	char conf[256], seq[128] = "";
	snprintf(conf, sizeof(conf), "[lane default]\nprewarm = 127.0.0.1:%d*2\nmax_idle_per_host = 0\n", h_up.port);
	for (int i = 0; i < 5; i++)
		strcat(seq, "/conn,");
	strcat(seq, "/delay/3000");
	const char *args[] = {"--mode", "fresh", "--requests", "6", "--pause-ms", "100", "--quiet",
			      "--path-seq", seq, h_url, NULL};
	char *t;
	long open, closed;
	run_and_scrape(conf, args, &t, &open, &closed);
	cr_expect_eq(closed, 5, "one connection per finished transfer");
	cr_expect_geq(mval(t, "connroute_warm_pool_total{lane=\"default\",result=\"hit\"}"), 2,
		      "warm sockets were used: %s", t);
	/* Counted when the perform that made it returns: the transfer in flight not yet. */
	double op = mval(t, "connroute_connections_opened_total{lane=\"default\"}");
	double cl = mval(t, "connroute_connections_closed_total{lane=\"default\"}");
	cr_expect_eq(op, closed, "opened %.0f, the server saw %ld connections closed\n%s", op, closed, t);
	cr_expect_eq(cl, closed, "closed %.0f, the server saw %ld connections closed", cl, closed);
	free(t);
}

/* A perform whose first connection is dropped and whose retry succeeds on a second one
 * made two connections: both count as opened; the dropped one as closed. */
Test(metrics, libcurl_every_connection_of_a_perform_counts, .init = start, .fini = h_stop)
{
	char *s = h_get(&h_up, "/inject?fault=drop&count=1");
	cr_assert_not_null(s);
	free(s);
	const char *args[] = {"--mode", "fresh", "--requests", "3", "--quiet", "--path-seq", "/,/,/delay/3000",
			      h_url, NULL};
	char *t;
	long open, closed;
	run_and_scrape("[lane default]\nretries = 1\n", args, &t, &open, &closed);
	long accepted = h_stat(&h_up, "accepted");
	cr_expect_eq(accepted, 2, "the dropped connection and the retry's");
	cr_expect_eq(h_metric_sum(t, "http_client_retry_count_total", "lane=\"default\""), 1, "%s", t);
	double op = mval(t, "connroute_connections_opened_total{lane=\"default\"}");
	double cl = mval(t, "connroute_connections_closed_total{lane=\"default\"}");
	double act = mval(t, "connroute_connections_active{lane=\"default\"}");
	cr_expect_eq(op, accepted, "opened %.0f, the server accepted %ld\n%s", op, accepted, t);
	cr_expect_eq(cl, closed, "closed %.0f, the server saw %ld closed", cl, closed);
	cr_expect_eq(act, open, "active %.0f, the server has %ld open", act, open);
	free(t);
}
