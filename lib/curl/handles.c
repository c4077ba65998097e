/* connroute: libcurl lanes — the easy-handle table: what the app set on
 * each handle it made (its own values of what the lane overrides, the
 * options set in the handle's life), the pin, the calls that observe a
 * handle, and recycling of clean handles on cleanup (docs/INTERNALS.md,
 * "libcurl lanes": handle recycling, a share stays on its handle). */
#include <arpa/inet.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "base.h"
#include "curl_int.h"
#include "warm.h"

#define FREE_HANDLES_MAX 64
#define EASY_BUCKETS     1024
/* A recycled handle holding no share is cleaned up after this long unused
 * (one holding a share: after its pool's idle_timeout). */
#define HANDLE_IDLE_NS   (60ull * 1000000000ull)

/* ------------------------------------------------------- the option table */

/* Every option we know, by slot: the option that puts it back, its kind,
 * what it is, and libcurl's default where that is the same in every
 * libcurl. Flags:
 *   S  safe: a handle that only saw safe options may be recycled;
 *   L  put back lazily to DFLT at the next life's first observation if that
 *      life did not set it again (a pointer option's DFLT is NULL unless
 *      handled in slot_default);
 *   M  a method option: put back at cleanup (HTTPGET 1 restores them all);
 *   O  overridden by lanes: its value is tracked in `held`, never undone;
 *   X  setopt records more than the bit (the switch in cr_curl_setopt);
 *   P  pure: setting the value libcurl holds already changes nothing, so
 *      setopt does not call libcurl then (a recycled handle's new life sets
 *      the same callbacks and CA file again: nothing to do). Strings are
 *      compared by content (a copy of at most CR_CURL_STR_MAX bytes).
 * A recyclable life that set an S option without L, M or O ends with a
 * real curl_easy_reset. Aliases (options writing the same field) share a
 * slot. */
enum { K_LONG, K_PTR, K_FUNC, K_OFFT };
enum { F_S = 1, F_L = 2, F_M = 4, F_O = 8, F_X = 16, F_P = 32, F_STR = 64 };

