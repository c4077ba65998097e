/* connroute: the bottom layer's state: the recursion guard; see base.h. */
#include <signal.h>
#include <string.h>

#include "base.h"

__thread int cr_in_shim;
__thread uintptr_t cr_in_shim_frame;
static __thread sigset_t guard_mask;
static __thread int guard_has_mask;

void cr_guard_set(void *frame, int mask)
{
	guard_has_mask = 0;
	if (mask) {
		int saved = errno;
		memset(&guard_mask, 0, sizeof(guard_mask));
		guard_has_mask = pthread_sigmask(SIG_SETMASK, NULL, &guard_mask) == 0;
		errno = saved;
	}
	cr_in_shim_frame = (uintptr_t)frame;
	cr_in_shim = 1;
}

int cr_guard_check(void *frame)
{
	int saved = errno, stale;
	if (!cr_in_shim_frame)
		return 1;
	if ((uintptr_t)frame >= cr_in_shim_frame) {
		stack_t ss;
		stale = !(sigaltstack(NULL, &ss) == 0 && (ss.ss_flags & SS_ONSTACK));
	} else if (guard_has_mask) {
		sigset_t now;
		memset(&now, 0, sizeof(now));
		stale = pthread_sigmask(SIG_SETMASK, NULL, &now) == 0 &&
			memcmp(&now, &guard_mask, sizeof(now)) == 0;
	} else {
		stale = 0;
	}
	errno = saved;
	if (stale)
		cr_guard_clear();
	return !stale;
}
