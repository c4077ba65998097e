/* connroute: engine state and initialisation. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "key.h"
#include "limit.h"
#include "log.h"
#include "route.h"

atomic_int cr_route_raw;
atomic_int cr_state;
struct cr_real cr_real;

static struct cr_config *_Atomic published;

const struct cr_config *cr_engine_config(void)
{
	return atomic_load_explicit(&published, memory_order_acquire);
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
	/* The old table is kept: hooks may still be reading it. Reload (a later
	 * issue) frees it once no reader holds it. */
	atomic_store_explicit(&published, cfg, memory_order_release);
	atomic_store_explicit(&cr_route_raw, has_raw_work(cfg), memory_order_release);
}

static void strict_exit(void)
{
	cr_logmsg(CR_LL_ERROR, "CONNROUTE_STRICT=1: exiting (unset it to run unrouted instead)");
	_exit(78); /* EX_CONFIG */
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
		if (cr_config_load_file(env->config, cfg, diag) != 0) {
			cr_logmsg(CR_LL_ERROR, "%s%s", diag->msg[0],
			       env->strict ? "" : " (config rejected: running unrouted)");
			if (diag->n > 1)
				cr_logmsg(CR_LL_ERROR, "%d more problem(s) in %s; run `connroute check %s`",
				       diag->n - 1, env->config, env->config);
			free(diag);
			free(cfg);
			if (env->strict)
				strict_exit();
			return CR_ST_DISABLED;
		}
		if (level < 0 && cfg->log_level >= 0)
			cr_log_setup(cfg->log_level, NULL);
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
