/* connroute: libcurl lanes — the easy-handle table: what the app set on
 * each handle it made (so the lane's overrides can be put back), which
 * options leave a handle not provably clean, and recycling of clean handles
 * on cleanup (docs/INTERNALS.md, "libcurl lanes", handle recycling). */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "curl_int.h"
#include "warm.h"

#define FREE_HANDLES_MAX 64
#define EASY_BUCKETS 1024

/* Striped: setopt looks its handle up on every call, from every thread. */
#define EASY_STRIPES 64
static pthread_mutex_t easy_mu[EASY_STRIPES];
static pthread_once_t easy_once = PTHREAD_ONCE_INIT;
static struct cr_curl_easy *easy_tab[EASY_BUCKETS];

/* Per library: reset handles waiting for the next curl_easy_init. */
static struct freelist {
	pthread_mutex_t mu;
	CURL *h[FREE_HANDLES_MAX];
	int n;
} freelists[CR_CURL_LIBS_MAX];

static void easy_init_locks(void)
{
	for (int i = 0; i < EASY_STRIPES; i++)
		pthread_mutex_init(&easy_mu[i], NULL);
}

static pthread_mutex_t *easy_lock(unsigned bucket)
{
	pthread_once(&easy_once, easy_init_locks);
	return &easy_mu[bucket % EASY_STRIPES];
}

void cr_curl_handles_lib_init(int index)
{
	pthread_mutex_init(&freelists[index].mu, NULL);
	freelists[index].n = 0;
}

void cr_curl_handles_atfork_child(void)
{
	int n = cr_curl_lib_count();
	for (int i = 0; i < n; i++)
		cr_curl_handles_lib_init(i);
	/* Another thread may have held a stripe at fork. */
	if (pthread_once(&easy_once, easy_init_locks) == 0)
		for (int i = 0; i < EASY_STRIPES; i++)
			pthread_mutex_init(&easy_mu[i], NULL);
}

/* --------------------------------------------------------- handle table */

static unsigned easy_bucket(const CURL *h)
{
	uintptr_t p = (uintptr_t)h;
	return (unsigned)((p >> 4) ^ (p >> 14)) & (EASY_BUCKETS - 1);
}

static void easy_defaults(struct cr_curl_easy *e)
{
	CURL *h = e->h;
	struct cr_curllib *lib = e->lib;
	struct cr_curl_easy *next = e->next;
	int dirty = e->dirty;
	CURLM *multi = e->multi;
	memset(e, 0, sizeof(*e));
	e->h = h;
	e->lib = lib;
	e->next = next;
	e->dirty = dirty; /* state that survives a reset stays dirty */
	e->multi = multi; /* and so does the handle's place in a multi */
	e->app_maxage_s = 118;
	e->app_maxconnects = 5;
	e->app_noprogress = 1;
	e->warm_fd = -1;
}

/* Each thread remembers the last handle it looked up: an app sets several
 * options on one handle, then performs it. The entry is valid as long as no
 * handle state was freed since (easy_gen), which with recycling is rare. */
static atomic_ulong easy_gen;
static __thread CURL *tls_easy_h;
static __thread struct cr_curl_easy *tls_easy_e;
static __thread unsigned long tls_easy_gen;

struct cr_curl_easy *cr_curl_handles_get(CURL *h)
{
	struct cr_curl_easy *e;
	unsigned long gen = atomic_load_explicit(&easy_gen, memory_order_acquire);
	if (h == tls_easy_h && gen == tls_easy_gen && tls_easy_e)
		return tls_easy_e;
	unsigned b = easy_bucket(h);
	pthread_mutex_t *mu = easy_lock(b);
	pthread_mutex_lock(mu);
	for (e = easy_tab[b]; e && e->h != h; e = e->next)
		;
	pthread_mutex_unlock(mu);
	if (e) {
		tls_easy_h = h;
		tls_easy_e = e;
		tls_easy_gen = gen;
	}
	return e;
}

static struct cr_curl_easy *easy_add(struct cr_curllib *lib, CURL *h)
{
	struct cr_curl_easy *e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->h = h;
	e->lib = lib;
	easy_defaults(e);
	unsigned b = easy_bucket(h);
	pthread_mutex_t *mu = easy_lock(b);
	pthread_mutex_lock(mu);
	e->next = easy_tab[b];
	easy_tab[b] = e;
	pthread_mutex_unlock(mu);
	return e;
}

/* Entries with a multi set: curl_multi_cleanup looks for them only then. */
static atomic_int easy_in_multi;

