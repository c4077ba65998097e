/* connroute: rule matching. Picks the lane a (key, destination) selects. */
#ifndef CR_LANE_H
#define CR_LANE_H

#include <stdint.h>
#include "config.h"
#include "glob.h"

/* Stable lane ids are below this (they index fixed per-lane tables). */
#define CR_MAX_LANE_IDS 256

/* A destination: an address for connect(), a host name (and maybe an
 * address) for curl. */
struct cr_dest {
	int family;       /* AF_INET, AF_INET6, or AF_UNSPEC when only a name is known */
	uint8_t addr[16]; /* network byte order */
	uint16_t port;    /* host byte order */
	const char *host; /* NULL for a raw connect() */
};

/* Does RULE match D? */
int cr_hostrule_match(const struct cr_hostrule *rule, const struct cr_dest *d);

/* The first lane, in file order, whose key globs match KEY (the key with any
 * "+flag" suffix removed) and whose destination filter (if any) matches D.
 * Never NULL: falls back to lane "default". *UNMATCHED is set to 1 when the
 * fallback was taken (may be NULL). */
const struct cr_lane *cr_lane_select(const struct cr_config *cfg, const char *key,
				     const struct cr_dest *d, int *unmatched);

/* Fills D from a sockaddr; returns 0, or -1 if it is neither IPv4 nor IPv6. */
int cr_dest_from_sockaddr(struct cr_dest *d, const void *sa, unsigned len);

/* The stable id of lane NAME (registered on first use), -1 if all
 * CR_MAX_LANE_IDS ids are taken. */
int cr_lane_id(const char *name);
/* 1 if every lane name of CFG has or can get a stable id. Ids are never
 * reused (limits, metrics, pools and fd entries carry them): a reload that
 * would need more is rejected rather than let two lanes share one. */
int cr_lane_ids_fit(const struct cr_config *cfg);
/* fork: the registry's lock may have been held by a thread that is gone. */
void cr_lane_ids_atfork_child(void);

#endif
