/* Integration tests of multi transfers in lanes under an adversarial host (docs/INTERNALS.md,
 * "Multi transfers"): tests/progs/multifork, a plain libcurl multi program that forks with
 * transfers queued and in flight, vforks from a write callback, siglongjmps out of
 * curl_multi_perform, closes every fd between multis, cleans up in the wrong order, and a
 * plugin running multi transfers that is dlopen'd and dlclose'd twice (tests/progs/plughost
 * with tests/progs/plugins/mplug.c). Judged from outside: exit status, output, the test
 * upstream's /stats. Every lane here has max_conns_per_host = 1: a unit leaked would block
 * every later transfer of the lane until queue_timeout (they would fail with 28). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static const char *lane1(void)
{
	return h_config("[lane default]\nmax_conns_per_host = 1\nqueue_timeout = 4s\n");
}

static void reset(void)
{
	h_wait_stat(&h_up, "open", 0, 10000);
	cr_assert_eq(h_reset(&h_up), 0);
}

/* Lines "<tag> <i> rc 0 http 200 " */
static int count_ok(const char *out, const char *tag)
{
	int n = 0;
	for (const char *l = out; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
		size_t k = strlen(tag);
		if (!strncmp(l, tag, k) && l[k] == ' ') {
			const char *rc = strstr(l, " rc 0 http 200 ");
			const char *eol = strchr(l, '\n');
			n += rc && (!eol || rc < eol);
		}
	}
	return n;
}

/* ------------------------------------------------------------------ fork */

/* The child leaves the parent's multi (abandoned, or cleaned up in either order) and runs
 * its own multi in the same lane; the parent's 4 POSTs all complete, each reaching the
 * server once. */
static void fork_case(const char *mode)
{
	const char *env[] = {lane1(), NULL};
	for (int pre = 0; pre <= 1; pre++) {
		struct h_run r;
		reset();
		H_RUN(&r, env, pre, "multifork", mode, h_url);
		cr_expect_eq(r.status, 0, "preload %d\n%s\n%s", pre, r.out, r.err);
		cr_expect_eq(count_ok(r.out, "p"), 4, "%s", r.out);
		cr_expect_eq(count_ok(r.out, "c"), 3, "%s", r.out);
		cr_expect_eq(h_count_str(r.out, "child status 0\n"), 1, "%s", r.out);
		/* No POST sent twice (the child never runs the parent's queued ones). */
		cr_expect_eq(h_stat(&h_up, "requests_post"), 4, "preload %d", pre);
		cr_expect_eq(h_stat(&h_up, "requests"), 7, "preload %d", pre);
		if (pre) /* one of the parent's, one of the child's (its own limit) */
			cr_expect_leq(h_stat(&h_up, "max_inflight"), 2);
		else
			cr_expect_gt(h_stat(&h_up, "max_inflight"), 2, "without the shim all at once");
		h_run_free(&r);
	}
}

Test(multi_fork, fork_child_abandons, .init = h_start_plain, .fini = h_stop)
{
	fork_case("fork-abandon");
}

Test(multi_fork, fork_child_multi_cleanup_first, .init = h_start_plain, .fini = h_stop)
{
	fork_case("fork-mcleanup");
}

Test(multi_fork, fork_child_easy_cleanup_first, .init = h_start_plain, .fini = h_stop)
{
	fork_case("fork-ecleanup");
}

/* ----------------------------------------------------------------- vfork */

static void vfork_case(const char *mode)
{
	const char *env[] = {lane1(), NULL};
	struct h_run r;
	H_RUN(&r, env, 1, "multifork", mode, h_url);
	cr_expect_eq(r.status, 0, "%s\n%s", r.out, r.err);
	cr_expect_eq(h_count_str(r.out, "vfork child status 0\n"), 1, "%s", r.out);
	cr_expect_eq(count_ok(r.out, "a"), 4, "%s", r.out);
	cr_expect_eq(count_ok(r.out, "b"), 4, "%s", r.out);
	cr_expect_eq(h_stat(&h_up, "max_inflight"), 1, "the limit after the vfork");
	cr_expect_eq(h_stat(&h_up, "requests"), 8);
	h_run_free(&r);
}

