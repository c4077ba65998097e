/* The published configuration (lib/cfgref.c): publish, counted references,
 * retirement. cfgref never looks inside a config, so most tests publish
 * small stand-in blocks (a struct cr_config is hundreds of kilobytes). */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "base.h"
#include "cfgref.h"

static struct cr_config *fake(void)
{
	struct cr_config *c = malloc(16);
	cr_assert_not_null(c);
	return c;
}

Test(cfgref, nothing_published)
{
	cr_expect_null(cr_cfgref_current());
	cr_expect_null(cr_cfgref_acquire());
	cr_cfgref_release(NULL);
	struct cr_config *never = fake();
	cr_expect_eq(cr_cfgref_refs(never), -1, "neither published nor retired");
	free(never);
}

Test(cfgref, publish_acquire_release_counts)
{
	struct cr_config *a = fake(), *b = fake(), *c = fake();
	cr_expect_eq(cr_cfgref_publish(a), 0, "the first publish has no previous one");
	cr_expect_eq(cr_cfgref_current(), a);
	cr_expect_eq(cr_cfgref_refs(a), 1, "1 for being published");
	const struct cr_config *r1 = cr_cfgref_acquire(), *r2 = cr_cfgref_acquire();
	cr_expect_eq(r1, a);
	cr_expect_eq(r2, a);
	cr_expect_eq(cr_cfgref_refs(a), 3);
	cr_cfgref_release(r1);
	cr_expect_eq(cr_cfgref_refs(a), 2);

	/* A reference stays valid across a publish; the retired config
	 * drops the publish's count only. */
	cr_expect_eq(cr_cfgref_publish(b), 1);
	cr_expect_eq(cr_cfgref_current(), b);
	cr_expect_eq(cr_cfgref_refs(b), 1);
	cr_expect_eq(cr_cfgref_refs(a), 1, "still held by r2");
	cr_cfgref_collect();
	cr_expect_eq(cr_cfgref_refs(a), 1, "a held config is never freed");
	cr_cfgref_release(r2);
	cr_expect_eq(cr_cfgref_refs(a), 0);

	const struct cr_config *r3 = cr_cfgref_acquire();
	cr_expect_eq(r3, b);
	cr_expect_eq(cr_cfgref_publish(c), 1);
	cr_expect_eq(cr_cfgref_refs(b), 1);
	cr_cfgref_release(r3);
	cr_expect_eq(cr_cfgref_refs(b), 0);
	cr_expect_eq(cr_cfgref_refs(c), 1);
	/* Within the grace period nothing is freed, held or not. */
	cr_cfgref_collect();
	cr_expect_eq(cr_cfgref_refs(a), 0);
	cr_expect_eq(cr_cfgref_refs(b), 0);
}

Test(cfgref, retired_configs_are_freed_after_the_grace_period_unless_held)
{
	struct cr_config *a = fake(), *b = fake(), *c = fake();
	cr_cfgref_publish(a);
	cr_cfgref_publish(b); /* a: retired, unreferenced */
	const struct cr_config *held = cr_cfgref_acquire();
	cr_assert_eq(held, b);
	cr_cfgref_publish(c); /* b: retired, held */
	sleep(5);
	usleep(300000); /* past the 5 s grace period */
	cr_cfgref_collect();
	cr_expect_eq(cr_cfgref_refs(a), -1, "unreferenced and past the grace period: freed");
	cr_expect_eq(cr_cfgref_refs(b), 1, "held: kept");
	cr_cfgref_release(held);
	cr_expect_eq(cr_cfgref_refs(b), 0);
	cr_cfgref_collect();
	cr_expect_eq(cr_cfgref_refs(b), -1);
	cr_expect_eq(cr_cfgref_refs(c), 1);
}

/* --- one thread publishing continuously, two acquiring and releasing ---- */

#define NPUB 3000
static struct cr_config *published[NPUB];
static atomic_int pub_done;
static atomic_long bad_acquires, acquires, negatives;

static void *publisher(void *arg)
{
	(void)arg;
	for (int i = 1; i < NPUB; i++) {
		cr_cfgref_publish(published[i]);
		if (i % 64 == 0)
			sched_yield();
	}
	atomic_store(&pub_done, 1);
	return NULL;
}

static int known(const struct cr_config *c)
{
	for (int i = 0; i < NPUB; i++)
		if (published[i] == c)
			return 1;
	return 0;
}

static void *reader(void *arg)
{
	(void)arg;
	long n = 0;
	while (!atomic_load(&pub_done) || n < 1000) {
		const struct cr_config *c = cr_cfgref_acquire();
		if (!c) {
			atomic_fetch_add(&bad_acquires, 1);
			continue;
		}
		/* Held: counted at least once, whatever publishes happen. */
		if (n % 16 == 0) {
			long r = cr_cfgref_refs(c);
			if (r < 1)
				atomic_fetch_add(&negatives, 1);
			if (!known(c))
				atomic_fetch_add(&bad_acquires, 1);
		}
		cr_cfgref_release(c);
		n++;
	}
	atomic_fetch_add(&acquires, n);
	return NULL;
}

Test(cfgref, stress_publish_while_acquiring_leaves_exact_counts)
{
	for (int i = 0; i < NPUB; i++)
		published[i] = fake();
	cr_cfgref_publish(published[0]);
	int64_t t0 = cr_now_ms();
	pthread_t p, r1, r2;
	cr_assert_eq(pthread_create(&r1, NULL, reader, NULL), 0);
	cr_assert_eq(pthread_create(&r2, NULL, reader, NULL), 0);
	cr_assert_eq(pthread_create(&p, NULL, publisher, NULL), 0);
	pthread_join(p, NULL);
	pthread_join(r1, NULL);
	pthread_join(r2, NULL);
	/* Past the 5 s grace period a retired config whose count reached 0 may
	 * have been freed (refs -1); within it none is. */
	int late = cr_now_ms() - t0 >= 4900;
	cr_expect_eq(atomic_load(&bad_acquires), 0, "acquire returned NULL or a config never published");
	cr_expect_eq(atomic_load(&negatives), 0, "a held config had no reference counted");
	cr_expect_geq(atomic_load(&acquires), 2000);
	cr_expect_eq(cr_cfgref_current(), published[NPUB - 1]);
	cr_expect_eq(cr_cfgref_refs(published[NPUB - 1]), 1, "the published one: 1 for being published");
	int wrong = 0, first = -1;
	long first_refs = 0;
	for (int i = 0; i < NPUB - 1; i++) {
		long r = cr_cfgref_refs(published[i]);
		if (r != 0 && !(late && r == -1)) {
			if (first < 0) {
				first = i;
				first_refs = r;
			}
			wrong++;
		}
	}
	cr_expect_eq(wrong, 0, "%d retired configs have a count other than 0 (first: #%d with %ld)", wrong,
		     first, first_refs);
}
