/* connroute: engine state, initialisation and live reload.
 *
 * The published config is reference counted. Readers that may block take a
 * reference (cr_engine_acquire); a reload publishes the new table with one
 * atomic store and retires the old one, which is freed once no reference is
 * left and a grace period has passed (a reader between its load of the
 * pointer and its increment is a few instructions long; the grace period
 * covers it without a lock on the read side). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "key.h"
#include "limit.h"
#include "log.h"
#include "metrics.h"
#include "route.h"
#include "trust.h"
#include "warm.h"

atomic_int cr_route_raw;
__thread int cr_in_shim;
atomic_int cr_state;
struct cr_real cr_real;
void (*cr_engine_on_publish)(const struct cr_config *newcfg);

struct cfgref {
	struct cr_config *cfg;
	atomic_long refs;        /* +1 while published */
	uint64_t retired_ns;     /* 0 while published */
	struct cfgref *next;     /* retired list */
};

static struct cfgref *_Atomic published;
static pthread_mutex_t pub_mu = PTHREAD_MUTEX_INITIALIZER;
static struct cfgref *retired;

static char cfg_path[1024];
static struct stat cfg_stat;
static int cfg_strict;

#define GRACE_NS 5000000000ull

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

const struct cr_config *cr_engine_config(void)
{
	struct cfgref *r = atomic_load_explicit(&published, memory_order_acquire);
	return r ? r->cfg : NULL;
}

static struct cfgref *ref_of(const struct cr_config *cfg)
{
	/* Configs come from callers (no header of ours in front of them): search
	 * the published one, then the (short) retired list. */
	struct cfgref *r = atomic_load_explicit(&published, memory_order_acquire);
	if (r && r->cfg == cfg)
		return r;
	pthread_mutex_lock(&pub_mu);
	for (r = retired; r && r->cfg != cfg; r = r->next)
		;
	pthread_mutex_unlock(&pub_mu);
	return r;
}

const struct cr_config *cr_engine_acquire(void)
{
	for (int tries = 0; tries < 1000; tries++) {
		struct cfgref *r = atomic_load_explicit(&published, memory_order_acquire);
		if (!r)
			return NULL;
		atomic_fetch_add_explicit(&r->refs, 1, memory_order_acq_rel);
		if (atomic_load_explicit(&published, memory_order_acquire) == r)
			return r->cfg;
		atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel);
	}
	return cr_engine_config();
}

static void collect_retired(void)
{
	uint64_t now = mono_ns();
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

void cr_engine_release(const struct cr_config *cfg)
{
	struct cfgref *r;
	if (!cfg)
		return;
	r = atomic_load_explicit(&published, memory_order_acquire);
	if (r && r->cfg == cfg) {
		atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel);
		return;
	}
	r = ref_of(cfg);
	if (r)
		atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel);
}

/* ------------------------------------------------------------ lane ids */

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
		cr_metrics_set_lane_name(id, name);
	}
	pthread_mutex_unlock(&ids_mu);
	return id;
}

/* What a pooled connection carries from its lane: socket options and TLS
 * floor. Timeouts and limits apply per request and do not retire pools. */
static uint64_t conn_hash(const struct cr_lane *l)
{
	return cr_config_lane_conn_hash(l); /* the keys flagged KEY_CONN in config_keys.c */
}

static int has_raw_work(const struct cr_config *cfg)
{
	for (int i = 0; i < cfg->nlanes; i++)
		if (!cfg->lanes[i].passthrough)
			return 1;
	return 0;
}

void cr_engine_publish(struct cr_config *cfg)
{
	struct cfgref *r = calloc(1, sizeof(*r));
	for (int i = 0; i < cfg->nlanes; i++) {
		struct cr_lane *l = &cfg->lanes[i];
		l->id = cr_lane_id(l->name);
		if (l->id < 0)
			l->id = CR_MAX_LANE_IDS - 1; /* registry full: share the last id */
		l->conn_hash = conn_hash(l);
	}
	if (!r) {
		/* Cannot track it: publish anyway and never free the old one. */
		static struct cfgref fallback[4];
		static int nf;
		r = &fallback[nf++ % 4];
	}
	r->cfg = cfg;
	atomic_store(&r->refs, 1);
	pthread_mutex_lock(&pub_mu);
	struct cfgref *old = atomic_exchange_explicit(&published, r, memory_order_acq_rel);
	if (old) {
		old->retired_ns = mono_ns();
		old->next = retired;
		retired = old;
	}
	pthread_mutex_unlock(&pub_mu);
	atomic_store_explicit(&cr_route_raw, has_raw_work(cfg), memory_order_release);
	cr_warm_config_changed(cfg);
	if (old) {
		atomic_fetch_sub(&old->refs, 1);
		if (cr_engine_on_publish)
			cr_engine_on_publish(cfg);
	}
	collect_retired();
}

void cr_engine_atfork_child(void)
{
	/* The thread that held them (a reload on the background thread) does
	 * not exist in the child. */
	pthread_mutex_init(&pub_mu, NULL);
	pthread_mutex_init(&ids_mu, NULL);
}

static void strict_exit(void)
{
	cr_logmsg(CR_LL_ERROR, "CONNROUTE_STRICT=1: exiting (unset it to run unrouted instead)");
	_exit(78); /* EX_CONFIG */
}

