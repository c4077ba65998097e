/* Integration tests of "the handle's connection" under the shim (docs/INTERNALS.md,
 * "libcurl lanes": a share stays on its handle, idle bound and idle timeout): an unmodified
 * libcurl program (tests/progs/curlconn) that uses the connection after curl_easy_perform
 * returns (CONNECT_ONLY 1 and 2 with curl_easy_send/recv, a WebSocket over them, getinfo of
 * the connection, pause, upkeep, reset, duphandle, the header API), run with and without
 * LD_PRELOAD against the test upstream, judged from what it printed and what the server
 * saw (connection ids, accept and open counts). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define RUN(r, env, preload, ...)                                                               \
	do {                                                                                    \
		const char *argv_[] = {"curlconn", __VA_ARGS__, NULL};                          \
		cr_assert_eq(h_run((r), argv_, (env), (preload), 30000), 0);                    \
		cr_assert_eq((r)->timed_out, 0, "hung (preload=%d): %s\n%s", (preload), (r)->out, \
			     (r)->err);                                                         \
	} while (0)

/* The value of "name=" on the first line starting with PREFIX (after skipping SKIP such
 * lines), as a string into OUT; 0 if found. */
static int field(const char *out, const char *prefix, int skip, const char *name, char *val, size_t n)
{
	size_t pl = strlen(prefix);
	for (const char *p = out; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (strncmp(p, prefix, pl) != 0 || (p[pl] != ' ' && p[pl] != '\n'))
			continue;
		if (skip-- > 0)
			continue;
		const char *eol = strchr(p, '\n');
		char key[64];
		snprintf(key, sizeof(key), " %s=", name);
		const char *k = strstr(p, key);
		if (!k || (eol && k > eol))
			return -1;
		k += strlen(key);
		size_t m = strcspn(k, " \n");
		if (m >= n)
			m = n - 1;
		memcpy(val, k, m);
		val[m] = '\0';
		return 0;
	}
	return -1;
}

static long field_l(const char *out, const char *prefix, int skip, const char *name)
{
	char v[64];
	return field(out, prefix, skip, name, v, sizeof(v)) == 0 ? strtol(v, NULL, 10) : -999;
}

/* The line starting with PREFIX, with "conn=..." and "lport=..." removed (they differ
 * between two runs by nature): for comparing a run with and without the shim. */
static void line_without_ids(const char *out, const char *prefix, int skip, char *buf, size_t n)
{
	size_t pl = strlen(prefix);
	buf[0] = '\0';
	for (const char *p = out; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (strncmp(p, prefix, pl) != 0 || skip-- > 0)
			continue;
		size_t len = strcspn(p, "\n"), o = 0;
		for (size_t i = 0; i < len && o + 1 < n;) {
			if (p[i] == ' ' && (!strncmp(p + i + 1, "conn", 4) || !strncmp(p + i + 1, "lport=", 6) ||
					    !strncmp(p + i + 1, "eff=", 4))) {
				i++;
				while (i < len && p[i] != ' ')
					i++;
				continue;
			}
			buf[o++] = p[i++];
		}
		buf[o] = '\0';
		return;
	}
}

/* --------------------------------------------------------- CONNECT_ONLY */

/* curl's docs/examples/sendrecv.c, in our own words: CONNECT_ONLY, then a request written
 * with curl_easy_send and the reply read with curl_easy_recv. Under the shim of the first
 * design it failed with "Unsupported protocol" (the share, and the connection with it, was
 * detached right after the perform). */
Test(curl_conn, connect_only_send_recv_prints_the_reply, .init = h_start_plain, .fini = h_stop)
{
	struct h_run a, b;
	RUN(&a, NULL, 0, "sendrecv", h_path_url("/conn"));
	cr_assert_eq(a.status, 0, "without the shim: %s\n%s", a.out, a.err);
	RUN(&b, NULL, 1, "sendrecv", h_path_url("/conn"));
	cr_expect_eq(b.status, 0, "with the shim: %s\n%s", b.out, b.err);
	cr_expect(strstr(b.out, "reply HTTP/1.1 200 OK\n") != NULL, "%s", b.out);
	cr_expect(strstr(b.out, "body conn=") != NULL, "%s", b.out);
	h_run_free(&a);
	h_run_free(&b);
}