Test(multi_fork, vfork_exec_in_write_callback, .init = h_start_plain, .fini = h_stop)
{
	vfork_case("vfork-exec");
}

Test(multi_fork, vfork_exit_in_write_callback, .init = h_start_plain, .fini = h_stop)
{
	vfork_case("vfork-exit");
}

/* -------------------------------------------------------------- siglongjmp */

/* After a siglongjmp out of a callback of curl_multi_perform, libcurl refuses every call on
 * that multi (CURLM_RECURSIVE_API_CALL, 8): the multi is dead. Later multi transfers of the
 * lane, from a deeper stack frame than the call that was left, still run in the lane (the
 * limit holds: one at a time at the server) and are admitted (no unit left with the dead
 * transfer): all succeed, in time. */
static void jmp_case(const char *mode)
{
	const char *env[] = {lane1(), NULL};
	struct h_run a, b;
	H_RUN(&a, env, 0, "multifork", mode, h_url);
	cr_assert_eq(a.status, 0, "%s\n%s", a.out, a.err);
	cr_expect_eq(h_count_str(a.out, "jumped 1\n"), 1, "%s", a.out);
	cr_expect_gt(h_stat(&h_up, "max_inflight"), 1, "without the shim: all at once");
	reset();
	H_RUN(&b, env, 1, "multifork", mode, h_url);
	cr_expect_eq(b.status, 0, "%s\n%s", b.out, b.err);
	cr_expect_str_eq(b.out, a.out, "output differs with the shim");
	cr_expect_eq(count_ok(b.out, "b"), 3, "%s", b.out);
	cr_expect_eq(h_count_str(b.out, "after in time\n"), 1, "%s", b.out);
	/* The dead transfer's request is still at the server (its connection open, as without
	 * the shim); the lane's transfers after it one at a time. */
	cr_expect_leq(h_stat(&h_up, "max_inflight"), 2, "the lane's limit was not applied");
	cr_expect_leq(h_stat(&h_up, "accepted"), 2, "the lane's transfers did not share one "
						"connection");
	h_run_free(&a);
	h_run_free(&b);
}

Test(multi_fork, longjmp_write_then_cleanup, .init = h_start_plain, .fini = h_stop)
{
	jmp_case("jmp-write-clean");
}

Test(multi_fork, longjmp_write_then_abandon, .init = h_start_plain, .fini = h_stop)
{
	jmp_case("jmp-write-abandon");
}

Test(multi_fork, longjmp_progress_then_cleanup, .init = h_start_plain, .fini = h_stop)
{
	jmp_case("jmp-progress-clean");
}

Test(multi_fork, longjmp_progress_then_abandon, .init = h_start_plain, .fini = h_stop)
{
	jmp_case("jmp-progress-abandon");
}

/* ------------------------------------------------------------ closed fds */

static void closefds_case(const char *mode)
{
	const char *env[] = {lane1(), NULL};
	struct h_run a, b;
	H_RUN(&a, env, 0, "multifork", mode, h_url);
	cr_assert_eq(a.status, 0, "%s\n%s", a.out, a.err);
	reset();
	H_RUN(&b, env, 1, "multifork", mode, h_url);
	cr_expect_eq(b.status, 0, "%s\n%s", b.out, b.err);
	cr_expect_str_eq(b.out, a.out, "output differs with the shim");
	cr_expect_eq(h_count_str(b.out, "fds ok\n"), 1, "%s", b.out);
	cr_expect_eq(h_stat(&h_up, "max_inflight"), 1);
	h_run_free(&a);
	h_run_free(&b);
}

Test(multi_fork, close_range_between_multis, .init = h_start_plain, .fini = h_stop)
{
	closefds_case("closefds");
}

