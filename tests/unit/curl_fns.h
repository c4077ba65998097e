/* libcurl's real functions registered with the libcurl lanes engine, as the shim does with
 * the libcurl a program loads (no LD_PRELOAD in the unit tests). */
#ifndef CR_TEST_CURL_FNS_H
#define CR_TEST_CURL_FNS_H

#include <curl/curl.h>

#include "curl/lanes.h"

/* The easy, share and version functions every libcurl the engine supports has; a suite
 * adds the optional ones (upkeep, headers, multi_*) its tests exercise, so each suite
 * keeps registering exactly the table it did. */
static inline struct cr_curlfns cr_test_curlfns(void)
{
	return (struct cr_curlfns){
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
}

/* curl_global_init, then F registered as one library "libcurl (test)"; the library or NULL. */
static inline struct cr_curllib *cr_test_curl_register(const struct cr_curlfns *f)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	return cr_curl_lib_add((void *)curl_easy_init, f, "libcurl (test)");
}

#endif