#define SLOTS(X)                                                                                  \
	X(URL, CURLOPT_URL, K_PTR, F_S | F_L | F_X, 0)                                            \
	X(WRITEFUNCTION, CURLOPT_WRITEFUNCTION, K_FUNC, F_S | F_L | F_P, 0)                       \
	X(WRITEDATA, CURLOPT_WRITEDATA, K_PTR, F_S | F_L | F_P, 0)                                \
	X(READFUNCTION, CURLOPT_READFUNCTION, K_FUNC, F_S | F_L | F_X | F_P, 0)                   \
	X(READDATA, CURLOPT_READDATA, K_PTR, F_S | F_L | F_P, 0)                                  \
	X(HEADERFUNCTION, CURLOPT_HEADERFUNCTION, K_FUNC, F_S | F_L | F_P, 0)                     \
	X(HEADERDATA, CURLOPT_HEADERDATA, K_PTR, F_S | F_L | F_P, 0)                              \
	X(HTTPHEADER, CURLOPT_HTTPHEADER, K_PTR, F_S | F_L | F_X, 0)                              \
	X(CUSTOMREQUEST, CURLOPT_CUSTOMREQUEST, K_PTR, F_S | F_L | F_X, 0)                        \
	X(NOSIGNAL, CURLOPT_NOSIGNAL, K_LONG, F_S | F_L | F_P, 0)                                 \
	X(FOLLOWLOCATION, CURLOPT_FOLLOWLOCATION, K_LONG, F_S | F_L | F_P, 0)                     \
	X(MAXREDIRS, CURLOPT_MAXREDIRS, K_LONG, F_S | F_P, 0)                                     \
	X(VERBOSE, CURLOPT_VERBOSE, K_LONG, F_S | F_L | F_P, 0)                                   \
	X(CAINFO, CURLOPT_CAINFO, K_PTR, F_S | F_L | F_P | F_STR, 0)                              \
	X(CAPATH, CURLOPT_CAPATH, K_PTR, F_S | F_L | F_P | F_STR, 0)                              \
	X(SSL_VERIFYPEER, CURLOPT_SSL_VERIFYPEER, K_LONG, F_S | F_L | F_P, 1)                     \
	X(SSL_VERIFYHOST, CURLOPT_SSL_VERIFYHOST, K_LONG, F_S | F_L | F_P, 2)                     \
	X(USERAGENT, CURLOPT_USERAGENT, K_PTR, F_S | F_L | F_P | F_STR, 0)                        \
	X(ACCEPT_ENCODING, CURLOPT_ACCEPT_ENCODING, K_PTR, F_S | F_L, 0)                          \
	X(HTTP_VERSION, CURLOPT_HTTP_VERSION, K_LONG, F_S, 0)                                     \
	X(ERRORBUFFER, CURLOPT_ERRORBUFFER, K_PTR, F_S | F_L | F_X | F_P, 0)                      \
	X(FAILONERROR, CURLOPT_FAILONERROR, K_LONG, F_S | F_L | F_P, 0)                           \
	X(PRIVATE, CURLOPT_PRIVATE, K_PTR, F_S | F_L | F_P, 0)                                    \
	X(TCP_NODELAY, CURLOPT_TCP_NODELAY, K_LONG, F_S | F_L | F_P, 1)                           \
	X(TCP_KEEPALIVE, CURLOPT_TCP_KEEPALIVE, K_LONG, F_S | F_L | F_P, 0)                       \
	X(TCP_KEEPIDLE, CURLOPT_TCP_KEEPIDLE, K_LONG, F_S | F_L | F_P, 60)                        \
	X(TCP_KEEPINTVL, CURLOPT_TCP_KEEPINTVL, K_LONG, F_S | F_L | F_P, 60)                      \
	X(BUFFERSIZE, CURLOPT_BUFFERSIZE, K_LONG, F_S, 0)                                         \
	X(LOW_SPEED_LIMIT, CURLOPT_LOW_SPEED_LIMIT, K_LONG, F_S | F_L | F_P, 0)                   \
	X(LOW_SPEED_TIME, CURLOPT_LOW_SPEED_TIME, K_LONG, F_S | F_L | F_P, 0)                     \
	X(FORBID_REUSE, CURLOPT_FORBID_REUSE, K_LONG, F_S | F_L | F_X, 0)                         \
	X(FRESH_CONNECT, CURLOPT_FRESH_CONNECT, K_LONG, F_S | F_L | F_P, 0)                       \
	X(DNS_CACHE_TIMEOUT, CURLOPT_DNS_CACHE_TIMEOUT, K_LONG, F_S | F_L | F_P, 60)              \
	X(IPRESOLVE, CURLOPT_IPRESOLVE, K_LONG, F_S | F_L | F_P, 0)                               \
	X(REFERER, CURLOPT_REFERER, K_PTR, F_S | F_L, 0)                                          \
	X(RANGE, CURLOPT_RANGE, K_PTR, F_S | F_L, 0)                                              \
	X(PIPEWAIT, CURLOPT_PIPEWAIT, K_LONG, F_S | F_L | F_P, 0)                                 \
	X(DEBUGFUNCTION, CURLOPT_DEBUGFUNCTION, K_FUNC, F_S | F_L | F_P, 0)                       \
	X(DEBUGDATA, CURLOPT_DEBUGDATA, K_PTR, F_S | F_L | F_P, 0)                                \
	X(STDERR, CURLOPT_STDERR, K_PTR, F_S | F_L, 0)                                            \
	X(HEADEROPT, CURLOPT_HEADEROPT, K_LONG, F_S | F_L | F_P, CURLHEADER_SEPARATE)             \
	X(EXPECT_100_TIMEOUT_MS, CURLOPT_EXPECT_100_TIMEOUT_MS, K_LONG, F_S | F_L | F_P, 1000)    \
	X(RESOLVE, CURLOPT_RESOLVE, K_PTR, F_S | F_L | F_X, 0)                                    \
	X(CONNECT_TO, CURLOPT_CONNECT_TO, K_PTR, F_S | F_L, 0)                                    \
	X(PROTOCOLS_STR, CURLOPT_PROTOCOLS_STR, K_PTR, F_S | F_L, 0)                              \
	X(REDIR_PROTOCOLS_STR, CURLOPT_REDIR_PROTOCOLS_STR, K_PTR, F_S | F_L, 0)                  \
	X(SSL_OPTIONS, CURLOPT_SSL_OPTIONS, K_LONG, F_S | F_L | F_P, 0)                           \
	X(PATH_AS_IS, CURLOPT_PATH_AS_IS, K_LONG, F_S | F_L | F_P, 0)                             \
	X(TRANSFER_ENCODING, CURLOPT_TRANSFER_ENCODING, K_LONG, F_S | F_L | F_P, 0)               \
	X(HTTP_CONTENT_DECODING, CURLOPT_HTTP_CONTENT_DECODING, K_LONG, F_S | F_L | F_P, 1)       \
	X(HTTP_TRANSFER_DECODING, CURLOPT_HTTP_TRANSFER_DECODING, K_LONG, F_S | F_L | F_P, 1)     \
	X(SSL_ENABLE_ALPN, CURLOPT_SSL_ENABLE_ALPN, K_LONG, F_S | F_L | F_P, 1)                   \
	X(TCP_FASTOPEN, CURLOPT_TCP_FASTOPEN, K_LONG, F_S | F_L | F_P, 0)                         \
	X(SUPPRESS_CONNECT_HEADERS, CURLOPT_SUPPRESS_CONNECT_HEADERS, K_LONG, F_S | F_L | F_P, 0) \
	X(UPKEEP_INTERVAL_MS, CURLOPT_UPKEEP_INTERVAL_MS, K_LONG, F_S | F_L | F_X, 60000)         \
	X(UPLOAD_BUFFERSIZE, CURLOPT_UPLOAD_BUFFERSIZE, K_LONG, F_S, 0)                           \
	X(MAXFILESIZE, CURLOPT_MAXFILESIZE, K_LONG, F_S | F_L, 0)                                 \
	X(SEEKFUNCTION, CURLOPT_SEEKFUNCTION, K_FUNC, F_S | F_L | F_X | F_P, 0)                   \
	X(SEEKDATA, CURLOPT_SEEKDATA, K_PTR, F_S | F_L | F_P, 0)                                  \
	X(HEADER, CURLOPT_HEADER, K_LONG, F_S | F_L | F_P, 0)                                     \
	X(KEEP_SENDING_ON_ERROR, CURLOPT_KEEP_SENDING_ON_ERROR, K_LONG, F_S | F_L | F_P, 0)       \
	X(DEFAULT_PROTOCOL, CURLOPT_DEFAULT_PROTOCOL, K_PTR, F_S | F_L, 0)                        \
	/* the method options */                                                                  \
	X(POSTFIELDS, CURLOPT_POSTFIELDS, K_PTR, F_S | F_M | F_X, 0)                              \
	X(COPYPOSTFIELDS, CURLOPT_COPYPOSTFIELDS, K_PTR, F_S | F_M | F_X, 0)                      \
	X(POSTFIELDSIZE, CURLOPT_POSTFIELDSIZE, K_LONG, F_S | F_M, -1)                            \
	X(POST, CURLOPT_POST, K_LONG, F_S | F_M | F_X, 0)                                         \
	X(HTTPGET, CURLOPT_HTTPGET, K_LONG, F_S | F_M | F_X, 0)                                   \
	X(NOBODY, CURLOPT_NOBODY, K_LONG, F_S | F_M | F_X, 0)                                     \
	X(UPLOAD, CURLOPT_UPLOAD, K_LONG, F_S | F_M | F_X, 0)                                     \
	X(INFILESIZE, CURLOPT_INFILESIZE, K_LONG, F_S | F_M, -1)                                  \
	/* what lanes override (held) */                                                          \
	X(TIMEOUT, CURLOPT_TIMEOUT, K_LONG, F_S | F_O | F_X, 0)                                   \
	X(TIMEOUT_MS, CURLOPT_TIMEOUT_MS, K_LONG, F_S | F_O | F_X, 0)                             \
	X(CONNECTTIMEOUT, CURLOPT_CONNECTTIMEOUT, K_LONG, F_S | F_O | F_X, 0)                     \
	X(CONNECTTIMEOUT_MS, CURLOPT_CONNECTTIMEOUT_MS, K_LONG, F_S | F_O | F_X, 0)               \
	X(MAXAGE_CONN, CURLOPT_MAXAGE_CONN, K_LONG, F_S | F_O | F_X, 0)                           \
	X(MAXLIFETIME_CONN, CURLOPT_MAXLIFETIME_CONN, K_LONG, F_S | F_O | F_X, 0)                 \
	X(MAXCONNECTS, CURLOPT_MAXCONNECTS, K_LONG, F_S | F_O | F_X, 0)                           \
	X(HAPPY_EYEBALLS_TIMEOUT_MS, CURLOPT_HAPPY_EYEBALLS_TIMEOUT_MS, K_LONG, F_S | F_O | F_X,  \
	  0)                                                                                      \
	X(SSLVERSION, CURLOPT_SSLVERSION, K_LONG, F_S | F_O | F_X, 0)                             \
	X(SOCKOPTFUNCTION, CURLOPT_SOCKOPTFUNCTION, K_FUNC, F_S | F_O | F_X, 0)                   \
	X(SOCKOPTDATA, CURLOPT_SOCKOPTDATA, K_PTR, F_S | F_O | F_X, 0)                            \
	X(XFERINFOFUNCTION, CURLOPT_XFERINFOFUNCTION, K_FUNC, F_S | F_O | F_X, 0)                 \
	X(XFERINFODATA, CURLOPT_XFERINFODATA, K_PTR, F_S | F_O | F_X, 0)                          \
	X(PROGRESSFUNCTION, CURLOPT_PROGRESSFUNCTION, K_FUNC, F_S | F_O | F_X, 0)                 \
	X(NOPROGRESS, CURLOPT_NOPROGRESS, K_LONG, F_S | F_O | F_X, 0)                             \
	/* not recyclable, but recorded */                                                        \
	X(OPENSOCKETFUNCTION, CURLOPT_OPENSOCKETFUNCTION, K_FUNC, F_O | F_X, 0)                   \
	X(OPENSOCKETDATA, CURLOPT_OPENSOCKETDATA, K_PTR, F_O | F_X, 0)                            \
	X(CLOSESOCKETFUNCTION, CURLOPT_CLOSESOCKETFUNCTION, K_FUNC, F_O | F_X, 0)                 \
	X(CLOSESOCKETDATA, CURLOPT_CLOSESOCKETDATA, K_PTR, F_O | F_X, 0)                          \
	X(SHARE, CURLOPT_SHARE, K_PTR, F_O | F_X, 0)                                              \
	X(CONNECT_ONLY, CURLOPT_CONNECT_ONLY, K_LONG, F_X, 0)                                     \
	X(INTERFACE, CURLOPT_INTERFACE, K_PTR, F_X, 0)                                            \
	X(LOCALPORT, CURLOPT_LOCALPORT, K_LONG, F_X, 0)                                           \
	X(MIMEPOST, CURLOPT_MIMEPOST, K_PTR, F_X, 0)                                              \
	X(HTTPPOST, CURLOPT_HTTPPOST, K_PTR, F_X, 0)

