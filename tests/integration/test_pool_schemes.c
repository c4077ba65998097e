/* pool_schemes (docs/INTERNALS.md, "Pooled schemes"): a session protocol's connection is
 * the app's client, ended by its curl_easy_cleanup, never pooled across handles unless the
 * lane says so. tests/progs/ftpsess (a plain libcurl program) against an FTP server that
 * serves ONE session at a time (as curl's own test FTP server does: its test 575 hung
 * under the shim) and logs "connect N", "login N", "quit N", "close N". Judged from
 * outside: the program's output and exit status, the server's log. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

/* One session at a time: the next connection waits in the listen backlog (its greeting
 * too) until the current session ends. Passive mode (EPSV, PASV), RETR of any path. */
static const char ftpd_script[] =
	"import os, socket, sys, time\n"
	"portfile, logfile, maxsecs = sys.argv[1], sys.argv[2], float(sys.argv[3])\n"
	"DATA = b'0123456789\\n'\n"
	"def note(s):\n"
	"    with open(logfile, 'a') as f:\n"
	"        f.write(s + '\\n')\n"
	"def serve(c, n):\n"
	"    c.settimeout(maxsecs)\n"
	"    f = c.makefile('rwb', buffering=0)\n"
	"    def say(s):\n"
	"        c.sendall(s.encode() + b'\\r\\n')\n"
	"    say('220 one session at a time')\n"
	"    dl = None\n"
	"    while True:\n"
	"        line = f.readline()\n"
	"        if not line:\n"
	"            return\n"
	"        parts = line.decode().strip().split(' ', 1)\n"
	"        cmd = parts[0].upper()\n"
	"        if cmd == 'USER': say('331 password')\n"
	"        elif cmd == 'PASS':\n"
	"            note('login %d' % n); say('230 in')\n"
	"        elif cmd == 'PWD': say('257 \"/\"')\n"
	"        elif cmd == 'CWD': say('250 ok')\n"
	"        elif cmd == 'TYPE': say('200 ok')\n"
	"        elif cmd in ('EPSV', 'PASV'):\n"
	"            dl = socket.socket(); dl.bind(('127.0.0.1', 0)); dl.listen(1)\n"
	"            p = dl.getsockname()[1]\n"
	"            if cmd == 'EPSV': say('229 passive (|||%d|)' % p)\n"
	"            else: say('227 passive (127,0,0,1,%d,%d)' % (p >> 8, p & 255))\n"
	"        elif cmd == 'SIZE': say('213 %d' % len(DATA))\n"
	"        elif cmd == 'RETR' and dl:\n"
	"            say('150 here')\n"
	"            dl.settimeout(5); d, _ = dl.accept(); dl.close(); dl = None\n"
	"            d.sendall(DATA); d.close()\n"
	"            say('226 done')\n"
	"        elif cmd == 'QUIT':\n"
	"            note('quit %d' % n); say('221 bye'); return\n"
	"        else: say('502 no')\n"
	"srv = socket.socket()\n"
	"srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
	"srv.bind(('127.0.0.1', 0)); srv.listen(16); srv.settimeout(0.2)\n"
	"with open(portfile + '.tmp', 'w') as f:\n"
	"    f.write('%d\\n' % srv.getsockname()[1])\n"
	"os.rename(portfile + '.tmp', portfile)\n"
	"end = time.monotonic() + maxsecs\n"
	"n = 0\n"
	"while time.monotonic() < end:\n"
	"    try:\n"
	"        c, _ = srv.accept()\n"
	"    except socket.timeout:\n"
	"        continue\n"
	"    n += 1\n"
	"    note('connect %d' % n)\n"
	"    try:\n"
	"        serve(c, n)\n"
	"    except Exception:\n"
	"        pass\n"
	"    c.close()\n"
	"    note('close %d' % n)\n";

static pid_t ftpd_pid;
static char ftpd_url[128], ftpd_log[400];

