/* connroute: the constructor and the state machine
 * (uninit -> initialising -> ready | disabled).
 *
 * Every hook works in every state: anything but READY passes straight to the
 * real call (cr_real: a raw syscall that behaves as libc until resolved).
 * No thread is started here (docs/INTERNALS.md, "State machine"); the constructor reads the
 * environment, loads the config and registers the fork handlers, nothing
 * else. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>

#include "bg.h"
#include "curl/lanes.h"
#include "engine.h"
#include "limit.h"
#include "warm.h"
#include "log.h"
#include "real.h"
#include "thread.h"
#include "rebind.h"
#include "shim.h"

static int env_on(const char *v)
{
	return v && (strcmp(v, "1") == 0 || strcmp(v, "yes") == 0 || strcmp(v, "true") == 0 ||
		     strcmp(v, "on") == 0);
}

/* Lock order: warm pools, then limits (the warm code releases units while
 * holding its own lock). The child releases limits first: dropping warm
 * sockets gives units back. */
static void atfork_prepare(void)
{
	cr_warm_atfork_prepare();
	cr_limits_atfork_prepare();
}

static void atfork_parent(void)
{
	cr_limits_atfork_parent();
	cr_warm_atfork_parent();
}

static void atfork_child(void)
{
	cr_limits_atfork_child();
	cr_curl_atfork_child();
	cr_warm_atfork_child();
	cr_bg_atfork_child();
	cr_engine_atfork_child();
}

__attribute__((constructor)) static void cr_shim_init(void)
{
	int expect = CR_ST_UNINIT;
	if (!atomic_compare_exchange_strong(&cr_state, &expect, CR_ST_INIT))
		return;
	cr_real_resolve();

	/* Secure execution (setuid/setgid/capabilities): the environment
	 * belongs to a less privileged user; ignore all of it. glibc drops
	 * LD_PRELOAD for such programs anyway unless the library is in a
	 * trusted path and setuid itself. */
	if (getauxval(AT_SECURE)) {
		atomic_store(&cr_state, CR_ST_DISABLED);
		return;
	}

	struct cr_env env = {
		.config = getenv("CONNROUTE_CONFIG"),
		.key = getenv("CONNROUTE_KEY"),
		.log = getenv("CONNROUTE_LOG"),
		.log_file = getenv("CONNROUTE_LOG_FILE"),
		.strict = env_on(getenv("CONNROUTE_STRICT")),
		.disable = env_on(getenv("CONNROUTE_DISABLE")),
	};
	cr_kick_register(cr_bg_kick); /* the routed paths start it lazily */
	int st = cr_engine_init(&env);
	if (st == CR_ST_READY)
		pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
	atomic_store(&cr_state, st);
	if (st == CR_ST_READY)
		cr_rebind_init(); /* RTLD_DEEPBIND objects (docs/INTERNALS.md) */
}
