/* Multi membership records of the libcurl lanes engine (lib/curl/handles.c), driven with
 * libcurl's real functions and no LD_PRELOAD: the shim's curl_multi_* hooks pass through
 * and call cr_curl_multi_added/_removed/_gone, as done here by hand. Invariant
 * (docs/INTERNALS.md, "libcurl lanes", multi handles): a handle attached to a multi is
 * never recycled by curl_easy_cleanup. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "curl/lanes.h"
#include "curl_fns.h"
#include "engine.h"
#include "limit.h"

static struct cr_curllib *lib;
static CURLM *m;

static void setup(void)
{
	struct cr_curlfns f = cr_test_curlfns();
	lib = cr_test_curl_register(&f);
	cr_assert_not_null(lib);
	m = curl_multi_init();
	cr_assert_not_null(m);
}

static void teardown(void)
{
	if (m)
		curl_multi_cleanup(m);
}

static long recycled(void)
{
	struct cr_curl_stats st;
	cr_curl_stats(&st);
	return st.handles_recycled;
}

/* A clean handle (only allowlisted options), attached to M and recorded. */
static CURL *attached(void)
{
	CURL *h = cr_curl_init(lib);
	cr_assert_not_null(h);
	cr_assert_eq(cr_curl_setopt(lib, h, CURLOPT_URL, "http://127.0.0.1:9/", 0, 0), CURLE_OK);
	cr_assert_eq(curl_multi_add_handle(m, h), CURLM_OK);
	cr_curl_multi_added(m, h);
	return h;
}

Test(curlmulti, a_clean_handle_in_no_multi_is_recycled, .init = setup, .fini = teardown)
{
	CURL *h = cr_curl_init(lib);
	long before = recycled();
	cr_curl_cleanup(lib, h);
	cr_expect_eq(recycled(), before + 1);
}

Test(curlmulti, an_attached_handle_is_really_cleaned_up, .init = setup, .fini = teardown)
{
	CURL *h = attached();
	long before = recycled();
	cr_curl_cleanup(lib, h); /* libcurl detaches it */
	cr_expect_eq(recycled(), before);
	/* The next handle is a new one, attached to nothing. */
	CURL *h2 = cr_curl_init(lib);
	cr_assert_not_null(h2);
	cr_expect_eq(curl_multi_add_handle(m, h2), CURLM_OK);
	curl_multi_remove_handle(m, h2);
	cr_curl_cleanup(lib, h2);
}

Test(curlmulti, a_removed_handle_is_recycled_again, .init = setup, .fini = teardown)
{
	CURL *h = attached();
	cr_assert_eq(curl_multi_remove_handle(m, h), CURLM_OK);
	cr_curl_multi_removed(m, h);
	long before = recycled();
	cr_curl_cleanup(lib, h);
	cr_expect_eq(recycled(), before + 1);
}

Test(curlmulti, removal_from_another_multi_changes_nothing, .init = setup, .fini = teardown)
{
	CURL *h = attached();
	cr_curl_multi_removed((CURLM *)&lib, h); /* not its multi */
	long before = recycled();
	cr_curl_cleanup(lib, h);
	cr_expect_eq(recycled(), before);
}

Test(curlmulti, a_reset_keeps_the_handle_attached, .init = setup, .fini = teardown)
{
	CURL *h = attached();
	cr_curl_reset(lib, h);
	long before = recycled();
	cr_curl_cleanup(lib, h);
	cr_expect_eq(recycled(), before);
}

Test(curlmulti, a_duplicate_is_in_no_multi, .init = setup, .fini = teardown)
{
	CURL *h = attached();
	CURL *d = cr_curl_duphandle(lib, h);
	cr_assert_not_null(d);
	long before = recycled();
	cr_curl_cleanup(lib, d);
	cr_expect_eq(recycled(), before + 1);
	cr_curl_cleanup(lib, h);
	cr_expect_eq(recycled(), before + 1);
}

Test(curlmulti, multi_cleanup_detaches_its_handles, .init = setup, .fini = teardown)
{
	CURL *a = attached(), *b = attached();
	cr_assert_eq(curl_multi_cleanup(m), CURLM_OK);
	cr_curl_multi_gone(m);
	m = NULL;
	long before = recycled();
	cr_curl_cleanup(lib, a);
	cr_curl_cleanup(lib, b);
	cr_expect_eq(recycled(), before + 2);
}

