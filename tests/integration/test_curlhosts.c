/* libcurl hosts that broke under the shim (issue 11, items 3, 4, 5 and 7): unmodified
 * programs (tests/progs/curlhosts, tests/progs/plughost) run with and without LD_PRELOAD,
 * judged from outside: what they printed, their exit status, and what the server saw (the
 * test upstream's counters; the FTP server's log of connections and QUIT commands).
 *
 * Pattern: the run without the shim first shows what libcurl itself does; the run under
 * the shim must show the same. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

/* Closes idle connections after 150 ms: a pooled connection is dead at its next use, and
 * the handle that finds it so closes it. */
static void start_short_idle(void)
{
	const char *args[] = {"--idle-timeout-ms", "150", NULL};
	h_start_with(args);
}

/* ------------------------------------------------ item 3: the app's closesocket callback */

/* libcurl runs a handle's CURLOPT_CLOSESOCKETFUNCTION inside that handle's
 * curl_easy_cleanup, once per connection it made; the app may free the callback's data
 * right after. Under the shim the program must print exactly what it prints without. */
static void closecb_case(const char *const *env, const char *pause_ms, const char *mixed)
{
	struct h_run a, b;
	const char *argv[] = {"curlhosts", "closecb", h_path_url("/"), "4", pause_ms, mixed, NULL};
	h_run_ok(&a, argv, env, 0, 30000);
	cr_assert_eq(a.status, 0, "%s", a.err);
	cr_assert_eq(h_count_str(a.out, "rc=0\n"), 4, "%s", a.out);
	cr_assert_eq(h_count_str(a.out, "closesocket ctx="), mixed ? 2 : 4, "%s", a.out);
	h_run_ok(&b, argv, env, 1, 30000);
	cr_expect_eq(b.status, 0, "%s", b.err);
	cr_expect_eq(h_count_str(b.out, "FREED"), 0, "a close callback ran with freed data:\n%s", b.out);
	cr_expect_str_eq(b.out, a.out, "under the shim:\n%s\nwithout:\n%s", b.out, a.out);
	h_run_free(&a);
	h_run_free(&b);
}

Test(curlhosts_closecb, runs_inside_its_handles_cleanup_without_a_config, .init = h_start_plain, .fini = h_stop)
{
	closecb_case(NULL, "0", NULL);
}

Test(curlhosts_closecb, runs_inside_its_handles_cleanup_with_a_config, .init = h_start_plain, .fini = h_stop)
{
	const char *env[] = {h_config("[lane default]\nmax_idle_per_host = 4\nconnect_timeout = 2s\n"), NULL};
	closecb_case(env, "0", NULL);
}

/* Handles with and without a callback in turn, and a server that closes idle connections:
 * a connection of a callback handle left in a pool would be found dead by the next handle
 * and closed through the callback of a context already freed. */
Test(curlhosts_closecb, never_runs_after_the_app_freed_its_data, .init = start_short_idle, .fini = h_stop)
{
	closecb_case(NULL, "300", "mixed");
}

/* ---------------------------------------------------- item 4: handles attached to a multi */

/* curl_easy_cleanup of a handle still attached to a multi (libcurl detaches it first) must
 * not hand the same handle, still attached, to the next curl_easy_init: that handle's
 * perform must succeed, and the abandoned transfer must not go on and write its body. */
Test(curlhosts_multi, cleanup_while_attached_frees_the_handle, .init = h_start_plain, .fini = h_stop)
{
	struct h_run a, b;
	const char *argv[] = {"curlhosts", "multi", h_path_url("/delay/600"), h_path_url("/conn"), NULL};
	h_run_ok(&a, argv, NULL, 0, 30000);
	cr_assert_eq(a.status, 0, "%s", a.err);
	cr_assert(strstr(a.out, "perform2 rc=0\n") != NULL, "%s", a.out);
	cr_assert(strstr(a.out, "body: ok") == NULL, "%s", a.out);
	h_run_ok(&b, argv, NULL, 1, 30000);
	cr_expect_eq(b.status, 0, "%s", b.err);
	cr_expect(strstr(b.out, "perform2 rc=0\n") != NULL, "%s", b.out);
	cr_expect(strstr(b.out, "t2 body: conn=") != NULL, "%s", b.out);
	cr_expect(strstr(b.out, "body: ok") == NULL, "the abandoned transfer went on:\n%s", b.out);
	cr_expect(strstr(b.out, "t1 body") == NULL, "%s", b.out);
	h_run_free(&a);
	h_run_free(&b);
}

