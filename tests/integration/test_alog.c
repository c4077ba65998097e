/* Integration tests of the access log (docs/access-log.md): unmodified programs (curlprog,
 * sockprog) run under LD_PRELOAD against the test upstream with `access_log` set, and the
 * lines they leave are checked against what the programs printed and what the server saw
 * on its control port (requests, connections by id with their client ports in /peers,
 * faults fired). Every line must parse as JSON (python3's json module, when there is a
 * python3) and never hold a secret the program sent.
 *
 * The log of a short-lived program is complete when it exits (the writer's exit flush);
 * the rotation and metrics cases look at a running one. */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static char logpath[400], cfgpath[400], conf_env[450], base_url[128];

static void start(void)
{
	h_start_plain();
	snprintf(logpath, sizeof(logpath), "%s/access.log", h_dir);
	snprintf(cfgpath, sizeof(cfgpath), "%s/connroute.conf", h_dir);
	snprintf(conf_env, sizeof(conf_env), "CONNROUTE_CONFIG=%s", cfgpath);
	snprintf(base_url, sizeof(base_url), "http://127.0.0.1:%d", h_up.port);
}

__attribute__((format(printf, 1, 2))) static void write_config(const char *fmt, ...)
{
	char text[4096], tmp[450];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	cr_assert_eq(h_write_file(h_dir, "connroute.conf.new", text, tmp, sizeof(tmp)), 0);
	cr_assert_eq(rename(tmp, cfgpath), 0);
}

/* Runs ARGV under the shim with the test's config and CONNROUTE_KEY=KEY. */
static void run(struct h_run *r, const char *key, const char *const *argv)
{
	char keyenv[160];
	snprintf(keyenv, sizeof(keyenv), "CONNROUTE_KEY=%s", key);
	const char *env[] = {conf_env, keyenv, NULL};
	cr_assert_eq(h_run(r, argv, env, 1, 60000), 0, "could not run %s", argv[0]);
	cr_assert_eq(r->timed_out, 0, "%s hung: %s\n%s", argv[0], r->out, r->err);
}

/* ------------------------------------------------------------- log lines */

struct lines {
	char *text;
	char *v[8192];
	int n;
};

static void read_lines(struct lines *l, const char *path)
{
	l->n = 0;
	l->text = h_read_file(path);
	if (!l->text)
		return;
	for (char *p = l->text, *nl; *p && l->n < 8192; p = nl + 1) {
		nl = strchr(p, '\n');
		cr_assert_not_null(nl, "a line without its newline in %s: %s", path, p);
		*nl = '\0';
		l->v[l->n++] = p;
	}
}

/* The raw text of KEY's value in a flat JSON line (a string without its quotes, escapes
 * kept); 0 if absent. A key inside a string value cannot match: its quotes would be
 * escaped. */
static int jget(const char *line, const char *key, char *out, size_t n)
{
	char pat[96];
	snprintf(pat, sizeof(pat), "\"%s\":", key);
	const char *p = strstr(line, pat);
	if (!p)
		return 0;
	p += strlen(pat);
	size_t k = 0;
	if (*p == '"') {
		for (p++; *p && *p != '"' && k + 1 < n; p++) {
			if (*p == '\\' && p[1])
				out[k++] = *p++;
			out[k++] = *p;
		}
	} else {
		while (*p && *p != ',' && *p != '}' && k + 1 < n)
			out[k++] = *p++;
	}
	out[k] = '\0';
	return 1;
}

static long jnum(const char *line, const char *key)
{
	char v[64];
	return jget(line, key, v, sizeof(v)) && strcmp(v, "null") ? strtol(v, NULL, 10) : -1;
}

static double jsec(const char *line, const char *key)
{
	char v[64];
	return jget(line, key, v, sizeof(v)) && strcmp(v, "null") ? strtod(v, NULL) : -1;
}

static int jis(const char *line, const char *key, const char *want)
{
	char v[512];
	return jget(line, key, v, sizeof(v)) && strcmp(v, want) == 0;
}

