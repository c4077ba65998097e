/* Unit tests of lib/metrics.c (recording, Prometheus rendering, histogram
 * buckets, bounded label sets, concurrent recording) and lib/endpoint.c. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "endpoint.h"
#include "metrics.h"

#define MS 1000000ull

static char *render(void)
{
	size_t n = cr_metrics_render(NULL, 0);
	size_t cap = n + 4096;
	char *buf = malloc(cap);
	cr_assert_not_null(buf);
	n = cr_metrics_render(buf, cap);
	cr_assert_lt(n, cap);
	cr_assert_eq(strlen(buf), n);
	return buf;
}

/* The value of the sample whose name and labels are exactly SERIES; -1 if
 * absent, -2 if present twice. */
static double value(const char *text, const char *series)
{
	size_t n = strlen(series);
	double v = -1;
	int seen = 0;
	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (!strncmp(p, series, n) && p[n] == ' ') {
			v = strtod(p + n + 1, NULL);
			seen++;
		}
	return seen > 1 ? -2 : v;
}

static int count_lines(const char *text, const char *prefix, const char *contains)
{
	int c = 0;
	size_t n = strlen(prefix);
	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (strncmp(p, prefix, n))
			continue;
		const char *eol = strchr(p, '\n');
		const char *hit = contains ? strstr(p, contains) : p;
		if (hit && (!eol || hit < eol))
			c++;
	}
	return c;
}

static void setup(void)
{
	cr_metrics_reset();
}

TestSuite(metrics, .init = setup);

Test(metrics, counters_gauges_and_families_render)
{
	cr_metrics_set_lane_name(0, "default");
	cr_metrics_set_lane_name(3, "critical");
	cr_m_conn_opened(3, 2 * MS, 1);
	cr_m_conn_opened(3, 2 * MS, 1);
	cr_m_conn_opened(3, 3 * MS, 0);
	cr_m_conn_closed(3);
	cr_m_idle(3, 2);
	cr_m_idle(3, -1);
	cr_m_queued(3, 1);
	cr_m_inflight(3, 2);
	cr_m_overflow(3);
	cr_m_queue_wait(3, 7 * MS);
	cr_m_request(3, "payments/critical", 4 * MS, CR_OUT_OK);
	cr_m_request(3, "payments/critical", 4 * MS, CR_OUT_TIMEOUT);
	cr_m_request(3, "payments/critical", 4 * MS, CR_OUT_OVERFLOW);
	cr_m_retry(3, "payments/critical", "timeout");
	cr_m_warm(3, 1);
	cr_m_warm(3, 0);
	cr_m_warm(3, 0);
	cr_m_unmatched();
	cr_m_unmatched();
	cr_m_reload(1);
	cr_m_reload(0);
	cr_m_reload(0);
	char *t = render();

	cr_expect_eq(value(t, "connroute_connections_opened_total{lane=\"critical\"}"), 2);
	cr_expect_eq(value(t, "connroute_connect_errors_total{lane=\"critical\"}"), 1);
	cr_expect_eq(value(t, "connroute_connections_closed_total{lane=\"critical\"}"), 1);
	cr_expect_eq(value(t, "connroute_connections_active{lane=\"critical\"}"), 1);
	cr_expect_eq(value(t, "connroute_connections_idle{lane=\"critical\"}"), 1);
	cr_expect_eq(value(t, "connroute_queued{lane=\"critical\"}"), 1);
	cr_expect_eq(value(t, "connroute_inflight_requests{lane=\"critical\"}"), 2);
	cr_expect_eq(value(t, "connroute_limit_overflows_total{lane=\"critical\"}"), 1);
	cr_expect_eq(value(t, "connroute_queue_wait_seconds_count{lane=\"critical\"}"), 1);
	cr_expect_eq(value(t, "connroute_connect_duration_seconds_count{lane=\"critical\"}"), 3,
		     "failed connects are timed too");
	cr_expect_eq(value(t, "http_client_requests_total{lane=\"critical\",outcome=\"ok\"}"), 1);
	cr_expect_eq(value(t, "http_client_requests_total{lane=\"critical\",outcome=\"error\"}"), 0);
	cr_expect_eq(value(t, "http_client_requests_total{lane=\"critical\",outcome=\"timeout\"}"), 1);
	cr_expect_eq(value(t, "http_client_requests_total{lane=\"critical\",outcome=\"overflow\"}"), 1);
	cr_expect_eq(value(t, "http_client_request_duration_seconds_count{lane=\"critical\","
			      "upstream=\"payments\",priority=\"critical\"}"),
		     3);
	cr_expect_eq(value(t, "http_client_retry_count_total{lane=\"critical\",upstream=\"payments\","
			      "retry_reason=\"timeout\"}"),
		     1);
	cr_expect_eq(value(t, "http_client_retry_count_total{lane=\"critical\",upstream=\"payments\","
			      "retry_reason=\"connect\"}"),
		     0);
	cr_expect_eq(value(t, "connroute_warm_pool_total{lane=\"critical\",result=\"hit\"}"), 1);
	cr_expect_eq(value(t, "connroute_warm_pool_total{lane=\"critical\",result=\"miss\"}"), 2);
	cr_expect_eq(value(t, "connroute_unmatched_keys_total"), 2);
	cr_expect_eq(value(t, "connroute_config_reloads_total{result=\"ok\"}"), 1);
	cr_expect_eq(value(t, "connroute_config_reloads_total{result=\"error\"}"), 2);
	/* A named lane without traffic is rendered with zeros; unnamed unused ids are not. */
	cr_expect_eq(value(t, "connroute_connections_opened_total{lane=\"default\"}"), 0);
	cr_expect_eq(count_lines(t, "connroute_connections_opened_total{", NULL), 2, "%s", t);

	/* Every family: one HELP and one TYPE line, before its samples. */
	static const char *const fam[][2] = {
		{"http_client_request_duration_seconds", "histogram"},
		{"http_client_requests_total", "counter"},
		{"http_client_retry_count_total", "counter"},
		{"connroute_connections_opened_total", "counter"},
		{"connroute_connect_errors_total", "counter"},
		{"connroute_connections_closed_total", "counter"},
		{"connroute_connections_active", "gauge"},
		{"connroute_connections_idle", "gauge"},
		{"connroute_connect_duration_seconds", "histogram"},
		{"connroute_inflight_requests", "gauge"},
		{"connroute_queued", "gauge"},
		{"connroute_queue_wait_seconds", "histogram"},
		{"connroute_limit_overflows_total", "counter"},
		{"connroute_warm_pool_total", "counter"},
		{"connroute_unmatched_keys_total", "counter"},
		{"connroute_config_reloads_total", "counter"},
	};
	for (size_t i = 0; i < sizeof(fam) / sizeof(fam[0]); i++) {
		char help[128], type[128];
		snprintf(help, sizeof(help), "# HELP %s ", fam[i][0]);
		snprintf(type, sizeof(type), "# TYPE %s %s\n", fam[i][0], fam[i][1]);
		const char *h = strstr(t, help), *ty = strstr(t, type);
		cr_expect(h && ty && h < ty, "family %s: HELP then TYPE", fam[i][0]);
		cr_expect_eq(count_lines(t, help, NULL), 1, "%s", fam[i][0]);
		cr_expect_eq(count_lines(t, type, NULL), 1, "%s", fam[i][0]);
	}
	cr_expect_eq(t[strlen(t) - 1], '\n');
	free(t);
}

