/* Integration tests of the foundation: unmodified programs (tests/progs)
 * under LD_PRELOAD against the local test server, observed from outside:
 * what the program printed, and what the server saw. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

static char addr_buf[8][64];
static const char *at(const char *sock, int port)
{
	static int i;
	char *b = addr_buf[i++ % 8];
	snprintf(b, 64, "connect=%s@127.0.0.1:%d", sock, port);
	return b;
}

/* ------------------------------------------------------------------ contract */

Test(contract, library_needs_only_libc_and_exports_only_hooks)
{
	char cmd[600], line[512];
	snprintf(cmd, sizeof(cmd), "readelf -d %s/libconnroute.so", h_build());
	FILE *p = popen(cmd, "r");
	cr_assert_not_null(p);
	int needed = 0;
	while (fgets(line, sizeof(line), p)) {
		if (!strstr(line, "(NEEDED)"))
			continue;
		needed++;
		cr_expect(strstr(line, "[libc.so.6]") != NULL, "unexpected dependency: %s", line);
	}
	pclose(p);
	cr_expect_eq(needed, 1);

	snprintf(cmd, sizeof(cmd), "nm -D --defined-only %s/libconnroute.so", h_build());
	p = popen(cmd, "r");
	cr_assert_not_null(p);
	static const char *const allowed[] = {"connect", "__connect", "close", "__close", "close_range",
					      "closefrom", "dup", "dup2", "dup3", "setsockopt", "epoll_ctl", "sendto", "sendmsg", "dlopen", "dlmopen",
					      "curl_easy_init", "curl_easy_setopt",
					      "curl_easy_perform", "curl_easy_cleanup", "curl_easy_reset",
					      "curl_easy_duphandle", "curl_easy_getinfo", "curl_easy_upkeep",
					      "curl_easy_header", "curl_easy_nextheader", "curl_multi_add_handle",
					      "curl_multi_remove_handle", "curl_multi_cleanup", "curl_global_cleanup",
					      "curl_multi_setopt", "curl_multi_perform", "curl_multi_socket_action",
					      "curl_multi_socket_all", "curl_multi_socket", "curl_multi_wait",
					      "curl_multi_poll", "curl_multi_timeout", "curl_multi_info_read",
					      "curl_multi_fdset", NULL};
	int hooks = 0;
	while (fgets(line, sizeof(line), p)) {
		char sym[256] = "";
		if (sscanf(line, "%*s %*s %255s", sym) != 1)
			continue;
		char *ver = strchr(sym, '@');
		if (ver)
			*ver = '\0';
		if (strncmp(sym, "connroute_", 10) == 0)
			continue;
		int ok = 0;
		for (int i = 0; allowed[i]; i++)
			ok |= strcmp(sym, allowed[i]) == 0;
		hooks += ok;
		cr_expect(ok, "exported symbol %s is neither a hook nor connroute_*", sym);
	}
	pclose(p);
	/* Every CR_LIBC and CR_CURL entry of lib/hooks.def. */
	cr_expect_eq(hooks, 39);
}

/* --------------------------------------------------------------- pass-through */

Test(passthrough, no_config_changes_nothing, .init = h_start_plain, .fini = h_stop)
{
	struct h_run a, b;
	const char *argv[] = {"sockprog", "tcp=a", at("a", h_up.port), "opts=a", "get=a:/conn", "close=a", NULL};
	h_run_ok(&a, argv, NULL, 0, 20000);
	h_run_ok(&b, argv, NULL, 1, 20000);
	cr_expect_eq(b.status, 0);
	cr_expect_str_empty(b.err, "the shim said something: %s", b.err);
	/* Same options and behaviour; only the local port differs. */
	cr_expect(strstr(b.out, "opts a nodelay=0 keepalive=0") != NULL, "%s", b.out);
	cr_expect(strstr(a.out, "opts a nodelay=0 keepalive=0") != NULL, "%s", a.out);
	cr_expect(strstr(b.out, "get a conn=") != NULL, "%s", b.out);
	cr_expect_eq(h_stat(&h_up, "accepted"), 2);
	h_run_free(&a);
	h_run_free(&b);
}