/* Every line is one JSON object with the fields every line has (python3's parser). */
static void assert_json(const char *path)
{
	const char *py = h_python("import json");
	if (!py)
		return;
	const char *code =
		"import json, re, sys\n"
		"n = 0\n"
		"for line in open(sys.argv[1], encoding='utf-8'):\n"
		"    o = json.loads(line)\n"
		"    assert isinstance(o, dict), line\n"
		"    for k in ('time', 'connroute.kind', 'connroute.lane', 'total', 'outcome', 'pid', 'tid'):\n"
		"        assert k in o, (k, line)\n"
		"    assert re.fullmatch(r'\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{6}Z', o['time']), line\n"
		"    assert o['outcome'] in ('ok', 'http_error', 'timeout', 'overflow', 'error'), line\n"
		"    n += 1\n"
		"print(n)\n";
	const char *argv[] = {py, "-c", code, path, NULL};
	struct h_run r;
	cr_assert_eq(h_run(&r, argv, NULL, 0, 30000), 0);
	cr_expect_eq(r.status, 0, "%s is not one JSON object per line:\n%s", path, r.err);
	h_run_free(&r);
}

/* curlprog's "req T I code=C status=S conn=ID ms=M" lines, in order. */
struct req {
	int code, status;
	long conn;
};

static int curl_reqs(const char *out, struct req *v, int max)
{
	int n = 0;
	for (const char *p = out; (p = strstr(p, "req ")) && n < max; p++) {
		if (p != out && p[-1] != '\n')
			continue;
		const char *c = strstr(p, "code="), *s = strstr(p, "status="), *k = strstr(p, "conn=");
		if (!c || !s || !k)
			break;
		v[n].code = atoi(c + 5);
		v[n].status = atoi(s + 7);
		v[n].conn = k[5] == '-' ? -1 : atol(k + 5);
		n++;
	}
	return n;
}

/* The connection id the server gave the client port PORT (its /peers). */
static long conn_of_port(const char *peers, long port)
{
	char pat[32];
	snprintf(pat, sizeof(pat), ":%ld ", port);
	for (const char *p = peers; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		const char *eol = strchr(p, '\n'), *m = strstr(p, pat);
		if (m && (!eol || m < eol))
			return atol(p);
	}
	return -1;
}

/* ------------------------------------------------------------------ tests */

/* libcurl (lane api) and raw sockets (lane raw) into one file: one line per request and
 * per connect, each matching what the program saw and what the server counted. */
