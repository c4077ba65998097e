/* connroute: the override layer. Only argument decoding, the state check,
 * and calls into lib/ and the real functions live under shim/. */
#ifndef CR_SHIM_H
#define CR_SHIM_H

#include <sys/socket.h>

/* Every interposed symbol is defined with HOOK(), so `grep -n 'HOOK('
 * shim/` lists them all; shim/connroute.map exports exactly these and
 * connroute_*. */
#define HOOK(ret, name, params) __attribute__((visibility("default"))) ret name params
#define CR_API __attribute__((visibility("default")))

/* The real functions, resolved once (RTLD_NEXT) by cr_shim_resolve(). NULL
 * until then: hooks fall back to raw syscalls. */
struct cr_shim_real {
	int (*connect)(int, const struct sockaddr *, socklen_t);
	int (*close)(int);
	int (*close_)(int);    /* __close */
	int (*connect_)(int, const struct sockaddr *, socklen_t); /* __connect */
	int (*close_range)(unsigned, unsigned, int);
	void (*closefrom)(int);
	int (*dup2)(int, int);
	int (*dup3)(int, int, int);
	int (*dup)(int);
	int (*setsockopt)(int, int, int, const void *, socklen_t);
	int (*epoll_ctl)(int, int, int, void *);
};
extern struct cr_shim_real real;

void cr_shim_resolve(void);

/* The recursion guard cr_in_shim lives in lib/engine.h (the engine's own
 * background work sets it too). */

/* cr_in_shim is set: 1 (and the guard cleared) when it was left behind by a
 * routed connect that a signal handler siglongjmp'ed out of, 0 when the
 * thread really is inside connroute (shim/socket_hooks.c). Only called when
 * the guard is set: never on a fast path. */
int cr_shim_guard_left(void);

#endif
