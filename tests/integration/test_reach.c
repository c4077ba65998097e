/* Integration tests of reach (docs/INTERNALS.md, "RTLD_DEEPBIND hosts" and "TCP Fast Open"):
 * hosts the interposition did not reach before, observed from outside only: what the
 * program printed, and what the server saw (the test upstream's counters and /peers,
 * nginx's access log with the client address and connection serial of every request).
 *
 * - deephost (tests/progs/deephost.c) loads a plugin making its own connect()/close() calls
 *   with dlopen(RTLD_DEEPBIND), as PHP loads its extensions;
 * - php-cli with php-curl, a new curl handle per request, against nginx over HTTPS;
 * - tfoprog (tests/progs/tfoprog.c) connects with sendto/sendmsg(MSG_FASTOPEN) only.
 * A lane `bind = 127.0.0.2` makes a routed connection visible at the server by its address. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static const char *port_str(int port)
{
	static char b[4][16];
	static int i;
	char *s = b[i++ % 4];
	snprintf(s, 16, "%d", port);
	return s;
}

/* -------------------------------------------------------- RTLD_DEEPBIND hosts */

#define BIND2 "[lane default]\nbind = 127.0.0.2\n"

/* The plugin's connections, made with its own connect(), carry the lane's source address
 * under the shim: the rebinding reached the object that RTLD_DEEPBIND bound to libc. Both
 * a full-RELRO plugin (its GOT read-only once loaded) and a lazily bound one. Without the
 * shim: 127.0.0.1, and the same lines otherwise. */
static void plugin_peers(int lazy)
{
	const char *env[] = {h_config(BIND2), NULL};
	const char *now[] = {"deephost", "--threads", "3", "127.0.0.1", port_str(h_up.port), "/conn", NULL};
	const char *lz[] = {"deephost", "--lazy", "--threads", "3", "127.0.0.1", port_str(h_up.port), "/conn", NULL};
	const char *const *argv = lazy ? lz : now;
	struct h_run a, b;
	h_run_ok(&a, argv, env, 0, 30000);
	h_run_ok(&b, argv, env, 1, 30000);
	cr_expect_eq(a.status, 0, "%s%s", a.out, a.err);
	cr_expect_eq(b.status, 0, "%s%s", b.out, b.err);
	cr_expect_eq(h_count_str(a.out, "peer=127.0.0.1:"), 3, "without the shim: %s", a.out);
	cr_expect_eq(h_count_str(b.out, "peer=127.0.0.2:"), 3, "with the shim, routed: %s", b.out);
	char *peers = h_peers(&h_up);
	cr_expect_eq(h_count_str(peers, " 127.0.0.2:"), 3, "the server saw: %s", peers);
	free(peers);
	h_run_free(&a);
	h_run_free(&b);
}

Test(reach_deepbind, plugin_connects_are_routed, .init = h_start_plain, .fini = h_stop)
{
	plugin_peers(0);
}

Test(reach_deepbind, lazily_bound_plugin_connects_are_routed, .init = h_start_plain, .fini = h_stop)
{
	plugin_peers(1);
}

/* The lane's limit holds for the plugin's connections, counted by the server: 4 threads of
 * the plugin each hold a connection for 300 ms; max_conns_per_host = 2. */
Test(reach_deepbind, plugin_connections_obey_the_lane_limit, .init = h_start_plain, .fini = h_stop)
{
	const char *env[] = {h_config("[lane default]\nmax_conns_per_host = 2\nqueue_timeout = 10s\n"), NULL};
	const char *argv[] = {"deephost", "--threads", "4", "127.0.0.1", port_str(h_up.port), "/delay/300", NULL};
	struct h_run a, b;
	h_run_ok(&a, argv, env, 0, 30000);
	cr_expect_eq(a.status, 0, "%s", a.out);
	/* more than the limit at once; not necessarily all four (under load a thread may
	 * start after another's 300 ms were over) */
	cr_expect_gt(h_stat(&h_up, "max_open"), 2, "without the shim: more than two at once: %ld",
		     h_stat(&h_up, "max_open"));
	h_wait_stat(&h_up, "open", 0, 10000); /* max_open := open at the reset */
	cr_assert_eq(h_reset(&h_up), 0);
	h_run_ok(&b, argv, env, 1, 30000);
	cr_expect_eq(b.status, 0, "every request succeeded: %s%s", b.out, b.err);
	cr_expect_eq(h_count_str(b.out, "crplug "), 4, "%s", b.out);
	cr_expect_eq(h_count_str(b.out, " ok\n"), 5, "the load and four requests: %s", b.out);
	cr_expect_leq(h_stat(&h_up, "max_open"), 2, "the limit, seen by the server");
	cr_expect_eq(h_stat(&h_up, "accepted"), 4);
	h_run_free(&a);
	h_run_free(&b);
}

