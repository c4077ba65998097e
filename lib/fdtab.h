/* connroute: the table of fds the shim routed.
 *
 * Ownership: an entry means "this fd holds one unit of limit slot SLOT of
 * lane LANE". Whoever takes the entry (close, __close, close_range,
 * closefrom, dup2/dup3 onto it, the reaper) releases that unit, exactly once:
 * taking is an atomic exchange, so two racing closers cannot both release.
 * An entry is taken BEFORE the real close, so the fd number cannot be reused
 * by another thread's connect and tracked again before we cleared it.
 *
 * Storage: 1024 pages of 1024 entries, each page mmap'ed on first use and
 * never freed; fds >= 2^20 are not tracked (their connects pass through). */
#ifndef CR_FDTAB_H
#define CR_FDTAB_H

#include <stdatomic.h>
#include <stdint.h>

#include "ownfd.h" /* cr_fd_inode */

struct cr_fdinfo {
	uint32_t slot;  /* limit slot, CR_SLOT_NONE if not limited */
	int lane;       /* lane index */
	unsigned flags; /* CR_FDF_* */
	uint64_t ino;   /* socket inode at connect, to detect a missed close */
};

/* Width of cr_fdinfo.lane in the packed entry (fdtab.c): stable lane ids
 * must fit (asserted in route.c, which sees both). */
#define CR_FDTAB_LANE_BITS 16

#define CR_FDF_ROUTED 1u
#define CR_FDF_WARM   2u /* a warm socket still owned by the engine */
#define CR_FDF_HPEND \
	8u /* a non-blocking connect whose outcome lib/health.c
			    * takes at close (cr_health_pending_settle) */
#define CR_FDF_AGAIN0 \
	4u /* substituted for a non-blocking connect: the app's
			   * next connect() answers 0, as the kernel's would */

/* Number of tracked fds: the whole cost of close() while it is zero. */
extern atomic_long cr_fdtab_count;

static inline int cr_fdtab_any(void)
{
	return atomic_load_explicit(&cr_fdtab_count, memory_order_relaxed) != 0;
}

/* Records FD. Returns 0, -EBADF when the fd is too large to track, -ENOMEM. */
int cr_fdtab_put(int fd, const struct cr_fdinfo *info);

/* Takes FD's entry if tracked: returns 1 and fills *OUT, else 0. */
int cr_fdtab_take(int fd, struct cr_fdinfo *out);

/* Reads FD's entry without taking it: 1 if tracked. */
int cr_fdtab_peek(int fd, struct cr_fdinfo *out);

/* Takes every tracked entry in [FIRST, LAST] and calls FN for each. */
void cr_fdtab_take_range(unsigned first, unsigned last,
			 void (*fn)(int fd, const struct cr_fdinfo *info, void *ctx), void *ctx);

/* For every tracked entry of SLOT whose fd no longer refers to the recorded
 * socket (closed behind our back, or reused), takes it and calls FN. */
void cr_fdtab_reap_slot(uint32_t slot, void (*fn)(int fd, const struct cr_fdinfo *info, void *ctx),
			void *ctx);

/* fork child: forgets every entry (the child's accounting starts clean, see
 * cr_limits_reset_child; the inherited fds it closes give nothing back). */
void cr_fdtab_reset_child(void);

/* What an entry holds (a limit unit, a metrics gauge, a warm socket) is
 * given back by one function registered at init by the layer that routes
 * (lib/route.c): lower layers that find an entry to settle (the warm pool
 * finding a stale entry on the number its new socket got) call
 * cr_fdtab_settle without depending on that layer. */
typedef void (*cr_fdtab_release_fn)(int fd, const struct cr_fdinfo *info, void *ctx);
void cr_fdtab_set_release(cr_fdtab_release_fn fn);

/* Takes FD's entry, if any, and gives back what it held through the
 * registered function. 1 if there was one. */
int cr_fdtab_settle(int fd);

#endif
