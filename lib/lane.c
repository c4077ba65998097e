/* connroute: rule matching. */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "glob.h"
#include "key.h"
#include "lane.h"

static int prefix_match(const uint8_t *a, const uint8_t *b, int bits)
{
	int full = bits / 8, rest = bits % 8;
	if (memcmp(a, b, (size_t)full) != 0)
		return 0;
	if (rest == 0)
		return 1;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));
	return (a[full] & mask) == (b[full] & mask);
}

int cr_hostrule_match(const struct cr_hostrule *r, const struct cr_dest *d)
{
	if (r->port && r->port != d->port)
		return 0;
	if (r->family == AF_UNSPEC) {
		if (r->name[0] == '\0' || (r->name[0] == '*' && r->name[1] == '\0'))
			return 1;
		return d->host && cr_glob_match_icase(r->name, d->host);
	}
	if (d->family == r->family)
		return prefix_match(r->addr, d->addr, r->prefix);
	/* An IPv4-mapped IPv6 destination (::ffff:a.b.c.d) matches IPv4 rules. */
	if (r->family == AF_INET && d->family == AF_INET6) {
		static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
		if (memcmp(d->addr, mapped, 12) == 0)
			return prefix_match(r->addr, d->addr + 12, r->prefix);
	}
	return 0;
}

static int lane_matches_key(const struct cr_lane *l, const char *key, size_t klen)
{
	if (l->nmatch == 0)
		return strlen(l->name) == klen && memcmp(l->name, key, klen) == 0;
	for (int i = 0; i < l->nmatch; i++)
		if (cr_glob_match_n(l->match[i], key, klen, 0))
			return 1;
	return 0;
}

const struct cr_lane *cr_lane_select(const struct cr_config *cfg, const char *key,
				     const struct cr_dest *d, int *unmatched)
{
	size_t klen = key ? cr_key_flags(key, NULL) : 0;
	for (int i = 0; key && i < cfg->nlanes; i++) {
		const struct cr_lane *l = &cfg->lanes[i];
		if (i == cfg->default_lane)
			continue;
		if (!lane_matches_key(l, key, klen))
			continue;
		if (l->nhosts > 0) {
			int hit = 0;
			for (int h = 0; h < l->nhosts && !hit; h++)
				hit = d && cr_hostrule_match(&l->hosts[h], d);
			if (!hit)
				continue;
		}
		if (unmatched)
			*unmatched = 0;
		return l;
	}
	if (unmatched)
		*unmatched = 1;
	return &cfg->lanes[cfg->default_lane];
}

int cr_dest_from_sockaddr(struct cr_dest *d, const void *sa, unsigned len)
{
	const struct sockaddr *s = sa;
	memset(d, 0, sizeof(*d));
	if (!sa || len < sizeof(sa_family_t))
		return -1;
	if (s->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *in = sa;
		d->family = AF_INET;
		memcpy(d->addr, &in->sin_addr, 4);
		d->port = ntohs(in->sin_port);
		return 0;
	}
	if (s->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *in6 = sa;
		d->family = AF_INET6;
		memcpy(d->addr, &in6->sin6_addr, 16);
		d->port = ntohs(in6->sin6_port);
		return 0;
	}
	return -1;
}

/* Stable lane ids: the same name gets the same id across reloads, so limits,
 * metrics and pools survive a reload of an unchanged lane. */

static pthread_mutex_t ids_mu = PTHREAD_MUTEX_INITIALIZER;
static char id_names[CR_MAX_LANE_IDS][CR_NAME_MAX];
static int nids;

int cr_lane_id(const char *name)
{
	int id = -1;
	pthread_mutex_lock(&ids_mu);
	for (int i = 0; i < nids; i++)
		if (strcmp(id_names[i], name) == 0)
			id = i;
	if (id < 0 && nids < CR_MAX_LANE_IDS) {
		id = nids++;
		snprintf(id_names[id], CR_NAME_MAX, "%s", name);
	}
	pthread_mutex_unlock(&ids_mu);
	return id;
}

int cr_lane_ids_fit(const struct cr_config *cfg)
{
	int need = 0;
	pthread_mutex_lock(&ids_mu);
	for (int k = 0; k < cfg->nlanes; k++) {
		int known = 0;
		for (int i = 0; i < nids && !known; i++)
			known = strcmp(id_names[i], cfg->lanes[k].name) == 0;
		need += !known;
	}
	int fit = nids + need <= CR_MAX_LANE_IDS;
	pthread_mutex_unlock(&ids_mu);
	return fit;
}

void cr_lane_ids_atfork_child(void)
{
	pthread_mutex_init(&ids_mu, NULL);
}