/* ------------------------------------------------------ multi transfers in lanes
 *
 * lib/curl/multi.c driven directly, as the shim's multi hooks drive it, with libcurl's real
 * functions and the in-process server of tests/unit/curlpool_server.h (/hold... answered
 * only after ts_release). docs/INTERNALS.md, "libcurl lanes", multi transfers. */
#include <errno.h>
#include <time.h>

#include "cfgref.h"
#include "curlpool_server.h"
#include "health.h"

static void mx_setup(void)
{
	struct cr_curlfns f = cr_test_curlfns();
	f.multi_init = curl_multi_init;
	f.multi_add_handle = curl_multi_add_handle;
	f.multi_remove_handle = curl_multi_remove_handle;
	f.multi_cleanup = curl_multi_cleanup;
	f.global_cleanup = curl_global_cleanup;
	f.multi_setopt = curl_multi_setopt;
	f.multi_perform = curl_multi_perform;
	f.multi_socket_action = curl_multi_socket_action;
	f.multi_socket_all = curl_multi_socket_all;
	f.multi_wait = curl_multi_wait;
	f.multi_poll = curl_multi_poll;
	f.multi_timeout = curl_multi_timeout;
	f.multi_info_read = curl_multi_info_read;
	f.multi_fdset = curl_multi_fdset;
	lib = cr_test_curl_register(&f);
	cr_assert_not_null(lib);
	cr_limits_init(256, NULL, NULL);
	ts_start();
	m = curl_multi_init();
}

static void mx_teardown(void)
{
	ts_release();
	ts_stop();
}

static void mx_load(const char *text)
{
	struct cr_config *cfg = calloc(1, sizeof(*cfg));
	struct cr_diag d;
	cr_assert_eq(cr_config_load_string(text, "test.conf", cfg, &d), 0, "%s", d.msg[0]);
	cr_engine_publish(cfg);
}

static size_t mx_sink(char *p, size_t sz, size_t n, void *ud)
{
	(void)p;
	(void)ud;
	return sz * n;
}

static char errbufs[8][CURL_ERROR_SIZE];

static CURL *mx_handle(const char *path, int i)
{
	char url[128];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", ts_port(), path);
	CURL *h = cr_curl_init(lib);
	cr_curl_setopt(lib, h, CURLOPT_URL, url, 0, 0);
	cr_curl_setopt(lib, h, CURLOPT_WRITEFUNCTION, (void *)mx_sink, 0, 0);
	cr_curl_setopt(lib, h, CURLOPT_NOSIGNAL, NULL, 1, 0);
	cr_curl_setopt(lib, h, CURLOPT_ERRORBUFFER, errbufs[i], 0, 0);
	errbufs[i][0] = '\0';
	return h;
}

/* Drives the known multi until N messages were read (or 5 s); their codes in order of
 * arrival, the handles in hs. */
static int mx_drive(struct cr_mx *x, int n, CURLcode *rcs, CURL **hs)
{
	int got = 0, running = 1;
	long long t0 = (long long)time(NULL);
	while (got < n && time(NULL) - t0 < 5) {
		cr_curl_mx_perform(x, &running);
		CURLMsg *msg;
		int left;
		while ((msg = cr_curl_mx_info_read(x, &left))) {
			rcs[got] = msg->data.result;
			hs[got] = msg->easy_handle;
			got++;
		}
		cr_curl_mx_wait(x, NULL, 0, 100, NULL, 1);
	}
	return got;
}

Test(curlmulti_lanes, unknown_multi_is_not_known, .init = mx_setup, .fini = mx_teardown)
{
	cr_expect_null(cr_curl_mx_get(m));
	CURLM *m2 = curl_multi_init();
	mx_load("[lane default]\n");
	CURL *h = mx_handle("/", 0);
	cr_assert_eq(cr_curl_mx_add(lib, m2, h), CURLM_OK);
	cr_expect_not_null(cr_curl_mx_get(m2));
	cr_expect_null(cr_curl_mx_get(m), "a multi nobody added to is unknown");
	struct cr_mx *x = cr_curl_mx_get(m2);
	cr_expect_eq(cr_curl_mx_remove(x, h), CURLM_OK);
	cr_expect_eq(cr_curl_mx_cleanup(x), CURLM_OK);
	cr_expect_null(cr_curl_mx_get(m2), "gone with its cleanup");
	cr_curl_cleanup(lib, h);
}

/* max_conns_per_host = 1: the second and third transfers wait in the multi's queue (not in
 * libcurl), running_handles counts them, and they reuse the lane's connection. */
