/* The fault matrix: what a host sees when its upstream misbehaves, with and without the shim.
 *
 * For every fault the test upstream can produce (see tests/upstream/upstream.h, GET /inject)
 * and for a full backlog, an upstream that goes away (and one that comes back on the same
 * port) and pooled connections killed while idle, one idempotent (GET) and one
 * non-idempotent (POST) request are made through libcurl (tests/progs/curlprog) and through
 * raw sockets (tests/progs/sockprog for GET; a small python3 socket client for POST, since
 * sockprog only speaks GET), once without the shim and once under LD_PRELOAD with
 *
 *     [lane default]
 *     retries = 2, connect_timeout = 1s, response_header_timeout = 500ms, request_timeout = 3s
 *
 * while the app itself allows 8 s (--timeout-ms). Asserted for every cell:
 *   - the host gets the same error class with the shim as without, or, for a GET through
 *     libcurl whose failure left nothing for the app (no header, no body byte), success
 *     through a budgeted retry;
 *   - a POST reaches the server as often with the shim as without (never a second POST);
 *     a GET whose response bytes already reached the app is never sent again;
 *   - no hang past the lane's deadline: with the shim no curl request takes longer than
 *     request_timeout plus a generous slack (well below the app's own 8 s);
 *   - no crash (exit status 0/1, never a signal);
 *   - fds back to their baseline (curlprog --print-fds, sockprog fdcount): exactly without
 *     the shim, within the one pooled connection the lanes may keep with it.
 * Rows are tests of the suite `faults` (one upstream each, so `--jobs 2` runs them side by
 * side); every row prints its lines, and the runner prints the whole table at the end
 * (a POST_ALL report hook) when rows were run. The suite `faults_upstream` checks each
 * injection from the server side, without any shim.
 *
 * Wall-clock bounds are deliberately loose (a loaded 2-core machine): a lane deadline of 3 s
 * is checked against 6.5 s, a hang against a run timeout of 30 s. */
#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define APP_TIMEOUT_MS 8000        /* the app's own CURLOPT_TIMEOUT_MS */
#define LANE_DEADLINE_MS 3000      /* request_timeout of the lane */
#define DEADLINE_SLACK_MS 3500     /* scheduling on a loaded machine, process start-up */
#define RUN_TIMEOUT_MS 30000       /* h_run: a hang is a failure, never a stuck suite */
#define BACKLOG_KILL_MS 6000       /* a blocking connect into a full backlog without the shim:
                                    * the kernel would give up only after ~2 min */
#define RESTART_PAUSE_MS 2000      /* between the two requests of the restart row */
#define IDLE_PAUSE_MS 1500         /* between the two requests of the idle-kill rows */
#define RETRIES 2

static const char lane_conf[] = "[lane default]\n"
				"retries = 2\n"
				"connect_timeout = 1s\n"
				"response_header_timeout = 500ms\n"
				"request_timeout = 3s\n";

/* A sockprog with POST: the same step syntax and output lines (tcp=S connect=S@H:P get=S:/P
 * post=S:/P sleep=MS close=S fdcount). Blocking connect without a Python timeout, so the
 * lane's connect_timeout is what bounds it under the shim; reads poll for at most 5 s, as
 * sockprog's do. */
static const char rawprog_py[] =
	"import errno, os, select, socket, sys, time\n"
	"sys.stdout.reconfigure(line_buffering=True)\n"
	"def now(): return time.monotonic() * 1000\n"
	"def ename(e): return errno.errorcode.get(e, 'E?')\n"
	"socks = {}\n"
	"def request(name, method, path):\n"
	"    s = socks[name]\n"
	"    req = ('%s %s HTTP/1.1\\r\\nHost: localhost\\r\\n' % (method, path)).encode()\n"
	"    if method == 'POST':\n"
	"        req += b'Content-Type: application/x-www-form-urlencoded\\r\\nContent-Length: 3\\r\\n\\r\\nx=1'\n"
	"    else:\n"
	"        req += b'\\r\\n'\n"
	"    tag = method.lower()\n"
	"    try:\n"
	"        s.sendall(req)\n"
	"    except OSError as e:\n"
	"        print('%s %s err %s' % (tag, name, ename(e.errno))); return\n"
	"    buf = b''; deadline = now() + 5000\n"
	"    while now() < deadline:\n"
	"        r, _, _ = select.select([s], [], [], 0.1)\n"
	"        if not r: continue\n"
	"        try: d = s.recv(65536)\n"
	"        except OSError: break\n"
	"        if not d: break\n"
	"        buf += d\n"
	"        h = buf.find(b'\\r\\n\\r\\n')\n"
	"        if h >= 0:\n"
	"            cl = None\n"
	"            for l in buf[:h].split(b'\\r\\n')[1:]:\n"
	"                k, _, v = l.partition(b':')\n"
	"                if k.strip().lower() == b'content-length': cl = int(v.strip())\n"
	"            if cl is not None and len(buf) >= h + 4 + cl: break\n"
	"    h = buf.find(b'\\r\\n\\r\\n')\n"
	"    if h < 0:\n"
	"        print('%s %s err noresponse' % (tag, name)); return\n"
	"    line = buf[h + 4:].split(b'\\n')[0].rstrip(b'\\r')\n"
	"    print('%s %s %s' % (tag, name, line.decode('latin-1')))\n"
	"for a in sys.argv[1:]:\n"
	"    op, _, arg = a.partition('=')\n"
	"    if op == 'tcp': socks[arg] = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n"
	"    elif op == 'connect':\n"
	"        name, _, hp = arg.partition('@'); host, _, port = hp.rpartition(':')\n"
	"        t0 = now()\n"
	"        try:\n"
	"            socks[name].connect((host, int(port)))\n"
	"            print('connect %s ok ms=%.0f' % (name, now() - t0))\n"
	"        except OSError as e:\n"
	"            print('connect %s err %s ms=%.0f' % (name, ename(e.errno), now() - t0))\n"
	"    elif op in ('get', 'post'):\n"
	"        name, _, path = arg.partition(':'); request(name, op.upper(), path)\n"
	"    elif op == 'sleep': time.sleep(int(arg) / 1000)\n"
	"    elif op == 'close': socks[arg].close(); print('close %s ok' % arg)\n"
	"    elif op == 'fdcount': print('fdcount %d' % (len(os.listdir('/proc/self/fd')) - 1))\n"
	"    else: print('rawprog: unknown step ' + a, file=sys.stderr); sys.exit(2)\n";

/* ------------------------------------------------------------------ per-test state */

static char tdir[256];          /* temp dir of this test: config, rawprog.py */
static char conf_env[400];      /* CONNROUTE_CONFIG=<tdir>/connroute.conf */
static char rawpy[320];
static const char *python;