static void ftpd_start(void)
{
	h_start_plain(); /* its temp dir holds the server's files and the config */
	const char *py = h_python("import socket");
	if (!py)
		cr_skip_test("no python3");
	char script[512], portfile[400];
	cr_assert_eq(h_write_file(h_up.dir, "ftp1.py", ftpd_script, script, sizeof(script)), 0);
	snprintf(portfile, sizeof(portfile), "%s/ftp1.port", h_up.dir);
	snprintf(ftpd_log, sizeof(ftpd_log), "%s/ftp1.log", h_up.dir);
	unlink(portfile);
	unlink(ftpd_log);
	const char *argv[] = {py, script, portfile, ftpd_log, "120", NULL};
	ftpd_pid = h_spawn(argv, NULL, NULL);
	cr_assert_gt(ftpd_pid, 0);
	for (int i = 0; i < 500; i++) {
		char *p = h_read_file(portfile);
		if (p) {
			snprintf(ftpd_url, sizeof(ftpd_url), "ftp://127.0.0.1:%d/file.txt",
				 atoi(p));
			free(p);
			return;
		}
		h_sleep_ms(10);
	}
	cr_assert_fail("the FTP server did not start");
}

static void ftpd_stop(void)
{
	if (ftpd_pid > 0)
		h_spawn_stop(ftpd_pid, 2000);
	ftpd_pid = 0;
	h_stop();
}

/* The server's log; "" if none yet. */
static char *ftpd_events(void)
{
	char *s = h_read_file(ftpd_log);
	return s ? s : strdup("");
}

static void ftpd_forget(void)
{
	unlink(ftpd_log);
}

/* Whether the log's first session ended (QUIT) before its second login (the server's
 * session numbers go on across runs). */
static int quit_before_second_login(const char *log)
{
	const char *l1 = strstr(log, "login "), *l2 = l1 ? strstr(l1 + 1, "login ") : NULL;
	const char *q = l1 ? strstr(l1, "quit ") : NULL;
	return l2 && q && q < l2;
}

/* curl's test 575, in shape: without the shim the duplicate's multi transfer gets the
 * server once the original's cleanup ended its session; under the shim (no config) the
 * pooled session outlived the cleanup and the multi transfer waited forever. */
static void lib575_case(const char *const *env)
{
	struct h_run a, b;
	const char *argv[] = {"ftpsess", "lib575", ftpd_url, ftpd_log, NULL};
	h_run_ok(&a, argv, env, 0, 30000);
	cr_assert_eq(a.status, 0, "without the shim: %s%s", a.out, a.err);
	cr_assert_eq(h_count_str(a.out, "easy rc=0 bytes=11\n"), 2, "%s", a.out);
	cr_assert(strstr(a.out, "cleanup quit-seen=1\n"), "%s", a.out);
	cr_assert(strstr(a.out, "multi rc=0 bytes=11\n"), "%s", a.out);
	ftpd_forget();

	cr_assert_eq(h_run(&b, argv, env, 1, 30000), 0);
	char *log = ftpd_events();
	cr_expect_eq(b.status, 0, "under the shim: %s%s\nserver: %s", b.out, b.err, log);
	cr_expect_eq(h_count_str(b.out, "easy rc=0 bytes=11\n"), 2, "%s", b.out);
	cr_expect(strstr(b.out, "cleanup quit-seen=1\n"), "QUIT at the cleanup: %s\n%s", b.out,
		  log);
	cr_expect(strstr(b.out, "multi rc=0 bytes=11\n"), "%s", b.out);
	cr_expect(strstr(b.out, "multi cleanup quit-seen=1\n"), "%s", b.out);
	cr_expect(quit_before_second_login(log), "the first session ended first:\n%s", log);
	cr_expect_eq(h_count_str(log, "login "), 2, "%s", log);
	cr_expect_lt(b.secs, 10.0, "took %.1f s", b.secs);
	free(log);
	h_run_free(&a);
	h_run_free(&b);
}