/* Options writing the slot of another. */
#define ALIASES(X)                            \
	X(POSTFIELDSIZE_LARGE, POSTFIELDSIZE) \
	X(INFILESIZE_LARGE, INFILESIZE)       \
	X(MAXFILESIZE_LARGE, MAXFILESIZE)     \
	X(PUT, UPLOAD)

enum slot {
#define X(name, opt, kind, flags, dflt) SL_##name,
	SLOTS(X)
#undef X
		SL_N
};
_Static_assert(SL_N <= 64 * CR_CURL_OPT_WORDS, "one bit per slot");

static const struct {
	CURLoption opt;
	uint8_t kind, flags;
	long dflt;
} slots[SL_N] = {
#define X(name, opt_, kind_, flags_, dflt_) [SL_##name] = {opt_, kind_, flags_, dflt_},
	SLOTS(X)
#undef X
};

/* option -> slot + 1 (0: an option we do not know), by type and number. */
#define OPT_TYPES 5
#define OPT_NUMS  512
static const uint8_t opt_map[OPT_TYPES][OPT_NUMS] = {
#define X(name, opt_, kind, flags, dflt) [(opt_) / 10000][(opt_) % 10000] = SL_##name + 1,
	SLOTS(X)
#undef X
#define Y(alias, name) [(CURLOPT_##alias) / 10000][(CURLOPT_##alias) % 10000] = SL_##name + 1,
		ALIASES(Y)
#undef Y
};

/* The pure string options, by their copy in struct cr_curl_easy.lib_str. */
static inline int str_index(int sl)
{
	return sl == SL_CAINFO ? 0 : sl == SL_CAPATH ? 1 : sl == SL_USERAGENT ? 2 : -1;
}
_Static_assert(CR_CURL_PURE_STRS == 3, "three pure strings");

static inline int opt_slot(CURLoption o)
{
	unsigned u = (unsigned)o, t = u < 10000   ? 0
				      : u < 20000 ? 1
				      : u < 30000 ? 2
				      : u < 40000 ? 3
						  : 4;
	unsigned n = u - t * 10000;
	return n < OPT_NUMS ? (int)opt_map[t][n] - 1 : -1;
}

static inline void bit_set(uint64_t *w, int i)
{
	w[i >> 6] |= 1ull << (i & 63);
}

static inline int bit_get(const uint64_t *w, int i)
{
	return (w[i >> 6] >> (i & 63)) & 1;
}

/* The slots with a flag, as a bit set (built once). */
static uint64_t mask_of[F_STR << 1][CR_CURL_OPT_WORDS];
static pthread_once_t masks_once = PTHREAD_ONCE_INIT;

/* What a life may set without ending with a reset (put back lazily, at
 * cleanup, or held). */
static uint64_t undoable[CR_CURL_OPT_WORDS];

static void masks_init(void)
{
	for (int i = 0; i < SL_N; i++)
		for (int f = 1; f <= F_STR; f <<= 1)
			if (slots[i].flags & f)
				bit_set(mask_of[f], i);
	for (int w = 0; w < CR_CURL_OPT_WORDS; w++)
		undoable[w] = mask_of[F_L][w] | mask_of[F_M][w] | mask_of[F_O][w];
}

/* ------------------------------------------- per library: the free list */

/* Reset handles waiting for the next curl_easy_init, with their shares;
 * libcurl's own defaults of CAINFO/CAPATH (what a fresh handle has). */
static struct perlib {
	atomic_flag mu; /* a spin lock: held for a few instructions (a push, a pop) */
	CURL *h[FREE_HANDLES_MAX];
	int n;
	pthread_once_t dflt_once;
	int dflt_ok; /* the defaults below are known */
	char *cainfo, *capath;
} perlib[CR_CURL_LIBS_MAX];

static __thread CURL *tls_last_freed[CR_CURL_LIBS_MAX];

static void fl_lock(struct perlib *pl)
{
	for (unsigned spins = 0; atomic_flag_test_and_set_explicit(&pl->mu, memory_order_acquire);
	     spins++)
		if (spins > 64)
			sched_yield();
}

static void fl_unlock(struct perlib *pl)
{
	atomic_flag_clear_explicit(&pl->mu, memory_order_release);
}

/* Striped: setopt looks its handle up on every call, from every thread. */
#define EASY_STRIPES 64
static pthread_mutex_t easy_mu[EASY_STRIPES];
static pthread_once_t easy_once = PTHREAD_ONCE_INIT;
static struct cr_curl_easy *easy_tab[EASY_BUCKETS];

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
	struct perlib *pl = &perlib[index];
	atomic_flag_clear(&pl->mu);
	pl->n = 0;
	pl->dflt_once = (pthread_once_t)PTHREAD_ONCE_INIT;
	pthread_once(&masks_once, masks_init);
}

void cr_curl_handles_atfork_child(void)
{
	int n = cr_curl_lib_count();
	for (int i = 0; i < n; i++) {
		atomic_flag_clear(&perlib[i].mu);
		perlib[i].n = 0;
	}
	for (int i = 0; i < CR_CURL_LIBS_MAX; i++)
		tls_last_freed[i] = NULL;
	/* Another thread may have held a stripe at fork. */
	if (pthread_once(&easy_once, easy_init_locks) == 0)
		for (int i = 0; i < EASY_STRIPES; i++)
			pthread_mutex_init(&easy_mu[i], NULL);
	/* ... or a pin: the thread that held it is gone. */
	for (int b = 0; b < EASY_BUCKETS; b++)
		for (struct cr_curl_easy *e = easy_tab[b]; e; e = e->next) {
			atomic_store(&e->pin, CR_PIN_FREE);
			/* ... or a multi transfer's record (abandoned with its
			 * multi's: multi.c). */
			if (e->mxt) {
				e->mxt = NULL;
				e->lane = NULL;
			}
		}
}

/* libcurl's compiled-in CA defaults, read from a handle nobody touched
 * (CURLINFO_CAINFO/CAPATH, 7.84+); without them CAINFO/CAPATH are not put
 * back lazily (a reset does it). */