Test(passthrough, udp_and_unix_sockets_go_straight_through, .init = h_start_plain, .fini = h_stop)
{
	struct h_run a, b;
	/* A lane with a limit of 1 on every key: UDP and UNIX must not be counted. */
	const char *env[] = {h_config("[lane default]\nmax_conns_per_host = 1\nqueue_timeout = 100ms\n"), NULL};
	const char *argv[] = {"sockprog", "udp=u1", "udp=u2", at("u1", h_up.port), at("u2", h_up.port),
			      "unix=x", "connect=x@/nonexistent/connroute.sock", NULL};
	h_run_ok(&a, argv, env, 0, 20000);
	h_run_ok(&b, argv, env, 1, 20000);
	cr_expect(strstr(a.out, "connect u2 ok") != NULL, "%s", a.out);
	cr_expect(strstr(b.out, "connect u1 ok") != NULL, "%s", b.out);
	cr_expect(strstr(b.out, "connect u2 ok") != NULL, "%s", b.out);
	cr_expect(strstr(a.out, "connect x err ENOENT") != NULL, "%s", a.out);
	cr_expect(strstr(b.out, "connect x err ENOENT") != NULL, "%s", b.out);
	h_run_free(&a);
	h_run_free(&b);
}

Test(passthrough, kill_switch_disables_routing, .init = h_start_plain, .fini = h_stop)
{
	struct h_run r;
	const char *env[] = {h_config("[lane default]\nmax_conns_per_host = 1\nqueue_timeout = 100ms\n"),
			     "CONNROUTE_DISABLE=1", NULL};
	const char *argv[] = {"sockprog", "tcp=a", "tcp=b", at("a", h_up.port), at("b", h_up.port), "opts=b", NULL};
	h_run_ok(&r, argv, env, 1, 20000);
	cr_expect(strstr(r.out, "connect b ok") != NULL, "%s", r.out);
	cr_expect(strstr(r.out, "nodelay=0") != NULL, "no lane option applied: %s", r.out);
	h_run_free(&r);
}

/* ------------------------------------------------------------- lane options */

static const char *lanes_conf =
	"[lane critical]\n"
	"match = payment-gateway/critical, */critical\n"
	"connect_timeout = 1s\n"
	"nodelay = on\n"
	"keepalive = 30s\n"
	"keepalive_interval = 5s\n"
	"keepalive_count = 4\n"
	"tos = 0xb8\n"
	"priority = 6\n"
	"bind = 127.0.0.2\n"
	"[lane batch]\n"
	"match = */batch\n"
	"nodelay = off\n"
	"dscp = af11\n"
	"[lane default]\n";

Test(lanes, options_follow_the_key, .init = h_start_plain, .fini = h_stop)
{
	struct h_run c, b, d;
	const char *conf = h_config(lanes_conf);
	const char *argv[] = {"sockprog", "tcp=a", at("a", h_up.port), "opts=a", "get=a:/conn", NULL};
	const char *envc[] = {conf, "CONNROUTE_KEY=payments/critical", NULL};
	const char *envb[] = {conf, "CONNROUTE_KEY=reports/batch", NULL};
	const char *envd[] = {conf, NULL};
	h_run_ok(&c, argv, envc, 1, 20000);
	h_run_ok(&b, argv, envb, 1, 20000);
	h_run_ok(&d, argv, envd, 1, 20000);
	cr_expect(strstr(c.out, "nodelay=1 keepalive=1 keepidle=30 keepintvl=5 keepcnt=4 tos=184 priority=6") !=
			  NULL,
		  "critical: %s", c.out);
	cr_expect(strstr(c.out, "local=127.0.0.2") != NULL, "bind: %s", c.out);
	cr_expect(strstr(c.out, "peer=127.0.0.2:") != NULL, "the server saw the lane's source address: %s",
		  c.out);
	cr_expect(strstr(b.out, "nodelay=0 keepalive=0") != NULL, "batch: %s", b.out);
	cr_expect(strstr(b.out, "tos=40") != NULL, "dscp af11 = tos 40: %s", b.out);
	cr_expect(strstr(d.out, "nodelay=1") != NULL, "explicit default lane: nodelay default on: %s", d.out);
	cr_expect(strstr(d.out, "local=127.0.0.1") != NULL, "%s", d.out);
	cr_expect_str_empty(c.err, "%s", c.err);
	h_run_free(&c);
	h_run_free(&b);
	h_run_free(&d);
}

