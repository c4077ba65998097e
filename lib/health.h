/* connroute: resilience per lane (docs/INTERNALS.md, "Resilience
 * (lib/health.c)"): outlier ejection per destination address, a circuit
 * breaker per (lane, host), retry throttling with a token bucket per lane.
 *
 * The policy only: callers (lib/route.c, lib/curl/) say what they are about
 * to do and how it ended. Every entry point takes the time (monotonic ms)
 * from its caller, so unit tests drive it with any clock; cr_health_now() is
 * the clock the callers use. State is keyed by the lane's stable id and its
 * resilience settings hash (cr_lane.health_hash): a reload that keeps a
 * lane's settings keeps its state. Lock-free but for the rare ejection
 * decision (a spin word held with every signal blocked). A lane with
 * cr_lane.health == 0 never reaches this module. */
#ifndef CR_HEALTH_H
#define CR_HEALTH_H

#include <stdatomic.h>
#include <stdint.h>

#include "config.h"
#include "lane.h"

#define CR_EJECT_MULT_MAX 10   /* eject_time x ejections, at most this many times */
#define CR_HEALTH_ADDRS   1024 /* (lane, host, address) entries per process */
#define CR_HEALTH_HOSTS   512  /* (lane, host) breakers per process */

enum cr_breaker_state { CR_BRK_CLOSED = 0, CR_BRK_OPEN = 1, CR_BRK_HALF = 2 };

/* What cr_health_admit answers. */
enum { CR_ADMIT_NO = 0, CR_ADMIT_YES = 1, CR_ADMIT_PROBE = 2 };

/* The clock callers use: cr_now_ms(), or a test's. */
int64_t cr_health_now(void);
void cr_health_set_clock(int64_t (*fn)(void)); /* NULL: cr_now_ms */

/* A host's identity for ejection groups and breakers: raw connects use
 * (lane, port) for the group and (address, port) for the breaker; libcurl
 * (host name, port) for both. */
uint64_t cr_health_host_raw_group(uint16_t port);
uint64_t cr_health_host_name(const char *host, int port);
uint64_t cr_health_host_addr(const struct cr_dest *d);

/* ---- outlier ejection (lane->health & CR_H_EJECT) */

/* Is address D of host GROUP ejected now? Registers D as one of the host's
 * addresses (for eject_max). An address whose time is up is let back in on
 * probation. 1: skip it. */
int cr_health_ejected(const struct cr_lane *l, uint64_t group, const struct cr_dest *d,
		      int64_t now);
/* The outcome of a connection or request to D (ok 1 / 0). */
void cr_health_addr_result(const struct cr_lane *l, uint64_t group, const struct cr_dest *d, int ok,
			   int64_t now);

/* Has host GROUP of L an address ejected now? (A hint: a hash collision
 * with another host may answer 1.) */
int cr_health_host_has_ejected(const struct cr_lane *l, uint64_t group, int64_t now);

/* Pooled connections (lib/curl/shares.c): a connection of lane L to D is
 * known by cr_health_conn_key; cr_health_conn_ejected says whether its
 * address is ejected now. cr_health_eject_gen changes at every ejection, so
 * a pool checks its shares only then. */
extern atomic_uint cr_health_eject_gen;
uint64_t cr_health_conn_key(int lane_id, const struct cr_dest *d);
int cr_health_conn_ejected(uint64_t key, int64_t now);

/* ---- circuit breaker (lane->health & CR_H_BREAKER) */

/* May a request to HOST go? CR_ADMIT_NO (rejected, counted), _YES, or _PROBE
 * (a half-open probe: pass it back to cr_health_result). NAME:PORT names
 * the host in metrics (written when the breaker is made; PORT < 0: NAME
 * alone). *STATE (may be NULL) gets the state that decided. */
int cr_health_admit(const struct cr_lane *l, uint64_t host, const char *name, int port, int64_t now,
		    int *state);
/* The same for a raw connect to D: the host is D's address and port. */
int cr_health_admit_addr(const struct cr_lane *l, const struct cr_dest *d, int64_t now);
/* The outcome of a request ADMITTED (what cr_health_admit answered). */
void cr_health_result(const struct cr_lane *l, uint64_t host, int admitted, int ok, int64_t now);

/* ---- retry throttling (lane->health & CR_H_THROTTLE) */

/* An attempt's outcome: a failure takes a token, a success gives back
 * retry_token_ratio. */
void cr_health_tokens_result(const struct cr_lane *l, int ok);
/* May a retry be made? 0 while the bucket holds half of retry_tokens or
 * less (counted as throttled). 1 when throttling is off. */
int cr_health_retry_allowed(const struct cr_lane *l);

/* ---- raw non-blocking connects: the outcome is known later */

/* Remembers that FD (inode INO) is connecting to D in lane L, ADMITTED by
 * its breaker (CR_ADMIT_*); the outcome is taken at its close
 * (cr_health_pending_settle). */
void cr_health_pending(int fd, uint64_t ino, const struct cr_lane *l, const struct cr_dest *d,
		       int admitted);
/* FD is being closed (still open): decide how its connect ended (getpeername,
 * TCP_INFO; never SO_ERROR, which reading clears; errno kept) and record it under CFG's lane of the same
 * id and settings (none: the outcome is dropped). */
void cr_health_pending_settle(int fd, uint64_t ino, const struct cr_config *cfg);

/* ---- observing */

/* The engine publishes a config: lanes' current settings hashes, so only
 * their state is shown. */
void cr_health_publish(const struct cr_config *cfg);

/* Calls FN for each ejected address (what 0) with its lane id, address text
 * ("127.0.0.1:8080") and total ejections, for each address ever ejected
 * (what 1, value = ejections_total), and for each breaker (what 2, value =
 * state) with its host label. */
void cr_health_each(int what, void (*fn)(void *ctx, int lane, const char *label, int64_t v),
		    void *ctx, int64_t now);
/* Addresses ejected now in lane ID. */
int cr_health_ejected_count(int id, int64_t now);

/* Tests: forget everything. */
void cr_health_reset(void);

#endif