static const char *find_python(void)
{
	return h_python("import sys; sys.stdout.reconfigure()");
}

static void setup(void)
{
	const char *tmp = getenv("TMPDIR");
	if (!tmp || !*tmp || strlen(tmp) > 200)
		tmp = "/tmp";
	snprintf(tdir, sizeof(tdir), "%s/cr-faults-XXXXXX", tmp);
	cr_assert_not_null(mkdtemp(tdir), "mkdtemp: %s", strerror(errno));
	char path[320];
	cr_assert_eq(h_write_file(tdir, "connroute.conf", lane_conf, path, sizeof(path)), 0);
	snprintf(conf_env, sizeof(conf_env), "CONNROUTE_CONFIG=%s", path);
	cr_assert_eq(h_write_file(tdir, "rawprog.py", rawprog_py, rawpy, sizeof(rawpy)), 0);
	python = find_python();
}

static void teardown(void)
{
	char p[400];
	snprintf(p, sizeof(p), "%s/connroute.conf", tdir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/rawprog.py", tdir);
	unlink(p);
	rmdir(tdir);
}

/* ------------------------------------------------------------------ rows and cells */

enum kind { K_SIMPLE, K_BACKLOG, K_DOWN, K_RESTART, K_IDLE };

struct row {
	const char *name;
	enum kind kind;
	const char *inject;     /* K_SIMPLE: armed before each run; K_IDLE: the kill query */
	int tls;
	int reached_app;        /* response bytes reach the app before the failure */
	int reset_at_accept;    /* the server resets right after the TCP handshake: libcurl
				 * may see it while verifying the connect (7), in the TLS
				 * handshake (35) or on its first send/recv (55/56), without
				 * the shim too (measured: 7 in 32 of 40 runs, 56 in 8); one
				 * class */
};

struct cell {
	char cls[96];           /* comparable class, e.g. "lost", "ok,ok", "connect:ETIMEDOUT" */
	char shown[96];         /* what the table shows: CURLcodes or sockprog results */
	double secs;            /* wall time of the client process */
	double max_req_ms;      /* curl: slowest request */
	int nreq;               /* curl: requests reported */
	int status, timed_out;
	long req, get, post, acc, fired;   /* server counters after the run (summed over a
					    * restart), -1 when there is no server */
	long fd0, fd1;          /* fds at the start and at the end of the client */
	char *out, *err;        /* for messages */
};

static const char *method_name(int post)
{
	return post ? "POST" : "GET";
}

/* CURLcode -> class: the codes one failure may show depending on timing are one class. */
static const char *curl_class(int code)
{
	switch (code) {
	case 0: return "ok";
	case 7: return "refused";
	case 18: return "partial";
	case 28: return "timeout";
	case 35: return "tls";
	case 52: case 55: case 56: return "lost";
	default: return NULL;
	}
}

static void append(char *buf, size_t n, const char *tok)
{
	size_t l = strlen(buf);
	snprintf(buf + l, n - l, "%s%s", l ? "," : "", tok);
}

/* Replaces every comma-separated token FROM of LIST (N bytes) by TO. */
static void replace_tokens(char *list, size_t n, const char *from, const char *to)
{
	char out[256] = "";
	size_t fl = strlen(from);
	for (const char *p = list; *p;) {
		const char *e = strchr(p, ',');
		size_t k = e ? (size_t)(e - p) : strlen(p);
		char tok[128];
		snprintf(tok, sizeof(tok), "%.*s", (int)(k < 127 ? k : 127), p);
		append(out, sizeof(out), k == fl && !strncmp(p, from, fl) ? to : tok);
		p += k;
		if (*p == ',')
			p++;
	}
	snprintf(list, n, "%s", out);
}

static long line_value(const char *out, const char *name, int last)
{
	size_t n = strlen(name);
	long v = -1;
	for (const char *p = out; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (!strncmp(p, name, n) && p[n] == ' ') {
			v = strtol(p + n + 1, NULL, 10);
			if (!last)
				return v;
		}
	}
	return v;
}

static void parse_curl(struct cell *c)
{
	for (const char *p = c->out; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (strncmp(p, "req ", 4) != 0)
			continue;
		const char *k = strstr(p, " code="), *s = strstr(p, " status="), *m = strstr(p, " ms=");
		const char *eol = strchr(p, '\n');
		if (!k || (eol && k > eol))
			continue;
		int code = atoi(k + 6);
		long status = s && (!eol || s < eol) ? strtol(s + 8, NULL, 10) : 0;
		double ms = m && (!eol || m < eol) ? strtod(m + 4, NULL) : 0;
		char num[16];
		snprintf(num, sizeof(num), "%d", code);
		int ok = code == 0 && status < 400;
		const char *cl = curl_class(code);
		append(c->cls, sizeof(c->cls), ok ? "ok" : code == 0 ? "http-error" : cl ? cl : num);
		append(c->shown, sizeof(c->shown), ok ? "ok" : num);
		if (ms > c->max_req_ms)
			c->max_req_ms = ms;
		c->nreq++;
	}
	c->fd0 = line_value(c->out, "fds_start", 0);
	c->fd1 = line_value(c->out, "fds_end", 0);
}

/* sockprog / rawprog output -> one token per request: ok, partial (some body, not all),
 * noresp (nothing, or the send failed), connect:ERRNO; "killed" when the run was. */
static void parse_raw(struct cell *c)
{
	char failed[8][32];
	int nfailed = 0;
	for (const char *p = c->out; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		char a[32] = "", b[32] = "", d[64] = "";
		if (sscanf(p, "connect %31s %31s %63s", a, b, d) == 3 && !strcmp(b, "err")) {
			char tok[80];
			if (!strcmp(d, "ECONNRESET")) {
				/* Reset right after the handshake: whether connect() or the first
				 * read/write reports it is a race (the kernel's blocking connect
				 * can return ECONNRESET too); either way no response. */
				append(c->cls, sizeof(c->cls), "noresp");
				append(c->shown, sizeof(c->shown), "ECONNRESET@connect");
			} else {
				snprintf(tok, sizeof(tok), "connect:%s", d);
				append(c->cls, sizeof(c->cls), tok);
				append(c->shown, sizeof(c->shown), d);
			}
			if (nfailed < 8)
				snprintf(failed[nfailed++], sizeof(failed[0]), "%s", a);
			continue;
		}
		int is_get = !strncmp(p, "get ", 4), is_post = !strncmp(p, "post ", 5);
		if (!is_get && !is_post)
			continue;
		const char *q = p + (is_get ? 4 : 5);
		const char *sp = strchr(q, ' ');
		const char *eol = strchr(q, '\n');
		if (!sp || (eol && sp > eol))
			continue;
		snprintf(a, sizeof(a), "%.*s", (int)(sp - q) < 31 ? (int)(sp - q) : 31, q);
		int skip = 0;
		for (int i = 0; i < nfailed; i++)
			skip |= !strcmp(failed[i], a);
		if (skip)
			continue;       /* its connect failed: that is the result */
		const char *res = sp + 1;
		size_t rl = eol ? (size_t)(eol - res) : strlen(res);
		const char *tok;
		if (rl == 2 && !strncmp(res, "ok", 2))
			tok = "ok";
		else if (rl >= 4 && !strncmp(res, "err ", 4))
			tok = "noresp";
		else
			tok = "partial";
		append(c->cls, sizeof(c->cls), tok);
		append(c->shown, sizeof(c->shown), tok);
	}
	if (c->timed_out) {
		append(c->cls, sizeof(c->cls), "killed");
		append(c->shown, sizeof(c->shown), "hang(killed)");
	}
	c->fd0 = line_value(c->out, "fdcount", 0);
	c->fd1 = line_value(c->out, "fdcount", 1);
}

/* ------------------------------------------------------------ the helper thread */

/* Restart and idle-kill rows act on the server between the client's two requests, while
 * h_run waits for the client: a thread does it. No Criterion assertion here. */
struct action {
	enum kind kind;
	struct h_upstream *a, *b;   /* a: the server of the first request; b: after a restart */
	const char *kill_query;     /* K_IDLE */
	long a_req, a_get, a_post, a_acc, a_fired;
	long b_req, b_get, b_post, b_acc, b_fired;
	long killed;
	int ok;
	atomic_int client_done;     /* set by the main thread once h_run returned */
	char why[160];
};

static void *action_main(void *arg)
{
	struct action *x = arg;
	long long deadline = h_now_ms() + 10000;
	while (h_stat(x->a, "requests") < 1 && h_now_ms() < deadline)
		h_sleep_ms(20);
	if (h_now_ms() >= deadline) {
		snprintf(x->why, sizeof(x->why), "the first request never reached the server");
		return NULL;
	}
	h_sleep_ms(300);              /* its response is on the client's side by then */
	if (x->kind == K_IDLE) {
		for (int i = 0; i < 20 && x->killed < 1; i++) {
			char *s = h_get(x->a, x->kill_query);
			if (s && !strncmp(s, "killed ", 7))
				x->killed += atol(s + 7);
			free(s);
			if (x->killed < 1)
				h_sleep_ms(50);
		}
		x->ok = x->killed >= 1;
		if (!x->ok)
			snprintf(x->why, sizeof(x->why), "no idle connection to kill");
		return NULL;
	}
	/* K_RESTART: the counters of the first server, then stop it, start another one on the
	 * same port. */
	x->a_req = h_stat(x->a, "requests");
	x->a_get = h_stat(x->a, "requests_get");
	x->a_post = h_stat(x->a, "requests_post");
	x->a_acc = h_stat(x->a, "accepted");
	x->a_fired = h_stat(x->a, "faults_fired");
	int port = x->a->port;
	h_upstream_stop(x->a);
	char ps[16];
	snprintf(ps, sizeof(ps), "%d", port);
	const char *args[] = {"--port", ps, NULL};
	for (int i = 0; i < 20 && !x->ok; i++) {
		if (h_upstream_start(x->b, args) == 0)
			x->ok = 1;
		else
			h_sleep_ms(100);
	}
	if (!x->ok) {
		snprintf(x->why, sizeof(x->why), "could not start the upstream again on port %d", port);
		return NULL;
	}
	/* The server gets PR_SET_PDEATHSIG from the harness, and its "parent" is this thread:
	 * it must outlive the client, so this thread reads the counters and stops it. */
	deadline = h_now_ms() + 120000;
	while (!atomic_load(&x->client_done) && h_now_ms() < deadline)
		h_sleep_ms(20);
	h_wait_stat(x->b, "open", 0, 3000);
	x->b_req = h_stat(x->b, "requests");
	x->b_get = h_stat(x->b, "requests_get");
	x->b_post = h_stat(x->b, "requests_post");
	x->b_acc = h_stat(x->b, "accepted");
	x->b_fired = h_stat(x->b, "faults_fired");
	h_upstream_stop(x->b);
	return NULL;
}

/* --------------------------------------------------------------- running one cell */

static struct h_upstream srv;   /* the row's server (K_SIMPLE, K_IDLE, K_BACKLOG) */
static int srv_port;            /* the port clients go to */
static int backlog_fds[8], nbacklog;

static void srv_stats(struct h_upstream *u, struct cell *c, int add)
{
	long v[5] = {h_stat(u, "requests"), h_stat(u, "requests_get"), h_stat(u, "requests_post"),
		     h_stat(u, "accepted"), h_stat(u, "faults_fired")};
	long *dst[5] = {&c->req, &c->get, &c->post, &c->acc, &c->fired};
	for (int i = 0; i < 5; i++)
		*dst[i] = add && *dst[i] >= 0 && v[i] >= 0 ? *dst[i] + v[i] : v[i];
}

static void quiesce(struct h_upstream *u)
{
	h_wait_stat(u, "open", 0, 3000);
	cr_assert_eq(h_reset(u), 0);
	char *s = h_get(u, "/inject?fault=none");
	free(s);
}

static void arm(struct h_upstream *u, const char *query)
{
	char path[200];
	snprintf(path, sizeof(path), "/inject?%s", query);
	char *s = h_get(u, path);
	cr_assert(s && !strncmp(s, "ok ", 3), "arming %s: %s", query, s ? s : "(no answer)");
	free(s);
}

static int nrequests(const struct row *r)
{
	return r->kind == K_RESTART || r->kind == K_IDLE ? 2 : 1;
}

static void run_client(const struct row *r, int post, int raw, int preload, struct cell *c,
		       int run_timeout)
{
	char url[128], pause[16], req[16];
	snprintf(url, sizeof(url), "%s://%s:%d/", r->tls ? "https" : "http",
		 r->tls ? "localhost" : "127.0.0.1", srv_port);
	snprintf(req, sizeof(req), "%d", nrequests(r));
	snprintf(pause, sizeof(pause), "%d", r->kind == K_RESTART ? RESTART_PAUSE_MS : IDLE_PAUSE_MS);
	const char *argv[40];
	int n = 0;
	char conn_a[64], conn_b[64], ra[32], rb[32], sl[32], sockprog[300];
	if (!raw) {
		argv[n++] = "curlprog";
		argv[n++] = "--requests";
		argv[n++] = req;
		if (r->kind == K_IDLE) {
			argv[n++] = "--mode";
			argv[n++] = "persistent"; /* one handle: it keeps its connection without us */
		}
		if (nrequests(r) > 1) {
			argv[n++] = "--pause-ms";
			argv[n++] = pause;
		}
		argv[n++] = "--timeout-ms";
		argv[n++] = "8000";
		argv[n++] = "--print-fds";
		argv[n++] = "--errbuf";
		if (post) {
			argv[n++] = "--method";
			argv[n++] = "POST";
			argv[n++] = "--data";
			argv[n++] = "x=1";
		}
		if (r->tls) {
			argv[n++] = "--cacert";
			argv[n++] = srv.cert;
		}
		argv[n++] = url;
	} else {
		const char *op = post ? "post" : "get";
		snprintf(conn_a, sizeof(conn_a), "connect=a@127.0.0.1:%d", srv_port);
		snprintf(conn_b, sizeof(conn_b), "connect=b@127.0.0.1:%d", srv_port);
		snprintf(ra, sizeof(ra), "%s=a:/", op);
		snprintf(rb, sizeof(rb), "%s=b:/", op);
		snprintf(sl, sizeof(sl), "sleep=%s", pause);
		if (post) {
			argv[n++] = python;
			argv[n++] = rawpy;
		} else {
			/* SIGPIPE ignored, as network programs (and python) do: sockprog's write()
			 * on a reset connection must report EPIPE, not kill it */
			snprintf(sockprog, sizeof(sockprog), "%s/progs/sockprog", h_build());
			argv[n++] = "/bin/sh";
			argv[n++] = "-c";
			argv[n++] = "trap '' PIPE; exec \"$0\" \"$@\"";
			argv[n++] = sockprog;
		}
		argv[n++] = "fdcount";
		argv[n++] = "tcp=a";
		argv[n++] = conn_a;
		argv[n++] = ra;
		if (r->kind == K_IDLE) {
			argv[n++] = sl;
			argv[n++] = ra;   /* on the connection the server killed meanwhile */
		}
		if (r->kind == K_IDLE || r->kind == K_RESTART) {
			if (r->kind == K_RESTART)
				argv[n++] = sl;
			argv[n++] = "tcp=b";
			argv[n++] = conn_b;
			argv[n++] = rb;
			argv[n++] = "close=b";
		}
		argv[n++] = "close=a";
		argv[n++] = "fdcount";
	}
	argv[n] = NULL;
	const char *env[] = {conf_env, NULL};
	struct h_run hr;
	cr_assert_eq(h_run(&hr, argv, env, preload, run_timeout), 0, "could not start %s", argv[0]);
	c->secs = hr.secs;
	c->status = hr.status;
	c->timed_out = hr.timed_out;
	c->out = hr.out;
	c->err = hr.err;
	if (raw)
		parse_raw(c);
	else
		parse_curl(c);
	if (r->reset_at_accept) {
		replace_tokens(c->cls, sizeof(c->cls), "refused", "lost");
		replace_tokens(c->cls, sizeof(c->cls), "tls", "lost"); /* reset in the handshake */
	}
}

static void run_cell(const struct row *r, int post, int raw, int preload, struct cell *c)
{
	memset(c, 0, sizeof(*c));
	c->req = c->get = c->post = c->acc = c->fired = -1;
	int run_timeout = RUN_TIMEOUT_MS;
	if (r->kind == K_BACKLOG && raw && !preload)
		run_timeout = BACKLOG_KILL_MS;

	switch (r->kind) {
	case K_SIMPLE:
		quiesce(&srv);
		arm(&srv, r->inject);
		run_client(r, post, raw, preload, c, run_timeout);
		h_wait_stat(&srv, "open", 0, 3000);
		srv_stats(&srv, c, 0);
		break;
	case K_BACKLOG:
	case K_DOWN:
		run_client(r, post, raw, preload, c, run_timeout);
		if (r->kind == K_BACKLOG)
			srv_stats(&srv, c, 0);
		break;
	case K_IDLE: {
		quiesce(&srv);
		struct action x = {.kind = K_IDLE, .a = &srv, .kill_query = r->inject};
		pthread_t th;
		cr_assert_eq(pthread_create(&th, NULL, action_main, &x), 0);
		run_client(r, post, raw, preload, c, run_timeout);
		pthread_join(th, NULL);
		cr_assert(x.ok, "%s: %s", r->name, x.why);
		h_wait_stat(&srv, "open", 0, 3000);
		srv_stats(&srv, c, 0);
		break;
	}
	case K_RESTART: {
		struct h_upstream a, b;
		cr_assert_eq(h_upstream_start(&a, NULL), 0);
		srv_port = a.port;
		memset(&b, 0, sizeof(b));
		struct action x = {.kind = K_RESTART, .a = &a, .b = &b};
		pthread_t th;
		cr_assert_eq(pthread_create(&th, NULL, action_main, &x), 0);
		run_client(r, post, raw, preload, c, run_timeout);
		atomic_store(&x.client_done, 1);
		pthread_join(th, NULL);
		h_upstream_stop(&a);
		if (x.ok) {
			c->req = x.a_req + x.b_req;
			c->get = x.a_get + x.b_get;
			c->post = x.a_post + x.b_post;
			c->acc = x.a_acc + x.b_acc;
			c->fired = x.a_fired + x.b_fired;
		}
		cr_assert(x.ok, "%s: %s", r->name, x.why);
		break;
	}
	}
}

/* ------------------------------------------------------------------ the table */

static const char *matrix_path(pid_t runner)
{
	static char p[300];
	const char *tmp = getenv("TMPDIR");
	if (!tmp || !*tmp || strlen(tmp) > 200)
		tmp = "/tmp";
	snprintf(p, sizeof(p), "%s/cr-fault-matrix.%d.txt", tmp, (int)runner);
	return p;
}

static const char header[] =
	"fault              method client  without                  with                     server without       server with\n"
	"------------------ ------ ------  ------------------------ ------------------------ -------------------- --------------------\n";

static void fmt_result(char *b, size_t n, const struct cell *c, int ran)
{
	if (!ran) {
		snprintf(b, n, "n/a");
		return;
	}
	snprintf(b, n, "%.40s %.1fs", c->shown[0] ? c->shown : "-", c->secs);
}

static void fmt_server(char *b, size_t n, const struct cell *c, int ran)
{
	if (!ran || c->req < 0) {
		snprintf(b, n, "-");
		return;
	}
	snprintf(b, n, "get=%ld post=%ld acc=%ld", c->get, c->post, c->acc);
}

/* One table line; also appended to the runner's matrix file for the closing table. */
static void emit(const char *fault, int post, int raw, const struct cell *a, const struct cell *b,
		 int ran)
{
	char wa[64], wb[64], sa[64], sb[64], line[400];
	fmt_result(wa, sizeof(wa), a, ran);
	fmt_result(wb, sizeof(wb), b, ran);
	fmt_server(sa, sizeof(sa), a, ran);
	fmt_server(sb, sizeof(sb), b, ran);
	int n = snprintf(line, sizeof(line), "%-18s %-6s %-6s  %-24s %-24s %-20s %s\n", fault,
			 method_name(post), raw ? "raw" : "curl", wa, wb, sa, sb);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line))
		n = sizeof(line) - 1;
	int fd = open(matrix_path(getppid()), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd >= 0) {
		ssize_t w = write(fd, line, (size_t)n);
		(void)w;
		close(fd);
	}
	fprintf(stderr, "fault-matrix: %s", line);
}