Test(lanes, so_mark_needs_privilege_and_never_breaks_the_connect, .init = h_start_plain, .fini = h_stop)
{
	struct h_run r;
	const char *env[] = {h_config("[lane default]\nmark = 7\n"), NULL};
	const char *argv[] = {"sockprog", "tcp=a", "tcp=b", at("a", h_up.port), at("b", h_up.port), "opts=a", NULL};
	h_run_ok(&r, argv, env, 1, 20000);
	cr_expect(strstr(r.out, "connect a ok") && strstr(r.out, "connect b ok"), "%s", r.out);
	if (geteuid() == 0) {
		cr_expect(strstr(r.out, "mark=7") != NULL, "%s", r.out);
	} else {
		/* One warning, not one per connection. */
		const char *w = strstr(r.err, "SO_MARK");
		cr_expect(w && !strstr(w + 1, "SO_MARK"), "%s", r.err);
	}
	h_run_free(&r);
}

Test(lanes, ipv6_traffic_class)
{
	struct h_run r;
	const char *args[] = {"--bind", "::1", NULL};
	cr_assert_eq(h_upstream_start(&h_up, args), 0);
	snprintf(h_dir, sizeof(h_dir), "%s", h_up.dir);
	char a6[80];
	snprintf(a6, sizeof(a6), "connect=a@[::1]:%d", h_up.port);
	const char *env[] = {h_config("[lane default]\ntos = 0x28\nnodelay = on\n"), NULL};
	const char *argv[] = {"sockprog", "tcp6=a", a6, "opts=a", NULL};
	h_run_ok(&r, argv, env, 1, 20000);
	cr_expect(strstr(r.out, "nodelay=1") && strstr(r.out, "tos=40"), "%s", r.out);
	h_run_free(&r);
	h_upstream_stop(&h_up);
}

/* ------------------------------------------------------------------- limits */

static const char *limit2 = "[lane default]\nmax_conns_per_host = 2\nqueue_timeout = 300ms\n";

Test(limits, n_plus_one_waits_then_fails_and_succeeds_after_a_close, .init = h_start_plain, .fini = h_stop)
{
	struct h_run r;
	const char *env[] = {h_config(limit2), NULL};
	const char *argv[] = {"sockprog", "tcp=a", "tcp=b", "tcp=c", "tcp=d", at("a", h_up.port),
			      at("b", h_up.port), at("c", h_up.port), "close=a", "sleep=100", at("d", h_up.port), NULL};
	/* (sleep: the server must see a's close before d's accept, or its
	 * max_open counts a transient 3 that the client never had) */
	h_run_ok(&r, argv, env, 1, 20000);
	cr_expect(strstr(r.out, "connect c err ETIMEDOUT") != NULL, "%s", r.out);
	int ms = -1;
	const char *c = strstr(r.out, "connect c err ETIMEDOUT ms=");
	if (c)
		ms = atoi(c + strlen("connect c err ETIMEDOUT ms="));
	cr_expect(ms >= 250, "the third connect waited the queue timeout (%d ms)", ms);
	cr_expect(strstr(r.out, "connect d ok") != NULL, "after a close there is room: %s", r.out);
	cr_expect_eq(h_stat(&h_up, "accepted"), 3, "the refused connect never reached the server");
	cr_expect_eq(h_stat(&h_up, "max_open"), 2);
	h_run_free(&r);
}

