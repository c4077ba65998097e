/* connroute: libcurl lanes — which libcurl copies the process holds, their
 * function tables; fork; statistics. See lanes.h for the design. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base.h"
#include "curl_int.h"
#include "log.h"
#include "warm.h"

/* Closing the pools at exit takes at most this long; what is left then is
 * closed by the kernel (docs/INTERNALS.md, "libcurl lanes", closing the
 * pools). */
#define CR_CURL_DRAIN_NS (1000ull * 1000 * 1000)

static struct cr_curllib libs[CR_CURL_LIBS_MAX];
static atomic_int nlibs;
static pthread_mutex_t libs_mu = PTHREAD_MUTEX_INITIALIZER;

struct cr_curl_counters cr_curl_ctr;
atomic_int cr_curl_performing;

/* Per library: its exit handler is registered (lib.c, cr_curl_exit_arm). */
static atomic_int exit_armed[CR_CURL_LIBS_MAX];
static atomic_int exit_drained;
/* The process whose pools these are: a vfork child shares our memory (and
 * runs atexit handlers if it calls exit()), but not our sockets. */
static _Atomic pid_t pools_pid;

int cr_curl_lib_count(void)
{
	return atomic_load_explicit(&nlibs, memory_order_acquire);
}

struct cr_curllib *cr_curl_lib_at(int i)
{
	return &libs[i];
}

struct cr_curllib *cr_curl_lib_find(const void *id)
{
	int n = cr_curl_lib_count();
	for (int i = 0; i < n; i++)
		if (libs[i].id == id)
			return &libs[i];
	return NULL;
}

struct cr_curllib *cr_curl_lib_add(const void *id, const struct cr_curlfns *fns, const char *name)
{
	struct cr_curllib *l;
	pthread_mutex_lock(&libs_mu);
	l = cr_curl_lib_find(id);
	if (!l) {
		int n = atomic_load(&nlibs);
		if (n < CR_CURL_LIBS_MAX) {
			l = &libs[n];
			memset(l, 0, sizeof(*l));
			l->id = id;
			l->index = n;
			l->fns = *fns;
			snprintf(l->name, sizeof(l->name), "%s", name ? name : "libcurl");
			if (fns->version_info) {
				curl_version_info_data *v = fns->version_info(CURLVERSION_NOW);
				l->has_maxlifetime = v && v->version_num >= 0x075000;
				l->already_connected_ok = v && (v->version_num < 0x075700 ||
								v->version_num >= 0x080000);
			}
			cr_curl_handles_lib_init(n);
			cr_curl_shares_lib_init(n);
			atomic_store_explicit(&nlibs, n + 1, memory_order_release);
			if (atomic_load(&cr_warm_active))
				cr_warm_curl_due();
			cr_logmsg(CR_LL_DEBUG, "libcurl lanes: using %s", l->name);
		}
	}
	pthread_mutex_unlock(&libs_mu);
	return l;
}

const struct cr_curlfns *cr_curl_lib_fns(const struct cr_curllib *lib)
{
	return &lib->fns;
}

struct cr_curllib *cr_curl_lib_of_slow(CURL *h)
{
	struct cr_curl_easy *e = cr_curl_handles_get(h);
	return e ? e->lib : NULL;
}

void cr_curl_atfork_child(void)
{
	/* Abandon, never clean up: cleaning would close (and for TLS, shut
	 * down) connections the parent is still using. */
	cr_curl_shares_atfork_child();
	cr_curl_handles_atfork_child();
	cr_curl_mx_atfork_child();
	cr_curl_left_atfork_child();
	atomic_store(&cr_curl_performing, 0); /* the other threads' stayed behind */
	atomic_store(&pools_pid, getpid());
}

/* ------------------------------------------------------ closing the pools */

/* Closes the pools of LIB (NULL: of every library) through libcurl, when
 * that is allowed: in the process that owns them, with no perform in flight
 * anywhere (another thread still in libcurl at exit, or this thread inside a
 * libcurl callback, where libcurl forbids these calls) and no share lent out
 * (a prewarm on the warm thread, or an app's call on a handle with a
 * share parked on it). Shares parked on handles the app holds are left to
 * the kernel (shares.c). Within CR_CURL_DRAIN_NS. */
