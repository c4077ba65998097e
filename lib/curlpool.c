/* connroute: libcurl lanes; see curlpool.h for the design and invariants. */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "curlpool.h"
#include "bg.h"
#include "engine.h"
#include "key.h"
#include "lane.h"
#include "limit.h"
#include "log.h"
#include "metrics.h"
#include "route.h"
#include "warm.h"

#define MAX_LIBS 4
#define MAX_POOLS 128
#define MAX_SHARES_PER_POOL 512
#define FREE_HANDLES_MAX 64
#define EASY_BUCKETS 1024

enum method { M_GET, M_HEAD, M_POST, M_PUT, M_OTHER };

/* What we know of one easy handle: the app's own settings for everything
 * the lane may override during a perform, so they can be put back. */
struct cr_easy {
	CURL *h;
	struct cr_curllib *lib;
	struct cr_easy *next;

	CURLSH *app_share;
	long forbid_reuse;
	long app_timeout_ms;
	long app_connect_timeout_ms;
	long app_maxage_s;        /* libcurl default 118 */
	long app_maxlifetime_s;   /* 0 */
	long app_maxconnects;     /* libcurl default 5 */
	long app_sslversion;      /* 0 = default */
	curl_sockopt_callback app_sockopt;
	void *app_sockopt_data;
	int app_opensocket;       /* the app opens its own sockets: no warm ones */
	int app_closesocket;      /* ... or closes them itself: closes not counted */
	int warm_fd;              /* a warm socket handed to libcurl, -1 if none */
	curl_xferinfo_callback app_xferinfo;
	void *app_xferinfo_data;
	curl_progress_callback app_progress;
	void *app_progress_data;
	long app_noprogress;      /* libcurl default 1 */
	int app_bind;             /* INTERFACE or LOCALPORT set: curl binds itself */
	char *errbuf;
	/* CURLOPT_URL, parsed once when set (not on every perform) */
	int url_ok;
	int u_port;
	int u_family;             /* AF_INET/AF_INET6 for an address literal, else AF_UNSPEC */
	uint8_t u_addr[16];
	char u_scheme[16];
	char u_host[CR_HOST_MAX];
	struct curl_slist *resolve;
	struct curl_slist *headers;
	int method;
	char custom[16];          /* CUSTOMREQUEST, upper-cased; "" if none or too long */
	int custom_set;
	int read_cb;              /* READFUNCTION set: an upload stream we cannot replay */
	int seek_cb;              /* ... unless SEEKFUNCTION lets libcurl rewind it */

	/* Options that leave state surviving curl_easy_reset (cookies,
	 * credentials, HSTS, ...) or that we do not know: not recyclable. */
	int dirty;

	/* during a perform */
	const struct cr_lane *lane;
	long rht_ms;
	uint64_t rht_ref_ns;      /* when the request was seen sent */
	uint64_t perform_t0_ns;
	long rt_ms;               /* the request deadline in force (0 = none) */
	long ct_ms;
	int rht_fired;
	int rht_relaxed;          /* first byte seen: deadline back to rt_ms */
	int new_conns;            /* connections opened during this perform */
};

struct cr_share {
	CURLSH *sh;
	struct cr_pool *_Atomic pool; /* read without the owning pool's lock (tls_last_share) */
	int busy;
	struct cr_share *prev, *next; /* free list, most recently returned first */
};

struct cr_pool {
	int lane;                 /* stable lane id */
	uint64_t conn_hash;       /* the lane's connection settings when created */
	uint64_t flavor;
	atomic_int retired;       /* the lane went away or changed: drain, close */
	pthread_mutex_t mu;
	struct cr_share *free_head;
	int nshares;
};

struct cr_curllib {
	const void *id;
	char name[128];
	struct cr_curlfns fns;
	int has_maxlifetime;      /* libcurl >= 7.80 */
	int already_connected_ok; /* CURL_SOCKOPT_ALREADY_CONNECTED works (not 7.87-7.88) */
	pthread_mutex_t mu;       /* pools creation, free handles */
	struct cr_pool pools[MAX_POOLS];
	atomic_int npools;
	CURL *free_handles[FREE_HANDLES_MAX];
	int nfree;
};

static struct cr_curllib libs[MAX_LIBS];
static atomic_int nlibs;
static pthread_mutex_t libs_mu = PTHREAD_MUTEX_INITIALIZER;

/* Striped: setopt looks its handle up on every call, from every thread. */
#define EASY_STRIPES 64
static pthread_mutex_t easy_mu[EASY_STRIPES];
static pthread_once_t easy_once = PTHREAD_ONCE_INIT;
static struct cr_easy *easy_tab[EASY_BUCKETS];

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

static __thread struct cr_share *tls_last_share;

static void retire_pools(const struct cr_config *cfg);

static atomic_long st_shares, st_recycled, st_reused, st_pooled, st_unpooled, st_overflows;

/* ------------------------------------------------------------ libraries */