Test(metrics, histogram_buckets_are_cumulative_and_le_inclusive)
{
	cr_metrics_set_lane_name(1, "x");
	cr_m_conn_opened(1, 1, 1);                 /* 1 ns      -> le 0.0005 */
	cr_m_conn_opened(1, 0, 1);                 /* unknown: counted, not observed */
	cr_m_conn_opened(1, 500000, 1);            /* 0.5 ms    -> le 0.0005 (inclusive) */
	cr_m_conn_opened(1, 500001, 1);            /* just over -> le 0.001 */
	cr_m_conn_opened(1, 1000 * MS, 1);         /* 1 s       -> le 1 */
	cr_m_conn_opened(1, 30000 * MS, 1);        /* 30 s      -> le 30 */
	cr_m_conn_opened(1, 31000 * MS, 1);        /* 31 s      -> +Inf only */
	char *t = render();
	const char *b = "connroute_connect_duration_seconds_bucket{lane=\"x\",le=\"%s\"}";
	static const char *const les[] = {"0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025",
					  "0.05",   "0.1",   "0.25",   "0.5",   "1",    "2.5",
					  "5",      "10",    "30",     "+Inf"};
	static const double want[] = {2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4, 5, 6};
	for (int i = 0; i < 16; i++) {
		char s[160];
		snprintf(s, sizeof(s), b, les[i]);
		cr_expect_eq(value(t, s), want[i], "%s", s);
	}
	cr_expect_eq(value(t, "connroute_connect_duration_seconds_count{lane=\"x\"}"), 6);
	double sum = value(t, "connroute_connect_duration_seconds_sum{lane=\"x\"}");
	cr_expect(sum > 62.0010000015 && sum < 62.0010000025, "sum %.9f", sum);
	free(t);
}

Test(metrics, render_reports_the_size_it_needs)
{
	cr_metrics_set_lane_name(0, "default");
	cr_m_request(0, "a/b", MS, CR_OUT_OK);
	size_t n = cr_metrics_render(NULL, 0);
	cr_assert_gt(n, 100);
	char small[64];
	memset(small, 'x', sizeof(small));
	cr_expect_eq(cr_metrics_render(small, sizeof(small)), n, "the length needed, as snprintf");
	cr_expect_eq(strlen(small), sizeof(small) - 1, "truncated and NUL-terminated");
	char *exact = malloc(n + 1);
	cr_expect_eq(cr_metrics_render(exact, n + 1), n);
	cr_expect_eq(strlen(exact), n);
	free(exact);
}

Test(metrics, key_labels_parse_upstream_and_priority)
{
	cr_metrics_set_lane_name(2, "l");
	cr_m_request(2, "payment-gateway/critical+idempotent", MS, CR_OUT_OK);
	cr_m_request(2, "payment-gateway/critical", MS, CR_OUT_OK);
	cr_m_request(2, "batch", MS, CR_OUT_OK);
	cr_m_request(2, "a/b/c", MS, CR_OUT_OK);
	cr_m_request(2, NULL, MS, CR_OUT_ERROR);
	char *t = render();
	cr_expect_eq(value(t, "http_client_request_duration_seconds_count{lane=\"l\","
			      "upstream=\"payment-gateway\",priority=\"critical\"}"),
		     2, "flags are not part of the labels:\n%s", t);
	cr_expect_eq(value(t, "http_client_request_duration_seconds_count{lane=\"l\",upstream=\"batch\","
			      "priority=\"\"}"),
		     1);
	cr_expect_eq(value(t, "http_client_request_duration_seconds_count{lane=\"l\",upstream=\"a\","
			      "priority=\"b/c\"}"),
		     1);
	cr_expect_eq(value(t, "http_client_request_duration_seconds_count{lane=\"l\",upstream=\"\","
			      "priority=\"\"}"),
		     1);
	free(t);
}

Test(metrics, label_sets_are_bounded_per_lane)
{
	cr_metrics_set_lane_name(5, "wide");
	cr_metrics_set_lane_name(6, "narrow");
	for (int i = 0; i < 100; i++) {
		char key[32];
		snprintf(key, sizeof(key), "up%d/p", i);
		cr_m_request(5, key, MS, CR_OUT_OK);
		cr_m_retry(5, key, "connect");
	}
	cr_m_request(6, "up99/p", MS, CR_OUT_OK);
	char *t = render();
	int series = count_lines(t, "http_client_request_duration_seconds_count{lane=\"wide\"", NULL);
	cr_expect_eq(series, 16, "15 label sets and \"other\":\n%s", t);
	cr_expect_eq(value(t, "http_client_request_duration_seconds_count{lane=\"wide\",upstream=\"up0\","
			      "priority=\"p\"}"),
		     1, "the first keys keep their labels");
	cr_expect_eq(value(t, "http_client_request_duration_seconds_count{lane=\"wide\",upstream=\"other\","
			      "priority=\"other\"}"),
		     85);
	cr_expect_eq(value(t, "http_client_retry_count_total{lane=\"wide\",upstream=\"other\","
			      "retry_reason=\"connect\"}"),
		     85);
	cr_expect_eq(value(t, "http_client_requests_total{lane=\"wide\",outcome=\"ok\"}"), 100,
		     "folding never loses a count");
	cr_expect_eq(value(t, "http_client_request_duration_seconds_count{lane=\"narrow\",upstream=\"up99\","
			      "priority=\"p\"}"),
		     1, "the bound is per lane");
	free(t);
}

Test(metrics, upstream_named_other_merges_with_the_fold)
{
	cr_metrics_set_lane_name(7, "o");
	cr_m_request(7, "other/other", MS, CR_OUT_OK);
	for (int i = 0; i < 20; i++) {
		char key[32];
		snprintf(key, sizeof(key), "u%d/other", i);
		cr_m_request(7, key, MS, CR_OUT_OK);
	}
	char *t = render();
	double v = value(t, "http_client_request_duration_seconds_count{lane=\"o\",upstream=\"other\","
			    "priority=\"other\"}");
	cr_expect_eq(v, 1 + 20 - 14, "one series, never a duplicate:\n%s", t);
	free(t);
}

Test(metrics, retry_reasons_and_unknown_ones)
{
	cr_metrics_set_lane_name(0, "default");
	cr_m_retry(0, "a/b", "connect");
	cr_m_retry(0, "a/c", "connect");
	cr_m_retry(0, "a/b", "transport");
	cr_m_retry(0, "a/b", "gremlins");
	char *t = render();
	cr_expect_eq(value(t, "http_client_retry_count_total{lane=\"default\",upstream=\"a\","
			      "retry_reason=\"connect\"}"),
		     2, "summed over priorities:\n%s", t);
	cr_expect_eq(value(t, "http_client_retry_count_total{lane=\"default\",upstream=\"a\","
			      "retry_reason=\"transport\"}"),
		     1);
	cr_expect_eq(value(t, "http_client_retry_count_total{lane=\"default\",upstream=\"a\","
			      "retry_reason=\"other\"}"),
		     1);
	free(t);
}