/* curl_multi_cleanup leaves its easy handles alone (detached): they perform, are cleaned
 * up and, recycled or not, the next handle works. */
Test(curlhosts_multi, multi_cleanup_leaves_its_handles_usable, .init = h_start_plain, .fini = h_stop)
{
	struct h_run a, b;
	const char *argv[] = {"curlhosts", "multicleanup", h_path_url("/conn"), NULL};
	h_run_ok(&a, argv, NULL, 0, 30000);
	cr_assert_eq(a.status, 0, "%s", a.err);
	cr_assert(strstr(a.out, "perform1 rc=0\n") && strstr(a.out, "perform2 rc=0\n"), "%s", a.out);
	h_run_ok(&b, argv, NULL, 1, 30000);
	cr_expect_eq(b.status, 0, "%s", b.err);
	cr_expect(strstr(b.out, "perform1 rc=0\n") != NULL, "%s", b.out);
	cr_expect(strstr(b.out, "perform2 rc=0\n") != NULL, "%s", b.out);
	cr_expect(strstr(b.out, "t0 body") == NULL, "%s", b.out);
	h_run_free(&a);
	h_run_free(&b);
}

/* A handle that performed through the easy interface (its share stays parked on it under
 * the shim) and is then added to a multi: the multi must see exactly the app's handle, so
 * its transfer uses the multi's own connection cache (a new connection, req=1) as without
 * the shim, never the lane's pooled one (req=2), which another thread could take from the
 * handle while the multi drives it. */
static void permulti_case(const char *const *env)
{
	struct h_run a, b;
	const char *argv[] = {"curlhosts", "permulti", h_path_url("/conn"), NULL};
	h_run_ok(&a, argv, env, 0, 30000);
	cr_assert_eq(a.status, 0, "%s", a.err);
	cr_assert(strstr(a.out, "perform1 rc=0\n") && strstr(a.out, "multi running=0 rc=0\n"), "%s", a.out);
	cr_assert_eq(h_count_str(a.out, "req=1\n"), 2, "without the shim:\n%s", a.out);
	h_run_ok(&b, argv, env, 1, 30000);
	cr_expect_eq(b.status, 0, "%s", b.err);
	cr_expect(strstr(b.out, "perform1 rc=0\n") && strstr(b.out, "multi running=0 rc=0\n"), "%s", b.out);
	cr_expect_eq(h_count_str(b.out, "req=1\n"), 2, "the multi's transfer used the lane's connection:\n%s",
		     b.out);
	h_run_free(&a);
	h_run_free(&b);
}

Test(curlhosts_multi, added_after_a_perform_uses_the_multis_connections, .init = h_start_plain, .fini = h_stop)
{
	permulti_case(NULL);
}

Test(curlhosts_multi, added_after_a_perform_uses_the_multis_connections_with_a_config, .init = h_start_plain,
     .fini = h_stop)
{
	const char *env[] = {h_config("[lane default]\nmax_idle_per_host = 4\nconnect_timeout = 2s\n"), NULL};
	permulti_case(env);
}

/* ---------------------------------------------- item 5: plugins with different libcurls */

/* A host dlopens a plugin linked with libcurl.so.4 (OpenSSL), uses it, dlcloses it, then
 * dlopens one linked with libcurl-gnutls.so.4 that lands at the same address. Each
 * plugin's handles must be made and performed by its own libcurl: the GnuTLS plugin sets
 * a GnuTLS priority string, which the OpenSSL libcurl rejects (CURLE_SSL_CIPHER). */