Test(limits, non_blocking_connect_fails_at_once_with_eagain, .init = h_start_plain, .fini = h_stop)
{
	struct h_run r;
	const char *env[] = {h_config(limit2), NULL};
	const char *argv[] = {"sockprog", "tcp=a", "tcp=b", "tcp=c", "nonblock=a", "nonblock=b", "nonblock=c",
			      at("a", h_up.port), at("b", h_up.port), at("c", h_up.port), "flags=c", NULL};
	h_run_ok(&r, argv, env, 1, 20000);
	cr_expect(strstr(r.out, "connect a err EINPROGRESS") != NULL, "%s", r.out);
	cr_expect(strstr(r.out, "connect c err EAGAIN") != NULL, "%s", r.out);
	cr_expect(strstr(r.out, "flags c nonblock=1") != NULL, "%s", r.out);
	h_run_free(&r);
}

Test(limits, second_connect_on_the_same_socket_is_not_counted_twice, .init = h_start_plain, .fini = h_stop)
{
	struct h_run r, base;
	const char *env[] = {h_config("[lane default]\nmax_conns_per_host = 1\nqueue_timeout = 100ms\n"), NULL};
	const char *argv[] = {"sockprog", "tcp=a", "tcp=b", "nonblock=a", at("a", h_up.port), "wait=a",
			      at("a", h_up.port), "nonblock=b", at("b", h_up.port), "close=a", at("b", h_up.port), NULL};
	h_run_ok(&base, argv, NULL, 0, 20000);
	h_run_ok(&r, argv, env, 1, 20000);
	/* The shim only changes b's first attempt (the limit); a behaves as without it. */
	/* Linux answers the connect after completion with 0 (then EISCONN). */
	const char *second = "wait a ready ok\nconnect a ok";
	cr_expect(strstr(base.out, second) != NULL, "%s", base.out);
	cr_expect(strstr(r.out, second) != NULL, "%s", r.out);
	cr_expect(strstr(r.out, "connect b err EAGAIN") != NULL, "%s", r.out);
	cr_expect(strstr(r.out, "close a ok\nconnect b err EINPROGRESS") != NULL, "%s", r.out);
	h_run_free(&r);
	h_run_free(&base);
}

/* Every route that closes a routed fd gives its unit back. */
static void release_route(const char *step)
{
	struct h_run r;
	h_start_plain();
	const char *env[] = {h_config("[lane default]\nmax_conns_per_host = 1\nqueue_timeout = 200ms\n"), NULL};
	const char *argv[] = {"sockprog", "tcp=a", "tcp=b", "tcp=z", at("a", h_up.port), step,
			      at("b", h_up.port), "fdcount", NULL};
	h_run_ok(&r, argv, env, 1, 20000);
	cr_expect(strstr(r.out, "connect a ok") != NULL, "%s: %s", step, r.out);
	cr_expect(strstr(r.out, "connect b ok") != NULL, "%s did not release the unit: %s", step, r.out);
	cr_expect_eq(r.status, 0, "%s: %s", step, r.err);
	h_run_free(&r);
	h_upstream_stop(&h_up);
}

Test(release, by_close) { release_route("close=a"); }
Test(release, by___close) { release_route("__close=a"); }
Test(release, by_close_range) { release_route("close_range=a"); }
Test(release, by_dup2_onto_it) { release_route("dup2=z:a"); }
Test(release, by_fclose_unseen_close_found_by_inode) { release_route("fclose=a"); }
Test(release, by_raw_syscall_unseen_close_found_by_inode) { release_route("sys_close=a"); }

/* With CLOSE_RANGE_UNSHARE nothing is released by the hook (the caller may
 * share its table with other threads); in a single-threaded program the fd
 * is really gone, and the inode check finds it when the lane is full. */
Test(release, by_close_range_unshare_found_by_inode) { release_route("close_range_unshare=a"); }

/* close_range(CLOSE_RANGE_UNSHARE) in a second thread closes only that
 * thread's new private copy of the fd table: the program still holds the
 * connection, so its unit stays taken. */