Test(alog, two_lanes_match_the_server_view, .init = start, .fini = h_stop)
{
	write_config("[global]\naccess_log = %s\n[lane api]\nmatch = api/*\n[lane raw]\nmatch = raw/*\n",
		     logpath);
	struct h_run c, s;
	const char *cargv[] = {"curlprog", "--mode", "fresh", "--requests", "6", "--print-conn",
			       "--path-seq", "/conn,/conn,/delay/x", base_url, NULL};
	run(&c, "api/x", cargv);
	char a1[64], a2[64], a3[64];
	snprintf(a1, sizeof(a1), "connect=a@127.0.0.1:%d", h_up.port);
	snprintf(a2, sizeof(a2), "connect=b@127.0.0.1:%d", h_up.port);
	snprintf(a3, sizeof(a3), "connect=c@127.0.0.1:%d", h_up.control_port == 1 ? 2 : 1);
	const char *sargv[] = {"sockprog", "tcp=a", a1, "get=a:/conn", "close=a", "tcp=b", a2,
			       "get=b:/conn", "close=b", "tcp=c", a3, NULL};
	run(&s, "raw/y", sargv);
	cr_assert_eq(s.status, 0, "%s\n%s", s.out, s.err);

	struct req rq[16];
	int nreq = curl_reqs(c.out, rq, 16);
	cr_assert_eq(nreq, 6, "%s", c.out);
	struct lines l;
	read_lines(&l, logpath);
	assert_json(logpath);
	char *peers = h_peers(&h_up);
	cr_assert_not_null(peers);

	int api = 0, raw = 0, fresh = 0, raw_ok = 0;
	for (int i = 0; i < l.n; i++) {
		const char *ln = l.v[i];
		if (jis(ln, "connroute.lane", "api")) {
			cr_assert_lt(api, nreq, "more api lines than requests:\n%s", l.text);
			const struct req *q = &rq[api];
			cr_expect(jis(ln, "connroute.kind", "http"), "%s", ln);
			cr_expect(jis(ln, "connroute.key", "api/x"), "%s", ln);
			cr_expect(jis(ln, "http.request.method", "GET"), "%s", ln);
			cr_expect(jis(ln, "url.path", api % 3 == 2 ? "/delay/x" : "/conn"), "%s", ln);
			cr_expect_eq(jnum(ln, "http.response.status_code"), q->status, "%s", ln);
			cr_expect(jis(ln, "outcome", q->status >= 400 ? "http_error" : "ok"), "%s", ln);
			if (q->status >= 400)
				cr_expect(jis(ln, "error.type", "400"), "%s", ln);
			cr_expect_eq(jnum(ln, "server.port"), h_up.port);
			cr_expect(jis(ln, "network.peer.address", "127.0.0.1"), "%s", ln);
			cr_expect_eq(jnum(ln, "network.peer.port"), h_up.port);
			/* which connection: the client port, as the server listed it */
			if (q->conn > 0)
				cr_expect_eq(conn_of_port(peers, jnum(ln, "network.local.port")), q->conn,
					     "request %d: the log's connection is not the one the server "
					     "answered on (%s)\n%s", api, ln, peers);
			cr_expect_eq(jnum(ln, "http.request.resend_count"), 0);
			cr_expect(jsec(ln, "total") >= jsec(ln, "ttfb"), "%s", ln);
			fresh += jis(ln, "reused", "false");
			api++;
		} else if (jis(ln, "connroute.lane", "raw")) {
			cr_expect(jis(ln, "connroute.kind", "connect"), "%s", ln);
			cr_expect(jis(ln, "connroute.key", "raw/y"), "%s", ln);
			cr_expect_null(strstr(ln, "\"http."), "%s", ln);
			if (raw < 2) {
				cr_expect(jis(ln, "outcome", "ok"), "%s", ln);
				cr_expect_eq(jnum(ln, "network.peer.port"), h_up.port);
				cr_expect(jsec(ln, "connect") >= 0, "%s", ln);
				raw_ok++;
			} else {
				cr_expect(jis(ln, "outcome", "error"), "%s", ln);
				cr_expect(jis(ln, "error.type", "ECONNREFUSED"), "%s", ln);
			}
			raw++;
		} else {
			cr_expect_fail("a line of another lane: %s", ln);
		}
	}
	cr_expect_eq(api, 6, "%s", l.text);
	cr_expect_eq(raw, 3, "%s", l.text);
	cr_expect_eq(h_stat(&h_up, "requests"), 8, "6 libcurl requests and 2 raw GETs");
	cr_expect_eq(h_stat(&h_up, "accepted"), fresh + raw_ok,
		     "every connection the server accepted is a line with reused=false or a connect");
	free(peers);
	free(l.text);
	h_run_free(&c);
	h_run_free(&s);
}

/* A GET the server drops once: retried by the lane, logged once with its resend count. */
Test(alog, retries_from_the_fault_injector, .init = start, .fini = h_stop)
{
	write_config("[global]\naccess_log = %s\n[lane api]\nmatch = api/*\nretries = 2\n", logpath);
	char *r = h_get(&h_up, "/inject?fault=drop&count=1");
	cr_assert_not_null(r);
	free(r);
	struct h_run c;
	const char *argv[] = {"curlprog", "--requests", "1", "--print-conn", base_url, NULL};
	run(&c, "api/x", argv);
	cr_assert_eq(c.status, 0, "%s\n%s", c.out, c.err);
	struct lines l;
	read_lines(&l, logpath);
	assert_json(logpath);
	cr_assert_eq(l.n, 1, "%s", l.text ? l.text : "(no log)");
	cr_expect_eq(jnum(l.v[0], "http.request.resend_count"), 1, "%s", l.v[0]);
	cr_expect(jis(l.v[0], "outcome", "ok"), "%s", l.v[0]);
	cr_expect_eq(jnum(l.v[0], "http.response.status_code"), 200);
	cr_expect_eq(h_stat(&h_up, "faults_fired"), 1);
	cr_expect_eq(h_stat(&h_up, "requests"), 2, "the dropped request and its retry");
	free(l.text);
	h_run_free(&c);
}