static struct cr_curllib *dflt_lib[CR_CURL_LIBS_MAX];
static void dflt_read(struct cr_curllib *lib)
{
	struct perlib *pl = &perlib[lib->index];
#if LIBCURL_VERSION_NUM >= 0x075400
	CURL *h = lib->fns.easy_init();
	char *a = NULL, *b = NULL;
	if (h && lib->fns.easy_getinfo(h, CURLINFO_CAINFO, &a) == CURLE_OK &&
	    lib->fns.easy_getinfo(h, CURLINFO_CAPATH, &b) == CURLE_OK) {
		pl->cainfo = a ? strdup(a) : NULL;
		pl->capath = b ? strdup(b) : NULL;
		__atomic_store_n(&pl->dflt_ok, (!a || pl->cainfo) && (!b || pl->capath),
				 __ATOMIC_RELEASE);
	}
	if (h)
		lib->fns.easy_cleanup(h);
#else
	(void)pl;
#endif
}
#define DFLT_ONCE(i)                    \
	static void dflt_once_##i(void) \
	{                               \
		dflt_read(dflt_lib[i]); \
	}
DFLT_ONCE(0)
DFLT_ONCE(1)
DFLT_ONCE(2)
DFLT_ONCE(3)
_Static_assert(CR_CURL_LIBS_MAX == 4, "one dflt_once per library");
static void (*const dflt_once_fn[CR_CURL_LIBS_MAX])(void) = {dflt_once_0, dflt_once_1, dflt_once_2,
							     dflt_once_3};

static int dflt_known(struct cr_curllib *lib)
{
	if (__atomic_load_n(&perlib[lib->index].dflt_ok, __ATOMIC_ACQUIRE))
		return 1;
	dflt_lib[lib->index] = lib;
	pthread_once(&perlib[lib->index].dflt_once, dflt_once_fn[lib->index]);
	return perlib[lib->index].dflt_ok;
}

/* --------------------------------------------------------- handle table */

static unsigned easy_bucket(const CURL *h)
{
	uintptr_t p = (uintptr_t)h;
	return (unsigned)((p >> 4) ^ (p >> 14)) & (EASY_BUCKETS - 1);
}

/* The app's settings of a new life: libcurl's defaults. */
static void life_defaults(struct cr_curl_easy *e)
{
	/* The app's values of what lanes override change only if it set one
	 * (the remembered apply stays valid otherwise). */
	int ov_set = ((e->set_now[0] & mask_of[F_O][0]) | (e->set_now[1] & mask_of[F_O][1])) != 0 ||
		     e->app_share;
	memset(e, 0, offsetof(struct cr_curl_easy, h));
	e->app_maxage_s = 118;
	e->app_maxconnects = 5;
	e->app_happy_ms = CURL_HET_DEFAULT;
	e->app_noprogress = 1;
	if (ov_set)
		e->ov_gen++;
}

/* After curl_easy_init or a reset, libcurl holds the defaults of the pure
 * options whose default we know (not the strings). */
static void known_defaults(struct cr_curl_easy *e)
{
	memset(e->lib_known, 0, sizeof(e->lib_known));
	for (int i = 0; i < SL_N; i++) {
		if ((slots[i].flags & (F_P | F_L)) != (F_P | F_L) || str_index(i) >= 0)
			continue;
		union cr_ov_val v = {.l = 0};
		if (slots[i].kind == K_LONG)
			v.l = slots[i].dflt;
		else if (i == SL_WRITEDATA)
			v.p = stdout;
		else if (i == SL_READDATA)
			v.p = stdin;
		e->lib_val[i] = v;
		bit_set(e->lib_known, i);
	}
}

int cr_curl_no_follow(const struct cr_curl_easy *e)
{
	return bit_get(e->lib_known, SL_FOLLOWLOCATION) && e->lib_val[SL_FOLLOWLOCATION].l == 0;
}

/* libcurl's defaults of what lanes override (after curl_easy_init, or a
 * reset: which keeps the share). */
static void held_defaults(struct cr_curl_easy *e)
{
	void *share = e->held[OV_SHARE].p;
	memset(e->held, 0, sizeof(e->held));
	e->held[OV_MAXAGE].l = 118;
	e->held[OV_MAXCONNECTS].l = 5;
	e->held[OV_HAPPY].l = CURL_HET_DEFAULT;
	e->held[OV_NOPROGRESS].l = 1;
	e->held[OV_SHARE].p = share;
	e->ov_gen++;
}

/* Each thread remembers the last handle it looked up: an app sets several
 * options on one handle, then performs it. The entry is valid as long as no
 * handle record was freed since (cr_curl_easy_gen), which with recycling is
 * rare. The fast path is inline (curl_int.h, lanes.h). */
atomic_ulong cr_curl_easy_gen;
__thread CURL *cr_curl_tls_h;
__thread struct cr_curl_easy *cr_curl_tls_e;
__thread struct cr_curllib *cr_curl_tls_lib;
__thread unsigned long cr_curl_tls_gen;

