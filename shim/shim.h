/* connroute: the override layer. Only argument decoding, the state check,
 * and calls into lib/ and the real functions (lib/real.h) live under shim/. */
#ifndef CR_SHIM_H
#define CR_SHIM_H

#include <curl/curl.h>
#include <dlfcn.h>
#include <sys/epoll.h>
#include <sys/socket.h>

/* Every interposed symbol is listed in lib/hooks.def (which also makes the
 * version script) and defined in shim/ with HOOK(). HOOK first declares the
 * name with the list's type, so a hook missing from the list, or with another
 * signature, does not build. */
#define CR_LIBC(name, ret, params) typedef ret cr_hook_type_##name params;
#define CR_CURL(name, ret, params) typedef ret cr_hook_type_##name params;
#include "hooks.def"
#undef CR_LIBC
#undef CR_CURL

#define HOOK(ret, name, params)   \
	cr_hook_type_##name name; \
	__attribute__((visibility("default"))) ret name params
#define CR_API __attribute__((visibility("default")))

/* The recursion guard (cr_in_shim, cr_guard_*) lives in lib/base.h. */

#endif