struct cr_curllib *cr_curl_lib_find(const void *id)
{
	int n = atomic_load_explicit(&nlibs, memory_order_acquire);
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
		if (n < MAX_LIBS) {
			l = &libs[n];
			memset(l, 0, sizeof(*l));
			l->id = id;
			l->fns = *fns;
			snprintf(l->name, sizeof(l->name), "%s", name ? name : "libcurl");
			pthread_mutex_init(&l->mu, NULL);
			if (fns->version_info) {
				curl_version_info_data *v = fns->version_info(CURLVERSION_NOW);
				l->has_maxlifetime = v && v->version_num >= 0x075000;
				l->already_connected_ok = v && (v->version_num < 0x075700 || v->version_num >= 0x080000);
			}
			atomic_store_explicit(&nlibs, n + 1, memory_order_release);
			cr_engine_on_publish = retire_pools;
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

/* --------------------------------------------------------- handle table */

static unsigned easy_bucket(const CURL *h)
{
	uintptr_t p = (uintptr_t)h;
	return (unsigned)((p >> 4) ^ (p >> 14)) & (EASY_BUCKETS - 1);
}

static void easy_defaults(struct cr_easy *e)
{
	CURL *h = e->h;
	struct cr_curllib *lib = e->lib;
	struct cr_easy *next = e->next;
	int dirty = e->dirty;
	memset(e, 0, sizeof(*e));
	e->h = h;
	e->lib = lib;
	e->next = next;
	e->dirty = dirty; /* state that survives a reset stays dirty */
	e->app_maxage_s = 118;
	e->app_maxconnects = 5;
	e->app_noprogress = 1;
}

/* Each thread remembers the last handle it looked up: an app sets several
 * options on one handle, then performs it. The entry is valid as long as no
 * handle state was freed since (easy_gen), which with recycling is rare. */
static atomic_ulong easy_gen;
static __thread CURL *tls_easy_h;
static __thread struct cr_easy *tls_easy_e;
static __thread unsigned long tls_easy_gen;

static struct cr_easy *easy_get(CURL *h)
{
	struct cr_easy *e;
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

static struct cr_easy *easy_add(struct cr_curllib *lib, CURL *h)
{
	struct cr_easy *e = calloc(1, sizeof(*e));
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

static void easy_del(CURL *h)
{
	struct cr_easy **pp, *e = NULL;
	unsigned b = easy_bucket(h);
	pthread_mutex_t *mu = easy_lock(b);
	pthread_mutex_lock(mu);
	for (pp = &easy_tab[b]; *pp; pp = &(*pp)->next) {
		if ((*pp)->h == h) {
			e = *pp;
			*pp = e->next;
			break;
		}
	}
	/* Before the free: every thread's remembered entry is now stale. */
	atomic_fetch_add_explicit(&easy_gen, 1, memory_order_acq_rel);
	pthread_mutex_unlock(mu);
	free(e);
}

struct cr_curllib *cr_curl_lib_of(CURL *h)
{
	struct cr_easy *e = easy_get(h);
	return e ? e->lib : NULL;
}

/* ------------------------------------------------------------- the calls */

CURL *cr_curl_init(struct cr_curllib *lib)
{
	CURL *h = NULL;
	/* The earliest sign of libcurl traffic: start prewarming now. */
	if (atomic_load_explicit(&cr_warm_active, memory_order_relaxed))
		cr_warm_kick();
	pthread_mutex_lock(&lib->mu);
	if (lib->nfree > 0)
		h = lib->free_handles[--lib->nfree];
	pthread_mutex_unlock(&lib->mu);
	if (h) {
		atomic_fetch_add(&st_reused, 1);
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

	struct cr_easy *e = easy_get(h);
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
	case CURLOPT_NOBODY: if (lval) e->method = M_HEAD; else if (e->method == M_HEAD) e->method = M_GET; break;
	case CURLOPT_HTTPGET: if (lval) e->method = M_GET; break;
	case CURLOPT_POST: case CURLOPT_POSTFIELDS: case CURLOPT_COPYPOSTFIELDS:
	case CURLOPT_MIMEPOST: case CURLOPT_HTTPPOST:
		if (opt != CURLOPT_POST || lval) e->method = M_POST;
		break;
	case CURLOPT_UPLOAD: case CURLOPT_PUT: if (lval) e->method = M_PUT; break;
	default: break;
	}
	return rc;
}

void cr_curl_reset(struct cr_curllib *lib, CURL *h)
{
	lib->fns.easy_reset(h);
	struct cr_easy *e = easy_get(h);
	if (e)
		easy_defaults(e);
}

CURL *cr_curl_duphandle(struct cr_curllib *lib, CURL *h)
{
	CURL *d = lib->fns.easy_duphandle(h);
	struct cr_easy *src = easy_get(h);
	if (!d)
		return d;
	struct cr_easy *e = easy_add(lib, d);
	if (e && src) {
		struct cr_easy *next = e->next;
		*e = *src;
		e->h = d;
		e->next = next;
		/* A duplicate copies cookies and the like: same cleanliness. */
	} else if (e) {
		e->dirty = 1;
	}
	return d;
}

void cr_curl_cleanup(struct cr_curllib *lib, CURL *h)
{
	struct cr_easy *e = h ? easy_get(h) : NULL;
	if (e && !e->dirty && !e->app_share) {
		int kept = 0;
		lib->fns.easy_reset(h);
		easy_defaults(e);
		pthread_mutex_lock(&lib->mu);
		if (lib->nfree < FREE_HANDLES_MAX) {
			lib->free_handles[lib->nfree++] = h;
			kept = 1;
		}
		pthread_mutex_unlock(&lib->mu);
		if (kept) {
			atomic_fetch_add(&st_recycled, 1);
			return;
		}
	}
	if (h)
		easy_del(h);
	lib->fns.easy_cleanup(h);
}

/* ------------------------------------------------------------------ pools */

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *c = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ c[i]) * 1099511628211ull;
	return h;
}

static uint64_t flavor_of(const struct cr_easy *e)
{
	uint64_t h = 14695981039346656037ull;
	int n = 0;
	for (const struct curl_slist *s = e->resolve; s && n < 256; s = s->next, n++)
		if (s->data)
			h = fnv(h, s->data, strlen(s->data) + 1);
	return n ? h : 0;
}

static int pool_is(const struct cr_pool *p, int lane, uint64_t ch, uint64_t flavor)
{
	return p->lane == lane && p->conn_hash == ch && p->flavor == flavor &&
	       !atomic_load_explicit(&p->retired, memory_order_relaxed);
}

static struct cr_pool *pool_get(struct cr_curllib *lib, const struct cr_lane *l, uint64_t flavor)
{
	int n = atomic_load_explicit(&lib->npools, memory_order_acquire);
	for (int i = 0; i < n; i++)
		if (pool_is(&lib->pools[i], l->id, l->conn_hash, flavor))
			return &lib->pools[i];
	struct cr_pool *p = NULL;
	pthread_mutex_lock(&lib->mu);
	n = atomic_load(&lib->npools);
	for (int i = 0; i < n && !p; i++)
		if (pool_is(&lib->pools[i], l->id, l->conn_hash, flavor))
			p = &lib->pools[i];
	if (!p && n < MAX_POOLS) {
		p = &lib->pools[n];
		memset(p, 0, sizeof(*p));
		p->lane = l->id;
		p->conn_hash = l->conn_hash;
		p->flavor = flavor;
		pthread_mutex_init(&p->mu, NULL);
		atomic_store_explicit(&lib->npools, n + 1, memory_order_release);
	}
	pthread_mutex_unlock(&lib->mu);
	return p;
}

static void free_unlink(struct cr_pool *p, struct cr_share *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		p->free_head = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->prev = s->next = NULL;
}

static struct cr_share *share_checkout(struct cr_curllib *lib, struct cr_pool *p)
{
	struct cr_share *s = NULL, *last = tls_last_share;
	pthread_mutex_lock(&p->mu);
	if (last && atomic_load_explicit(&last->pool, memory_order_relaxed) == p && !last->busy)
		s = last;
	else
		s = p->free_head;
	if (s) {
		free_unlink(p, s);
		s->busy = 1;
		cr_m_idle(p->lane, -1);
	}
	int may_create = !s && p->nshares < MAX_SHARES_PER_POOL;
	if (may_create)
		p->nshares++;
	pthread_mutex_unlock(&p->mu);
	if (s || !may_create)
		return s;

	s = calloc(1, sizeof(*s));
	CURLSH *sh = lib->fns.share_init();
	if (!s || !sh) {
		free(s);
		if (sh)
			lib->fns.share_cleanup(sh);
		pthread_mutex_lock(&p->mu);
		p->nshares--;
		pthread_mutex_unlock(&p->mu);
		return NULL;
	}
	/* No lock callbacks: a share is only ever used by the one thread
	 * that checked it out, and the pool mutex orders the hand-overs. */
	lib->fns.share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
	lib->fns.share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
	lib->fns.share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
	s->sh = sh;
	atomic_store_explicit(&s->pool, p, memory_order_relaxed);
	s->busy = 1;
	atomic_fetch_add(&st_shares, 1);
	return s;
}

/* The struct is never freed: another thread's tls_last_share may still
 * point at it (it is only compared, and a dead share has no pool). */
static void share_destroy(struct cr_curllib *lib, struct cr_share *s)
{
	lib->fns.share_cleanup(s->sh); /* closes its idle connections */
	s->sh = NULL;
	atomic_store_explicit(&s->pool, (struct cr_pool *)NULL, memory_order_relaxed);
}

static void share_checkin(struct cr_curllib *lib, struct cr_share *s)
{
	struct cr_pool *p = atomic_load_explicit(&s->pool, memory_order_relaxed);
	pthread_mutex_lock(&p->mu);
	int drain = atomic_load(&p->retired);
	if (drain) {
		p->nshares--;
	} else {
		s->busy = 0;
		s->prev = NULL;
		s->next = p->free_head;
		if (p->free_head)
			p->free_head->prev = s;
		p->free_head = s;
	}
	pthread_mutex_unlock(&p->mu);
	if (drain) {
		if (tls_last_share == s)
			tls_last_share = NULL;
		share_destroy(lib, s);
		return;
	}
	cr_m_idle(p->lane, 1);
	tls_last_share = s;
}

/* After a reload: pools whose lane is gone or whose connection settings
 * changed stop lending; their idle shares are closed now, busy ones when
 * their transfer ends. In-flight transfers are never interrupted. */
static void retire_pools(const struct cr_config *cfg)
{
	int n = atomic_load(&nlibs);
	for (int li = 0; li < n; li++) {
		struct cr_curllib *lib = &libs[li];
		int np = atomic_load_explicit(&lib->npools, memory_order_acquire);
		for (int i = 0; i < np; i++) {
			struct cr_pool *p = &lib->pools[i];
			int keep = 0;
			if (atomic_load(&p->retired))
				continue;
			for (int k = 0; k < cfg->nlanes && !keep; k++)
				keep = cfg->lanes[k].id == p->lane && cfg->lanes[k].conn_hash == p->conn_hash &&
				       cfg->lanes[k].max_idle_per_host > 0;
			if (keep)
				continue;
			pthread_mutex_lock(&p->mu);
			atomic_store(&p->retired, 1);
			struct cr_share *idle = p->free_head;
			p->free_head = NULL;
			int nidle = 0;
			/* Busy and pool-less before the lock is dropped: a thread
			 * whose last share this was will not take it again. */
			for (struct cr_share *s = idle; s; s = s->next) {
				s->busy = 1;
				atomic_store_explicit(&s->pool, (struct cr_pool *)NULL, memory_order_relaxed);
				nidle++;
			}
			p->nshares -= nidle;
			pthread_mutex_unlock(&p->mu);
			cr_m_idle(p->lane, -nidle);
			while (idle) {
				struct cr_share *next = idle->next;
				share_destroy(lib, idle);
				idle = next;
			}
		}
	}
}

void cr_curl_atfork_child(void)
{
	/* Abandon, never clean up: cleaning would close (and for TLS, shut
	 * down) connections the parent is still using. */
	int n = atomic_load(&nlibs);
	for (int i = 0; i < n; i++) {
		pthread_mutex_init(&libs[i].mu, NULL);
		atomic_store(&libs[i].npools, 0);
		libs[i].nfree = 0;
	}
	/* Another thread may have held a stripe at fork. */
	if (pthread_once(&easy_once, easy_init_locks) == 0)
		for (int i = 0; i < EASY_STRIPES; i++)
			pthread_mutex_init(&easy_mu[i], NULL);
	tls_last_share = NULL;
}

/* ---------------------------------------------------------------- perform */

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

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static long min_nonzero(long a, long b)
{
	if (a <= 0)
		return b > 0 ? b : 0;
	if (b <= 0)
		return a;
	return a < b ? a : b;
}

/* Warm pools for libcurl: a new connection to a destination the lane keeps
 * warm sockets for gets one (libcurl then skips its connect: the sockopt
 * callback answers CURL_SOCKOPT_ALREADY_CONNECTED); otherwise the socket is
 * made exactly as libcurl's default would. */
static curl_socket_t opensocket_cb(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
	struct cr_easy *e = clientp;
	struct cr_dest d;
	if (purpose == CURLSOCKTYPE_IPCXN && a->socktype == SOCK_STREAM &&
	    (a->protocol == 0 || a->protocol == IPPROTO_TCP) &&
	    cr_dest_from_sockaddr(&d, &a->addr, a->addrlen) == 0) {
		uint32_t slot;
		uint64_t ino;
		cr_warm_kick();
		int fd = cr_warm_take(e->lane, &d, &slot, &ino);
		if (fd >= 0) {
			struct cr_fdinfo info = {.slot = slot, .lane = e->lane->id,
						 .flags = CR_FDF_ROUTED | CR_FDF_AGAIN0, .ino = ino};
			if (cr_fdtab_put(fd, &info) != 0)
				cr_limit_release(slot);
			e->warm_fd = fd;
			cr_m_conn_opened(e->lane->id, 0, 1);
			return fd;
		}
		cr_warm_note(e->lane, &d, 0);
	}
	return socket(a->family, a->socktype, a->protocol);
}

/* Counts libcurl's connection closes for the lane's active gauge. libcurl
 * copies the callback and its data into each connection when it is made,
 * so the data is the lane id, never a pointer that could go stale. */
static int closesocket_cb(void *clientp, curl_socket_t fd)
{
	cr_m_conn_closed((int)(intptr_t)clientp - 1);
	return cr_route_close_fd(fd);
}

/* The lane's socket options, then (chained) the app's callback. */
static int sockopt_cb(void *clientp, curl_socket_t fd, curlsocktype purpose)
{
	struct cr_easy *e = clientp;
	int r = CURL_SOCKOPT_OK;
	if (purpose == CURLSOCKTYPE_IPCXN && fd == e->warm_fd) {
		/* Served from the warm pool: connected, with the lane's options
		 * already. The app's callback still sees its socket. */
		e->warm_fd = -1;
		e->new_conns++;
		if (e->app_sockopt && e->app_sockopt(e->app_sockopt_data, fd, purpose) == CURL_SOCKOPT_ERROR)
			return CURL_SOCKOPT_ERROR;
		/* libcurl 7.87-7.88 connect() anyway (curl issue 10626): the
		 * connect hook answers that one with 0 (CR_FDF_AGAIN0). */
		return e->lib->already_connected_ok ? CURL_SOCKOPT_ALREADY_CONNECTED : CURL_SOCKOPT_OK;
	}
	if (e->app_sockopt)
		r = e->app_sockopt(e->app_sockopt_data, fd, purpose);
	if (r != CURL_SOCKOPT_OK || purpose != CURLSOCKTYPE_IPCXN)
		return r;
	e->new_conns++;
	if (!e->lane->passthrough) {
		int dom = 0;
		socklen_t dl = sizeof(dom);
		if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &dl) == 0)
			cr_sockopts_apply(fd, e->lane, dom, !e->app_bind);
	}
	/* A new connection: the response-header deadline armed at the start
	 * assumed a reused one; give the connect its own time first. */
	if (e->rht_ms > 0 && !e->rht_ref_ns && !e->rht_relaxed) {
		long d = (long)((now_ns() - e->perform_t0_ns) / 1000000ull) +
			 (e->ct_ms > 0 ? e->ct_ms : 0) + e->rht_ms;
		e->lib->fns.easy_setopt(e->h, CURLOPT_TIMEOUT_MS, min_nonzero(e->rt_ms, d));
	}
	return r;
}