static int cmp_lines(const void *x, const void *y)
{
	return strcmp(*(char *const *)x, *(char *const *)y);
}

/* In the runner, after every test: the rows of this run, sorted, as one table. */
ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
	(void)stats;
	const char *path = matrix_path(getpid());
	char *text = h_read_file(path);
	unlink(path);
	if (!text)
		return;
	char *lines[256];
	int n = 0;
	for (char *save = NULL, *l = strtok_r(text, "\n", &save); l && n < 256;
	     l = strtok_r(NULL, "\n", &save))
		lines[n++] = l;
	qsort(lines, (size_t)n, sizeof(lines[0]), cmp_lines);
	fprintf(stderr,
		"\nFault matrix: a request through libcurl (curlprog) and raw sockets (sockprog; POST: "
		"python3), without and with the shim\n(lane: retries = 2, connect_timeout = 1s, "
		"response_header_timeout = 500ms, request_timeout = 3s; app timeout 8 s).\nResults: "
		"CURLcode or ok per request, raw: ok/partial/noresp/ERRNO; server: what it counted.\n\n%s",
		header);
	for (int i = 0; i < n; i++)
		fprintf(stderr, "%s\n", lines[i]);
	fprintf(stderr, "\n");
	free(text);
}

/* ------------------------------------------------------------------ the checks */

