/* connroute: libcurl lanes — which libcurl copies the process holds, their
 * function tables; fork; statistics. See lanes.h for the design. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "curl_int.h"
#include "log.h"
#include "warm.h"

static struct cr_curllib libs[CR_CURL_LIBS_MAX];
static atomic_int nlibs;
static pthread_mutex_t libs_mu = PTHREAD_MUTEX_INITIALIZER;

struct cr_curl_counters cr_curl_ctr;

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
				l->already_connected_ok = v && (v->version_num < 0x075700 || v->version_num >= 0x080000);
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