Test(curlmulti_lanes, queued_transfers_wait_and_reuse, .init = mx_setup, .fini = mx_teardown)
{
	mx_load("[lane default]\nmax_conns_per_host = 1\nqueue_timeout = 5s\n");
	CURL *h[3];
	for (int i = 0; i < 3; i++) {
		h[i] = mx_handle("/", i);
		cr_assert_eq(cr_curl_mx_add(lib, m, h[i]), CURLM_OK);
	}
	struct cr_mx *x = cr_curl_mx_get(m);
	cr_assert_not_null(x);
	int running = 0;
	cr_curl_mx_perform(x, &running);
	cr_expect_eq(running, 3, "queued transfers are running for the app");
	CURLcode rcs[3];
	CURL *hs[3];
	cr_assert_eq(mx_drive(x, 3, rcs, hs), 3);
	for (int i = 0; i < 3; i++) {
		cr_expect_eq(rcs[i], CURLE_OK, "%s", errbufs[i]);
		cr_expect_eq(hs[i], h[i], "first come, first served");
	}
	cr_expect_eq(ts_accepted(), 1, "one connection for the lane, reused");
	cr_curl_mx_perform(x, &running);
	cr_expect_eq(running, 0);
	for (int i = 0; i < 3; i++) {
		cr_expect_eq(cr_curl_mx_remove(x, h[i]), CURLM_OK);
		cr_curl_cleanup(lib, h[i]);
	}
	cr_expect_eq(cr_curl_mx_cleanup(x), CURLM_OK);
}

Test(curlmulti_lanes, queue_timeout_fails_through_info_read, .init = mx_setup,
     .fini = mx_teardown)
{
	mx_load("[lane default]\nmax_conns_per_host = 1\nqueue_timeout = 100ms\n");
	ts_hold();
	CURL *a = mx_handle("/hold", 0), *b = mx_handle("/", 1);
	cr_assert_eq(cr_curl_mx_add(lib, m, a), CURLM_OK);
	cr_assert_eq(cr_curl_mx_add(lib, m, b), CURLM_OK);
	struct cr_mx *x = cr_curl_mx_get(m);
	CURLcode rcs[2];
	CURL *hs[2];
	cr_assert_eq(mx_drive(x, 1, rcs, hs), 1);
	cr_expect_eq(hs[0], b);
	cr_expect_eq(rcs[0], CURLE_OPERATION_TIMEDOUT);
	cr_expect(strstr(errbufs[1], "lane 'default'") != NULL, "%s", errbufs[1]);
	cr_expect(strstr(errbufs[1], "max_conns_per_host = 1") != NULL, "%s", errbufs[1]);
	char hp[64];
	snprintf(hp, sizeof(hp), "127.0.0.1:%d", ts_port());
	cr_expect(strstr(errbufs[1], hp) != NULL, "%s", errbufs[1]);
	/* Never in libcurl's multi: removed without the real call, then a plain handle. */
	cr_expect_eq(cr_curl_mx_remove(x, b), CURLM_OK);
	cr_expect_eq(cr_curl_mx_remove(x, b), CURLM_OK, "twice is fine, as in libcurl");
	ts_release();
	cr_assert_eq(mx_drive(x, 1, rcs, hs), 1);
	cr_expect_eq(rcs[0], CURLE_OK);
	cr_expect_eq(cr_curl_mx_remove(x, a), CURLM_OK);
	cr_curl_cleanup(lib, a);
	cr_curl_cleanup(lib, b);
	cr_expect_eq(cr_curl_mx_cleanup(x), CURLM_OK);
}

Test(curlmulti_lanes, messages_count_and_go_with_their_handle, .init = mx_setup,
     .fini = mx_teardown)
{
	mx_load("[lane default]\n");
	CURL *h[3];
	for (int i = 0; i < 3; i++) {
		h[i] = mx_handle("/", i);
		cr_assert_eq(cr_curl_mx_add(lib, m, h[i]), CURLM_OK);
	}
	struct cr_mx *x = cr_curl_mx_get(m);
	int running = 1;
	for (int k = 0; k < 500 && running; k++) {
		cr_curl_mx_perform(x, &running);
		if (running)
			cr_curl_mx_wait(x, NULL, 0, 100, NULL, 0);
	}
	cr_assert_eq(running, 0);
	/* Three messages; one handle removed before they are read: two left. */
	cr_expect_eq(cr_curl_mx_remove(x, h[1]), CURLM_OK);
	int left = -1;
	CURLMsg *a = cr_curl_mx_info_read(x, &left);
	cr_assert_not_null(a);
	cr_expect_eq(left, 1);
	cr_expect_neq(a->easy_handle, h[1]);
	CURLMsg *b = cr_curl_mx_info_read(x, &left);
	cr_assert_not_null(b);
	cr_expect_eq(left, 0);
	cr_expect_neq(b->easy_handle, h[1]);
	/* libcurl's lifetime: the first message is still readable. */
	cr_expect_eq(a->msg, CURLMSG_DONE);
	cr_expect_eq(a->data.result, CURLE_OK);
	cr_expect_null(cr_curl_mx_info_read(x, &left));
	cr_expect_eq(left, 0);
	for (int i = 0; i < 3; i++)
		cr_curl_cleanup(lib, h[i]); /* still attached (0, 2): cleanup removes them */
	cr_expect_eq(cr_curl_mx_cleanup(x), CURLM_OK);
}

