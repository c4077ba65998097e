/* Multi membership records of the libcurl lanes engine (lib/curl/handles.c), driven with
 * libcurl's real functions and no LD_PRELOAD: the shim's curl_multi_* hooks pass through
 * and call cr_curl_multi_added/_removed/_gone, as done here by hand. Invariant
 * (docs/INTERNALS.md, "libcurl lanes", multi handles): a handle attached to a multi is
 * never recycled by curl_easy_cleanup. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "curl/lanes.h"
#include "engine.h"
#include "limit.h"

static struct cr_curllib *lib;
static CURLM *m;

static void setup(void)
{
	struct cr_curlfns f = {
		.easy_init = curl_easy_init,
		.easy_setopt = curl_easy_setopt,
		.easy_perform = curl_easy_perform,
		.easy_cleanup = curl_easy_cleanup,
		.easy_reset = curl_easy_reset,
		.easy_duphandle = curl_easy_duphandle,
		.easy_getinfo = curl_easy_getinfo,
		.share_init = curl_share_init,
		.share_setopt = curl_share_setopt,
		.share_cleanup = curl_share_cleanup,
		.version_info = curl_version_info,
	};
	curl_global_init(CURL_GLOBAL_DEFAULT);
	lib = cr_curl_lib_add((void *)curl_easy_init, &f, "libcurl (test)");
	cr_assert_not_null(lib);
	m = curl_multi_init();
	cr_assert_not_null(m);
}

static void teardown(void)
{
	if (m)
		curl_multi_cleanup(m);
}

static long recycled(void)
{
	struct cr_curl_stats st;
	cr_curl_stats(&st);
	return st.handles_recycled;
}

/* A clean handle (only allowlisted options), attached to M and recorded. */
static CURL *attached(void)
{
	CURL *h = cr_curl_init(lib);
	cr_assert_not_null(h);
	cr_assert_eq(cr_curl_setopt(lib, h, CURLOPT_URL, "http://127.0.0.1:9/", 0, 0), CURLE_OK);
	cr_assert_eq(curl_multi_add_handle(m, h), CURLM_OK);
	cr_curl_multi_added(m, h);
	return h;
}

Test(curlmulti, a_clean_handle_in_no_multi_is_recycled, .init = setup, .fini = teardown)
{
	CURL *h = cr_curl_init(lib);
	long before = recycled();
	cr_curl_cleanup(lib, h);
	cr_expect_eq(recycled(), before + 1);
}

Test(curlmulti, an_attached_handle_is_really_cleaned_up, .init = setup, .fini = teardown)
{
	CURL *h = attached();
	long before = recycled();
	cr_curl_cleanup(lib, h); /* libcurl detaches it */
	cr_expect_eq(recycled(), before);
	/* The next handle is a new one, attached to nothing. */
	CURL *h2 = cr_curl_init(lib);
	cr_assert_not_null(h2);
	cr_expect_eq(curl_multi_add_handle(m, h2), CURLM_OK);
	curl_multi_remove_handle(m, h2);
	cr_curl_cleanup(lib, h2);
}

Test(curlmulti, a_removed_handle_is_recycled_again, .init = setup, .fini = teardown)
{
	CURL *h = attached();
	cr_assert_eq(curl_multi_remove_handle(m, h), CURLM_OK);
	cr_curl_multi_removed(m, h);
	long before = recycled();
	cr_curl_cleanup(lib, h);
	cr_expect_eq(recycled(), before + 1);
}

Test(curlmulti, removal_from_another_multi_changes_nothing, .init = setup, .fini = teardown)
{
	CURL *h = attached();
	cr_curl_multi_removed((CURLM *)&lib, h); /* not its multi */
	long before = recycled();
	cr_curl_cleanup(lib, h);
	cr_expect_eq(recycled(), before);
}

Test(curlmulti, a_reset_keeps_the_handle_attached, .init = setup, .fini = teardown)
{
	CURL *h = attached();
	cr_curl_reset(lib, h);
	long before = recycled();
	cr_curl_cleanup(lib, h);
	cr_expect_eq(recycled(), before);
}

Test(curlmulti, a_duplicate_is_in_no_multi, .init = setup, .fini = teardown)
{
	CURL *h = attached();
	CURL *d = cr_curl_duphandle(lib, h);
	cr_assert_not_null(d);
	long before = recycled();
	cr_curl_cleanup(lib, d);
	cr_expect_eq(recycled(), before + 1);
	cr_curl_cleanup(lib, h);
	cr_expect_eq(recycled(), before + 1);
}

Test(curlmulti, multi_cleanup_detaches_its_handles, .init = setup, .fini = teardown)
{
	CURL *a = attached(), *b = attached();
	cr_assert_eq(curl_multi_cleanup(m), CURLM_OK);
	cr_curl_multi_gone(m);
	m = NULL;
	long before = recycled();
	cr_curl_cleanup(lib, a);
	cr_curl_cleanup(lib, b);
	cr_expect_eq(recycled(), before + 2);
}