Test(metrics, bad_ids_are_ignored_and_names_escaped)
{
	cr_m_request(-1, "a/b", MS, CR_OUT_OK);
	cr_m_request(CR_MAX_LANE_IDS, "a/b", MS, CR_OUT_OK);
	cr_m_conn_opened(CR_MAX_LANE_IDS + 5, MS, 1);
	cr_m_request(0, "a/b", MS, 99); /* unknown outcome: an error */
	cr_metrics_set_lane_name(1, "we\"ird\\");
	cr_metrics_set_lane_name(1, "renamed"); /* ids are stable: the first name stays */
	cr_m_idle(1, 1);
	char *t = render();
	cr_expect_eq(value(t, "http_client_requests_total{lane=\"id0\",outcome=\"error\"}"), 1, "%s", t);
	cr_expect_eq(value(t, "connroute_connections_idle{lane=\"we\\\"ird\\\\\"}"), 1, "%s", t);
	cr_expect_eq(count_lines(t, "connroute_connections_idle{", NULL), 2, "%s", t);
	free(t);
}

/* ------------------------------------------------------------ concurrency */

#define THREADS 8
#define PER_THREAD 20000
static atomic_int stop_scrape;
static atomic_int scrape_bad;

static void *recorder(void *arg)
{
	long me = (long)arg;
	for (int i = 0; i < PER_THREAD; i++) {
		char key[32];
		snprintf(key, sizeof(key), "up%d/p%ld", i % 20, me % 2);
		cr_m_inflight(4, 1);
		cr_m_request(4, key, (uint64_t)(i % 7) * MS, CR_OUT_OK);
		cr_m_inflight(4, -1);
		if (i % 10 == 0)
			cr_m_retry(4, key, "timeout");
		cr_m_conn_opened(4, MS, 1);
		cr_m_conn_closed(4);
	}
	return NULL;
}

/* Renders while the recorders run: every snapshot of a histogram has its
 * +Inf bucket equal to its count. */
static void *scraper(void *arg)
{
	(void)arg;
	size_t cap = 1 << 20;
	char *buf = malloc(cap);
	for (int k = 0; k < 100000 && !atomic_load(&stop_scrape); k++) {
		size_t n = cr_metrics_render(buf, cap);
		if (n >= cap)
			continue;
		for (const char *p = buf; (p = strstr(p, "le=\"+Inf\"} ")); p++) {
			double inf = strtod(p + 11, NULL);
			const char *c = strstr(p, "_count{");
			const char *sp = c ? strchr(c, ' ') : NULL;
			if (!sp || strtod(sp + 1, NULL) != inf)
				atomic_store(&scrape_bad, 1);
		}
	}
	free(buf);
	return NULL;
}

Test(metrics, concurrent_recording_loses_nothing)
{
	pthread_t t[THREADS], s;
	cr_metrics_set_lane_name(4, "busy");
	cr_assert_eq(pthread_create(&s, NULL, scraper, NULL), 0);
	for (long i = 0; i < THREADS; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, recorder, (void *)i), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	atomic_store(&stop_scrape, 1);
	pthread_join(s, NULL);
	cr_expect_eq(atomic_load(&scrape_bad), 0, "a snapshot had +Inf != count");

	char *text = render();
	const double total = THREADS * PER_THREAD;
	cr_expect_eq(value(text, "http_client_requests_total{lane=\"busy\",outcome=\"ok\"}"), total);
	cr_expect_eq(value(text, "connroute_inflight_requests{lane=\"busy\"}"), 0);
	cr_expect_eq(value(text, "connroute_connections_opened_total{lane=\"busy\"}"), total);
	cr_expect_eq(value(text, "connroute_connections_active{lane=\"busy\"}"), 0);
	/* 40 (upstream, priority) pairs: 15 keep labels, never twice; the rest fold. */
	double sum = 0;
	int series = 0;
	for (const char *p = text; (p = strstr(p, "http_client_request_duration_seconds_count{lane=\"busy\""));
	     p++) {
		const char *sp = strchr(p, ' ');
		sum += strtod(sp + 1, NULL);
		series++;
		const char *eol = strchr(p, '\n');
		char line[256];
		snprintf(line, sizeof(line), "%.*s", (int)(sp - p), p);
		cr_expect_eq(value(text, line), strtod(sp + 1, NULL), "duplicate series %s", line);
		p = eol ? eol : p;
	}
	cr_expect_eq(series, 16, "%s", text);
	cr_expect_eq(sum, total);
	double retries = 0;
	for (const char *p = text; (p = strstr(p, "retry_reason=\"timeout\"} ")); p++)
		retries += strtod(p + 24, NULL);
	cr_expect_eq(retries, total / 10);
	free(text);
}

/* promtool's own verdict on a busy rendering (skipped without promtool). */
Test(metrics, promtool_accepts_the_rendering)
{
	if (system("command -v promtool >/dev/null 2>&1") != 0)
		cr_skip_test("promtool is not installed (Debian: prometheus)");
	cr_metrics_set_lane_name(0, "default");
	cr_metrics_set_lane_name(1, "critical");
	cr_m_request(0, "a/b", 3 * MS, CR_OUT_OK);
	cr_m_request(1, "pay/critical", 30 * MS, CR_OUT_TIMEOUT);
	cr_m_retry(1, "pay/critical", "connect");
	cr_m_conn_opened(1, MS, 1);
	cr_m_queue_wait(1, MS);
	cr_m_unmatched();
	cr_m_reload(0);
	char *t = render();
	char path[] = "/tmp/cr-metrics-XXXXXX";
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, t, strlen(t)), (ssize_t)strlen(t));
	close(fd);
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "promtool check metrics < %s > %s.out 2>&1", path, path);
	int rc = system(cmd);
	char outp[64];
	snprintf(outp, sizeof(outp), "%s.out", path);
	FILE *f = fopen(outp, "r");
	char msg[2048] = "";
	if (f) {
		size_t k = fread(msg, 1, sizeof(msg) - 1, f);
		msg[k] = '\0';
		fclose(f);
	}
	cr_expect_eq(rc, 0, "promtool: %s", msg);
	cr_expect_eq(msg[0], '\0', "promtool lint: %s", msg);
	unlink(path);
	unlink(outp);
	free(t);
}

/* ---------------------------------------------------------------- endpoint */