/* access_log_slow: only the slow requests are logged, with their durations. */
Test(alog, a_slow_upstream_and_access_log_slow, .init = start, .fini = h_stop)
{
	write_config("[global]\naccess_log = %s\naccess_log_slow = 200ms\n", logpath);
	struct h_run c;
	const char *argv[] = {"curlprog", "--requests", "4", "--path-seq", "/conn,/delay/300", base_url,
			      NULL};
	run(&c, "any", argv);
	cr_assert_eq(c.status, 0, "%s\n%s", c.out, c.err);
	struct lines l;
	read_lines(&l, logpath);
	assert_json(logpath);
	cr_assert_eq(l.n, 2, "%s", l.text ? l.text : "(no log)");
	for (int i = 0; i < l.n; i++) {
		cr_expect(jis(l.v[i], "url.path", "/delay/300"), "%s", l.v[i]);
		cr_expect(jsec(l.v[i], "total") >= 0.2, "%s", l.v[i]); /* the threshold */
		cr_expect(jsec(l.v[i], "ttfb") >= 0.25, "%s", l.v[i]); /* the server waited ~300 ms */
		cr_expect(jis(l.v[i], "connroute.lane", "default"), "%s", l.v[i]);
	}
	cr_expect_eq(h_stat(&h_up, "requests"), 4);
	free(l.text);
	h_run_free(&c);
}

/* A tiny ring and a fast client: lines are dropped and counted, requests never wait. */
Test(alog, a_full_ring_drops_and_counts_and_never_blocks, .init = start, .fini = h_stop)
{
	write_config("[global]\naccess_log = %s\naccess_log_buffer = 8\n", logpath);
	struct h_run c;
	const char *argv[] = {"curlprog", "--mode", "persistent", "--threads", "4", "--requests", "1000",
			      "--quiet", base_url, NULL};
	run(&c, "any", argv);
	cr_assert_eq(c.status, 0, "%s\n%s", c.out, c.err);
	struct lines l;
	read_lines(&l, logpath);
	/* the exit report: "access log: lane 'default': N line(s) dropped in all" */
	const char *d = strstr(c.err, "line(s) dropped in all");
	long dropped = 0;
	if (d) {
		const char *q = d;
		while (q > c.err && q[-1] != ':')
			q--;
		dropped = strtol(q, NULL, 10);
	}
	cr_expect_gt(dropped, 0, "a ring of 8 kept up with 4 threads? log %d lines\n%s", l.n, c.err);
	cr_expect_eq(l.n + dropped, 4000, "%d lines + %ld dropped", l.n, dropped);
	cr_expect_eq(h_stat(&h_up, "requests"), 4000);
	free(l.text);
	h_run_free(&c);
}

/* A program run in a thread of the test (h_run blocks until it exits). */
struct bgrun {
	const char *key;
	const char *const *argv;
	struct h_run r;
	int rc;
};

static void *bg_main(void *arg)
{
	struct bgrun *b = arg;
	char keyenv[160];
	snprintf(keyenv, sizeof(keyenv), "CONNROUTE_KEY=%s", b->key);
	const char *env[] = {conf_env, keyenv, NULL};
	b->rc = h_run(&b->r, b->argv, env, 1, 60000);
	return NULL;
}

/* The drop counter on the metrics endpoint of a running process: lines written and
 * lines counted dropped add up to the connects made. */
