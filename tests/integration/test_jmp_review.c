/* Integration tests from the review of the perform hooks' cleanup buffers (docs/INTERNALS.md,
 * "libcurl lanes", left by a jump; "Multi transfers", left by a longjmp): unwinding other
 * than glibc's longjmp and pthread_exit through the hooks. tests/progs/jmpexc, a C++
 * libcurl program, throws out of a write callback of curl_easy_perform or
 * curl_multi_perform, catches it, performs again (same frame, deeper frame), then its
 * thread ends with pthread_exit, which runs glibc's old-style cleanup buffers: one left
 * linked from the hook's dead frame was called with whatever the stack held there (a
 * crash). Judged from outside: exit status, output, the upstream's /peers. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static void exc_case(const char *mode)
{
	const char *env[] = {h_config("[lane default]\nbind = 127.0.0.2\nmax_conns_per_host = 1\n"
				      "queue_timeout = 4s\n"),
			     NULL};
	struct h_run a, b;
	const char *argv[] = {"jmpexc", mode, h_url, NULL};

	/* Without the shim: the program works. */
	h_run_ok(&a, argv, env, 0, 20000);
	cr_assert_eq(a.status, 0, "%s\n%s", a.out, a.err);
	cr_assert_eq(h_count_str(a.out, "exit 0\n"), 1, "%s", a.out);
	h_wait_stat(&h_up, "open", 0, 2000);
	cr_assert_eq(h_reset(&h_up), 0);

	h_run_ok(&b, argv, env, 1, 20000);
	cr_expect_eq(b.status, 0, "%s\n%s", b.out, b.err);
	cr_expect_eq(h_count_str(b.out, "caught 42\n"), 1, "%s", b.out);
	cr_expect_eq(h_count_str(b.out, "joined\n"), 1, "%s", b.out);
	cr_expect_eq(h_count_str(b.out, " rc 0 http 200\n"), 3, "%s", b.out);
	cr_expect_eq(h_count_str(b.out, "exit 0\n"), 1, "%s", b.out);
	/* After the exception the thread's transfers still run in their lane. */
	char *peers = h_peers(&h_up);
	cr_expect_eq(h_count_str(peers, "127.0.0.1:"), 0, "outside the lane:\n%s", peers);
	free(peers);
	h_run_free(&a);
	h_run_free(&b);
}

Test(jmp_review, exception_through_easy_perform_then_pthread_exit, .init = h_start_plain,
     .fini = h_stop)
{
	exc_case("easy");
}

Test(jmp_review, exception_through_multi_perform_then_pthread_exit, .init = h_start_plain,
     .fini = h_stop)
{
	exc_case("multi");
}
