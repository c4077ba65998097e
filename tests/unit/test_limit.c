#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "limit.h"

static struct cr_dest dst(int port)
{
	struct cr_dest d = {.family = AF_INET, .port = (uint16_t)port};
	inet_pton(AF_INET, "127.0.0.1", d.addr);
	return d;
}

Test(limit, slots_are_per_lane_and_destination)
{
	cr_assert_eq(cr_limits_init(64, NULL, NULL), 0);
	struct cr_dest a = dst(80), b = dst(81);
	uint32_t s1 = cr_limit_slot(0, &a), s2 = cr_limit_slot(0, &a), s3 = cr_limit_slot(1, &a),
		 s4 = cr_limit_slot(0, &b);
	cr_expect_neq(s1, CR_SLOT_NONE);
	cr_expect_eq(s1, s2, "same lane and destination: same slot");
	cr_expect_neq(s1, s3, "another lane: another slot");
	cr_expect_neq(s1, s4, "another port: another slot");
}

Test(limit, acquire_release_and_nonblocking_overflow)
{
	cr_limits_init(64, NULL, NULL);
	struct cr_dest a = dst(80);
	uint32_t s = cr_limit_slot(0, &a);
	cr_expect_eq(cr_limit_acquire(s, 2, 0, NULL), 0);
	cr_expect_eq(cr_limit_acquire(s, 2, 0, NULL), 0);
	cr_expect_eq(cr_limit_inuse(s), 2);
	cr_expect_eq(cr_limit_acquire(s, 2, 0, NULL), -EAGAIN, "third without wait fails at once");
	cr_limit_release(s);
	cr_expect_eq(cr_limit_acquire(s, 2, 0, NULL), 0, "a release frees a unit");
	cr_limit_release(s);
	cr_limit_release(s);
	cr_limit_release(s); /* one too many: never below zero */
	cr_expect_eq(cr_limit_inuse(s), 0);
}

Test(limit, unlimited_counts_only)
{
	cr_limits_init(64, NULL, NULL);
	struct cr_dest a = dst(80);
	uint32_t s = cr_limit_slot(0, &a);
	for (int i = 0; i < 100; i++)
		cr_expect_eq(cr_limit_acquire(s, 0, 0, NULL), 0);
	cr_expect_eq(cr_limit_inuse(s), 100);
}

Test(limit, wait_times_out)
{
	cr_limits_init(64, NULL, NULL);
	struct cr_dest a = dst(80);
	uint32_t s = cr_limit_slot(0, &a);
	uint64_t waited = 0;
	cr_expect_eq(cr_limit_acquire(s, 1, 0, NULL), 0);
	cr_expect_eq(cr_limit_acquire(s, 1, 50, &waited), -ETIMEDOUT);
	cr_expect_geq(waited, 50 * 1000000ull, "waited the whole queue timeout");
}

static uint32_t shared_slot;

static void *release_later(void *arg)
{
	(void)arg;
	usleep(30000);
	cr_limit_release(shared_slot);
	return NULL;
}

Test(limit, waiter_gets_the_released_unit)
{
	pthread_t t;
	uint64_t waited = 0;
	cr_limits_init(64, NULL, NULL);
	struct cr_dest a = dst(80);
	shared_slot = cr_limit_slot(0, &a);
	cr_expect_eq(cr_limit_acquire(shared_slot, 1, 0, NULL), 0);
	pthread_create(&t, NULL, release_later, NULL);
	cr_expect_eq(cr_limit_acquire(shared_slot, 1, 5000, &waited), 0);
	pthread_join(t, NULL);
	cr_expect_eq(cr_limit_inuse(shared_slot), 1);
	cr_expect_gt(waited, 0);
}

static int reaped;

static void reap_one(uint32_t slot, void *ctx)
{
	(void)ctx;
	reaped++;
	cr_limit_release(slot);
}

Test(limit, full_slot_asks_the_reaper_first)
{
	cr_limits_init(64, reap_one, NULL);
	struct cr_dest a = dst(80);
	uint32_t s = cr_limit_slot(0, &a);
	cr_expect_eq(cr_limit_acquire(s, 1, 0, NULL), 0);
	cr_expect_eq(cr_limit_acquire(s, 1, 0, NULL), 0, "the reaper found the missed close");
	cr_expect_eq(reaped, 1);
}

Test(limit, table_full_means_unlimited_not_failure)
{
	cr_limits_init(64, NULL, NULL);
	int got_none = 0;
	for (int p = 1; p <= 100; p++) {
		struct cr_dest d = dst(p);
		if (cr_limit_slot(0, &d) == CR_SLOT_NONE)
			got_none = 1;
	}
	cr_expect(got_none);
	cr_expect_eq(cr_limit_acquire(CR_SLOT_NONE, 1, 0, NULL), 0);
}

static uint32_t fifo_slot;
static int order[3], norder;
static pthread_mutex_t order_mu = PTHREAD_MUTEX_INITIALIZER;

static void *fifo_waiter(void *arg)
{
	int id = (int)(intptr_t)arg;
	if (cr_limit_acquire(fifo_slot, 1, 5000, NULL) != 0)
		return NULL;
	pthread_mutex_lock(&order_mu);
	order[norder++] = id;
	pthread_mutex_unlock(&order_mu);
	usleep(5000);
	cr_limit_release(fifo_slot);
	return NULL;
}

Test(limit, waiters_are_served_first_come_first_served)
{
	pthread_t t[3];
	cr_limits_init(64, NULL, NULL);
	struct cr_dest a = dst(80);
	fifo_slot = cr_limit_slot(0, &a);
	cr_assert_eq(cr_limit_acquire(fifo_slot, 1, 0, NULL), 0);
	for (intptr_t i = 0; i < 3; i++) {
		pthread_create(&t[i], NULL, fifo_waiter, (void *)i);
		usleep(30000); /* queue them in order 0, 1, 2 */
	}
	cr_expect_eq(cr_limit_acquire(fifo_slot, 1, 0, NULL), -EAGAIN, "no barging past the queue");
	cr_limit_release(fifo_slot);
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	cr_expect_eq(norder, 3);
	cr_expect(order[0] == 0 && order[1] == 1 && order[2] == 2, "order %d %d %d", order[0], order[1], order[2]);
}