Test(metrics_endpoint, addresses_parse)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char path[128];
	cr_assert_eq(cr_endpoint_parse("127.0.0.1:9464", 1, &ss, &len, path, sizeof(path)), 0);
	cr_expect_eq(ss.ss_family, AF_INET);
	cr_expect_eq(ntohs(((struct sockaddr_in *)&ss)->sin_port), 9464);
	cr_expect_str_empty(path);
	cr_assert_eq(cr_endpoint_parse("[::1]:9464", 1, &ss, &len, path, sizeof(path)), 0);
	cr_expect_eq(ss.ss_family, AF_INET6);
	cr_expect_eq(len, sizeof(struct sockaddr_in6));
	cr_assert_eq(cr_endpoint_parse("unix:/run/connroute/%p.sock", 4242, &ss, &len, path, sizeof(path)), 0);
	cr_expect_eq(ss.ss_family, AF_UNIX);
	cr_expect_str_eq(path, "/run/connroute/4242.sock");
	cr_expect_str_eq(((struct sockaddr_un *)&ss)->sun_path, "/run/connroute/4242.sock");
	cr_assert_eq(cr_endpoint_parse("unix:/tmp/a-%p-%p", 7, &ss, &len, path, sizeof(path)), 0);
	cr_expect_str_eq(path, "/tmp/a-7-7");
	cr_assert_eq(cr_endpoint_parse("unix:@cr-%p", 9, &ss, &len, path, sizeof(path)), 0);
	cr_expect_eq(((struct sockaddr_un *)&ss)->sun_path[0], '\0');
	cr_expect_eq(memcmp(((struct sockaddr_un *)&ss)->sun_path + 1, "cr-9", 4), 0);
	cr_expect_eq(len, offsetof(struct sockaddr_un, sun_path) + 5);
	cr_expect_str_empty(path, "no file for an abstract socket");

	cr_expect_eq(cr_endpoint_parse("localhost:9464", 1, &ss, &len, NULL, 0), -1, "no names");
	cr_expect_eq(cr_endpoint_parse("127.0.0.1", 1, &ss, &len, NULL, 0), -1);
	cr_expect_eq(cr_endpoint_parse("127.0.0.1:0", 1, &ss, &len, NULL, 0), -1);
	cr_expect_eq(cr_endpoint_parse("127.0.0.1:65536", 1, &ss, &len, NULL, 0), -1);
	cr_expect_eq(cr_endpoint_parse("::1:9464", 1, &ss, &len, NULL, 0), -1);
	cr_expect_eq(cr_endpoint_parse("unix:relative", 1, &ss, &len, NULL, 0), -1);
	char longp[200] = "unix:/";
	memset(longp + 6, 'a', 150);
	longp[156] = '\0';
	cr_expect_eq(cr_endpoint_parse(longp, 1, &ss, &len, NULL, 0), -1, "longer than sun_path");
}

/* ------------------------------------------------------------- golden */

/* A known state touching every family, every label kind and the special
 * cases of the renderer: a lane only named (zeros), an unnamed id, a name to
 * escape, two priorities of one upstream (one retry series), an unknown retry
 * reason (the "other" series shown), a negative gauge, a fractional sum. */
/* What lib/health.c would report: lane 3 has 10.0.0.2:443 ejected (twice so
 * far) and an open breaker for api:443 ("x\"y" escaped). */
static void golden_health(int what, cr_m_emit_fn emit, void *ctx)
{
	if (what == 0 || what == 1)
		emit(ctx, 3, "10.0.0.2:443", what == 0 ? 25000 : 2);
	if (what == 2) {
		emit(ctx, 3, "api:443", 1);
		emit(ctx, 3, "x\"y:80", 0);
	}
}

static void golden_state(void)
{
	cr_metrics_set_health(golden_health);
	cr_m_breaker_rejected(3);
	cr_m_breaker_rejected(3);
	cr_m_retry_throttled(3);
	cr_metrics_set_lane_name(0, "default");
	cr_metrics_set_lane_name(3, "cr\"it");
	cr_m_conn_opened(3, 2 * MS, 1);
	cr_m_conn_opened(3, 700 * MS + 123, 1);
	cr_m_conn_opened(3, 3 * MS, 0);
	cr_m_conn_opened(3, 0, 1);
	cr_m_conn_closed(3);
	cr_m_idle(3, 2);
	cr_m_queued(3, 1);
	cr_m_queued(3, -2);
	cr_m_inflight(3, 4);
	cr_m_overflow(3);
	cr_m_queue_wait(3, 7 * MS);
	cr_m_request(3, "pay/critical", 4 * MS, CR_OUT_OK);
	cr_m_request(3, "pay/batch+idempotent", 40 * MS, CR_OUT_TIMEOUT);
	cr_m_request(3, "pay/critical", 31000 * MS, CR_OUT_OVERFLOW);
	cr_m_retry(3, "pay/critical", "timeout");
	cr_m_retry(3, "pay/batch", "connect");
	cr_m_retry(3, "pay/batch", "gremlins");
	cr_m_warm(3, 1);
	cr_m_warm(3, 0);
	cr_m_warm(3, 0);
	cr_m_alog_dropped(3, 5);
	cr_m_request(9, "x", 1, CR_OUT_ERROR);
	cr_m_unmatched();
	cr_m_reload(1);
	cr_m_reload(0);
	cr_m_reload(0);
}