Test(pool_schemes, lib575_shape_without_config, .init = ftpd_start, .fini = ftpd_stop,
     .timeout = 90)
{
	lib575_case(NULL);
}

Test(pool_schemes, lib575_shape_in_a_configured_lane, .init = ftpd_start, .fini = ftpd_stop,
     .timeout = 90)
{
	const char *env[] = {h_config("[lane default]\nmax_conns_per_host = 4\nconnect_timeout = "
				      "2s\nretries = 1\n"),
			     NULL};
	lib575_case(env);
}

/* A handle per file, each cleaned up: the server sees each session end (QUIT) at that
 * cleanup, not at exit; one session per handle, as without the shim. */
Test(pool_schemes, ftp_session_ends_at_cleanup, .init = ftpd_start, .fini = ftpd_stop,
     .timeout = 90)
{
	struct h_run b;
	const char *argv[] = {"ftpsess", "handles", ftpd_url, ftpd_log, "3", "1", NULL};
	cr_assert_eq(h_run(&b, argv, NULL, 1, 30000), 0);
	char *log = ftpd_events();
	cr_expect_eq(b.status, 0, "%s%s", b.out, b.err);
	cr_expect_eq(h_count_str(b.out, "rc=0 bytes=11 quit-seen=1\n"), 3, "%s\nserver:\n%s", b.out,
		     log);
	cr_expect_eq(h_count_str(log, "login "), 3, "%s", log);
	cr_expect_eq(h_count_str(log, "quit "), 3, "%s", log);
	free(log);
	h_run_free(&b);
}

/* pool_schemes = * brings back pooling of every scheme: one session serves every handle,
 * ended (QUIT) when the pools are closed (curl_global_cleanup). */
Test(pool_schemes, star_pools_ftp_sessions, .init = ftpd_start, .fini = ftpd_stop, .timeout = 90)
{
	const char *env[] = {h_config("[lane default]\npool_schemes = *\n"), NULL};
	struct h_run b;
	const char *argv[] = {"ftpsess", "handles", ftpd_url, ftpd_log, "4", "0", NULL};
	cr_assert_eq(h_run(&b, argv, env, 1, 30000), 0);
	char *log = ftpd_events();
	cr_expect_eq(b.status, 0, "%s%s", b.out, b.err);
	cr_expect_eq(h_count_str(b.out, "rc=0 bytes=11\n"), 4, "%s", b.out);
	cr_expect_eq(h_count_str(log, "connect "), 1, "one session for 4 handles:\n%s", log);
	cr_expect_eq(h_count_str(log, "login "), 1, "%s", log);
	cr_expect_eq(h_count_str(log, "quit "), 1, "%s", log);
	free(log);
	h_run_free(&b);
}

/* A lane that lists ftp pools it; http alone does not. */
Test(pool_schemes, listed_schemes_only, .init = ftpd_start, .fini = ftpd_stop, .timeout = 90)
{
	const char *argv[] = {"ftpsess", "handles", ftpd_url, ftpd_log, "3", "0", NULL};
	const char *env1[] = {h_config("[lane default]\npool_schemes = http, ftp\n"), NULL};
	struct h_run b;
	cr_assert_eq(h_run(&b, argv, env1, 1, 30000), 0);
	char *log = ftpd_events();
	cr_expect_eq(b.status, 0, "%s%s", b.out, b.err);
	cr_expect_eq(h_count_str(log, "login "), 1, "%s", log);
	free(log);
	h_run_free(&b);
	ftpd_forget();
	const char *env2[] = {h_config("[lane default]\npool_schemes = http\n"), NULL};
	cr_assert_eq(h_run(&b, argv, env2, 1, 30000), 0);
	log = ftpd_events();
	cr_expect_eq(b.status, 0, "%s%s", b.out, b.err);
	cr_expect_eq(h_count_str(log, "login "), 3, "%s", log);
	cr_expect_eq(h_count_str(log, "quit "), 3, "%s", log);
	free(log);
	h_run_free(&b);
}
