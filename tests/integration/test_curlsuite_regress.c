/* Regressions found by running curl's own test suite (tests/runtests.pl of curl 7.88.1) with
 * and without the shim. Each test runs the unmodified curl tool with and without LD_PRELOAD
 * and compares what it printed; nothing here knows how the hooks work. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static char dir[] = "/tmp/cr-curlsuite-XXXXXX";
static char sock_path[100];
static pid_t server = -1;

/* A one-answer-per-connection HTTP server on an AF_UNIX socket (curl --unix-socket). */
static void unix_server_start(void)
{
	cr_assert_not_null(mkdtemp(dir));
	snprintf(sock_path, sizeof(sock_path), "%s/http.sock", dir);
	int ls = socket(AF_UNIX, SOCK_STREAM, 0);
	cr_assert_geq(ls, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", sock_path);
	cr_assert_eq(bind(ls, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(listen(ls, 16), 0);
	server = fork();
	cr_assert_geq(server, 0);
	if (server == 0) {
		for (;;) {
			int c = accept(ls, NULL, NULL);
			if (c < 0)
				continue;
			char buf[4096];
			size_t n = 0;
			ssize_t k;
			while (n < sizeof(buf) - 1 && (k = read(c, buf + n, sizeof(buf) - 1 - n)) > 0) {
				n += (size_t)k;
				buf[n] = '\0';
				if (strstr(buf, "\r\n\r\n"))
					break;
			}
			static const char rsp[] = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"
						  "Connection: close\r\n\r\nok\n";
			if (write(c, rsp, sizeof(rsp) - 1) < 0)
				_exit(1);
			close(c);
		}
	}
	close(ls);
}

static void unix_server_stop(void)
{
	if (server > 0) {
		kill(server, SIGKILL);
		waitpid(server, NULL, 0);
	}
	unlink(sock_path);
	char conf[200];
	snprintf(conf, sizeof(conf), "%s/connroute.conf", dir);
	unlink(conf);
	rmdir(dir);
}

/* Seen in the stderr of curl's TFTP tests (271, 283-286) under a config lane: the lane's TCP
 * options (nodelay is on in every configured lane) were set on libcurl's UDP and AF_UNIX
 * sockets through the sockopt callback, and each failure was a "cannot set TCP_NODELAY"
 * warning on the program's stderr. The raw connect path only ever touches TCP sockets. */
Test(curlsuite_regress, lane_tcp_options_leave_unix_sockets_alone, .init = unix_server_start,
     .fini = unix_server_stop)
{
	char path[300], env[320];
	cr_assert_eq(h_write_file(dir, "connroute.conf",
				  "[lane default]\nnodelay = on\nkeepalive = 30s\n"
				  "keepalive_interval = 5s\nkeepalive_count = 3\n",
				  path, sizeof(path)),
		     0);
	snprintf(env, sizeof(env), "CONNROUTE_CONFIG=%s", path);
	const char *envs[] = {env, NULL};
	const char *argv[] = {"curl", "-sS", "--unix-socket", sock_path, "http://localhost/a",
			      "http://localhost/b", NULL};
	for (int preload = 0; preload <= 1; preload++) {
		struct h_run r;
		cr_assert_eq(h_run(&r, argv, envs, preload, 30000), 0);
		cr_expect_eq(r.status, 0, "preload=%d: status %d, stderr: %s", preload, r.status,
			     r.err);
		cr_expect_str_eq(r.out, "ok\nok\n", "preload=%d", preload);
		cr_expect_str_eq(r.err, "", "preload=%d: stderr: %s", preload, r.err);
		h_run_free(&r);
	}
}

/* The same for TFTP (UDP): nobody answers; -s prints nothing of curl's own, so the
 * program's stderr must stay empty. */
Test(curlsuite_regress, lane_tcp_options_leave_udp_sockets_alone)
{
	int port = h_free_port();
	cr_assert_gt(port, 0);
	char tmpl[] = "/tmp/cr-curlsuite-XXXXXX";
	cr_assert_not_null(mkdtemp(tmpl));
	char path[300], env[320], u[80];
	cr_assert_eq(h_write_file(tmpl, "connroute.conf", "[lane default]\nnodelay = on\n", path,
				  sizeof(path)),
		     0);
	snprintf(env, sizeof(env), "CONNROUTE_CONFIG=%s", path);
	snprintf(u, sizeof(u), "tftp://127.0.0.1:%d/x", port);
	const char *envs[] = {env, NULL};
	const char *argv[] = {"curl", "-s", "--max-time", "1", "-o", "/dev/null", u, NULL};
	for (int preload = 0; preload <= 1; preload++) {
		struct h_run r;
		cr_assert_eq(h_run(&r, argv, envs, preload, 30000), 0);
		cr_expect_eq(r.status, 28, "preload=%d: status %d", preload, r.status);
		cr_expect_str_eq(r.err, "", "preload=%d: stderr: %s", preload, r.err);
		h_run_free(&r);
	}
	unlink(path);
	rmdir(tmpl);
}
