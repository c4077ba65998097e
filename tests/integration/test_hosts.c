/* Integration tests of host-process behaviour: what a real program does around connect()
 * (siglongjmp out of it, SO_SNDTIMEO, SA_RESTART, vfork, fork, a log FIFO, a config
 * rewritten in place, chdir, a hostile key) must work under the shim as it does without it.
 * Unmodified programs (tests/progs/hostprog, curlfork, sockprog, python3) under LD_PRELOAD
 * against the test upstream, judged from outside: exit status, output, the server's counts.
 *
 * A destination that never answers a SYN: the upstream started with "--no-accept",
 * "--backlog", "0", its accept queue filled by h_fill_backlog (from the test process, not
 * under the shim). Every program runs with a timeout; every wait is bounded. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static struct h_upstream hang; /* never answers a SYN */
static int fill[8], nfill;
static char port[16], hport[16];

static void start_up(void)
{
	h_start_plain();
	snprintf(port, sizeof(port), "%d", h_up.port);
}

static void start_both(void)
{
	start_up();
	const char *args[] = {"--no-accept", "--backlog", "0", NULL};
	cr_assert_eq(h_upstream_start(&hang, args), 0);
	snprintf(hport, sizeof(hport), "%d", hang.port);
	nfill = h_fill_backlog(&hang, fill, 8);
	cr_assert_geq(nfill, 0, "could not make a destination that never answers");
}

static void stop_all(void)
{
	for (int i = 0; i < nfill; i++)
		close(fill[i]);
	nfill = 0;
	h_upstream_stop(&hang);
	h_stop();
}

static void run(struct h_run *r, const char *const *argv, const char *const *env, int preload, int ms)
{
	cr_assert_eq(h_run(r, argv, env, preload, ms), 0, "could not run %s", argv[0]);
}

/* The number after KEY in S (the first occurrence), or -1. */
static long num_after(const char *s, const char *key)
{
	const char *p = strstr(s, key);
	return p ? strtol(p + strlen(key), NULL, 10) : -1;
}

/* ---------------------------------------------------------- siglongjmp out of connect */

/* A SIGALRM handler that siglongjmps out of a blocking connect the lane times (connect_timeout
 * 5 s): the socket it leaves is as blocking as the app made it, the limit unit goes back with
 * the app's close, and the next attempt at the same destination reaches the kernel again
 * (it hangs until the alarm again) instead of being refused by a queue that lost a unit. */
Test(jump, out_of_a_timed_connect_leaves_no_trace, .init = start_both, .fini = stop_all)
{
	struct h_run a, b;
	const char *env[] = {h_config("[lane default]\nconnect_timeout = 5s\nmax_conns_per_host = 1\n"
				    "queue_timeout = 300ms\n"),
			     NULL};
	const char *argv[] = {"hostprog", "jumpconn", hport, port, NULL};
	run(&a, argv, NULL, 0, 15000);
	run(&b, argv, env, 1, 15000);
	cr_expect(strstr(a.out, "connect1 jumped") && strstr(a.out, "flags1 nonblock=0") &&
			  strstr(a.out, "connect2 jumped"),
		  "without the shim: %s", a.out);
	cr_expect_eq(b.timed_out, 0, "hung: %s", b.out);
	cr_expect_eq(b.status, 0, "%s\n%s", b.out, b.err);
	long ms1 = num_after(b.out, "connect1 jumped ms=");
	cr_expect(ms1 >= 900 && ms1 < 3000, "the first connect hung until the alarm: %s", b.out);
	cr_expect(strstr(b.out, "flags1 nonblock=0") != NULL, "the socket was left non-blocking: %s", b.out);
	cr_expect(strstr(b.out, "connect_ok ok") != NULL, "a routed connect elsewhere works: %s", b.out);
	cr_expect(strstr(b.out, "connect_ok2 err EAGAIN") != NULL,
		  "the thread's connects are still routed (limited) after the jump: %s", b.out);
	long ms2 = num_after(b.out, "connect2 jumped ms=");
	cr_expect(ms2 >= 900 && ms2 < 3000,
		  "the second attempt must reach the kernel and hang until the alarm, like the first "
		  "(not be refused by the limit): %s",
		  b.out);
	cr_expect(strstr(b.out, "connect3 err EAGAIN") != NULL, "the jumped socket holds its unit until closed: %s",
		  b.out);
	/* stderr: only the lane's first-refusal notices (issue 14), nothing else */
	for (const char *l = b.err; *l;) {
		const char *e = strchr(l, '\n');
		size_t n = e ? (size_t)(e - l) : strlen(l);
		cr_expect(memmem(l, n, "max_conns_per_host", 18) != NULL, "unexpected: %.*s", (int)n, l);
		l += n + (e != NULL);
	}
	h_run_free(&a);
	h_run_free(&b);
}

