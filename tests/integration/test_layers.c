/* Behaviour the lib/ layering fixed, seen from outside an unmodified program
 * (tests/progs/sockprog) under LD_PRELOAD:
 *   - CONNROUTE_LOG wins over the config's `log` at a live reload too;
 *   - a socket option the kernel refuses is warned about once per lane, the
 *     lane known by name across reloads (not by its index in the file);
 *   - a refill thread that cannot be created is reported once per process,
 *     not at every connect, and connects go on cold.
 * A reload is driven by the program itself: it renames a prepared file over
 * its config, then polls (bounded) until a new connect shows the new lane's
 * SO_PRIORITY: the background thread looks at the file once a second. */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

static char bufs[16][160];
static int nbuf;

/* A formatted argument that lives until the test ends. */
__attribute__((format(printf, 1, 2))) static const char *arg(const char *fmt, ...)
{
	char *b = bufs[nbuf++ % 16];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(b, sizeof(bufs[0]), fmt, ap);
	va_end(ap);
	return b;
}

/* Lines of TEXT containing A, and B too unless NULL. */
static int lines_with(const char *text, const char *a, const char *b)
{
	int n = 0;
	const char *p = text;
	while (p && *p) {
		const char *e = strchr(p, '\n');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		char line[2048];
		if (len >= sizeof(line))
			len = sizeof(line) - 1;
		memcpy(line, p, len);
		line[len] = '\0';
		if (strstr(line, a) && (!b || strstr(line, b)))
			n++;
		p = e ? e + 1 : NULL;
	}
	return n;
}

/* The line of TEXT that starts with PREFIX ("" if none), in a static buffer. */
static const char *line_of(const char *text, const char *prefix)
{
	static char line[2][512];
	static int k;
	char *out = line[k++ % 2];
	out[0] = '\0';
	for (const char *p = text; p && *p;) {
		const char *e = strchr(p, '\n');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (strncmp(p, prefix, strlen(prefix)) == 0) {
			if (len >= sizeof(line[0]))
				len = sizeof(line[0]) - 1;
			memcpy(out, p, len);
			out[len] = '\0';
			break;
		}
		p = e ? e + 1 : NULL;
	}
	return out;
}

/* ------------------------------------------------ the env's log level */

Test(layers_reload, env_log_level_wins_over_the_configs_at_reload, .init = h_start_plain, .fini = h_stop)
{
	char conf[400], next[400], env_conf[420];
	cr_assert_eq(h_write_file(h_up.dir, "connroute.conf",
				  "[global]\nlog = info\n[lane default]\npriority = 1\nconnect_timeout = 2s\n", conf,
				  sizeof(conf)),
		     0);
	/* Valid, and different: a reload applies it. */
	cr_assert_eq(h_write_file(h_up.dir, "connroute.conf.next",
				  "[global]\nlog = info\n[lane default]\npriority = 2\nconnect_timeout = 3s\n", next,
				  sizeof(next)),
		     0);
	snprintf(env_conf, sizeof(env_conf), "CONNROUTE_CONFIG=%s", conf);
	const char *env[] = {env_conf, "CONNROUTE_LOG=error", NULL};
	const char *argv[] = {"sockprog",
			      "tcp=a",
			      arg("connect=a@127.0.0.1:%d", h_up.port),
			      "opts=a",
			      "close=a",
			      arg("rename=%s:%s", next, conf),
			      arg("await_opt=1:12:2@127.0.0.1:%d", h_up.port), /* SOL_SOCKET:SO_PRIORITY */
			      NULL};
	struct h_run r;
	cr_assert_eq(h_run(&r, argv, env, 1, 30000), 0);
	cr_assert_eq(r.timed_out, 0, "%s", r.out);
	cr_expect_eq(r.status, 0, "%s\n%s", r.out, r.err);
	cr_expect(strstr(r.out, "connect a ok") != NULL, "%s", r.out);
	cr_expect(strstr(line_of(r.out, "opts a "), " priority=1 ") != NULL, "the first config applies: %s",
		  r.out);
	cr_expect(strstr(r.out, "rename ok") != NULL, "%s", r.out);
	/* Without this the test could pass without any reload. */
	cr_assert(strstr(r.out, "await_opt ok") != NULL, "the process never reloaded: %s\n%s", r.out, r.err);
	cr_expect_eq(lines_with(r.err, ": info:", NULL), 0,
		     "CONNROUTE_LOG=error, yet the reload applied the config's log = info:\n%s", r.err);
	cr_expect(strstr(r.err, "reloaded") == NULL, "%s", r.err);
	h_run_free(&r);
}