Test(curlhosts_plugins, a_plugin_at_a_reused_address_gets_its_own_libcurl, .init = h_start_tls, .fini = h_stop)
{
	char p1[400], p2[400];
	snprintf(p1, sizeof(p1), "%s/progs/libplug_openssl.so", h_build());
	snprintf(p2, sizeof(p2), "%s/progs/libplug_gnutls.so", h_build());
	struct h_run a, b;
	const char *argv[] = {"plughost", h_path_url("/"), h_up.cert, p1, p2, NULL};
	h_run_ok(&a, argv, NULL, 0, 30000);
	cr_assert_eq(a.status, 0, "%s\n%s", a.out, a.err);
	cr_assert(strstr(a.out, "plugin ssl=openssl rc=0\n") && strstr(a.out, "plugin ssl=gnutls rc=0\n"), "%s",
		  a.out);
	/* The scenario needs the second plugin where the first one was. */
	cr_assert(strstr(a.out, "loaded 2 same_address=1\n") != NULL,
		  "the loader put the second plugin elsewhere: the scenario did not happen\n%s", a.out);
	h_run_ok(&b, argv, NULL, 1, 30000);
	cr_expect(strstr(b.out, "loaded 2 same_address=1\n") != NULL, "%s", b.out);
	cr_expect(strstr(b.out, "plugin ssl=openssl rc=0\n") != NULL, "%s\n%s", b.out, b.err);
	cr_expect(strstr(b.out, "plugin ssl=gnutls rc=0\n") != NULL, "%s\n%s", b.out, b.err);
	cr_expect_eq(b.status, 0, "%s\n%s", b.out, b.err);
	cr_expect_eq(h_stat(&h_up, "tls_failed"), 0);
	h_run_free(&a);
	h_run_free(&b);
}

/* Each plugin loaded twice in turn: every copy of the cache is dropped at each unload. */
Test(curlhosts_plugins, alternating_plugins, .init = h_start_tls, .fini = h_stop)
{
	char p1[400], p2[400];
	snprintf(p1, sizeof(p1), "%s/progs/libplug_openssl.so", h_build());
	snprintf(p2, sizeof(p2), "%s/progs/libplug_gnutls.so", h_build());
	struct h_run b;
	const char *argv[] = {"plughost", h_path_url("/"), h_up.cert, p1, p2, p1, p2, NULL};
	h_run_ok(&b, argv, NULL, 1, 30000);
	cr_expect_eq(b.status, 0, "%s\n%s", b.out, b.err);
	cr_expect_eq(h_count_str(b.out, "plugin ssl=openssl rc=0\n"), 2, "%s", b.out);
	cr_expect_eq(h_count_str(b.out, "plugin ssl=gnutls rc=0\n"), 2, "%s", b.out);
	h_run_free(&b);
}

/* ------------------------------------------------------- item 7: pooled connections at exit */

/* A local FTP server (Debian: python3-pyftpdlib) that logs "connect" for every connection
 * and "QUIT" for every QUIT command it receives; "mute": it never answers a QUIT (a peer
 * gone silent), so a client waits for the answer as long as its response timeout. */
static const char ftpd_script[] =
	"import logging, os, sys, time\n"
	"from pyftpdlib.authorizers import DummyAuthorizer\n"
	"from pyftpdlib.handlers import FTPHandler\n"
	"from pyftpdlib.servers import FTPServer\n"
	"root, portfile, logfile, maxsecs = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])\n"
	"mute = len(sys.argv) > 5 and sys.argv[5] == 'mute'\n"
	"logging.basicConfig(level=logging.CRITICAL)\n"
	"def note(what):\n"
	"    with open(logfile, 'a') as f:\n"
	"        f.write(what + '\\n')\n"
	"class Handler(FTPHandler):\n"
	"    def on_connect(self):\n"
	"        note('connect')\n"
	"    def ftp_QUIT(self, line):\n"
	"        note('QUIT')\n"
	"        if not mute:\n"
	"            return FTPHandler.ftp_QUIT(self, line)\n"
	"auth = DummyAuthorizer()\n"
	"auth.add_anonymous(root)\n"
	"Handler.authorizer = auth\n"
	"server = FTPServer(('127.0.0.1', 0), Handler)\n"
	"with open(portfile + '.tmp', 'w') as f:\n"
	"    f.write('%d\\n' % server.socket.getsockname()[1])\n"
	"os.rename(portfile + '.tmp', portfile)\n"
	"end = time.monotonic() + maxsecs\n"
	"while time.monotonic() < end:\n"
	"    server.serve_forever(timeout=0.1, blocking=False)\n"
	"server.close_all()\n";