/* A siglongjmp out of a connect that waits in the limit's queue: the close of the connection
 * that holds the unit must not deadlock, and the next connect (same thread) gets the unit at
 * once, not after the queue timeout. */
Test(jump, out_of_the_limit_queue_leaves_no_trace, .init = start_up, .fini = stop_all)
{
	struct h_run r;
	const char *env[] = {h_config("[lane default]\nmax_conns_per_host = 1\nqueue_timeout = 5s\n"), NULL};
	const char *argv[] = {"hostprog", "jumpqueue", port, NULL};
	run(&r, argv, env, 1, 15000);
	cr_expect_eq(r.timed_out, 0, "hung: %s", r.out);
	cr_expect(strstr(r.out, "connectA ok") != NULL, "%s", r.out);
	long jb = num_after(r.out, "connectB jumped ms=");
	cr_expect(jb >= 900 && jb < 3000, "B waited in the queue until the alarm: %s", r.out);
	cr_expect(strstr(r.out, "closeA ok") != NULL, "close after the jump: %s", r.out);
	cr_expect(strstr(r.out, "connectN err EINPROGRESS") != NULL,
		  "a non-blocking connect is not refused for a waiter that left by the jump: %s", r.out);
	long mc = num_after(r.out, "connectC ok ms=");
	cr_expect(mc >= 0 && mc < 1000, "C got the freed unit at once: %s", r.out);
	cr_expect(strstr(r.out, "connectD err EAGAIN") != NULL, "C was routed: it holds the unit: %s", r.out);
	cr_expect_eq(r.status, 0, "%s\n%s", r.out, r.err);
	cr_expect_eq(h_stat(&h_up, "max_open"), 1, "never two connections at once");
	h_run_free(&r);
}

/* The same jump, then a libcurl transfer on that thread: still the shim's (the lane's
 * request_timeout ends a slow request). */
Test(jump, libcurl_after_a_jump_is_still_routed, .init = start_up, .fini = stop_all)
{
	struct h_run r;
	const char *env[] = {h_config("[lane default]\nmax_conns_per_host = 1\nqueue_timeout = 5s\n"
				    "request_timeout = 500ms\n"),
			     NULL};
	const char *argv[] = {"hostprog", "jumpcurl", port, "/delay/2000", NULL};
	run(&r, argv, env, 1, 15000);
	cr_expect_eq(r.timed_out, 0, "hung: %s", r.out);
	cr_expect(strstr(r.out, "connectB jumped") != NULL, "%s", r.out);
	const char *cl = strstr(r.out, "curl code=");
	long code = cl ? num_after(cl, "curl code=") : -1, ms = cl ? num_after(cl, " ms=") : -1;
	cr_expect(code == 28 && ms >= 0 && ms < 1500, "the lane's request_timeout did not apply: %s", r.out);
	h_run_free(&r);
}

/* The other side of the two tests above: a handler that runs (and returns) while its
 * thread waits in a routed connect, and connects itself, gets the kernel's connect (never
 * routed from inside a routed connect); the interrupted connect goes on waiting. */