/* response_header_timeout: from the moment the request is sent (connection
 * up, any upload done) until the first response byte.
 *
 * libcurl's easy interface offers no per-phase timer, so the deadline is
 * carried by CURLOPT_TIMEOUT_MS, which libcurl re-reads on every check: it
 * starts at connect + rht (so a timer is armed that early), is tightened to
 * "sent + rht" when this callback sees the request go out, and is relaxed to
 * the request timeout once the first byte arrives. Between libcurl's wakeups
 * (at most a second apart) the callback aborts on its own. */
static int xferinfo_cb(void *clientp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	struct cr_easy *e = clientp;
	if (e->rht_ms > 0 && !e->rht_fired && !e->rht_relaxed) {
		const struct cr_curlfns *f = &e->lib->fns;
		curl_off_t pre = 0, start = 0;
		f->easy_getinfo(e->h, CURLINFO_PRETRANSFER_TIME_T, &pre);
		f->easy_getinfo(e->h, CURLINFO_STARTTRANSFER_TIME_T, &start);
		uint64_t t = now_ns();
		if (start > 0) {
			e->rht_relaxed = 1;
			f->easy_setopt(e->h, CURLOPT_TIMEOUT_MS, e->rt_ms);
		} else if (pre > 0 && (ultotal <= 0 || ulnow >= ultotal)) {
			if (!e->rht_ref_ns) {
				e->rht_ref_ns = t;
				long d = (long)((t - e->perform_t0_ns) / 1000000ull) + e->rht_ms;
				f->easy_setopt(e->h, CURLOPT_TIMEOUT_MS, min_nonzero(e->rt_ms, d));
			} else if (t - e->rht_ref_ns >= (uint64_t)e->rht_ms * 1000000ull) {
				e->rht_fired = 1;
				return 1;
			}
		}
	}
	if (!e->app_noprogress) {
		if (e->app_xferinfo)
			return e->app_xferinfo(e->app_xferinfo_data, dltotal, dlnow, ultotal, ulnow);
		if (e->app_progress)
			return e->app_progress(e->app_xferinfo_data, (double)dltotal, (double)dlnow,
					       (double)ultotal, (double)ulnow);
	}
	return 0;
}