static void easy_del(CURL *h)
{
	struct cr_curl_easy **pp, *e = NULL;
	unsigned b = easy_bucket(h);
	pthread_mutex_t *mu = easy_lock(b);
	pthread_mutex_lock(mu);
	for (pp = &easy_tab[b]; *pp; pp = &(*pp)->next) {
		if ((*pp)->h == h) {
			e = *pp;
			*pp = e->next;
			if (e->multi)
				atomic_fetch_sub(&easy_in_multi, 1);
			break;
		}
	}
	/* Before the free: every thread's remembered entry is now stale. */
	atomic_fetch_add_explicit(&easy_gen, 1, memory_order_acq_rel);
	pthread_mutex_unlock(mu);
	free(e);
}

/* ------------------------------------------------------------- the calls */

CURL *cr_curl_init(struct cr_curllib *lib)
{
	struct freelist *fl = &freelists[lib->index];
	CURL *h = NULL;
	/* The earliest sign of libcurl traffic: start prewarming now. */
	if (atomic_load_explicit(&cr_warm_active, memory_order_relaxed))
		cr_warm_kick();
	pthread_mutex_lock(&fl->mu);
	if (fl->n > 0)
		h = fl->h[--fl->n];
	pthread_mutex_unlock(&fl->mu);
	if (h) {
		atomic_fetch_add(&cr_curl_ctr.handles_reused, 1);
		return h; /* reset on the way into the list; state already there */
	}
	h = lib->fns.easy_init();
	if (h && !easy_add(lib, h)) {
		/* Out of memory for our bookkeeping: the handle works, we just
		 * do not know it (it performs unrouted). */
	}
	return h;
}

/* Options after which a handle is not provably clean once reset: they
 * create state curl_easy_reset keeps (cookies, HSTS, alt-svc, auth),
 * credentials, or things we do not model. Everything not listed as safe. */
static int option_is_safe(CURLoption o)
{
	switch (o) {
	case CURLOPT_URL: case CURLOPT_WRITEFUNCTION: case CURLOPT_WRITEDATA:
	case CURLOPT_READFUNCTION: case CURLOPT_READDATA: case CURLOPT_HEADERFUNCTION:
	case CURLOPT_HEADERDATA: case CURLOPT_POSTFIELDS: case CURLOPT_POSTFIELDSIZE:
	case CURLOPT_POSTFIELDSIZE_LARGE: case CURLOPT_COPYPOSTFIELDS: case CURLOPT_HTTPHEADER:
	case CURLOPT_CUSTOMREQUEST: case CURLOPT_NOBODY: case CURLOPT_POST: case CURLOPT_HTTPGET:
	case CURLOPT_UPLOAD: case CURLOPT_PUT: case CURLOPT_INFILESIZE: case CURLOPT_INFILESIZE_LARGE:
	case CURLOPT_TIMEOUT: case CURLOPT_TIMEOUT_MS: case CURLOPT_CONNECTTIMEOUT:
	case CURLOPT_CONNECTTIMEOUT_MS: case CURLOPT_NOSIGNAL: case CURLOPT_FOLLOWLOCATION:
	case CURLOPT_MAXREDIRS: case CURLOPT_VERBOSE: case CURLOPT_NOPROGRESS:
	case CURLOPT_XFERINFOFUNCTION: case CURLOPT_XFERINFODATA: case CURLOPT_PROGRESSFUNCTION:
	case CURLOPT_CAINFO: case CURLOPT_CAPATH: case CURLOPT_SSL_VERIFYPEER:
	case CURLOPT_SSL_VERIFYHOST: case CURLOPT_USERAGENT: case CURLOPT_ACCEPT_ENCODING:
	case CURLOPT_HTTP_VERSION: case CURLOPT_ERRORBUFFER: case CURLOPT_FAILONERROR:
	case CURLOPT_PRIVATE: case CURLOPT_SOCKOPTFUNCTION: case CURLOPT_SOCKOPTDATA:
	case CURLOPT_TCP_NODELAY: case CURLOPT_TCP_KEEPALIVE: case CURLOPT_TCP_KEEPIDLE:
	case CURLOPT_TCP_KEEPINTVL: case CURLOPT_BUFFERSIZE: case CURLOPT_LOW_SPEED_LIMIT:
	case CURLOPT_LOW_SPEED_TIME: case CURLOPT_MAXAGE_CONN: case CURLOPT_MAXLIFETIME_CONN:
	case CURLOPT_MAXCONNECTS: case CURLOPT_FORBID_REUSE: case CURLOPT_FRESH_CONNECT:
	case CURLOPT_DNS_CACHE_TIMEOUT: case CURLOPT_IPRESOLVE: case CURLOPT_REFERER:
	case CURLOPT_RANGE: case CURLOPT_SSLVERSION: case CURLOPT_PIPEWAIT:
	case CURLOPT_DEBUGFUNCTION: case CURLOPT_DEBUGDATA: case CURLOPT_STDERR:
	case CURLOPT_HEADEROPT: case CURLOPT_EXPECT_100_TIMEOUT_MS: case CURLOPT_RESOLVE:
	case CURLOPT_CONNECT_TO: case CURLOPT_PROTOCOLS_STR: case CURLOPT_REDIR_PROTOCOLS_STR:
	case CURLOPT_SSL_OPTIONS: case CURLOPT_PATH_AS_IS: case CURLOPT_TRANSFER_ENCODING:
	case CURLOPT_HTTP_CONTENT_DECODING: case CURLOPT_HTTP_TRANSFER_DECODING:
	case CURLOPT_SSL_ENABLE_ALPN: case CURLOPT_TCP_FASTOPEN: case CURLOPT_SUPPRESS_CONNECT_HEADERS:
	case CURLOPT_UPKEEP_INTERVAL_MS: case CURLOPT_UPLOAD_BUFFERSIZE: case CURLOPT_MAXFILESIZE:
	case CURLOPT_MAXFILESIZE_LARGE: case CURLOPT_SEEKFUNCTION: case CURLOPT_SEEKDATA:
	case CURLOPT_HEADER: case CURLOPT_KEEP_SENDING_ON_ERROR: case CURLOPT_DEFAULT_PROTOCOL:
		return 1;
	default:
		return 0;
	}
}