Test(limits, close_range_unshare_in_another_thread_keeps_the_unit, .init = h_start_plain, .fini = h_stop)
{
	struct h_run r;
	const char *env[] = {h_config("[lane default]\nmax_conns_per_host = 1\nqueue_timeout = 200ms\n"), NULL};
	const char *argv[] = {"sockprog", "tcp=a", "tcp=b", at("a", h_up.port), "thread_unshare=a", "peer=a",
			      at("b", h_up.port), NULL};
	h_run_ok(&r, argv, env, 1, 20000);
	cr_expect(strstr(r.out, "thread_unshare a ok closed_there=1") != NULL, "%s", r.out);
	cr_expect(strstr(r.out, "peer a ok") != NULL, "the main thread still has it: %s", r.out);
	cr_expect(strstr(r.out, "connect b err ETIMEDOUT") != NULL, "the limit still holds: %s", r.out);
	cr_expect_eq(h_stat(&h_up, "max_open"), 1, "the server never saw two connections");
	cr_expect_eq(h_stat(&h_up, "accepted"), 1);
	h_run_free(&r);
}

Test(release, by_closefrom, .init = h_start_plain, .fini = h_stop)
{
	struct h_run r;
	const char *env[] = {h_config("[lane default]\nmax_conns_per_host = 1\nqueue_timeout = 200ms\n"), NULL};
	/* closefrom(a) also closes every later fd, so b is created after it. */
	const char *argv[] = {"sockprog", "tcp=a", at("a", h_up.port), "closefrom=a", "tcp=b",
			      at("b", h_up.port), NULL};
	h_run_ok(&r, argv, env, 1, 20000);
	cr_expect(strstr(r.out, "connect b ok") != NULL, "%s", r.out);
	h_run_free(&r);
}

Test(fork, child_closing_does_not_release_the_parents_unit, .init = h_start_plain, .fini = h_stop)
{
	struct h_run r;
	const char *env[] = {h_config("[lane default]\nmax_conns_per_host = 1\nqueue_timeout = 200ms\n"), NULL};
	const char *argv[] = {"sockprog", "tcp=a", "tcp=b", "tcp=c", "tcp=d", at("a", h_up.port),
			      "fork_close=a", "fork_hold=a", at("b", h_up.port), "close=a", at("c", h_up.port), NULL};
	h_run_ok(&r, argv, env, 1, 20000);
	cr_expect(strstr(r.out, "fork_close a child=0") != NULL, "%s", r.out);
	cr_expect(strstr(r.out, "connect b err ETIMEDOUT") != NULL,
		  "the parent still holds its connection: %s", r.out);
	cr_expect(strstr(r.out, "connect c ok") != NULL, "%s", r.out);
	h_run_free(&r);
}

Test(fds, no_fd_leak, .init = h_start_plain, .fini = h_stop)
{
	struct h_run a, b;
	const char *env[] = {h_config(lanes_conf), "CONNROUTE_KEY=x/critical", "CONNROUTE_LOG=debug", NULL};
	const char *argv[] = {"sockprog", "fdcount", "tcp=a", "tcp=b", at("a", h_up.port), at("b", h_up.port),
			      "get=a:/", "close=a", "close=b", "fdcount", NULL};
	h_run_ok(&a, argv, NULL, 0, 20000);
	h_run_ok(&b, argv, env, 1, 20000);
	int f0 = -1, f1 = -2;
	const char *p = strstr(b.out, "fdcount ");
	if (p) {
		f0 = atoi(p + 8);
		p = strstr(p + 8, "fdcount ");
		if (p)
			f1 = atoi(p + 8);
	}
	cr_expect_eq(f0, f1, "fds before and after: %s", b.out);
	cr_expect(strstr(a.out, "fdcount 3") != NULL, "%s", a.out);
	h_run_free(&a);
	h_run_free(&b);
}

/* ------------------------------------------------------- before the constructor */

/* Hooks called from another library's constructor, before the shim's own
 * constructor resolved the real symbols, behave exactly as libc: the same
 * results as after init and as without the shim. */
