/* connroute: libcurl lanes — prewarm_url (the seed's PreWarmTransports):
 * fill a lane's pool with whole connections, TLS included, by sending the
 * lane's prewarm_method to it, one share per connection, all held at once
 * so each gets its own. Runs on the warm-pool thread; the requests carry the
 * lane's options and timeouts, and only libcurl's defaults otherwise (a
 * connection is reused by an app handle whose TLS settings match: the
 * system CA store, typically). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "curl_int.h"
#include "log.h"

static size_t prewarm_sink(char *p, size_t sz, size_t n, void *ud)
{
	(void)p;
	(void)ud;
	return sz * n;
}

/* A handle of our own for one prewarm request, holding a share of L's
 * pool (a new one where possible: never one taken from an app's handle);
 * pinned for its whole life, so nobody takes the share from it. NULL if
 * none can be had. */
static struct cr_curl_easy *prewarm_handle(struct cr_curllib *lib, const struct cr_lane *l)
{
	struct cr_curl_easy *e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->lib = lib;
	e->lane = l;
	e->warm_fd = -1;
	atomic_store(&e->pin, CR_PIN_CALL);
	e->h = lib->fns.easy_init();
	if (!e->h || !cr_curl_shares_checkout(lib, e, l, 0, cr_now_ns(), 0)) {
		if (e->h)
			lib->fns.easy_cleanup(e->h);
		free(e);
		return NULL;
	}
	return e;
}

static void prewarm_handle_done(struct cr_curllib *lib, struct cr_curl_easy *e)
{
	cr_curl_shares_release(lib, e); /* the connection stays in the share */
	lib->fns.easy_cleanup(e->h);
	free(e);
}

/* One prewarm request on E's share; 1 when it succeeded. */
static int prewarm_one(struct cr_curllib *lib, const struct cr_lane *l, struct cr_curl_easy *e)
{
	const struct cr_curlfns *f = &lib->fns;
	CURL *h = e->h;
	e->ct_ms = l->connect_timeout_ms > 0 ? l->connect_timeout_ms : 5000;
	f->easy_setopt(h, CURLOPT_URL, l->prewarm_url);
	if (!strcmp(l->prewarm_method, "HEAD"))
		f->easy_setopt(h, CURLOPT_NOBODY, 1L);
	else if (strcmp(l->prewarm_method, "GET"))
		f->easy_setopt(h, CURLOPT_CUSTOMREQUEST, l->prewarm_method);
	f->easy_setopt(h, CURLOPT_WRITEFUNCTION, prewarm_sink);
	f->easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	f->easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, e->ct_ms);
	f->easy_setopt(h, CURLOPT_TIMEOUT_MS, e->ct_ms * 2);
	f->easy_setopt(h, CURLOPT_SOCKOPTFUNCTION, cr_curl_sockets_opt);
	f->easy_setopt(h, CURLOPT_SOCKOPTDATA, e);
	f->easy_setopt(h, CURLOPT_CLOSESOCKETFUNCTION, cr_curl_sockets_close);
	f->easy_setopt(h, CURLOPT_CLOSESOCKETDATA, (void *)(intptr_t)(l->id + 1));
	f->easy_setopt(h, CURLOPT_MAXCONNECTS, l->max_idle_per_host);
	cr_guard_set(__builtin_frame_address(0),
		     0); /* libcurl's connect is the lane's business here */
	CURLcode rc = f->easy_perform(h);
	cr_guard_clear();
	cr_curl_sockets_count(e);
	if (rc != CURLE_OK)
		cr_logmsg(CR_LL_WARN, "lane %s: prewarm %s %s: %s", l->name, l->prewarm_method,
			  l->prewarm_url, "request failed (pool left cold)");
	return rc == CURLE_OK;
}

void cr_curl_prewarm(const struct cr_config *cfg)
{
	int nl = cr_curl_lib_count();
	for (int li = 0; li < nl; li++) {
		struct cr_curllib *lib = cr_curl_lib_at(li);
		for (int k = 0; k < cfg->nlanes; k++) {
			const struct cr_lane *l = &cfg->lanes[k];
			if (!l->prewarm_url[0] || l->max_idle_per_host <= 0)
				continue;
			int want = 0;
			for (int j = 0; j < l->nprewarm; j++)
				want += l->prewarm[j].count;
			if (want <= 0)
				want = 1;
			if (want > l->max_idle_per_host)
				want = (int)l->max_idle_per_host;
			if (want > 64)
				want = 64;
			/* All held at once, so each gets its own share. */
			struct cr_curl_easy *held[64];
			int nheld = 0, ok = 0;
			for (int i = 0; i < want; i++) {
				struct cr_curl_easy *e = prewarm_handle(lib, l);
				if (!e)
					break;
				held[nheld++] = e;
				ok += prewarm_one(lib, l, e) > 0;
			}
			for (int i = 0; i < nheld; i++)
				prewarm_handle_done(lib, held[i]);
			if (ok)
				cr_logmsg(CR_LL_INFO, "lane %s: prewarmed %d connection(s) to %s",
					  l->name, ok, l->prewarm_url);
		}
	}
}