CURLcode cr_curl_setopt(struct cr_curllib *lib, CURL *h, CURLoption opt, void *ptr, long lval,
			curl_off_t oval)
{
	CURLcode rc;
	if (opt < CURLOPTTYPE_OBJECTPOINT)
		rc = lib->fns.easy_setopt(h, opt, lval);
	else if (opt < CURLOPTTYPE_OFF_T)
		rc = lib->fns.easy_setopt(h, opt, ptr);
	else if (opt < CURLOPTTYPE_BLOB)
		rc = lib->fns.easy_setopt(h, opt, oval);
	else
		rc = lib->fns.easy_setopt(h, opt, ptr);
	if (rc != CURLE_OK)
		return rc;

	struct cr_curl_easy *e = cr_curl_handles_get(h);
	if (!e)
		return rc;
	if (!option_is_safe(opt))
		e->dirty = 1;
	switch (opt) {
	case CURLOPT_URL:
		e->url_ok = ptr && cr_curl_parse_url(ptr, e->u_scheme, sizeof(e->u_scheme), e->u_host,
						     sizeof(e->u_host), &e->u_port) == 0;
		e->u_family = AF_UNSPEC;
		if (e->url_ok && inet_pton(AF_INET, e->u_host, e->u_addr) == 1)
			e->u_family = AF_INET;
		else if (e->url_ok && inet_pton(AF_INET6, e->u_host, e->u_addr) == 1)
			e->u_family = AF_INET6;
		break;
	case CURLOPT_SHARE: e->app_share = ptr; break;
	case CURLOPT_FORBID_REUSE: e->forbid_reuse = lval; break;
	case CURLOPT_TIMEOUT: e->app_timeout_ms = lval > 0 ? lval * 1000 : 0; break;
	case CURLOPT_TIMEOUT_MS: e->app_timeout_ms = lval > 0 ? lval : 0; break;
	case CURLOPT_CONNECTTIMEOUT: e->app_connect_timeout_ms = lval > 0 ? lval * 1000 : 0; break;
	case CURLOPT_CONNECTTIMEOUT_MS: e->app_connect_timeout_ms = lval > 0 ? lval : 0; break;
	case CURLOPT_MAXAGE_CONN: e->app_maxage_s = lval; break;
	case CURLOPT_MAXLIFETIME_CONN: e->app_maxlifetime_s = lval; break;
	case CURLOPT_MAXCONNECTS: e->app_maxconnects = lval; break;
	case CURLOPT_SSLVERSION: e->app_sslversion = lval; break;
	case CURLOPT_SOCKOPTFUNCTION: e->app_sockopt = (curl_sockopt_callback)ptr; break;
	case CURLOPT_SOCKOPTDATA: e->app_sockopt_data = ptr; break;
	case CURLOPT_OPENSOCKETFUNCTION: e->app_opensocket = ptr != NULL; break;
	case CURLOPT_CLOSESOCKETFUNCTION: e->app_closesocket = ptr != NULL; break;
	case CURLOPT_XFERINFOFUNCTION: e->app_xferinfo = (curl_xferinfo_callback)ptr; break;
	case CURLOPT_XFERINFODATA: e->app_xferinfo_data = ptr; break; /* == PROGRESSDATA */
	case CURLOPT_PROGRESSFUNCTION: e->app_progress = (curl_progress_callback)ptr; break;
	case CURLOPT_NOPROGRESS: e->app_noprogress = lval; break;
	case CURLOPT_INTERFACE: case CURLOPT_LOCALPORT: e->app_bind = ptr != NULL || lval != 0; break;
	case CURLOPT_ERRORBUFFER: e->errbuf = ptr; break;
	case CURLOPT_RESOLVE: e->resolve = ptr; break;
	case CURLOPT_HTTPHEADER: e->headers = ptr; break;
	case CURLOPT_READFUNCTION: e->read_cb = ptr != NULL; break;
	case CURLOPT_SEEKFUNCTION: e->seek_cb = ptr != NULL; break;
	case CURLOPT_CUSTOMREQUEST: {
		const char *m = ptr;
		size_t n = m ? strlen(m) : 0;
		e->custom_set = m != NULL;
		e->custom[0] = '\0';
		if (n < sizeof(e->custom)) {
			for (size_t i = 0; i < n; i++)
				e->custom[i] = (char)((m[i] >= 'a' && m[i] <= 'z') ? m[i] - 32 : m[i]);
			e->custom[n] = '\0';
		}
		break;
	}
	case CURLOPT_NOBODY: if (lval) e->method = CR_CURL_M_HEAD; else if (e->method == CR_CURL_M_HEAD) e->method = CR_CURL_M_GET; break;
	case CURLOPT_HTTPGET: if (lval) e->method = CR_CURL_M_GET; break;
	case CURLOPT_POST: case CURLOPT_POSTFIELDS: case CURLOPT_COPYPOSTFIELDS:
	case CURLOPT_MIMEPOST: case CURLOPT_HTTPPOST:
		if (opt != CURLOPT_POST || lval) e->method = CR_CURL_M_POST;
		break;
	case CURLOPT_UPLOAD: case CURLOPT_PUT: if (lval) e->method = CR_CURL_M_PUT; break;
	default: break;
	}
	return rc;
}

