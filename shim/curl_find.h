/* connroute: which libcurl a caller uses (shim/curl_find.c). */
#ifndef CR_SHIM_CURL_FIND_H
#define CR_SHIM_CURL_FIND_H

#include "curl/lanes.h"

/* A call site always calls the same libcurl: each thread remembers its last
 * answer, so curl_easy_init does not pay dladdr on every call. */
extern __thread const void *cr_curl_find_last_ret;
extern __thread struct cr_curllib *cr_curl_find_last_lib;

struct cr_curllib *cr_curl_find_caller_slow(const void *ret);

/* The libcurl of the code at return address RET (registered on first
 * sight), or NULL if none is loaded. */
static inline struct cr_curllib *cr_curl_find_caller(const void *ret)
{
	if (ret == cr_curl_find_last_ret && cr_curl_find_last_lib)
		return cr_curl_find_last_lib;
	return cr_curl_find_caller_slow(ret);
}

#endif
