/* The libcurl lanes engine driven directly (no LD_PRELOAD): libcurl's real
 * functions registered as one library, an in-process HTTP server counting
 * the connections it accepts. Also built standalone for TSan (see
 * tests/stress/). */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "curl/lanes.h"
#include "engine.h"
#include "key.h"
#include "limit.h"
#include "route.h"

#include "curl_fns.h"
#include "curlpool_server.h"

static struct cr_curllib *lib;

static size_t sink(char *p, size_t sz, size_t n, void *ud)
{
	(void)p;
	(void)ud;
	return sz * n;
}

static void setup(void)
{
	struct cr_curlfns f = cr_test_curlfns();
	f.easy_upkeep = curl_easy_upkeep;
	f.easy_header = curl_easy_header;
	f.easy_nextheader = curl_easy_nextheader;
	lib = cr_test_curl_register(&f);
	cr_limits_init(256, NULL, NULL);
	ts_start();
}

static void load(const char *text)
{
	struct cr_config *cfg = calloc(1, sizeof(*cfg));
	struct cr_diag d;
	if (text)
		cr_assert_eq(cr_config_load_string(text, "test.conf", cfg, &d), 0, "%s", d.msg[0]);
	else
		cr_config_builtin(cfg);
	cr_engine_publish(cfg);
}

static int one_request(const char *path)
{
	char url[128];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", ts_port(), path);
	CURL *h = cr_curl_init(lib);
	cr_curl_setopt(lib, h, CURLOPT_URL, url, 0, 0);
	cr_curl_setopt(lib, h, CURLOPT_WRITEFUNCTION, (void *)sink, 0, 0);
	cr_curl_setopt(lib, h, CURLOPT_NOSIGNAL, NULL, 1, 0);
	CURLcode rc = cr_curl_perform(lib, h);
	cr_curl_cleanup(lib, h);
	return rc;
}

Test(curlpool, fresh_handles_reuse_one_connection, .init = setup, .fini = ts_stop)
{
	load(NULL);
	for (int i = 0; i < 20; i++)
		cr_assert_eq(one_request("/"), CURLE_OK);
	cr_expect_eq(ts_accepted(), 1, "20 handles, one connection");
	struct cr_curl_stats st;
	cr_curl_stats(&st);
	cr_expect_eq(st.performs_pooled, 20);
	cr_expect_geq(st.handles_reused, 19, "clean handles are recycled");
}

Test(curlpool, lanes_never_share_connections, .init = setup, .fini = ts_stop)
{
	load("[lane a]\nmatch = */a\n[lane b]\nmatch = */b\n");
	cr_key_set("x/a");
	one_request("/");
	one_request("/");
	cr_key_set("x/b");
	one_request("/");
	one_request("/");
	cr_key_set(NULL);
	cr_expect_eq(ts_accepted(), 2, "one connection per lane");
}

Test(curlpool, max_idle_zero_disables_pooling, .init = setup, .fini = ts_stop)
{
	load("[lane default]\nmax_idle_per_host = 0\n");
	for (int i = 0; i < 3; i++)
		one_request("/");
	cr_expect_eq(ts_accepted(), 3);
}

Test(curlpool, cookie_handles_are_not_recycled, .init = setup, .fini = ts_stop)
{
	load(NULL);
	char url[128];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", ts_port());
	CURL *h = cr_curl_init(lib);
	cr_curl_setopt(lib, h, CURLOPT_URL, url, 0, 0);
	cr_curl_setopt(lib, h, CURLOPT_COOKIEFILE, "", 0, 0);
	cr_curl_setopt(lib, h, CURLOPT_WRITEFUNCTION, (void *)sink, 0, 0);
	cr_curl_perform(lib, h);
	struct cr_curl_stats before, after;
	cr_curl_stats(&before);
	cr_curl_cleanup(lib, h);
	cr_curl_stats(&after);
	cr_expect_eq(after.handles_recycled, before.handles_recycled,
		     "a handle that had cookies is really cleaned up, never recycled");
	one_request("/");
	cr_curl_stats(&after);
	cr_expect_eq(after.handles_recycled, before.handles_recycled + 1, "a clean one is");
}

static void *worker(void *arg)
{
	intptr_t lane = (intptr_t)arg;
	cr_key_set(lane ? "w/b" : "w/a");
	for (int i = 0; i < 100; i++)
		if (one_request("/") != CURLE_OK)
			return (void *)1;
	return NULL;
}