/* CONNECT_ONLY=2 (libcurl < 7.86 or without WebSocket support: the perform does the GET and
 * keeps the connection for the app): a second request written on it reaches the same
 * server connection. */
Test(curl_conn, connect_only_2_keeps_the_connection_for_the_app, .init = h_start_plain, .fini = h_stop)
{
	struct h_run a, b;
	RUN(&a, NULL, 0, "co2", h_path_url("/conn"));
	cr_assert_eq(a.status, 0, "%s\n%s", a.out, a.err);
	RUN(&b, NULL, 1, "co2", h_path_url("/conn"));
	cr_expect_eq(b.status, 0, "%s\n%s", b.out, b.err);
	cr_expect(strstr(b.out, "reply HTTP/1.1 200 OK\n") != NULL, "%s", b.out);
	cr_expect_eq(field_l(b.out, "perform", 0, "code"), 0, "%s", b.out);
	char c1[32] = "", c2[32] = "";
	field(b.out, "perform", 0, "conn", c1, sizeof(c1));
	const char *p = strstr(b.out, "conn2 ");
	if (p)
		sscanf(p + 6, "%31s", c2);
	cr_expect_str_eq(c1, c2, "the app's second request went over the perform's connection: %s", b.out);
	h_run_free(&a);
	h_run_free(&b);
}

/* A WebSocket client on CONNECT_ONLY (the upstream's /ws echo): handshake, one masked text
 * frame, its echo. curl_ws_send/recv answer what this libcurl answers, the same with and
 * without the shim (CURLE_NOT_BUILT_IN for a libcurl built without WebSocket support). */
Test(curl_conn, websocket_over_connect_only_echoes, .init = h_start_plain, .fini = h_stop)
{
	struct h_run a, b;
	RUN(&a, NULL, 0, "ws", h_path_url("/ws"));
	cr_assert_eq(a.status, 0, "%s\n%s", a.out, a.err);
	RUN(&b, NULL, 1, "ws", h_path_url("/ws"));
	cr_expect_eq(b.status, 0, "%s\n%s", b.out, b.err);
	cr_expect(strstr(b.out, "ws status=101 accept=ok echo=hello\n") != NULL, "%s", b.out);
	char wa[128], wb[128];
	line_without_ids(a.out, "curl_ws", 0, wa, sizeof(wa));
	line_without_ids(b.out, "curl_ws", 0, wb, sizeof(wb));
	cr_expect_str_eq(wa, wb, "curl_ws_* answer as without the shim");
	h_run_free(&a);
	h_run_free(&b);
}

/* ---------------------------------------------------------------- getinfo */

/* A persistent handle's connection info after each perform: ACTIVESOCKET and LASTSOCKET
 * name the connection's socket (-1 under the first design), LOCAL_PORT is the port the
 * server sees, PRIMARY_IP/PORT and NUM_CONNECTS (1, then 0 on reuse) as without the shim. */
