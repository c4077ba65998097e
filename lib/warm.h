/* connroute: warm pools — pre-connected TCP sockets per (lane, destination).
 *
 * One background thread (started on first need, never in the constructor,
 * never inherited by a forked child) keeps each pool at its target: the
 * lane's `prewarm = host:port*N` count, or with `preconnect_ratio` the
 * adaptive ceil(ratio x recent connect rate x connect latency), capped.
 *
 * Ownership: a warm socket is the engine's until handed out. It is tracked
 * in the fd table with CR_FDF_WARM and its inode, so the app closing it by
 * mistake (closefrom, close_range) is seen and the pool forgets it, and a
 * reused fd number is never taken for ours. It holds a unit of the lane's
 * limit from creation, transferred with the socket: prewarming can never
 * exceed max_conns_per_host. A warm socket is never given to another lane
 * (its socket options are the lane's). */
#ifndef CR_WARM_H
#define CR_WARM_H

#include <stdatomic.h>
#include <stdint.h>

#include "config.h"
#include "lane.h"

/* Some lane of the published config has warm pools. */
extern atomic_int cr_warm_active;

/* LANE keeps warm pools (prewarm targets, preconnect or prewarm_url). */
int cr_warm_lane_has_pools(const struct cr_lane *l);

/* The published config changed: targets, retired pools, prewarm hosts. */
void cr_warm_config_changed(const struct cr_config *cfg);

/* Starts the refill thread if it is not running in this process (cheap
 * when it is). Called from the routed paths of warm lanes. */
void cr_warm_kick(void);

/* The libcurl layer (above this one) registers at init what the refill
 * thread runs to prewarm lanes with prewarm_url into its pools. */
void cr_warm_set_curl_prewarm(void (*fn)(const struct cr_config *cfg));

/* A libcurl copy was registered (or pools changed): the refill thread
 * prewarms lanes with prewarm_url into its pools. */
void cr_warm_curl_due(void);

/* A live warm socket for (LANE, D) or -1. On success *SLOT gets its limit
 * unit and *INO its inode; the fd is non-blocking and close-on-exec. */
int cr_warm_take(const struct cr_lane *lane, const struct cr_dest *d, uint32_t *slot,
		 uint64_t *ino);

/* Demand: a connect to (LANE, D) happened: served warm (CONNECT_NS 0) or
 * cold (its duration in ns; 1 when unknown). */
void cr_warm_note(const struct cr_lane *lane, const struct cr_dest *d, uint64_t connect_ns);

/* The app closed a warm socket of ours (found in the fd table). */
void cr_warm_forget(int fd);

/* The cold path is at the lane's limit: close one ready warm socket of
 * (LANE, D), so its unit goes to a connect that cannot be served warm (a
 * bound or epoll-registered socket). 1 if one was closed. */
int cr_warm_evict(const struct cr_lane *lane, const struct cr_dest *d);

/* fork: mu held across it; the child drops everything. */
void cr_warm_atfork_prepare(void);
void cr_warm_atfork_parent(void);
void cr_warm_atfork_child(void);

#endif