Test(alog, drops_are_counted_in_the_metrics, .init = start, .fini = h_stop)
{
	write_config("[global]\naccess_log = %s\naccess_log_buffer = 8\nmetrics = unix:%s/m.sock\n"
		     "[lane raw]\nmatch = raw\n",
		     logpath, h_dir);
	const char *argv[64];
	char steps[40][48];
	int k = 0;
	argv[k++] = "sockprog";
	for (int i = 0; i < 12; i++) {
		snprintf(steps[3 * i], 48, "tcp=s%d", i);
		snprintf(steps[3 * i + 1], 48, "connect=s%d@127.0.0.1:%d", i, h_up.port);
		snprintf(steps[3 * i + 2], 48, "close=s%d", i);
		argv[k++] = steps[3 * i];
		argv[k++] = steps[3 * i + 1];
		argv[k++] = steps[3 * i + 2];
	}
	argv[k++] = "sleep=3000";
	argv[k] = NULL;
	struct bgrun b = {.key = "raw", .argv = argv};
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, bg_main, &b), 0);
	char spec[400], path[400], bin[400], *text = NULL;
	snprintf(spec, sizeof(spec), "unix:%s/m.sock", h_dir);
	snprintf(path, sizeof(path), "%s/m.sock", h_dir);
	snprintf(bin, sizeof(bin), "%s/connroute", h_build());
	struct stat st;
	for (int i = 0; i < 300 && stat(path, &st) != 0; i++)
		h_sleep_ms(10);
	/* Scraped until the 12 connections are closed: each line was taken (or counted
	 * dropped) at its connect, before its close, so the count is final. A fixed pause
	 * was outlasted by a loaded machine. Bounded by the program's 3 s sleep. */
	const char *cargv[] = {bin, "stats", "--raw", spec, NULL};
	const char *closed = "connroute_connections_closed_total{lane=\"raw\"} 12\n";
	for (long long end = h_now_ms() + 10000;; h_sleep_ms(50)) {
		struct h_run s;
		cr_assert_eq(h_run(&s, cargv, NULL, 0, 20000), 0);
		free(s.err);
		int ok = s.status == 0 && s.out;
		if (ok) {
			free(text);
			text = s.out;
		} else {
			free(s.out); /* not listening yet, or the program is gone */
		}
		if ((text && strstr(text, closed)) || (!ok && text) || h_now_ms() > end)
			break;
	}
	pthread_join(t, NULL);
	cr_assert_eq(b.rc, 0);
	cr_assert_eq(b.r.status, 0, "%s", b.r.err);
	const char *series = "connroute_access_log_dropped_total{lane=\"raw\"} ";
	const char *m = text ? strstr(text, series) : NULL;
	cr_assert_not_null(m, "%s", text ? text : "(no scrape)");
	long dropped = strtol(m + strlen(series), NULL, 10);
	struct lines l;
	read_lines(&l, logpath);
	cr_expect_eq(l.n + dropped, 12, "%d lines + %ld dropped (%s)", l.n, dropped, b.r.err);
	free(text);
	free(l.text);
	h_run_free(&b.r);
}

/* logrotate's default: rename the file, the next lines go to a new one, none lost. */
Test(alog, rotation_by_rename, .init = start, .fini = h_stop)
{
	char moved[450];
	snprintf(moved, sizeof(moved), "%s.1", logpath);
	write_config("[global]\naccess_log = %s\n", logpath);
	const char *argv[] = {"curlprog", "--mode", "persistent", "--requests", "60", "--pause-ms", "40",
			      "--quiet", base_url, NULL};
	struct bgrun b = {.key = "api", .argv = argv};
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, bg_main, &b), 0);
	struct stat st;
	for (int i = 0; i < 500 && stat(logpath, &st) != 0; i++)
		h_sleep_ms(10);
	h_sleep_ms(600);
	cr_assert_eq(rename(logpath, moved), 0, "no log appeared: %s", strerror(errno));
	pthread_join(t, NULL);
	cr_assert_eq(b.rc, 0);
	cr_assert_eq(b.r.status, 0, "%s", b.r.err);
	struct lines a, n;
	read_lines(&a, moved);
	read_lines(&n, logpath);
	cr_expect_gt(a.n, 0);
	cr_expect_gt(n.n, 0, "nothing was written to the new file");
	cr_expect_eq(a.n + n.n, 60, "%d + %d lines", a.n, n.n);
	cr_assert_eq(stat(logpath, &st), 0);
	cr_expect_eq(st.st_mode & 0777, 0600);
	/* the old file ends where the new one begins */
	char t1[64] = "", t2[64] = "";
	if (a.n && n.n) {
		jget(a.v[a.n - 1], "time", t1, sizeof(t1));
		jget(n.v[0], "time", t2, sizeof(t2));
		cr_expect(strcmp(t1, t2) <= 0, "%s > %s", t1, t2);
	}
	free(a.text);
	free(n.text);
	h_run_free(&b.r);
}