Test(jump, handler_connect_inside_a_routed_connect_is_the_kernels, .init = start_up, .fini = stop_all)
{
	struct h_run r;
	const char *env[] = {h_config("[lane default]\nmax_conns_per_host = 1\nqueue_timeout = 2s\n"), NULL};
	const char *argv[] = {"hostprog", "nested", port, NULL};
	run(&r, argv, env, 1, 15000);
	cr_expect_eq(r.timed_out, 0, "hung: %s", r.out);
	cr_expect(strstr(r.out, "connectA ok") != NULL, "%s", r.out);
	long ms = num_after(r.out, "connectB err ETIMEDOUT ms=");
	cr_expect(ms >= 1800 && ms < 3500, "B waited its queue timeout: %s", r.out);
	cr_expect(strstr(r.out, "handler connect err EINPROGRESS") != NULL, "%s", r.out);
	h_run_free(&r);
}

/* ---------------------------------------------------------------- SO_SNDTIMEO */

/* The app's SO_SNDTIMEO bounds its blocking connect (EINPROGRESS, as the kernel does), even
 * under a lane whose connect_timeout is much longer. */
Test(sndtimeo, bounds_a_blocking_connect_as_without_the_shim, .init = start_both, .fini = stop_all)
{
	struct h_run a, b;
	const char *env[] = {h_config("[lane default]\nconnect_timeout = 30s\n"), NULL};
	const char *argv[] = {"hostprog", "sndtimeo", hport, "1000", NULL};
	run(&a, argv, NULL, 0, 10000);
	run(&b, argv, env, 1, 10000);
	long ma = num_after(a.out, "connect err EINPROGRESS ms=");
	cr_expect(ma >= 900 && ma < 3000, "without the shim: %s", a.out);
	cr_expect_eq(b.timed_out, 0, "SO_SNDTIMEO ignored: %s", b.out);
	long mb = num_after(b.out, "connect err EINPROGRESS ms=");
	cr_expect(mb >= 900 && mb < 3000, "with the shim, as without: %s", b.out);
	h_run_free(&a);
	h_run_free(&b);
}

/* -------------------------------------------------------------- SA_RESTART */

/* SIGUSR1 (SA_RESTART) interrupts a blocking connect; SIGUSR2 has a handler without
 * SA_RESTART but is never raised. The kernel restarts the connect (no EINTR); so must the
 * shim, whose lane deadline then ends it with ETIMEDOUT. */
Test(sarestart, is_judged_per_signal, .init = start_both, .fini = stop_all)
{
	struct h_run a, b;
	const char *env[] = {h_config("[lane default]\nconnect_timeout = 2s\n"), NULL};
	/* Without the shim nothing else ends the connect: the program's own thread shuts the
	 * socket down after 1.5 s. */
	const char *argv_a[] = {"hostprog", "sarestart", hport, "1500", NULL};
	const char *argv_b[] = {"hostprog", "sarestart", hport, "4000", NULL};
	run(&a, argv_a, NULL, 0, 10000);
	run(&b, argv_b, env, 1, 10000);
	cr_expect(strstr(a.out, "usr1=1 stopped=1") && !strstr(a.out, "EINTR"),
		  "without the shim the kernel restarts the connect: %s", a.out);
	cr_expect(strstr(b.out, "usr1=1") != NULL, "%s", b.out);
	cr_expect(!strstr(b.out, "EINTR"), "EINTR for a signal with SA_RESTART: %s", b.out);
	long ms = num_after(b.out, "connect err ETIMEDOUT ms=");
	cr_expect(ms >= 1800 && ms < 3500, "the lane's deadline ended it: %s", b.out);
	cr_expect(strstr(b.out, "stopped=0") != NULL, "%s", b.out);
	h_run_free(&a);
	h_run_free(&b);
}

/* ------------------------------------------------------------------- vfork */

static const char *limit1 = "[lane default]\nmax_conns_per_host = 1\nqueue_timeout = 200ms\n";

/* A vfork child shares the parent's memory: its closes before _exit/exec (every fd >= 3)
 * must not give back the parent's units, whose sockets stay open in the parent. */
static void vfork_case(const char *how)
{
	struct h_run r;
	start_up();
	const char *env[] = {h_config(limit1), NULL};
	const char *argv[] = {"hostprog", "vfork", port, how, NULL};
	run(&r, argv, env, 1, 10000);
	cr_expect_eq(r.timed_out, 0, "%s: hung: %s", how, r.out);
	cr_expect(strstr(r.out, "connectA ok") != NULL, "%s: %s", how, r.out);
	cr_expect(strstr(r.out, "child exit=0") != NULL, "%s: %s", how, r.out);
	cr_expect(strstr(r.out, "connectB err EAGAIN") != NULL,
		  "%s: the parent's connection still holds the unit: %s", how, r.out);
	cr_expect_eq(h_stat(&h_up, "max_open"), 1, "%s: never two connections at once", how);
	h_run_free(&r);
	h_stop();
}

