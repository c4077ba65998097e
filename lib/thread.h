/* connroute: "one background thread per process", shared by the metrics /
 * reload thread (bg.c) and the warm-pool refill thread (warm.c).
 *
 * A thread is started lazily by its first kick in a process (never from the
 * constructor), is detached, named, and inherits a full signal mask, so no
 * host signal is ever delivered to it. It does not survive fork: the child's
 * first kick starts its own. A failed pthread_create is logged once per
 * process and never retried: otherwise every routed call would pay for (and
 * log) another attempt. */
#ifndef CR_THREAD_H
#define CR_THREAD_H

#include <stdatomic.h>
#include <stddef.h>

struct cr_thread {
	const char *name; /* for the log line and pthread_setname_np (<= 15 chars) */
	void *(*main)(void *);
	size_t stack; /* 0: the default */
	/* May be NULL. Asked once per process at the first kick: 0 = this
	 * process needs no such thread (remembered like a start). */
	int (*wanted)(void);
	/* pid the thread was started or given up in; -pid while starting. */
	atomic_int pid;
	atomic_int running; /* 1 if it runs in pid */
};

/* Starts T in this process unless that was done or attempted already.
 * Cheap then: one relaxed load and a getpid(). Returns 1 if T runs in this
 * process. */
int cr_thread_kick(struct cr_thread *t);

/* 1 if T was started in this process. */
int cr_thread_running(struct cr_thread *t);

/* For atfork child handlers: T does not run in the child. */
void cr_thread_atfork_child(struct cr_thread *t);

/* Lazy starters of the background threads above the routing layers,
 * registered at init (bg.c registers its own): the routed paths call
 * cr_kick() without depending on them. At most 4. */
void cr_kick_register(void (*fn)(void));
void cr_kick(void);

/* A periodic job of a layer the background thread (bg.c, the top layer)
 * does not depend on, registered at init (cr_engine_init): bg.c runs it
 * once a turn of its loop (at most a second apart), and starts even without
 * a config file when WANTED says the job has work in this process. One job
 * (the libcurl idle sweep); a second registration replaces the first. */
void cr_periodic_register(void (*run)(void), int (*wanted)(void));
void cr_periodic_run(void);
int cr_periodic_wanted(void);

#endif
