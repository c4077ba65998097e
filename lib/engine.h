/* connroute: process-wide engine state, shared by the shim and the CLI.
 *
 * Threads: cr_engine_init runs once (the shim's constructor) before any
 * state is READY; after that the published config is read-only and a reload
 * swaps it (cfgref.h). Top layer of lib/: nothing below includes this. */
#ifndef CR_ENGINE_H
#define CR_ENGINE_H

#include <stdatomic.h>
#include <sys/socket.h>

#include "base.h"
#include "cfgref.h"
#include "config.h"
#include "route.h"

enum cr_state { CR_ST_UNINIT = 0, CR_ST_INIT, CR_ST_READY, CR_ST_DISABLED };
extern atomic_int cr_state;

/* What the environment said (the shim reads it; AT_SECURE ignores it). */
struct cr_env {
	const char *config;   /* CONNROUTE_CONFIG */
	const char *key;      /* CONNROUTE_KEY */
	const char *log;      /* CONNROUTE_LOG */
	const char *log_file; /* CONNROUTE_LOG_FILE */
	int strict;           /* CONNROUTE_STRICT=1 */
	int disable;          /* CONNROUTE_DISABLE=1 */
};

/* Loads the config and publishes it. Returns the resulting state: READY, or
 * DISABLED (kill switch, or a bad config: pass-through). Under strict, a bad
 * config or environment prints one line and exits the process. */
int cr_engine_init(const struct cr_env *env);

/* Replaces the published configuration: assigns stable lane ids, retires
 * the old one (freed once its last reference is gone and a grace period has
 * passed). Takes ownership of CFG (heap-allocated). */
void cr_engine_publish(struct cr_config *cfg);

/* Re-reads the config file when it changed (inode, size or mtime; FORCE:
 * always) and swaps it in if valid. In-flight connects and transfers finish
 * on the lanes they started with. Returns 1 applied, 0 unchanged (or no file
 * to watch), -1 rejected (the old config stays; one FILE:LINE line logged). */
int cr_engine_reload(int force);

/* fork: the child re-initialises the engine's locks. */
void cr_engine_atfork_child(void);

#endif
