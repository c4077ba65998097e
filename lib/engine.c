/* connroute: the top of lib/: initialisation, publishing a config to every
 * layer below (cfgref, warm pools, libcurl pools, the raw-routing flag), and
 * live reload. Registrations that let lower layers reach higher ones (the
 * limit reaper, the fd release, libcurl prewarm on the warm thread, the
 * background-thread kick) are all made here, at init. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base.h"
#include "cfgref.h"
#include "curl/lanes.h"
#include "deadline.h"
#include "engine.h"
#include "fdtab.h"
#include "health.h"
#include "lane.h"
#include "key.h"
#include "limit.h"
#include "log.h"
#include "metrics.h"
#include "route.h"
#include "sys.h"
#include "thread.h"
#include "trust.h"
#include "warm.h"

atomic_int cr_state;

static char cfg_path[1024];
static struct stat cfg_stat;  /* of the file as last read */
static uint64_t applied_hash; /* content of the published config's file */
/* What the watcher saw at its last look, when that differed from cfg_stat:
 * a file is applied once two looks agree (docs/INTERNALS.md, "Reload"). */
static struct {
	int valid;
	struct stat st;
	uint64_t hash;
} cand;
static int cfg_strict;
static int cfg_origin; /* enum cr_trust_origin of cfg_path */

static int route_raw_of(const struct cr_config *cfg)
{
	int v = cfg->path[0] || cfg->metrics[0] ? CR_RAW_KICK : 0;
	for (int i = 0; i < cfg->nlanes; i++)
		if (!cfg->lanes[i].passthrough)
			return v | CR_RAW_WORK;
	return v;
}

void cr_engine_publish(struct cr_config *cfg)
{
	for (int i = 0; i < cfg->nlanes; i++) {
		struct cr_lane *l = &cfg->lanes[i];
		l->id = cr_lane_id(l->name);
		if (l->id < 0) /* not reached: a reload checks cr_lane_ids_fit first */
			l->id = CR_MAX_LANE_IDS - 1;
		cr_metrics_set_lane_name(l->id, l->name);
		l->conn_hash = cr_config_lane_conn_hash(l); /* the KEY_CONN keys */
	}
	cr_health_publish(cfg); /* before the lanes are used: whose state to show */
	int had_old = cr_cfgref_publish(cfg);
	atomic_store_explicit(&cr_route_raw, route_raw_of(cfg), memory_order_release);
	cr_warm_config_changed(cfg);
	if (had_old)
		cr_curl_shares_retire(cfg);
}

void cr_engine_atfork_child(void)
{
	/* The thread that held them (a reload on the background thread) does
	 * not exist in the child. */
	cr_cfgref_atfork_child();
	cr_lane_ids_atfork_child();
	/* Last: the warm pools have closed the inherited warm sockets by now. */
	cr_fdtab_reset_child();
	cr_limits_reset_child();
	cr_deadline_atfork_child();
	cr_route_set_owner();
	/* The background thread did not survive the fork: the child's first
	 * connect starts its own. */
	const struct cr_config *cfg = cr_cfgref_current();
	if (cfg)
		atomic_store(&cr_route_raw, route_raw_of(cfg));
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
		cr_logmsg(CR_LL_ERROR, "%d more problem(s) in %s; run `connroute check %s`",
			  diag->n - 1, path, path);
}

/* FNV-1a of the file's bytes (at most 4 MiB; a larger file fails to
 * parse anyway); 0 when it cannot be read. */
static uint64_t file_hash(const char *path)
{
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return 0;
	uint64_t h = CR_FNV64_INIT;
	char buf[8192];
	for (int i = 0; i < 512; i++) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n <= 0)
			break;
		h = cr_fnv64(h, buf, (size_t)n);
	}
	cr_sys_close(fd); /* close() is the host's, interposed */
	return h ? h : 1;
}

/* The path is resolved once, here: a daemon that chdir()s later must go on
 * watching the same file (a relative path would name another, or none).
 * Prefixed with the working directory, links untouched (trust.c judges the
 * path as written). */
static void set_cfg_path(const char *path)
{
	char cwd[1024];
	if (path[0] != '/' && getcwd(cwd, sizeof(cwd)) &&
	    (size_t)snprintf(cfg_path, sizeof(cfg_path), "%s/%s", cwd, path) < sizeof(cfg_path))
		return;
	snprintf(cfg_path, sizeof(cfg_path), "%s", path);
}