/* An event loop with a single-shot timer (what event libraries give): while a transfer is
 * queued the app's timer is armed for the queue's check, and once libcurl's own expiry is
 * the earlier again it is re-armed with it, so nothing is lost. */
static long app_timer_ms = -2;
static int app_timer_calls;
static int app_timer(CURLM *mm, long ms, void *ud)
{
	(void)mm;
	(void)ud;
	app_timer_ms = ms;
	app_timer_calls++;
	return 0;
}

Test(curlmulti_lanes, timer_wrapper_arms_for_the_queue, .init = mx_setup, .fini = mx_teardown)
{
	mx_load("[lane default]\nmax_conns_per_host = 1\nqueue_timeout = 5s\n");
	cr_assert_eq(cr_curl_mx_setopt(lib, m, CURLMOPT_TIMERFUNCTION, (void *)app_timer),
		     CURLM_OK);
	cr_assert_eq(cr_curl_mx_setopt(lib, m, CURLMOPT_TIMERDATA, NULL), CURLM_OK);
	struct cr_mx *x = cr_curl_mx_get(m);
	cr_assert_not_null(x);
	ts_hold();
	CURL *a = mx_handle("/hold", 0), *b = mx_handle("/", 1);
	cr_assert_eq(cr_curl_mx_add(lib, m, a), CURLM_OK);
	cr_expect_eq(app_timer_ms, 0, "libcurl asks to be run now for a new transfer");
	cr_assert_eq(cr_curl_mx_add(lib, m, b), CURLM_OK);
	int running = 0;
	/* The single-shot timer fires: the app runs libcurl's timeout. */
	app_timer_ms = -2;
	cr_curl_mx_socket_action(x, CURL_SOCKET_TIMEOUT, 0, &running);
	cr_expect_eq(running, 2);
	cr_expect_geq(app_timer_ms, 0, "the app's timer is armed while a transfer is queued");
	cr_expect_leq(app_timer_ms, 20, "... for the queue's next check");
	/* Nothing changes: asking again does not call the app's timer again. */
	int calls = app_timer_calls;
	long ms = -1;
	cr_curl_mx_timeout(x, &ms);
	cr_expect_leq(ms, 20);
	cr_expect_geq(ms, 0);
	cr_expect_eq(app_timer_calls, calls);
	/* Without an event loop around it, run it to the end by hand. */
	ts_release();
	CURLcode rcs[2];
	CURL *hs[2];
	cr_assert_eq(mx_drive(x, 2, rcs, hs), 2);
	cr_expect_eq(rcs[0], CURLE_OK);
	cr_expect_eq(rcs[1], CURLE_OK);
	/* Queue empty: the app's timer holds libcurl's expiry again (none left, or libcurl's). */
	cr_curl_mx_socket_action(x, CURL_SOCKET_TIMEOUT, 0, &running);
	cr_expect_eq(running, 0);
	cr_expect(app_timer_ms == -1 || app_timer_ms > 20, "timer %ld", app_timer_ms);
	cr_curl_mx_remove(x, a);
	cr_curl_mx_remove(x, b);
	cr_curl_cleanup(lib, a);
	cr_curl_cleanup(lib, b);
	cr_expect_eq(cr_curl_mx_cleanup(x), CURLM_OK);
}

