/* Integration tests of an easy perform left by a jump (docs/INTERNALS.md, "libcurl lanes",
 * left by a jump): tests/progs/easyjmp, a plain libcurl program, siglongjmps or longjmps out
 * of a write or xferinfo callback of curl_easy_perform, cleans the handle up or abandons it,
 * then performs from a deeper stack frame (a new handle, another existing handle, a new
 * handle per request, a multi, a second thread). The lane has bind = 127.0.0.2 and
 * max_conns_per_host = 1: a later transfer run outside the lane is seen at the server from
 * 127.0.0.1 or beside another one; a unit kept by the dead transfer blocks every later one
 * until queue_timeout (they fail with 28, or the program overruns its time). Judged from
 * outside: exit status, output, the test upstream's /stats and /peers. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

/* Lines "<tag> <i> rc 0 http 200" */
static int count_ok(const char *out, const char *tag)
{
	int n = 0;
	size_t k = strlen(tag);
	for (const char *l = out; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
		const char *eol = strchr(l, '\n');
		const char *ok = strstr(l, " rc 0 http 200");
		n += !strncmp(l, tag, k) && l[k] == ' ' && ok && (!eol || ok < eol);
	}
	return n;
}

/* The line of OUT starting with PREFIX, up to its end, or "" (static). */
static const char *line_of(const char *out, const char *prefix)
{
	static char buf[4][128];
	static int turn;
	char *b = buf[turn++ % 4];
	b[0] = 0;
	const char *l = out ? strstr(out, prefix) : NULL;
	if (l) {
		size_t n = strcspn(l, "\n");
		snprintf(b, sizeof(buf[0]), "%.*s", (int)(n < 127 ? n : 127), l);
	}
	return b;
}

static void jmp_case(const char *mode)
{
	const char *env[] = {h_config("[lane default]\nbind = 127.0.0.2\nmax_conns_per_host = 1\n"
				      "queue_timeout = 4s\n"),
			     NULL};
	struct h_run a, b;
	const char *argv[] = {"easyjmp", mode, h_url, NULL};

	/* Without the shim: the program works, and its transfers overlap (main and worker). */
	h_run_ok(&a, argv, env, 0, 20000);
	cr_assert_eq(a.status, 0, "%s\n%s", a.out, a.err);
	cr_expect_eq(h_count_str(a.out, "jumped 1\n"), 1, "%s", a.out);
	cr_expect_gt(h_stat(&h_up, "max_inflight"), 1, "without the shim: main and worker at once");
	h_wait_stat(&h_up, "open", 0, 2000);
	cr_assert_eq(h_reset(&h_up), 0);

	h_run_ok(&b, argv, env, 1, 20000);
	cr_expect_eq(b.status, 0, "%s\n%s", b.out, b.err);
	cr_expect_eq(h_count_str(b.out, "jumped 1\n"), 1, "%s", b.out);
	cr_expect_eq(count_ok(b.out, "a"), 4, "%s", b.out);
	cr_expect_eq(count_ok(b.out, "n"), 3, "%s", b.out);
	cr_expect_eq(count_ok(b.out, "f"), 2, "%s", b.out);
	cr_expect_eq(count_ok(b.out, "m"), 2, "%s", b.out);
	cr_expect_eq(count_ok(b.out, "w"), 4, "%s", b.out);
	cr_expect_eq(h_count_str(b.out, "after in time\n"), 1, "%s", b.out);
	cr_expect_eq(h_count_str(b.out, "exit 0\n"), 1, "%s", b.out);
	/* The handle left is libcurl's alone: what it answers is libcurl's answer. */
	cr_expect_str_eq(line_of(b.out, "again rc"), line_of(a.out, "again rc"), "%s", b.out);
	cr_expect_str_eq(line_of(b.out, "add rc"), line_of(a.out, "add rc"), "%s", b.out);
	cr_expect_str_eq(line_of(b.out, "perform returned"), "", "%s", b.out);
	/* Every transfer in the lane: its address, one at a time, its connections reused (one
	 * before the jump, kept by the dead transfer as without the shim; one for the easy
	 * transfers after it; one more at most for the multi's). */
	long reqs = h_stat(&h_up, "requests");
	cr_expect_eq(reqs, 16, "every request at the server once");
	cr_expect_eq(h_stat(&h_up, "max_inflight"), 1, "the lane's limit was not applied");
	cr_expect_leq(h_stat(&h_up, "accepted"), 3, "connections were not reused");
	char *peers = h_peers(&h_up);
	cr_expect_eq(h_count_str(peers, "127.0.0.1:"), 0, "outside the lane:\n%s", peers);
	cr_expect_gt(h_count_str(peers, "127.0.0.2:"), 0, "%s", peers);
	free(peers);
	h_run_free(&a);
	h_run_free(&b);
}