/* ------------------------------------------- warn once per lane, by name */

Test(layers_reload, refused_bind_warns_once_per_lane_across_reloads, .init = h_start_plain, .fini = h_stop)
{
	char conf[400], next[400], env_conf[420];
	/* 192.0.2.1 (TEST-NET-1) is on no interface here: bind fails with
	 * EADDRNOTAVAIL and the connect goes ahead from the default source. The
	 * key x selects lane a in v1; in v2 the lanes swapped places in the
	 * file and x selects lane b, which now has the failing bind. */
	cr_assert_eq(h_write_file(h_up.dir, "connroute.conf",
				  "[lane a]\nmatch = x\nbind = 192.0.2.1\npriority = 1\n"
				  "[lane b]\nmatch = y\npriority = 2\n",
				  conf, sizeof(conf)),
		     0);
	cr_assert_eq(h_write_file(h_up.dir, "connroute.conf.next",
				  "[lane b]\nmatch = x\nbind = 192.0.2.1\npriority = 3\n"
				  "[lane a]\nmatch = y\npriority = 4\n",
				  next, sizeof(next)),
		     0);
	snprintf(env_conf, sizeof(env_conf), "CONNROUTE_CONFIG=%s", conf);
	const char *env[] = {env_conf, "CONNROUTE_KEY=x", "CONNROUTE_LOG=warn", NULL};
	const char *argv[] = {"sockprog",
			      "tcp=s1",
			      arg("connect=s1@127.0.0.1:%d", h_up.port),
			      "opts=s1",
			      "close=s1",
			      "tcp=s2",
			      arg("connect=s2@127.0.0.1:%d", h_up.port),
			      "close=s2",
			      arg("rename=%s:%s", next, conf),
			      arg("await_opt=1:12:3@127.0.0.1:%d", h_up.port),
			      "tcp=s3",
			      arg("connect=s3@127.0.0.1:%d", h_up.port),
			      "opts=s3",
			      "close=s3",
			      NULL};
	struct h_run r;
	cr_assert_eq(h_run(&r, argv, env, 1, 30000), 0);
	cr_assert_eq(r.timed_out, 0, "%s", r.out);
	cr_expect_eq(r.status, 0, "%s\n%s", r.out, r.err);
	cr_expect(strstr(r.out, "connect s1 ok") != NULL, "%s", r.out);
	cr_expect(strstr(r.out, "connect s2 ok") != NULL, "%s", r.out);
	cr_expect(strstr(r.out, "connect s3 ok") != NULL, "%s", r.out);
	/* The failed bind left the default source: nothing left for 192.0.2.1. */
	const char *o1 = line_of(r.out, "opts s1 ");
	cr_expect(strstr(o1, " priority=1 ") && strstr(o1, " local=127.0.0.1"), "%s", r.out);
	cr_assert(strstr(r.out, "await_opt ok") != NULL, "the process never reloaded: %s\n%s", r.out, r.err);
	const char *o3 = line_of(r.out, "opts s3 ");
	cr_expect(strstr(o3, " priority=3 ") && strstr(o3, " local=127.0.0.1"), "%s", r.out);
	cr_expect_eq(lines_with(r.err, "lane a: cannot set the source address", NULL), 1,
		     "one warning for lane a (two connects, and lane a never fails again):\n%s", r.err);
	cr_expect_eq(lines_with(r.err, "lane b: cannot set the source address", NULL), 1,
		     "lane b's bind fails after the reload: its own warning, once:\n%s", r.err);
	cr_expect_eq(lines_with(r.err, "cannot set", NULL), 2, "%s", r.err);
	h_run_free(&r);
}

/* -------------------------------- a refill thread that cannot be created */

static char tdir[256];

