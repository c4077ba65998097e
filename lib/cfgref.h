/* connroute: the published configuration, reference counted.
 *
 * Config layer: every layer above reads the current config through here;
 * only the engine publishes. Readers that may block (a connect, a perform,
 * the background threads) hold a counted reference; a publish swaps the
 * pointer with one atomic store and retires the old config, which is freed
 * once no reference is left and a grace period has passed (a reader between
 * its load of the pointer and its increment is a few instructions long; the
 * grace period covers it without a lock on the read side). */
#ifndef CR_CFGREF_H
#define CR_CFGREF_H

#include "config.h"

/* The published configuration, NULL before the first publish. Only for
 * quick reads that keep no pointer into it past the call. */
const struct cr_config *cr_cfgref_current(void);

/* A counted reference to the published configuration: valid until
 * released, even across a publish. NULL before the first publish. Never
 * returns an uncounted config (a release always pairs with an increment). */
const struct cr_config *cr_cfgref_acquire(void);
void cr_cfgref_release(const struct cr_config *cfg);

/* Publishes CFG (heap-allocated; ownership passes here) and retires the
 * previous one. Returns 1 if there was a previous one. */
int cr_cfgref_publish(struct cr_config *cfg);

/* Frees retired configs that nobody references any more. */
void cr_cfgref_collect(void);

/* Tests: references held on CFG now (the published one counts 1 for being
 * published); -1 if CFG is neither published nor retired. */
long cr_cfgref_refs(const struct cr_config *cfg);

/* fork: the lock may have been held by a thread that is gone. */
void cr_cfgref_atfork_child(void);

#endif