Test(curl_conn, getinfo_of_the_connection_as_without_the_shim, .init = h_start_plain, .fini = h_stop)
{
	struct h_run a, b;
	RUN(&a, NULL, 0, "info", h_path_url("/conn"), "3");
	cr_assert_eq(a.status, 0, "%s\n%s", a.out, a.err);
	RUN(&b, NULL, 1, "info", h_path_url("/conn"), "3");
	cr_expect_eq(b.status, 0, "%s\n%s", b.out, b.err);
	for (int i = 0; i < 3; i++) {
		char la[400], lb[400];
		line_without_ids(a.out, "info", i, la, sizeof(la));
		line_without_ids(b.out, "info", i, lb, sizeof(lb));
		cr_expect_str_eq(la, lb, "perform %d:\nwithout: %s\nwith:    %s", i, la, lb);
		cr_expect_geq(field_l(b.out, "info", i, "active"), 0, "%s", b.out);
		cr_expect_eq(field_l(b.out, "info", i, "same_sock"), 1, "%s", b.out);
	}
	/* The local port is the peer port the server saw for that connection. */
	char conn[32], peers_line[128];
	cr_assert_eq(field(b.out, "info", 0, "conn", conn, sizeof(conn)), 0);
	char *peers = h_peers(&h_up);
	cr_assert_not_null(peers);
	snprintf(peers_line, sizeof(peers_line), "\n%s 127.0.0.1:%ld ", conn, field_l(b.out, "info", 0, "lport"));
	char with_nl[8192];
	snprintf(with_nl, sizeof(with_nl), "\n%s", peers);
	cr_expect(strstr(with_nl, peers_line) != NULL, "LOCAL_PORT %ld of conn %s not in /peers:\n%s",
		  field_l(b.out, "info", 0, "lport"), conn, peers);
	free(peers);
	h_run_free(&a);
	h_run_free(&b);
}

/* New handles (recycled by the shim): before its perform each answers getinfo and the
 * header API as a fresh curl_easy_init handle does (no response code, no socket, no
 * headers, no PRIVATE of the handle that had it before), and after its perform it reuses
 * the pooled connection. */
Test(curl_conn, recycled_handle_looks_fresh, .init = h_start_plain, .fini = h_stop)
{
	struct h_run a, b, ha, hb;
	RUN(&a, NULL, 0, "fresh", h_path_url("/conn"), "3");
	cr_assert_eq(a.status, 0, "%s\n%s", a.out, a.err);
	RUN(&b, NULL, 1, "fresh", h_path_url("/conn"), "3");
	cr_expect_eq(b.status, 0, "%s\n%s", b.out, b.err);
	for (int i = 0; i < 3; i++) {
		char la[400], lb[400];
		line_without_ids(a.out, "pre", i, la, sizeof(la));
		line_without_ids(b.out, "pre", i, lb, sizeof(lb));
		cr_expect_str_eq(la, lb, "handle %d before its perform:\nwithout: %s\nwith:    %s", i, la, lb);
		line_without_ids(a.out, "post", i, la, sizeof(la));
		line_without_ids(b.out, "post", i, lb, sizeof(lb));
		cr_expect_str_eq(la, lb, "handle %d after its perform:\nwithout: %s\nwith:    %s", i, la, lb);
	}
	char c0[32], c2[32];
	field(b.out, "post", 0, "conn", c0, sizeof(c0));
	field(b.out, "post", 2, "conn", c2, sizeof(c2));
	cr_expect_str_eq(c0, c2, "the third handle reused the first one's connection: %s", b.out);
	RUN(&ha, NULL, 0, "header", h_path_url("/conn"));
	RUN(&hb, NULL, 1, "header", h_path_url("/conn"));
	char la[200], lb[200];
	line_without_ids(ha.out, "header_fresh", 0, la, sizeof(la));
	line_without_ids(hb.out, "header_fresh", 0, lb, sizeof(lb));
	cr_expect_str_eq(la, lb, "curl_easy_header on a new handle:\nwithout: %s\nwith:    %s", ha.out, hb.out);
	cr_expect_eq(field_l(hb.out, "header", 0, "rc"), 0, "%s", hb.out);
	h_run_free(&a);
	h_run_free(&b);
	h_run_free(&ha);
	h_run_free(&hb);
}

/* -------------------------------------------------------------- lanes */

/* One handle whose key changes between performs (thread-name rules): its parked connection
 * must not follow it into the other lane, and it finds its own again when it comes back.
 * Without the shim the handle reuses one connection throughout (the control). */
