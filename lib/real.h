/* connroute: the real functions behind the libc hooks (lib/hooks.def), for
 * the shim's hooks and for the engine, which must never call a hooked name.
 *
 * Each pointer starts at a raw-syscall fallback that behaves exactly as libc
 * (-1 and the kernel's errno; errno untouched on success), so a call through
 * cr_real is correct in every state: before the shim's constructor resolved
 * anything (another library's constructor), in unit tests without
 * resolution, and when dlsym finds no symbol (closefrom on an old glibc).
 * cr_real_resolve() replaces a pointer only with a symbol dlsym found. */
#ifndef CR_REAL_H
#define CR_REAL_H

#include <dlfcn.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#define CR_LIBC(name, ret, params) ret(*name) params;
#define CR_CURL(name, ret, params)
struct cr_real {
#include "hooks.def"
};
#undef CR_LIBC
#undef CR_CURL

extern struct cr_real cr_real;

/* The fallbacks themselves (cr_fallback_connect, ...), callable directly. */
#define CR_LIBC(name, ret, params) ret cr_fallback_##name params;
#define CR_CURL(name, ret, params)
#include "hooks.def"
#undef CR_LIBC
#undef CR_CURL

/* dlsym(RTLD_NEXT) for every libc entry: the next definition after the
 * calling object (libc for the shim; libc for a test binary too). Called once
 * by the shim's constructor, before any thread of ours exists. */
void cr_real_resolve(void);

#endif
