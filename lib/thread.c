/* connroute: background threads; see thread.h. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "base.h"
#include "log.h"
#include "thread.h"

static void start(struct cr_thread *t, int me)
{
	sigset_t all, old;
	pthread_attr_t attr;
	pthread_t th;
	int rc, saved = errno; /* kicked from hooks: the host's errno is kept */

	if (t->wanted && !t->wanted()) {
		atomic_store(&t->running, 0);
		atomic_store(&t->pid, me);
		errno = saved;
		return;
	}
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old); /* the thread inherits a full mask */
	rc = pthread_attr_init(&attr);
	if (rc == 0) {
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		if (t->stack)
			pthread_attr_setstacksize(&attr, t->stack);
		rc = pthread_create(&th, &attr, t->main, NULL);
		pthread_attr_destroy(&attr);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc == 0) {
		pthread_setname_np(th, t->name);
		atomic_store(&t->running, 1);
	} else {
		atomic_store(&t->running, 0);
		cr_logmsg(CR_LL_WARN,
			  "cannot start the %s thread (%s); not retried in this process", t->name,
			  strerror(rc));
	}
	errno = saved; /* a failed pthread_create leaves its mmap's errno behind */
	atomic_store(&t->pid, me);
}

int cr_thread_kick(struct cr_thread *t)
{
	int p = atomic_load_explicit(&t->pid, memory_order_acquire);
	int me = (int)getpid();
	if (p == me)
		return atomic_load_explicit(&t->running, memory_order_relaxed);
	if (p == -me)
		return 0; /* another thread is starting it right now */
	/* Not started in this process (0, or the parent's pid after a fork):
	 * one caller wins and starts it. */
	if (atomic_compare_exchange_strong(&t->pid, &p, -me))
		start(t, me);
	return cr_thread_running(t);
}

int cr_thread_running(struct cr_thread *t)
{
	return atomic_load_explicit(&t->pid, memory_order_acquire) == (int)getpid() &&
	       atomic_load_explicit(&t->running, memory_order_relaxed);
}

void cr_thread_atfork_child(struct cr_thread *t)
{
	atomic_store(&t->running, 0);
	atomic_store(&t->pid, 0);
}

static void (*_Atomic kickers[4])(void);

void cr_kick_register(void (*fn)(void))
{
	for (unsigned i = 0; i < ARRAY_SIZE(kickers); i++) {
		void (*expect)(void) = NULL;
		if (atomic_load(&kickers[i]) == fn ||
		    atomic_compare_exchange_strong(&kickers[i], &expect, fn))
			return;
	}
}

void cr_kick(void)
{
	for (unsigned i = 0; i < ARRAY_SIZE(kickers); i++) {
		void (*fn)(void) = atomic_load_explicit(&kickers[i], memory_order_acquire);
		if (!fn)
			return;
		fn();
	}
}

static void (*_Atomic periodic_run)(void);
static int (*_Atomic periodic_wanted)(void);

void cr_periodic_register(void (*run)(void), int (*wanted)(void))
{
	atomic_store(&periodic_wanted, wanted);
	atomic_store(&periodic_run, run);
}

void cr_periodic_run(void)
{
	void (*fn)(void) = atomic_load_explicit(&periodic_run, memory_order_acquire);
	if (fn)
		fn();
}

int cr_periodic_wanted(void)
{
	int (*fn)(void) = atomic_load_explicit(&periodic_wanted, memory_order_acquire);
	return fn && fn();
}