struct cr_curl_easy *cr_curl_handles_get_slow(CURL *h)
{
	struct cr_curl_easy *e;
	unsigned long gen = atomic_load_explicit(&cr_curl_easy_gen, memory_order_acquire);
	unsigned b = easy_bucket(h);
	pthread_mutex_t *mu = easy_lock(b);
	pthread_mutex_lock(mu);
	for (e = easy_tab[b]; e && e->h != h; e = e->next)
		;
	pthread_mutex_unlock(mu);
	if (e) {
		cr_curl_tls_h = h;
		cr_curl_tls_e = e;
		cr_curl_tls_lib = e->lib;
		cr_curl_tls_gen = gen;
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
	e->warm_fd = -1;
	life_defaults(e);
	held_defaults(e);
	known_defaults(e);
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
	atomic_fetch_add_explicit(&cr_curl_easy_gen, 1, memory_order_acq_rel);
	pthread_mutex_unlock(mu);
	free(e);
}

int cr_curl_pin_slow(struct cr_curl_easy *e)
{
	/* A taker holds it for a few setopt calls: wait. */
	for (unsigned spins = 0;; spins++) {
		int x = CR_PIN_FREE;
		if (atomic_compare_exchange_weak_explicit(
			    &e->pin, &x, CR_PIN_CALL, memory_order_acquire, memory_order_relaxed))
			return 1;
		if (x == CR_PIN_CALL)
			return 0;
		if (spins > 64)
			sched_yield();
	}
}

/* ----------------------------------------------------- lives and twins */

static void twin_drop(struct cr_curl_easy *e)
{
	if (e->twin) {
		e->lib->fns.easy_cleanup(e->twin);
		e->twin = NULL;
	}
}

static void url_forget(struct cr_curl_easy *e)
{
	e->url_ok = 0;
	e->url_text[0] = '\0';
	e->url_in_state = 0;
	e->url_gen++;
}

/* What a slot is put back to: its default, libcurl's own for the pointers
 * that are not NULL. */
static void slot_undo(struct cr_curl_easy *e, int i)
{
	e->lib_known[i >> 6] &= ~(1ull << (i & 63)); /* known again below for the simple ones */
	CURLcode (*setopt)(CURL *, CURLoption, ...) = e->lib->fns.easy_setopt;
	struct perlib *pl = &perlib[e->lib->index];
	CURLoption o = slots[i].opt;
	switch (slots[i].kind) {
	case K_LONG:
		setopt(e->h, o, slots[i].dflt);
		e->lib_val[i].l = slots[i].dflt;
		if (slots[i].flags & F_P)
			bit_set(e->lib_known, i);
		break;
	case K_FUNC:
		setopt(e->h, o, (void *)NULL);
		e->lib_val[i].p = NULL;
		if (slots[i].flags & F_P)
			bit_set(e->lib_known, i);
		break;
	default: {
		void *p = NULL;
		if (i == SL_WRITEDATA)
			p = stdout;
		else if (i == SL_READDATA)
			p = stdin;
		else if (i == SL_CAINFO)
			p = pl->cainfo;
		else if (i == SL_CAPATH)
			p = pl->capath;
		setopt(e->h, o, p);
		if (i == SL_URL)
			url_forget(e);
		if ((slots[i].flags & F_P) && str_index(i) < 0) {
			e->lib_val[i].p = p;
			bit_set(e->lib_known, i);
		}
		break;
	}
	}
}

void cr_curl_settle(struct cr_curl_easy *e)
{
	twin_drop(e);
	if (!(e->set_prev[0] | e->set_prev[1]))
		return;
	for (int w = 0; w < CR_CURL_OPT_WORDS; w++) {
		uint64_t m = e->set_prev[w] & ~e->set_now[w];
		e->set_prev[w] = 0;
		while (m) {
			int b = __builtin_ctzll(m);
			m &= m - 1;
			slot_undo(e, w * 64 + b);
		}
	}
}

/* A stale handle's answers come from a duplicate: the same options, and
 * none of the last life's results, as a fresh handle. */
static CURL *twin_of(struct cr_curl_easy *e)
{
	if (!e->twin) {
		cr_curl_settle(e);
		e->twin = e->lib->fns.easy_duphandle(e->h);
		atomic_fetch_add(&cr_curl_ctr.twins, 1);
	}
	return e->twin;
}

/* ------------------------------------------------------------- the calls */

static CURL *freelist_pop(struct cr_curllib *lib)
{
	struct perlib *pl = &perlib[lib->index];
	CURL *want = tls_last_freed[lib->index], *h = NULL;
	fl_lock(pl);
	int n = pl->n;
	if (n > 0) {
		int k = n - 1;
		/* The handle this thread recycled last, with its share. */
		if (want && pl->h[k] != want)
			for (int i = k - 1; i >= 0; i--)
				if (pl->h[i] == want) {
					k = i;
					break;
				}
		h = pl->h[k];
		pl->h[k] = pl->h[n - 1];
		pl->n = n - 1;
	}
	fl_unlock(pl);
	return h;
}

CURL *cr_curl_init(struct cr_curllib *lib)
{
	/* The earliest sign of libcurl traffic: start prewarming now. */
	if (atomic_load_explicit(&cr_warm_active, memory_order_relaxed))
		cr_warm_kick();
	CURL *h = freelist_pop(lib);
	if (h) {
		struct cr_curl_easy *e = cr_curl_handles_get(h);
		int took = cr_curl_pin(e);
		atomic_store_explicit(&e->in_freelist, 0, memory_order_relaxed);
		if (e->share)
			cr_curl_shares_recycled(lib, e, 0, 0);
		cr_curl_unpin(e, took);
		atomic_fetch_add(&cr_curl_ctr.handles_reused, 1);
		return h;
	}
	h = lib->fns.easy_init();
	if (h && !easy_add(lib, h)) {
		/* Out of memory for our bookkeeping: the handle works, we just
		 * do not know it (it performs unrouted). */
	}
	return h;
}

/* The app's setopt, recorded. Fast: one table lookup and a bit for most
 * options; the switch only for those marked X. */
static CURLcode setopt_slow(struct cr_curllib *lib, CURL *h, CURLoption opt, void *ptr, long lval,
			    curl_off_t oval) __attribute__((noinline));

/* The app sets again what libcurl holds (a persistent handle's URL, a
 * recycled handle's callbacks and CA file): only the bit of this life is
 * recorded. No pin: a taker never touches what this reads and writes. */
CURLcode cr_curl_setopt(struct cr_curllib *lib, CURL *h, CURLoption opt, void *ptr, long lval,
			curl_off_t oval)
{
	struct cr_curl_easy *e = cr_curl_handles_get(h);
	int sl = opt_slot(opt);
	if (e && sl >= 0 && !e->twin) {
		uint8_t fl = slots[sl].flags;
		if ((fl & (F_P | F_X)) == F_P && bit_get(e->lib_known, sl)) {
			int same = !(fl & F_STR)
					   ? e->lib_val[sl].l ==
						     (slots[sl].kind == K_LONG ? lval : (long)ptr)
					   : ptr && strcmp(ptr, e->lib_str[str_index(sl)]) == 0;
			if (same) {
				bit_set(e->set_now, sl);
				return CURLE_OK;
			}
		} else if (sl == SL_URL && ptr && e->url_in_state &&
			   strcmp(ptr, e->url_text) == 0) {
			/* The same URL again, and libcurl's current one is it (no
			 * redirect, nothing normalised by the last transfer). */
			bit_set(e->set_now, SL_URL);
			return CURLE_OK;
		}
	}
	return setopt_slow(lib, h, opt, ptr, lval, oval); /* a jump: same arguments */
}

static CURLcode setopt_slow(struct cr_curllib *lib, CURL *h, CURLoption opt, void *ptr, long lval,
			    curl_off_t oval)
{
	struct cr_curl_easy *e = cr_curl_handles_get(h);
	int sl = opt_slot(opt);
	int took = e ? cr_curl_pin(e) : 0;
	CURLcode rc;
	if (e && e->twin)
		twin_drop(e); /* its answers were for the options before this one */
	/* CONNECT_ONLY: the handle's connection becomes the app's own, never
	 * pooled: the share goes back first, so a later curl_easy_send never
	 * finds a pooled connection. */
	if (e && sl == SL_CONNECT_ONLY && lval && e->share)
		cr_curl_shares_release(lib, e);
	int pure = e && sl >= 0 && (slots[sl].flags & F_P);
	union cr_ov_val v = {.l = 0};
	if (pure) {
		int k = str_index(sl);
		if (slots[sl].kind == K_LONG)
			v.l = lval;
		else
			v.p = ptr;
		if (bit_get(e->lib_known, sl) &&
		    (k < 0 ? e->lib_val[sl].p == v.p && e->lib_val[sl].l == v.l
			   : ptr && strcmp(ptr, e->lib_str[k]) == 0)) {
			rc = CURLE_OK;
			goto recorded; /* libcurl holds it already */
		}
	}
	if (opt < CURLOPTTYPE_OBJECTPOINT)
		rc = lib->fns.easy_setopt(h, opt, lval);
	else if (opt < CURLOPTTYPE_OFF_T)
		rc = lib->fns.easy_setopt(h, opt, ptr);
	else if (opt < CURLOPTTYPE_BLOB)
		rc = lib->fns.easy_setopt(h, opt, oval);
	else
		rc = lib->fns.easy_setopt(h, opt, ptr);
	if (!e || rc != CURLE_OK) {
		if (e) {
			if (sl >= 0)
				e->lib_known[sl >> 6] &= ~(
					1ull << (sl & 63)); /* a failed set may half apply */
			cr_curl_unpin(e, took);
		}
		return rc;
	}
	if (pure) {
		int k = str_index(sl);
		size_t n = k >= 0 && ptr ? strlen(ptr) : 0;
		if (k < 0 || (ptr && n < CR_CURL_STR_MAX)) {
			e->lib_val[sl] = v;
			if (k >= 0)
				memcpy(e->lib_str[k], ptr, n + 1);
			bit_set(e->lib_known, sl);
		} else {
			e->lib_known[sl >> 6] &= ~(1ull << (sl & 63));
		}
	}
recorded:
	if (sl < 0) {
		e->dirty = 1; /* an option we do not know */
		cr_curl_unpin(e, took);
		return rc;
	}
	uint8_t fl = slots[sl].flags;
	bit_set(e->set_now, sl);
	if (!(fl & F_S))
		e->dirty = 1;
	if (!(fl & F_X)) {
		cr_curl_unpin(e, took);
		return rc;
	}
	if (fl & F_O)
		e->ov_gen++; /* the app's value, and what libcurl holds, changed */
	switch (sl) {
	case SL_URL: {
		const char *u = ptr;
		size_t n = u ? strlen(u) : 0;
		/* The same URL again (a persistent handle): parsed already. */
		if (u && e->url_text[0] && n < sizeof(e->url_text) &&
		    memcmp(u, e->url_text, n + 1) == 0) {
			e->url_in_state = 1; /* set again: libcurl's current URL is it */
			break;
		}
		e->url_gen++;
		e->url_ok = u && cr_curl_parse_url(u, e->u_scheme, sizeof(e->u_scheme), e->u_host,
						   sizeof(e->u_host), &e->u_port) == 0;
		e->u_family = AF_UNSPEC;
		if (e->url_ok)
			e->u_sbit = cr_scheme_bit(e->u_scheme, strlen(e->u_scheme));
		if (e->url_ok && inet_pton(AF_INET, e->u_host, e->u_addr) == 1)
			e->u_family = AF_INET;
		else if (e->url_ok && inet_pton(AF_INET6, e->u_host, e->u_addr) == 1)
			e->u_family = AF_INET6;
		if (e->url_ok && n < sizeof(e->url_text))
			memcpy(e->url_text, u, n + 1);
		else
			e->url_text[0] = '\0';
		e->url_in_state = e->url_text[0] != '\0';
		break;
	}
	case SL_SHARE:
		/* libcurl detached ours (if any) for the app's. */
		if (e->share)
			cr_curl_shares_release(lib, e);
		e->app_share = ptr;
		e->held[OV_SHARE].p = ptr;
		break;
	case SL_CONNECT_ONLY: e->connect_only = lval != 0; break;
	case SL_UPKEEP_INTERVAL_MS: e->upkeep_set = 1; break;
	case SL_FORBID_REUSE: e->forbid_reuse = lval; break;
	case SL_TIMEOUT:
		e->app_timeout_ms = lval > 0 ? lval * 1000 : 0;
		e->held[OV_TIMEOUT].l = e->app_timeout_ms;
		break;
	case SL_TIMEOUT_MS:
		e->app_timeout_ms = lval > 0 ? lval : 0;
		e->held[OV_TIMEOUT].l = e->app_timeout_ms;
		break;
	case SL_CONNECTTIMEOUT:
		e->app_connect_timeout_ms = lval > 0 ? lval * 1000 : 0;
		e->held[OV_CONNECTTIMEOUT].l = e->app_connect_timeout_ms;
		break;
	case SL_CONNECTTIMEOUT_MS:
		e->app_connect_timeout_ms = lval > 0 ? lval : 0;
		e->held[OV_CONNECTTIMEOUT].l = e->app_connect_timeout_ms;
		break;
	case SL_MAXAGE_CONN: e->app_maxage_s = e->held[OV_MAXAGE].l = lval; break;
	case SL_MAXLIFETIME_CONN: e->app_maxlifetime_s = e->held[OV_MAXLIFETIME].l = lval; break;
	case SL_MAXCONNECTS: e->app_maxconnects = e->held[OV_MAXCONNECTS].l = lval; break;
	case SL_HAPPY_EYEBALLS_TIMEOUT_MS: e->app_happy_ms = e->held[OV_HAPPY].l = lval; break;
	case SL_SSLVERSION: e->app_sslversion = e->held[OV_SSLVERSION].l = lval; break;
	case SL_SOCKOPTFUNCTION:
		e->app_sockopt = (curl_sockopt_callback)ptr;
		e->held[OV_SOCKOPTFUNCTION].p = ptr;
		break;
	case SL_SOCKOPTDATA: e->app_sockopt_data = e->held[OV_SOCKOPTDATA].p = ptr; break;
	case SL_OPENSOCKETFUNCTION:
		e->app_opensocket_fn = (cr_ov_func)ptr;
		e->held[OV_OPENSOCKETFUNCTION].p = ptr;
		break;
	case SL_OPENSOCKETDATA: e->app_opensocket_data = e->held[OV_OPENSOCKETDATA].p = ptr; break;
	case SL_CLOSESOCKETFUNCTION:
		e->app_closesocket_fn = (cr_ov_func)ptr;
		e->held[OV_CLOSESOCKETFUNCTION].p = ptr;
		break;
	case SL_CLOSESOCKETDATA:
		e->app_closesocket_data = e->held[OV_CLOSESOCKETDATA].p = ptr;
		break;
	case SL_XFERINFOFUNCTION:
		e->app_xferinfo = (curl_xferinfo_callback)ptr;
		e->held[OV_XFERINFOFUNCTION].p = ptr;
		e->app_progress_on = ptr != NULL;
		break;
	case SL_XFERINFODATA:
		e->app_xferinfo_data = e->held[OV_XFERINFODATA].p = ptr;
		break; /* == PROGRESSDATA */
	case SL_PROGRESSFUNCTION:
		e->app_progress = (curl_progress_callback)ptr;
		e->held[OV_PROGRESSFUNCTION].p = ptr;
		e->app_progress_on = ptr != NULL;
		break;
	case SL_NOPROGRESS: e->app_noprogress = e->held[OV_NOPROGRESS].l = lval != 0; break;
	case SL_INTERFACE:
	case SL_LOCALPORT: e->app_bind = ptr != NULL || lval != 0; break;
	case SL_ERRORBUFFER: e->errbuf = ptr; break;
	case SL_RESOLVE: e->resolve = ptr; break;
	case SL_HTTPHEADER: e->headers = ptr; break;
	case SL_READFUNCTION: e->read_cb = ptr != NULL; break;
	case SL_SEEKFUNCTION: e->seek_cb = ptr != NULL; break;
	case SL_CUSTOMREQUEST: {
		const char *m = ptr;
		size_t n = m ? strlen(m) : 0;
		e->custom_set = m != NULL;
		e->custom[0] = '\0';
		if (n < sizeof(e->custom)) {
			for (size_t i = 0; i < n; i++)
				e->custom[i] = (char)((m[i] >= 'a' && m[i] <= 'z') ? m[i] - 32
										   : m[i]);
			e->custom[n] = '\0';
		}
		break;
	}
	case SL_NOBODY:
		if (lval)
			e->method = CR_CURL_M_HEAD;
		else if (e->method == CR_CURL_M_HEAD)
			e->method = CR_CURL_M_GET;
		break;
	case SL_HTTPGET:
		if (lval)
			e->method = CR_CURL_M_GET;
		break;
	case SL_POST:
	case SL_POSTFIELDS:
	case SL_COPYPOSTFIELDS:
	case SL_MIMEPOST:
	case SL_HTTPPOST:
		if (sl != SL_POST || lval)
			e->method = CR_CURL_M_POST;
		break;
	case SL_UPLOAD:
		if (lval)
			e->method = CR_CURL_M_PUT;
		break;
	default: break;
	}
	cr_curl_unpin(e, took);
	return rc;
}

/* The app's curl_easy_reset: libcurl's defaults everywhere, but (as
 * libcurl documents) live connections and the share stay: ours stays
 * parked, the handle keeps its connection. */
void cr_curl_reset(struct cr_curllib *lib, CURL *h)
{
	struct cr_curl_easy *e = cr_curl_handles_get(h);
	int took = e ? cr_curl_pin(e) : 0;
	if (e)
		twin_drop(e);
	if (e && e->mxt) /* the lane of its multi transfer goes (multi.c) */
		cr_curl_mx_forget(e, CR_MX_RESET);
	lib->fns.easy_reset(h);
	if (e) {
		CURLSH *app_share = e->app_share;
		known_defaults(e);
		life_defaults(e);
		e->app_share = app_share; /* a reset keeps the app's share too */
		held_defaults(e);
		e->set_prev[0] = e->set_prev[1] = 0;
		url_forget(e);
		cr_curl_unpin(e, took);
	}
}

CURL *cr_curl_duphandle(struct cr_curllib *lib, CURL *h)
{
	struct cr_curl_easy *src = cr_curl_handles_get(h);
	int took = src ? cr_curl_pin(src) : 0;
	if (src)
		cr_curl_settle(src);
	CURL *d = lib->fns.easy_duphandle(h);
	struct cr_curl_easy *e = d ? easy_add(lib, d) : NULL;
	if (e && src) {
		/* The duplicate has the app's options, never the lane's, and no
		 * share (libcurl does not copy it); its own life starts here, in
		 * no multi (`multi` is past `h`: a new record's NULL). */
		cr_curl_put_back(src, d);
		memcpy(e, src, offsetof(struct cr_curl_easy, h));
		for (int i = 0; i < OV_N; i++)
			e->held[i] = src->held[i];
		e->held[OV_SHARE].p = src->app_share;
		cr_curl_held_app(e);
		e->dirty = src->dirty; /* a duplicate copies cookies and the like */
		e->url_ok = src->url_ok;
		e->url_gen = 1;
		e->u_port = src->u_port;
		e->u_family = src->u_family;
		memcpy(e->u_addr, src->u_addr, sizeof(e->u_addr));
		memcpy(e->u_scheme, src->u_scheme, sizeof(e->u_scheme));
		e->u_sbit = src->u_sbit;
		memcpy(e->u_host, src->u_host, sizeof(e->u_host));
		memcpy(e->url_text, src->url_text, sizeof(e->url_text));
		e->url_in_state = 0;
	} else if (e) {
		e->dirty = 1;
	}
	if (src)
		cr_curl_unpin(src, took);
	return d;
}

/* A handle whose results must not be seen (stale): answered by its twin. */
CURLcode cr_curl_getinfo(struct cr_curllib *lib, CURL *h, CURLINFO info, void *arg)
{
	struct cr_curl_easy *e = cr_curl_handles_get(h);
	/* Most infos read the transfer's results only; those about the
	 * connection walk the share's cache (pinned, so it is not taken). */
	int conn_info = (info & CURLINFO_TYPEMASK) == CURLINFO_SOCKET ||
			info == CURLINFO_LASTSOCKET || (info & CURLINFO_TYPEMASK) == CURLINFO_PTR;
	if (!e || (!e->stale && !conn_info)) {
		CURLcode rc = lib->fns.easy_getinfo(h, info, arg);
		/* Kept for cleanup (an authentication state to reset?): most
		 * clients ask for it anyway. */
		if (info == CURLINFO_RESPONSE_CODE && rc == CURLE_OK && e && arg) {
			e->last_code = *(long *)arg;
			e->last_code_known = 1;
		}
		return rc;
	}
	int took = cr_curl_pin(e);
	CURL *t = e->stale ? twin_of(e) : NULL;
	CURLcode rc = lib->fns.easy_getinfo(t ? t : h, info, arg);
	cr_curl_unpin(e, took);
	return rc;
}

CURLHcode cr_curl_header(struct cr_curllib *lib, CURL *h, const char *name, size_t index,
			 unsigned int origin, int request, struct curl_header **hout)
{
	if (!lib->fns.easy_header)
		return CURLHE_NOT_BUILT_IN;
	struct cr_curl_easy *e = cr_curl_handles_get(h);
	if (!e)
		return lib->fns.easy_header(h, name, index, origin, request, hout);
	int took = cr_curl_pin(e);
	CURL *t = e->stale ? twin_of(e) : NULL;
	CURLHcode rc = lib->fns.easy_header(t ? t : h, name, index, origin, request, hout);
	cr_curl_unpin(e, took);
	return rc;
}

struct curl_header *cr_curl_nextheader(struct cr_curllib *lib, CURL *h, unsigned int origin,
				       int request, struct curl_header *prev)
{
	if (!lib->fns.easy_nextheader)
		return NULL;
	struct cr_curl_easy *e = cr_curl_handles_get(h);
	if (!e)
		return lib->fns.easy_nextheader(h, origin, request, prev);
	int took = cr_curl_pin(e);
	CURL *t = e->stale ? twin_of(e) : NULL;
	struct curl_header *r = lib->fns.easy_nextheader(t ? t : h, origin, request, prev);
	cr_curl_unpin(e, took);
	return r;
}

/* Pinned: with libcurl >= 8.10 it walks the share's connections. */
CURLcode cr_curl_upkeep(struct cr_curllib *lib, CURL *h)
{
	if (!lib->fns.easy_upkeep)
		return CURLE_NOT_BUILT_IN;
	struct cr_curl_easy *e = cr_curl_handles_get(h);
	int took = e ? cr_curl_pin(e) : 0;
	CURLcode rc = lib->fns.easy_upkeep(h);
	if (e)
		cr_curl_unpin(e, took);
	return rc;
}

void cr_curl_unroute(struct cr_curllib *lib, CURL *h)
{
	struct cr_curl_easy *e = cr_curl_handles_get(h);
	if (!e)
		return;
	int took = cr_curl_pin(e);
	cr_curl_settle(e);
	if (e->share)
		cr_curl_shares_release(lib, e);
	cr_curl_put_back(e, h);
	cr_curl_held_app(e);
	cr_curl_unpin(e, took);
}

/* Does this life need a real curl_easy_reset before the next one? */
static int life_needs_reset(struct cr_curl_easy *e)
{
	if (e->life_reset || (e->set_now[0] & ~undoable[0]) || (e->set_now[1] & ~undoable[1]))
		return 1;
	if ((bit_get(e->set_now, SL_CAINFO) || bit_get(e->set_now, SL_CAPATH)) &&
	    !dflt_known(e->lib))
		return 1;
	if (e->performed) {
		/* Authentication state survives everything but a reset. */
		long code = e->last_code;
		if (!e->last_code_known)
			e->lib->fns.easy_getinfo(e->h, CURLINFO_RESPONSE_CODE, &code);
		if (code == 401 || code == 407)
			return 1;
	}
	return 0;
}

/* The method options back to a GET, at once: they act on each other. */
static void methods_undo(struct cr_curl_easy *e)
{
	CURLcode (*setopt)(CURL *, CURLoption, ...) = e->lib->fns.easy_setopt;
	if (!((e->set_now[0] & mask_of[F_M][0]) | (e->set_now[1] & mask_of[F_M][1])))
		return;
	if (bit_get(e->set_now, SL_POSTFIELDS) || bit_get(e->set_now, SL_COPYPOSTFIELDS))
		setopt(e->h, CURLOPT_POSTFIELDS, (void *)NULL); /* also frees a copy */
	if (bit_get(e->set_now, SL_POSTFIELDSIZE))
		setopt(e->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)-1);
	if (bit_get(e->set_now, SL_INFILESIZE))
		setopt(e->h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)-1);
	setopt(e->h, CURLOPT_HTTPGET, 1L); /* GET, no upload, a body wanted */
	for (int w = 0; w < CR_CURL_OPT_WORDS; w++)
		e->set_now[w] &= ~mask_of[F_M][w];
}