static void start_nobody(void)
{
	if (geteuid() != 0)
		cr_skip_test("needs root to run the program as nobody (RLIMIT_NPROC does not bind root)");
	if (access("/usr/bin/setpriv", X_OK) != 0)
		cr_skip_test("needs setpriv(1)");
	h_start_plain();
	snprintf(tdir, sizeof(tdir), "/tmp/cr-layers-XXXXXX");
	cr_assert_not_null(mkdtemp(tdir));
	cr_assert_eq(chmod(tdir, 0755), 0);
}

static void stop_nobody(void)
{
	char p[400];
	h_stop();
	if (tdir[0]) {
		snprintf(p, sizeof(p), "%s/connroute.conf", tdir);
		unlink(p);
		rmdir(tdir);
	}
}

Test(layers_threads, failed_refill_thread_is_reported_once_and_connects_go_cold, .init = start_nobody,
     .fini = stop_nobody)
{
	char conf[400], text[300];
	snprintf(text, sizeof(text), "[lane w]\nprewarm = 127.0.0.1:%d*2\nmax_conns_per_host = 20\n", h_up.port);
	cr_assert_eq(h_write_file(tdir, "connroute.conf", text, conf, sizeof(conf)), 0);
	cr_assert_eq(chmod(conf, 0644), 0);
	/* The program, as nobody, lowers its own RLIMIT_NPROC to 0 before its
	 * first connect: the threads connroute starts lazily then cannot be
	 * created. The environment is handed over by env(1) after the switch. */
	const char *argv[64];
	int n = 0;
	argv[n++] = "/usr/bin/setpriv";
	argv[n++] = "--reuid=65534";
	argv[n++] = "--regid=65534";
	argv[n++] = "--clear-groups";
	argv[n++] = "--";
	argv[n++] = "/usr/bin/env";
	argv[n++] = arg("LD_PRELOAD=%s/libconnroute.so", h_build());
	argv[n++] = arg("CONNROUTE_CONFIG=%s", conf);
	argv[n++] = "CONNROUTE_KEY=w";
	argv[n++] = "CONNROUTE_LOG=warn";
	argv[n++] = arg("%s/progs/sockprog", h_build());
	argv[n++] = "nproc=0";
	static char steps[5][3][64];
	for (int i = 0; i < 5; i++) {
		snprintf(steps[i][0], 64, "tcp=s%d", i);
		snprintf(steps[i][1], 64, "connect=s%d@127.0.0.1:%d", i, h_up.port);
		snprintf(steps[i][2], 64, "close=s%d", i);
		for (int k = 0; k < 3; k++)
			argv[n++] = steps[i][k];
	}
	argv[n] = NULL;
	struct h_run r;
	cr_assert_eq(h_run(&r, argv, NULL, 0, 30000), 0);
	cr_assert_eq(r.timed_out, 0, "%s", r.out);
	cr_expect_eq(r.status, 0, "%s\n%s", r.out, r.err);
	cr_assert(strstr(r.out, "nproc ok") != NULL, "%s\n%s", r.out, r.err);
	for (int i = 0; i < 5; i++)
		cr_expect(strstr(r.out, arg("connect s%d ok", i)) != NULL, "connect %d failed: %s", i, r.out);
	/* The refill thread: one line, not one per connect. */
	cr_expect_eq(lines_with(r.err, "cannot start", "warm"), 1, "%s", r.err);
	/* Every thread connroute could not start is reported once (the
	 * metrics/reload thread too, as it always was). */
	int total = lines_with(r.err, "cannot start", NULL);
	cr_expect_eq(lines_with(r.err, "cannot start", "connroute-bg"), 1, "%s", r.err);
	/* (the connect-deadline thread of connect_timeout lanes, once too) */
	cr_expect(lines_with(r.err, "cannot start", "connroute-tmo") <= 1, "%s", r.err);
	cr_expect(total >= 1 && total <= 3, "%d lines:\n%s", total, r.err);
	/* Cold: the server saw exactly the program's 5 connections, no warm
	 * socket was ever made. */
	cr_expect_eq(h_wait_stat(&h_up, "accepted", 5, 2000), 5);
	usleep(300000);
	cr_expect_eq(h_stat(&h_up, "accepted"), 5);
	h_run_free(&r);
}