Test(curlpool, threads_share_pools_safely, .init = setup, .fini = ts_stop, .timeout = 60)
{
	pthread_t t[8];
	load("[lane a]\nmatch = */a\n[lane b]\nmatch = */b\n");
	for (intptr_t i = 0; i < 8; i++)
		pthread_create(&t[i], NULL, worker, (void *)(i % 2));
	int bad = 0;
	for (int i = 0; i < 8; i++) {
		void *r;
		pthread_join(t[i], &r);
		bad += r != NULL;
	}
	cr_expect_eq(bad, 0);
	/* 8 concurrent transfers; under heavy load one connection was seen
	 * replaced now and then (9 in ~1 of 12 runs at --jobs 4): allow 2. */
	cr_expect_leq(ts_accepted(), 10, "about one connection per concurrent transfer (got %d)", ts_accepted());
}

/* Two requests with URL http://HOST:PORT/ and a CURLOPT_RESOLVE entry for HOST: its own
 * pool flavour (a connection made to a resolve entry's address is reused only by handles
 * that resolve the name the same way). */
static void two_requests_resolved(const char *host)
{
	char url[128], entry[128];
	snprintf(url, sizeof(url), "http://%s:%d/", host, ts_port());
	snprintf(entry, sizeof(entry), "%s:%d:127.0.0.1", host, ts_port());
	struct curl_slist *rl = curl_slist_append(NULL, entry);
	for (int k = 0; k < 2; k++) {
		CURL *h = cr_curl_init(lib);
		cr_curl_setopt(lib, h, CURLOPT_URL, url, 0, 0);
		cr_curl_setopt(lib, h, CURLOPT_RESOLVE, rl, 0, 0);
		cr_curl_setopt(lib, h, CURLOPT_WRITEFUNCTION, (void *)sink, 0, 0);
		cr_curl_setopt(lib, h, CURLOPT_NOSIGNAL, NULL, 1, 0);
		cr_expect_eq(cr_curl_perform(lib, h), CURLE_OK, "%s", url);
		cr_curl_cleanup(lib, h);
	}
	curl_slist_free_all(rl);
}

/* More distinct CURLOPT_RESOLVE lists than there are pool slots: the least recently used
 * idle pool makes room, so every perform is still pooled, and each flavour's second
 * request rides on its first one's connection. */
Test(curlpool, many_resolve_flavours_stay_pooled, .init = setup, .fini = ts_stop, .timeout = 60)
{
	load(NULL);
	for (int i = 0; i < 200; i++) {
		char host[32];
		snprintf(host, sizeof(host), "h%d.test", i);
		two_requests_resolved(host);
	}
	struct cr_curl_stats st;
	cr_curl_stats(&st);
	cr_expect_eq(st.performs_pooled, 400, "pooled %ld, unpooled %ld", st.performs_pooled, st.performs_unpooled);
	cr_expect_eq(ts_accepted(), 200, "one connection per flavour, got %d", ts_accepted());
}

/* Every publish changes the lane's connection settings (keepalive), so the old pool is
 * retired: its slot is free again once its shares are gone. */
Test(curlpool, retired_pools_free_their_slots, .init = setup, .fini = ts_stop, .timeout = 60)
{
	for (int i = 0; i < 200; i++) {
		char text[64];
		snprintf(text, sizeof(text), "[lane default]\nkeepalive = %ds\n", i + 1);
		load(text);
		cr_assert_eq(one_request("/"), CURLE_OK);
		cr_assert_eq(one_request("/"), CURLE_OK);
	}
	struct cr_curl_stats st;
	cr_curl_stats(&st);
	cr_expect_eq(st.performs_pooled, 400, "pooled %ld, unpooled %ld", st.performs_pooled, st.performs_unpooled);
	cr_expect_eq(ts_accepted(), 200, "one connection per config, got %d", ts_accepted());
}

static void *held_request(void *arg)
{
	char host[32];
	snprintf(host, sizeof(host), "held%d.test", (int)(intptr_t)arg);
	char url[128], entry[128];
	snprintf(url, sizeof(url), "http://%s:%d/hold", host, ts_port());
	snprintf(entry, sizeof(entry), "%s:%d:127.0.0.1", host, ts_port());
	struct curl_slist *rl = curl_slist_append(NULL, entry);
	CURL *h = cr_curl_init(lib);
	cr_curl_setopt(lib, h, CURLOPT_URL, url, 0, 0);
	cr_curl_setopt(lib, h, CURLOPT_RESOLVE, rl, 0, 0);
	cr_curl_setopt(lib, h, CURLOPT_WRITEFUNCTION, (void *)sink, 0, 0);
	cr_curl_setopt(lib, h, CURLOPT_NOSIGNAL, NULL, 1, 0);
	CURLcode rc = cr_curl_perform(lib, h);
	cr_curl_cleanup(lib, h);
	curl_slist_free_all(rl);
	return (void *)(intptr_t)rc;
}

