/* connroute: per (lane, destination) connection counters with bounded waits.
 *
 * Slots live in a fixed table allocated once (mmap, no malloc in hooks);
 * entries are never removed, only their counts go back to zero. Waiters are
 * served first come, first served, each woken alone when its turn comes;
 * no lock is held while waiting (limit.c: what a siglongjmp out of a wait
 * leaves, and how it is repaired). */
#ifndef CR_LIMIT_H
#define CR_LIMIT_H

#include <stdint.h>
#include "lane.h"

#define CR_SLOT_NONE 0u

/* Called (outside the lock) before a wait, to let the caller find counts held
 * by fds whose close went unseen; it releases what it finds. */
typedef void (*cr_reap_fn)(uint32_t slot, void *ctx);

int cr_limits_init(unsigned capacity, cr_reap_fn reap, void *reap_ctx);

/* The slot of (LANE, D), created on first use; CR_SLOT_NONE when the table is
 * full (the caller then does not limit, and a warning is logged once). */
uint32_t cr_limit_slot(int lane, const struct cr_dest *d);

/* Takes one unit of SLOT if fewer than MAX are taken. MAX <= 0: unlimited
 * (counted only). WAIT_MS: 0 = do not wait (-EAGAIN), > 0 = wait at most that
 * long (-ETIMEDOUT). Returns 0 on success. *WAITED_NS gets the time spent
 * waiting (may be NULL). */
int cr_limit_acquire(uint32_t slot, long max, long wait_ms, uint64_t *waited_ns);
void cr_limit_release(uint32_t slot);
long cr_limit_inuse(uint32_t slot);
/* Someone is waiting for a unit of SLOT now (the warm refill stands back). */
int cr_limit_waiting(uint32_t slot);

/* fork: hold the lock across fork, release in both. */
void cr_limits_atfork_prepare(void);
void cr_limits_atfork_parent(void);
void cr_limits_atfork_child(void);
/* fork child, once the warm pools have dropped their sockets: every count
 * back to zero (the child's own accounting). */
void cr_limits_reset_child(void);

#endif
