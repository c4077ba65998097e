/* connroute: which libcurl a caller uses (shim/curl_find.c). */
#ifndef CR_SHIM_CURL_FIND_H
#define CR_SHIM_CURL_FIND_H

#include "curl/lanes.h"

/* The libcurl of the code at return address RET (registered and pinned on
 * first sight), or NULL if none is loaded. *SELF (SELF may be NULL) is set
 * when that code is in the libcurl itself (libcurl calling its own API).
 * Costs a dl_iterate_phdr call (the loader's unload count) when the calling
 * thread asked for the same RET last. */
struct cr_curllib *cr_curl_find_caller(const void *ret, int *self);

#endif