/* Every pool slot holds a pool with a transfer in flight: a perform of yet another
 * flavour finds no room and runs unpooled, and that is counted (and logged once). */
Test(curlpool, no_room_is_counted, .init = setup, .fini = ts_stop, .timeout = 60)
{
	enum { N = CR_CURL_SHARE_POOLS_MAX + 4 };
	static pthread_t t[N];
	load(NULL);
	ts_hold();
	for (intptr_t i = 0; i < N; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, held_request, (void *)i), 0);
	for (int i = 0; i < 3000 && ts_requests() < N; i++)
		usleep(10000);
	cr_assert_eq(ts_requests(), N, "all transfers in flight");
	struct cr_curl_stats st;
	cr_curl_stats(&st);
	ts_release();
	int bad = 0;
	for (int i = 0; i < N; i++) {
		void *r;
		pthread_join(t[i], &r);
		bad += r != (void *)(intptr_t)CURLE_OK;
	}
	cr_expect_eq(bad, 0);
	cr_expect_eq(st.performs_pooled, CR_CURL_SHARE_POOLS_MAX, "pooled %ld", st.performs_pooled);
	cr_expect_eq(st.performs_unpooled, 4, "unpooled %ld", st.performs_unpooled);
	cr_expect_eq(st.unpooled_no_room, 4, "counted %ld", st.unpooled_no_room);
}

/* ------------------------------------------------------------ parked shares */

static CURL *handle_for(const char *path)
{
	static char url[4][128];
	static int k;
	char *u = url[k++ % 4];
	snprintf(u, 128, "http://127.0.0.1:%d%s", ts_port(), path);
	CURL *h = cr_curl_init(lib);
	cr_curl_setopt(lib, h, CURLOPT_URL, u, 0, 0);
	cr_curl_setopt(lib, h, CURLOPT_WRITEFUNCTION, (void *)sink, 0, 0);
	cr_curl_setopt(lib, h, CURLOPT_NOSIGNAL, NULL, 1, 0);
	return h;
}

/* A persistent handle keeps its share between performs: one share, no hand-over. */
Test(curlpool, persistent_handle_keeps_its_share, .init = setup, .fini = ts_stop)
{
	load(NULL);
	CURL *h = handle_for("/");
	for (int i = 0; i < 20; i++)
		cr_assert_eq(cr_curl_perform(lib, h), CURLE_OK);
	curl_socket_t fd = CURL_SOCKET_BAD;
	cr_curl_getinfo(lib, h, CURLINFO_ACTIVESOCKET, &fd);
	cr_expect_neq(fd, CURL_SOCKET_BAD, "the handle still has its connection after the perform");
	cr_curl_cleanup(lib, h);
	struct cr_curl_stats st;
	cr_curl_stats(&st);
	cr_expect_eq(st.shares_created, 1);
	cr_expect_eq(st.shares_taken, 0);
	cr_expect_eq(ts_accepted(), 1);
}

/* A handle idle long enough gives its share to another handle of the pool that needs one;
 * it gets one back (taken from the other, idle by then) at its next perform: two handles
 * used in turn share one connection. */
Test(curlpool, idle_handle_share_is_taken, .init = setup, .fini = ts_stop)
{
	load(NULL);
	cr_curl_set_steal_idle_ms(0);
	CURL *a = handle_for("/"), *b = handle_for("/");
	for (int i = 0; i < 5; i++) {
		cr_assert_eq(cr_curl_perform(lib, a), CURLE_OK);
		cr_assert_eq(cr_curl_perform(lib, b), CURLE_OK);
	}
	curl_socket_t fd = 0;
	cr_curl_getinfo(lib, a, CURLINFO_ACTIVESOCKET, &fd);
	cr_expect_eq(fd, CURL_SOCKET_BAD, "a's share was taken: its connection is gone from it");
	cr_curl_cleanup(lib, a);
	cr_curl_cleanup(lib, b);
	struct cr_curl_stats st;
	cr_curl_stats(&st);
	cr_expect_eq(st.shares_created, 1, "shares %ld", st.shares_created);
	cr_expect_eq(st.shares_taken, 9, "taken %ld", st.shares_taken);
	cr_expect_eq(ts_accepted(), 1);
}

