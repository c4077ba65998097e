/* "One background thread per process" (lib/thread.c): lazily started once,
 * `wanted` asked once, a failed start logged once and never retried, and
 * the cr_kick registrations. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base.h"
#include "log.h"
#include "thread.h"

static atomic_int ran, blocked_all, wanted_calls;

static void *record_main(void *arg)
{
	(void)arg;
	sigset_t cur;
	pthread_sigmask(SIG_SETMASK, NULL, &cur);
	atomic_store(&blocked_all, sigismember(&cur, SIGINT) && sigismember(&cur, SIGTERM) &&
					   sigismember(&cur, SIGUSR1));
	atomic_fetch_add(&ran, 1);
	return NULL;
}

static int wait_ran(int want, int ms)
{
	int64_t end = cr_now_ms() + ms;
	while (atomic_load(&ran) < want && cr_now_ms() < end)
		usleep(5000);
	return atomic_load(&ran);
}

static int no(void)
{
	atomic_fetch_add(&wanted_calls, 1);
	return 0;
}

static int yes(void)
{
	atomic_fetch_add(&wanted_calls, 1);
	return 1;
}

Test(thread, kick_twice_starts_once)
{
	static struct cr_thread t = {.name = "cr-test", .main = record_main, .wanted = yes};
	cr_expect_not(cr_thread_running(&t));
	cr_expect_eq(cr_thread_kick(&t), 1);
	cr_expect_eq(cr_thread_kick(&t), 1);
	cr_expect(cr_thread_running(&t));
	cr_expect_eq(wait_ran(1, 3000), 1);
	usleep(100000);
	cr_expect_eq(atomic_load(&ran), 1, "started once");
	cr_expect_eq(atomic_load(&wanted_calls), 1, "wanted asked once per process");
	cr_expect(atomic_load(&blocked_all), "the thread inherits a full signal mask");
	/* The caller's own mask is left as it was. */
	sigset_t cur;
	pthread_sigmask(SIG_SETMASK, NULL, &cur);
	cr_expect_not(sigismember(&cur, SIGINT));
}

Test(thread, not_wanted_starts_none)
{
	static struct cr_thread t = {.name = "cr-test", .main = record_main, .wanted = no};
	cr_expect_eq(cr_thread_kick(&t), 0);
	cr_expect_eq(cr_thread_kick(&t), 0);
	usleep(100000);
	cr_expect_eq(atomic_load(&ran), 0);
	cr_expect_not(cr_thread_running(&t));
	cr_expect_eq(atomic_load(&wanted_calls), 1, "the answer is remembered");
}

Test(thread, atfork_child_forgets_the_thread)
{
	static struct cr_thread t = {.name = "cr-test", .main = record_main};
	cr_thread_kick(&t);
	cr_expect_eq(wait_ran(1, 3000), 1);
	/* What a fork child's handler does: the thread is not in the child,
	 * and the child's first kick starts its own. */
	cr_thread_atfork_child(&t);
	cr_expect_not(cr_thread_running(&t));
	cr_expect_eq(cr_thread_kick(&t), 1);
	cr_expect_eq(wait_ran(2, 3000), 2);
}

Test(thread, kicked_in_a_forked_child_starts_there)
{
	static struct cr_thread t = {.name = "cr-test", .main = record_main};
	cr_thread_kick(&t);
	cr_expect_eq(wait_ran(1, 3000), 1);
	fflush(NULL);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		/* Without the atfork handler: the pid recorded is the parent's. */
		int ok = !cr_thread_running(&t) && cr_thread_kick(&t) == 1;
		int64_t end = cr_now_ms() + 3000;
		while (atomic_load(&ran) < 2 && cr_now_ms() < end)
			usleep(5000);
		_exit(ok && atomic_load(&ran) == 2 ? 0 : 1);
	}
	int st = 0;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child started its own thread");
	cr_expect_eq(atomic_load(&ran), 1, "the parent's thread ran once");
}

static int count_lines(const char *path, const char *needle)
{
	FILE *f = fopen(path, "r");
	char line[1200];
	int n = 0;
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		n += strstr(line, needle) != NULL;
	fclose(f);
	return n;
}

Test(thread, failed_start_is_logged_once_and_not_retried)
{
	/* A stack no mmap can give: pthread_create fails. */
	static struct cr_thread t = {.name = "cr-test", .main = record_main, .stack = (size_t)1 << 46};
	char path[] = "/tmp/cr-thread-log-XXXXXX";
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	close(fd);
	cr_log_setup(CR_LL_WARN, path);
	errno = 4321;
	cr_expect_eq(cr_thread_kick(&t), 0);
	cr_expect_eq(errno, 4321, "the failure's log line keeps errno");
	for (int i = 0; i < 5; i++)
		cr_expect_eq(cr_thread_kick(&t), 0);
	cr_expect_not(cr_thread_running(&t));
	usleep(100000);
	cr_expect_eq(atomic_load(&ran), 0);
	cr_expect_eq(count_lines(path, "cannot start the cr-test thread"), 1);
	unlink(path);
}

static atomic_int k1, k2, k3, k4, k5;
static void f1(void) { atomic_fetch_add(&k1, 1); }
static void f2(void) { atomic_fetch_add(&k2, 1); }
static void f3(void) { atomic_fetch_add(&k3, 1); }
static void f4(void) { atomic_fetch_add(&k4, 1); }
static void f5(void) { atomic_fetch_add(&k5, 1); }

Test(thread, kick_registrations)
{
	cr_kick(); /* none registered: nothing */
	cr_kick_register(f1);
	cr_kick_register(f1); /* again: kept once */
	cr_kick_register(f2);
	cr_kick();
	cr_expect_eq(atomic_load(&k1), 1);
	cr_expect_eq(atomic_load(&k2), 1);
	cr_kick_register(f3);
	cr_kick_register(f4);
	cr_kick_register(f5); /* a fifth: no room, dropped */
	cr_kick();
	cr_expect_eq(atomic_load(&k1), 2);
	cr_expect_eq(atomic_load(&k2), 2);
	cr_expect_eq(atomic_load(&k3), 1);
	cr_expect_eq(atomic_load(&k4), 1);
	cr_expect_eq(atomic_load(&k5), 0);
}