Test(multi_fork, close_loop_between_multis, .init = h_start_plain, .fini = h_stop)
{
	closefds_case("closefds-loop");
}

/* --------------------------------------------------- cleanups, any order */

/* curl_multi_cleanup with transfers in flight and queued, then the easy cleanups, or the
 * easy cleanups of handles still in the multi first: the same output as without the shim,
 * the lane usable after (units back), and memory-clean under valgrind. The program also
 * reads each CURLMsg again after curl_multi_remove_handle, as many programs do (libcurl 7.x
 * keeps it in the easy handle): a message of ours must live as long. */
static void live_case(const char *mode)
{
	const char *env[] = {lane1(), NULL};
	struct h_run a, b;
	H_RUN(&a, env, 0, "multifork", mode, h_url);
	cr_assert_eq(a.status, 0, "%s\n%s", a.out, a.err);
	reset();
	H_RUN(&b, env, 1, "multifork", mode, h_url);
	cr_expect_eq(b.status, 0, "%s\n%s", b.out, b.err);
	cr_expect_str_eq(b.out, a.out, "output differs with the shim");
	cr_expect_eq(count_ok(b.out, "b"), 4, "%s", b.out);
	/* The one cut off may still be at the server (it sleeps 300 ms), plus one. */
	cr_expect_leq(h_stat(&h_up, "max_inflight"), 2);
	h_run_free(&b);
	if (access("/usr/bin/valgrind", X_OK) != 0) {
		cr_log_warn("valgrind not installed: the memory half is skipped");
		h_run_free(&a);
		return;
	}
	reset();
	struct h_run v;
	const char *argv[] = {"/usr/bin/valgrind", "-q", "--error-exitcode=9", "--leak-check=no",
			      "--trace-children=no", "build/progs/multifork", mode, h_url, NULL};
	char prog[512];
	snprintf(prog, sizeof(prog), "%s/progs/multifork", h_build());
	argv[5] = prog;
	h_run_ok(&v, argv, env, 1, 60000);
	cr_expect_eq(v.status, 0, "valgrind: %s\n%s", v.out, v.err);
	cr_expect_str_eq(v.out, a.out, "%s", v.err);
	h_run_free(&v);
	h_run_free(&a);
}

Test(multi_fork, multi_cleanup_with_transfers_live, .init = h_start_plain, .fini = h_stop)
{
	live_case("mc-live");
}

Test(multi_fork, easy_cleanup_in_multi_then_multi_cleanup, .init = h_start_plain,
     .fini = h_stop)
{
	live_case("ec-live");
}

/* ---------------------------------------------------------------- dlclose */

/* A plugin linked to libcurl runs multi transfers (a timer callback of its own, a limit
 * of 1 with 4 transfers queued), is dlclose'd, loaded again, runs again. */
Test(multi_fork, plugin_multi_dlclose_twice, .init = h_start_plain, .fini = h_stop)
{
	const char *env[] = {lane1(), NULL};
	char p[512];
	snprintf(p, sizeof(p), "%s/progs/libplug_multi.so", h_build());
	struct h_run a, b;
	const char *argv[] = {"plughost", h_path_url("/delay/100"), "-", p, p, NULL};
	h_run_ok(&a, argv, env, 0, 30000);
	cr_assert_eq(a.status, 0, "%s\n%s", a.out, a.err);
	reset();
	h_run_ok(&b, argv, env, 1, 30000);
	cr_expect_eq(b.status, 0, "%s\n%s", b.out, b.err);
	cr_expect_eq(h_count_str(a.out, "mplug ok 4\n"), 2, "%s", a.out);
	cr_expect_eq(h_count_str(b.out, "mplug ok 4\n"), 2, "%s", b.out);
	cr_expect_eq(h_stat(&h_up, "max_inflight"), 1);
	cr_expect_eq(h_stat(&h_up, "path_delay"), 8);
	h_run_free(&a);
	h_run_free(&b);
}
