/* Unit tests of lib/health.c: outlier ejection (consecutive failures, the
 * growing eject time and its cap, eject_max and the least-recently-ejected
 * rule, probation), the circuit breaker (window, min requests, open,
 * half-open probes), the retry token bucket, and concurrent use. The clock
 * is the tests' own: every call takes the time. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>

#include "base.h"
#include "config.h"
#include "health.h"
#include "metrics.h"

static struct cr_lane lane(int id)
{
	struct cr_lane l;
	memset(&l, 0, sizeof(l));
	snprintf(l.name, sizeof(l.name), "l%d", id);
	l.id = id;
	l.eject_after = 3;
	l.eject_time_ms = 1000;
	l.eject_max = 0.5;
	l.breaker_failure_ratio = 0.5;
	l.breaker_window_ms = 10000;
	l.breaker_min_requests = 10;
	l.breaker_open_ms = 500;
	l.breaker_probes = 3;
	l.retry_tokens = 10;
	l.retry_token_ratio = 0.1;
	l.health = CR_H_EJECT | CR_H_BREAKER | CR_H_THROTTLE;
	l.health_hash = cr_config_lane_health_hash(&l);
	return l;
}

static struct cr_dest addr(const char *ip, int port)
{
	struct cr_dest d = {.family = AF_INET, .port = (uint16_t)port};
	inet_pton(AF_INET, ip, d.addr);
	return d;
}

static void setup(void)
{
	cr_health_reset();
	cr_metrics_reset();
}

TestSuite(health, .init = setup);

#define G cr_health_host_name("api", 80)

static void fail_n(const struct cr_lane *l, const struct cr_dest *d, int n, int64_t now)
{
	for (int i = 0; i < n; i++)
		cr_health_addr_result(l, G, d, 0, now);
}

Test(health, consecutive_failures_eject_and_time_grows_to_the_cap)
{
	struct cr_lane l = lane(1);
	struct cr_dest a = addr("127.0.0.1", 80), b = addr("127.0.0.2", 80);
	cr_expect_eq(cr_health_ejected(&l, G, &a, 0), 0);
	cr_expect_eq(cr_health_ejected(&l, G, &b, 0), 0);
	fail_n(&l, &b, 2, 10);
	cr_health_addr_result(&l, G, &b, 1, 11); /* a success breaks the run */
	fail_n(&l, &b, 2, 12);
	cr_expect_eq(cr_health_ejected(&l, G, &b, 13), 0, "2 in a row are not 3");
	fail_n(&l, &b, 1, 14);
	cr_expect_eq(cr_health_ejected(&l, G, &b, 15), 1);
	cr_expect_eq(cr_health_ejected_count(1, 15), 1);
	cr_expect_eq(cr_health_ejected(&l, G, &a, 15), 0, "the other address stays in");
	cr_expect_eq(cr_health_ejected(&l, G, &b, 14 + 999), 1);
	cr_expect_eq(cr_health_ejected(&l, G, &b, 14 + 1000), 0, "back after eject_time");
	/* On probation: one failure ejects again, for twice as long. */
	fail_n(&l, &b, 1, 2000);
	cr_expect_eq(cr_health_ejected(&l, G, &b, 2000 + 1999), 1);
	cr_expect_eq(cr_health_ejected(&l, G, &b, 2000 + 2000), 0);
	/* ... and so on up to 10 x eject_time. */
	int64_t t = 4000;
	for (int k = 3; k <= 12; k++) {
		fail_n(&l, &b, 1, t);
		long want = (k < CR_EJECT_MULT_MAX ? k : CR_EJECT_MULT_MAX) * 1000L;
		cr_expect_eq(cr_health_ejected(&l, G, &b, t + want - 1), 1, "ejection %d", k);
		cr_expect_eq(cr_health_ejected(&l, G, &b, t + want), 0, "ejection %d", k);
		t += want;
	}
}

Test(health, success_on_probation_ends_it)
{
	struct cr_lane l = lane(1);
	struct cr_dest a = addr("127.0.0.1", 80), b = addr("127.0.0.2", 80);
	cr_health_ejected(&l, G, &a, 0);
	fail_n(&l, &b, 3, 0);
	cr_expect_eq(cr_health_ejected(&l, G, &b, 1000), 0);
	cr_health_addr_result(&l, G, &b, 1, 1001);
	fail_n(&l, &b, 2, 1002);
	cr_expect_eq(cr_health_ejected(&l, G, &b, 1003), 0, "probation over: 3 failures again");
	fail_n(&l, &b, 1, 1004);
	cr_expect_eq(cr_health_ejected(&l, G, &b, 1005), 1);
}