Test(easy_jmp, siglongjmp_write_then_cleanup, .init = h_start_plain, .fini = h_stop)
{
	jmp_case("sig-write-clean");
}

Test(easy_jmp, siglongjmp_write_then_abandon, .init = h_start_plain, .fini = h_stop)
{
	jmp_case("sig-write-abandon");
}

Test(easy_jmp, siglongjmp_progress_then_cleanup, .init = h_start_plain, .fini = h_stop)
{
	jmp_case("sig-progress-clean");
}

Test(easy_jmp, siglongjmp_progress_then_abandon, .init = h_start_plain, .fini = h_stop)
{
	jmp_case("sig-progress-abandon");
}

Test(easy_jmp, longjmp_write_then_cleanup, .init = h_start_plain, .fini = h_stop)
{
	jmp_case("jmp-write-clean");
}

Test(easy_jmp, longjmp_write_then_abandon, .init = h_start_plain, .fini = h_stop)
{
	jmp_case("jmp-write-abandon");
}

Test(easy_jmp, longjmp_progress_then_cleanup, .init = h_start_plain, .fini = h_stop)
{
	jmp_case("jmp-progress-clean");
}

Test(easy_jmp, longjmp_progress_then_abandon, .init = h_start_plain, .fini = h_stop)
{
	jmp_case("jmp-progress-abandon");
}

/* More performs left at once than the table of performs left holds (16): 20 threads each
 * siglongjmp out of a write callback, then their handles are cleaned up and the lane used
 * again. The shares parked on the handles must leave their pools before the handles' records
 * are freed, table or not: under valgrind, no read of a freed record (the pool's next taker,
 * the closing of the pools at curl_global_cleanup). */
Test(easy_jmp, twenty_left_at_once_then_cleanup, .init = h_start_plain, .fini = h_stop)
{
	const char *env[] = {h_config("[lane default]\nbind = 127.0.0.2\nmax_conns_per_host = 32\n"
				      "queue_timeout = 4s\n"),
			     NULL};
	struct h_run b;
	const char *argv[] = {"easyjmp", "many", h_url, NULL};
	h_run_ok(&b, argv, env, 1, 30000);
	cr_expect_eq(b.status, 0, "%s\n%s", b.out, b.err);
	cr_expect_eq(h_count_str(b.out, "many jumped 20\n"), 1, "%s", b.out);
	cr_expect_eq(count_ok(b.out, "k"), 5, "%s", b.out);
	char *peers = h_peers(&h_up);
	cr_expect_eq(h_count_str(peers, "127.0.0.1:"), 0, "outside the lane:\n%s", peers);
	free(peers);
	h_run_free(&b);
	if (access("/usr/bin/valgrind", X_OK) != 0) {
		cr_log_warn("valgrind not installed: the memory half is skipped");
		return;
	}
	h_wait_stat(&h_up, "open", 0, 2000);
	cr_assert_eq(h_reset(&h_up), 0);
	struct h_run v;
	char prog[512];
	snprintf(prog, sizeof(prog), "%s/progs/easyjmp", h_build());
	const char *vargv[] = {"/usr/bin/valgrind",
			       "-q",
			       "--error-exitcode=9",
			       "--leak-check=no",
			       "--trace-children=no",
			       prog,
			       "many",
			       h_url,
			       NULL};
	h_run_ok(&v, vargv, env, 1, 120000);
	cr_expect_eq(v.status, 0, "valgrind: %s\n%s", v.out, v.err);
	cr_expect_eq(h_count_str(v.out, "many jumped 20\n"), 1, "%s", v.out);
	cr_expect_eq(count_ok(v.out, "k"), 5, "%s", v.out);
	h_run_free(&v);
}