Test(vfork, child_closefrom_leaves_the_parents_limit) { vfork_case("closefrom"); }
Test(vfork, child_close_loop_leaves_the_parents_limit) { vfork_case("loop"); }
Test(vfork, child_close_range_leaves_the_parents_limit) { vfork_case("close_range"); }

/* Python's subprocess with close_fds=True: vfork (3.10+), close_range in the child, exec. */
Test(vfork, python_subprocess_close_fds, .init = start_up, .fini = stop_all)
{
	const char *py = h_python("import subprocess, socket");
	if (!py)
		cr_skip_test("no python3");
	struct h_run r;
	const char *env[] = {h_config(limit1), NULL};
	const char *script =
		"import errno, socket, subprocess, sys\n"
		"port = int(sys.argv[1])\n"
		"a = socket.create_connection(('127.0.0.1', port))\n"
		"for i in range(3):\n"
		"    subprocess.run(['/bin/true'], close_fds=True, check=True)\n"
		"b = socket.socket()\n"
		"b.setblocking(False)\n"
		"e = b.connect_ex(('127.0.0.1', port))\n"
		"print('second', errno.errorcode.get(e, e), flush=True)\n";
	const char *argv[] = {py, "-c", script, port, NULL};
	run(&r, argv, env, 1, 20000);
	cr_expect_eq(r.status, 0, "%s\n%s", r.out, r.err);
	cr_expect(strstr(r.out, "second EAGAIN") != NULL, "the limit still holds after subprocess.run: %s",
		  r.out);
	h_run_free(&r);
}

/* -------------------------------------------------------------------- fork */

/* A fork child starts with its own accounting: the parent's connections (its own threads'
 * transfers in flight, which do not exist in the child) do not fill the child's limit; the
 * parent stays limited. */
Test(fork, child_has_its_own_accounting, .init = start_up, .fini = stop_all)
{
	struct h_run r;
	const char *env[] = {h_config("[lane default]\nmax_conns_per_host = 2\nqueue_timeout = 200ms\n"), NULL};
	const char *argv[] = {"hostprog", "fork", port, NULL};
	run(&r, argv, env, 1, 10000);
	cr_expect(strstr(r.out, "connectA ok") && strstr(r.out, "connectB ok"), "%s", r.out);
	cr_expect(strstr(r.out, "child connectC err EINPROGRESS") != NULL, "the child may connect: %s", r.out);
	cr_expect(strstr(r.out, "child exit=0") != NULL, "%s", r.out);
	cr_expect(strstr(r.out, "parent connectD err EAGAIN") != NULL, "the parent stays limited: %s", r.out);
	cr_expect_eq(r.status, 0, "%s", r.err);
	h_run_free(&r);
}

/* libcurl: two threads with transfers in flight (the server holds them 3 s) when the
 * program forks. The child's transfer is not queued behind units that only the parent's
 * threads will ever give back; the parent's is (it fails after the queue timeout). */
Test(fork, curl_transfers_in_flight_at_the_fork, .init = start_up, .fini = stop_all)
{
	struct h_run r;
	char slow[128], fast[128];
	snprintf(slow, sizeof(slow), "http://127.0.0.1:%d/delay/3000", h_up.port);
	snprintf(fast, sizeof(fast), "http://127.0.0.1:%d/", h_up.port);
	const char *env[] = {h_config("[lane default]\nmax_conns_per_host = 2\nqueue_timeout = 500ms\n"), NULL};
	const char *argv[] = {"curlfork", slow, fast, "2", NULL};
	run(&r, argv, env, 1, 20000);
	cr_expect_eq(r.timed_out, 0, "%s", r.out);
	cr_expect(strstr(r.out, "child code=0 status=200") != NULL, "the child's transfer: %s\n%s", r.out, r.err);
	long busy = num_after(r.out, "parent_busy code=");
	cr_expect(busy > 0, "the parent is still at its limit while its transfers run: %s", r.out);
	cr_expect_eq(h_count_str(r.out, "slow code=0"), 2, "%s", r.out);
	cr_expect(strstr(r.out, "parent_after code=0") != NULL, "%s", r.out);
	cr_expect_eq(h_stat(&h_up, "path_delay"), 2);
	h_run_free(&r);
}