Test(health, a_single_address_host_is_never_ejected)
{
	struct cr_lane l = lane(1);
	struct cr_dest a = addr("127.0.0.1", 80);
	fail_n(&l, &a, 10, 0);
	cr_expect_eq(cr_health_ejected(&l, G, &a, 1), 0);
	cr_expect_eq(cr_health_ejected_count(1, 1), 0);
}

Test(health, eject_max_keeps_the_least_recently_ejected_in)
{
	struct cr_lane l = lane(1);
	struct cr_dest a[4] = {addr("10.0.0.1", 80), addr("10.0.0.2", 80), addr("10.0.0.3", 80),
			       addr("10.0.0.4", 80)};
	for (int i = 0; i < 4; i++)
		cr_health_ejected(&l, G, &a[i], 0);
	/* 4 known x 50%: at most 2 out. */
	fail_n(&l, &a[0], 3, 10);
	fail_n(&l, &a[1], 3, 20);
	cr_expect_eq(cr_health_ejected_count(1, 30), 2);
	fail_n(&l, &a[2], 3, 30);
	cr_expect_eq(cr_health_ejected_count(1, 31), 2);
	cr_expect_eq(cr_health_ejected(&l, G, &a[0], 31), 0, "the least recently ejected is back");
	cr_expect_eq(cr_health_ejected(&l, G, &a[1], 31), 1);
	cr_expect_eq(cr_health_ejected(&l, G, &a[2], 31), 1);
	/* Every address failing: never all out. */
	fail_n(&l, &a[3], 3, 40);
	fail_n(&l, &a[0], 3, 50);
	cr_expect_eq(cr_health_ejected_count(1, 51), 2);
	/* Another host of the same lane is counted apart. */
	struct cr_dest o = addr("10.0.0.9", 80);
	uint64_t g2 = cr_health_host_name("other", 80);
	cr_health_ejected(&l, g2, &o, 0);
	cr_health_ejected(&l, g2, &a[0], 0);
	for (int i = 0; i < 3; i++)
		cr_health_addr_result(&l, g2, &o, 0, 60);
	cr_expect_eq(cr_health_ejected(&l, g2, &o, 61), 1);
	cr_expect_eq(cr_health_ejected_count(1, 61), 3);
}

Test(health, settings_change_starts_afresh_and_same_settings_keep_state)
{
	struct cr_lane l = lane(1);
	struct cr_dest a = addr("127.0.0.1", 80), b = addr("127.0.0.2", 80);
	cr_health_ejected(&l, G, &a, 0);
	fail_n(&l, &b, 3, 0);
	struct cr_lane same = lane(1); /* a reload with the same settings */
	cr_expect_eq(cr_health_ejected(&same, G, &b, 1), 1);
	struct cr_lane changed = lane(1);
	changed.eject_time_ms = 2000;
	changed.health_hash = cr_config_lane_health_hash(&changed);
	cr_expect_eq(cr_health_ejected(&changed, G, &b, 1), 0);
}

static int admit(const struct cr_lane *l, int64_t now)
{
	return cr_health_admit(l, cr_health_host_name("api", 80), "api", 80, now, NULL);
}

static void result(const struct cr_lane *l, int adm, int ok, int64_t now)
{
	cr_health_result(l, cr_health_host_name("api", 80), adm, ok, now);
}

Test(health, breaker_opens_at_ratio_after_min_requests)
{
	struct cr_lane l = lane(2);
	for (int i = 0; i < 9; i++)
		result(&l, admit(&l, 0), 0, 0);
	cr_expect_eq(admit(&l, 1), CR_ADMIT_YES, "9 < breaker_min_requests");
	result(&l, CR_ADMIT_YES, 1, 1); /* 10 requests, 9 failed */
	cr_expect_eq(admit(&l, 2), CR_ADMIT_YES, "opens on a failure only");
	result(&l, CR_ADMIT_YES, 0, 2);
	int st = -1;
	cr_expect_eq(cr_health_admit(&l, cr_health_host_name("api", 80), "api", 80, 3, &st),
		     CR_ADMIT_NO);
	cr_expect_eq(st, CR_BRK_OPEN);
}