static void log_diag(const struct cr_diag *diag, const char *path, const char *tail)
{
	cr_logmsg(CR_LL_ERROR, "%s%s", diag->msg[0], tail);
	if (diag->n > 1)
		cr_logmsg(CR_LL_ERROR, "%d more problem(s) in %s; run `connroute check %s`", diag->n - 1,
			  path, path);
}

int cr_engine_reload(int force)
{
	struct stat st;
	if (!cfg_path[0])
		return 0;
	collect_retired();
	int have_stat = stat(cfg_path, &st) == 0;
	if (!have_stat) {
		if (!force)
			return 0; /* being replaced (rename): look again next time */
	} else if (!force && st.st_ino == cfg_stat.st_ino && st.st_size == cfg_stat.st_size &&
		   st.st_mtim.tv_sec == cfg_stat.st_mtim.tv_sec &&
		   st.st_mtim.tv_nsec == cfg_stat.st_mtim.tv_nsec) {
		return 0;
	}
	struct cr_config *cfg = calloc(1, sizeof(*cfg));
	struct cr_diag *diag = calloc(1, sizeof(*diag));
	if (!cfg || !diag) {
		free(cfg);
		free(diag);
		return -1;
	}
	if (have_stat)
		cfg_stat = st; /* a broken file is reported once, not every second */
	char why[CR_DIAG_LEN];
	if (cr_config_trusted(cfg_path, why, sizeof(why)) != 0) {
		cr_logmsg(CR_LL_ERROR, "%s (reload rejected: the previous configuration stays)", why);
		free(cfg);
		free(diag);
		cr_m_reload(0);
		return -1;
	}
	if (cr_config_load_file(cfg_path, cfg, diag) != 0) {
		log_diag(diag, cfg_path, " (reload rejected: the previous configuration stays)");
		free(cfg);
		free(diag);
		cr_m_reload(0);
		return -1;
	}
	free(diag);
	if (cfg->log_level >= 0)
		cr_log_setup(cfg->log_level, NULL);
	cr_engine_publish(cfg);
	cr_m_reload(1);
	cr_logmsg(CR_LL_INFO, "reloaded %s: %d lane(s)", cfg_path, cfg->nlanes);
	return 1;
}

int cr_engine_init(const struct cr_env *env)
{
	struct cr_config *cfg;
	struct cr_diag *diag;
	int level = -1, bad = 0;

	if (env->log && env->log[0]) {
		level = cr_log_parse_level(env->log);
		if (level < 0)
			cr_logmsg(CR_LL_WARN, "CONNROUTE_LOG='%.32s' is not a level; use error, warn, info or debug",
				  env->log);
	}
	cr_log_setup(level, env->log_file && env->log_file[0] ? env->log_file : NULL);
	cfg_strict = env->strict;

	if (env->disable) {
		cr_logmsg(CR_LL_INFO, "CONNROUTE_DISABLE=1: pass-through");
		return CR_ST_DISABLED;
	}

	if (env->key && env->key[0] && cr_key_check(env->key) != 0) {
		cr_logmsg(CR_LL_ERROR,
			  "CONNROUTE_KEY='%.140s' is not a valid key; use 1-127 characters of "
			  "A-Za-z0-9._~:/@=- (e.g. payments/critical)%s",
			  env->key, env->strict ? "" : "; using 'default'");
		bad = 1;
	}
	cr_key_set_default(env->key && env->key[0] && !bad ? env->key : "default");
	if (bad && env->strict)
		strict_exit();

	cfg = calloc(1, sizeof(*cfg));
	diag = calloc(1, sizeof(*diag));
	if (!cfg || !diag) {
		free(cfg);
		free(diag);
		cr_logmsg(CR_LL_ERROR, "out of memory at init; pass-through");
		return CR_ST_DISABLED;
	}
	if (env->config && env->config[0]) {
		char why[CR_DIAG_LEN];
		if (cr_config_trusted(env->config, why, sizeof(why)) != 0) {
			cr_logmsg(CR_LL_ERROR, "%s%s", why, env->strict ? "" : " (config refused: running unrouted)");
			free(diag);
			free(cfg);
			if (env->strict)
				strict_exit();
			return CR_ST_DISABLED;
		}
		struct stat st;
		int have_stat = stat(env->config, &st) == 0;
		if (cr_config_load_file(env->config, cfg, diag) != 0) {
			log_diag(diag, env->config, env->strict ? "" : " (config rejected: running unrouted)");
			free(diag);
			free(cfg);
			if (env->strict)
				strict_exit();
			return CR_ST_DISABLED;
		}
		if (level < 0 && cfg->log_level >= 0)
			cr_log_setup(cfg->log_level, NULL);
		snprintf(cfg_path, sizeof(cfg_path), "%s", env->config);
		if (have_stat)
			cfg_stat = st;
	} else {
		cr_config_builtin(cfg);
	}
	free(diag);

	if (cr_limits_init(4096, cr_route_reap, NULL) != 0) {
		cr_logmsg(CR_LL_ERROR, "cannot allocate the limit table (%s); pass-through", strerror(errno));
		free(cfg);
		return CR_ST_DISABLED;
	}
	cr_engine_publish(cfg);
	cr_logmsg(CR_LL_INFO, "ready: %d lane(s) from %s, default key '%s'", cfg->nlanes,
		  cfg->path[0] ? cfg->path : "built-in config", cr_key_default());
	return CR_ST_READY;
}