void cr_curl_reset(struct cr_curllib *lib, CURL *h)
{
	lib->fns.easy_reset(h);
	struct cr_curl_easy *e = cr_curl_handles_get(h);
	if (e)
		easy_defaults(e);
}

CURL *cr_curl_duphandle(struct cr_curllib *lib, CURL *h)
{
	CURL *d = lib->fns.easy_duphandle(h);
	struct cr_curl_easy *src = cr_curl_handles_get(h);
	if (!d)
		return d;
	struct cr_curl_easy *e = easy_add(lib, d);
	if (e && src) {
		struct cr_curl_easy *next = e->next;
		*e = *src;
		e->h = d;
		e->next = next;
		e->multi = NULL; /* a duplicate is in no multi */
		/* A duplicate copies cookies and the like: same cleanliness. */
	} else if (e) {
		e->dirty = 1;
	}
	return d;
}

void cr_curl_cleanup(struct cr_curllib *lib, CURL *h)
{
	struct cr_curl_easy *e = h ? cr_curl_handles_get(h) : NULL;
	/* A handle attached to a multi is really cleaned up: libcurl detaches
	 * it (ending its transfer there); a reset would leave it attached and
	 * the multi driving a transfer on the next curl_easy_init's handle. */
	if (e && !e->dirty && !e->app_share && !e->multi) {
		struct freelist *fl = &freelists[lib->index];
		int kept = 0;
		lib->fns.easy_reset(h);
		easy_defaults(e);
		pthread_mutex_lock(&fl->mu);
		if (fl->n < FREE_HANDLES_MAX) {
			fl->h[fl->n++] = h;
			kept = 1;
		}
		pthread_mutex_unlock(&fl->mu);
		if (kept) {
			atomic_fetch_add(&cr_curl_ctr.handles_recycled, 1);
			return;
		}
	}
	if (h)
		easy_del(h);
	lib->fns.easy_cleanup(h);
}