Test(health, breaker_stays_closed_below_ratio_and_forgets_old_buckets)
{
	struct cr_lane l = lane(2);
	for (int i = 0; i < 100; i++)
		result(&l, admit(&l, i), i % 3 != 0, i); /* a third fail */
	cr_expect_eq(admit(&l, 200), CR_ADMIT_YES);
	/* Old failures leave the window. */
	for (int i = 0; i < 10; i++)
		result(&l, admit(&l, 0), 0, 0);
	for (int i = 0; i < 6; i++)
		result(&l, admit(&l, 20000), i < 2 ? 0 : 1, 20000);
	cr_expect_eq(admit(&l, 20001), CR_ADMIT_YES, "16 requests but only 6 in the window");
}

Test(health, half_open_probes_close_or_reopen)
{
	struct cr_lane l = lane(2);
	for (int i = 0; i < 10; i++)
		result(&l, admit(&l, 0), 0, 0);
	cr_expect_eq(admit(&l, 499), CR_ADMIT_NO);
	/* After breaker_open: 3 probes, no more. */
	int p1 = admit(&l, 500), p2 = admit(&l, 500), p3 = admit(&l, 501);
	cr_expect_eq(p1, CR_ADMIT_PROBE);
	cr_expect_eq(p2, CR_ADMIT_PROBE);
	cr_expect_eq(p3, CR_ADMIT_PROBE);
	cr_expect_eq(admit(&l, 502), CR_ADMIT_NO);
	result(&l, CR_ADMIT_YES, 1, 503); /* admitted before: not a probe */
	result(&l, p1, 1, 503);
	result(&l, p2, 0, 504); /* one fails: open again */
	cr_expect_eq(admit(&l, 505), CR_ADMIT_NO);
	cr_expect_eq(admit(&l, 1003), CR_ADMIT_NO);
	p1 = admit(&l, 1004);
	p2 = admit(&l, 1004);
	p3 = admit(&l, 1004);
	result(&l, p1, 1, 1005);
	result(&l, p2, 1, 1005);
	cr_expect_eq(admit(&l, 1006), CR_ADMIT_NO, "still half-open");
	result(&l, p3, 1, 1006);
	cr_expect_eq(admit(&l, 1007), CR_ADMIT_YES, "closed");
	/* Closed with a fresh window: 9 failures do not open it. */
	for (int i = 0; i < 9; i++)
		result(&l, CR_ADMIT_YES, 0, 1008);
	cr_expect_eq(admit(&l, 1009), CR_ADMIT_YES);
}

Test(health, half_open_probes_that_never_report_are_replaced)
{
	struct cr_lane l = lane(2);
	for (int i = 0; i < 10; i++)
		result(&l, admit(&l, 0), 0, 0);
	for (int i = 0; i < 3; i++)
		cr_expect_eq(admit(&l, 500), CR_ADMIT_PROBE);
	cr_expect_eq(admit(&l, 999), CR_ADMIT_NO);
	cr_expect_eq(admit(&l, 1000), CR_ADMIT_PROBE);
}

Test(health, token_bucket_throttles_at_half)
{
	struct cr_lane l = lane(3);
	cr_expect_eq(cr_health_retry_allowed(&l), 1);
	for (int i = 0; i < 4; i++)
		cr_health_tokens_result(&l, 0);
	cr_expect_eq(cr_health_retry_allowed(&l), 1, "6 tokens > 5");
	cr_health_tokens_result(&l, 0);
	cr_expect_eq(cr_health_retry_allowed(&l), 0, "5 tokens: no retries");
	cr_expect_eq(cr_health_retry_allowed(&l), 0, "still 5");
	cr_health_tokens_result(&l, 1);
	cr_expect_eq(cr_health_retry_allowed(&l), 1, "5.1 tokens");
	for (int i = 0; i < 1000; i++)
		cr_health_tokens_result(&l, 1);
	for (int i = 0; i < 4; i++)
		cr_health_tokens_result(&l, 0);
	cr_expect_eq(cr_health_retry_allowed(&l), 1, "capped at retry_tokens");
	cr_health_tokens_result(&l, 0);
	cr_expect_eq(cr_health_retry_allowed(&l), 0);
	struct cr_lane off = lane(4);
	off.health = 0;
	cr_expect_eq(cr_health_retry_allowed(&off), 1);
	char buf[1 << 16];
	cr_metrics_set_lane_name(3, "l3");
	cr_metrics_render(buf, sizeof(buf));
	cr_expect(strstr(buf, "connroute_retries_throttled_total{lane=\"l3\"} 3\n"), "%s", buf);
}