static pid_t ftpd_pid;
static int ftpd_port;
static char ftpd_dir[256], ftpd_log[400];

static void ftpd_start_as(const char *mode)
{
	const char *py = h_python("import pyftpdlib");
	if (!py)
		cr_skip_test("pyftpdlib is not installed (Debian: python3-pyftpdlib)");
	snprintf(ftpd_dir, sizeof(ftpd_dir), "%s", h_up.dir); /* removed with the upstream */
	char script[400], root[300], portfile[300];
	cr_assert_eq(h_write_file(ftpd_dir, "ftpd.py", ftpd_script, script, sizeof(script)), 0);
	snprintf(root, sizeof(root), "%s/ftproot", ftpd_dir);
	cr_assert_eq(mkdir(root, 0755), 0);
	for (int i = 1; i <= 8; i++) {
		char name[32], text[32];
		snprintf(name, sizeof(name), "file%d.txt", i);
		snprintf(text, sizeof(text), "file %d\n", i);
		cr_assert_eq(h_write_file(root, name, text, NULL, 0), 0);
	}
	snprintf(portfile, sizeof(portfile), "%s/ftpd.port", ftpd_dir);
	snprintf(ftpd_log, sizeof(ftpd_log), "%s/ftpd.log", ftpd_dir);
	ftpd_pid = fork();
	cr_assert_geq(ftpd_pid, 0);
	if (ftpd_pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execl(py, py, script, root, portfile, ftpd_log, "60", mode, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 1000; i++) {
		char *p = h_read_file(portfile);
		if (p) {
			ftpd_port = atoi(p);
			free(p);
			return;
		}
		usleep(10000);
	}
	cr_assert_fail("the FTP server did not start");
}

static void ftpd_start(void)
{
	ftpd_start_as("answer");
}

static void ftpd_stop(void)
{
	if (ftpd_pid > 0) {
		kill(ftpd_pid, SIGKILL);
		waitpid(ftpd_pid, NULL, 0);
		ftpd_pid = 0;
	}
}

/* Lines WHAT in the server's log, once it has been quiet for a moment (it writes a QUIT
 * when it reads it, which may be just after the client exited). */
static int ftpd_count(const char *what)
{
	int n = -1, same = 0;
	for (int i = 0; i < 100 && same < 5; i++) {
		char *log = h_read_file(ftpd_log);
		char line[64];
		snprintf(line, sizeof(line), "%s\n", what);
		int k = log ? h_count_str(log, line) : 0;
		free(log);
		same = k == n ? same + 1 : 0;
		n = k;
		usleep(20000);
	}
	return n;
}

static void ftpd_forget(void)
{
	unlink(ftpd_log);
}

/* The upstream serves the slow transfer of the in-flight case, and its temp dir holds the
 * FTP server's files and the config. */
static void ftp_start(void)
{
	h_start_plain();
}

static void ftp_stop(void)
{
	ftpd_stop();
	h_stop();
}

/* An FTP client that makes a handle per file: without the shim each curl_easy_cleanup
 * closes its connection with a QUIT. Under the shim the connections are pooled, so there
 * are fewer of them, but each must still end with a QUIT: at exit (or at
 * curl_global_cleanup), the pools are closed by libcurl as the app's cleanup would have. */
static void ftp_case(const char *const *env, const char *extra)
{
	char base[64];
	ftpd_start();
	snprintf(base, sizeof(base), "ftp://127.0.0.1:%d", ftpd_port);
	struct h_run a, b;
	const char *argv[] = {"curlhosts", "ftp", base, "5", extra, NULL};
	h_run_ok(&a, argv, env, 0, 30000);
	cr_assert_eq(a.status, 0, "%s", a.err);
	cr_assert_eq(h_count_str(a.out, "rc=0 bytes=7\n"), 5, "%s", a.out);
	cr_assert_eq(ftpd_count("connect"), 5);
	cr_assert_eq(ftpd_count("QUIT"), 5, "without the shim every connection sends a QUIT");
	ftpd_forget();
	h_run_ok(&b, argv, env, 1, 30000);
	cr_expect_eq(b.status, 0, "%s", b.err);
	cr_expect_eq(h_count_str(b.out, "rc=0 bytes=7\n"), 5, "%s", b.out);
	int conns = ftpd_count("connect"), quits = ftpd_count("QUIT");
	cr_expect_geq(conns, 1);
	cr_expect_eq(quits, conns, "%d connections, %d QUITs under the shim", conns, quits);
	cr_expect_lt(b.secs, 5.0, "exit took %.1f s", b.secs);
	h_run_free(&a);
	h_run_free(&b);
}

Test(curlhosts_exit, ftp_connections_get_their_quit_at_exit, .init = ftp_start, .fini = ftp_stop, .timeout = 60)
{
	ftp_case(NULL, NULL);
}

Test(curlhosts_exit, ftp_connections_get_their_quit_at_global_cleanup, .init = ftp_start, .fini = ftp_stop,
     .timeout = 60)
{
	ftp_case(NULL, "global");
}

Test(curlhosts_exit, ftp_connections_get_their_quit_with_a_config, .init = ftp_start, .fini = ftp_stop,
     .timeout = 60)
{
	const char *env[] = {h_config("[lane default]\nmax_idle_per_host = 2\nconnect_timeout = 2s\n"), NULL};
	ftp_case(env, NULL);
}

/* Another thread is still performing when main returns: the shim must not get in the
 * way of the exit (no hang, no crash, the host's exit status). */
Test(curlhosts_exit, exit_with_a_transfer_in_flight_is_prompt, .init = ftp_start, .fini = ftp_stop,
     .timeout = 60)
{
	char base[64], inflight[300];
	ftpd_start();
	snprintf(base, sizeof(base), "ftp://127.0.0.1:%d", ftpd_port);
	/* the transfer would end after 20 s: an exit that waited for it is far past the
	 * bound below, which leaves a loaded machine room (3 s of 5 s was too close) */
	snprintf(inflight, sizeof(inflight), "inflight=%s", h_path_url("/delay/20000"));
	struct h_run b;
	const char *argv[] = {"curlhosts", "ftp", base, "3", inflight, NULL};
	h_run_ok(&b, argv, NULL, 1, 30000);
	cr_expect_eq(b.status, 0, "%s", b.err);
	cr_expect(strstr(b.out, "exit\n") != NULL, "%s", b.out);
	cr_expect_lt(b.secs, 8.0, "exit took %.1f s", b.secs);
	h_run_free(&b);
}

/* A server that never answers the QUIT: closing the pools at exit is bounded in time (the
 * QUIT is sent; its answer is awaited 1 s, not libcurl's default of 120 s, which the app's
 * own cleanups would each have waited without the shim). */
Test(curlhosts_exit, closing_the_pools_at_exit_is_bounded, .init = ftp_start, .fini = ftp_stop, .timeout = 60)
{
	char base[64];
	ftpd_start_as("mute");
	snprintf(base, sizeof(base), "ftp://127.0.0.1:%d", ftpd_port);
	struct h_run b;
	const char *argv[] = {"curlhosts", "ftp", base, "3", NULL};
	/* FTP is pooled only when the lane says so (docs/INTERNALS.md, "Pooled schemes") */
	const char *env[] = {h_config("[lane default]\npool_schemes = *\n"), NULL};
	cr_assert_eq(h_run(&b, argv, env, 1, 10000), 0);
	cr_expect_eq(b.timed_out, 0, "exit hung");
	cr_expect_eq(b.status, 0, "%s", b.err);
	cr_expect_eq(h_count_str(b.out, "rc=0 bytes=7\n"), 3, "%s", b.out);
	cr_expect_lt(b.secs, 4.0, "exit took %.1f s", b.secs);
	int conns = ftpd_count("connect");
	cr_expect_geq(conns, 1);
	cr_expect_eq(ftpd_count("QUIT"), conns);
	h_run_free(&b);
}