static int freelist_push(struct cr_curllib *lib, CURL *h)
{
	struct perlib *pl = &perlib[lib->index];
	int kept = 0;
	fl_lock(pl);
	if (pl->n < FREE_HANDLES_MAX) {
		pl->h[pl->n++] = h;
		kept = 1;
	}
	fl_unlock(pl);
	if (kept)
		tls_last_freed[lib->index] = h;
	return kept;
}

void cr_curl_cleanup(struct cr_curllib *lib, CURL *h)
{
	struct cr_curl_easy *e = h ? cr_curl_handles_get(h) : NULL;
	int took = e ? cr_curl_pin(e) : 0;
	if (e)
		twin_drop(e);
	if (e && e->mxt) /* its multi transfer first (multi.c) */
		cr_curl_mx_forget(e, CR_MX_CLEANUP);
	/* A handle attached to a multi is really cleaned up: libcurl detaches
	 * it (ending its transfer there); a reset would leave it attached and
	 * the multi driving a transfer on the next curl_easy_init's handle. */
	if (e && !e->dirty && !e->app_share && !e->connect_only && !e->multi) {
		if (life_needs_reset(e)) {
			lib->fns.easy_reset(h);
			known_defaults(e);
			held_defaults(e);
			e->set_prev[0] = e->set_prev[1] = 0;
			url_forget(e);
		} else {
			methods_undo(e);
			for (int w = 0; w < CR_CURL_OPT_WORDS; w++)
				e->set_prev[w] |= e->set_now[w] & mask_of[F_L][w];
			atomic_fetch_add(&cr_curl_ctr.recycled_lazy, 1);
		}
		e->stale = e->performed;
		e->life_reset = 0;
		life_defaults(e);
		uint64_t now = cr_now_ns();
		e->freed_ns = now;
		if (e->share)
			cr_curl_shares_recycled(lib, e, 1, now);
		atomic_store_explicit(&e->in_freelist, 1, memory_order_relaxed);
		cr_curl_unpin(e, took);
		if (freelist_push(lib, h)) {
			atomic_fetch_add(&cr_curl_ctr.handles_recycled, 1);
			return;
		}
		/* The list filled up meanwhile. */
		took = cr_curl_pin(e);
		atomic_store_explicit(&e->in_freelist, 0, memory_order_relaxed);
		if (e->share)
			cr_curl_shares_recycled(lib, e, 0, 0);
	}
	if (e && e->share)
		cr_curl_shares_release(lib, e);
	/* Left by a jump: its share leaves its pool now if the table's
	 * settling has not taken it out yet (a full table, or a settle on
	 * another thread under way): never listing a freed holder. */
	if (e && e->left_share) {
		cr_curl_shares_abandon(e->left_share, e, e->share_fork);
		e->left_share = NULL;
	}
	if (e)
		cr_curl_unpin(e, took);
	if (h)
		easy_del(h);
	lib->fns.easy_cleanup(h);
}