static int same_stat(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

int cr_engine_reload(int force)
{
	struct stat st;
	if (!cfg_path[0])
		return 0;
	cr_cfgref_collect();
	int have_stat = stat(cfg_path, &st) == 0;
	if (!have_stat) {
		cand.valid = 0;
		if (!force)
			return 0; /* being replaced (rename): look again next time */
	} else if (!force && same_stat(&st, &cfg_stat)) {
		cand.valid = 0;
		return 0;
	}
	uint64_t h = have_stat ? file_hash(cfg_path) : 0;
	if (!force && (!cand.valid || !same_stat(&st, &cand.st) || h != cand.hash)) {
		/* Changed since the last look: maybe a writer is still at it
		 * (`cat new > conf` truncates, then writes). Apply it only once
		 * it has stayed the same (size, mtime, content) across two
		 * looks; an atomic rename is seen whole at once either way. */
		cand.valid = 1;
		cand.st = st;
		cand.hash = h;
		return 0;
	}
	cand.valid = 0;
	if (have_stat && h && h == applied_hash) {
		cfg_stat = st; /* touched, or rewritten with the same bytes */
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
	if (cr_config_trusted_as(cfg_path, geteuid(), cfg_origin, why, sizeof(why)) != 0) {
		cr_logmsg(CR_LL_ERROR, "%s (reload rejected: the previous configuration stays)",
			  why);
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
	if (!cr_lane_ids_fit(cfg)) {
		cr_logmsg(CR_LL_ERROR,
			  "%s: this process has seen %d distinct lane names, the most it can tell "
			  "apart; "
			  "reload rejected (the previous configuration stays): reuse lane names, "
			  "or restart "
			  "the process",
			  cfg_path, CR_MAX_LANE_IDS);
		free(cfg);
		cr_m_reload(0);
		return -1;
	}
	cr_log_config_level(cfg->log_level);
	applied_hash = h;
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
			cr_logmsg(CR_LL_WARN,
				  "CONNROUTE_LOG='%.32s' is not a level; use error, warn, info or "
				  "debug",
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
	/* Which file (docs/config.md, "Which file"): CONNROUTE_CONFIG; unset, the system
	 * file when it exists and passes the trust rules; set but empty, none. Never the
	 * current directory: a preload runs in every process started from anywhere. */
	const char *path = env->config;
	struct stat sst;
	cfg_origin = CR_TRUST_ENV;
	if (!path && (lstat(CONNROUTE_SYSCONF, &sst) == 0 || errno != ENOENT)) {
		path = CONNROUTE_SYSCONF;
		cfg_origin = CR_TRUST_SYSCONF;
	}
	char why[CR_DIAG_LEN];
	if (cfg_origin == CR_TRUST_SYSCONF &&
	    cr_config_trusted_as(path, geteuid(), cfg_origin, why, sizeof(why)) < 0) {
		cr_logmsg(CR_LL_WARN, "%s (not used: running without a config)", why);
		path = NULL;
	}
	if (path && path[0]) {
		if (cr_config_trusted_as(path, geteuid(), cfg_origin, why, sizeof(why)) < 0) {
			cr_logmsg(CR_LL_ERROR, "%s%s", why,
				  env->strict ? "" : " (config refused: running unrouted)");
			free(diag);
			free(cfg);
			if (env->strict)
				strict_exit();
			return CR_ST_DISABLED;
		}
		struct stat st;
		int have_stat = stat(path, &st) == 0;
		if (cr_config_load_file(path, cfg, diag) != 0) {
			log_diag(diag, path,
				 env->strict ? "" : " (config rejected: running unrouted)");
			free(diag);
			free(cfg);
			if (env->strict)
				strict_exit();
			return CR_ST_DISABLED;
		}
		cr_log_config_level(cfg->log_level);
		set_cfg_path(path);
		if (have_stat)
			cfg_stat = st;
		applied_hash = file_hash(cfg_path);
	} else {
		cr_config_builtin(cfg);
	}
	free(diag);

	/* The registrations through which lower layers reach higher ones
	 * (docs/INTERNALS.md, "Layers"). */
	cr_route_set_owner();
	cr_fdtab_set_release(cr_route_release_fd);
	cr_warm_set_curl_prewarm(cr_curl_prewarm);
	cr_periodic_register(cr_curl_idle_sweep, cr_curl_idle_wanted);
	if (cr_limits_init(4096, cr_route_reap, NULL) != 0) {
		cr_logmsg(CR_LL_ERROR, "cannot allocate the limit table (%s); pass-through",
			  strerror(errno));
		free(cfg);
		return CR_ST_DISABLED;
	}
	cr_engine_publish(cfg);
	cr_logmsg(CR_LL_INFO, "ready: %d lane(s) from %s, default key '%s'", cfg->nlanes,
		  cfg->path[0] ? cfg->path : "built-in config", cr_key_default());
	return CR_ST_READY;
}