/* dlopen by bare name, found through the host's RUNPATH ($ORIGIN/plug): under the shim it
 * still works, with RTLD_DEEPBIND (the hook searches the caller's RUNPATH) and without (the
 * hook's tail call leaves glibc seeing the host as the caller). */
Test(reach_deepbind, runpath_of_the_caller_is_searched, .init = h_start_plain, .fini = h_stop)
{
	const char *env[] = {h_config(BIND2), NULL};
	const char *deep[] = {"deephost", "127.0.0.1", port_str(h_up.port), "/conn", NULL};
	const char *plain[] = {"deephost", "--no-deepbind", "127.0.0.1", port_str(h_up.port), "/conn", NULL};
	struct h_run a, b;
	h_run_ok(&a, deep, env, 1, 30000);
	h_run_ok(&b, plain, env, 1, 30000);
	cr_expect_eq(a.status, 0, "%s", a.out);
	cr_expect(strstr(a.out, "load libcrplug.so ok") != NULL, "%s", a.out);
	cr_expect_eq(b.status, 0, "%s", b.out);
	cr_expect(strstr(b.out, "load libcrplug.so ok") != NULL, "%s", b.out);
	cr_expect_eq(h_count_str(b.out, "peer=127.0.0.2:"), 1, "a plain dlopen binds globally: %s", b.out);
	h_run_free(&a);
	h_run_free(&b);
}

/* Nothing is written into objects that reach the shim anyway. */
Test(reach_deepbind, objects_loaded_without_deepbind_are_left_alone, .init = h_start_plain, .fini = h_stop)
{
	const char *env[] = {h_config(BIND2), "CONNROUTE_LOG=debug", NULL};
	const char *plain[] = {"deephost", "--no-deepbind", "127.0.0.1", port_str(h_up.port), "/conn", NULL};
	const char *deep[] = {"deephost", "127.0.0.1", port_str(h_up.port), "/conn", NULL};
	struct h_run a, b;
	h_run_ok(&a, plain, env, 1, 30000);
	h_run_ok(&b, deep, env, 1, 30000);
	cr_expect_eq(h_count_str(a.err, "rebound"), 0, "%s", a.err);
	cr_expect_eq(h_count_str(b.err, "libcrplug.so: 2 references rebound"), 1, "%s", b.err);
	h_run_free(&a);
	h_run_free(&b);
}

/* A load made by a library's constructor before the shim's constructor ran (the hook works
 * in every state and remembers it): rebound at init. */
Test(reach_deepbind, load_before_the_shim_initialised, .init = h_start_plain, .fini = h_stop)
{
	const char *env[] = {h_config(BIND2), "CRPRE_LOAD=1", NULL};
	const char *argv[] = {"deephost", "--early", "--threads", "2", "127.0.0.1", port_str(h_up.port), "/conn", NULL};
	struct h_run a, b;
	h_run_ok(&a, argv, env, 0, 30000);
	h_run_ok(&b, argv, env, 1, 30000);
	cr_expect_eq(a.status, 0, "%s%s", a.out, a.err);
	cr_expect_eq(b.status, 0, "%s%s", b.out, b.err);
	cr_expect_eq(h_count_str(a.out, "peer=127.0.0.1:"), 2, "without the shim: %s", a.out);
	cr_expect_eq(h_count_str(b.out, "peer=127.0.0.2:"), 2, "routed: %s", b.out);
	h_run_free(&a);
	h_run_free(&b);
}

/* Load, use, dlclose, load another, dlclose, load the first again: every load is rebound
 * (a new mapping, maybe at the old address), nothing unloaded is touched, no crash. */