/* ---------------------------------------------------------------- log FIFO */

/* CONNROUTE_LOG_FILE naming a FIFO nobody reads: the program is not held in the constructor
 * (opening a FIFO for writing blocks until a reader comes); one warning names the file and
 * the lines go to stderr. */
Test(logfile, fifo_without_a_reader_never_blocks, .init = start_up, .fini = stop_all)
{
	struct h_run r;
	char fifo[400], envf[450];
	snprintf(fifo, sizeof(fifo), "%s/log.fifo", h_dir);
	cr_assert_eq(mkfifo(fifo, 0600), 0);
	snprintf(envf, sizeof(envf), "CONNROUTE_LOG_FILE=%s", fifo);
	const char *env[] = {h_config("[lane default]\nconnect_timeout = 1s\n"), envf, "CONNROUTE_LOG=info", NULL};
	char c[64];
	snprintf(c, sizeof(c), "connect=a@127.0.0.1:%d", h_up.port);
	const char *argv[] = {"sockprog", "tcp=a", c, NULL};
	run(&r, argv, env, 1, 5000);
	cr_expect_eq(r.timed_out, 0, "the program hung (in the constructor?)");
	cr_expect_eq(r.status, 0, "%s", r.err);
	cr_expect(strstr(r.out, "connect a ok") != NULL, "%s", r.out);
	cr_expect_eq(h_count_str(r.err, fifo), 1, "one warning naming the file: %s", r.err);
	cr_expect(strstr(r.err, "ready") != NULL, "the log lines went to stderr: %s", r.err);
	h_run_free(&r);
	unlink(fifo);
}

/* A FIFO with a reader is not written to either: only a regular file or a character
 * device is (a FIFO's reader can stop reading and block every log line). */
Test(logfile, fifo_with_a_reader_is_not_written, .init = start_up, .fini = stop_all)
{
	struct h_run r;
	char fifo[400], envf[450];
	snprintf(fifo, sizeof(fifo), "%s/log.fifo", h_dir);
	cr_assert_eq(mkfifo(fifo, 0600), 0);
	int rd = open(fifo, O_RDONLY | O_NONBLOCK);
	cr_assert_geq(rd, 0);
	snprintf(envf, sizeof(envf), "CONNROUTE_LOG_FILE=%s", fifo);
	const char *env[] = {h_config("[lane default]\nconnect_timeout = 1s\n"), envf, "CONNROUTE_LOG=info", NULL};
	const char *argv[] = {"sockprog", "fdcount", NULL};
	run(&r, argv, env, 1, 5000);
	cr_expect_eq(r.timed_out, 0);
	cr_expect_eq(r.status, 0, "%s", r.err);
	char buf[512];
	ssize_t n = read(rd, buf, sizeof(buf) - 1);
	if (n > 0)
		buf[n] = '\0';
	cr_expect(n <= 0, "the FIFO was written: %.*s", (int)(n > 0 ? n : 0), buf);
	cr_expect(strstr(r.err, "ready") != NULL, "the lines went to stderr: %s", r.err);
	cr_expect_eq(h_count_str(r.err, fifo), 1, "one warning naming the file: %s", r.err);
	close(rd);
	h_run_free(&r);
	unlink(fifo);
}

/* -------------------------------------------------- a program in the background */

struct bgrun {
	pthread_t t;
	const char *const *argv;
	const char *const *env;
	int preload;
	int timeout_ms;
	struct h_run r;
	int rc;
};

static void *bgrun_main(void *arg)
{
	struct bgrun *b = arg;
	b->rc = h_run(&b->r, b->argv, b->env, b->preload, b->timeout_ms);
	return NULL;
}