static int all_ok(const char *cls)
{
	const char *p = cls;
	if (!*p)
		return 0;
	while (*p) {
		if (strncmp(p, "ok", 2) != 0 || (p[2] && p[2] != ','))
			return 0;
		p += 2;
		if (*p == ',')
			p++;
	}
	return 1;
}

static void check_pair(const struct row *r, int post, int raw, const struct cell *a, const struct cell *b)
{
	const char *what = method_name(post);
	const char *cli = raw ? "raw" : "curl";
	/* never a crash, never a hang */
	int backlog_raw_without = r->kind == K_BACKLOG && raw;
	if (!backlog_raw_without)
		cr_expect_eq(a->timed_out, 0, "%s %s %s without the shim hung:\n%s\n%s", r->name, what, cli,
			     a->out, a->err);
	cr_expect_eq(b->timed_out, 0, "%s %s %s with the shim hung:\n%s\n%s", r->name, what, cli, b->out,
		     b->err);
	if (!b->timed_out)
		cr_expect(b->status == 0 || (!raw && b->status == 1), "%s %s %s with the shim: exit %d\n%s\n%s",
			  r->name, what, cli, b->status, b->out, b->err);
	if (!a->timed_out)
		cr_expect(a->status == 0 || (!raw && a->status == 1), "%s %s %s without the shim: exit %d\n%s\n%s",
			  r->name, what, cli, a->status, a->out, a->err);

	/* the same error class, or a successful budgeted retry (curl GET, nothing reached the app) */
	if (backlog_raw_without) {
		cr_expect(strstr(b->cls, "connect:ETIMEDOUT") != NULL,
			  "%s %s raw: with the shim the lane's connect_timeout ends the connect: %s\n%s",
			  r->name, what, b->cls, b->out);
	} else if (strcmp(a->cls, b->cls) != 0) {
		int retry_ok = !raw && !post && !r->reached_app && all_ok(b->cls);
		cr_expect(retry_ok, "%s %s %s: '%s' without the shim, '%s' with it\nwithout:\n%s\nwith:\n%s\n%s",
			  r->name, what, cli, a->cls, b->cls, a->out, b->out, b->err);
	}
	if (!raw)
		cr_expect_eq(b->nreq, nrequests(r), "%s %s: %d requests reported\n%s", r->name, what, b->nreq,
			     b->out);

	/* never a second POST; a GET whose bytes reached the app is not sent again */
	if (a->post >= 0 && b->post >= 0) {
		cr_expect_eq(b->post, a->post, "%s %s %s: the server saw %ld POSTs with the shim, %ld without",
			     r->name, what, cli, b->post, a->post);
		cr_expect_leq(b->post, nrequests(r), "%s: POSTs", r->name);
	}
	if (a->get >= 0 && b->get >= 0) {
		if (raw || r->reached_app)
			cr_expect_eq(b->get, a->get, "%s %s %s: GETs on the server %ld with the shim, %ld without",
				     r->name, what, cli, b->get, a->get);
		else
			cr_expect_leq(b->get, (long)nrequests(r) * (1 + RETRIES), "%s: GETs beyond the retries",
				      r->name);
	}

	/* the lane's deadline bounds every curl request under the shim */
	if (!raw)
		cr_expect_lt(b->max_req_ms, (double)(LANE_DEADLINE_MS + DEADLINE_SLACK_MS),
			     "%s %s curl: a request took %.0f ms with the shim (lane deadline %d ms)\n%s",
			     r->name, what, b->max_req_ms, LANE_DEADLINE_MS, b->out);
	cr_expect_lt(b->secs, 10.0 + (nrequests(r) - 1) * (RESTART_PAUSE_MS / 1000.0),
		     "%s %s %s: %.1f s with the shim", r->name, what, cli, b->secs);

	/* fds back to the baseline */
	if (!a->timed_out) {
		cr_expect(a->fd0 >= 0 && a->fd1 == a->fd0, "%s %s %s without the shim: fds %ld -> %ld\n%s",
			  r->name, what, cli, a->fd0, a->fd1, a->out);
	}
	if (!b->timed_out) {
		/* curl: the lane's pool may keep the connection, and the recycled handle its
		 * private multi's wake-up socketpair (docs/INTERNALS.md, handle recycling) */
		long slack = raw ? 0 : 3;
		cr_expect(b->fd0 >= 0 && b->fd1 >= b->fd0 && b->fd1 <= b->fd0 + slack,
			  "%s %s %s with the shim: fds %ld -> %ld\n%s", r->name, what, cli, b->fd0, b->fd1,
			  b->out);
	}
}

