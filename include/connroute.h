/*
 * connroute.h — per-thread routing keys for programs run under connroute.
 *
 * Header-only. The functions reach libconnroute.so through weak references:
 * a program built with this header links nothing extra and runs unchanged
 * without the shim (connroute_set_key then fails with ENOSYS and
 * connroute_get_key returns NULL).
 *
 *   connroute_set_key("payment-gateway/critical");   // this thread, until changed
 *   CONNROUTE_WITH_KEY("batch") { run_export(); }    // scoped, restored on every exit
 *
 * A key is 1..127 characters of [A-Za-z0-9._~:/@=-], by convention
 * `upstream/priority`, optionally followed by `+idempotent`.
 *
 * Weak references need the reference to be resolved at run time: that is
 * the case for position-independent executables (the default of Debian's
 * compilers) and shared libraries. A non-PIE executable must be linked with
 * -Wl,-z,dynamic-undefined-weak for the functions to find the shim.
 *
 * C99 and C++11. CONNROUTE_WITH_KEY uses the GNU `cleanup` attribute (GCC,
 * Clang), so the previous key comes back on break, return and goto too.
 */
#ifndef CONNROUTE_H
#define CONNROUTE_H

#include <errno.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CONNROUTE_KEY_MAX 128 /* bytes, NUL included */

/* Provided by libconnroute.so; NULL when it is not loaded. */
extern int connroute_shim_set_key(const char *key) __attribute__((weak));
extern const char *connroute_shim_get_key(void) __attribute__((weak));
extern const char *connroute_shim_api_key(void) __attribute__((weak));

/* Sets this thread's routing key; NULL restores the default (thread-name
 * rule, CONNROUTE_KEY, then "default"). Returns 0, or -1 with errno EINVAL
 * for a malformed key (the previous key stays) or ENOSYS without the shim. */
static inline int connroute_set_key(const char *key)
{
	if (!connroute_shim_set_key) {
		errno = ENOSYS;
		return -1;
	}
	return connroute_shim_set_key(key);
}

/* The key this thread's connections use now, or NULL without the shim. The
 * string stays valid until this thread sets another key. */
static inline const char *connroute_get_key(void)
{
	return connroute_shim_get_key ? connroute_shim_get_key() : (const char *)0;
}

struct connroute_scope_ {
	int active;
	int had;                        /* a key was set through the API before */
	char prev[CONNROUTE_KEY_MAX];
};

static inline struct connroute_scope_ connroute_scope_enter_(const char *key)
{
	struct connroute_scope_ s;
	const char *p = connroute_shim_api_key ? connroute_shim_api_key() : (const char *)0;
	s.active = 1;
	s.had = 0;
	s.prev[0] = '\0';
	if (p) {
		size_t n = strlen(p);
		if (n >= sizeof(s.prev))
			n = sizeof(s.prev) - 1;
		memcpy(s.prev, p, n);
		s.prev[n] = '\0';
		s.had = 1;
	}
	(void)connroute_set_key(key);
	return s;
}

static inline void connroute_scope_exit_(struct connroute_scope_ *s)
{
	int saved = errno;
	(void)connroute_set_key(s->had ? s->prev : (const char *)0);
	errno = saved;
}

#define CONNROUTE_CAT2_(a, b) a##b
#define CONNROUTE_CAT_(a, b) CONNROUTE_CAT2_(a, b)
#define CONNROUTE_SCOPE_VAR_ CONNROUTE_CAT_(connroute_scope_, __LINE__)

/* Runs the statement or block that follows with KEY as this thread's key,
 * then restores the previous key on every way out of it. */
#define CONNROUTE_WITH_KEY(key)                                                                     \
	for (struct connroute_scope_ CONNROUTE_SCOPE_VAR_                                          \
		     __attribute__((cleanup(connroute_scope_exit_))) = connroute_scope_enter_(key); \
	     CONNROUTE_SCOPE_VAR_.active; CONNROUTE_SCOPE_VAR_.active = 0)

#ifdef __cplusplus
}
#endif

#endif /* CONNROUTE_H */