Test(early, hooks_before_the_constructor_behave_as_libc)
{
	struct h_run a, b;
	const char *env[] = {"CONNROUTE_KEY=early/probe", NULL};
	const char *argv[] = {"earlyprog", NULL};
	h_run_ok(&a, argv, env, 0, 20000);
	h_run_ok(&b, argv, env, 1, 20000);
	cr_assert_eq(b.status, 0, "%s", b.err);
	/* The order is real: the library's constructor ran before the shim's
	 * (which sets the key from CONNROUTE_KEY), main() after it. */
	cr_expect(strstr(b.out, "ctor key default\n") != NULL, "%s", b.out);
	cr_expect(strstr(b.out, "main key early/probe\n") != NULL, "%s", b.out);
	cr_expect(strstr(b.out, "ctor setsockopt_badfd err EBADF\n"), "%s", b.out);
	cr_expect(strstr(b.out, "ctor epoll_ctl_badfd err EBADF\n"), "%s", b.out);
	cr_expect(strstr(b.out, "ctor dup_badfd err EBADF\n"), "%s", b.out);
	cr_expect(strstr(b.out, "ctor dup2_same_is_fd ok\n"), "%s", b.out);
	cr_expect(strstr(b.out, "ctor dup2_same_badfd err EBADF\n"), "%s", b.out);
	/* Every probe line of the run without the shim, in both places. */
	int lines = 0;
	for (char *l = strstr(a.out, "main "); l; l = strstr(l + 1, "\nmain ")) {
		if (*l == '\n')
			l++;
		size_t n = strcspn(l, "\n");
		char want[200];
		if (!strncmp(l, "main key", 8) || n + 2 > sizeof(want))
			continue;
		snprintf(want, sizeof(want), "%.*s\n", (int)n, l);
		cr_expect(strstr(b.out, want) != NULL, "after init, as without the shim: %s\n%s", want, b.out);
		memcpy(want, "ctor", 4);
		cr_expect(strstr(b.out, want) != NULL, "before init, as without the shim: %s\n%s", want, b.out);
		lines++;
	}
	cr_expect_geq(lines, 10, "%s", a.out);
	h_run_free(&a);
	h_run_free(&b);
}

/* ---------------------------------------------------------------- timeouts */

Test(timeouts, blocking_connect_honours_connect_timeout)
{
	struct h_run r;
	const char *args[] = {"--no-accept", "--backlog", "0", NULL};
	cr_assert_eq(h_upstream_start(&h_up, args), 0);
	snprintf(h_dir, sizeof(h_dir), "%s", h_up.dir);
	/* Fill the accept queue from here (not under the shim). */
	int fill[4];
	for (int i = 0; i < 4; i++) {
		struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)h_up.port)};
		inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
		fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		connect(fill[i], (struct sockaddr *)&sa, sizeof(sa));
	}
	usleep(100000);
	const char *env[] = {h_config("[lane default]\nconnect_timeout = 400ms\n"), NULL};
	const char *argv[] = {"sockprog", "tcp=a", "tcp=b", "nonblock=b", at("a", h_up.port), "flags=a",
			      at("b", h_up.port), "flags=b", NULL};
	h_run_ok(&r, argv, env, 1, 20000);
	const char *c = strstr(r.out, "connect a err ETIMEDOUT ms=");
	cr_expect_not_null(c, "%s", r.out);
	if (c) {
		int ms = atoi(c + strlen("connect a err ETIMEDOUT ms="));
		cr_expect(ms >= 350 && ms < 10000, "timed out after %d ms", ms);
	}
	cr_expect(strstr(r.out, "flags a nonblock=0") != NULL, "blocking socket stays blocking: %s", r.out);
	cr_expect(strstr(r.out, "connect b err EINPROGRESS") != NULL,
		  "non-blocking connects are the caller's to time: %s", r.out);
	cr_expect(strstr(r.out, "flags b nonblock=1") != NULL, "%s", r.out);
	for (int i = 0; i < 4; i++)
		close(fill[i]);
	h_run_free(&r);
	h_upstream_stop(&h_up);
}

/* ---------------------------------------------------------------- bad input */