Test(health, metrics_show_ejections_and_breakers)
{
	struct cr_lane l = lane(5);
	struct cr_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.lanes[0] = l;
	cfg.nlanes = 1;
	cr_health_publish(&cfg);
	cr_metrics_set_lane_name(5, "crit");
	struct cr_dest a = addr("127.0.0.1", 80), b = addr("127.0.0.2", 80);
	cr_health_ejected(&l, G, &a, cr_health_now());
	fail_n(&l, &b, 3, cr_health_now());
	for (int i = 0; i < 10; i++)
		result(&l, admit(&l, cr_health_now()), 0, cr_health_now());
	admit(&l, cr_health_now());
	static char buf[1 << 16];
	cr_metrics_render(buf, sizeof(buf));
	cr_expect(strstr(buf, "connroute_ejections_total{lane=\"crit\",address=\"127.0.0.2:80\"} 1\n"),
		  "%s", buf);
	cr_expect(strstr(buf, "connroute_ejected{lane=\"crit\"} 1\n"), "%s", buf);
	cr_expect(strstr(buf, "connroute_breaker_state{lane=\"crit\",host=\"api:80\"} 1\n"), "%s",
		  buf);
	cr_expect(strstr(buf, "connroute_breaker_rejections_total{lane=\"crit\"} 1\n"), "%s", buf);
}

/* Many threads on one host: the counts stay consistent (run under TSan by
 * make tsan through tests/stress). */
static struct cr_lane tl;
static void *hammer(void *arg)
{
	struct cr_dest d[2] = {addr("127.0.0.1", 80), addr("127.0.0.2", 80)};
	int me = (int)(intptr_t)arg;
	for (int i = 0; i < 20000; i++) {
		int64_t now = i / 10;
		int k = (i + me) & 1;
		if (!cr_health_ejected(&tl, G, &d[k], now))
			cr_health_addr_result(&tl, G, &d[k], k == 1, now);
		int adm = admit(&tl, now);
		if (adm)
			result(&tl, adm, i % 4 != 0, now);
		cr_health_tokens_result(&tl, i & 1);
		cr_health_retry_allowed(&tl);
	}
	return NULL;
}

Test(health, concurrent_use)
{
	tl = lane(6);
	pthread_t t[8];
	for (int i = 0; i < 8; i++)
		pthread_create(&t[i], NULL, hammer, (void *)(intptr_t)i);
	for (int i = 0; i < 8; i++)
		pthread_join(t[i], NULL);
	/* 127.0.0.1 always fails but 127.0.0.2 never: at most one out. */
	cr_expect_leq(cr_health_ejected_count(6, 1999), 1);
	struct cr_dest ok = addr("127.0.0.2", 80);
	cr_expect_eq(cr_health_ejected(&tl, G, &ok, 1999), 0);
}

/* The metrics read an ejected address's time left while other threads let
 * it back in (its time is up, or the eject_max cap): the value shown is
 * never negative (a "-0.-500" sample would make the whole scrape invalid).
 * One thread ejects 127.0.0.2 and lets it back in, over and over; the
 * reader walks the table (at time 1, before every ejection ends). */
static struct cr_lane el;
static atomic_int el_stop;

static void *eject_flapper(void *arg)
{
	(void)arg;
	struct cr_dest b = addr("127.0.0.2", 80);
	for (int64_t t = 2; !atomic_load(&el_stop); t += 20000) {
		cr_health_addr_result(&el, G, &b, 0, t); /* out (again: on probation) */
		/* at most 10 x eject_time later: back in */
		(void)cr_health_ejected(&el, G, &b, t + 10 * 1000);
	}
	return NULL;
}

static void count_negative(void *ctx, int lane, const char *label, int64_t v)
{
	(void)lane;
	(void)label;
	if (v < 0)
		(*(int *)ctx)++;
}

Test(health, time_left_is_never_negative_while_addresses_come_back)
{
	el = lane(9);
	el.eject_after = 1;
	el.eject_time_ms = 1000;
	struct cr_dest a = addr("127.0.0.1", 80);
	(void)cr_health_ejected(&el, G, &a, 1); /* a second known address: cap 1 */
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, eject_flapper, NULL), 0);
	int neg = 0;
	int64_t end = cr_now_ms() + 1500;
	while (neg == 0 && cr_now_ms() < end)
		for (int i = 0; i < 1000; i++)
			cr_health_each(0, count_negative, &neg, 1);
	atomic_store(&el_stop, 1);
	pthread_join(t, NULL);
	cr_expect_eq(neg, 0, "%d negative samples", neg);
}