Test(reach_deepbind, dlclose_and_load_again, .init = h_start_plain, .fini = h_stop)
{
	const char *env[] = {h_config(BIND2), NULL};
	for (int lazy = 0; lazy < 2; lazy++) {
		const char *now[] = {"deephost", "--cycle", "--threads", "2", "127.0.0.1", port_str(h_up.port),
				     "/conn", NULL};
		const char *lz[] = {"deephost", "--cycle", "--lazy", "--threads", "2", "127.0.0.1",
				    port_str(h_up.port), "/conn", NULL};
		const char *const *argv = lazy ? lz : now;
		struct h_run r;
		h_run_ok(&r, argv, env, 1, 30000);
		cr_expect_eq(r.status, 0, "%s%s", r.out, r.err);
		cr_expect_eq(h_count_str(r.out, " ok\n"), 3, "three loads: %s", r.out);
		cr_expect_eq(h_count_str(r.out, "peer=127.0.0.2:"), 6, "every connection routed: %s", r.out);
		h_run_free(&r);
	}
}

/* A GOT that cannot be made writable (a sandbox denying mprotect(PROT_WRITE), a full-RELRO
 * plugin): one line at info, the object is left alone (its calls bypass the lanes), the
 * host runs on. The lazily bound plugin's PLT slots are writable without mprotect: it is
 * rebound in the same sandbox. */
Test(reach_deepbind, unchangeable_got_is_logged_once_and_left_alone, .init = h_start_plain, .fini = h_stop)
{
	const char *env[] = {h_config(BIND2), "CONNROUTE_LOG=info", NULL};
	const char *now[] = {"deephost", "--deny-mprotect-write", "--threads", "3", "127.0.0.1",
			     port_str(h_up.port), "/conn", NULL};
	const char *lz[] = {"deephost", "--deny-mprotect-write", "--lazy", "127.0.0.1", port_str(h_up.port),
			    "/conn", NULL};
	struct h_run r, l;
	h_run_ok(&r, now, env, 1, 30000);
	cr_expect_eq(r.status, 0, "%s%s", r.out, r.err);
	cr_expect_eq(h_count_str(r.out, "peer=127.0.0.1:"), 3, "unrouted: %s", r.out);
	cr_expect_eq(h_count_str(r.err, "libcrplug.so was loaded with RTLD_DEEPBIND and cannot be rebound"), 1,
		     "once for that object: %s", r.err);
	h_run_ok(&l, lz, env, 1, 30000);
	cr_expect_eq(l.status, 0, "%s%s", l.out, l.err);
	cr_expect_eq(h_count_str(l.out, "peer=127.0.0.2:"), 1, "routed: %s", l.out);
	cr_expect_eq(h_count_str(l.err, "cannot be rebound"), 0, "%s", l.err);
	h_run_free(&r);
	h_run_free(&l);
}

/* ---------------------------------------------------------------------- PHP */

static int php_ready(void)
{
	return system("php -r 'exit(function_exists(\"curl_init\") ? 0 : 1);' >/dev/null 2>&1") == 0;
}

static struct h_nginx ngx;

static void ngx_stop(void)
{
	h_nginx_stop(&ngx);
}

/* nginx over TLS on 127.0.0.1 (harness.h: h_nginx_start), killed with this test, its
 * access log "ADDRESS CONNECTION-SERIAL ..." per request. */
static void ngx_start(void)
{
	if (access("/usr/sbin/nginx", X_OK) != 0)
		cr_skip_test("nginx is not installed (Debian: nginx-light)");
	if (!php_ready())
		cr_skip_test("php-cli with php-curl is not installed (scripts/deps.sh)");
	cr_assert_eq(h_nginx_start(&ngx, NULL), 0, "nginx did not start");
	snprintf(h_dir, sizeof(h_dir), "%s", ngx.dir);
}

static const char *php_script(const char *name, const char *body)
{
	static char path[400];
	cr_assert_eq(h_write_file(h_dir, name, body, path, sizeof(path)), 0);
	return path;
}

/* The usual PHP code: a new curl handle for every request. */
static const char fresh_handles_php[] =
	"<?php\n"
	"[$_, $url, $n, $ca] = $argv;\n"
	"for ($i = 0; $i < (int)$n; $i++) {\n"
	"  $ch = curl_init($url);\n"
	"  curl_setopt($ch, CURLOPT_RETURNTRANSFER, true);\n"
	"  curl_setopt($ch, CURLOPT_CAINFO, $ca);\n"
	"  $r = curl_exec($ch);\n"
	"  echo $i, ' ', $r === false ? 'error ' . curl_error($ch) . \"\\n\" : $r;\n"
	"  curl_close($ch);\n"
	"}\n";