Test(curl_conn, handle_whose_key_changes_never_takes_its_connection_along, .init = h_start_plain, .fini = h_stop)
{
	struct h_run a, b;
	const char *env[] = {h_config("[lane critical]\nmatch = */critical\n[lane batch]\nmatch = */batch\n"
				    "[threads]\ncrit-* = app/critical\nbatch-* = app/batch\n"),
			     NULL};
	RUN(&a, env, 0, "lanes", h_path_url("/conn"));
	cr_assert_eq(a.status, 0, "%s\n%s", a.out, a.err);
	char a0[32], a1[32];
	field(a.out, "lane", 0, "conn", a0, sizeof(a0));
	field(a.out, "lane", 1, "conn", a1, sizeof(a1));
	cr_assert_str_eq(a0, a1, "without the shim the handle keeps its connection: %s", a.out);
	h_wait_stat(&h_up, "open", 0, 2000);
	h_reset(&h_up);
	RUN(&b, env, 1, "lanes", h_path_url("/conn"));
	cr_expect_eq(b.status, 0, "%s\n%s", b.out, b.err);
	char c0[32], c1[32], c2[32];
	field(b.out, "lane", 0, "conn", c0, sizeof(c0));
	field(b.out, "lane", 1, "conn", c1, sizeof(c1));
	field(b.out, "lane", 2, "conn", c2, sizeof(c2));
	cr_expect_str_neq(c0, c1, "the critical lane's connection served the batch lane: %s", b.out);
	cr_expect_str_eq(c0, c2, "back in its lane, the handle reuses that lane's connection: %s", b.out);
	cr_expect_eq(h_stat(&h_up, "accepted"), 2, "one connection per lane");
	h_run_free(&a);
	h_run_free(&b);
}

/* ------------------------------------------------------- handle life */

/* A handle performs, is left idle (longer than the 1 s after which its share may be taken)
 * while new handles perform, then performs again: every request works, and the lane keeps
 * using one connection (without the shim: 6). */
Test(curl_conn, idle_handle_performs_again_after_others_used_the_lane, .init = h_start_plain, .fini = h_stop)
{
	struct h_run a, b;
	RUN(&a, NULL, 0, "idle", h_path_url("/conn"), "1300");
	cr_assert_eq(a.status, 0, "%s\n%s", a.out, a.err);
	cr_assert_eq(h_stat(&h_up, "accepted"), 6, "without the shim: one connection per handle");
	h_wait_stat(&h_up, "open", 0, 2000);
	h_reset(&h_up);
	RUN(&b, NULL, 1, "idle", h_path_url("/conn"), "1300");
	cr_expect_eq(b.status, 0, "%s\n%s", b.out, b.err);
	cr_expect_eq(field_l(b.out, "a2", 0, "code"), 0, "%s", b.out);
	cr_expect_eq(h_stat(&h_up, "accepted"), 1, "the idle handle's connection served the others: %s", b.out);
	cr_expect_eq(h_stat(&h_up, "requests"), 7);
	h_run_free(&a);
	h_run_free(&b);
}

/* curl_easy_reset keeps the handle's connection (libcurl documents it), with and without the
 * shim; a duplicate of a handle holding a parked share works and never shares it. */
Test(curl_conn, reset_and_duphandle_of_a_handle_with_a_parked_share, .init = h_start_plain, .fini = h_stop)
{
	struct h_run a, b;
	RUN(&a, NULL, 0, "resetdup", h_path_url("/conn"));
	cr_assert_eq(a.status, 0, "%s\n%s", a.out, a.err);
	RUN(&b, NULL, 1, "resetdup", h_path_url("/conn"));
	cr_expect_eq(b.status, 0, "%s\n%s", b.out, b.err);
	char a0[32], ar[32], aa[32], d[32];
	field(b.out, "a", 0, "conn", a0, sizeof(a0));
	field(b.out, "after_reset", 0, "conn", ar, sizeof(ar));
	field(b.out, "a_again", 0, "conn", aa, sizeof(aa));
	field(b.out, "dup", 0, "conn", d, sizeof(d));
	cr_expect_str_eq(a0, ar, "a reset handle keeps its connection: %s", b.out);
	cr_expect_str_eq(a0, aa, "%s", b.out);
	cr_expect_str_neq(d, "-", "%s", b.out);
	cr_expect_eq(field_l(b.out, "dup", 0, "code"), 0, "%s", b.out);
	/* The same pattern as without the shim. */
	char x0[32], xr[32];
	field(a.out, "a", 0, "conn", x0, sizeof(x0));
	field(a.out, "after_reset", 0, "conn", xr, sizeof(xr));
	cr_expect_str_eq(x0, xr, "%s", a.out);
	h_run_free(&a);
	h_run_free(&b);
}