static void run_row(const struct row *r)
{
	cr_assert_not_null(python, "python3 is needed for the raw POST client");
	switch (r->kind) {
	case K_SIMPLE:
	case K_IDLE: {
		const char *tls[] = {"--tls", NULL};
		cr_assert_eq(h_upstream_start(&srv, r->tls ? tls : NULL), 0);
		srv_port = srv.port;
		break;
	}
	case K_BACKLOG: {
		const char *args[] = {"--no-accept", "--backlog", "0", NULL};
		cr_assert_eq(h_upstream_start(&srv, args), 0);
		srv_port = srv.port;
		nbacklog = h_fill_backlog(&srv, backlog_fds, 8);
		cr_assert_geq(nbacklog, 0, "could not fill the backlog");
		break;
	}
	case K_DOWN:
		/* a port that was just listening and is closed now: connection refused */
		cr_assert_eq(h_upstream_start(&srv, NULL), 0);
		srv_port = srv.port;
		h_upstream_stop(&srv);
		break;
	case K_RESTART:
		break;
	}
	for (int post = 0; post <= 1; post++) {
		for (int raw = 0; raw <= 1; raw++) {
			struct cell a, b;
			if (raw && r->tls) {
				memset(&a, 0, sizeof(a));
				memset(&b, 0, sizeof(b));
				emit(r->name, post, raw, &a, &b, 0);
				continue;
			}
			run_cell(r, post, raw, 0, &a);
			run_cell(r, post, raw, 1, &b);
			emit(r->name, post, raw, &a, &b, 1);
			check_pair(r, post, raw, &a, &b);
			free(a.out);
			free(a.err);
			free(b.out);
			free(b.err);
		}
	}
	for (int i = 0; i < nbacklog; i++)
		close(backlog_fds[i]);
	nbacklog = 0;
	if (srv.pid > 0)
		h_upstream_stop(&srv);
}