static const char golden_render[] =
	"# HELP http_client_request_duration_seconds Duration of HTTP client requests (libcurl performs), from the call to its return, time queued for a limit and retries included.\n"
	"# TYPE http_client_request_duration_seconds histogram\n"
	"http_client_request_duration_seconds_bucket{lane=\"cr\\\"it\",upstream=\"pay\",priority=\"critical\",le=\"0.0005\"} 0\n"
	"http_client_request_duration_seconds_bucket{lane=\"cr\\\"it\",upstream=\"pay\",priority=\"critical\",le=\"0.001\"} 0\n"
	"http_client_request_duration_seconds_bucket{lane=\"cr\\\"it\",upstream=\"pay\",priority=\"critical\",le=\"0.0025\"} 0\n"
	"http_client_request_duration_seconds_bucket{lane=\"cr\\\"it\",upstream=\"pay\",priority=\"critical\",le=\"0.005\"} 1\n"
	"http_client_request_duration_seconds_bucket{lane=\"cr\\\"it\",upstream=\"pay\",priority=\"critical\",le=\"0.01\"} 1\n"
	"http_client_request_duration_seconds_bucket{lane=\"cr\\\"it\",upstream=\"pay\",priority=\"critical\",le=\"0.025\"} 1\n"
	"http_client_request_duration_seconds_bucket{lane=\"cr\\\"it\",upstream=\"pay\",priority=\"critical\",le=\"0.05\"} 1\n"
	"http_client_request_duration_seconds_bucket{lane=\"cr\\\"it\",upstream=\"pay\",priority=\"critical\",le=\"0.1\"} 1\n"
	"http_client_request_duration_seconds_bucket{lane=\"cr\\\"it\",upstream=\"pay\",priority=\"critical\",le=\"0.25\"} 1\n"
	"http_client_request_duration_seconds_bucket{lane=\"cr\\\"it\",upstream=\"pay\",priority=\"critical\",le=\"0.5\"} 1\n"
	"http_client_request_duration_seconds_bucket{lane=\"cr\\\"it\",upstream=\"pay\",priority=\"critical\",le=\"1\"} 1\n"
	"http_client_request_duration_seconds_bucket{lane=\"cr\\\"it\",upstream=\"pay\",priority=\"critical\",le=\"2.5\"} 1\n"
	"http_client_request_duration_seconds_bucket{lane=\"cr\\\"it\",upstream=\"pay\",priority=\"critical\",le=\"5\"} 1\n"
	"http_client_request_duration_seconds_bucket{lane=\"cr\\\"it\",upstream=\"pay\",priority=\"critical\",le=\"10\"} 1\n"
	"http_client_request_duration_seconds_bucket{lane=\"cr\\\"it\",upstream=\"pay\",priority=\"critical\",le=\"30\"} 1\n"
	"http_client_request_duration_seconds_bucket{lane=\"cr\\\"it\",upstream=\"pay\",priority=\"critical\",le=\"+Inf\"} 2\n"
	"http_client_request_duration_seconds_sum{lane=\"cr\\\"it\",upstream=\"pay\",priority=\"critical\"} 31.004000000\n"
	"http_client_request_duration_seconds_count{lane=\"cr\\\"it\",upstream=\"pay\",priority=\"critical\"} 2\n"
	"http_client_request_duration_seconds_bucket{lane=\"cr\\\"it\",upstream=\"pay\",priority=\"batch\",le=\"0.0005\"} 0\n"
	"http_client_request_duration_seconds_bucket{lane=\"cr\\\"it\",upstream=\"pay\",priority=\"batch\",le=\"0.001\"} 0\n"
	"http_client_request_duration_seconds_bucket{lane=\"cr\\\"it\",upstream=\"pay\",priority=\"batch\",le=\"0.0025\"} 0\n"
	"http_client_request_duration_seconds_bucket{lane=\"cr\\\"it\",upstream=\"pay\",priority=\"batch\",le=\"0.005\"} 0\n"
	"http_client_request_duration_seconds_bucket{lane=\"cr\\\"it\",upstream=\"pay\",priority=\"batch\",le=\"0.01\"} 0\n"
	"http_client_request_duration_seconds_bucket{lane=\"cr\\\"it\",upstream=\"pay\",priority=\"batch\",le=\"0.025\"} 0\n"
	"http_client_request_duration_seconds_bucket{lane=\"cr\\\"it\",upstream=\"pay\",priority=\"batch\",le=\"0.05\"} 1\n"
	"http_client_request_duration_seconds_bucket{lane=\"cr\\\"it\",upstream=\"pay\",priority=\"batch\",le=\"0.1\"} 1\n"
	"http_client_request_duration_seconds_bucket{lane=\"cr\\\"it\",upstream=\"pay\",priority=\"batch\",le=\"0.25\"} 1\n"
	"http_client_request_duration_seconds_bucket{lane=\"cr\\\"it\",upstream=\"pay\",priority=\"batch\",le=\"0.5\"} 1\n"
	"http_client_request_duration_seconds_bucket{lane=\"cr\\\"it\",upstream=\"pay\",priority=\"batch\",le=\"1\"} 1\n"
	"http_client_request_duration_seconds_bucket{lane=\"cr\\\"it\",upstream=\"pay\",priority=\"batch\",le=\"2.5\"} 1\n"
	"http_client_request_duration_seconds_bucket{lane=\"cr\\\"it\",upstream=\"pay\",priority=\"batch\",le=\"5\"} 1\n"
	"http_client_request_duration_seconds_bucket{lane=\"cr\\\"it\",upstream=\"pay\",priority=\"batch\",le=\"10\"} 1\n"
	"http_client_request_duration_seconds_bucket{lane=\"cr\\\"it\",upstream=\"pay\",priority=\"batch\",le=\"30\"} 1\n"
	"http_client_request_duration_seconds_bucket{lane=\"cr\\\"it\",upstream=\"pay\",priority=\"batch\",le=\"+Inf\"} 1\n"
	"http_client_request_duration_seconds_sum{lane=\"cr\\\"it\",upstream=\"pay\",priority=\"batch\"} 0.040000000\n"
	"http_client_request_duration_seconds_count{lane=\"cr\\\"it\",upstream=\"pay\",priority=\"batch\"} 1\n"
	"http_client_request_duration_seconds_bucket{lane=\"id9\",upstream=\"x\",priority=\"\",le=\"0.0005\"} 1\n"
	"http_client_request_duration_seconds_bucket{lane=\"id9\",upstream=\"x\",priority=\"\",le=\"0.001\"} 1\n"
	"http_client_request_duration_seconds_bucket{lane=\"id9\",upstream=\"x\",priority=\"\",le=\"0.0025\"} 1\n"
	"http_client_request_duration_seconds_bucket{lane=\"id9\",upstream=\"x\",priority=\"\",le=\"0.005\"} 1\n"
	"http_client_request_duration_seconds_bucket{lane=\"id9\",upstream=\"x\",priority=\"\",le=\"0.01\"} 1\n"
	"http_client_request_duration_seconds_bucket{lane=\"id9\",upstream=\"x\",priority=\"\",le=\"0.025\"} 1\n"
	"http_client_request_duration_seconds_bucket{lane=\"id9\",upstream=\"x\",priority=\"\",le=\"0.05\"} 1\n"
	"http_client_request_duration_seconds_bucket{lane=\"id9\",upstream=\"x\",priority=\"\",le=\"0.1\"} 1\n"
	"http_client_request_duration_seconds_bucket{lane=\"id9\",upstream=\"x\",priority=\"\",le=\"0.25\"} 1\n"
	"http_client_request_duration_seconds_bucket{lane=\"id9\",upstream=\"x\",priority=\"\",le=\"0.5\"} 1\n"
	"http_client_request_duration_seconds_bucket{lane=\"id9\",upstream=\"x\",priority=\"\",le=\"1\"} 1\n"
	"http_client_request_duration_seconds_bucket{lane=\"id9\",upstream=\"x\",priority=\"\",le=\"2.5\"} 1\n"
	"http_client_request_duration_seconds_bucket{lane=\"id9\",upstream=\"x\",priority=\"\",le=\"5\"} 1\n"
	"http_client_request_duration_seconds_bucket{lane=\"id9\",upstream=\"x\",priority=\"\",le=\"10\"} 1\n"
	"http_client_request_duration_seconds_bucket{lane=\"id9\",upstream=\"x\",priority=\"\",le=\"30\"} 1\n"
	"http_client_request_duration_seconds_bucket{lane=\"id9\",upstream=\"x\",priority=\"\",le=\"+Inf\"} 1\n"
	"http_client_request_duration_seconds_sum{lane=\"id9\",upstream=\"x\",priority=\"\"} 0.000000001\n"
	"http_client_request_duration_seconds_count{lane=\"id9\",upstream=\"x\",priority=\"\"} 1\n"
	"# HELP http_client_requests_total HTTP client requests (libcurl performs) by outcome: ok (a response), error, timeout, overflow (refused at the lane's limit).\n"
	"# TYPE http_client_requests_total counter\n"
	"http_client_requests_total{lane=\"default\",outcome=\"ok\"} 0\n"
	"http_client_requests_total{lane=\"default\",outcome=\"error\"} 0\n"
	"http_client_requests_total{lane=\"default\",outcome=\"timeout\"} 0\n"
	"http_client_requests_total{lane=\"default\",outcome=\"overflow\"} 0\n"
	"http_client_requests_total{lane=\"cr\\\"it\",outcome=\"ok\"} 1\n"
	"http_client_requests_total{lane=\"cr\\\"it\",outcome=\"error\"} 0\n"
	"http_client_requests_total{lane=\"cr\\\"it\",outcome=\"timeout\"} 1\n"
	"http_client_requests_total{lane=\"cr\\\"it\",outcome=\"overflow\"} 1\n"
	"http_client_requests_total{lane=\"id9\",outcome=\"ok\"} 0\n"
	"http_client_requests_total{lane=\"id9\",outcome=\"error\"} 1\n"
	"http_client_requests_total{lane=\"id9\",outcome=\"timeout\"} 0\n"
	"http_client_requests_total{lane=\"id9\",outcome=\"overflow\"} 0\n"
	"# HELP http_client_retry_count_total Requests connroute retried (idempotent only, within the lane's retry budget), by reason.\n"
	"# TYPE http_client_retry_count_total counter\n"
	"http_client_retry_count_total{lane=\"cr\\\"it\",upstream=\"pay\",retry_reason=\"connect\"} 1\n"
	"http_client_retry_count_total{lane=\"cr\\\"it\",upstream=\"pay\",retry_reason=\"timeout\"} 1\n"
	"http_client_retry_count_total{lane=\"cr\\\"it\",upstream=\"pay\",retry_reason=\"transport\"} 0\n"
	"http_client_retry_count_total{lane=\"cr\\\"it\",upstream=\"pay\",retry_reason=\"other\"} 1\n"
	"http_client_retry_count_total{lane=\"id9\",upstream=\"x\",retry_reason=\"connect\"} 0\n"
	"http_client_retry_count_total{lane=\"id9\",upstream=\"x\",retry_reason=\"timeout\"} 0\n"
	"http_client_retry_count_total{lane=\"id9\",upstream=\"x\",retry_reason=\"transport\"} 0\n"
	"# HELP connroute_connections_opened_total Connections established: routed raw connect() calls and new libcurl connections.\n"
	"# TYPE connroute_connections_opened_total counter\n"
	"connroute_connections_opened_total{lane=\"default\"} 0\n"
	"connroute_connections_opened_total{lane=\"cr\\\"it\"} 3\n"
	"connroute_connections_opened_total{lane=\"id9\"} 0\n"
	"# HELP connroute_connect_errors_total Connection attempts that failed.\n"
	"# TYPE connroute_connect_errors_total counter\n"
	"connroute_connect_errors_total{lane=\"default\"} 0\n"
	"connroute_connect_errors_total{lane=\"cr\\\"it\"} 1\n"
	"connroute_connect_errors_total{lane=\"id9\"} 0\n"
	"# HELP connroute_connections_closed_total Connections closed that connroute saw close (routed raw sockets; libcurl connections where the engine observes the close).\n"
	"# TYPE connroute_connections_closed_total counter\n"
	"connroute_connections_closed_total{lane=\"default\"} 0\n"
	"connroute_connections_closed_total{lane=\"cr\\\"it\"} 1\n"
	"connroute_connections_closed_total{lane=\"id9\"} 0\n"
	"# HELP connroute_connections_active Connections open: opened_total - closed_total (not below 0).\n"
	"# TYPE connroute_connections_active gauge\n"
	"connroute_connections_active{lane=\"default\"} 0\n"
	"connroute_connections_active{lane=\"cr\\\"it\"} 2\n"
	"connroute_connections_active{lane=\"id9\"} 0\n"
	"# HELP connroute_connections_idle Idle pooled connections (libcurl connections at rest in the lane's pools).\n"
	"# TYPE connroute_connections_idle gauge\n"
	"connroute_connections_idle{lane=\"default\"} 0\n"
	"connroute_connections_idle{lane=\"cr\\\"it\"} 2\n"
	"connroute_connections_idle{lane=\"id9\"} 0\n"
	"# HELP connroute_connect_duration_seconds Time to establish a connection (TCP, and TLS for libcurl), failed attempts included.\n"
	"# TYPE connroute_connect_duration_seconds histogram\n"
	"connroute_connect_duration_seconds_bucket{lane=\"default\",le=\"0.0005\"} 0\n"
	"connroute_connect_duration_seconds_bucket{lane=\"default\",le=\"0.001\"} 0\n"
	"connroute_connect_duration_seconds_bucket{lane=\"default\",le=\"0.0025\"} 0\n"
	"connroute_connect_duration_seconds_bucket{lane=\"default\",le=\"0.005\"} 0\n"
	"connroute_connect_duration_seconds_bucket{lane=\"default\",le=\"0.01\"} 0\n"
	"connroute_connect_duration_seconds_bucket{lane=\"default\",le=\"0.025\"} 0\n"
	"connroute_connect_duration_seconds_bucket{lane=\"default\",le=\"0.05\"} 0\n"
	"connroute_connect_duration_seconds_bucket{lane=\"default\",le=\"0.1\"} 0\n"
	"connroute_connect_duration_seconds_bucket{lane=\"default\",le=\"0.25\"} 0\n"
	"connroute_connect_duration_seconds_bucket{lane=\"default\",le=\"0.5\"} 0\n"
	"connroute_connect_duration_seconds_bucket{lane=\"default\",le=\"1\"} 0\n"
	"connroute_connect_duration_seconds_bucket{lane=\"default\",le=\"2.5\"} 0\n"
	"connroute_connect_duration_seconds_bucket{lane=\"default\",le=\"5\"} 0\n"
	"connroute_connect_duration_seconds_bucket{lane=\"default\",le=\"10\"} 0\n"
	"connroute_connect_duration_seconds_bucket{lane=\"default\",le=\"30\"} 0\n"
	"connroute_connect_duration_seconds_bucket{lane=\"default\",le=\"+Inf\"} 0\n"
	"connroute_connect_duration_seconds_sum{lane=\"default\"} 0.000000000\n"
	"connroute_connect_duration_seconds_count{lane=\"default\"} 0\n"
	"connroute_connect_duration_seconds_bucket{lane=\"cr\\\"it\",le=\"0.0005\"} 0\n"
	"connroute_connect_duration_seconds_bucket{lane=\"cr\\\"it\",le=\"0.001\"} 0\n"
	"connroute_connect_duration_seconds_bucket{lane=\"cr\\\"it\",le=\"0.0025\"} 1\n"
	"connroute_connect_duration_seconds_bucket{lane=\"cr\\\"it\",le=\"0.005\"} 2\n"
	"connroute_connect_duration_seconds_bucket{lane=\"cr\\\"it\",le=\"0.01\"} 2\n"
	"connroute_connect_duration_seconds_bucket{lane=\"cr\\\"it\",le=\"0.025\"} 2\n"
	"connroute_connect_duration_seconds_bucket{lane=\"cr\\\"it\",le=\"0.05\"} 2\n"
	"connroute_connect_duration_seconds_bucket{lane=\"cr\\\"it\",le=\"0.1\"} 2\n"
	"connroute_connect_duration_seconds_bucket{lane=\"cr\\\"it\",le=\"0.25\"} 2\n"
	"connroute_connect_duration_seconds_bucket{lane=\"cr\\\"it\",le=\"0.5\"} 2\n"
	"connroute_connect_duration_seconds_bucket{lane=\"cr\\\"it\",le=\"1\"} 3\n"
	"connroute_connect_duration_seconds_bucket{lane=\"cr\\\"it\",le=\"2.5\"} 3\n"
	"connroute_connect_duration_seconds_bucket{lane=\"cr\\\"it\",le=\"5\"} 3\n"
	"connroute_connect_duration_seconds_bucket{lane=\"cr\\\"it\",le=\"10\"} 3\n"
	"connroute_connect_duration_seconds_bucket{lane=\"cr\\\"it\",le=\"30\"} 3\n"
	"connroute_connect_duration_seconds_bucket{lane=\"cr\\\"it\",le=\"+Inf\"} 3\n"
	"connroute_connect_duration_seconds_sum{lane=\"cr\\\"it\"} 0.705000123\n"
	"connroute_connect_duration_seconds_count{lane=\"cr\\\"it\"} 3\n"
	"connroute_connect_duration_seconds_bucket{lane=\"id9\",le=\"0.0005\"} 0\n"
	"connroute_connect_duration_seconds_bucket{lane=\"id9\",le=\"0.001\"} 0\n"
	"connroute_connect_duration_seconds_bucket{lane=\"id9\",le=\"0.0025\"} 0\n"
	"connroute_connect_duration_seconds_bucket{lane=\"id9\",le=\"0.005\"} 0\n"
	"connroute_connect_duration_seconds_bucket{lane=\"id9\",le=\"0.01\"} 0\n"
	"connroute_connect_duration_seconds_bucket{lane=\"id9\",le=\"0.025\"} 0\n"
	"connroute_connect_duration_seconds_bucket{lane=\"id9\",le=\"0.05\"} 0\n"
	"connroute_connect_duration_seconds_bucket{lane=\"id9\",le=\"0.1\"} 0\n"
	"connroute_connect_duration_seconds_bucket{lane=\"id9\",le=\"0.25\"} 0\n"
	"connroute_connect_duration_seconds_bucket{lane=\"id9\",le=\"0.5\"} 0\n"
	"connroute_connect_duration_seconds_bucket{lane=\"id9\",le=\"1\"} 0\n"
	"connroute_connect_duration_seconds_bucket{lane=\"id9\",le=\"2.5\"} 0\n"
	"connroute_connect_duration_seconds_bucket{lane=\"id9\",le=\"5\"} 0\n"
	"connroute_connect_duration_seconds_bucket{lane=\"id9\",le=\"10\"} 0\n"
	"connroute_connect_duration_seconds_bucket{lane=\"id9\",le=\"30\"} 0\n"
	"connroute_connect_duration_seconds_bucket{lane=\"id9\",le=\"+Inf\"} 0\n"
	"connroute_connect_duration_seconds_sum{lane=\"id9\"} 0.000000000\n"
	"connroute_connect_duration_seconds_count{lane=\"id9\"} 0\n"
	"# HELP connroute_inflight_requests Requests (libcurl performs) in progress.\n"
	"# TYPE connroute_inflight_requests gauge\n"
	"connroute_inflight_requests{lane=\"default\"} 0\n"
	"connroute_inflight_requests{lane=\"cr\\\"it\"} 4\n"
	"connroute_inflight_requests{lane=\"id9\"} 0\n"
	"# HELP connroute_queued Connects and requests waiting for a unit of the lane's max_conns_per_host now.\n"
	"# TYPE connroute_queued gauge\n"
	"connroute_queued{lane=\"default\"} 0\n"
	"connroute_queued{lane=\"cr\\\"it\"} -1\n"
	"connroute_queued{lane=\"id9\"} 0\n"
	"# HELP connroute_queue_wait_seconds Time spent waiting for a unit of max_conns_per_host, per wait that happened.\n"
	"# TYPE connroute_queue_wait_seconds histogram\n"
	"connroute_queue_wait_seconds_bucket{lane=\"default\",le=\"0.0005\"} 0\n"
	"connroute_queue_wait_seconds_bucket{lane=\"default\",le=\"0.001\"} 0\n"
	"connroute_queue_wait_seconds_bucket{lane=\"default\",le=\"0.0025\"} 0\n"
	"connroute_queue_wait_seconds_bucket{lane=\"default\",le=\"0.005\"} 0\n"
	"connroute_queue_wait_seconds_bucket{lane=\"default\",le=\"0.01\"} 0\n"
	"connroute_queue_wait_seconds_bucket{lane=\"default\",le=\"0.025\"} 0\n"
	"connroute_queue_wait_seconds_bucket{lane=\"default\",le=\"0.05\"} 0\n"
	"connroute_queue_wait_seconds_bucket{lane=\"default\",le=\"0.1\"} 0\n"
	"connroute_queue_wait_seconds_bucket{lane=\"default\",le=\"0.25\"} 0\n"
	"connroute_queue_wait_seconds_bucket{lane=\"default\",le=\"0.5\"} 0\n"
	"connroute_queue_wait_seconds_bucket{lane=\"default\",le=\"1\"} 0\n"
	"connroute_queue_wait_seconds_bucket{lane=\"default\",le=\"2.5\"} 0\n"
	"connroute_queue_wait_seconds_bucket{lane=\"default\",le=\"5\"} 0\n"
	"connroute_queue_wait_seconds_bucket{lane=\"default\",le=\"10\"} 0\n"
	"connroute_queue_wait_seconds_bucket{lane=\"default\",le=\"30\"} 0\n"
	"connroute_queue_wait_seconds_bucket{lane=\"default\",le=\"+Inf\"} 0\n"
	"connroute_queue_wait_seconds_sum{lane=\"default\"} 0.000000000\n"
	"connroute_queue_wait_seconds_count{lane=\"default\"} 0\n"
	"connroute_queue_wait_seconds_bucket{lane=\"cr\\\"it\",le=\"0.0005\"} 0\n"
	"connroute_queue_wait_seconds_bucket{lane=\"cr\\\"it\",le=\"0.001\"} 0\n"
	"connroute_queue_wait_seconds_bucket{lane=\"cr\\\"it\",le=\"0.0025\"} 0\n"
	"connroute_queue_wait_seconds_bucket{lane=\"cr\\\"it\",le=\"0.005\"} 0\n"
	"connroute_queue_wait_seconds_bucket{lane=\"cr\\\"it\",le=\"0.01\"} 1\n"
	"connroute_queue_wait_seconds_bucket{lane=\"cr\\\"it\",le=\"0.025\"} 1\n"
	"connroute_queue_wait_seconds_bucket{lane=\"cr\\\"it\",le=\"0.05\"} 1\n"
	"connroute_queue_wait_seconds_bucket{lane=\"cr\\\"it\",le=\"0.1\"} 1\n"
	"connroute_queue_wait_seconds_bucket{lane=\"cr\\\"it\",le=\"0.25\"} 1\n"
	"connroute_queue_wait_seconds_bucket{lane=\"cr\\\"it\",le=\"0.5\"} 1\n"
	"connroute_queue_wait_seconds_bucket{lane=\"cr\\\"it\",le=\"1\"} 1\n"
	"connroute_queue_wait_seconds_bucket{lane=\"cr\\\"it\",le=\"2.5\"} 1\n"
	"connroute_queue_wait_seconds_bucket{lane=\"cr\\\"it\",le=\"5\"} 1\n"
	"connroute_queue_wait_seconds_bucket{lane=\"cr\\\"it\",le=\"10\"} 1\n"
	"connroute_queue_wait_seconds_bucket{lane=\"cr\\\"it\",le=\"30\"} 1\n"
	"connroute_queue_wait_seconds_bucket{lane=\"cr\\\"it\",le=\"+Inf\"} 1\n"
	"connroute_queue_wait_seconds_sum{lane=\"cr\\\"it\"} 0.007000000\n"
	"connroute_queue_wait_seconds_count{lane=\"cr\\\"it\"} 1\n"
	"connroute_queue_wait_seconds_bucket{lane=\"id9\",le=\"0.0005\"} 0\n"
	"connroute_queue_wait_seconds_bucket{lane=\"id9\",le=\"0.001\"} 0\n"
	"connroute_queue_wait_seconds_bucket{lane=\"id9\",le=\"0.0025\"} 0\n"
	"connroute_queue_wait_seconds_bucket{lane=\"id9\",le=\"0.005\"} 0\n"
	"connroute_queue_wait_seconds_bucket{lane=\"id9\",le=\"0.01\"} 0\n"
	"connroute_queue_wait_seconds_bucket{lane=\"id9\",le=\"0.025\"} 0\n"
	"connroute_queue_wait_seconds_bucket{lane=\"id9\",le=\"0.05\"} 0\n"
	"connroute_queue_wait_seconds_bucket{lane=\"id9\",le=\"0.1\"} 0\n"
	"connroute_queue_wait_seconds_bucket{lane=\"id9\",le=\"0.25\"} 0\n"
	"connroute_queue_wait_seconds_bucket{lane=\"id9\",le=\"0.5\"} 0\n"
	"connroute_queue_wait_seconds_bucket{lane=\"id9\",le=\"1\"} 0\n"
	"connroute_queue_wait_seconds_bucket{lane=\"id9\",le=\"2.5\"} 0\n"
	"connroute_queue_wait_seconds_bucket{lane=\"id9\",le=\"5\"} 0\n"
	"connroute_queue_wait_seconds_bucket{lane=\"id9\",le=\"10\"} 0\n"
	"connroute_queue_wait_seconds_bucket{lane=\"id9\",le=\"30\"} 0\n"
	"connroute_queue_wait_seconds_bucket{lane=\"id9\",le=\"+Inf\"} 0\n"
	"connroute_queue_wait_seconds_sum{lane=\"id9\"} 0.000000000\n"
	"connroute_queue_wait_seconds_count{lane=\"id9\"} 0\n"
	"# HELP connroute_limit_overflows_total Connects and requests refused at max_conns_per_host (queue timeout, or non-blocking).\n"
	"# TYPE connroute_limit_overflows_total counter\n"
	"connroute_limit_overflows_total{lane=\"default\"} 0\n"
	"connroute_limit_overflows_total{lane=\"cr\\\"it\"} 1\n"
	"connroute_limit_overflows_total{lane=\"id9\"} 0\n"
	"# HELP connroute_warm_pool_total Connections wanted from the lane's warm pool: hit (a warm socket was used) or miss.\n"
	"# TYPE connroute_warm_pool_total counter\n"
	"connroute_warm_pool_total{lane=\"default\",result=\"hit\"} 0\n"
	"connroute_warm_pool_total{lane=\"default\",result=\"miss\"} 0\n"
	"connroute_warm_pool_total{lane=\"cr\\\"it\",result=\"hit\"} 1\n"
	"connroute_warm_pool_total{lane=\"cr\\\"it\",result=\"miss\"} 2\n"
	"connroute_warm_pool_total{lane=\"id9\",result=\"hit\"} 0\n"
	"connroute_warm_pool_total{lane=\"id9\",result=\"miss\"} 0\n"
	"# HELP connroute_unmatched_keys_total Routing decisions whose key matched no lane and fell back to lane default.\n"
	"# TYPE connroute_unmatched_keys_total counter\n"
	"connroute_unmatched_keys_total 1\n"
	"# HELP connroute_config_reloads_total Configuration reloads: ok (applied) or error (rejected, the old configuration stays).\n"
	"# TYPE connroute_config_reloads_total counter\n"
	"connroute_config_reloads_total{result=\"ok\"} 1\n"
	"connroute_config_reloads_total{result=\"error\"} 2\n"
	"# HELP connroute_access_log_dropped_total Access log lines lost: the log's buffer was full (the request was never delayed) or its output failed.\n"
	"# TYPE connroute_access_log_dropped_total counter\n"
	"connroute_access_log_dropped_total{lane=\"default\"} 0\n"
	"connroute_access_log_dropped_total{lane=\"cr\\\"it\"} 5\n"
	"connroute_access_log_dropped_total{lane=\"id9\"} 0\n"
	"# HELP connroute_ejections_total Times an address was ejected (outlier ejection, eject_after), by address.\n"
	"# TYPE connroute_ejections_total counter\n"
	"connroute_ejections_total{lane=\"cr\\\"it\",address=\"10.0.0.2:443\"} 2\n"
	"# HELP connroute_ejected Addresses ejected now.\n"
	"# TYPE connroute_ejected gauge\n"
	"connroute_ejected{lane=\"default\"} 0\n"
	"connroute_ejected{lane=\"cr\\\"it\"} 1\n"
	"connroute_ejected{lane=\"id9\"} 0\n"
	"# HELP connroute_ejected_remaining_seconds Each address ejected now, with the time left before it is let back in.\n"
	"# TYPE connroute_ejected_remaining_seconds gauge\n"
	"connroute_ejected_remaining_seconds{lane=\"cr\\\"it\",address=\"10.0.0.2:443\"} 25.000\n"
	"# HELP connroute_breaker_state Circuit breaker per (lane, host): 0 closed, 1 open, 2 half-open.\n"
	"# TYPE connroute_breaker_state gauge\n"
	"connroute_breaker_state{lane=\"cr\\\"it\",host=\"api:443\"} 1\n"
	"connroute_breaker_state{lane=\"cr\\\"it\",host=\"x\\\"y:80\"} 0\n"
	"# HELP connroute_breaker_rejections_total Requests and connects refused at once by an open circuit breaker.\n"
	"# TYPE connroute_breaker_rejections_total counter\n"
	"connroute_breaker_rejections_total{lane=\"default\"} 0\n"
	"connroute_breaker_rejections_total{lane=\"cr\\\"it\"} 2\n"
	"connroute_breaker_rejections_total{lane=\"id9\"} 0\n"
	"# HELP connroute_retries_throttled_total Retries not made because the lane's retry token bucket was at half or below.\n"
	"# TYPE connroute_retries_throttled_total counter\n"
	"connroute_retries_throttled_total{lane=\"default\"} 0\n"
	"connroute_retries_throttled_total{lane=\"cr\\\"it\"} 1\n"
	"connroute_retries_throttled_total{lane=\"id9\"} 0\n";

/* The whole rendering of a known state, byte for byte: proves a change to the
 * renderer's code keeps its output (docs/metrics.md is the contract). */
Test(metrics, full_render_matches_the_golden_text)
{
	golden_state();
	char *all = render();
	/* First the series that names the process (its pid differs per run). */
	char head[512];
	snprintf(head, sizeof(head),
		 "# HELP connroute_build_info Always 1: the connroute version and the process id serving "
		 "this endpoint.\n# TYPE connroute_build_info gauge\n"
		 "connroute_build_info{version=\"%s\",pid=\"%ld\"} 1\n", CONNROUTE_VERSION, (long)getpid());
	cr_assert(strncmp(all, head, strlen(head)) == 0, "no build_info first:\n%.400s", all);
	char *t = all + strlen(head);
	size_t i = 0;
	while (t[i] && t[i] == golden_render[i])
		i++;
	cr_expect_str_eq(t, golden_render, "first difference at byte %zu:\n%s", i, t + (i > 80 ? i - 80 : 0));
	free(all);
}