/* ... but never before CR_CURL_STEAL_IDLE_MS (1 s) of idleness: a second share then. */
Test(curlpool, busy_handle_keeps_its_share, .init = setup, .fini = ts_stop)
{
	load(NULL);
	CURL *a = handle_for("/"), *b = handle_for("/");
	cr_assert_eq(cr_curl_perform(lib, a), CURLE_OK);
	cr_assert_eq(cr_curl_perform(lib, b), CURLE_OK);
	cr_assert_eq(cr_curl_perform(lib, a), CURLE_OK);
	cr_curl_cleanup(lib, a);
	cr_curl_cleanup(lib, b);
	struct cr_curl_stats st;
	cr_curl_stats(&st);
	cr_expect_eq(st.shares_created, 2);
	cr_expect_eq(st.shares_taken, 0);
}

/* The idle bound holds across shares: 5 handles with a connection each, cleaned up, leave
 * max_idle_per_host (2) idle shares; the others are closed. */
Test(curlpool, idle_bound_across_shares, .init = setup, .fini = ts_stop)
{
	load("[lane default]\nmax_idle_per_host = 2\n");
	CURL *h[5];
	for (int i = 0; i < 5; i++) {
		h[i] = handle_for("/");
		cr_assert_eq(cr_curl_perform(lib, h[i]), CURLE_OK);
	}
	for (int i = 0; i < 5; i++)
		cr_curl_cleanup(lib, h[i]);
	struct cr_curl_stats st;
	cr_curl_stats(&st);
	cr_expect_eq(st.shares_created, 5);
	cr_expect_eq(st.shares_closed_idle, 3, "closed %ld", st.shares_closed_idle);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(one_request("/"), CURLE_OK);
	cr_expect_eq(ts_accepted(), 5, "the 2 kept ones are reused: %d", ts_accepted());
}

/* The sweep closes a recycled handle's share once idle for idle_timeout; the next request
 * connects anew. */
Test(curlpool, sweep_closes_idle_shares, .init = setup, .fini = ts_stop)
{
	load("[lane default]\nidle_timeout = 50ms\n");
	cr_curl_set_sweep_every_ms(0);
	cr_assert_eq(one_request("/"), CURLE_OK);
	cr_curl_idle_sweep();
	struct cr_curl_stats st;
	cr_curl_stats(&st);
	cr_expect_eq(st.shares_closed_idle, 0, "not idle long enough yet");
	usleep(120000);
	cr_curl_idle_sweep();
	cr_curl_stats(&st);
	cr_expect_eq(st.shares_closed_idle, 1);
	cr_assert_eq(one_request("/"), CURLE_OK);
	cr_expect_eq(ts_accepted(), 2);
}

/* What a life set and the next does not set again is put back: PRIVATE of a recycled
 * handle reads NULL before and after its perform. */
Test(curlpool, recycled_handle_forgets_the_last_life, .init = setup, .fini = ts_stop)
{
	load(NULL);
	static int tag;
	cr_assert_eq(one_request("/"), CURLE_OK); /* the connection is made (that life ends with a reset) */
	struct cr_curl_stats st0;
	cr_curl_stats(&st0);
	CURL *h = handle_for("/");
	cr_curl_setopt(lib, h, CURLOPT_PRIVATE, &tag, 0, 0);
	cr_assert_eq(cr_curl_perform(lib, h), CURLE_OK);
	cr_curl_cleanup(lib, h);
	CURL *h2 = handle_for("/");
	cr_assert_eq(h2, h, "recycled");
	void *p = &tag;
	long code = -1;
	cr_curl_getinfo(lib, h2, CURLINFO_PRIVATE, &p);
	cr_curl_getinfo(lib, h2, CURLINFO_RESPONSE_CODE, &code);
	cr_expect_null(p);
	cr_expect_eq(code, 0, "a fresh handle has no response code");
	cr_assert_eq(cr_curl_perform(lib, h2), CURLE_OK);
	p = &tag;
	cr_curl_getinfo(lib, h2, CURLINFO_PRIVATE, &p);
	cr_expect_null(p);
	cr_curl_cleanup(lib, h2);
	struct cr_curl_stats st;
	cr_curl_stats(&st);
	cr_expect_eq(st.recycled_lazy - st0.recycled_lazy, 2, "both lives recycled without a reset");
	cr_expect_geq(st.twins, 1, "the stale handle's getinfo answered by a twin");
}