#define ROW(id, ...)                                                                       \
	Test(faults, id, .init = setup, .fini = teardown, .timeout = 240)                 \
	{                                                                                  \
		static const struct row r = {#id, __VA_ARGS__};                            \
		run_row(&r);                                                               \
	}

/* name, kind, inject, tls, reached_app, reset_at_accept */
ROW(rst_accept, K_SIMPLE, "fault=rst_accept&count=1", 0, 0, 1)
ROW(rst_accept_always, K_SIMPLE, "fault=rst_accept&count=1000", 0, 0, 1)
ROW(rst_mid_body, K_SIMPLE, "fault=rst_body&count=1", 0, 1, 0)
ROW(short_body, K_SIMPLE, "fault=short_body&count=1", 0, 1, 0)
ROW(drop, K_SIMPLE, "fault=drop&count=1", 0, 0, 0)
ROW(drop_always, K_SIMPLE, "fault=drop&count=1000", 0, 0, 0)
ROW(no_headers, K_SIMPLE, "fault=hang_headers&count=1&ms=15000", 0, 0, 0)
ROW(tls_garbage, K_SIMPLE, "fault=tls_garbage&count=1", 1, 0, 0)
ROW(tls_rst_accept, K_SIMPLE, "fault=rst_accept&count=1", 1, 0, 1)
ROW(backlog_full, K_BACKLOG, NULL, 0, 0, 0)
ROW(upstream_down, K_DOWN, NULL, 0, 0, 0)
ROW(upstream_back, K_RESTART, NULL, 0, 0, 0)
ROW(idle_kill_fin, K_IDLE, "/inject?fault=kill_idle", 0, 0, 0)
ROW(idle_kill_rst, K_IDLE, "/inject?fault=kill_idle&rst=1", 0, 0, 0)

/* ------------------------------------------------ the injections, server side only */

static struct h_upstream u;

static void u_start(void)
{
	cr_assert_eq(h_upstream_start(&u, NULL), 0);
}

static void u_stop(void)
{
	h_upstream_stop(&u);
}

static char *ctl(const char *path)
{
	char *s = h_get(&u, path);
	cr_assert_not_null(s, "%s: no answer", path);
	return s;
}

static void ctl_expect(const char *path, const char *want_prefix)
{
	char *s = ctl(path);
	cr_expect(!strncmp(s, want_prefix, strlen(want_prefix)), "%s: '%s', want '%s...'", path, s,
		  want_prefix);
	free(s);
}

/* Sends a GET on a new connection to the main port; returns the fd (response unread). */
static int send_get(const char *path)
{
	int fd = h_connect(u.host, u.port, 5000);
	cr_assert_geq(fd, 0);
	char req[256];
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
	cr_assert_eq(send(fd, req, (size_t)n, MSG_NOSIGNAL), n);
	return fd;
}

/* Reads until EOF or error (bounded by the 5 s socket timeout); returns bytes read, and the
 * errno of the error that ended it (0 for EOF). */
static size_t read_to_end(int fd, char *buf, size_t cap, int *err)
{
	size_t n = 0;
	*err = 0;
	for (int i = 0; i < 10000; i++) {
		ssize_t k = recv(fd, buf + n, cap - 1 - n, 0);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			*err = errno;
			break;
		}
		if (k == 0)
			break;
		n += (size_t)k;
		if (n == cap - 1)
			break;
	}
	buf[n] = 0;
	return n;
}