/* Credentials, headers, cookies, bodies, query strings: never in the log. */
Test(alog, no_secret_anywhere_in_the_log, .init = start, .fini = h_stop)
{
	write_config("[global]\naccess_log = %s\n[lane q]\nmatch = q\naccess_log_query = on\n", logpath);
	char url[256];
	snprintf(url, sizeof(url), "http://user:SECRET-PW@127.0.0.1:%d/conn?token=SECRET-QS#SECRET-FRAG",
		 h_up.port);
	struct h_run c;
	const char *argv[] = {"curlprog", "--requests", "2", "--header", "Authorization: Bearer SECRET-AUTH",
			      "--header", "Cookie: session=SECRET-COOKIE", "--user", "bob:SECRET-USER",
			      "--data", "SECRET-BODY", url, NULL};
	run(&c, "any", argv);
	cr_assert_eq(c.status, 0, "%s\n%s", c.out, c.err);
	cr_expect_eq(h_stat(&h_up, "requests_post"), 2);
	/* a lane that keeps the query: only it, never the fragment */
	char url2[256];
	snprintf(url2, sizeof(url2), "http://127.0.0.1:%d/conn?page=2#SECRET-FRAG2", h_up.port);
	const char *argv2[] = {"curlprog", "--requests", "1", url2, NULL};
	struct h_run c2;
	run(&c2, "q", argv2);
	struct lines l;
	read_lines(&l, logpath);
	assert_json(logpath);
	cr_assert_eq(l.n, 3, "%s", l.text ? l.text : "(no log)");
	cr_expect_null(strstr(l.text, "SECRET"), "a secret in the log:\n%s", l.text);
	cr_expect_null(strstr(l.text, "bob"), "a user name in the log:\n%s", l.text);
	cr_expect(jis(l.v[0], "url.path", "/conn"), "%s", l.v[0]);
	cr_expect(jis(l.v[0], "http.request.method", "POST"), "%s", l.v[0]);
	cr_expect(jis(l.v[2], "url.path", "/conn?page=2"), "%s", l.v[2]);
	free(l.text);
	h_run_free(&c);
	h_run_free(&c2);
}

/* A log that cannot be opened: one warning, the lane logs nothing, the host runs on. */
Test(alog, a_path_that_cannot_be_opened_warns_once, .init = start, .fini = h_stop)
{
	write_config("[global]\naccess_log = %s/no/such/dir/access.log\n", h_dir);
	struct h_run c;
	const char *argv[] = {"curlprog", "--requests", "20", "--pause-ms", "20", base_url, NULL};
	run(&c, "any", argv);
	cr_expect_eq(c.status, 0, "%s\n%s", c.out, c.err);
	cr_expect_eq(h_count_str(c.err, "cannot read"), 1, "%s", c.err);
	cr_expect_eq(h_stat(&h_up, "requests"), 20);
	h_run_free(&c);
}

/* stderr, and a unix datagram socket a collector reads (one line per datagram). */
Test(alog, stderr_and_a_datagram_collector, .init = start, .fini = h_stop)
{
	write_config("[global]\naccess_log = stderr\n");
	struct h_run c;
	const char *argv[] = {"curlprog", "--requests", "3", base_url, NULL};
	run(&c, "any", argv);
	cr_expect_eq(h_count_str(c.err, "{\"time\":"), 3, "%s", c.err);

	char path[400];
	snprintf(path, sizeof(path), "%s/collector.sock", h_dir);
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	cr_assert_lt(strlen(path), sizeof(sa.sun_path));
	memcpy(sa.sun_path, path, strlen(path) + 1);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "%s", strerror(errno));
	write_config("[global]\naccess_log = unix:%s\n", path);
	struct h_run c2;
	run(&c2, "any", argv);
	int got = 0;
	char buf[4096];
	struct pollfd p = {.fd = fd, .events = POLLIN};
	while (poll(&p, 1, 2000) > 0) {
		ssize_t n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
		if (n <= 0)
			break;
		buf[n] = '\0';
		cr_expect(buf[0] == '{' && buf[n - 1] == '}', "one object per datagram: %s", buf);
		cr_expect(jis(buf, "url.path", "/"), "%s", buf);
		got++;
		if (got == 3)
			break;
	}
	cr_expect_eq(got, 3);
	close(fd);
	h_run_free(&c);
	h_run_free(&c2);
}