void cr_curl_handles_destroy(struct cr_curl_easy *e)
{
	CURL *h = e->h;
	struct cr_curllib *lib = e->lib;
	twin_drop(e);
	easy_del(h);
	lib->fns.easy_cleanup(h);
}

int cr_curl_handles_take_idle(struct cr_curllib *lib, uint64_t now_ns, struct cr_curl_easy **out,
			      int max)
{
	struct perlib *pl = &perlib[lib->index];
	int k = 0;
	fl_lock(pl);
	for (int i = 0; i < pl->n && k < max;) {
		struct cr_curl_easy *e = cr_curl_handles_get(pl->h[i]);
		int expired = 0;
		if (e && cr_curl_pin_take(e)) {
			expired = e->share ? cr_curl_shares_expired(e->share, now_ns)
					   : now_ns - e->freed_ns >= HANDLE_IDLE_NS;
			if (!expired)
				cr_curl_unpin(e, 1);
		}
		if (!expired) {
			i++;
			continue;
		}
		atomic_store_explicit(&e->in_freelist, 0, memory_order_relaxed);
		out[k++] = e;
		pl->h[i] = pl->h[--pl->n];
	}
	fl_unlock(pl);
	return k;
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

/* At curl_global_cleanup (lib.c), after the pools were closed: the app is
 * done with libcurl, and our recycled handles are cleaned up as its own
 * would have been. A share still parked on one (the drain ran out of time,
 * or curl_easy_init was handing the handle out) goes back to its pool
 * first, as at the handle's cleanup. */
void cr_curl_handles_drain(struct cr_curllib *lib)
{
	struct perlib *pl = &perlib[lib->index];
	for (;;) {
		CURL *h = NULL;
		fl_lock(pl);
		if (pl->n > 0)
			h = pl->h[--pl->n];
		fl_unlock(pl);
		if (!h)
			return;
		struct cr_curl_easy *e = cr_curl_handles_get(h);
		if (!e) {
			lib->fns.easy_cleanup(h);
			continue;
		}
		int took = cr_curl_pin(e);
		atomic_store_explicit(&e->in_freelist, 0, memory_order_relaxed);
		if (e->share) {
			cr_curl_shares_recycled(lib, e, 0, 0);
			cr_curl_shares_release(lib, e);
		}
		cr_curl_unpin(e, took);
		cr_curl_handles_destroy(e);
	}
}

/* ------------------------------------------------------------------- URLs */

int cr_curl_parse_url(const char *url, char *scheme, size_t slen, char *host, size_t hlen,
		      int *port)
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
	if (!sep) {
		/* libcurl's guess for a URL without "scheme://" (lib/urlapi.c,
		 * guess_scheme): by the host name's first label, else http. */
		static const char *const guess[] = {"ftp", "dict", "ldap", "imap", "smtp", "pop3"};
		const char *g = "http";
		for (size_t i = 0; i < ARRAY_SIZE(guess); i++) {
			size_t k = strlen(guess[i]);
			if (strncmp(host, guess[i], k) == 0 && host[k] == '.')
				g = guess[i];
		}
		snprintf(scheme, slen, "%s", g);
	}
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