/* ------------------------------------------------------------ multi handles */

/* The shim's curl_multi_* hooks pass through and tell us here. A multi and
 * its easy handles are used by one thread at a time (libcurl's rule); the
 * bucket lock orders the records against curl_multi_cleanup's scan. */
static void multi_set(CURL *h, CURLM *from, CURLM *to)
{
	unsigned b = easy_bucket(h);
	pthread_mutex_t *mu = easy_lock(b);
	pthread_mutex_lock(mu);
	for (struct cr_curl_easy *e = easy_tab[b]; e; e = e->next) {
		if (e->h != h)
			continue;
		if (from && e->multi != from)
			break;
		if (!e->multi && to)
			atomic_fetch_add(&easy_in_multi, 1);
		else if (e->multi && !to)
			atomic_fetch_sub(&easy_in_multi, 1);
		e->multi = to;
		break;
	}
	pthread_mutex_unlock(mu);
}

void cr_curl_multi_added(CURLM *m, CURL *h)
{
	multi_set(h, NULL, m);
}

void cr_curl_multi_removed(CURLM *m, CURL *h)
{
	multi_set(h, m, NULL);
}

void cr_curl_multi_gone(CURLM *m)
{
	if (atomic_load(&easy_in_multi) == 0)
		return;
	for (unsigned b = 0; b < EASY_BUCKETS; b++) {
		pthread_mutex_t *mu = easy_lock(b);
		pthread_mutex_lock(mu);
		for (struct cr_curl_easy *e = easy_tab[b]; e; e = e->next)
			if (e->multi == m) {
				e->multi = NULL;
				atomic_fetch_sub(&easy_in_multi, 1);
			}
		pthread_mutex_unlock(mu);
	}
}

/* At curl_global_cleanup (lib.c): the app is done with libcurl, and our
 * recycled handles are cleaned up as its own would have been. */
void cr_curl_handles_drain(struct cr_curllib *lib)
{
	struct freelist *fl = &freelists[lib->index];
	for (;;) {
		CURL *h = NULL;
		pthread_mutex_lock(&fl->mu);
		if (fl->n > 0)
			h = fl->h[--fl->n];
		pthread_mutex_unlock(&fl->mu);
		if (!h)
			return;
		easy_del(h);
		lib->fns.easy_cleanup(h);
	}
}

/* ------------------------------------------------------------------- URLs */

int cr_curl_parse_url(const char *url, char *scheme, size_t slen, char *host, size_t hlen, int *port)
{
	const char *p = url, *sep = strstr(url, "://");
	size_t n;
	if (sep) {
		n = (size_t)(sep - url);
		if (n == 0 || n >= slen)
			return -1;
		for (size_t i = 0; i < n; i++)
			scheme[i] = (char)((url[i] >= 'A' && url[i] <= 'Z') ? url[i] + 32 : url[i]);
		scheme[n] = '\0';
		p = sep + 3;
	} else {
		snprintf(scheme, slen, "http"); /* what curl guesses */
	}
	const char *end = p + strcspn(p, "/?#");
	const char *at = memchr(p, '@', (size_t)(end - p));
	if (at)
		p = at + 1;
	const char *hend, *portp = NULL;
	if (*p == '[') {
		const char *rb = memchr(p, ']', (size_t)(end - p));
		if (!rb)
			return -1;
		p++;
		hend = rb;
		if (rb + 1 < end && rb[1] == ':')
			portp = rb + 2;
	} else {
		const char *colon = memchr(p, ':', (size_t)(end - p));
		hend = colon ? colon : end;
		if (colon)
			portp = colon + 1;
	}
	n = (size_t)(hend - p);
	if (n == 0 || n >= hlen)
		return -1;
	for (size_t i = 0; i < n; i++)
		host[i] = (char)((p[i] >= 'A' && p[i] <= 'Z') ? p[i] + 32 : p[i]);
	host[n] = '\0';
	if (portp && portp < end) {
		long v = strtol(portp, NULL, 10);
		if (v <= 0 || v > 65535)
			return -1;
		*port = (int)v;
	} else if (!strcmp(scheme, "https") || !strcmp(scheme, "wss")) {
		*port = 443;
	} else if (!strcmp(scheme, "http") || !strcmp(scheme, "ws")) {
		*port = 80;
	} else {
		*port = 0;
	}
	return 0;
}