static void php_fresh(struct h_run *r, const char *const *env, int preload, int n)
{
	char url[128], ca[400], num[16];
	snprintf(url, sizeof(url), "https://localhost:%d/", ngx.port);
	snprintf(ca, sizeof(ca), "%s", ngx.cert);
	snprintf(num, sizeof(num), "%d", n);
	const char *argv[] = {"php", php_script("fresh.php", fresh_handles_php), url, num, ca, NULL};
	h_run_ok(r, argv, env, preload, 30000);
}

/* 50 curl_init/curl_exec/curl_close over HTTPS: 50 connections without the shim, at most 2
 * with it (php-curl and libcurl are loaded with RTLD_DEEPBIND), the same output. */
Test(reach_php, fifty_fresh_handles_share_a_connection, .fini = ngx_stop)
{
	ngx_start();
	struct h_run a, b;
	int lines, from;
	php_fresh(&a, NULL, 0, 50);
	char *la = h_nginx_log_take(&ngx);
	int ca = h_log_conns(la, "127.0.0.1", &lines, &from);
	cr_expect_eq(lines, 50, "%s", la);
	cr_expect_eq(ca, 50, "without the shim: a connection per request");
	php_fresh(&b, NULL, 1, 50);
	char *lb = h_nginx_log_take(&ngx);
	int cb = h_log_conns(lb, "127.0.0.1", &lines, &from);
	cr_expect_eq(lines, 50, "%s", lb);
	cr_expect_leq(cb, 2, "with the shim: connections nginx saw: %d", cb);
	cr_expect_eq(a.status, 0, "%s", a.err);
	cr_expect_eq(b.status, 0, "%s", b.err);
	cr_expect_str_eq(b.out, a.out, "PHP's output is the same");
	cr_expect_eq(h_count_str(a.out, "ok\n"), 50, "%s", a.out);
	free(la);
	free(lb);
	h_run_free(&a);
	h_run_free(&b);
}

/* The lane's socket options reach libcurl's connections inside PHP: bind = 127.0.0.2 is the
 * client address in nginx's log. */
Test(reach_php, lane_source_address_in_nginx_log, .fini = ngx_stop)
{
	ngx_start();
	const char *env[] = {h_config(BIND2), NULL};
	struct h_run a, b;
	int lines, from;
	php_fresh(&a, env, 0, 5);
	char *la = h_nginx_log_take(&ngx);
	h_log_conns(la, "127.0.0.1", &lines, &from);
	cr_expect_eq(from, 5, "without the shim: %s", la);
	php_fresh(&b, env, 1, 5);
	char *lb = h_nginx_log_take(&ngx);
	h_log_conns(lb, "127.0.0.2", &lines, &from);
	cr_expect_eq(lines, 5);
	cr_expect_eq(from, 5, "every request from the lane's address: %s", lb);
	cr_expect_str_eq(b.out, a.out);
	free(la);
	free(lb);
	h_run_free(&a);
	h_run_free(&b);
}

/* More of php-curl's surface, the same output with and without the shim: one handle reused,
 * curl_reset, curl_copy_handle, POST, getinfo, and errors (a refused port, a bad CA). */
Test(reach_php, same_output_with_and_without_the_shim, .fini = ngx_stop)
{
	ngx_start();
	static const char script[] =
		"<?php\n"
		"[$_, $url, $ca, $refused] = $argv;\n"
		"$ch = curl_init();\n"
		"curl_setopt_array($ch, [CURLOPT_URL => $url, CURLOPT_RETURNTRANSFER => true,"
		" CURLOPT_CAINFO => $ca]);\n"
		"for ($i = 0; $i < 3; $i++) echo 'reuse ', curl_exec($ch), ' ', curl_getinfo($ch, CURLINFO_HTTP_CODE), \"\\n\";\n"
		"$copy = curl_copy_handle($ch);\n"
		"echo 'copy ', trim(curl_exec($copy)), ' ', curl_errno($copy), \"\\n\";\n"
		"curl_close($copy);\n"
		"curl_reset($ch);\n"
		"curl_setopt_array($ch, [CURLOPT_URL => $url, CURLOPT_RETURNTRANSFER => true,"
		" CURLOPT_CAINFO => $ca, CURLOPT_POST => true, CURLOPT_POSTFIELDS => 'a=1']);\n"
		"echo 'post ', trim(curl_exec($ch)), ' ', curl_getinfo($ch, CURLINFO_HTTP_CODE), \"\\n\";\n"
		"curl_close($ch);\n"
		"$ch = curl_init($refused);\n"
		"curl_setopt($ch, CURLOPT_RETURNTRANSFER, true);\n"
		"var_dump(curl_exec($ch)); echo 'refused ', curl_errno($ch), \"\\n\";\n"
		"$ch = curl_init($url);\n"
		"curl_setopt($ch, CURLOPT_RETURNTRANSFER, true);\n"
		"curl_setopt($ch, CURLOPT_CAINFO, '/dev/null');\n"
		"var_dump(curl_exec($ch)); echo 'badca ', curl_errno($ch), \"\\n\";\n"
		"echo 'done', \"\\n\";\n";
	char url[128], ca[400], refused[64];
	snprintf(url, sizeof(url), "https://localhost:%d/", ngx.port);
	snprintf(ca, sizeof(ca), "%s", ngx.cert);
	snprintf(refused, sizeof(refused), "http://127.0.0.1:%d/", h_free_port());
	const char *argv[] = {"php", php_script("surface.php", script), url, ca, refused, NULL};
	struct h_run a, b;
	h_run_ok(&a, argv, NULL, 0, 30000);
	h_run_ok(&b, argv, NULL, 1, 30000);
	cr_expect_eq(a.status, 0, "%s", a.err);
	cr_expect(strstr(a.out, "done\n") != NULL, "%s", a.out);
	cr_expect(strstr(a.out, "refused 7\n") != NULL, "%s", a.out);
	cr_expect_eq(b.status, a.status);
	cr_expect_str_eq(b.out, a.out);
	h_run_free(&a);
	h_run_free(&b);
}