static void drain(struct cr_curllib *only, int handles)
{
	int n = cr_curl_lib_count();
	cr_curl_left_check(); /* a share left by a jump counts as lent until then */
	if (atomic_load(&cr_curl_performing) > 0 || atomic_load(&pools_pid) != getpid())
		return;
	for (int i = 0; i < n; i++)
		if (cr_curl_shares_lent(&libs[i]) > 0)
			return;
	uint64_t deadline = cr_now_ns() + CR_CURL_DRAIN_NS;
	for (int i = 0; i < n; i++) {
		if (only && only != &libs[i])
			continue;
		if (cr_curl_shares_drain(&libs[i], deadline) != 0)
			cr_logmsg(CR_LL_DEBUG,
				  "libcurl lanes: %s: pooled connections left to the kernel",
				  libs[i].name);
		if (handles)
			cr_curl_handles_drain(&libs[i]);
	}
}

void cr_curl_lib_bound_close(struct cr_curllib *lib, CURLSH *sh)
{
	/* The share's connections are closed by an easy handle libcurl keeps
	 * for it, which takes the timeouts of the last handle added to a multi
	 * with that share (libcurl 7.x's curl_multi_add_handle copies them; a
	 * perform adds the app's handle, whose response timeout is libcurl's
	 * 120 s default). A handle of ours with a short one is added last, and
	 * removed again at once: nothing is transferred. */
	const struct cr_curlfns *f = &lib->fns;
	if (!f->multi_init || !f->multi_add_handle || !f->multi_remove_handle || !f->multi_cleanup)
		return;
	CURL *d = f->easy_init();
	CURLM *m = f->multi_init();
	if (d && m) {
		f->easy_setopt(d, CURLOPT_SERVER_RESPONSE_TIMEOUT, CR_CURL_CLOSE_RESPONSE_S);
		f->easy_setopt(d, CURLOPT_SHARE, sh);
		if (f->multi_add_handle(m, d) == CURLM_OK)
			f->multi_remove_handle(m, d);
		f->easy_setopt(d, CURLOPT_SHARE, (CURLSH *)NULL);
	}
	if (m)
		f->multi_cleanup(m);
	if (d)
		f->easy_cleanup(d);
}

/* Recycled handles hold no connection of their own (they only ever
 * performed pooled): at exit the shares parked on them are closed by the
 * shares' drain and the handles are left as they are. */
static void drain_at_exit(void)
{
	/* A vfork child that calls exit() must not use up the parent's turn. */
	if (atomic_load(&pools_pid) != getpid() || atomic_exchange(&exit_drained, 1))
		return;
	drain(NULL, 0);
}

void cr_curl_exit_arm(struct cr_curllib *lib)
{
	/* Registered after the library's first perform, so after libcurl's
	 * global init registered the TLS library's own exit handler (OpenSSL's
	 * OPENSSL_cleanup): atexit handlers run last registered first, so ours
	 * closes the connections while the TLS library still works. Once per
	 * library: a library loaded later may bring a TLS library initialised
	 * after our first registration. */
	if (atomic_load_explicit(&exit_armed[lib->index], memory_order_relaxed) ||
	    atomic_exchange(&exit_armed[lib->index], 1))
		return;
	pid_t zero = 0;
	atomic_compare_exchange_strong(&pools_pid, &zero, getpid());
	if (atexit(drain_at_exit) != 0)
		cr_logmsg(
			CR_LL_DEBUG,
			"libcurl lanes: no exit handler: pooled connections end with the process");
}

void cr_curl_drain(struct cr_curllib *lib)
{
	drain(lib, 1);
}

void cr_curl_stats(struct cr_curl_stats *out)
{
	out->shares_created = atomic_load(&cr_curl_ctr.shares_created);
	out->handles_recycled = atomic_load(&cr_curl_ctr.handles_recycled);
	out->handles_reused = atomic_load(&cr_curl_ctr.handles_reused);
	out->performs_pooled = atomic_load(&cr_curl_ctr.performs_pooled);
	out->performs_unpooled = atomic_load(&cr_curl_ctr.performs_unpooled);
	out->unpooled_no_room = atomic_load(&cr_curl_ctr.unpooled_no_room);
	out->pools_evicted = atomic_load(&cr_curl_ctr.pools_evicted);
	out->limit_overflows = atomic_load(&cr_curl_ctr.limit_overflows);
	out->retries = atomic_load(&cr_curl_ctr.retries);
	out->shares_taken = atomic_load(&cr_curl_ctr.shares_taken);
	out->shares_closed_idle = atomic_load(&cr_curl_ctr.shares_closed_idle);
	out->recycled_lazy = atomic_load(&cr_curl_ctr.recycled_lazy);
	out->twins = atomic_load(&cr_curl_ctr.twins);
}