Test(badinput, bad_config_runs_unrouted_with_one_clear_line, .init = h_start_plain, .fini = h_stop)
{
	struct h_run r;
	const char *env[] = {h_config("[lane default]\nmax_conns_per_host = 1\nconect_timeout = 1s\n"), NULL};
	const char *argv[] = {"sockprog", "tcp=a", "tcp=b", at("a", h_up.port), at("b", h_up.port), NULL};
	h_run_ok(&r, argv, env, 1, 20000);
	cr_expect_eq(r.status, 0);
	cr_expect(strstr(r.out, "connect b ok") != NULL, "unrouted: no limit: %s", r.out);
	cr_expect(strstr(r.err, "connroute.conf:3:") != NULL, "FILE:LINE: %s", r.err);
	cr_expect(strstr(r.err, "connect_timeout") != NULL, "says the fix: %s", r.err);
	h_run_free(&r);
}

Test(badinput, strict_mode_stops_the_host, .init = h_start_plain, .fini = h_stop)
{
	struct h_run r;
	const char *env[] = {h_config("[lane default]\nmax_conns_per_host = lots\n"), "CONNROUTE_STRICT=1", NULL};
	const char *argv[] = {"sockprog", "tcp=a", at("a", h_up.port), NULL};
	h_run_ok(&r, argv, env, 1, 20000);
	cr_expect_neq(r.status, 0);
	cr_expect_str_empty(r.out, "the host never ran: %s", r.out);
	cr_expect(strstr(r.err, "connroute.conf:2:") != NULL, "%s", r.err);
	h_run_free(&r);
}

Test(badinput, bad_key_in_environment, .init = h_start_plain, .fini = h_stop)
{
	struct h_run r;
	const char *env[] = {"CONNROUTE_KEY=no spaces please", NULL};
	const char *argv[] = {"sockprog", "tcp=a", at("a", h_up.port), NULL};
	h_run_ok(&r, argv, env, 1, 20000);
	cr_expect_eq(r.status, 0);
	cr_expect(strstr(r.out, "connect a ok") != NULL, "%s", r.out);
	cr_expect(strstr(r.err, "CONNROUTE_KEY") != NULL, "%s", r.err);
	h_run_free(&r);
}

Test(badinput, missing_config_file, .init = h_start_plain, .fini = h_stop)
{
	struct h_run r;
	const char *env[] = {"CONNROUTE_CONFIG=/nonexistent/connroute.conf", NULL};
	const char *argv[] = {"sockprog", "tcp=a", at("a", h_up.port), NULL};
	h_run_ok(&r, argv, env, 1, 20000);
	cr_expect_eq(r.status, 0);
	cr_expect(strstr(r.err, "/nonexistent/connroute.conf") != NULL, "%s", r.err);
	h_run_free(&r);
}

/* ---------------------------------------------------------------- header API */

Test(api, without_the_shim_everything_is_a_no_op)
{
	struct h_run r;
	const char *argv[] = {"apiprog", NULL};
	h_run_ok(&r, argv, NULL, 0, 20000);
	cr_expect_eq(r.status, 0);
	cr_expect(strstr(r.out, "set=-1 errno=ENOSYS now=(null)") != NULL, "%s", r.out);
	cr_expect(strstr(r.out, "return=7") != NULL, "%s", r.out);
	h_run_free(&r);
}

Test(api, with_the_shim_keys_are_set_scoped_and_restored)
{
	struct h_run r;
	const char *env[] = {"CONNROUTE_KEY=env/standard", NULL};
	const char *argv[] = {"apiprog", NULL};
	h_run_ok(&r, argv, env, 1, 20000);
	cr_expect_eq(r.status, 0);
	cr_expect(strstr(r.out, "initial=env/standard\n"), "%s", r.out);
	cr_expect(strstr(r.out, "set=0 errno=0 now=payments/critical\n"), "%s", r.out);
	cr_expect(strstr(r.out, "bad=-1 errno=EINVAL now=payments/critical\n"), "%s", r.out);
	cr_expect(strstr(r.out, "scope1=batch\nscope2=reports/batch+idempotent\nafter2=batch\n"
				"after1=payments/critical\n"),
		  "%s", r.out);
	cr_expect(strstr(r.out, "afterbreak=payments/critical\n"), "%s", r.out);
	cr_expect(strstr(r.out, "return=7 afterreturn=payments/critical\n"), "%s", r.out);
	cr_expect(strstr(r.out, "reset=0 now=env/standard\n"), "%s", r.out);
	h_run_free(&r);
}