static void errbuf_set(struct cr_easy *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void errbuf_set(struct cr_easy *e, const char *fmt, ...)
{
	va_list ap;
	if (!e->errbuf)
		return;
	va_start(ap, fmt);
	vsnprintf(e->errbuf, CURL_ERROR_SIZE, fmt, ap);
	va_end(ap);
}

/* ---------------------------------------------------------------- retries */

/* Is the request idempotent? By method (GET, HEAD, OPTIONS, PUT, DELETE, and
 * no custom method overriding it), by an Idempotency-Key header, or by the
 * key's +idempotent flag. */
static int is_idempotent(const struct cr_easy *e, unsigned keyflags)
{
	if (keyflags & CR_KEYF_IDEMPOTENT)
		return 1;
	for (const struct curl_slist *l = e->headers; l; l = l->next) {
		if (l->data && (strncasecmp(l->data, "Idempotency-Key:", 16) == 0 ||
				strncasecmp(l->data, "X-Idempotent-Key:", 17) == 0))
			return 1;
	}
	if (e->custom_set) {
		static const char *const ok[] = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", NULL};
		for (int i = 0; ok[i]; i++)
			if (strcmp(e->custom, ok[i]) == 0)
				return 1;
		return 0;
	}
	return e->method == M_GET || e->method == M_HEAD || e->method == M_PUT;
}

static int retryable(CURLcode rc)
{
	switch (rc) {
	case CURLE_COULDNT_CONNECT: case CURLE_OPERATION_TIMEDOUT: case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR: case CURLE_GOT_NOTHING: case CURLE_SSL_CONNECT_ERROR:
		return 1;
	default:
		return 0;
	}
}

/* Per-lane retry budget over a sliding 10 s window (two 5 s buckets):
 * retries may be at most ratio x requests, but always at least
 * retry_budget_min per second. */
#define BUDGET_BUCKET_NS 5000000000ull
static struct budget {
	pthread_mutex_t mu;
	uint64_t bucket_start;
	long req[2], retry[2];
} budgets[CR_MAX_LANE_IDS];
static pthread_once_t budgets_once = PTHREAD_ONCE_INIT;

static void budgets_init(void)
{
	for (int i = 0; i < CR_MAX_LANE_IDS; i++)
		pthread_mutex_init(&budgets[i].mu, NULL);
}

static void budget_roll(struct budget *b, uint64_t t)
{
	if (t - b->bucket_start < BUDGET_BUCKET_NS)
		return;
	if (t - b->bucket_start < 2 * BUDGET_BUCKET_NS) {
		b->req[1] = b->req[0];
		b->retry[1] = b->retry[0];
	} else {
		b->req[1] = b->retry[1] = 0;
	}
	b->req[0] = b->retry[0] = 0;
	b->bucket_start = t;
}

static void budget_request(int lane, uint64_t t)
{
	struct budget *b = &budgets[lane % CR_MAX_LANE_IDS];
	pthread_once(&budgets_once, budgets_init);
	pthread_mutex_lock(&b->mu);
	budget_roll(b, t);
	b->req[0]++;
	pthread_mutex_unlock(&b->mu);
}

static int budget_take(const struct cr_lane *l, uint64_t t)
{
	struct budget *b = &budgets[l->id % CR_MAX_LANE_IDS];
	int ok;
	pthread_once(&budgets_once, budgets_init);
	pthread_mutex_lock(&b->mu);
	budget_roll(b, t);
	double reqs = (double)(b->req[0] + b->req[1]);
	double allowed = l->retry_budget_ratio * reqs;
	double floor = (double)l->retry_budget_min_per_s * 10.0;
	if (allowed < floor)
		allowed = floor;
	ok = (double)(b->retry[0] + b->retry[1]) < allowed;
	if (ok)
		b->retry[0]++;
	pthread_mutex_unlock(&b->mu);
	return ok;
}

/* Full jitter: uniform in [0, min(cap, base * 2^attempt)). */
static long backoff_ms(int attempt)
{
	static __thread unsigned seed;
	long cap = 25L << (attempt < 4 ? attempt : 4);
	if (cap > 250)
		cap = 250;
	if (!seed)
		seed = (unsigned)now_ns() ^ (unsigned)(uintptr_t)&seed;
	return (long)(rand_r(&seed) % (unsigned)cap);
}

/* No response byte reached the app's callbacks, and the request body (if
 * any) can be sent again: in-memory fields always, a read callback's stream
 * only if nothing was read from it or libcurl can rewind it. */
static int nothing_reached_app(const struct cr_curlfns *f, const struct cr_easy *e)
{
	curl_off_t down = 0, up = 0;
	long hdr = 0;
	f->easy_getinfo(e->h, CURLINFO_SIZE_DOWNLOAD_T, &down);
	f->easy_getinfo(e->h, CURLINFO_SIZE_UPLOAD_T, &up);
	f->easy_getinfo(e->h, CURLINFO_HEADER_SIZE, &hdr);
	return down == 0 && hdr == 0 && (up == 0 || !e->read_cb || e->seek_cb);
}

static atomic_long st_retries;

/* One perform with deadline RT_MS (0 = none). A response_header_timeout
 * expiry, whether our callback aborted or libcurl's timer fired first,
 * reads as the timeout it is and is flagged for the message. */
static CURLcode perform_once(const struct cr_curlfns *f, struct cr_easy *e, long rt_ms)
{
	e->rht_ref_ns = 0;
	e->rht_fired = 0;
	e->rht_relaxed = 0;
	e->rt_ms = rt_ms;
	e->perform_t0_ns = now_ns();
	/* libcurl gives a new connection's connect whatever is left of the
	 * total timeout when it starts (the happy-eyeballs timer is set before
	 * the socket exists), so the first deadline must leave the connect its
	 * own time: connect + rht; it is tightened once the request is sent. */
	if (e->rht_ms > 0)
		f->easy_setopt(e->h, CURLOPT_TIMEOUT_MS,
			       min_nonzero(rt_ms, e->rht_ms + (e->ct_ms > 0 ? e->ct_ms : 0)));
	CURLcode rc = f->easy_perform(e->h);
	if (e->rht_fired && rc == CURLE_ABORTED_BY_CALLBACK)
		rc = CURLE_OPERATION_TIMEDOUT;
	if (e->rht_ms > 0 && rc == CURLE_OPERATION_TIMEDOUT && !e->rht_fired) {
		/* A header timeout only if the request went out (else it was the
		 * connect that timed out) and no byte came back. */
		curl_off_t start = 0, pre = 0;
		f->easy_getinfo(e->h, CURLINFO_STARTTRANSFER_TIME_T, &start);
		f->easy_getinfo(e->h, CURLINFO_PRETRANSFER_TIME_T, &pre);
		long spent = (long)((now_ns() - e->perform_t0_ns) / 1000000ull);
		if (start == 0 && pre > 0 && (rt_ms <= 0 || spent < rt_ms))
			e->rht_fired = 1;
	}
	return rc;
}

static CURLcode perform_routed(struct cr_curllib *lib, struct cr_easy *e, const struct cr_config *cfg,
			       const char *scheme, const char *host, int port);

CURLcode cr_curl_perform(struct cr_curllib *lib, CURL *h)
{
	const struct cr_curlfns *f = &lib->fns;
	struct cr_easy *e = easy_get(h);
	if (!e || !e->url_ok) {
		atomic_fetch_add(&st_unpooled, 1);
		if (e)
			e->dirty = 1; /* its private cache may now hold a connection */
		return f->easy_perform(h);
	}
	/* Held for the whole perform: a reload must not free the lane under a
	 * transfer (nor cancel its dial). */
	const struct cr_config *cfg = cr_engine_acquire();
	if (!cfg)
		return f->easy_perform(h);
	CURLcode rc = perform_routed(lib, e, cfg, e->u_scheme, e->u_host, e->u_port);
	cr_engine_release(cfg);
	return rc;
}

static CURLcode perform_routed(struct cr_curllib *lib, struct cr_easy *e, const struct cr_config *cfg,
			       const char *scheme, const char *host, int port)
{
	const struct cr_curlfns *f = &lib->fns;
	CURL *h = e->h;

	/* Which lane: the thread's key and the destination (a literal address
	 * also matches CIDR rules). */
	struct cr_dest d = {.family = e->u_family, .port = (uint16_t)port, .host = host};
	memcpy(d.addr, e->u_addr, 16);
	int unmatched = 0;
	const char *key = cr_key_resolve(cfg);
	const struct cr_lane *lane = cr_lane_select(cfg, key, &d, &unmatched);
	e->lane = lane;
	cr_bg_kick();
	if (atomic_load_explicit(&cr_warm_active, memory_order_relaxed))
		cr_warm_kick();
	if (unmatched && strcmp(key, "default") != 0)
		cr_m_unmatched();
	uint64_t t_start = now_ns();

	/* Limit: in-flight transfers per (lane, scheme://host:port). */
	uint32_t slot = CR_SLOT_NONE;
	uint64_t waited_ns = 0;
	if (lane->max_conns_per_host > 0) {
		struct cr_dest ld = {.family = AF_UNSPEC, .port = (uint16_t)port};
		uint64_t a = fnv(14695981039346656037ull, scheme, strlen(scheme));
		a = fnv(a, host, strlen(host));
		uint64_t b = fnv(a ^ 0x9e3779b97f4a7c15ull, host, strlen(host));
		memcpy(ld.addr, &a, 8);
		memcpy(ld.addr + 8, &b, 8);
		slot = cr_limit_slot(lane->id, &ld);
		cr_m_queued(lane->id, 1);
		int lrc = cr_limit_acquire(slot, lane->max_conns_per_host, lane->queue_timeout_ms, &waited_ns);
		cr_m_queued(lane->id, -1);
		if (waited_ns)
			cr_m_queue_wait(lane->id, waited_ns);
		if (lrc != 0) {
			atomic_fetch_add(&st_overflows, 1);
			cr_m_overflow(lane->id);
			cr_m_request(lane->id, key, now_ns() - t_start, CR_OUT_OVERFLOW);
			e->lane = NULL;
			errbuf_set(e,
				   "connroute: lane '%s': %ld transfers to %s://%s:%d already in flight "
				   "(max_conns_per_host = %ld); waited %ld ms (queue_timeout)",
				   lane->name, lane->max_conns_per_host, scheme, host, port,
				   lane->max_conns_per_host, lane->queue_timeout_ms);
			return CURLE_OPERATION_TIMEDOUT;
		}
	}
	long waited_ms = (long)(waited_ns / 1000000ull);

	/* The lane's settings for this perform; the app's come back after. */
	long ct = min_nonzero(e->app_connect_timeout_ms, lane->connect_timeout_ms);
	long rt = lane->request_timeout_ms > 0 ? lane->request_timeout_ms - waited_ms : 0;
	if (lane->request_timeout_ms > 0 && rt < 1)
		rt = 1;
	rt = min_nonzero(e->app_timeout_ms, rt);
	long maxage = e->app_maxage_s;
	if (lane->idle_timeout_ms > 0) {
		long s = lane->idle_timeout_ms / 1000 > 0 ? lane->idle_timeout_ms / 1000 : 1;
		if (s < maxage)
			maxage = s;
	}
	long life = e->app_maxlifetime_s;
	if (lane->max_lifetime_ms > 0) {
		long s = lane->max_lifetime_ms / 1000 > 0 ? lane->max_lifetime_ms / 1000 : 1;
		life = life > 0 && life < s ? life : s;
	}
	long sslv = e->app_sslversion;
	if (lane->min_tls > 0) {
		long want = lane->min_tls == 10 ? CURL_SSLVERSION_TLSv1_0
			    : lane->min_tls == 11 ? CURL_SSLVERSION_TLSv1_1
			    : lane->min_tls == 12 ? CURL_SSLVERSION_TLSv1_2
						  : CURL_SSLVERSION_TLSv1_3;
		long app_min = sslv & 0xffff, app_max = sslv & ~0xffffL;
		if (app_min < want || app_min == CURL_SSLVERSION_DEFAULT)
			sslv = app_max | want;
	}
	int pooled = !e->app_share && !e->forbid_reuse && lane->max_idle_per_host > 0;
	/* Always: new connections are counted there, and get the lane's options. */
	int opts = 1;
	e->rht_ms = lane->response_header_timeout_ms;
	e->ct_ms = ct;

	int rt_set = rt != e->app_timeout_ms || e->rht_ms > 0;
	if (ct != e->app_connect_timeout_ms)
		f->easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, ct);
	if (rt_set)
		f->easy_setopt(h, CURLOPT_TIMEOUT_MS, rt);
	if (maxage != e->app_maxage_s)
		f->easy_setopt(h, CURLOPT_MAXAGE_CONN, maxage);
	if (life != e->app_maxlifetime_s && lib->has_maxlifetime)
		f->easy_setopt(h, CURLOPT_MAXLIFETIME_CONN, life);
	if (sslv != e->app_sslversion)
		f->easy_setopt(h, CURLOPT_SSLVERSION, sslv);
	if (opts) {
		f->easy_setopt(h, CURLOPT_SOCKOPTFUNCTION, sockopt_cb);
		f->easy_setopt(h, CURLOPT_SOCKOPTDATA, e);
	}
	if (!e->app_closesocket) {
		f->easy_setopt(h, CURLOPT_CLOSESOCKETFUNCTION, closesocket_cb);
		f->easy_setopt(h, CURLOPT_CLOSESOCKETDATA, (void *)(intptr_t)(lane->id + 1));
	}
	int warm = cr_lane_warm(lane) && !e->app_opensocket;
	e->warm_fd = -1;
	if (warm) {
		f->easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, opensocket_cb);
		f->easy_setopt(h, CURLOPT_OPENSOCKETDATA, e);
	}
	if (e->rht_ms > 0) {
		f->easy_setopt(h, CURLOPT_XFERINFOFUNCTION, xferinfo_cb);
		f->easy_setopt(h, CURLOPT_XFERINFODATA, e);
		f->easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	}

	struct cr_share *s = NULL;
	if (pooled) {
		struct cr_pool *pool = pool_get(lib, lane, flavor_of(e));
		s = pool ? share_checkout(lib, pool) : NULL;
		if (s) {
			if (lane->max_idle_per_host != e->app_maxconnects)
				f->easy_setopt(h, CURLOPT_MAXCONNECTS, lane->max_idle_per_host);
			f->easy_setopt(h, CURLOPT_SHARE, s->sh);
		}
	}
	if (s)
		atomic_fetch_add(&st_pooled, 1);
	else {
		atomic_fetch_add(&st_unpooled, 1);
		e->dirty = 1; /* the handle's own cache may now hold a connection */
	}

	uint64_t t0 = now_ns();
	unsigned keyflags = 0;
	cr_key_flags(key, &keyflags);
	budget_request(lane->id, t0);
	cr_m_inflight(lane->id, 1);
	e->new_conns = 0;
	CURLcode rc = perform_once(f, e, rt);
	/* Retries: only idempotent requests, only when nothing (no header, no
	 * body byte, no upload byte) reached the app or the server's reading of
	 * a body, within the lane's budget and the request's deadline. libcurl
	 * itself already replays once on a dead reused connection. */
	for (int attempt = 0; attempt < lane->retries && rc != CURLE_OK && retryable(rc) &&
			      is_idempotent(e, keyflags) && nothing_reached_app(f, e);
	     attempt++) {
		long pause = backoff_ms(attempt);
		uint64_t spent_ms = (now_ns() - t0) / 1000000ull + (uint64_t)waited_ms;
		if (rt > 0 && (long)spent_ms + pause >= rt)
			break;
		if (!budget_take(lane, now_ns()))
			break;
		if (pause > 0) {
			struct timespec ts = {.tv_sec = pause / 1000, .tv_nsec = (pause % 1000) * 1000000L};
			nanosleep(&ts, NULL);
		}
		long left = 0;
		if (rt > 0) {
			left = rt - (long)((now_ns() - t0) / 1000000ull) - waited_ms;
			if (left < 1)
				left = 1;
			f->easy_setopt(h, CURLOPT_TIMEOUT_MS, left);
			rt_set = 1;
		}
		atomic_fetch_add(&st_retries, 1);
		cr_m_retry(lane->id, key, rc == CURLE_COULDNT_CONNECT ? "connect"
				       : rc == CURLE_OPERATION_TIMEDOUT ? "timeout" : "transport");
		cr_logmsg(CR_LL_DEBUG, "lane %s: retry %d after %s", lane->name, attempt + 1,
			  rc == CURLE_COULDNT_CONNECT ? "connect failure" : "transport error");
		rc = perform_once(f, e, rt > 0 ? left : 0);
	}

	if (s) {
		f->easy_setopt(h, CURLOPT_SHARE, (CURLSH *)NULL);
		if (lane->max_idle_per_host != e->app_maxconnects)
			f->easy_setopt(h, CURLOPT_MAXCONNECTS, e->app_maxconnects);
		share_checkin(lib, s);
	}
	if (e->rht_ms > 0) {
		/* Setting XFERINFOFUNCTION (even to NULL) decides whether the old
		 * PROGRESSFUNCTION is called: put back whichever the app had. */
		f->easy_setopt(h, CURLOPT_XFERINFOFUNCTION, e->app_xferinfo);
		if (e->app_progress && !e->app_xferinfo)
			f->easy_setopt(h, CURLOPT_PROGRESSFUNCTION, e->app_progress);
		f->easy_setopt(h, CURLOPT_XFERINFODATA, e->app_xferinfo_data);
		f->easy_setopt(h, CURLOPT_NOPROGRESS, e->app_noprogress);
		if (e->rht_fired && rc == CURLE_OPERATION_TIMEDOUT)
			errbuf_set(e, "connroute: lane '%s': no response headers within %ld ms "
				      "(response_header_timeout)", lane->name, e->rht_ms);
	}
	if (opts) {
		f->easy_setopt(h, CURLOPT_SOCKOPTFUNCTION, e->app_sockopt);
		f->easy_setopt(h, CURLOPT_SOCKOPTDATA, e->app_sockopt_data);
	}
	if (!e->app_closesocket) {
		f->easy_setopt(h, CURLOPT_CLOSESOCKETFUNCTION, (curl_closesocket_callback)NULL);
		f->easy_setopt(h, CURLOPT_CLOSESOCKETDATA, (void *)NULL);
	}
	if (warm) {
		f->easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, (curl_opensocket_callback)NULL);
		f->easy_setopt(h, CURLOPT_OPENSOCKETDATA, (void *)NULL);
		if (e->warm_fd >= 0) {
			/* Taken but never used by libcurl (it failed before the
			 * sockopt stage): it closed the socket itself. */
			e->warm_fd = -1;
		}
	}
	if (sslv != e->app_sslversion)
		f->easy_setopt(h, CURLOPT_SSLVERSION, e->app_sslversion);
	if (life != e->app_maxlifetime_s && lib->has_maxlifetime)
		f->easy_setopt(h, CURLOPT_MAXLIFETIME_CONN, e->app_maxlifetime_s);
	if (maxage != e->app_maxage_s)
		f->easy_setopt(h, CURLOPT_MAXAGE_CONN, e->app_maxage_s);
	if (rt_set)
		f->easy_setopt(h, CURLOPT_TIMEOUT_MS, e->app_timeout_ms);
	if (ct != e->app_connect_timeout_ms)
		f->easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, e->app_connect_timeout_ms);
	cr_m_inflight(lane->id, -1);
	if (e->new_conns > 0) {
		curl_off_t cns = 0;
		f->easy_getinfo(h, CURLINFO_CONNECT_TIME_T, &cns);
		cr_m_conn_opened(lane->id, (uint64_t)cns * 1000ull, 1);
	}
	cr_m_request(lane->id, key, now_ns() - t_start,
		     rc == CURLE_OK ? CR_OUT_OK : rc == CURLE_OPERATION_TIMEDOUT ? CR_OUT_TIMEOUT : CR_OUT_ERROR);
	e->lane = NULL;
	if (slot != CR_SLOT_NONE)
		cr_limit_release(slot);
	return rc;
}

