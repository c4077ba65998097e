/* connroute: the bottom layer. Small helpers every other file of lib/ may
 * use; this header includes nothing of the project's own, so it can be
 * included from anywhere (docs/INTERNALS.md, "Layers").
 *
 * Everything here is async-signal-safe, allocation-free and lock-free. */
#ifndef CR_BASE_H
#define CR_BASE_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Recursion guard: set while connroute runs code that reaches hooked names
 * (a libcurl perform, the engine's own prewarm requests, a routed connect):
 * the raw connect hook then stands aside. Initial-exec TLS: no allocation,
 * safe in any hook on any thread. Defined in base.c. */
extern __thread int cr_in_shim;
/* The frame of the call that set the guard (0: not known, then the guard
 * holds until cleared). */
extern __thread uintptr_t cr_in_shim_frame;

/* Sets the guard from the calling function's frame FRAME
 * (__builtin_frame_address(0)). With MASK, also records the thread's signal
 * mask (one syscall): a routed connect does, because a signal handler may
 * siglongjmp out of it (docs/INTERNALS.md, "Raw connect"). */
void cr_guard_set(void *frame, int mask);

/* Records the mask now, for a guard set without one (a routed connect sets
 * the guard cheaply and records the mask only once it is going to route:
 * a UDP connect never pays the syscall). */
void cr_guard_record_mask(void);

static inline void cr_guard_clear(void)
{
	cr_in_shim = 0;
	cr_in_shim_frame = 0;
}

/* Slow part of cr_guard_held, only when the guard is set. */
int cr_guard_check(void *frame);

/* Is the guard held by a call still running below us on this thread? A call
 * left by siglongjmp never clears it. A handler interrupting the guarded
 * call runs deeper on the same stack with its signal blocked (the mask
 * differs), or on the alternate signal stack: held, the hook passes
 * through. Anything else (a frame no deeper than the one that set it and
 * not on the alternate stack, or deeper with the same mask) finds the guard
 * stale and clears it, so the thread is routed again. FRAME: the caller's
 * __builtin_frame_address(0). */
static inline int cr_guard_held(void *frame)
{
	return cr_in_shim && cr_guard_check(frame);
}

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Keeps errno across a statement: the host only ever sees errno changed by
 * the real call it made (docs/INTERNALS.md, "errno"). */
#define SAVE_ERRNO(stmt)                     \
	do {                                 \
		int cr_saved_errno_ = errno; \
		stmt;                        \
		errno = cr_saved_errno_;     \
	} while (0)

/* Monotonic clock. vDSO: no syscall, no errno change on Linux. */
static inline uint64_t cr_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline int64_t cr_now_ms(void)
{
	return (int64_t)(cr_now_ns() / 1000000ull);
}

/* An absolute CLOCK_MONOTONIC deadline MS from now (for timed waits on
 * condition variables created with that clock). */
static inline void cr_deadline_after(struct timespec *ts, long ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* FNV-1a, 64 and 32 bits: continue a hash with H (start with the *_INIT). */
#define CR_FNV64_INIT 14695981039346656037ull
#define CR_FNV32_INIT 2166136261u

static inline uint64_t cr_fnv64(uint64_t h, const void *p, size_t n)
{
	const unsigned char *c = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ c[i]) * 1099511628211ull;
	return h;
}

static inline uint32_t cr_fnv32(uint32_t h, const void *p, size_t n)
{
	const unsigned char *c = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ c[i]) * 16777619u;
	return h;
}

/* ASCII only: never the locale (a host may have called setlocale). */
static inline int cr_lower(int c)
{
	return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

static inline int cr_isdigit(int c)
{
	return c >= '0' && c <= '9';
}

/* ASCII case-insensitive equality. */
static inline int cr_strieq(const char *a, const char *b)
{
	while (*a && cr_lower((unsigned char)*a) == cr_lower((unsigned char)*b))
		a++, b++;
	return cr_lower((unsigned char)*a) == cr_lower((unsigned char)*b);
}

#endif