/* The handle's app values are back after removal: the lane's timeout on it is gone. */
Test(curlmulti_lanes, lane_options_while_in_the_multi_only, .init = mx_setup,
     .fini = mx_teardown)
{
	mx_load("[lane default]\nrequest_timeout = 50ms\n");
	ts_hold();
	CURL *a = mx_handle("/hold", 0);
	cr_assert_eq(cr_curl_mx_add(lib, m, a), CURLM_OK);
	struct cr_mx *x = cr_curl_mx_get(m);
	CURLcode rcs[1];
	CURL *hs[1];
	cr_assert_eq(mx_drive(x, 1, rcs, hs), 1);
	cr_expect_eq(rcs[0], CURLE_OPERATION_TIMEDOUT, "the lane's request_timeout applies");
	cr_expect_eq(cr_curl_mx_remove(x, a), CURLM_OK);
	/* Out of the multi, driven by another (unknown) multi with no lane: the app's values,
	 * no timeout: it waits for the held answer. */
	CURLM *plain = curl_multi_init();
	cr_assert_eq(curl_multi_add_handle(plain, a), CURLM_OK);
	int running = 1;
	for (int k = 0; k < 3; k++) {
		curl_multi_perform(plain, &running);
		curl_multi_poll(plain, NULL, 0, 50, NULL);
	}
	curl_multi_perform(plain, &running);
	cr_expect_eq(running, 1, "the lane's timeout stayed on the handle");
	ts_release();
	curl_multi_remove_handle(plain, a);
	curl_multi_cleanup(plain);
	cr_curl_cleanup(lib, a);
	cr_expect_eq(cr_curl_mx_cleanup(x), CURLM_OK);
}

/* Cleanup in every state: a queued, an added and a finished transfer; the multi's cleanup
 * gives the shares back (ASan: nothing leaks, nothing is used after free). */
Test(curlmulti_lanes, cleanup_with_transfers_in_every_state, .init = mx_setup,
     .fini = mx_teardown)
{
	mx_load("[lane default]\nmax_conns_per_host = 1\nqueue_timeout = 5s\n");
	CURL *done = mx_handle("/", 0);
	cr_assert_eq(cr_curl_mx_add(lib, m, done), CURLM_OK);
	struct cr_mx *x = cr_curl_mx_get(m);
	CURLcode rcs[1];
	CURL *hs[1];
	cr_assert_eq(mx_drive(x, 1, rcs, hs), 1);
	ts_hold();
	CURL *added = mx_handle("/hold", 1), *queued = mx_handle("/", 2);
	cr_assert_eq(cr_curl_mx_add(lib, m, added), CURLM_OK);
	cr_assert_eq(cr_curl_mx_add(lib, m, queued), CURLM_OK);
	int running = 0;
	cr_curl_mx_perform(x, &running);
	cr_expect_eq(running, 2);
	cr_curl_cleanup(lib, queued); /* the app cleans up a queued handle */
	cr_expect_eq(cr_curl_mx_cleanup(x), CURLM_OK);
	ts_release();
	cr_curl_cleanup(lib, added);
	cr_curl_cleanup(lib, done);
	/* Its unit came back: a new transfer in a new multi starts at once. */
	m = curl_multi_init();
	CURL *again = mx_handle("/", 3);
	cr_assert_eq(cr_curl_mx_add(lib, m, again), CURLM_OK);
	x = cr_curl_mx_get(m);
	cr_curl_mx_perform(x, &running);
	cr_assert_eq(mx_drive(x, 1, rcs, hs), 1);
	cr_expect_eq(rcs[0], CURLE_OK);
	cr_curl_cleanup(lib, again);
	cr_expect_eq(cr_curl_mx_cleanup(x), CURLM_OK);
}

/* Resilience (docs/INTERNALS.md, "Resilience"): the lane's breaker is asked when a transfer is
 * about to be added to libcurl, after the queue. One admitted while it was closed runs; one
 * that waited in the queue meanwhile is refused when its unit comes, and one added while it
 * is open at its add: CURLE_COULDNT_CONNECT through info_read, the easy path's message,
 * nothing sent; for the latter, the app's single-shot timer is armed at once (libcurl never
 * had the handle, so only that brings an event loop back for the message). */