Test(faults_upstream, inject_endpoint_arms_lists_and_rejects, .init = u_start, .fini = u_stop, .timeout = 30)
{
	ctl_expect("/inject?fault=drop&count=3", "ok drop count=3");
	char *s = ctl("/inject");
	cr_expect(strstr(s, "drop left=3 fired=0\n") != NULL, "%s", s);
	free(s);
	ctl_expect("/inject?fault=nonsense", "unknown fault 'nonsense'");
	ctl_expect("/inject?fault=drop&count=0", "count is 1..");
	ctl_expect("/inject?fault=drop&count=x", "count is 1..");
	ctl_expect("/inject?fault=drop&count=99999999999999999999", "count is 1..");
	ctl_expect("/inject?fault=rst_body&ms=70000", "ms is 0..");
	ctl_expect("/inject?fault=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "fault name too long");
	ctl_expect("/inject?fault=none", "ok none");
	s = ctl("/inject");
	cr_expect(strstr(s, "drop left=0 fired=0\n") != NULL, "%s", s);
	free(s);
	/* the control endpoint itself is never counted, on either port */
	cr_expect_eq(h_stat(&u, "requests"), 0);
}

Test(faults_upstream, count_applies_to_the_next_n_only_on_the_main_port, .init = u_start, .fini = u_stop,
     .timeout = 30)
{
	ctl_expect("/inject?fault=drop&count=2", "ok drop");
	/* the control port is never faulted */
	char *s = ctl("/conn");
	cr_expect(!strncmp(s, "conn=0 ", 7), "%s", s);
	free(s);
	int st = 0;
	for (int i = 0; i < 2; i++) {
		char *b = h_get_main(&u, "/", &st);
		cr_expect_null(b, "request %d should have been dropped: %s", i, b);
		free(b);
	}
	char *b = h_get_main(&u, "/", &st);
	cr_expect_not_null(b);
	cr_expect_eq(st, 200);
	free(b);
	cr_expect_eq(h_stat(&u, "requests"), 3, "dropped requests are counted too");
	cr_expect_eq(h_stat(&u, "faults_fired"), 2);
	s = ctl("/inject");
	cr_expect(strstr(s, "drop left=0 fired=2\n") != NULL, "%s", s);
	free(s);
}

Test(faults_upstream, rst_accept_resets_before_reading, .init = u_start, .fini = u_stop, .timeout = 30)
{
	ctl_expect("/inject?fault=rst_accept", "ok rst_accept");
	int fd = send_get("/");
	char buf[256];
	int err = 0;
	size_t n = read_to_end(fd, buf, sizeof(buf), &err);
	close(fd);
	cr_expect_eq(n, 0u);
	cr_expect_eq(err, ECONNRESET, "errno %d", err);
	cr_expect_eq(h_wait_stat(&u, "accepted", 1, 2000), 1);
	cr_expect_eq(h_stat(&u, "requests"), 0, "nothing was read");
}

Test(faults_upstream, short_body_promises_2048_sends_none, .init = u_start, .fini = u_stop, .timeout = 30)
{
	ctl_expect("/inject?fault=short_body", "ok short_body");
	int fd = send_get("/");
	char buf[8192];
	int err = 0;
	read_to_end(fd, buf, sizeof(buf), &err);
	close(fd);
	cr_expect_eq(err, 0, "a clean close");
	cr_expect(strstr(buf, "\r\nContent-Length: 2048\r\n") != NULL, "%s", buf);
	const char *body = strstr(buf, "\r\n\r\n");
	cr_assert_not_null(body, "%s", buf);
	cr_expect_str_eq(body + 4, "", "no body at all");
	cr_expect(strstr(buf, "Connection: close") == NULL, "the client must trust the length: %s", buf);
}

Test(faults_upstream, rst_body_resets_mid_body, .init = u_start, .fini = u_stop, .timeout = 30)
{
	ctl_expect("/inject?fault=rst_body&bytes=100&ms=50", "ok rst_body");
	int fd = send_get("/");
	static char buf[70000];
	int err = 0;
	size_t n = read_to_end(fd, buf, sizeof(buf), &err);
	close(fd);
	cr_expect_eq(err, ECONNRESET, "errno %d", err);
	cr_expect(strstr(buf, "\r\nContent-Length: 65536\r\n") != NULL, "%s", buf);
	const char *body = strstr(buf, "\r\n\r\n");
	cr_assert_not_null(body);
	cr_expect_eq(n - (size_t)(body + 4 - buf), 100u, "100 body bytes before the reset");
}

Test(faults_upstream, hang_headers_holds_until_the_client_gives_up, .init = u_start, .fini = u_stop,
     .timeout = 30)
{
	ctl_expect("/inject?fault=hang_headers&ms=400", "ok hang_headers");
	long long t0 = h_now_ms();
	int fd = send_get("/");
	char buf[256];
	int err = 0;
	size_t n = read_to_end(fd, buf, sizeof(buf), &err);
	long long ms = h_now_ms() - t0;
	close(fd);
	cr_expect_eq(n, 0u, "nothing arrives: %s", buf);
	cr_expect_geq(ms, 350, "held %lld ms", ms);
	cr_expect_lt(ms, 4000, "held %lld ms (ms=400)", ms);
	/* without a bound of its own: held until the client closes */
	ctl_expect("/inject?fault=hang_headers", "ok hang_headers");
	fd = send_get("/");
	cr_expect_eq(h_wait_stat(&u, "requests", 2, 2000), 2);
	h_sleep_ms(200);
	cr_expect_eq(h_stat(&u, "open"), 1, "still held");
	close(fd);
	cr_expect_eq(h_wait_stat(&u, "open", 0, 3000), 0, "the server lets go once the client closed");
}

Test(faults_upstream, hang_accept_never_reads, .init = u_start, .fini = u_stop, .timeout = 30)
{
	ctl_expect("/inject?fault=hang_accept&ms=300", "ok hang_accept");
	int fd = send_get("/");
	char buf[256];
	int err = 0;
	size_t n = read_to_end(fd, buf, sizeof(buf), &err);
	close(fd);
	cr_expect_eq(n, 0u);
	cr_expect_eq(h_stat(&u, "requests"), 0, "the request was never read");
	cr_expect_eq(h_stat(&u, "faults_fired"), 1);
}

Test(faults_upstream, tls_garbage_is_no_server_hello, .timeout = 30)
{
	const char *args[] = {"--tls", NULL};
	cr_assert_eq(h_upstream_start(&u, args), 0);
	ctl_expect("/inject?fault=tls_garbage", "ok tls_garbage");
	int fd = h_connect(u.host, u.port, 5000);
	cr_assert_geq(fd, 0);
	/* Any first flight will do: the server reads what comes and answers with junk. */
	static const char hello[] = "\x16\x03\x01\x00\x05hello";
	cr_assert_eq(send(fd, hello, sizeof(hello) - 1, MSG_NOSIGNAL), (ssize_t)sizeof(hello) - 1);
	char buf[512];
	int err = 0;
	size_t n = read_to_end(fd, buf, sizeof(buf), &err);
	close(fd);
	cr_expect_gt(n, 3u);
	cr_expect_neq((unsigned char)buf[0], 0x16, "not a TLS handshake record");
	cr_expect(memmem(buf, n, "NOT-A-SERVER-HELLO", 18) != NULL);
	cr_expect_eq(h_stat(&u, "tls_handshakes"), 0);
	/* and the next connection gets a real handshake: curl over TLS works */
	struct h_run r;
	char url[128];
	snprintf(url, sizeof(url), "https://localhost:%d/", u.port);
	const char *argv[] = {"curlprog", "--requests", "1", "--cacert", u.cert, url, NULL};
	cr_assert_eq(h_run(&r, argv, NULL, 0, 20000), 0);
	cr_expect_eq(r.status, 0, "%s%s", r.out, r.err);
	h_run_free(&r);
	h_upstream_stop(&u);
}

static void kill_idle_case(int rst)
{
	int fd = h_upstream_connect(&u);
	cr_assert_geq(fd, 0);
	int st = 0;
	cr_assert_eq(h_sock_http(fd, "GET", "/", NULL, NULL, &st, NULL), 0);
	/* a connection with a request in flight is not idle */
	int busy = send_get("/delay/1500");
	cr_expect_eq(h_wait_stat(&u, "requests", 2, 2000), 2);
	long long deadline = h_now_ms() + 2000;
	char *s = NULL;
	for (;;) {
		s = ctl(rst ? "/inject?fault=kill_idle&rst=1" : "/inject?fault=kill_idle");
		if (strncmp(s, "killed 0", 8) != 0 || h_now_ms() > deadline)
			break;
		free(s);
		h_sleep_ms(20);
	}
	cr_expect_str_eq(s, "killed 1\n");
	free(s);
	char buf[256];
	int err = 0;
	size_t n = read_to_end(fd, buf, sizeof(buf), &err);
	close(fd);
	cr_expect_eq(n, 0u);
	cr_expect_eq(err, rst ? ECONNRESET : 0, "errno %d", err);
	n = read_to_end(busy, buf, sizeof(buf), &err);
	close(busy);
	cr_expect(strstr(buf, "HTTP/1.1 200 OK") != NULL, "the busy connection was answered: %s", buf);
}

Test(faults_upstream, kill_idle_fin, .init = u_start, .fini = u_stop, .timeout = 30)
{
	kill_idle_case(0);
}

Test(faults_upstream, kill_idle_rst, .init = u_start, .fini = u_stop, .timeout = 30)
{
	kill_idle_case(1);
}

/* An upstream that goes away and comes back on the same port, with connections of the first
 * run in TIME_WAIT on the server side (the server closed first). */
Test(faults_upstream, restart_on_the_same_port, .timeout = 30)
{
	cr_assert_eq(h_upstream_start(&u, NULL), 0);
	int port = u.port;
	for (int i = 0; i < 5; i++) {
		int st = 0;
		char *b = h_get_main(&u, "/", &st);
		cr_expect_eq(st, 200);
		free(b);
	}
	int fd = h_upstream_connect(&u);         /* still open when the server goes away */
	cr_assert_eq(h_upstream_stop(&u), 0);
	char buf[64];
	int err = 0;
	cr_expect_eq(read_to_end(fd, buf, sizeof(buf), &err), 0u, "the server closed it");
	close(fd);
	cr_expect_lt(h_connect("127.0.0.1", port, 2000), 0, "nobody listens while it is down");
	char ps[16];
	snprintf(ps, sizeof(ps), "%d", port);
	const char *args[] = {"--port", ps, NULL};
	cr_assert_eq(h_upstream_start(&u, args), 0, "bind the same port again at once");
	cr_expect_eq(u.port, port);
	int st = 0;
	char *b = h_get_main(&u, "/", &st);
	cr_expect_eq(st, 200);
	free(b);
	h_upstream_stop(&u);
}

/* ------------------------------------------- the shim itself under valgrind memcheck */

/* The shim cannot be ASan-instrumented when it is preloaded into uninstrumented hosts (the
 * ASan runtime must come first), so its memory safety inside a host is checked with
 * valgrind's memcheck: unmodified hosts under LD_PRELOAD, with faults firing, must show no
 * invalid access, no use of uninitialised values and no bad free/close (exit 99 on any
 * error). Leaks are not counted here: pools are kept for the process's life by design. */
static const char *valgrind_path(void)
{
	static const char *const c[] = {"/usr/bin/valgrind", "/usr/local/bin/valgrind", NULL};
	for (int i = 0; c[i]; i++)
		if (access(c[i], X_OK) == 0)
			return c[i];
	return NULL;
}

static void memcheck_run(const char *const *prog_argv, const char *what)
{
	const char *vg = valgrind_path();
	const char *argv[48];
	int n = 0;
	argv[n++] = vg;
	argv[n++] = "-q";
	argv[n++] = "--error-exitcode=99";
	argv[n++] = "--leak-check=no";
	argv[n++] = "--track-fds=no";
	char prog[320];
	snprintf(prog, sizeof(prog), "%s/progs/%s", h_build(), prog_argv[0]);
	argv[n++] = prog;
	for (int i = 1; prog_argv[i] && n < 47; i++)
		argv[n++] = prog_argv[i];
	argv[n] = NULL;
	const char *env[] = {conf_env, NULL};
	struct h_run r;
	cr_assert_eq(h_run(&r, argv, env, 1, 180000), 0);
	cr_expect_eq(r.timed_out, 0, "%s under valgrind hung", what);
	cr_expect(r.status == 0 || r.status == 1, "%s under valgrind: exit %d (99: memcheck errors)\n%s", what,
		  r.status, r.err);
	cr_expect(strstr(r.err, "Invalid ") == NULL && strstr(r.err, "uninitialised") == NULL,
		  "%s: memcheck:\n%s", what, r.err);
	h_run_free(&r);
}

Test(faults_memcheck, shim_in_hosts_under_valgrind_with_faults, .init = setup, .fini = teardown,
     .timeout = 600)
{
	if (!valgrind_path())
		cr_skip_test("valgrind is not installed (Debian: valgrind)");
	cr_assert_eq(h_upstream_start(&srv, NULL), 0);
	char url[128], ca[64], cb[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", srv.port);
	snprintf(ca, sizeof(ca), "connect=a@127.0.0.1:%d", srv.port);
	snprintf(cb, sizeof(cb), "connect=b@127.0.0.1:%d", srv.port);

	arm(&srv, "fault=drop&count=3");
	arm(&srv, "fault=rst_accept&count=2");
	arm(&srv, "fault=rst_body&count=2&ms=10");
	const char *tpr[] = {"curlprog", "--mode", "thread-per-request", "--threads", "4", "--requests", "40",
			     "--timeout-ms", "8000", "--quiet", url, NULL};
	memcheck_run(tpr, "curlprog thread-per-request");
	arm(&srv, "fault=short_body&count=2");
	const char *post[] = {"curlprog", "--mode", "fresh", "--requests", "10", "--method", "POST", "--data",
			      "x=1", "--timeout-ms", "8000", "--quiet", url, NULL};
	memcheck_run(post, "curlprog fresh POST");
	const char *raw[] = {"sockprog", "tcp=a", ca, "get=a:/", "tcp=b", cb, "fork_close=b", "get=a:/",
			     "dup2=a:b", "close=a", "close=b", "fdcount", NULL};
	memcheck_run(raw, "sockprog");
	h_upstream_stop(&srv);
}
