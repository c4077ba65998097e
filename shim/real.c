/* connroute: resolution of the real libc symbols (RTLD_NEXT), once, from the
 * constructor. Hooks that run earlier (another library's constructor)
 * use raw syscalls instead. */
#include <dlfcn.h>

#include "shim.h"

struct cr_shim_real real;

#define RESOLVE(field, sym) (*(void **)&real.field = dlsym(RTLD_NEXT, sym))

void cr_shim_resolve(void)
{
	RESOLVE(connect, "connect");
	RESOLVE(connect_, "__connect");
	RESOLVE(close, "close");
	RESOLVE(close_, "__close");
	RESOLVE(close_range, "close_range");
	RESOLVE(closefrom, "closefrom");
	RESOLVE(dup2, "dup2");
	RESOLVE(dup3, "dup3");
	RESOLVE(dup, "dup");
	RESOLVE(setsockopt, "setsockopt");
	RESOLVE(epoll_ctl, "epoll_ctl");
}