/* `connroute tail PATH`: the table, the slowest first with --slow. */
Test(alog, tail_prints_the_last_requests, .init = start, .fini = h_stop)
{
	write_config("[global]\naccess_log = %s\n", logpath);
	struct h_run c;
	const char *argv[] = {"curlprog", "--requests", "6", "--path-seq", "/conn,/delay/150,/size/10",
			      base_url, NULL};
	run(&c, "any", argv);
	cr_assert_eq(c.status, 0, "%s", c.err);
	char bin[400];
	snprintf(bin, sizeof(bin), "%s/connroute", h_build());
	const char *targv[] = {bin, "tail", logpath, "-n", "4", NULL};
	struct h_run t;
	cr_assert_eq(h_run(&t, targv, NULL, 0, 20000), 0);
	cr_assert_eq(t.status, 0, "%s", t.err);
	cr_expect_eq(h_count_str(t.out, "\n"), 5, "a header and 4 rows:\n%s", t.out);
	cr_expect(strstr(t.out, "TOTAL"), "%s", t.out);
	cr_expect_eq(h_count_str(t.out, "/delay/150"), 1, "%s", t.out);
	const char *sargv[] = {bin, "tail", logpath, "--slow", "-n", "2", NULL};
	struct h_run s;
	cr_assert_eq(h_run(&s, sargv, NULL, 0, 20000), 0);
	cr_assert_eq(s.status, 0, "%s", s.err);
	const char *r1 = strchr(s.out, '\n');
	cr_assert_not_null(r1);
	cr_expect(strstr(r1, "/delay/150") && strstr(r1, "/delay/150") < strchr(r1 + 1, '\n'),
		  "the slowest first:\n%s", s.out);
	cr_expect_eq(h_count_str(s.out, "/delay/150"), 2, "%s", s.out);
	h_run_free(&c);
	h_run_free(&t);
	h_run_free(&s);
}

/* `connroute tail PID` finds the running process's log through its config (%p = PID). */
Test(alog, tail_of_a_running_process, .init = start, .fini = h_stop)
{
	write_config("[global]\naccess_log = %s/a-%%p.log\n", h_dir);
	const char *argv[] = {"curlprog", "--requests", "30", "--pause-ms", "100", "--quiet", base_url, NULL};
	struct bgrun b = {.key = "any", .argv = argv};
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, bg_main, &b), 0);
	long pid = 0;
	for (int i = 0; i < 500 && !pid; i++) {
		char cmd[400];
		snprintf(cmd, sizeof(cmd), "ls %s | sed -n 's/^a-\\([0-9]*\\)\\.log$/\\1/p'", h_dir);
		FILE *f = popen(cmd, "r");
		if (f) {
			if (fscanf(f, "%ld", &pid) != 1)
				pid = 0;
			pclose(f);
		}
		if (!pid)
			h_sleep_ms(10);
	}
	cr_assert_gt(pid, 0, "no a-PID.log appeared");
	char bin[400], pids[32];
	snprintf(bin, sizeof(bin), "%s/connroute", h_build());
	snprintf(pids, sizeof(pids), "%ld", pid);
	const char *targv[] = {bin, "tail", pids, NULL};
	struct h_run tr;
	int rows = 0;
	/* asked until 3 requests are logged (the program makes 30 over 3 s), not after a
	 * fixed pause a loaded machine may outlast either way */
	for (long long end = h_now_ms() + 10000;; h_sleep_ms(100)) {
		cr_assert_eq(h_run(&tr, targv, NULL, 0, 20000), 0);
		rows = h_count_str(tr.out, "\n") - 1;
		if (rows >= 3 || h_now_ms() > end)
			break;
		h_run_free(&tr);
	}
	pthread_join(t, NULL);
	cr_expect_eq(tr.status, 0, "%s", tr.err);
	cr_expect(rows >= 3 && rows < 30, "the requests logged so far: %d rows\n%s", rows, tr.out);
	h_run_free(&tr);
	h_run_free(&b.r);
}