/* A transfer paused by its write callback and resumed from its progress callback, and
 * curl_easy_upkeep between two performs: as without the shim. */
Test(curl_conn, pause_and_upkeep_as_without_the_shim, .init = h_start_plain, .fini = h_stop)
{
	struct h_run a, b, c, d;
	RUN(&a, NULL, 0, "pause", h_path_url("/conn"));
	RUN(&b, NULL, 1, "pause", h_path_url("/conn"));
	cr_expect_eq(a.status, 0, "%s", a.out);
	cr_expect_eq(b.status, 0, "%s\n%s", b.out, b.err);
	cr_expect_eq(field_l(b.out, "pause", 0, "paused"), 1, "%s", b.out);
	cr_expect_eq(field_l(b.out, "pause", 0, "resumed"), 1, "%s", b.out);
	RUN(&c, NULL, 0, "upkeep", h_path_url("/conn"));
	RUN(&d, NULL, 1, "upkeep", h_path_url("/conn"));
	cr_expect_eq(field_l(c.out, "upkeep", 0, "rc"), field_l(d.out, "upkeep", 0, "rc"), "%s\n%s", c.out, d.out);
	char d1[32], d2[32];
	field(d.out, "upkeep", 0, "conn1", d1, sizeof(d1));
	field(d.out, "upkeep", 0, "conn2", d2, sizeof(d2));
	cr_expect_str_eq(d1, d2, "%s", d.out);
	h_run_free(&a);
	h_run_free(&b);
	h_run_free(&c);
	h_run_free(&d);
}

/* ------------------------------------------------------ idle timeout */

/* Issue 17, item 1: 50 threads, a new handle each, then the program idles. Without the shim
 * curl_easy_cleanup closed every connection; with it the pool keeps at most
 * max_idle_per_host idle ones (the bound holds across shares) and the background thread
 * closes them within idle_timeout (2 s) + 1 s of slack, while the program still runs. The
 * first design kept all 50 until the program exited. */
Test(curl_idle, burst_then_idle_connections_closed_within_idle_timeout, .init = h_start_plain, .fini = h_stop)
{
	struct h_run a, b;
	char ctl[16];
	snprintf(ctl, sizeof(ctl), "%d", h_up.control_port);
	const char *env[] = {h_config("[lane default]\nidle_timeout = 2s\nmax_idle_per_host = 4\n"), NULL};
	RUN(&a, env, 0, "burst", h_path_url("/conn"), "50", "1000", ctl);
	cr_assert_eq(a.status, 0, "%s\n%s", a.out, a.err);
	cr_expect_eq(field_l(a.out, "open", 0, "n"), 0, "without the shim nothing stays open: %s", a.out);
	h_wait_stat(&h_up, "open", 0, 2000);
	h_reset(&h_up);
	RUN(&b, env, 1, "burst", h_path_url("/conn"), "50", "4500", ctl);
	cr_assert_eq(b.status, 0, "%s\n%s", b.out, b.err);
	int samples = 0, closed_in_time = 0;
	for (int i = 0;; i++) {
		long ms = field_l(b.out, "open", i, "ms"), n = field_l(b.out, "open", i, "n");
		if (ms == -999)
			break;
		samples++;
		cr_expect_leq(n, 4, "more idle connections than max_idle_per_host at %ld ms:\n%s", ms, b.out);
		if (ms >= 3500)
			cr_expect_eq(n, 0, "still %ld open %ld ms after the burst (idle_timeout 2 s):\n%s", n, ms, b.out);
		if (ms <= 3500 && n == 0)
			closed_in_time = 1;
	}
	cr_expect_geq(samples, 10, "%s", b.out);
	cr_expect(closed_in_time, "not closed within idle_timeout + 1.5 s:\n%s", b.out);
	h_run_free(&a);
	h_run_free(&b);
}