void cr_curl_stats(struct cr_curl_stats *out)
{
	out->shares_created = atomic_load(&st_shares);
	out->handles_recycled = atomic_load(&st_recycled);
	out->handles_reused = atomic_load(&st_reused);
	out->performs_pooled = atomic_load(&st_pooled);
	out->performs_unpooled = atomic_load(&st_unpooled);
	out->limit_overflows = atomic_load(&st_overflows);
	out->retries = atomic_load(&st_retries);
}

/* ---------------------------------------------------------------- prewarm */

/* prewarm_url (the seed's PreWarmTransports): fill a lane's pool with whole
 * connections, TLS included, by sending the lane's prewarm_method to it, one
 * share per connection, all held at once so each gets its own. Runs on the
 * warm-pool thread; the requests carry the lane's options and timeouts, and
 * only libcurl's defaults otherwise (a connection is reused by an app handle
 * whose TLS settings match: the system CA store, typically). */
static size_t prewarm_sink(char *p, size_t sz, size_t n, void *ud)
{
	(void)p;
	(void)ud;
	return sz * n;
}

void cr_curl_prewarm(const struct cr_config *cfg)
{
	int nl = atomic_load(&nlibs);
	for (int li = 0; li < nl; li++) {
		struct cr_curllib *lib = &libs[li];
		const struct cr_curlfns *f = &lib->fns;
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
			struct cr_pool *p = pool_get(lib, l, 0);
			struct cr_share *held[64];
			int nheld = 0, ok = 0;
			for (int i = 0; p && i < want; i++) {
				struct cr_share *s = share_checkout(lib, p);
				if (!s)
					break;
				held[nheld++] = s;
				struct cr_easy e;
				memset(&e, 0, sizeof(e));
				e.lib = lib;
				e.lane = l;
				e.warm_fd = -1;
				e.ct_ms = l->connect_timeout_ms > 0 ? l->connect_timeout_ms : 5000;
				CURL *h = f->easy_init();
				if (!h)
					break;
				e.h = h;
				f->easy_setopt(h, CURLOPT_URL, l->prewarm_url);
				if (!strcmp(l->prewarm_method, "HEAD"))
					f->easy_setopt(h, CURLOPT_NOBODY, 1L);
				else if (strcmp(l->prewarm_method, "GET"))
					f->easy_setopt(h, CURLOPT_CUSTOMREQUEST, l->prewarm_method);
				f->easy_setopt(h, CURLOPT_WRITEFUNCTION, prewarm_sink);
				f->easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
				f->easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, e.ct_ms);
				f->easy_setopt(h, CURLOPT_TIMEOUT_MS, e.ct_ms * 2);
				f->easy_setopt(h, CURLOPT_SOCKOPTFUNCTION, sockopt_cb);
				f->easy_setopt(h, CURLOPT_SOCKOPTDATA, &e);
				f->easy_setopt(h, CURLOPT_CLOSESOCKETFUNCTION, closesocket_cb);
				f->easy_setopt(h, CURLOPT_CLOSESOCKETDATA, (void *)(intptr_t)(l->id + 1));
				f->easy_setopt(h, CURLOPT_MAXCONNECTS, l->max_idle_per_host);
				f->easy_setopt(h, CURLOPT_SHARE, s->sh);
				cr_in_shim = 1; /* libcurl's connect is the lane's business here */
				CURLcode rc = f->easy_perform(h);
				cr_in_shim = 0;
				f->easy_setopt(h, CURLOPT_SHARE, (CURLSH *)NULL);
				f->easy_cleanup(h); /* the connection stays in the share */
				if (rc == CURLE_OK)
					ok++;
				else
					cr_logmsg(CR_LL_WARN, "lane %s: prewarm %s %s: %s", l->name, l->prewarm_method,
						  l->prewarm_url, "request failed (pool left cold)");
			}
			for (int i = 0; i < nheld; i++)
				share_checkin(lib, held[i]);
			if (ok)
				cr_logmsg(CR_LL_INFO, "lane %s: prewarmed %d connection(s) to %s", l->name, ok,
					  l->prewarm_url);
		}
	}
}