Test(api, threads_pick_lanes_by_key, .init = h_start_plain, .fini = h_stop)
{
	struct h_run r;
	char port[16];
	snprintf(port, sizeof(port), "%d", h_up.port);
	const char *env[] = {h_config("[lane critical]\nmatch = */critical\nnodelay = on\ntos = 0xb8\n"
				    "[lane batch]\nmatch = */batch\nnodelay = off\ntos = 0x20\n"),
			     NULL};
	const char *argv[] = {"apiprog", port, "pay/critical", "nightly/batch", "x/critical", NULL};
	h_run_ok(&r, argv, env, 1, 20000);
	cr_expect(strstr(r.out, "key=pay/critical set=0 effective=pay/critical connect=0 nodelay=1 tos=184"),
		  "%s", r.out);
	cr_expect(strstr(r.out, "key=nightly/batch set=0 effective=nightly/batch connect=0 nodelay=0 tos=32"),
		  "%s", r.out);
	cr_expect(strstr(r.out, "key=x/critical set=0 effective=x/critical connect=0 nodelay=1 tos=184"), "%s",
		  r.out);
	h_run_free(&r);
}

/* ---------------------------------------------------------------------- CLI */

Test(cli, run_applies_key_and_config, .init = h_start_plain, .fini = h_stop)
{
	struct h_run r;
	char cli[400], prog[400], cfg[400];
	snprintf(cli, sizeof(cli), "%s/connroute", h_build());
	snprintf(prog, sizeof(prog), "%s/progs/sockprog", h_build());
	cr_assert_eq(h_write_file(h_dir, "c.conf", lanes_conf, cfg, sizeof(cfg)), 0);
	const char *argv[] = {cli, "run", "--key", "payments/critical", "--config", cfg, "--", prog,
			      "tcp=a", at("a", h_up.port), "opts=a", NULL};
	h_run_ok(&r, argv, NULL, 0, 20000);
	cr_expect_eq(r.status, 0, "%s", r.err);
	cr_expect(strstr(r.out, "tos=184 priority=6") != NULL, "%s", r.out);
	h_run_free(&r);
}

Test(cli, check_validates_and_prints_lanes)
{
	struct h_run r;
	char cli[400], good[400], bad[400], tmp[] = "/tmp/cr-check-XXXXXX";
	cr_assert_not_null(mkdtemp(tmp));
	snprintf(cli, sizeof(cli), "%s/connroute", h_build());
	h_write_file(tmp, "good.conf", lanes_conf, good, sizeof(good));
	h_write_file(tmp, "bad.conf", "[lane x]\nconnect_timeout = 5\n", bad, sizeof(bad));
	const char *a1[] = {cli, "check", good, NULL};
	h_run_ok(&r, a1, NULL, 0, 20000);
	cr_expect_eq(r.status, 0, "%s", r.err);
	cr_expect(strstr(r.out, "critical") && strstr(r.out, "batch"), "%s", r.out);
	h_run_free(&r);
	const char *a2[] = {cli, "check", bad, NULL};
	h_run_ok(&r, a2, NULL, 0, 20000);
	cr_expect_eq(r.status, 1);
	cr_expect(strstr(r.err, "bad.conf:2:") != NULL, "%s", r.err);
	h_run_free(&r);
	const char *a3[] = {cli, "--version", NULL};
	h_run_ok(&r, a3, NULL, 0, 20000);
	cr_expect(strncmp(r.out, "connroute ", 10) == 0, "%s", r.out);
	h_run_free(&r);
	unlink(good);
	unlink(bad);
	rmdir(tmp);
}