/* ------------------------------------------------------------- TCP Fast Open */

/* tfoprog's output without what differs between two runs anyway: the server's connection
 * ids and the client ports ("conn=N peer=IP:PORT" -> "peer=IP"). */
static void normalize(char *s)
{
	char *p;
	while ((p = strstr(s, "conn=")) != NULL) {
		char *q = strstr(p, "peer=");
		if (!q)
			break;
		memmove(p, q, strlen(q) + 1);
		char *colon = strchr(p, ':'), *sp = strpbrk(p, " \n");
		if (colon && (!sp || colon < sp)) {
			char *end = colon + strspn(colon + 1, "0123456789") + 1;
			memmove(colon, end, strlen(end) + 1);
		}
		p += 5;
		memmove(p - 5, "PEER=", 5); /* not matched again */
	}
}

/* sendto and sendmsg with MSG_FASTOPEN, blocking and not: the lane's source address, the
 * same results (bytes sent, EINPROGRESS for a socket with no Fast Open cookie). */
Test(reach_tfo, fastopen_connections_take_the_lane, .init = h_start_plain, .fini = h_stop)
{
	const char *env[] = {h_config(BIND2), NULL};
	for (int v = 0; v < 4; v++) {
		const char *argv[12];
		int n = 0;
		argv[n++] = "tfoprog";
		argv[n++] = "--count";
		argv[n++] = "2";
		if (v & 1)
			argv[n++] = "--sendmsg";
		if (v & 2)
			argv[n++] = "--nonblock";
		argv[n++] = "127.0.0.1";
		argv[n++] = port_str(h_up.port);
		argv[n++] = "/conn";
		argv[n] = NULL;
		struct h_run a, b;
		h_run_ok(&a, argv, env, 0, 30000);
		h_run_ok(&b, argv, env, 1, 30000);
		cr_expect_eq(a.status, 0, "%s", a.err);
		cr_expect_eq(b.status, 0, "%s", b.err);
		cr_expect_eq(h_count_str(a.out, "peer=127.0.0.1:"), 2, "without the shim: %s", a.out);
		cr_expect_eq(h_count_str(b.out, "peer=127.0.0.2:"), 2, "routed: %s", b.out);
		normalize(a.out);
		normalize(b.out);
		char *x = a.out;
		while ((x = strstr(x, "PEER=127.0.0.1")))
			memcpy(x, "PEER=127.0.0.2", 14);
		cr_expect_str_eq(b.out, a.out, "variant %d", v);
		h_run_free(&a);
		h_run_free(&b);
	}
}

/* max_conns_per_host = 1 counts Fast Open connections: with both held open, the second
 * waits out queue_timeout (ETIMEDOUT) or, non-blocking, is refused (EAGAIN); the server
 * never has two; the lane's metrics count the one connection. */
