/* connroute: the bottom layer's state: the recursion guard; see base.h. */
#include <signal.h>
#include <string.h>

#include "base.h"

__thread int cr_in_shim;
__thread uintptr_t cr_in_shim_frame;
/* The kernel's signal mask is 64 bits: only that much of a sigset_t is
 * read and compared. */
static __thread uint64_t guard_mask;
static __thread int guard_has_mask;

static int mask_now(uint64_t *out)
{
	sigset_t now;
	int saved = errno, ok = pthread_sigmask(SIG_SETMASK, NULL, &now) == 0;
	errno = saved;
	if (ok)
		memcpy(out, &now, sizeof(*out));
	return ok;
}

void cr_guard_set(void *frame, int mask)
{
	guard_has_mask = mask && mask_now(&guard_mask);
	cr_in_shim_frame = (uintptr_t)frame;
	cr_in_shim = 1;
}

void cr_guard_record_mask(void)
{
	if (cr_in_shim)
		guard_has_mask = mask_now(&guard_mask);
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
		uint64_t now;
		stale = mask_now(&now) && now == guard_mask;
	} else {
		stale = 0;
	}
	errno = saved;
	if (stale)
		cr_guard_clear();
	return !stale;
}