Test(curlmulti_lanes, breaker_refuses_at_admission, .init = mx_setup, .fini = mx_teardown)
{
	cr_health_reset();
	mx_load("[lane default]\nmax_conns_per_host = 1\nqueue_timeout = 5s\n"
		"breaker_failure_ratio = 0.5\nbreaker_min_requests = 2\nbreaker_open = 30s\n");
	cr_assert_eq(cr_curl_mx_setopt(lib, m, CURLMOPT_TIMERFUNCTION, (void *)app_timer),
		     CURLM_OK);
	ts_hold();
	CURL *a = mx_handle("/hold", 0), *b = mx_handle("/", 1);
	cr_assert_eq(cr_curl_mx_add(lib, m, a), CURLM_OK);
	cr_assert_eq(cr_curl_mx_add(lib, m, b), CURLM_OK); /* queued behind a */
	struct cr_mx *x = cr_curl_mx_get(m);
	cr_assert_not_null(x);
	int running = 0;
	cr_curl_mx_perform(x, &running);
	cr_expect_eq(running, 2);
	/* Two failures of the host (other transfers' reports): open. */
	const struct cr_config *c = cr_cfgref_acquire();
	const struct cr_lane *l = &c->lanes[c->default_lane];
	uint64_t host = cr_health_host_name("127.0.0.1", ts_port());
	int64_t now = cr_health_now();
	for (int i = 0; i < 2; i++)
		cr_health_result(l, host,
				 cr_health_admit(l, host, "127.0.0.1", ts_port(), now, NULL), 0,
				 now);
	cr_expect_eq(cr_health_admit(l, host, "127.0.0.1", ts_port(), now, NULL), CR_ADMIT_NO);
	cr_cfgref_release(c);
	ts_release();
	CURLcode rcs[2];
	CURL *hs[2];
	cr_assert_eq(mx_drive(x, 2, rcs, hs), 2);
	cr_expect_eq(hs[0], a);
	cr_expect_eq(rcs[0], CURLE_OK);
	cr_expect_eq(hs[1], b);
	cr_expect_eq(rcs[1], CURLE_COULDNT_CONNECT);
	char want[160];
	snprintf(want, sizeof(want),
		 "connroute: lane 'default': circuit breaker open for 127.0.0.1:%d; request not "
		 "sent",
		 ts_port());
	cr_expect_str_eq(errbufs[1], want);
	/* Refused at its add. */
	CURL *d = mx_handle("/", 2);
	app_timer_ms = -2;
	cr_assert_eq(cr_curl_mx_add(lib, m, d), CURLM_OK);
	cr_expect_eq(app_timer_ms, 0, "the app's loop must come back for the message");
	int left = -1;
	cr_curl_mx_socket_action(x, CURL_SOCKET_TIMEOUT, 0, &running);
	CURLMsg *msg = cr_curl_mx_info_read(x, &left);
	cr_assert_not_null(msg);
	cr_expect_eq(msg->easy_handle, d);
	cr_expect_eq(msg->data.result, CURLE_COULDNT_CONNECT);
	cr_expect_str_eq(errbufs[2], want);
	cr_expect_eq(ts_requests(), 1, "refused transfers send nothing");
	cr_expect_eq(cr_curl_mx_remove(x, a), CURLM_OK);
	cr_expect_eq(cr_curl_mx_remove(x, b), CURLM_OK);
	cr_expect_eq(cr_curl_mx_remove(x, d), CURLM_OK);
	cr_curl_cleanup(lib, a);
	cr_curl_cleanup(lib, b);
	cr_curl_cleanup(lib, d);
	cr_expect_eq(cr_curl_mx_cleanup(x), CURLM_OK);
}

/* A perform left by a jump, then a fork before it is settled: the child's limit counts start
 * at 0, so settling the parent's entry in the child must not give back the unit a child's
 * transfer holds (docs/INTERNALS.md, "libcurl lanes", left by a jump). */
Test(curl_left, fork_child_keeps_its_own_unit)
{
	cr_assert_eq(cr_limits_init(64, NULL, NULL), 0);
	struct cr_dest a = {.family = AF_INET, .port = 80};
	uint32_t slot = cr_limit_slot(0, &a);
	uint64_t w = 0;
	cr_assert_eq(cr_limit_acquire(slot, 1, 0, &w), 0); /* the parent's perform's unit */
	struct cr_curl_pframe pf = CR_CURL_PFRAME0;
	pf.slot = slot;
	cr_curl_perform_left(&pf);
	cr_assert_eq(atomic_load(&cr_curl_left_n), 1);
	/* fork: the child's handlers (shim/init.c's order) */
	cr_curl_atfork_child();
	cr_limits_reset_child();
	cr_assert_eq(cr_limit_acquire(slot, 1, 0, &w), 0); /* a child's transfer */
	cr_curl_left_check();                              /* the child's next easy call */
	cr_expect_eq(atomic_load(&cr_curl_left_n), 0);
	cr_expect_eq(cr_limit_inuse(slot), 1, "the child's unit was given back");
	cr_expect_neq(cr_limit_acquire(slot, 1, 0, &w), 0, "max_conns_per_host exceeded");
}