static void bg_start(struct bgrun *b)
{
	cr_assert_eq(pthread_create(&b->t, NULL, bgrun_main, b), 0);
}

static void bg_join(struct bgrun *b)
{
	pthread_join(b->t, NULL);
	cr_assert_eq(b->rc, 0, "could not run %s", b->argv[0]);
}

/* Waits up to MS for PATH to exist. */
static int wait_file(const char *path, int ms)
{
	for (int i = 0; i < ms / 10; i++) {
		if (access(path, F_OK) == 0)
			return 0;
		h_sleep_ms(10);
	}
	return -1;
}

/* Waits (10 s) for DIR/m-<pid>.sock: the program's metrics endpoint. */
static int wait_metrics(char *path, size_t n)
{
	for (int i = 0; i < 1000; i++) {
		DIR *d = opendir(h_dir);
		struct dirent *e;
		int found = 0;
		while (d && (e = readdir(d)))
			if (!strncmp(e->d_name, "m-", 2) && strstr(e->d_name, ".sock")) {
				int w = snprintf(path, n, "%s/%s", h_dir, e->d_name);
				found = w > 0 && (size_t)w < n;
			}
		if (d)
			closedir(d);
		if (found)
			return 0;
		h_sleep_ms(10);
	}
	return -1;
}

/* The value of the sample SERIES exactly; -1 if absent. */
static double mval(const char *text, const char *series)
{
	size_t n = strlen(series);
	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (!strncmp(p, series, n) && p[n] == ' ')
			return strtod(p + n + 1, NULL);
	return -1;
}

/* ------------------------------------------------------------- config watcher */

static void write_all(int fd, const char *s)
{
	size_t n = strlen(s);
	cr_assert_eq(write(fd, s, n), (ssize_t)n);
}

/* The config rewritten in place (O_TRUNC, then written in two parts 500 ms apart: the first
 * part is itself a valid config), ten times, always ending with the same bytes: the watcher
 * (one look a second) must never apply the half-written file, nor re-apply the same bytes. */
Test(watcher, in_place_rewrites_of_the_same_bytes_apply_nothing, .init = start_up, .fini = stop_all)
{
	char first[600], full[700], cfg[400], stop[400], sock[400], spec[420], envc[450];
	snprintf(first, sizeof(first), "[global]\nmetrics = unix:%s/m-%%p.sock\n[lane default]\nconnect_timeout = 2s\n",
		 h_dir);
	const char *rest = "max_conns_per_host = 50\n";
	snprintf(full, sizeof(full), "%s%s", first, rest);
	snprintf(stop, sizeof(stop), "%s/stop", h_dir);
	cr_assert_eq(h_write_file(h_dir, "connroute.conf", full, cfg, sizeof(cfg)), 0);
	snprintf(envc, sizeof(envc), "CONNROUTE_CONFIG=%s", cfg);
	const char *env[] = {envc, NULL};
	const char *argv[] = {"hostprog", "hold", port, stop, "40000", NULL};
	struct bgrun b = {.argv = argv, .env = env, .preload = 1, .timeout_ms = 45000};
	bg_start(&b);
	cr_assert_eq(wait_metrics(sock, sizeof(sock)), 0, "no metrics endpoint appeared");
	h_sleep_ms(1200); /* the watcher has looked at the original once */

	for (int i = 0; i < 10; i++) {
		int fd = open(cfg, O_WRONLY | O_TRUNC);
		cr_assert_geq(fd, 0);
		write_all(fd, first);
		h_sleep_ms(500);
		write_all(fd, rest);
		close(fd);
		h_sleep_ms(700);
	}
	h_sleep_ms(2500); /* two looks at the final (original) bytes */

	snprintf(spec, sizeof(spec), "unix:%s", sock);
	char cli[400];
	snprintf(cli, sizeof(cli), "%s/connroute", h_build());
	const char *cargv[] = {cli, "stats", "--raw", spec, NULL};
	struct h_run s;
	run(&s, cargv, NULL, 0, 10000);
	cr_expect_eq(s.status, 0, "%s", s.err);
	double ok = mval(s.out, "connroute_config_reloads_total{result=\"ok\"}");
	double bad = mval(s.out, "connroute_config_reloads_total{result=\"error\"}");
	cr_expect_eq(ok, 0, "reloads applied while the file was rewritten with the same bytes: %.0f", ok);
	cr_expect_eq(bad, 0, "%.0f", bad);
	h_run_free(&s);

	int fd = open(stop, O_WRONLY | O_CREAT, 0644);
	close(fd);
	bg_join(&b);
	cr_expect_eq(b.r.timed_out, 0);
	cr_expect(strstr(b.r.out, "hold done") != NULL, "%s\n%s", b.r.out, b.r.err);
	h_run_free(&b.r);
}

