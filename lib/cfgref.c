/* connroute: the published configuration; see cfgref.h. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "base.h"
#include "cfgref.h"

struct cfgref {
	struct cr_config *cfg;
	atomic_long refs;    /* +1 while published */
	uint64_t retired_ns; /* 0 while published */
	struct cfgref *next; /* retired list */
};

static struct cfgref *_Atomic published;
/* Guards the retired list, and orders publishes against the slow path of
 * acquire: the published pointer only changes under it. */
static pthread_mutex_t pub_mu = PTHREAD_MUTEX_INITIALIZER;
static struct cfgref *retired;

#define GRACE_NS   5000000000ull
#define FAST_TRIES 8

const struct cr_config *cr_cfgref_current(void)
{
	struct cfgref *r = atomic_load_explicit(&published, memory_order_acquire);
	return r ? r->cfg : NULL;
}

/* Configs come from callers (no header of ours in front of them): search
 * the published one, then the (short) retired list. */
static struct cfgref *ref_of(const struct cr_config *cfg)
{
	struct cfgref *r = atomic_load_explicit(&published, memory_order_acquire);
	if (r && r->cfg == cfg)
		return r;
	pthread_mutex_lock(&pub_mu);
	for (r = retired; r && r->cfg != cfg; r = r->next)
		;
	pthread_mutex_unlock(&pub_mu);
	return r;
}

const struct cr_config *cr_cfgref_acquire(void)
{
	for (int tries = 0; tries < FAST_TRIES; tries++) {
		struct cfgref *r = atomic_load_explicit(&published, memory_order_acquire);
		if (!r)
			return NULL;
		atomic_fetch_add_explicit(&r->refs, 1, memory_order_acq_rel);
		if (atomic_load_explicit(&published, memory_order_acquire) == r)
			return r->cfg;
		atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel);
	}
	/* Publishes keep racing us: take the lock, under which the pointer
	 * cannot change. Never return a config without its reference (its
	 * release would underflow the count and free it under a reader). */
	pthread_mutex_lock(&pub_mu);
	struct cfgref *r = atomic_load_explicit(&published, memory_order_acquire);
	if (r)
		atomic_fetch_add_explicit(&r->refs, 1, memory_order_acq_rel);
	pthread_mutex_unlock(&pub_mu);
	return r ? r->cfg : NULL;
}

void cr_cfgref_release(const struct cr_config *cfg)
{
	if (!cfg)
		return;
	struct cfgref *r = ref_of(cfg);
	if (r)
		atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel);
}

long cr_cfgref_refs(const struct cr_config *cfg)
{
	struct cfgref *r = ref_of(cfg);
	return r ? atomic_load(&r->refs) : -1;
}

void cr_cfgref_collect(void)
{
	uint64_t now = cr_now_ns();
	struct cfgref **pp = &retired, *dead = NULL;
	pthread_mutex_lock(&pub_mu);
	while (*pp) {
		struct cfgref *r = *pp;
		if (atomic_load(&r->refs) == 0 && now - r->retired_ns >= GRACE_NS) {
			*pp = r->next;
			r->next = dead;
			dead = r;
		} else {
			pp = &r->next;
		}
	}
	pthread_mutex_unlock(&pub_mu);
	while (dead) {
		struct cfgref *n = dead->next;
		free(dead->cfg);
		free(dead);
		dead = n;
	}
}

int cr_cfgref_publish(struct cr_config *cfg)
{
	struct cfgref *r = calloc(1, sizeof(*r));
	if (!r) {
		/* Cannot track it: publish anyway and never free the old one. */
		static struct cfgref fallback[4];
		static int nf;
		r = &fallback[nf++ % 4];
	}
	r->cfg = cfg;
	r->retired_ns = 0;
	r->next = NULL;
	atomic_store(&r->refs, 1);
	pthread_mutex_lock(&pub_mu);
	struct cfgref *old = atomic_exchange_explicit(&published, r, memory_order_acq_rel);
	if (old) {
		old->retired_ns = cr_now_ns();
		old->next = retired;
		retired = old;
		atomic_fetch_sub(&old->refs, 1);
	}
	pthread_mutex_unlock(&pub_mu);
	cr_cfgref_collect();
	return old != NULL;
}

void cr_cfgref_atfork_child(void)
{
	pthread_mutex_init(&pub_mu, NULL);
}