Test(reach_tfo, fastopen_connections_count_against_the_limit, .init = h_start_plain, .fini = h_stop)
{
	char text[600], sock[400];
	snprintf(sock, sizeof(sock), "%s/m.sock", h_dir);
	snprintf(text, sizeof(text),
		 "[global]\nmetrics = unix:%s\n[lane default]\nmax_conns_per_host = 1\nqueue_timeout = 200ms\n", sock);
	const char *env[] = {h_config(text), NULL};
	const char *blocking[] = {"tfoprog", "--defer-read", "--count", "2", "--metrics", sock, "127.0.0.1",
				  port_str(h_up.port), "/delay/500", NULL};
	const char *nonblock[] = {"tfoprog", "--nonblock", "--defer-read", "--count", "2", "127.0.0.1",
				  port_str(h_up.port), "/delay/500", NULL};
	struct h_run a, b, c;
	h_run_ok(&a, nonblock, env, 0, 30000);
	cr_expect_eq(h_count_str(a.out, "resp "), 2, "without the shim: %s", a.out);
	cr_expect_eq(h_stat(&h_up, "max_open"), 2);
	h_wait_stat(&h_up, "open", 0, 10000); /* max_open := open at the reset */
	cr_assert_eq(h_reset(&h_up), 0);
	h_run_ok(&b, blocking, env, 1, 30000);
	cr_expect(strstr(b.out, "send 1 ret=-1 errno=ETIMEDOUT\n") != NULL, "%s%s", b.out, b.err);
	cr_expect(strstr(b.out, "metric connroute_connections_opened_total{lane=\"default\"} 1\n") != NULL,
		  "%s", b.out);
	cr_expect_eq(h_stat(&h_up, "max_open"), 1);
	h_run_ok(&c, nonblock, env, 1, 30000);
	/* (send 0 shows EINPROGRESS, or the byte count when the kernel has a Fast Open cookie
	 * for 127.0.0.1 from an earlier run.) */
	cr_expect_eq(h_count_str(c.out, "resp 0 "), 1, "%s", c.out);
	cr_expect(strstr(c.out, "send 1 ret=-1 errno=EAGAIN\n") != NULL, "%s", c.out);
	cr_expect_eq(h_stat(&h_up, "max_open"), 1);
	h_run_free(&a);
	h_run_free(&b);
	h_run_free(&c);
}

/* Data in the SYN: with a Fast Open server (tfoprog --server; net.ipv4.tcp_fastopen = 3 for
 * the run, restored after), the connections after the first carry the request in their SYN
 * (the first too once the kernel has a cookie from an earlier run), with the shim as
 * without. Skipped where the sysctl cannot be written. */
Test(reach_tfo, data_still_goes_in_the_syn, .init = h_start_plain, .fini = h_stop)
{
	const char *sysctl = "/proc/sys/net/ipv4/tcp_fastopen";
	char *old = h_read_file(sysctl);
	if (!old)
		cr_skip_test("no %s", sysctl);
	int fd = open(sysctl, O_WRONLY);
	if (fd < 0 || write(fd, "3\n", 2) != 2) {
		if (fd >= 0)
			close(fd);
		free(old);
		cr_skip_test("cannot write %s", sysctl);
	}
	close(fd);
	const char *env[] = {h_config(BIND2), NULL};
	const char *argv[] = {"tfoprog", "--server", "--count", "3", "x", "0", "/", NULL};
	struct h_run a, b;
	int ra = h_run(&a, argv, env, 0, 20000), rb = h_run(&b, argv, env, 1, 20000);
	fd = open(sysctl, O_WRONLY);
	if (fd >= 0) {
		if (write(fd, old, strlen(old)) < 0)
			fprintf(stderr, "could not restore %s\n", sysctl);
		close(fd);
	}
	free(old);
	cr_assert_eq(ra, 0);
	cr_assert_eq(rb, 0);
	cr_expect_geq(h_count_str(a.out, "syn_data=1"), 2, "without the shim: %s", a.out);
	cr_expect_geq(h_count_str(b.out, "syn_data=1"), 2, "with the shim: %s", b.out);
	cr_expect_eq(h_count_str(b.out, "peer=127.0.0.2"), 3, "routed: %s", b.out);
	char *x = a.out;
	while ((x = strstr(x, "peer=127.0.0.1")))
		memcpy(x, "peer=127.0.0.2", 14);
	/* The first connection's SYN depends on a cookie of earlier runs (per address pair). */
	char *fa = strstr(a.out, "info 0 syn_data="), *fb = strstr(b.out, "info 0 syn_data=");
	if (fa && fb)
		fa[16] = fb[16] = '1';
	cr_expect_str_eq(b.out, a.out);
	h_run_free(&a);
	h_run_free(&b);
}