/* ------------------------------------------------------- relative config + chdir */

/* CONNROUTE_CONFIG=conf, relative to the directory the program started in; the program
 * chdir("/")s (as a daemon does), then the file is replaced with one that limits the
 * destination to 1 connection: the reload must happen (a second non-blocking connect is
 * refused with EAGAIN) within 5 s. */
Test(watcher, relative_config_survives_chdir, .init = start_up, .fini = stop_all)
{
	char cfg[400], mark[400], tmp[400], pre[400], prog[400];
	cr_assert_eq(h_write_file(h_dir, "conf", "[lane default]\nconnect_timeout = 2s\n", cfg, sizeof(cfg)), 0);
	snprintf(mark, sizeof(mark), "%s/chdir-done", h_dir);
	snprintf(pre, sizeof(pre), "LD_PRELOAD=%s/libconnroute.so", h_build());
	snprintf(prog, sizeof(prog), "%s/progs/hostprog", h_build());
	/* env -C: the program starts in DIR; LD_PRELOAD is set for the program only. */
	const char *argv[] = {"env", "-C", h_dir, pre, "CONNROUTE_CONFIG=conf", prog, "chdir", port, mark, "8000", NULL};
	struct bgrun b = {.argv = argv, .env = NULL, .preload = 0, .timeout_ms = 15000};
	bg_start(&b);
	cr_assert_eq(wait_file(mark, 10000), 0, "the program did not start");
	cr_assert_eq(h_write_file(h_dir, "conf.new", "[lane default]\nconnect_timeout = 2s\nmax_conns_per_host = 1\n",
				  tmp, sizeof(tmp)),
		     0);
	long long t0 = h_now_ms();
	cr_assert_eq(rename(tmp, cfg), 0);
	bg_join(&b);
	long long took = h_now_ms() - t0;
	cr_expect_eq(b.r.timed_out, 0);
	cr_expect(strstr(b.r.out, "connect ok") != NULL, "%s\n%s", b.r.out, b.r.err);
	cr_expect(strstr(b.r.out, "refused after") != NULL && took < 5500,
		  "the new config was never applied after chdir (%lld ms): %s\n%s", took, b.r.out, b.r.err);
	h_run_free(&b.r);
}

/* ------------------------------------------------------------ control characters */

/* An invalid CONNROUTE_KEY with a newline and a terminal escape: connroute says so in one
 * line, and the key cannot forge a second line or colour the terminal. */
Test(logs, key_with_control_bytes_is_quoted_in_one_line, .init = start_up, .fini = stop_all)
{
	struct h_run r;
	const char *env[] = {"CONNROUTE_KEY=bad\nconnroute[1]: error: forged line\x1b[31m red", NULL};
	char c[64];
	snprintf(c, sizeof(c), "connect=a@127.0.0.1:%d", h_up.port);
	const char *argv[] = {"sockprog", "tcp=a", c, NULL};
	run(&r, argv, env, 1, 5000);
	cr_expect_eq(r.status, 0, "%s", r.err);
	cr_expect(strstr(r.out, "connect a ok") != NULL, "%s", r.out);
	cr_expect(strstr(r.err, "CONNROUTE_KEY") != NULL, "%s", r.err);
	cr_expect_eq(h_count_str(r.err, "\n"), 1, "exactly one line: [%s]", r.err);
	cr_expect(r.err_len > 0 && r.err[r.err_len - 1] == '\n', "[%s]", r.err);
	cr_expect_null(memchr(r.err, 0x1b, r.err_len), "an ESC byte reached stderr");
	h_run_free(&r);
}
